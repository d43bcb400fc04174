"""Shared pieces of the relation and scenario properties: cost scaling and the failure
report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from hessdiff.harness.baseline import Baseline
from hessdiff.harness.findings import Finding
from hessdiff.harness.report import write_report


def cost_scaled(divisor: int) -> Callable[[Any], Any]:
    """The loaded profile's settings with ``max_examples`` divided by ``divisor``.

    A relation check runs every variant of a backend several times per example (both
    dtypes, finite differences, probes); dividing keeps the profile's meaning (ci small
    and derandomized, nightly large) at a cost comparable to the campaign's property.
    Deadlines stay as the profile sets them.
    """
    current = settings()
    return settings(current, max_examples=max(3, current.max_examples // divisor))


def assert_no_new_findings(findings: list[Finding], baseline: Baseline, out_dir: Path) -> None:
    """Fail with each new fault's explanation, after writing their report to ``out_dir``."""
    new = [f for f in findings if f.kind.is_failure and baseline.entry_for(f) is None]
    if not new:
        return
    paths = write_report(out_dir, new, baseline=baseline, run_info={"source": "properties"})
    lines = [f"[{f.kind.value}] {f.signature}: {f.explanation}" for f in new]
    lines.append(f"report with repro.py and env.txt per finding: {paths.out_dir}")
    raise AssertionError("\n".join(lines))


@pytest.fixture(scope="session")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a failing property writes its findings' report (repro.py, env.txt, ...)."""
    return tmp_path_factory.mktemp("relation-findings")
