"""``summary.md``: what a human reads first, and its copy in GitHub's job summary.

Sections: the verdict line, root causes (one row per blamed rule), findings per variant
and kind, the top findings, new vs baselined, the run's facts and, when recorded,
coverage (``hessdiff.harness.coverage_md``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hessdiff.backends.registry import variant_modes
from hessdiff.harness.baseline import BaselineEntry
from hessdiff.harness.coverage_md import coverage_section
from hessdiff.harness.findings import Kind
from hessdiff.harness.json_safe import json_safe
from hessdiff.harness.report_rows import Row

__all__ = [
    "STEP_SUMMARY_LIMIT", "append_step_summary", "first_sentence", "md", "render_summary", "silent_variants"]

# GitHub refuses a job summary larger than 1 MiB.
STEP_SUMMARY_LIMIT = 1024 * 1024
TOP_FINDINGS = 20
LIST_LIMIT = 50


def render_summary(
    rows: list[Row],
    fixed: list[BaselineEntry],
    run_info: Mapping[str, Any],
    checks: Mapping[str, int],
    coverage: Mapping[str, Mapping[str, Mapping[str, int]]] | None,
) -> str:
    new_failures = [r for r in rows if r.status == "new"]
    known = [r for r in rows if r.status == "known"]
    dismissed = [r for r in rows if r.status == "dismissed"]
    title = run_info.get("name") or run_info.get("run") or ""
    lines = [f"# hessdiff report{': ' + md(str(title)) if title else ''}", ""]
    verdict = "**no new failures**" if not new_failures else f"**{len(new_failures)} new failure(s)**"
    lines += [
        f"{verdict} · {len(known)} baselined · {len(fixed)} baseline "
        f"{'entry' if len(fixed) == 1 else 'entries'} not hit · "
        f"{len(dismissed)} dismissed "
        f"(convention/noise) · {len(rows)} finding(s) in total",
        "",
    ]
    if run_info.get("hessian_entries_judged"):
        lines += [
            f"Hessian entries judged against the oracle: {run_info['hessian_entries_judged']}; "
            f"ill-conditioned, so unjudged (an honest error bound larger than the entry): "
            f"{run_info.get('hessian_entries_ill_conditioned', 0)} "
            f"({100 * float(run_info.get('unjudged_frac', 0.0)):.2f}%).",
            "",
        ]
    lines += _root_causes(rows)
    lines += _variant_table(rows, checks)
    lines += _silent_variants(run_info, checks)
    lines += _top_findings(rows)
    lines += _baseline_section(new_failures, known, fixed)
    lines += _run_section(run_info, rows)
    if coverage is not None:
        lines += coverage_section(coverage)
    return "\n".join(lines).rstrip("\n") + "\n"


def _root_causes(rows: list[Row]) -> list[str]:
    """One row per root cause (``Finding.root_cause`` without its dtype): the blamed rule
    and region, the framework, the dtypes, variants and modes it shows in, its hits, when it was
    first and last seen, and its smallest program. A maintainer reads this table, not one
    line per variant and program that carried the same broken rule."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        f = row.finding
        if f.root_cause is not None and f.kind.is_failure:
            backend, cause, kind, _ = f.root_cause.split("|")
            groups.setdefault((backend, cause, kind), []).append(row)
    failing = [r for r in rows if r.finding.kind.is_failure]
    if not failing:
        return []
    unblamed = len(failing) - sum(len(g) for g in groups.values())
    lines = ["## Root causes", "",
             f"{len(groups)} root cause(s) blamed among {len(failing)} failing finding(s)"
             + (f"; {unblamed} not blamed (baselined findings are not shrunk, so not blamed; "
                "a crash or hang of the whole call has no rule to blame)" if unblamed else "") + ".", ""]
    if not groups:
        return lines
    lines += ["| status | framework | rule @ region | kind | dtypes | variants | modes | hits | first seen "
              "| last seen | smallest repro |",
              "| --- | --- | --- | --- | --- | --- | --- | ---: | --- | --- | --- |"]
    order = {"new": 0, "known": 1, "dismissed": 2}
    for (backend, cause, kind), group in sorted(groups.items(), key=lambda kv: (
            min(order[r.status] for r in kv[1]), kv[0])):
        status = min((r.status for r in group), key=order.__getitem__)
        smallest = min(group, key=lambda r: (r.finding.program.size, r.number))
        dtypes = ", ".join(sorted({r.finding.dtype for r in group}))
        variants = ", ".join(f"`{v.split(':', 1)[1]}`" for v in sorted({r.finding.variant for r in group}))
        # which compositions of modes show it: forward-over-forward alone is a forward-mode rule's
        modes = ", ".join(sorted({m for r in group if (m := variant_modes(r.finding.variant))})) or "—"
        first = min((r.finding.first_seen for r in group if r.finding.first_seen), default="")
        last = max((r.finding.last_seen for r in group if r.finding.last_seen), default="")
        lines.append(
            f"| {'**new**' if status == 'new' else status} | {backend} | `{md(cause)}` | {kind} | {dtypes} "
            f"| {variants} | {modes} | {sum(r.finding.count for r in group)} | {first} | {last} "
            f"| [{Path(smallest.folder).name}]({smallest.folder}/repro.py) |")
    return lines + [""]


def _variant_table(rows: list[Row], checks: Mapping[str, int]) -> list[str]:
    variants = sorted(set(checks) | {r.finding.variant for r in rows})
    if not variants:
        return ["No variant was checked and nothing was found.", ""]
    kinds = list(Kind)
    lines = [
        "## Findings per variant and kind",
        "",
        "Cells count distinct findings (raw hits in parentheses when more); `·` is none.",
        "",
        "| variant | cases checked | " + " | ".join(k.value for k in kinds) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in kinds) + " |",
    ]
    for variant in variants:
        cells = []
        for kind in kinds:
            hits = [r.finding for r in rows if r.finding.variant == variant and r.finding.kind is kind]
            count, raw = len(hits), sum(f.count for f in hits)
            cell = "·" if not count else (f"**{count}**" if kind.is_failure else str(count))
            cells.append(cell + (f" ({raw})" if raw > count else ""))
        checked = str(checks[variant]) if variant in checks else "?"
        lines.append(f"| `{variant}` | {checked} | " + " | ".join(cells) + " |")
    return lines + [""]


def silent_variants(run_info: Mapping[str, Any], checks: Mapping[str, int]) -> dict[str, str]:
    """The variants a run was asked to check that computed no Hessian at all, each with
    its outcomes ("512 unsupported"): an older release lacking the variant's API
    (equinox 0.11.0 has no eqx.filter_hessian) must not leave a run silently checking
    nothing of a framework."""
    outcomes: dict[str, list[str]] = {}
    for key, count in dict(run_info.get("outcomes", {})).items():
        variant, _, status = str(key).rpartition("|")
        if status != "ok":
            outcomes.setdefault(variant, []).append(f"{count} {status}")
    return {str(v): ", ".join(outcomes.get(str(v), [])) or "never run"
            for v in run_info.get("variants", []) if not checks.get(str(v))}


def _silent_variants(run_info: Mapping[str, Any], checks: Mapping[str, int]) -> list[str]:
    silent = silent_variants(run_info, checks)
    if not silent:
        return []
    listed = "; ".join(f"`{v}` ({what})" for v, what in silent.items())
    return [f"**Variants that computed no Hessian in this run**: {listed}. `hessdiff check` on one of "
            "the programs shows why (an API the installed release lacks is named).", ""]


def _top_findings(rows: list[Row]) -> list[str]:
    if not rows:
        return []
    lines = ["## Top findings", ""]
    for row in rows[:TOP_FINDINGS]:
        f = row.finding
        ops = "+".join(sorted(f.program.op_names))
        bits = [f"**{f.severity}**", f"[{Path(row.folder).name}]({row.folder}/)",
                f"`{f.variant}` {f.kind.value} {f.dtype} on {ops}"]
        if f.blame is not None:
            bits.append(f"blamed rule: `{f.blame.get('root_cause') or f.blame.get('rule', '?')}`")
        if f.kind in (Kind.WRONG_VALUE, Kind.CONVENTION, Kind.NOISE) and f.max_error:
            bits.append(f"max error {f.max_error:.3g}")
        if f.count > 1:
            bits.append(f"{f.count} hits")
        if f.provisional:
            bits.append("not minimised (the run was killed in its round; `--resume` minimises it)")
        bits.append({"new": "**new**", "known": "baselined", "dismissed": "dismissed"}[row.status])
        text = " · ".join(bits)
        why = first_sentence(f.explanation or f.error)
        lines.append(f"{row.number}. {text}" + (f" — {md(why)}" if why else ""))
    if len(rows) > TOP_FINDINGS:
        lines.append(f"\n…and {len(rows) - TOP_FINDINGS} more in `findings.json`.")
    return lines + [""]


def _baseline_section(new: list[Row], known: list[Row], fixed: list[BaselineEntry]) -> list[str]:
    lines = ["## New vs baselined", ""]
    lines.append(f"**New failures** (these fail CI): {len(new)}")
    lines += [f"- [`{r.finding.signature}`]({r.folder}/)" for r in new[:LIST_LIMIT]]
    if len(new) > LIST_LIMIT:
        lines.append(f"- …and {len(new) - LIST_LIMIT} more")
    lines += ["", f"**Baselined** (known upstream): {len(known)}"]
    for r in known[:LIST_LIMIT]:
        link = f" → {r.entry.upstream}" if r.entry and r.entry.upstream else " (no upstream link)"
        lines.append(f"- [`{r.finding.signature}`]({r.folder}/){link}")
    if len(known) > LIST_LIMIT:
        lines.append(f"- …and {len(known) - LIST_LIMIT} more")
    lines += ["", f"**Not hit by this run** (not replayed: a campaign's silence is not a fix): {len(fixed)}"]
    for e in fixed[:LIST_LIMIT]:
        extra = (f" → {e.upstream}" if e.upstream else "") + (f" ({md(e.note)})" if e.note else "")
        lines.append(f"- `{e.signature}`{extra}")
    if len(fixed) > LIST_LIMIT:
        lines.append(f"- …and {len(fixed) - LIST_LIMIT} more")
    return lines + [""]


def _run_section(run_info: Mapping[str, Any], rows: list[Row]) -> list[str]:
    lines = ["## Run", "", "| | |", "| --- | --- |"]
    for key, value in run_info.items():
        if key in ("checks_per_variant", "versions"):
            continue
        structured = isinstance(value, (Mapping, list, tuple))
        shown = json.dumps(json_safe(value)) if structured else str(value)
        lines.append(f"| {md(str(key).replace('_', ' '))} | {md(shown)} |")
    versions: dict[str, str] = {}
    for row in rows:
        versions.update(row.finding.versions)
    versions.update({str(k): str(v) for k, v in dict(run_info.get("versions", {})).items()})
    if versions:
        text = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        lines.append(f"| versions | {md(text)} |")
    return lines + [""]


def first_sentence(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    match = re.match(r"(.+?[.!?])(\s|$)", line)
    sentence = match.group(1) if match else line
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def md(text: str) -> str:
    """Safe inside a Markdown table cell or list item: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def append_step_summary(path: Path, summary: str) -> None:
    """Append ``summary``, truncated at a line so that the file stays under the limit."""
    try:
        used = path.stat().st_size
    except FileNotFoundError:
        used = 0
    budget = STEP_SUMMARY_LIMIT - used - 1  # strictly under the limit
    data = summary.encode("utf-8")
    if len(data) > budget:
        note = "\n\n_…summary truncated to fit GitHub's 1 MiB limit; see summary.md in the report._\n"
        room = budget - len(note.encode("utf-8"))
        if room <= 0:
            return
        cut = data[:room]
        newline = cut.rfind(b"\n")
        cut = cut[: newline + 1] if newline >= 0 else b""
        data = cut.decode("utf-8", errors="ignore").encode("utf-8") + note.encode("utf-8")
    with open(path, "ab") as fh:
        fh.write(data)
        fh.flush()
