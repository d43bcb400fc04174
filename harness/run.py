"""``hessdiff run`` and ``hessdiff replay``: a campaign from the command line.

Everything found is appended to ``<out>/findings.jsonl`` the moment it is found, and a
Ctrl-C still writes the partial report, so nothing found is lost. Exit codes: 0 no new
failure, 1 new failures (not in the baseline), 3 hessdiff's own errors, 130 interrupted.

Each variant runs in a worker process (``hessdiff.harness.worker``): a framework that segfaults,
aborts, runs out of memory or hangs is a crash or timeout finding, and the campaign goes
on. ``<out>/campaign.json`` records the configuration and the rounds completed (after
each round's findings are logged), so ``--resume <out>`` continues the same campaign:
round k has the same seed as in an uninterrupted run, the findings already logged are
not reported again, and the round a kill -9 interrupted is run again from its seed.
A fault is logged at its first hit, before its round ends and minimises it (a
*provisional* finding), so a kill -9 loses at most the example in flight.

With ``--database DIR`` (a nightly leg sets ``HESSDIFF_DATABASE``) the campaign first
replays the failing cases saved there and in earlier nights' artifacts, and saves its own
(``hessdiff.harness.remembered``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from hessdiff.backends import BackendVariant, all_backends, campaign_variants
from hessdiff.backends.registry import broken_plugins
from hessdiff.harness.baseline import Baseline, load_baseline
from hessdiff.harness.bounds import with_bounds
from hessdiff.harness.campaign import Campaign, CampaignConfig
from hessdiff.harness.campaign_stats import CampaignStats
from hessdiff.harness.case import Case
from hessdiff.harness.engine import check_case
from hessdiff.harness.findings import Finding, FindingError, latest_findings, load_findings
from hessdiff.harness.findings_jsonl import append_finding, read_jsonl
from hessdiff.harness.html_report import html_note
from hessdiff.harness.remembered import DatabaseError, SavedCases, leg_database
from hessdiff.harness.report import write_report
from hessdiff.harness.strategies import DEFAULT_OPS
from hessdiff.harness.summary_md import silent_variants

__all__ = ["STATE_FILE", "UsageError", "load_state", "parse_budget", "replay", "run", "select_variants"]

STATE_FILE = "campaign.json"

EXIT_OK, EXIT_NEW_FINDINGS, EXIT_USAGE, EXIT_HARNESS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(ValueError):
    """Bad input from the user: one line, exit code 2."""


def parse_budget(text: str) -> float:
    """``"60s"``, ``"5m"``, ``"1h"`` or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"--budget={text!r}, but it must be a positive duration like 60s, 5m or 1h.")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def select_variants(spec: str | None, *, err: TextIO = sys.stderr) -> list[BackendVariant]:
    """The variants named by ``--backends`` (all available ones by default), with the
    probes each whole backend runs in the campaign (``registry.campaign_variants``: the
    Hessians in structured inputs, ``equinox:params-filter-hessian`` and the like).

    A named backend that is not installed, or is a broken plugin, is an error; with no
    ``--backends``, missing frameworks and broken plugins are skipped with one line each.
    """
    names = [s.strip() for s in spec.split(",") if s.strip()] if spec else None
    try:
        variants = campaign_variants(names)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    if names is None:
        for broken in broken_plugins():
            print(f"hessdiff: skipping {broken}", file=err)
    out: list[BackendVariant] = []
    reported: set[str] = set()
    for variant in variants:
        status = variant.backend.availability()
        if status.available:
            out.append(variant)
        elif variant.backend.name not in reported:
            reported.add(variant.backend.name)
            if names is not None:
                raise UsageError(status.reason)
            print(f"hessdiff: skipping {status.reason}", file=err)
    if not out:
        raise UsageError("no backend is available; install one, e.g. pip install 'hessdiff[jax]'.")
    return out


@dataclass
class _Progress:
    """A live status line on a terminal, a line every 15 s otherwise (CI logs)."""

    stream: TextIO
    budget: float
    last: float = 0.0

    def __call__(self, stats: CampaignStats, findings: list[Finding]) -> None:
        now = time.monotonic()
        tty = self.stream.isatty()
        if now - self.last < (0.5 if tty else 15.0):
            return
        self.last = now
        failing = sum(1 for f in findings if f.kind.is_failure)
        times = " ".join(f"{k} {v:.1f}s" for k, v in sorted(stats.seconds.items()))
        line = (
            f"[{now - stats.started:5.0f}s/{self.budget:.0f}s] examples {stats.examples} "
            f"({stats.checked} points checked) | "
            f"findings {len(findings)} ({failing} failing) | {times}"
        )
        self.stream.write(("\r" + line[:150].ljust(150)) if tty else line + "\n")
        self.stream.flush()


def run(
    *,
    backends: str | None,
    budget: float,
    seed: int,
    dtypes: Sequence[str],
    out: Path,
    baseline_path: Path,
    ops: Sequence[str] = DEFAULT_OPS,
    max_ops: int = 6,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    isolate: bool = True,
    timeout: float = 120.0,
    resume: bool = False,
    points: int = 1,
    database: Path | None = None,
    rounds: int | None = None,
    judges: int = 1,
) -> int:
    """Run a campaign, write its report, return the exit code.

    With ``isolate`` each variant runs in a worker process with a per-call ``timeout``
    (seconds); ``points`` points are checked per generated program. With ``resume``,
    ``out`` is the folder of an earlier run: its ``campaign.json`` supplies the seed,
    dtypes, ops, points, backends and the round to continue from (the arguments given for
    those are ignored), and its logged findings are known. With ``database`` (a folder)
    the failing cases saved there, and in the artifacts ``HESSDIFF_ARTIFACTS`` names, are
    checked first, and this run's are saved there. With ``rounds`` the campaign stops after
    that many rounds (or at the budget, whichever comes first) and neither sweeps nor cuts
    shrinking short, so what it finds does not depend on the machine's speed or load.
    ``judges`` processes judge a program's points in parallel (1: in this process).
    """
    known: list[Finding] = []
    start_round = 0
    coverage: dict[str, Any] = {}
    if resume:
        state = load_state(out)
        seed, dtypes, ops, max_ops = state["seed"], state["dtypes"], state["ops"], state["max_ops"]
        points = int(state.get("points", points))
        backends = ",".join(state["variants"])
        start_round = int(state["rounds_done"])
        rounds = state.get("rounds", rounds)
        coverage = state.get("coverage") or {}
        try:
            # A provisional finding (its round was killed) is not known: the resumed
            # campaign runs that round again from its seed and minimises it this time.
            known = [f for f in latest_findings(read_jsonl(out)) if not f.provisional]
        except ValueError as exc:
            raise UsageError(f"--resume {out}: {exc}") from None
    variants = select_variants(backends, err=stderr)
    try:
        baseline = load_baseline(baseline_path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not Path(baseline_path).is_file():
        print(f"hessdiff: no baseline at {baseline_path}: every finding counts as new "
              "(run from the repository root, or pass --baseline).", file=stderr)
    saved = None if database is None else _saved_cases(database, variants, stderr)
    out.mkdir(parents=True, exist_ok=True)
    config = CampaignConfig(budget_seconds=budget, seed=seed, dtypes=tuple(dtypes), ops=tuple(ops),
                            max_ops=max_ops, points_per_case=points, max_rounds=rounds, judges=judges)
    state = {"seed": seed, "dtypes": list(dtypes), "ops": list(ops), "max_ops": max_ops, "points": points,
             "variants": [v.name for v in variants], "rounds_done": start_round, "rounds": rounds}
    _save_state(out, state)
    runners: list[BackendVariant] | list[Any] = variants
    if isolate:
        from hessdiff.harness.worker import isolate as isolated

        runners = isolated(variants, timeout=timeout)
    campaign = Campaign(
        runners, config,
        on_finding=lambda f: append_finding(out, f),
        on_progress=_Progress(stderr, budget),
        # The coverage so far goes with each round's state: a resumed campaign steers (and
        # reports) as the uninterrupted one would.
        on_round=lambda rounds: _save_state(
            out, {**state, "rounds_done": rounds, "coverage": _plain(campaign.stats.coverage)}),
        start_round=start_round,
        known=known,
        baseline=baseline,
        coverage=coverage,
        saved=saved,
    )
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    interrupted = False
    try:
        campaign.run()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for runner in runners:
            if not isinstance(runner, BackendVariant):
                runner.close()
    findings = campaign.result() + _unresolved(out, campaign.result())
    stats = campaign.stats
    run_info = {
        "name": out.name,
        "started": started,
        "seed": seed,
        "budget_seconds": budget,
        "dtypes": list(dtypes),
        "variants": [v.name for v in variants],
        "versions": {b.name: b.version() for b in {v.backend for v in variants}},
        "python": platform.python_version(),
        "interrupted": interrupted,
        "resumed_from_round": start_round if resume else None,
        **stats.to_json(),
    }
    findings = with_bounds(findings)  # the per-entry bounds, for the HTML report's |error| / bound
    paths = write_report(out, findings, baseline=baseline, run_info=run_info, coverage=_plain(stats.coverage))
    html = html_note(out, baseline=baseline, coverage=_plain(stats.coverage))
    new, known, fixed = baseline.split(findings, checked_variants=[v.name for v in variants])
    new_failing = [f for f in new if f.kind.is_failure]
    if stderr.isatty():
        stderr.write("\n")
    print(
        f"hessdiff: {stats.examples} examples ({stats.checked} points checked), {len(findings)} findings "
        f"({len(new_failing)} new failing, {len(known)} baselined, {len(fixed)} baseline entries "
        f"not hit); report: {paths.summary_md}",
        file=stdout,
    )
    print(f"hessdiff: {html}", file=stderr if html.startswith("report problem") else stdout)
    if database is not None:
        print(f"hessdiff: {stats.replayed} saved cases replayed first; failing cases saved in {database}",
              file=stdout)
    for problem in paths.problems:
        print(f"hessdiff: report problem: {problem}", file=stderr)
    for variant, what in silent_variants(run_info, stats.checks_per_variant()).items():
        print(f"hessdiff: {variant} computed no Hessian in this run ({what}); see {paths.summary_md}",
              file=stderr)
    for error in stats.harness_errors:
        print(f"hessdiff: internal error (a hessdiff bug, not a framework's): {error}", file=stderr)
    if interrupted:
        return EXIT_INTERRUPTED
    if stats.harness_errors:
        return EXIT_HARNESS
    return EXIT_NEW_FINDINGS if new_failing else EXIT_OK


def _saved_cases(database: Path, variants: Sequence[BackendVariant], stderr: TextIO) -> SavedCases:
    """The campaign's saved cases in ``database`` and earlier nights' artifacts."""
    try:
        db, notes = leg_database(database)
    except DatabaseError as exc:
        raise UsageError(str(exc)) from None
    for note in notes:  # a first night has no artifact yet: said, not fatal
        print(f"hessdiff: earlier nights' examples: {note}", file=stderr)
    return SavedCases(db, [v.name for v in variants])


def load_state(out: Path) -> dict[str, Any]:
    """The configuration and progress of the run in ``out`` (its ``campaign.json``)."""
    path = out / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--resume {out}: no {STATE_FILE} there; is it the folder of a hessdiff run?") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume {out}: cannot read {path}: {exc}") from None
    keys = ("seed", "dtypes", "ops", "max_ops", "variants", "rounds_done")
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise UsageError(f"--resume {out}: {path} lacks one of {keys}; it is not a hessdiff run state.")
    return state


def _save_state(out: Path, state: dict[str, Any]) -> None:
    """Write ``campaign.json`` atomically: a kill -9 leaves the old or the new one."""
    path = out / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _unresolved(out: Path, findings: list[Finding]) -> list[Finding]:
    """Provisional findings in the log that no finding of this run supersedes or explains.

    A resumed campaign normally meets such a fault again and minimises it; if it did not
    (its budget ran out first), the unminimised finding is still reported, not dropped.
    """
    try:
        logged = latest_findings(read_jsonl(out))
    except FindingError:
        return []
    return [
        f for f in logged
        if f.provisional and not any(
            (g.variant, g.kind, g.dtype) == (f.variant, f.kind, f.dtype) and g.program.op_names <= f.program.op_names
            for g in findings
        )
    ]


def _plain(coverage: object) -> dict:
    """Nested defaultdicts to plain dicts for JSON."""
    if isinstance(coverage, dict):
        return {k: _plain(v) for k, v in coverage.items()}
    return coverage  # type: ignore[return-value]


def replay(path: Path, *, stdout: TextIO = sys.stdout) -> int:
    """Re-run each finding in ``path`` against the installed versions.

    Returns 1 if any finding still reproduces (same kind for the same variant), else 0.
    """
    try:
        findings = load_findings(str(path))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    reproduced = 0
    for finding in findings:
        variant = select_variants(finding.variant, err=stdout)[0]
        case = Case(finding.program, np.asarray(finding.point, dtype=np.float64), finding.dtype)
        result = check_case(case, [variant])
        same = [v for v in result.verdicts if v.variant == variant.name and v.kind is finding.kind]
        outcome = result.outcomes.get(variant.name)
        observed = None if outcome is None or outcome.hessian is None else outcome.hessian.tolist()
        if same:
            reproduced += 1
            print(f"REPRODUCES  {finding.signature} ({variant.backend.version()}): {same[0].explanation}",
                  file=stdout)
        else:
            print(f"FIXED       {finding.signature} ({variant.backend.version()}): now returns {observed}",
                  file=stdout)
    return EXIT_NEW_FINDINGS if reproduced else EXIT_OK


__all__ += ["EXIT_HARNESS", "EXIT_INTERRUPTED", "EXIT_NEW_FINDINGS", "EXIT_OK", "EXIT_USAGE", "all_backends",
            "Baseline"]
