"""Reading a written report folder back for the HTML pages: its findings, run and coverage.

A report folder is what ``hessdiff.harness.report.write_report`` leaves (``findings.json``,
``merged.json`` after a merge, ``campaign.json`` or ``coverage.json``); a folder that is not
one raises ``HtmlError``, whose message names the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hessdiff.harness.findings import Finding, FindingError, finding_from_json

__all__ = ["HtmlError", "Item", "PAGE", "coverage_of", "load_report", "merged_coverage", "read_json"]

PAGE = "finding.html"


class HtmlError(ValueError):
    """The folder is not a report that can be rendered; the message names the file."""


@dataclass
class Item:
    """A finding with its place in the report and what its page shows."""

    number: int
    folder: str
    status: str
    upstream: str
    finding: Finding
    shards: list[str] = field(default_factory=list)
    worst: float | None = None  # max |error| / bound over defined entries

    @property
    def page(self) -> str:
        return f"{self.folder}/{PAGE}"

    @property
    def ops(self) -> str:
        return "+".join(sorted(self.finding.program.op_names)) or "(no ops)"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HtmlError(f"{path.parent}: no {path.name} there; is it the folder of a hessdiff report?") from None
    except OSError as exc:
        raise HtmlError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HtmlError(f"{path} is not valid JSON: {exc}") from None


def load_report(report_dir: Path) -> tuple[dict[str, Any], list[Item], list[str]]:
    data = read_json(report_dir / "findings.json")
    if not isinstance(data, Mapping) or not isinstance(data.get("findings"), list):
        raise HtmlError(f"{report_dir / 'findings.json'} is not a report's findings.json (no 'findings' list).")
    items = []
    for k, record in enumerate(data["findings"], start=1):
        try:
            finding = finding_from_json(record)
        except FindingError as exc:
            raise HtmlError(f"{report_dir / 'findings.json'}: finding {k}: {exc}") from None
        folder = str(record.get("folder") or "")
        if not re.fullmatch(r"findings/[A-Za-z0-9_.-]+", folder):
            raise HtmlError(f"{report_dir / 'findings.json'}: finding {k} has no finding folder "
                            f"(folder={folder!r}); write the report with hessdiff run or merge.")
        items.append(Item(int(record.get("number", k)), folder, str(record.get("status", "new")),
                           str(record.get("upstream", "") or ""), finding))
    merged = report_dir / "merged.json"
    if merged.is_file():
        shards = {str(r.get("signature")): list(r.get("shards", [])) for r in read_json(merged).get("findings", [])}
        for item in items:
            item.shards = shards.get(item.finding.signature, [])
    run = dict(data.get("run") or {})
    fixed = [str(s) for s in (data.get("baseline") or {}).get("fixed", [])]
    return run, items, fixed


def coverage_of(report_dir: Path) -> dict[str, Any] | None:
    for name, key in (("campaign.json", "coverage"), ("coverage.json", None)):
        path = report_dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            cov = data.get(key) if key else data
            if isinstance(cov, Mapping) and cov:
                return dict(cov)
    return None


def merged_coverage(findings_paths: Iterable[str | Path]) -> dict[str, Any] | None:
    """The coverage of several reports added up (each from its folder's campaign.json or
    coverage.json); None when none of them recorded any."""
    total: dict[str, dict[str, dict[str, int]]] = {}
    found = False
    for path in findings_paths:
        cov = coverage_of(Path(path).parent)
        if not cov:
            continue
        found = True
        for op_name, per_op in cov.items():
            for variant, cell in dict(per_op).items():
                out = total.setdefault(str(op_name), {}).setdefault(str(variant), {})
                for key, value in dict(cell).items():
                    out[key] = out.get(key, 0) + int(value)
    return total if found else None
