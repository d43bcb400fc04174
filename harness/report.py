"""A run's report: ``findings.json``, ``summary.md``, ``junit.xml`` and one folder per finding.

Layout of ``out_dir`` (``reports/<run>/``, git-ignored)::

    findings.json        every finding, the run info and the baseline split
    findings.jsonl       the crash-safe log appended while the campaign runs
    summary.md           what a human reads first (also appended to GitHub's step summary)
    junit.xml            for CI: a failure per new fault, a skip per baselined one
    findings/001-<slug>/ repro.py, env.txt, finding.json

Every file is written to a temporary file and renamed, so a report is never half written.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.findings import Finding, FindingError, Kind, finding_from_json
from hessdiff.harness.repro import EXIT_INCONCLUSIVE, render_env, render_repro

__all__ = ["ReportPaths", "STEP_SUMMARY_LIMIT", "append_finding", "read_jsonl", "write_report"]

# GitHub refuses a job summary larger than 1 MiB.
STEP_SUMMARY_LIMIT = 1024 * 1024
TOP_FINDINGS = 20
LIST_LIMIT = 50

_SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2, "info": 3}
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


@dataclass(frozen=True)
class _Row:
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
    rows = _rows(findings, baseline)
    problems: list[str] = []

    finding_dirs = _write_finding_folders(out, rows, problems)
    _atomic_write(out / "findings.json", _findings_json(rows, fixed, run_info))
    summary = _summary(rows, fixed, run_info, checks, coverage)
    _atomic_write(out / "summary.md", summary)
    _atomic_write(out / "junit.xml", _junit(rows, checks))

    step_summary = None
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        try:
            _append_step_summary(Path(target), summary)
            step_summary = Path(target)
        except OSError as exc:
            problems.append(f"cannot append to GITHUB_STEP_SUMMARY={target}: {exc.strerror}")
    return ReportPaths(
        out, out / "findings.json", out / "summary.md", out / "junit.xml",
        tuple(finding_dirs), step_summary, tuple(problems),
    )


def append_finding(out_dir: str | Path, finding: Finding) -> Path:
    """Append ``finding`` as one JSON line to ``out_dir/findings.jsonl``, flushed and fsynced.

    A line left half-written by a crash is dropped first, so the log stays readable.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "findings.jsonl"
    line = (json.dumps(_json_safe(finding.to_json()), allow_nan=False) + "\n").encode("utf-8")
    with open(path, "a+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                fh.truncate(_last_newline_end(fh, size))
                fh.seek(0, os.SEEK_END)
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_jsonl(out_dir: str | Path) -> list[Finding]:
    """The findings logged by ``append_finding``; a truncated last line is ignored.

    Raises ``FindingError`` for a malformed line anywhere else (that is not a crash).
    """
    path = Path(out_dir) / "findings.jsonl"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise FindingError(f"cannot read {path}: {exc.strerror}") from None
    lines = data.split(b"\n")
    complete, last = lines[:-1], lines[-1]
    findings: list[Finding] = []
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FindingError(f"{path}:{number} is not valid JSON: {exc}") from None
        findings.append(finding_from_json(record))
    if last.strip():  # no newline after it: complete only if it parses
        try:
            findings.append(finding_from_json(json.loads(last)))
        except (json.JSONDecodeError, UnicodeDecodeError, FindingError):
            pass
    return findings


# --- rows and folders -------------------------------------------------------------------


def _rows(findings: list[Finding], baseline: Baseline) -> list[_Row]:
    def key(f: Finding) -> tuple[Any, ...]:
        known = baseline.entry_for(f) is not None
        return (_SEVERITY_RANK[f.severity], known, -f.count, f.signature)

    ordered = sorted(findings, key=key)
    width = max(3, len(str(len(ordered))))
    rows = []
    for number, finding in enumerate(ordered, start=1):
        folder = f"findings/{number:0{width}d}-{_slug(finding)}"
        rows.append(_Row(number, finding, folder, baseline.entry_for(finding)))
    return rows


def _slug(finding: Finding, limit: int = 60) -> str:
    ops = "-".join(sorted(finding.program.op_names)) or "noops"
    text = f"{finding.variant}-{finding.kind.value}-{finding.dtype}-{ops}".lower()
    text = re.sub(r"[^a-z0-9_]+", "-", text).strip("-")
    return text[:limit].rstrip("-")


def _write_finding_folders(out: Path, rows: list[_Row], problems: list[str]) -> list[Path]:
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
        _atomic_write(folder / "finding.json", _dumps(_finding_record(row)))
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


def _finding_record(row: _Row) -> dict[str, Any]:
    record = row.finding.to_json()
    record["number"] = row.number
    record["folder"] = row.folder
    record["status"] = row.status
    record["upstream"] = row.entry.upstream if row.entry else ""
    return record


# --- findings.json ----------------------------------------------------------------------


def _findings_json(rows: list[_Row], fixed: list[BaselineEntry], run_info: Mapping[str, Any]) -> str:
    return _dumps({
        "run": dict(run_info),
        "findings": [_finding_record(row) for row in rows],
        "baseline": {
            "new": [row.finding.signature for row in rows if row.entry is None],
            "known": [row.finding.signature for row in rows if row.entry is not None],
            "fixed": [entry.signature for entry in fixed],
        },
    })


def _json_safe(value: Any) -> Any:
    """JSON-ready: NaN/inf as strings, tuples and sets as lists, anything else as str."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        try:
            return _json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _dumps(data: Any) -> str:
    return json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n"


# --- summary.md -------------------------------------------------------------------------


def _summary(
    rows: list[_Row],
    fixed: list[BaselineEntry],
    run_info: Mapping[str, Any],
    checks: Mapping[str, int],
    coverage: Mapping[str, Mapping[str, Mapping[str, int]]] | None,
) -> str:
    new_failures = [r for r in rows if r.status == "new"]
    known = [r for r in rows if r.status == "known"]
    dismissed = [r for r in rows if r.status == "dismissed"]
    title = run_info.get("name") or run_info.get("run") or ""
    lines = [f"# hessdiff report{': ' + _md(str(title)) if title else ''}", ""]
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
    lines += _top_findings(rows)
    lines += _baseline_section(new_failures, known, fixed)
    lines += _run_section(run_info, rows)
    if coverage is not None:
        lines += _coverage_section(coverage)
    return "\n".join(lines).rstrip("\n") + "\n"


def _root_causes(rows: list[_Row]) -> list[str]:
    """One row per root cause (``Finding.root_cause`` without its dtype): the blamed rule
    and region, the framework, the dtypes and variants it shows in, its hits, when it was
    first and last seen, and its smallest program. A maintainer reads this table, not one
    line per variant and program that carried the same broken rule."""
    groups: dict[tuple[str, str, str], list[_Row]] = {}
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
    lines += ["| status | framework | rule @ region | kind | dtypes | variants | hits | first seen | last seen "
              "| smallest repro |",
              "| --- | --- | --- | --- | --- | --- | ---: | --- | --- | --- |"]
    order = {"new": 0, "known": 1, "dismissed": 2}
    for (backend, cause, kind), group in sorted(groups.items(), key=lambda kv: (
            min(order[r.status] for r in kv[1]), kv[0])):
        status = min((r.status for r in group), key=order.__getitem__)
        smallest = min(group, key=lambda r: (r.finding.program.size, r.number))
        dtypes = ", ".join(sorted({r.finding.dtype for r in group}))
        variants = ", ".join(f"`{v.split(':', 1)[1]}`" for v in sorted({r.finding.variant for r in group}))
        first = min((r.finding.first_seen for r in group if r.finding.first_seen), default="")
        last = max((r.finding.last_seen for r in group if r.finding.last_seen), default="")
        lines.append(
            f"| {'**new**' if status == 'new' else status} | {backend} | `{_md(cause)}` | {kind} | {dtypes} "
            f"| {variants} | {sum(r.finding.count for r in group)} | {first} | {last} "
            f"| [{Path(smallest.folder).name}]({smallest.folder}/repro.py) |")
    return lines + [""]


def _variant_table(rows: list[_Row], checks: Mapping[str, int]) -> list[str]:
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


def _top_findings(rows: list[_Row]) -> list[str]:
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
        why = _first_sentence(f.explanation or f.error)
        lines.append(f"{row.number}. {text}" + (f" — {_md(why)}" if why else ""))
    if len(rows) > TOP_FINDINGS:
        lines.append(f"\n…and {len(rows) - TOP_FINDINGS} more in `findings.json`.")
    return lines + [""]


def _baseline_section(new: list[_Row], known: list[_Row], fixed: list[BaselineEntry]) -> list[str]:
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
        extra = (f" → {e.upstream}" if e.upstream else "") + (f" ({_md(e.note)})" if e.note else "")
        lines.append(f"- `{e.signature}`{extra}")
    if len(fixed) > LIST_LIMIT:
        lines.append(f"- …and {len(fixed) - LIST_LIMIT} more")
    return lines + [""]


def _run_section(run_info: Mapping[str, Any], rows: list[_Row]) -> list[str]:
    lines = ["## Run", "", "| | |", "| --- | --- |"]
    for key, value in run_info.items():
        if key in ("checks_per_variant", "versions"):
            continue
        structured = isinstance(value, (Mapping, list, tuple))
        shown = json.dumps(_json_safe(value)) if structured else str(value)
        lines.append(f"| {_md(str(key).replace('_', ' '))} | {_md(shown)} |")
    versions: dict[str, str] = {}
    for row in rows:
        versions.update(row.finding.versions)
    versions.update({str(k): str(v) for k, v in dict(run_info.get("versions", {})).items()})
    if versions:
        text = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        lines.append(f"| versions | {_md(text)} |")
    return lines + [""]


def _coverage_section(coverage: Mapping[str, Mapping[str, Mapping[str, int]]]) -> list[str]:
    from hessdiff.harness.ops import CATALOGUE

    ops = list(CATALOGUE) + sorted(set(coverage) - set(CATALOGUE))
    variants = sorted({v for per_op in coverage.values() for v in per_op})
    lines = [
        "## Coverage",
        "",
        "Each cell: checks / checks at a special point (kink, tie, domain edge) / findings; "
        "`—` is never reached; `absent`: the framework has no such op (`hessdiff ops` says why).",
        "",
    ]
    if variants:
        lines += [
            "| op | " + " | ".join(f"`{v}`" for v in variants) + " |",
            "| --- | " + " | ".join("---:" for _ in variants) + " |",
        ]
        for op_name in ops:
            per_op = coverage.get(op_name, {})
            cells = []
            for v in variants:
                c = per_op.get(v, {})
                n = int(c.get("checks", 0))
                special, found = int(c.get("special", 0)), int(c.get("findings", 0))
                cells.append(f"{n}/{special}/{found}" if n else ("absent" if _absent(v, op_name) else "—"))
            lines.append(f"| {op_name} | " + " | ".join(cells) + " |")
        lines.append("")
    never = [
        op_name for op_name in ops
        if not any(int(c.get("checks", 0)) for c in coverage.get(op_name, {}).values())
    ]
    lines.append(f"**Ops never reached**: {', '.join(never) if never else 'none'}")
    pairs = [
        f"{op_name} on `{v}`" for op_name in ops for v in variants
        if not int(coverage.get(op_name, {}).get(v, {}).get("checks", 0)) and not _absent(v, op_name)
    ]
    lowered = sum(1 for op_name in ops for v in variants if not _absent(v, op_name))
    lines += ["", f"**Lowered (op, variant) pairs reached**: {lowered - len(pairs)} of {lowered}; never: "
              f"{', '.join(pairs) if pairs else 'none'}"]
    lines += ["", *_special_coverage(coverage)]
    return lines + [""]


def _absent(variant: str, op_name: str) -> bool:
    """Whether ``variant``'s backend declares ``op_name`` absent (False when unknown: a
    report may name a backend this installation lacks)."""
    from hessdiff.backends import Absent, get_variant

    try:
        lowering = get_variant(variant).backend.lowerings.get(op_name)
    except (KeyError, ValueError, AttributeError):
        return False
    return isinstance(lowering, Absent)


def _special_coverage(coverage: Mapping[str, Mapping[str, Mapping[str, int]]]) -> list[str]:
    """How many catalogued special values some check reached (within rounding distance)
    and hit exactly (a traced argument exactly at it, as the framework computes it), the
    ones none did, and the traced/constant argument patterns of elementwise ops no check
    differentiated."""
    from hessdiff.harness.exact import argument_kinds, argument_patterns
    from hessdiff.harness.ops import CATALOGUE

    total, missed, inexact = 0, [], []
    patterns, unpatterned = 0, []
    kinds, unkinded = 0, []
    for op_name, spec in CATALOGUE.items():
        cells = coverage.get(op_name, {}).values()
        for index, label in enumerate(spec.special_names):
            total += 1
            if not any(int(c.get(f"special:{index}", 0)) for c in cells):
                missed.append(f"{op_name} at {label}")
            if not any(int(c.get(f"exact:{index}", 0)) for c in cells):
                inexact.append(f"{op_name} at {label}")
        for pattern in argument_patterns(op_name):
            patterns += 1
            if not any(int(c.get(f"pattern:{pattern}", 0)) for c in cells):
                unpatterned.append(f"{op_name}({pattern})")
        for kind in argument_kinds(op_name):
            kinds += 1
            if not any(int(c.get(f"kind:{kind}", 0)) for c in cells):
                position, name = kind.split(":")
                unkinded.append(f"{op_name}(arg {position} as {name})")
    reached, exact = total - len(missed), total - len(inexact)

    def share(k: int, of: int) -> str:
        return f" ({100.0 * k / of:.0f}%)" if of else ""

    return [
        f"**Special values reached**: {reached} of {total}{share(reached, total)}; "
        f"**hit exactly**: {exact} of {total}{share(exact, total)}",
        "",
        f"**Special values never reached**: {', '.join(missed) if missed else 'none'}",
        "",
        f"**Special values never hit exactly**: {', '.join(inexact) if inexact else 'none'}",
        "",
        f"**Argument patterns differentiated** (T traced, C constant): {patterns - len(unpatterned)} of "
        f"{patterns}; never: {', '.join(unpatterned) if unpatterned else 'none'}",
        "",
        f"**Argument kinds differentiated** (a constant argument as a framework array, a Python float "
        f"or int, an int32 array): {kinds - len(unkinded)} of {kinds}; "
        f"never: {', '.join(unkinded) if unkinded else 'none'}",
    ]


def _first_sentence(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    match = re.match(r"(.+?[.!?])(\s|$)", line)
    sentence = match.group(1) if match else line
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def _md(text: str) -> str:
    """Safe inside a Markdown table cell or list item: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


# --- junit.xml --------------------------------------------------------------------------


def _junit(rows: list[_Row], checks: Mapping[str, int]) -> str:
    variants = sorted(set(checks) | {r.finding.variant for r in rows})
    root = ET.Element("testsuites", name="hessdiff")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for variant in variants:
        suite = ET.SubElement(root, "testsuite", name=variant)
        classname = "hessdiff." + variant.replace(":", ".")
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        if variant in checks:
            ET.SubElement(suite, "testcase", classname=classname,
                          name=f"checked {checks[variant]} cases", time="0")
            counts["tests"] += 1
        for row in (r for r in rows if r.finding.variant == variant):
            f = row.finding
            ops = "+".join(sorted(f.program.op_names))
            name = f"{Path(row.folder).name}: {f.kind.value} {f.dtype} {ops}"
            case = ET.SubElement(suite, "testcase", classname=classname, name=_xml(name), time="0")
            counts["tests"] += 1
            if row.status == "new":
                message = _first_sentence(f.explanation or f.error) or f.kind.value
                failure = ET.SubElement(case, "failure", type=f.kind.value, message=_xml(message))
                failure.text = _xml(_failure_text(row))
                counts["failures"] += 1
            elif row.status == "known" and f.kind.is_failure:
                upstream = (row.entry.upstream if row.entry else "") or "no upstream link"
                ET.SubElement(case, "skipped", message=_xml(f"baselined: {upstream}"))
                counts["skipped"] += 1
            else:
                out = ET.SubElement(case, "system-out")
                out.text = _xml(f"{f.kind.value} ({f.severity}), not a failure: "
                                f"{f.explanation or 'no explanation recorded'}")
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", "0")
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", "0")
        for k in totals:
            totals[k] += counts[k]
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _failure_text(row: _Row) -> str:
    f = row.finding
    parts = [f"signature: {f.signature}", f"reproducer: {row.folder}/repro.py", ""]
    if f.explanation:
        parts.append(f.explanation)
    if f.error:
        parts += ["", f.error]
    parts += ["", "program:", f.program.pretty()]
    return "\n".join(parts)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """Drop colour codes and the characters XML 1.0 cannot hold (from a traceback, say)."""
    return _XML_INVALID.sub("", _ANSI.sub("", text))


# --- files ------------------------------------------------------------------------------


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


def _append_step_summary(path: Path, summary: str) -> None:
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


def _last_newline_end(fh: Any, size: int) -> int:
    """The offset just after the last newline of an open binary file (0 if none)."""
    block = 65536
    end = size
    while end > 0:
        start = max(0, end - block)
        fh.seek(start)
        chunk = fh.read(end - start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        end = start
    return 0
