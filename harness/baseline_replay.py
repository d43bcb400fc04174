"""Baseline entries that replay: each known fault carries its minimal repro, and
``hessdiff baseline check`` runs every one again on the installed versions.

A campaign that did not meet a known fault has not shown it fixed: it only did not draw
it. The one evidence that a fault is gone is its own minimal program, at its own point,
run by the variant that showed it, and judged again. So an entry holds that repro (the
finding's program, point, dtype, variant, what the variant returned, what the oracle
gave, and the versions), ``record_repros`` fills it from a campaign's findings, and
``replay_baseline`` says per entry: *reproduces*, *fixed* (the variant now passes, or
fails otherwise), or *cannot run* (no repro yet, the framework or variant is not
installed, the program is out of the oracle's domain).

Replays run in worker processes (``hessdiff.harness.worker.isolate``), one per
framework: a known fault may be a segfault, and it must end its own replay, not the
command.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

import numpy as np

from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.case import Case
from hessdiff.harness.findings import Finding, finding_from_json
from hessdiff.harness.outcomes import HarnessError

__all__ = ["REPRO_KEYS", "Replay", "record_repros", "replay_baseline", "repro_of"]

# What an entry's repro holds: enough to run it again (program, point, dtype, variant,
# kind) and to say what changed (observed, expected, the versions it was seen with).
REPRO_KEYS = ("signature", "kind", "variant", "route", "dtype", "program", "program_text", "point",
              "observed", "expected", "versions")

REPRODUCES, FIXED, CANNOT_RUN = "reproduces", "fixed", "cannot run"


@dataclass(frozen=True)
class Replay:
    """What replaying one entry showed."""

    entry: BaselineEntry
    status: str  # REPRODUCES, FIXED or CANNOT_RUN
    detail: str
    # For a fault that reproduces: whether the entry still knows it as blamed today (an
    # entry naming a rule matches a finding by its blame, and a change to blame, or to the
    # framework, can move the fault to another rule the entry does not name).
    matched: bool = True

    def line(self) -> str:
        return f"{self.status.upper():<11} {self.entry.signature}: {self.detail}"


def repro_of(finding: Finding) -> dict[str, Any]:
    """The part of a finding's JSON an entry keeps as its repro."""
    data = finding.to_json()
    return {key: data[key] for key in REPRO_KEYS}


def record_repros(baseline: Baseline, findings: Iterable[Finding]) -> tuple[Baseline, list[BaselineEntry]]:
    """``baseline`` with a repro on every entry that has none and that a failing finding
    matches (the smallest such finding: fewest ops, then fewest inputs), and the entries
    that got one. An entry's existing repro is kept: it is what was filed upstream."""
    best: dict[str, Finding] = {}
    for finding in findings:
        if not finding.kind.is_failure:
            continue
        entry = baseline.entry_for(finding)
        if entry is None or entry.repro is not None:
            continue
        held = best.get(entry.signature)
        if held is None or _size(finding) < _size(held):
            best[entry.signature] = finding
    entries = tuple(replace(e, repro=repro_of(best[e.signature])) if e.signature in best else e
                    for e in baseline.entries)
    return replace(baseline, entries=entries), [e for e in entries if e.signature in best]


def _size(finding: Finding) -> tuple[int, int, str]:
    return len(finding.program.nodes), finding.program.n, finding.signature


def replay_baseline(baseline: Baseline, *, timeout: float = 120.0) -> list[Replay]:
    """Run every entry's repro again with the installed frameworks, each variant in a
    worker process; one ``Replay`` per entry, in the baseline's order."""
    from hessdiff.harness.run import UsageError, select_variants
    from hessdiff.harness.worker import isolate

    findings: dict[str, Finding] = {}
    replays: dict[str, Replay] = {}
    for entry in baseline.entries:
        if entry.repro is None:
            replays[entry.signature] = Replay(entry, CANNOT_RUN, "no repro recorded (hessdiff baseline record)")
        else:
            findings[entry.signature] = finding_from_json(entry.repro)
    variants = {}
    for name in sorted({f.variant for f in findings.values()}):
        try:
            variants[name] = select_variants(name, err=io.StringIO())[0]
        except UsageError as exc:
            variants[name] = str(exc)
    runnable = [v for v in variants.values() if not isinstance(v, str)]
    runners = {r.name: r for r in isolate(runnable, timeout=timeout)}
    try:
        for entry in baseline.entries:
            if entry.signature in findings:
                finding = findings[entry.signature]
                variant = variants[finding.variant]
                if isinstance(variant, str):
                    replays[entry.signature] = Replay(entry, CANNOT_RUN, variant)
                else:
                    replays[entry.signature] = _replay(entry, finding, runners[variant.name])
    finally:
        for runner in runners.values():
            runner.close()
    return [replays[e.signature] for e in baseline.entries]


def _replay(entry: BaselineEntry, finding: Finding, runner: Any) -> Replay:
    from hessdiff.harness.engine import check_case

    case = Case(finding.program, np.asarray(finding.point, dtype=np.float64), finding.dtype)
    result = check_case(case, [runner])
    version = runner.variant.backend.version()
    if result.status != "judged":
        return Replay(entry, CANNOT_RUN, f"{runner.name} {version}: the oracle cannot judge it ({result.status})")
    same = [v for v in result.verdicts if v.variant == runner.name and v.kind is finding.kind]
    if same:
        detail = f"{runner.name} {version}: {same[0].explanation}"
        if not entry.names_rule:  # an entry of ops alone: no blame to match
            return Replay(entry, REPRODUCES, detail)
        from hessdiff.harness.blame import blame

        try:
            blamed = blame(case, runner).to_json()
        except HarnessError as exc:
            return Replay(entry, REPRODUCES, f"{detail} (not blamed: {exc})", matched=False)
        now = replace(finding, blame=blamed)
        if entry.matches(now.signature):
            return Replay(entry, REPRODUCES, detail)
        return Replay(entry, REPRODUCES, f"{detail} Blamed now as `{blamed['root_cause']}`, which this entry "
                                         "does not name: a campaign would report it as new; rewrite the entry.",
                      matched=False)
    outcome = result.outcomes.get(runner.name)
    now = [v.kind.value for v in result.verdicts if v.variant == runner.name and v.kind.is_failure]
    if now:
        return Replay(entry, FIXED, f"{runner.name} {version} now fails as {', '.join(now)}, not as "
                                    f"{finding.kind.value}: a change, to be looked at")
    returned = None if outcome is None or outcome.hessian is None else np.asarray(outcome.hessian).tolist()
    return Replay(entry, FIXED, f"{runner.name} {version} now passes: returns {returned}")


def print_replays(replays: Sequence[Replay], out: TextIO) -> int:
    """Print one line per entry and a count; the number of entries that are fixed."""
    for r in replays:
        print(r.line(), file=out)
    counts = {s: sum(r.status == s for r in replays) for s in (REPRODUCES, FIXED, CANNOT_RUN)}
    moved = sum(not r.matched for r in replays if r.status == REPRODUCES)
    print(f"{len(replays)} entries: {counts[REPRODUCES]} reproduce"
          + (f" ({moved} blamed on a rule the entry does not name)" if moved else "")
          + f", {counts[FIXED]} fixed, {counts[CANNOT_RUN]} cannot run", file=out)
    return counts[FIXED]

