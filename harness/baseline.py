"""The known-issues baseline: findings already reported upstream, committed with the repo.

``reports/baseline.json`` lists signatures (``Finding.signature``) with the upstream
issue and a note::

    {"entries": [{"signature": "equinox|fwd-over-rev|wrong_value|float64|relu|relu(T) @ at 0",
                  "upstream": "https://github.com/patrick-kidger/equinox/issues/801",
                  "note": "filter_hessian of relu is 1 instead of 0"}]}

A signature is ``framework|route|kind|dtype|op|rule @ region`` for a fault blamed on one
node's derivative rule, ``framework|route|kind|dtype|ops|composition`` for one no single
node shows. The route (``registry.variant_route``: modes and machinery, "rev-over-rev+tape")
may be a comma-separated list of fnmatch patterns, ``*`` for every variant of the
framework; the op(s) and the rule part may hold patterns too, so one entry covers a
family: ``mlx|*|nonfinite|float32|tanh|tanh(T) @ *``. The ops of a composition are matched
with a ``+`` on each side as well, so ``*+max+*`` is a program with the op ``max`` (and not
``maximum``). An entry in the older form ``variant|kind|dtype|ops[|rule]`` is refused with
the command that rewrites it (``hessdiff baseline upgrade``). A run's findings split into
*new* (not in the baseline: these fail CI), *known* (baselined) and the baseline entries
the run did not hit (not replayed: a campaign that did not meet a fault has not shown it
fixed).

A baseline for pinned framework versions (``regression/baseline-eqx0114.json``) holds only
what differs there and names the main one it builds on::

    {"extends": "../reports/baseline.json", "entries": [...]}

Its entries come first and replace an inherited entry of the same signature (a repro
recorded on the pinned versions); every other entry of the extended file is inherited, so
an entry added to or dropped from the main baseline is added or dropped in every pinned
one (copies went stale: one kept 16 entries the main baseline had dropped).

An entry may carry its ``repro``: the minimal finding that shows the fault (program,
point, dtype, variant, the Hessians it returned and the oracle's, the versions).
``hessdiff baseline record REPORT`` fills it from a run's findings, and
``hessdiff baseline check`` replays every entry on the installed versions
(``hessdiff.harness.baseline_replay``): the only way an entry is said to be fixed.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hessdiff.backends.registry import variant_route
from hessdiff.harness.findings import Finding, FindingError, Kind, finding_from_json

__all__ = ["Baseline", "BaselineEntry", "BaselineError", "load_baseline", "write_baseline"]

_WILDCARDS = frozenset("*?[")


def _route_matches(route: str, patterns: str) -> bool:
    """Whether a variant's route is one of an entry's comma-separated route patterns."""
    return any(fnmatch.fnmatchcase(route, p) for p in patterns.split(","))


class BaselineError(ValueError):
    """The baseline file is unreadable or malformed."""


@dataclass(frozen=True)
class BaselineEntry:
    """One known issue.

    Arguments:
        signature: ``framework|route|kind|dtype|op|rule @ region`` for a fault blamed on
            one node (``Finding.signature``: ``op`` is the blamed node's), or
            ``framework|route|kind|dtype|ops|composition`` and ``...|ops`` (any finding on
            those ops); the route (comma-separated patterns), ops and rule parts may hold
            fnmatch wildcards.
        upstream: the URL of the upstream issue ("" if not filed yet).
        note: a line for humans.
        repro: the minimal finding that shows the fault (``baseline_replay.REPRO_KEYS``:
            program, point, dtype, variant, observed and expected Hessians, versions), so
            ``hessdiff baseline check`` can run it again; None until recorded.
    """

    signature: str
    upstream: str = ""
    note: str = ""
    repro: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def is_pattern(self) -> bool:
        return any(ch in _WILDCARDS for ch in self.signature) or "," in self.route

    @property
    def backend(self) -> str:
        return self.signature.split("|", 1)[0]

    @property
    def route(self) -> str:
        """The route part: comma-separated patterns over ``registry.variant_route``."""
        return self.signature.split("|", 2)[1]

    @property
    def where(self) -> str:
        """Framework and route, for messages (``torch|rev-over-rev+tape``)."""
        return f"{self.backend}|{self.route}"

    @property
    def names_rule(self) -> bool:
        """Whether the entry names a blamed rule and region (six parts), not ops alone."""
        return len(self.signature.split("|", 5)) == 6

    def matches(self, signature: str) -> bool:
        """Whether a finding's signature is this entry (exactly, or by its patterns).

        An entry of five parts (``framework|route|kind|dtype|ops``) speaks of the ops
        alone and matches a blamed finding's signature whatever its rule; one of six names
        the rule and region as well (``...|exp(T) @ tiny``, wildcards allowed) and matches
        only a finding blamed on it."""
        mine = self.signature.split("|", 5)
        theirs = signature.split("|", 5)
        if len(theirs) < 5 or (len(mine) == 6 and len(theirs) != 6):
            return False
        if not self.is_pattern:
            return theirs[:len(mine)] == mine
        return (
            theirs[0] == mine[0]
            and _route_matches(theirs[1], mine[1])
            and theirs[2:4] == mine[2:4]
            and (fnmatch.fnmatchcase(theirs[4], mine[4]) or fnmatch.fnmatchcase(f"+{theirs[4]}+", mine[4]))
            and (len(mine) == 5 or fnmatch.fnmatchcase(theirs[5], mine[5]))
        )

    def covers_variant(self, variant: str) -> bool:
        """Whether this entry speaks of ``variant`` ("torch:autograd"): its framework,
        and a route its route part matches."""
        return variant.partition(":")[0] == self.backend and _route_matches(variant_route(variant), self.route)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"signature": self.signature, "upstream": self.upstream, "note": self.note}
        if self.repro is not None:
            data["repro"] = dict(self.repro)
        return data


@dataclass(frozen=True)
class Baseline:
    """The known issues; empty when there is no baseline file."""

    entries: tuple[BaselineEntry, ...] = ()
    path: str = ""
    extends: str = ""
    """The file this one builds on, as written in it (relative to this file's folder)."""
    inherited: tuple[BaselineEntry, ...] = field(default=(), compare=False, repr=False)
    """The entries that came from ``extends`` unchanged (``write_baseline`` leaves them out)."""

    def __repr__(self) -> str:
        # Short: Hypothesis prints a failing property's fixtures, and a 40 kB repr of
        # every entry made it raise a HypothesisWarning in place of the failure itself.
        return f"Baseline({len(self.entries)} entries from {self.path or 'nowhere'!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """The short repr in Hypothesis' printer too, which prints a dataclass field by
        field and ignores ``__repr__``: with every entry, a failing property's call was
        40 kB, Hypothesis warned about it, the suite's warnings-as-errors raised the
        warning during one replay of the example and not another, and the failure was
        reported as FlakyStrategyDefinition instead of the framework's exception."""
        printer.text(repr(self))

    def names_rules(self, variant: str, kind: str, dtype: str) -> bool:
        """Whether an entry that names a rule (``...|exp(T) @ *``) may cover a fault of
        ``variant``, ``kind`` and ``dtype``: only a blamed finding can match one, so a
        hit such an entry may know is blamed before it is looked up (unshrunk)."""
        for entry in self.entries:
            parts = entry.signature.split("|", 5)
            if entry.names_rule and parts[2:4] == [kind, dtype] and entry.covers_variant(variant):
                return True
        return False

    def entry_for(self, finding: Finding | str) -> BaselineEntry | None:
        """The entry covering ``finding`` (or a signature): an exact entry before a pattern."""
        signature = finding if isinstance(finding, str) else finding.signature
        matching = [e for e in self.entries if e.matches(signature)]
        if not matching:
            return None
        return min(matching, key=lambda e: e.is_pattern)

    def split(
        self, findings: Iterable[Finding], *, checked_variants: Iterable[str] | None = None
    ) -> tuple[list[Finding], list[Finding], list[BaselineEntry]]:
        """Split a run's findings by the baseline.

        Arguments:
            findings: the run's findings.
            checked_variants: the variants the run exercised. An entry for a variant the
                run did not check is not reported as fixed (it was not tried). ``None``
                means every entry's variant was checked.

        Returns:
            ``(new, known, fixed)``: findings not in the baseline, findings in it, and the
            entries no finding matched (not hit by this run; not shown fixed).
        """
        new: list[Finding] = []
        known: list[Finding] = []
        used: set[BaselineEntry] = set()
        for finding in findings:
            entry = self.entry_for(finding)
            if entry is None:
                new.append(finding)
            else:
                known.append(finding)
                used.add(entry)
        checked = None if checked_variants is None else set(checked_variants)
        fixed = [
            e for e in self.entries
            if e not in used and (checked is None or any(e.covers_variant(v) for v in checked))
        ]
        return new, known, fixed

    def to_json(self) -> dict[str, Any]:
        """The file's content: with ``extends``, the entries of its own only (an inherited
        entry given a repro here is its own now, and replaces the inherited one)."""
        if not self.extends:
            return {"entries": [e.to_json() for e in self.entries]}
        inherited = {id(e) for e in self.inherited}
        return {"extends": self.extends, "entries": [e.to_json() for e in self.entries if id(e) not in inherited]}


def load_baseline(path: str | Path, _seen: tuple[Path, ...] = ()) -> Baseline:
    """Read a baseline file; a missing file is an empty baseline.

    Raises ``BaselineError`` (one line naming the file and the entry) if it is malformed,
    or if the file it extends is missing, malformed or extends it back.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Baseline((), str(path))
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("entries"), list):
        raise BaselineError(f'baseline {path} must be an object {{"entries": [...]}}.')
    unknown = sorted(set(data) - {"entries", "extends"})
    if unknown:
        raise BaselineError(f"baseline {path} has unknown keys {unknown}; allowed: entries, extends.")
    entries: list[BaselineEntry] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["entries"]):
        entry = _entry(path, i, raw)
        if entry.signature in seen:
            raise BaselineError(
                f"baseline {path}: entries {seen[entry.signature]} and {i} have the same "
                f"signature {entry.signature!r}; keep one."
            )
        seen[entry.signature] = i
        entries.append(entry)
    extends = data.get("extends", "")
    if not extends:
        return Baseline(tuple(entries), str(path))
    return _extend(path, extends, entries, _seen)


def _extend(path: Path, extends: Any, entries: list[BaselineEntry], seen: tuple[Path, ...]) -> Baseline:
    """``entries`` of the baseline at ``path`` on top of the one it extends."""
    if not isinstance(extends, str):
        raise BaselineError(f"baseline {path}: extends={extends!r}, but it must be a path (relative to {path.parent}).")
    base_path = (path.parent / extends).resolve()
    chain = (*seen, path.resolve())
    if base_path in chain:
        raise BaselineError(f"baseline {path} extends {extends}, which extends it back.")
    if not base_path.is_file():
        raise BaselineError(f"baseline {path} extends {extends}, which is not a file.")
    base = load_baseline(base_path, chain)
    own = {e.signature for e in entries}
    inherited = tuple(e for e in base.entries if e.signature not in own)
    return Baseline((*entries, *inherited), str(path), extends, inherited)


def _entry(path: Path, i: int, raw: Any) -> BaselineEntry:
    where = f"baseline {path}: entry {i}"
    if not isinstance(raw, Mapping):
        raise BaselineError(f"{where} must be an object with 'signature', 'upstream', 'note'.")
    unknown = sorted(set(raw) - {"signature", "upstream", "note", "repro"})
    if unknown:
        raise BaselineError(f"{where} has unknown keys {unknown}; allowed: signature, upstream, note, repro.")
    signature, upstream, note = raw.get("signature"), raw.get("upstream", ""), raw.get("note", "")
    for name, value in (("signature", signature), ("upstream", upstream), ("note", note)):
        if not isinstance(value, str):
            raise BaselineError(f"{where}: {name}={value!r}, but it must be a string.")
    parts = signature.split("|")
    if len(parts) in (4, 5) and ":" in parts[0]:
        raise BaselineError(
            f"{where}: signature={signature!r} is in the older form 'variant|kind|dtype|ops'; "
            f"`hessdiff baseline upgrade {path}` rewrites it as 'framework|route|kind|dtype|ops'."
        )
    # Every part but the ops may not be empty: a program whose output is a constant has none.
    if len(parts) not in (5, 6) or not all(parts[:4] + parts[5:]):
        raise BaselineError(
            f"{where}: signature={signature!r}, but it must be 'framework|route|kind|dtype|ops' or "
            "'framework|route|kind|dtype|op|rule @ region' (copy it from findings.json)."
        )
    backend, _, kind, dtype = parts[:4]
    if any(ch in _WILDCARDS for ch in backend + kind + dtype) or ":" in backend:
        raise BaselineError(
            f"{where}: signature={signature!r}; the framework, kind and dtype are plain names "
            "(patterns go in the route, ops and rule parts)."
        )
    if kind not in {k.value for k in Kind}:
        raise BaselineError(
            f"{where}: kind {kind!r}, but it must be one of {sorted(k.value for k in Kind)}."
        )
    if dtype not in ("float32", "float64"):
        raise BaselineError(f"{where}: dtype {dtype!r}, but it must be 'float32' or 'float64'.")
    if upstream and not upstream.startswith(("https://", "http://")):
        raise BaselineError(f"{where}: upstream={upstream!r}, but it must be an http(s) URL.")
    repro = raw.get("repro")
    if repro is not None:
        try:
            finding_from_json(repro)
        except (FindingError, AttributeError, TypeError) as exc:
            raise BaselineError(f"{where}: its repro is not a finding hessdiff can run: {exc}") from None
    return BaselineEntry(signature, upstream, note, repro)


def write_baseline(baseline: Baseline, path: str | Path) -> None:
    """Write ``baseline`` as ``load_baseline`` reads it (two-space JSON, one entry per object)."""
    Path(path).write_text(json.dumps(baseline.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
