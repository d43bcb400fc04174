"""What a nightly leg remembers: its example database, and the campaign's failing cases in it.

A nightly leg (one tox version environment and seed of ``.github/workflows/nightly.yml``)
starts on a fresh machine, so whatever it found would be forgotten by the next night. It
keeps a Hypothesis example database in a local folder (``HESSDIFF_DATABASE``), which the
workflow uploads as an artifact of a fixed name per leg; the next night reads the latest
artifact of each name in ``HESSDIFF_ARTIFACTS`` back with Hypothesis'
``GitHubArtifactDatabase`` (``GITHUB_REPOSITORY`` names the repository, ``GITHUB_TOKEN``
grants ``actions: read``), wrapped read-only and multiplexed with the local folder, as
Hypothesis documents for CI. So a fault found once is replayed first every night until it
is fixed; only the local folder is ever written, so a night that no longer fails forgets it.

The property suite uses that database as Hypothesis does (``hessdiff.harness.profiles``:
the ``nightly`` profile). The campaign cannot: its rounds draw from strategies that change
with the seed, the round and the coverage so far, so a saved choice sequence would draw
another program the next night. It stores whole cases instead (``SavedCases``: program,
point and dtype as JSON), under a key naming the leg's variants and the dtype but not the
seed: a fault found under seed 1 is a fault under seed 2 too. The cases are replayed before
the first round and draw nothing from Hypothesis, so every round's draws are still decided
by the seed alone (``hessdiff.harness.seeding``).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import final

import numpy as np
from hypothesis.database import (DirectoryBasedExampleDatabase, ExampleDatabase, GitHubArtifactDatabase,
                                 MultiplexedDatabase, ReadOnlyDatabase)

from hessdiff.harness.case import Case
from hessdiff.harness.ir import ProgramError, program_from_json

__all__ = ["ARTIFACTS_ENV", "DATABASE_ENV", "DatabaseError", "SavedCases", "artifact_databases",
           "case_to_bytes", "database_from_env", "leg_database", "prime", "remembering_database"]

DATABASE_ENV = "HESSDIFF_DATABASE"  # the leg's local database folder (written, uploaded)
ARTIFACTS_ENV = "HESSDIFF_ARTIFACTS"  # comma-separated artifact names earlier nights uploaded it as


class DatabaseError(ValueError):
    """The environment asks for a database that cannot be made; the message is one line."""


def remembering_database(local: Path, previous: Sequence[ExampleDatabase] = ()) -> ExampleDatabase:
    """The local folder's database, multiplexed with each of ``previous`` made read-only.

    Arguments:
        local: the folder this run writes (created if missing).
        previous: what earlier runs saved (a ``GitHubArtifactDatabase`` per artifact, or
            any database standing in for one): fetched from, never written or deleted from.

    Raises:
        DatabaseError: ``local`` is not a folder this process can create and write in
            (checked now: Hypothesis would fail to save without a word).
    """
    try:
        local.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=local).close()
    except OSError as exc:
        why = exc.strerror or exc
        raise DatabaseError(f"{str(local)!r} cannot be an example database folder: {why}.") from None
    return MultiplexedDatabase(DirectoryBasedExampleDatabase(local), *(ReadOnlyDatabase(db) for db in previous))


def artifact_databases(names: Iterable[str], repository: str) -> list[ExampleDatabase]:
    """One ``GitHubArtifactDatabase`` per artifact name in ``repository`` (``owner/name``).

    Nothing is downloaded until the first fetch. Hypothesis looks for the artifact among the
    repository's newest artifacts (the first page of GitHub's list), newest first.

    Raises:
        DatabaseError: ``repository`` is not ``owner/name``.
    """
    owner, _, repo = repository.partition("/")
    if not owner or not repo or "/" in repo:
        raise DatabaseError(f"GITHUB_REPOSITORY={repository!r}, but it must be owner/name to read "
                            f"{ARTIFACTS_ENV} from.")
    return [GitHubArtifactDatabase(owner, repo, artifact_name=name) for name in names]


def prime(databases: Sequence[ExampleDatabase]) -> tuple[list[ExampleDatabase], list[str]]:
    """Download each artifact now: the databases that can be read, and notes on the others.

    A first night has no artifact yet and a token may lack ``actions: read``: Hypothesis
    warns and reads nothing. Under the test suite's ``filterwarnings = error`` that warning,
    raised inside a property's first fetch, would fail the property; once fetched, it is not
    raised again. A download that fails in a way Hypothesis does not catch (a reply that is
    not the JSON it expects) leaves that artifact out: an earlier night's examples are worth
    having, not worth failing a night for.
    """
    usable: list[ExampleDatabase] = []
    notes: list[str] = []
    for db in databases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for _ in db.fetch(b"hessdiff: prime"):
                    pass
            except Exception as exc:  # noqa: BLE001 - see above
                notes.append(f"{db!r}: left out: {type(exc).__name__}: {exc}".splitlines()[0])
                continue
        usable.append(db)
        notes += [f"{db!r}: {str(w.message).strip()}" for w in caught]
    return usable, notes


def leg_database(local: Path, environ: Mapping[str, str] | None = None) -> tuple[ExampleDatabase, list[str]]:
    """The folder ``local``'s database, with the artifacts ``HESSDIFF_ARTIFACTS`` names read-only.

    Each artifact (comma-separated names) is downloaded here (``prime``), with
    ``GITHUB_TOKEN`` if set. Returns the database and notes on the artifacts read.

    Raises:
        DatabaseError: ``HESSDIFF_ARTIFACTS`` without a usable ``GITHUB_REPOSITORY``, or a
            local folder that cannot be used.
    """
    env = os.environ if environ is None else environ
    names = [n.strip() for n in env.get(ARTIFACTS_ENV, "").split(",") if n.strip()]
    previous, notes = prime(artifact_databases(names, env.get("GITHUB_REPOSITORY", "")) if names else [])
    return remembering_database(local, previous), notes


def database_from_env(environ: Mapping[str, str] | None = None) -> tuple[ExampleDatabase | None, list[str]]:
    """``leg_database`` of the folder ``HESSDIFF_DATABASE`` names; ``(None, [])`` if it is unset."""
    env = os.environ if environ is None else environ
    local = env.get(DATABASE_ENV, "").strip()
    return leg_database(Path(local), env) if local else (None, [])


@final
class SavedCases:
    """A campaign's failing cases in an example database, one key per variants and dtype.

    Arguments:
        database: where the cases are kept (``remembering_database``).
        variants: the campaign's variant names; the key holds them sorted, so the same
            leg finds its cases whatever order its backends were named in.
    """

    def __init__(self, database: ExampleDatabase, variants: Sequence[str]) -> None:
        self.database = database
        self.variants = tuple(sorted(variants))

    def key(self, dtype: str) -> bytes:
        return f"hessdiff campaign|{','.join(self.variants)}|{dtype}".encode()

    def take(self, dtypes: Sequence[str]) -> list[Case]:
        """Every saved case of these dtypes, each deleted from the local side as it is taken
        (the read-only side keeps it): the campaign saves again the case of each failing
        finding it makes, so a fault that is fixed stops being replayed. A value that is no
        case (or names an op this hessdiff lacks) is skipped."""
        cases = []
        for dtype in dtypes:
            for value in list(self.database.fetch(self.key(dtype))):
                self.database.delete(self.key(dtype), value)
                case = _case_from_bytes(value, dtype)
                if case is not None:
                    cases.append(case)
        return cases

    def save(self, case: Case) -> None:
        self.database.save(self.key(case.dtype), case_to_bytes(case))


def case_to_bytes(case: Case) -> bytes:
    """The case as canonical JSON (float64 point, exact): the same case, the same bytes."""
    point = [float(v) for v in np.asarray(case.point, dtype=np.float64)]
    return json.dumps({"program": case.program.to_json(), "point": point, "dtype": case.dtype},
                      sort_keys=True).encode()


def _case_from_bytes(value: bytes, dtype: str) -> Case | None:
    try:
        data = json.loads(value)
        if data["dtype"] != dtype:
            return None
        program = program_from_json(data["program"])
        point = np.asarray(data["point"], dtype=np.float64)
    except (ValueError, KeyError, TypeError, ProgramError):
        return None
    if point.shape != (program.n,):
        return None
    return Case(program, point, dtype)

