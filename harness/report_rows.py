"""The findings in report order, each with its number, folder and baseline status (``Row``).

Every file of a report (``findings.json``, ``summary.md``, ``junit.xml``, the finding
folders) lists the findings in this one order: most severe first, new before baselined,
most hits first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.findings import Finding

__all__ = ["Row", "finding_record", "ordered_rows"]

_SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2, "info": 3}


@dataclass(frozen=True)
class Row:
    """A finding with its place in the report."""

    number: int
    finding: Finding
    folder: str
    entry: BaselineEntry | None

    @property
    def status(self) -> str:
        if self.entry is not None:
            return "known"
        return "new" if self.finding.kind.is_failure else "dismissed"


def ordered_rows(findings: list[Finding], baseline: Baseline) -> list[Row]:
    def key(f: Finding) -> tuple[Any, ...]:
        known = baseline.entry_for(f) is not None
        return (_SEVERITY_RANK[f.severity], known, -f.count, f.signature)

    ordered = sorted(findings, key=key)
    width = max(3, len(str(len(ordered))))
    rows = []
    for number, finding in enumerate(ordered, start=1):
        folder = f"findings/{number:0{width}d}-{_slug(finding)}"
        rows.append(Row(number, finding, folder, baseline.entry_for(finding)))
    return rows


def _slug(finding: Finding, limit: int = 60) -> str:
    ops = "-".join(sorted(finding.program.op_names)) or "noops"
    text = f"{finding.variant}-{finding.kind.value}-{finding.dtype}-{ops}".lower()
    text = re.sub(r"[^a-z0-9_]+", "-", text).strip("-")
    return text[:limit].rstrip("-")


def finding_record(row: Row) -> dict[str, Any]:
    record = row.finding.to_json()
    record["number"] = row.number
    record["folder"] = row.folder
    record["status"] = row.status
    record["upstream"] = row.entry.upstream if row.entry else ""
    return record
