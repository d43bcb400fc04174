"""``hessdiff merge``: the shard reports of a nightly run combined into one report.

Each shard (one framework-version environment, one seed) writes its own ``findings.json``.
The same fault is usually found by several shards, each on its own minimal program; the
merged report keeps one finding per signature (the smallest program any shard found, so
the repro stays minimal), adds up the raw hit counts, keeps the earliest ``first_seen``
and the latest ``last_seen``, and records which shards saw it. The merged folder is a
normal report (``hessdiff.harness.report.write_report``): findings.json, summary.md, junit.xml,
a repro folder per finding, plus ``merged.json`` with the per-signature bookkeeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hessdiff.harness.baseline import Baseline
from hessdiff.harness.findings import Finding, FindingError, finding_from_json
from hessdiff.harness.report import ReportPaths, write_report

__all__ = ["MergeError", "MergedFinding", "Shard", "load_shard", "merge_shards"]


class MergeError(ValueError):
    """A shard report is unreadable or malformed; the message names the file."""


@dataclass(frozen=True)
class Shard:
    """One shard's report: its name (the run name, else its folder), run info and findings."""

    name: str
    path: Path
    run: Mapping[str, Any]
    findings: tuple[Finding, ...]


@dataclass
class MergedFinding:
    """One signature across shards.

    Arguments:
        finding: the representative (smallest program), with the summed count and the
            earliest first / latest last seen.
        shards: the names of the shards that found it, in the order given.
    """

    finding: Finding
    shards: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {"signature": f.signature, "count": f.count, "shards": list(self.shards),
                "first_seen": f.first_seen, "last_seen": f.last_seen}


def load_shard(path: str | Path) -> Shard:
    """Read one shard's ``findings.json`` (as ``write_report`` writes it)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MergeError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MergeError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("findings"), list):
        raise MergeError(f"{path} is not a report's findings.json (no 'findings' list); "
                         "pass reports/*/findings.json.")
    run = data.get("run") if isinstance(data.get("run"), Mapping) else {}
    try:
        findings = tuple(finding_from_json(record) for record in data["findings"])
    except FindingError as exc:
        raise MergeError(f"{path}: {exc}") from None
    name = str(run.get("name") or path.parent.name)
    return Shard(name, path, run, findings)


def _size(finding: Finding) -> tuple[int, int, int]:
    return (finding.program.size, len(finding.program.nodes), finding.program.n)


def _earliest(a: str, b: str) -> str:
    return min((t for t in (a, b) if t), default="")


def _latest(a: str, b: str) -> str:
    return max((t for t in (a, b) if t), default="")


def merge_shards(shards: Sequence[Shard]) -> list[MergedFinding]:
    """One ``MergedFinding`` per signature over ``shards``, in order of first appearance."""
    merged: dict[str, MergedFinding] = {}
    for shard in shards:
        for finding in shard.findings:
            entry = merged.get(finding.signature)
            if entry is None:
                merged[finding.signature] = MergedFinding(replace(finding), [shard.name])
                continue
            old = entry.finding
            best = finding if _size(finding) < _size(old) else old
            entry.finding = replace(
                best,
                count=old.count + finding.count,
                first_seen=_earliest(old.first_seen, finding.first_seen),
                last_seen=_latest(old.last_seen, finding.last_seen),
                versions=dict(best.versions),
            )
            if shard.name not in entry.shards:
                entry.shards.append(shard.name)
    return list(merged.values())


def merged_run_info(shards: Iterable[Shard]) -> dict[str, Any]:
    """The merged report's run info: the shards, their examples and checks added up."""
    shards = list(shards)
    checks: dict[str, int] = {}
    versions: dict[str, list[str]] = {}
    examples = checked = 0
    started = [str(s.run["started"]) for s in shards if s.run.get("started")]
    for shard in shards:
        for variant, count in dict(shard.run.get("checks_per_variant", {})).items():
            checks[str(variant)] = checks.get(str(variant), 0) + int(count)
        for framework, version in dict(shard.run.get("versions", {})).items():
            versions.setdefault(str(framework), [])
            if str(version) not in versions[str(framework)]:
                versions[str(framework)].append(str(version))
        examples += int(shard.run.get("examples", 0) or 0)
        checked += int(shard.run.get("checked_pairs", 0) or 0)
    return {
        "name": "merged",
        "shards": [s.name for s in shards],
        **({"started": min(started)} if started else {}),  # the nightly's date, for the trend page
        "examples": examples,
        "checked_pairs": checked,
        "versions": {k: ", ".join(v) for k, v in versions.items()},
        "checks_per_variant": checks,
    }


def merge_reports(paths: Sequence[str | Path], out: str | Path, *, baseline: Baseline) -> tuple[
        list[MergedFinding], ReportPaths]:
    """Merge the shard reports at ``paths`` into a report written to ``out``.

    Besides the usual report files, ``out/merged.json`` lists, per signature, the summed
    count, first and last seen, and the shards that found it.
    """
    if not paths:
        raise MergeError("no findings.json given; pass reports/*/findings.json.")
    shards = [load_shard(p) for p in paths]
    names = [s.name for s in shards]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:  # two shards of one name: tell them apart by folder
        shards = [replace(s, name=f"{s.name}@{s.path.parent}") if s.name in duplicates else s for s in shards]
    merged = merge_shards(shards)
    run_info = merged_run_info(shards)
    paths_out = write_report(out, [m.finding for m in merged], baseline=baseline, run_info=run_info)
    record = {"shards": [{"name": s.name, "path": str(s.path), "findings": len(s.findings)} for s in shards],
              "findings": [m.to_json() for m in merged]}
    (Path(out) / "merged.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return merged, paths_out


__all__ += ["merge_reports", "merged_run_info"]
