"""Nights remember: a failing case an earlier night saved is replayed first, found again, and
the earlier night's database (a GitHub artifact in the workflow) is only ever read.

No network: a local folder stands in for the artifact (``_Artifact``: like
``GitHubArtifactDatabase``, it raises if written), made read-only by the same factory
(``remembering_database``) that wraps the ``GitHubArtifactDatabase`` on a nightly leg.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import final

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import (DirectoryBasedExampleDatabase, ExampleDatabase, GitHubArtifactDatabase,
                                 MultiplexedDatabase, ReadOnlyDatabase)
from hypothesis.errors import HypothesisWarning

from hessdiff.backends import BackendVariant, register
from hessdiff.backends.registry import unregister
from hessdiff.harness import cli
from hessdiff.harness.campaign import Campaign, CampaignConfig
from hessdiff.harness.case import Case
from hessdiff.harness.findings import Kind
from hessdiff.harness.parse import parse_program
from hessdiff.harness.profiles import register_profiles
from hessdiff.harness.remembered import (DatabaseError, SavedCases, artifact_databases, case_to_bytes,
                                         database_from_env, prime, remembering_database)
from hessdiff.harness.run import run
from planted import PlantedBackend

# (x0 + x1)^2: every Hessian entry is 2, so the variant that drops cross terms is wrong here.
CROSS = Case(parse_program("square(sum(x))", 2), np.array([0.25, -1.5]), "float64")
OPS = ("relu", "square", "mul", "add", "sub", "sum", "sin")


@pytest.fixture(scope="module")
def planted():
    backend = register(PlantedBackend())
    yield backend
    unregister(backend.name)


@final
class _Artifact(ExampleDatabase):
    """A folder standing in for an earlier night's GitHub artifact: read like one, and, like
    ``GitHubArtifactDatabase``, raising on any write (the factory must make it read-only)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self._folder = DirectoryBasedExampleDatabase(folder)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self._folder.fetch(key)

    def save(self, key: bytes, value: bytes) -> None:
        raise RuntimeError("an earlier night's artifact is read-only")

    def delete(self, key: bytes, value: bytes) -> None:
        raise RuntimeError("an earlier night's artifact is read-only")

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        raise RuntimeError("an earlier night's artifact is read-only")


def _files(folder: Path) -> dict[str, bytes]:
    """Everything in ``folder``, to see that nothing was written or deleted there."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _saved(database: ExampleDatabase, variant: BackendVariant, dtype: str = "float64") -> list[bytes]:
    return sorted(database.fetch(SavedCases(database, [variant.name]).key(dtype)))


def _config(rounds: int) -> CampaignConfig:
    return CampaignConfig(budget_seconds=600, seed=3, max_rounds=rounds, round_examples=8, dtypes=("float64",),
                          max_ops=3, ops=OPS, max_n=3, steer=0)


def test_a_failing_case_an_earlier_night_saved_is_found_again_and_the_artifact_never_written(
        planted, tmp_path: Path) -> None:
    variant = BackendVariant(planted, "no_cross")
    artifact = tmp_path / "artifact"  # the previous night's upload
    SavedCases(DirectoryBasedExampleDatabase(artifact), [variant.name]).save(CROSS)
    before = _files(artifact)
    database = remembering_database(tmp_path / "local", [_Artifact(artifact)])

    campaign = Campaign([variant], _config(rounds=0), saved=SavedCases(database, [variant.name]))
    campaign.run()

    assert campaign.stats.replayed == 1
    (found,) = [f for f in campaign.result() if f.kind.is_failure]
    assert (found.variant, found.kind) == ("planted:no_cross", Kind.WRONG_VALUE)
    assert found.program == CROSS.program
    # Saved again on this night's side, for the next night; the artifact as it was.
    assert _saved(DirectoryBasedExampleDatabase(tmp_path / "local"), variant) == [case_to_bytes(CROSS)]
    assert _files(artifact) == before


def test_replaying_first_leaves_the_seeded_draws_alone_and_forgets_what_passes_now(
        planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The saved case is checked before anything is drawn, and the round draws what its seed
    decides, as in a campaign with nothing saved. A saved case that passes now (the fault
    was fixed) is forgotten on this night's side, never in the artifact."""
    honest = BackendVariant(planted, "honest")
    artifact, local = tmp_path / "artifact", tmp_path / "local"
    SavedCases(DirectoryBasedExampleDatabase(artifact), [honest.name]).save(CROSS)
    SavedCases(DirectoryBasedExampleDatabase(local), [honest.name]).save(CROSS)  # an earlier local run's
    before = _files(artifact)

    def checked(saved: SavedCases | None) -> list[bytes]:
        seen: list[bytes] = []
        campaign = Campaign([honest], _config(rounds=1), saved=saved)
        check = campaign._check
        monkeypatch.setattr(campaign, "_check", lambda case: (seen.append(case_to_bytes(case)), check(case))[1])
        campaign.run()
        return seen

    plain = checked(None)
    database = remembering_database(local, [_Artifact(artifact)])
    remembering = checked(SavedCases(database, [honest.name]))

    assert plain and remembering == [case_to_bytes(CROSS), *plain]
    assert _saved(DirectoryBasedExampleDatabase(local), honest) == []
    assert _files(artifact) == before


def test_a_property_replays_the_example_an_earlier_night_saved(tmp_path: Path) -> None:
    """The property suite's side: Hypothesis itself replays the artifact's example (the reuse
    phase alone finds it), saves it locally, and writes nothing to the artifact."""
    artifact, local = tmp_path / "artifact", tmp_path / "local"
    tried: list[int] = []

    def night(database: ExampleDatabase, phases: Iterable[Phase]) -> None:
        @settings(database=database, phases=tuple(phases), derandomize=False, max_examples=300)
        @given(st.integers(0, 10_000))
        def below_5000(x: int) -> None:
            tried.append(x)
            assert x < 5000

        with pytest.raises(AssertionError):
            below_5000()

    night(DirectoryBasedExampleDatabase(artifact), (Phase.generate, Phase.shrink))  # the night that found it
    before = _files(artifact)
    assert before
    tried.clear()
    night(remembering_database(local, [_Artifact(artifact)]), (Phase.reuse,))
    assert tried[0] == 5000
    assert _files(artifact) == before
    assert _files(local)


def test_the_key_names_the_variants_and_dtype_not_their_order_nor_the_seed(tmp_path: Path) -> None:
    database = DirectoryBasedExampleDatabase(tmp_path)
    assert SavedCases(database, ["jax:fwdrev", "mlx:revrev"]).key("float32") == \
        SavedCases(database, ["mlx:revrev", "jax:fwdrev"]).key("float32")
    assert SavedCases(database, ["jax:fwdrev"]).key("float32") != SavedCases(database, ["jax:fwdrev"]).key("float64")
    saved = SavedCases(database, ["jax:fwdrev"])
    saved.save(CROSS)
    database.save(saved.key("float64"), b"not a case")
    (case,) = saved.take(("float64", "float32"))
    assert case_to_bytes(case) == case_to_bytes(CROSS) and case.point.tolist() == [0.25, -1.5]
    assert list(database.fetch(saved.key("float64"))) == []  # taken, and the junk dropped


def test_the_nightly_profile_remembers_in_the_leg_folder_and_ci_never(tmp_path: Path) -> None:
    try:
        assert register_profiles({"HESSDIFF_DATABASE": str(tmp_path / "db")}) == []
        nightly = settings.get_profile("nightly").database
        assert nightly == MultiplexedDatabase(DirectoryBasedExampleDatabase(tmp_path / "db"))
        assert settings.get_profile("ci").database is None
        register_profiles({})
        assert not isinstance(settings.get_profile("nightly").database, MultiplexedDatabase)
    finally:
        register_profiles()


def test_artifacts_are_read_from_the_repository_read_only(tmp_path: Path) -> None:
    (shared,) = artifact_databases(["examples-differential-latest-seed1"], "owner/repo")
    assert shared == GitHubArtifactDatabase("owner", "repo", artifact_name="examples-differential-latest-seed1")
    database = remembering_database(tmp_path, [shared])
    assert database == MultiplexedDatabase(DirectoryBasedExampleDatabase(tmp_path), ReadOnlyDatabase(shared))
    assert database_from_env({}) == (None, [])
    with pytest.raises(DatabaseError, match=r"GITHUB_REPOSITORY='', but it must be owner/name"):
        database_from_env({"HESSDIFF_DATABASE": str(tmp_path), "HESSDIFF_ARTIFACTS": "examples-x"})


@final
class _NoArtifactYet(ExampleDatabase):
    """What ``GitHubArtifactDatabase`` does on a first night: warn, and read nothing."""

    def fetch(self, key: bytes) -> Iterable[bytes]:
        warnings.warn("Couldn't acquire a new or existing artifact. Disabling database.", HypothesisWarning,
                      stacklevel=2)
        return iter(())

    def save(self, key: bytes, value: bytes) -> None:
        raise RuntimeError("read-only")

    def delete(self, key: bytes, value: bytes) -> None:
        raise RuntimeError("read-only")


@final
class _BadReply(ExampleDatabase):
    """A download that fails in a way Hypothesis does not catch (a reply it cannot parse)."""

    def fetch(self, key: bytes) -> Iterable[bytes]:
        raise KeyError("artifacts")

    def save(self, key: bytes, value: bytes) -> None:
        raise RuntimeError("read-only")

    def delete(self, key: bytes, value: bytes) -> None:
        raise RuntimeError("read-only")


def test_a_first_night_without_an_artifact_is_a_note_not_an_error() -> None:
    first_night, bad = _NoArtifactYet(), _BadReply()
    usable, (warned, left_out) = prime([first_night, bad])  # under filterwarnings=error, not raised
    assert usable == [first_night]
    assert "Couldn't acquire a new or existing artifact" in warned
    assert "left out: KeyError" in left_out


def test_a_database_folder_that_cannot_be_used_is_a_usage_error(tmp_path: Path, capsys, monkeypatch) -> None:
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(DatabaseError, match="cannot be an example database folder"):
        remembering_database(afile)
    code = cli.main(["run", "--backends", "jax:fwdrev", "--budget", "1s", "--out", str(tmp_path / "out"),
                     "--database", str(afile), "--no-isolate"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot be an example database folder" in err, err
    monkeypatch.setenv("HESSDIFF_ARTIFACTS", "examples-x")
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    code = cli.main(["run", "--backends", "jax:fwdrev", "--budget", "1s", "--out", str(tmp_path / "out"),
                     "--database", str(tmp_path / "db"), "--no-isolate"])
    err = capsys.readouterr().err
    assert code == 2 and "GITHUB_REPOSITORY=''" in err, err


@pytest.mark.slow  # two whole runs, reports included
def test_hessdiff_run_with_a_database_replays_the_last_runs_failures(planted, tmp_path: Path) -> None:
    """``hessdiff run --database DIR`` end to end: the second run starts from what the first
    saved (its findings.json says how many cases were replayed) and finds those faults again.
    One round each, not a time budget: a 6-second budget found nothing in CI, where the
    sweep before round 0 took all of it."""
    def once(name: str) -> dict:
        code = run(backends="planted:pl_gradient", budget=600.0, rounds=1, seed=3, dtypes=["float64"], out=tmp_path / name,
                   baseline_path=tmp_path / "no-baseline.json", ops=("relu", "add", "sum", "square"), max_ops=3,
                   stdout=io.StringIO(), stderr=io.StringIO(), isolate=False, database=tmp_path / "db")
        assert code == 1
        return json.loads((tmp_path / name / "findings.json").read_text())

    first = once("first")
    failing = {f["signature"] for f in first["findings"] if f["kind"] in {k.value for k in Kind if k.is_failure}}
    assert first["run"]["replayed"] == 0 and failing
    second = once("second")
    assert second["run"]["replayed"] == len(failing)
    assert failing <= {f["signature"] for f in second["findings"]}
