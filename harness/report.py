"""A run's report: ``findings.json``, ``summary.md``, ``junit.xml`` and one folder per finding.

Layout of ``out_dir`` (``reports/<run>/``, git-ignored)::

    findings.json        every finding, the run info and the baseline split
    findings.jsonl       the crash-safe log appended while the campaign runs
    summary.md           what a human reads first (also appended to GitHub's step summary)
    junit.xml            for CI: a failure per new fault, a skip per baselined one
    findings/001-<slug>/ repro.py, env.txt, finding.json

Every file is written to a temporary file and renamed, so a report is never half written.

This module writes the folder; the findings' order and records are
``hessdiff.harness.report_rows``, and each file has its own renderer: ``summary_md``,
``junit_xml``, ``findings_jsonl`` (the log, appended by the campaign, not here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.findings import Finding
from hessdiff.harness.json_safe import json_safe
from hessdiff.harness.junit_xml import render_junit
from hessdiff.harness.report_rows import Row, finding_record, ordered_rows
from hessdiff.harness.repro import EXIT_INCONCLUSIVE, render_env, render_repro
from hessdiff.harness.summary_md import append_step_summary, render_summary

__all__ = ["ReportPaths", "write_report"]

_FOLDER = re.compile(r"^\d{3,}-")


@dataclass(frozen=True)
class ReportPaths:
    """Where ``write_report`` put everything.

    Arguments:
        problems: findings whose reproducer could not be rendered, and a step summary
            that could not be written; the rest of the report is complete regardless.
    """

    out_dir: Path
    findings_json: Path
    summary_md: Path
    junit_xml: Path
    finding_dirs: tuple[Path, ...]
    step_summary: Path | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)


def write_report(
    out_dir: str | Path,
    findings: Iterable[Finding],
    *,
    baseline: Baseline,
    run_info: Mapping[str, Any],
    coverage: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
) -> ReportPaths:
    """Write the report of one run into ``out_dir``.

    Arguments:
        out_dir: the run's folder (created if missing).
        findings: the run's (deduplicated) findings.
        baseline: the known issues (``hessdiff.harness.baseline.load_baseline``).
        run_info: seed, budget, examples tried, versions, ... as JSON-ready values;
            ``checks_per_variant`` (variant -> number of cases checked) feeds the tables.
        coverage: op -> variant -> ``{"checks", "special", "findings"}``, if recorded.

    Returns:
        A ``ReportPaths``. If ``GITHUB_STEP_SUMMARY`` is set, ``summary.md`` is also
        appended there, truncated to keep that file under 1 MiB.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    findings = list(findings)
    checks = {str(k): int(v) for k, v in dict(run_info.get("checks_per_variant", {})).items()}
    checked = set(checks) if checks else None
    _, _, fixed = baseline.split(findings, checked_variants=checked)
    rows = ordered_rows(findings, baseline)
    problems: list[str] = []

    finding_dirs = _write_finding_folders(out, rows, problems)
    _atomic_write(out / "findings.json", _findings_json(rows, fixed, run_info))
    summary = render_summary(rows, fixed, run_info, checks, coverage)
    _atomic_write(out / "summary.md", summary)
    _atomic_write(out / "junit.xml", render_junit(rows, checks))

    step_summary = None
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        try:
            append_step_summary(Path(target), summary)
            step_summary = Path(target)
        except OSError as exc:
            problems.append(f"cannot append to GITHUB_STEP_SUMMARY={target}: {exc.strerror}")
    return ReportPaths(
        out, out / "findings.json", out / "summary.md", out / "junit.xml",
        tuple(finding_dirs), step_summary, tuple(problems),
    )


def _write_finding_folders(out: Path, rows: list[Row], problems: list[str]) -> list[Path]:
    root = out / "findings"
    root.mkdir(exist_ok=True)
    wanted = {Path(row.folder).name for row in rows}
    for stale in root.iterdir():  # folders of an earlier report into the same out_dir
        if stale.is_dir() and _FOLDER.match(stale.name) and stale.name not in wanted:
            shutil.rmtree(stale)
    dirs = []
    for row in rows:
        folder = out / row.folder
        folder.mkdir(exist_ok=True)
        try:
            repro = render_repro(row.finding)
        except Exception as exc:  # noqa: BLE001 - one unrenderable finding must not lose the report
            problems.append(f"{row.folder}: cannot render repro.py: {type(exc).__name__}: {exc}")
            repro = _repro_stub(row.finding, exc)
        _atomic_write(folder / "repro.py", repro)
        _atomic_write(folder / "env.txt", render_env(row.finding))
        _atomic_write(folder / "finding.json", _dumps(finding_record(row)))
        dirs.append(folder)
    return dirs


def _repro_stub(finding: Finding, exc: BaseException) -> str:
    reason = f"{type(exc).__name__}: {exc}".replace("\\", "\\\\").replace('"""', "'''")
    return (
        f'"""hessdiff could not render a reproducer for {finding.signature}.\n\n'
        f"{reason}\n\nThe finding is in finding.json next to this file.\n"
        '"""\n'
        f'print("INCONCLUSIVE: no reproducer could be rendered")\n'
        f"raise SystemExit({EXIT_INCONCLUSIVE})\n"
    )


def _findings_json(rows: list[Row], fixed: list[BaselineEntry], run_info: Mapping[str, Any]) -> str:
    return _dumps({
        "run": dict(run_info),
        "findings": [finding_record(row) for row in rows],
        "baseline": {
            "new": [row.finding.signature for row in rows if row.entry is None],
            "known": [row.finding.signature for row in rows if row.entry is not None],
            "fixed": [entry.signature for entry in fixed],
        },
    })


def _dumps(data: Any) -> str:
    return json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
