"""The report-wide pages: the contexts of ``index.html``, ``coverage.html`` and ``trend.html``.

The index is the run at a glance and one row per finding; the coverage page draws op x
variant checks and special values reached as heatmaps; the trend page, after a merge of
several reports, draws failing findings per framework and findings per kind over time.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.coverage_md import declared_absent
from hessdiff.harness.findings import Kind, finding_from_json
from hessdiff.harness.html_folder import Item, read_json

__all__ = ["coverage_matrices", "coverage_view", "index_context", "seconds", "trend_charts", "trend_rows"]


def index_context(out: Path, run: Mapping[str, Any], items: list[Item], fixed: list[str],
                  coverage: dict[str, Any] | None, baseline: Baseline | None, has_trend: bool) -> dict[str, Any]:
    counts = Counter(item.status for item in items)
    new_failing = sum(1 for i in items if i.status == "new" and i.finding.kind.is_failure)
    versions: dict[str, str] = {}
    for item in items:
        versions.update({str(k): str(v) for k, v in item.finding.versions.items()})
    versions.update({str(k): str(v) for k, v in dict(run.get("versions") or {}).items()})
    fixed_entries: list[BaselineEntry | str] = []
    for signature in fixed:
        match = next((e for e in baseline.entries if e.signature == signature), None) if baseline else None
        fixed_entries.append(match or signature)
    facts = []
    for key, label in (("started", "started"), ("seed", "seed"), ("budget_seconds", "budget"),
                       ("dtypes", "dtypes"), ("examples", "examples"), ("checked_pairs", "points checked"),
                       ("rounds", "rounds"), ("seconds", "time taken"), ("python", "python"),
                       ("resumed_from_round", "resumed from round")):
        value = run.get(key)
        if value is None or value == "":
            continue
        if key in ("budget_seconds", "seconds"):
            value = seconds(value)
        elif isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        facts.append((label, value))
    variants = list(run.get("variants") or sorted(dict(run.get("checks_per_variant") or {})))
    files = [name for name in ("summary.md", "findings.json", "junit.xml", "merged.json", "triage/README.md")
             if (out / name).is_file()]
    return {
        "title": str(run.get("name") or out.name),
        "root": "",
        "run": run,
        "items": items,
        "counts": {"new": new_failing, "known": counts.get("known", 0), "fixed": len(fixed),
                   "dismissed": counts.get("dismissed", 0),
                   "new_other": counts.get("new", 0) - new_failing, "total": len(items)},
        "fixed": fixed_entries,
        "facts": facts,
        "versions": sorted(versions.items()),
        "variants": variants,
        "shards": list(run.get("shards") or []),
        "harness_errors": list(run.get("harness_errors") or []),
        "interrupted": bool(run.get("interrupted")),
        "coverage": coverage,
        "files": files,
        "has_trend": has_trend,
    }


def seconds(value: Any) -> str:
    try:
        s = float(value)
    except (TypeError, ValueError):
        return str(value)
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 60:
        return f"{s / 60:.3g} min"
    return f"{s:.3g} s"


def coverage_view(coverage: Mapping[str, Any] | None, run: Mapping[str, Any]) -> dict[str, Any] | None:
    """Counts per (op, variant) and per (op's special value, variant), with totals."""
    if not coverage:
        return None
    from hessdiff.harness.ops import CATALOGUE

    ops = list(CATALOGUE) + sorted(set(coverage) - set(CATALOGUE))
    variants = sorted({str(v) for per_op in coverage.values() for v in dict(per_op)}
                      | set(map(str, run.get("variants") or [])))
    cell = lambda op_name, v: dict(dict(coverage.get(op_name, {})).get(v, {}))  # noqa: E731
    checks = np.array([[int(cell(o, v).get("checks", 0)) for v in variants] for o in ops], dtype=float)
    absent = np.array([[declared_absent(v, o) for v in variants] for o in ops], dtype=bool)
    found = np.array([[int(cell(o, v).get("findings", 0)) > 0 for v in variants] for o in ops], dtype=bool)
    special_rows, special_counts, special_absent = [], [], []
    for o in ops:
        spec = CATALOGUE.get(o)
        for index, label in enumerate(spec.special_names if spec is not None else ()):
            special_rows.append(f"{o} @ {label}")
            special_counts.append([int(cell(o, v).get(f"special:{index}", 0)) for v in variants])
            special_absent.append([declared_absent(v, o) for v in variants])
    lowered = int((~absent).sum())
    reached_pairs = int(((checks > 0) & ~absent).sum())
    special = np.array(special_counts, dtype=float).reshape(len(special_rows), len(variants))
    reached_specials = int((special.sum(axis=1) > 0).sum()) if special.size else 0
    never_ops = [o for k, o in enumerate(ops) if not checks[k].any()]
    never_specials = [r for k, r in enumerate(special_rows) if not special[k].any()]
    return {
        "ops": ops, "variants": variants, "checks": checks, "absent": absent, "found": found,
        "special_rows": special_rows, "special": special,
        "special_absent": np.array(special_absent, dtype=bool).reshape(special.shape),
        "ops_reached": len(ops) - len(never_ops), "ops_total": len(ops), "never_ops": never_ops,
        "pairs_reached": reached_pairs, "pairs_lowered": lowered,
        "specials_reached": reached_specials, "specials_total": len(special_rows), "never_specials": never_specials,
    }


def coverage_matrices(view: Mapping[str, Any]) -> list[Any]:
    from hessdiff.harness.plots import coverage_matrix

    out = [coverage_matrix(view["checks"], rows=view["ops"], columns=view["variants"], absent=view["absent"],
                           findings=view["found"], prefix="cov",
                           title="checks per op and variant", what="checks (log)")]
    if view["special_rows"]:
        out.append(coverage_matrix(view["special"], rows=view["special_rows"], columns=view["variants"],
                                   absent=view["special_absent"], findings=np.zeros(view["special"].shape, bool),
                                   prefix="spc", title="checks at each special value",
                                   what="checks at the value (log)"))
    return out


def trend_rows(paths: Sequence[str | Path]) -> list[dict[str, Any]] | None:
    """One row per merged report among ``paths``, oldest first (None: fewer than two)."""
    rows = []
    for path in paths:
        path = Path(path)
        data = read_json(path)
        run = dict(data.get("run") or {}) if isinstance(data, Mapping) else {}
        if "shards" not in run:  # a shard, not a merged report
            continue
        findings = [finding_from_json(r) for r in data.get("findings", [])]
        seen = [f.last_seen for f in findings if f.last_seen]
        date = str(run.get("started") or max(seen, default="") or
                   _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds"))
        failing = [f for f in findings if f.kind.is_failure]
        rows.append({
            "date": date,
            "label": date[:16].replace("T", " "),
            "path": str(path),
            "findings": len(findings),
            "failing": len(failing),
            "frameworks": dict(Counter(f.backend for f in failing)),
            "kinds": dict(Counter(f.kind.value for f in findings)),
        })
    if len(rows) < 2:
        return None
    return sorted(rows, key=lambda r: r["date"])


def trend_charts(rows: list[dict[str, Any]]) -> list[Any]:
    from hessdiff.harness.plots import trend_chart

    labels = [r["label"] for r in rows]
    frameworks = sorted({k for r in rows for k in r["frameworks"]})
    kinds = [k.value for k in Kind if any(k.value in r["kinds"] for r in rows)]
    return [
        trend_chart(labels, {fw: [r["frameworks"].get(fw, 0) for r in rows] for fw in frameworks},
                    title="failing findings per framework", prefix="tfw"),
        trend_chart(labels, {k: [r["kinds"].get(k, 0) for r in rows] for k in kinds},
                    title="findings per kind", prefix="tkd"),
    ]
