"""``hessdiff run`` and ``hessdiff replay``: a campaign from the command line.

Everything found is appended to ``<out>/findings.jsonl`` the moment it is found, and a
Ctrl-C still writes the partial report, so nothing found is lost. Exit codes: 0 no new
failure, 1 new failures (not in the baseline), 3 hessdiff's own errors, 130 interrupted.
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from backends import BackendVariant, all_backends, all_variants
from harness.baseline import Baseline, load_baseline
from harness.campaign import Campaign, CampaignConfig, CampaignStats
from harness.engine import check_case
from harness.findings import Finding, load_findings
from harness.report import append_finding, write_report
from harness.strategies import DEFAULT_OPS, Case

__all__ = ["UsageError", "parse_budget", "replay", "run", "select_variants"]

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
    """The variants named by ``--backends`` (all available ones by default).

    A named backend that is not installed is an error; with no ``--backends``, missing
    frameworks are skipped with one line each.
    """
    names = [s.strip() for s in spec.split(",") if s.strip()] if spec else None
    try:
        variants = all_variants(names)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
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
            f"[{now - stats.started:5.0f}s/{self.budget:.0f}s] examples {stats.examples} | "
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
) -> int:
    """Run a campaign, write its report, return the exit code."""
    variants = select_variants(backends, err=stderr)
    try:
        baseline = load_baseline(baseline_path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    config = CampaignConfig(budget_seconds=budget, seed=seed, dtypes=tuple(dtypes), ops=tuple(ops),
                            max_ops=max_ops)
    campaign = Campaign(
        variants, config,
        on_finding=lambda f: append_finding(out, f),
        on_progress=_Progress(stderr, budget),
    )
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    interrupted = False
    try:
        campaign.run()
    except KeyboardInterrupt:
        interrupted = True
    findings = campaign.result()
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
        **stats.to_json(),
    }
    paths = write_report(out, findings, baseline=baseline, run_info=run_info, coverage=_plain(stats.coverage))
    new, known, fixed = baseline.split(findings, checked_variants=[v.name for v in variants])
    new_failing = [f for f in new if f.kind.is_failure]
    if stderr.isatty():
        stderr.write("\n")
    print(
        f"hessdiff: {stats.examples} examples, {len(findings)} findings "
        f"({len(new_failing)} new failing, {len(known)} baselined, {len(fixed)} baseline entries "
        f"not reproduced); report: {paths.summary_md}",
        file=stdout,
    )
    for problem in paths.problems:
        print(f"hessdiff: report problem: {problem}", file=stderr)
    for error in stats.harness_errors:
        print(f"hessdiff: internal error (a hessdiff bug, not a framework's): {error}", file=stderr)
    if interrupted:
        return EXIT_INTERRUPTED
    if stats.harness_errors:
        return EXIT_HARNESS
    return EXIT_NEW_FINDINGS if new_failing else EXIT_OK


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
