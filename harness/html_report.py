"""The HTML report: ``index.html`` and the pages beside it, for a person with a browser.

Rendered from a report folder as ``hessdiff.harness.report.write_report`` leaves it (its
``findings.json`` and finding folders), so ``hessdiff run``, ``hessdiff merge`` and
``hessdiff report`` (a re-render) all go through ``write_html``::

    index.html                     the run at a glance and one row per finding
    coverage.html                  op x variant checks and special values reached, as heatmaps
    trend.html                     findings per framework and kind across merged reports (merge)
    findings/001-<slug>/finding.html  one page per finding: program, point, heatmaps, repro.py

Every page is self-contained: styles, scripts and pictures (matplotlib, inline SVG) are in
the page, links are relative, nothing is fetched, so the folder is the whole report and
opens from a CI artifact or a laptop with no server. The pages come from Jinja2
templates (``harness/templates``). Both are the optional extra ``hessdiff[report]``:
without them the Markdown, JSON and JUnit files are written as before and
``html_note`` says in one line how to get the HTML.
"""

from __future__ import annotations

import base64
import datetime as _dt
import importlib
import io
import json
import keyword
import math
import os
import re
import tempfile
import tokenize
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.bounds import bound_for, judged_bound
from hessdiff.harness.coverage_md import declared_absent
from hessdiff.harness.findings import Finding, FindingError, Kind, finding_from_json

__all__ = ["HtmlError", "HtmlPaths", "INSTALL_HINT", "html_note", "missing_dependencies", "write_html"]

INSTALL_HINT = "pip install 'hessdiff[report]'"
REQUIREMENTS = ("jinja2", "matplotlib")
PAGE = "finding.html"
TABLE_ENTRIES = 12  # entries in a finding's value table (the rest are on hover)
OTHER_PANELS = 2  # other variants' Hessians drawn (the distinct ones that disagree most)


class HtmlError(ValueError):
    """The folder is not a report that can be rendered; the message names the file."""


@dataclass(frozen=True)
class HtmlPaths:
    """Where ``write_html`` put the pages.

    Arguments:
        problems: pages that could not be drawn (a stub with the reason was written in
            their place, so no link is broken).
    """

    index: Path
    coverage: Path
    finding_pages: tuple[Path, ...]
    trend: Path | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)


def missing_dependencies() -> list[str]:
    """The packages of the ``report`` extra that cannot be imported (empty: HTML can be written)."""
    missing = []
    for name in REQUIREMENTS:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def html_note(report_dir: str | Path, **options: Any) -> str:
    """Write the HTML report if its packages are installed; one line saying what happened.

    The hook of ``hessdiff run`` and ``hessdiff merge``: it never raises (a report must not
    lose the run's exit code to a drawing problem). ``options`` go to ``write_html``.
    """
    missing = missing_dependencies()
    if missing:
        return f"no HTML report: {' and '.join(missing)} not installed ({INSTALL_HINT})"
    try:
        paths = write_html(report_dir, **options)
    except Exception as exc:  # noqa: BLE001 - the Markdown/JSON/JUnit report is already written
        return f"report problem: cannot write the HTML report: {type(exc).__name__}: {' '.join(str(exc).split())}"
    note = f"HTML report: {paths.index}"
    if paths.problems:
        note += f" ({len(paths.problems)} page(s) could not be drawn: {paths.problems[0]})"
    return note


# --- reading a report folder ------------------------------------------------------------------


@dataclass
class _Item:
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HtmlError(f"{path.parent}: no {path.name} there; is it the folder of a hessdiff report?") from None
    except OSError as exc:
        raise HtmlError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HtmlError(f"{path} is not valid JSON: {exc}") from None


def _load(report_dir: Path) -> tuple[dict[str, Any], list[_Item], list[str]]:
    data = _read_json(report_dir / "findings.json")
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
        items.append(_Item(int(record.get("number", k)), folder, str(record.get("status", "new")),
                           str(record.get("upstream", "") or ""), finding))
    merged = report_dir / "merged.json"
    if merged.is_file():
        shards = {str(r.get("signature")): list(r.get("shards", [])) for r in _read_json(merged).get("findings", [])}
        for item in items:
            item.shards = shards.get(item.finding.signature, [])
    run = dict(data.get("run") or {})
    fixed = [str(s) for s in (data.get("baseline") or {}).get("fixed", [])]
    return run, items, fixed


def _coverage_of(report_dir: Path) -> dict[str, Any] | None:
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
        cov = _coverage_of(Path(path).parent)
        if not cov:
            continue
        found = True
        for op_name, per_op in cov.items():
            for variant, cell in dict(per_op).items():
                out = total.setdefault(str(op_name), {}).setdefault(str(variant), {})
                for key, value in dict(cell).items():
                    out[key] = out.get(key, 0) + int(value)
    return total if found else None


# --- the pages --------------------------------------------------------------------------------


def write_html(
    report_dir: str | Path,
    *,
    baseline: Baseline | None = None,
    coverage: Mapping[str, Any] | None = None,
    trend_from: Sequence[str | Path] = (),
) -> HtmlPaths:
    """Render the HTML pages of the report in ``report_dir``.

    Arguments:
        report_dir: a folder written by ``hessdiff.harness.report.write_report`` (it reads its
            ``findings.json``, ``merged.json`` and each finding's folder).
        baseline: to show each known finding's baseline entry and note (the upstream link
            is in findings.json either way).
        coverage: op -> variant -> counts; by default the folder's ``campaign.json`` (a
            run) or ``coverage.json`` (a merge).
        trend_from: the ``findings.json`` of several merged reports (``hessdiff merge``'s
            inputs): with two or more, ``trend.html`` and ``trend.json`` are written; by
            default an existing ``trend.json`` is drawn again.

    Returns:
        An ``HtmlPaths``. Raises ``HtmlError`` when the folder is not a report, and
        ``ModuleNotFoundError`` when jinja2 or matplotlib is missing.
    """
    out = Path(report_dir)
    if not out.is_dir():
        raise HtmlError(f"{out}: no such report folder.")
    run, items, fixed = _load(out)
    if coverage is None:
        coverage = _coverage_of(out)
    elif not (out / "campaign.json").is_file():  # a merge: keep it for a re-render
        _atomic_write(out / "coverage.json", json.dumps(coverage, indent=1, sort_keys=True) + "\n")
    trend: list[dict[str, Any]] | None = None
    if trend_from:  # a merge: a trend of its merged inputs, or none (not an earlier one's)
        trend = _trend_rows(trend_from)
        if trend:
            _atomic_write(out / "trend.json", json.dumps(trend, indent=2) + "\n")
        else:
            for stale in ("trend.json", "trend.html"):
                (out / stale).unlink(missing_ok=True)
    elif (out / "trend.json").is_file():
        try:
            trend = json.loads((out / "trend.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            trend = None

    from hessdiff.harness.plots import Painter

    env = _environment()
    painter = Painter()
    problems: list[str] = []
    pages = []
    for k, item in enumerate(items):
        neighbours = (items[k - 1] if k else None, items[k + 1] if k + 1 < len(items) else None)
        path = out / item.page
        try:
            context = _finding_context(out, item, painter, baseline, neighbours) | {"run": run}
            html = env.get_template("finding.html.j2").render(context)
        except Exception as exc:  # noqa: BLE001 - one undrawable finding must not lose the report
            problems.append(f"{item.folder}: {type(exc).__name__}: {exc}")
            html = env.get_template("stub.html.j2").render(
                title=f"#{item.number}", item=item, reason=f"{type(exc).__name__}: {exc}",
                root="../../", run=run)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, html)
        pages.append(path)

    cov_view = _coverage_view(coverage, run)
    has_trend = bool(trend) and len(trend) >= 2
    _atomic_write(out / "coverage.html", env.get_template("coverage.html.j2").render(
        title="coverage", run=run, root="", coverage=cov_view, has_trend=has_trend,
        matrices=_coverage_matrices(cov_view) if cov_view else []))
    trend_path = None
    if has_trend:
        trend_path = out / "trend.html"
        _atomic_write(trend_path, env.get_template("trend.html.j2").render(
            title="trend", run=run, root="", rows=trend, charts=_trend_charts(trend), has_trend=True))
    _atomic_write(out / "index.html", env.get_template("index.html.j2").render(
        _index_context(out, run, items, fixed, cov_view, baseline, has_trend)))
    return HtmlPaths(out / "index.html", out / "coverage.html", tuple(pages), trend_path, tuple(problems))


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from hessdiff.harness.plots import fmt

    env.filters["num"] = fmt
    env.filters["seconds"] = _seconds
    env.filters["compact"] = _compact
    env.globals["kinds"] = [k.value for k in Kind]
    return env


def _compact(text: str) -> str:
    """Styles or a script without indentation, blank lines and whole-line comments: they
    are in every page of a report with hundreds of pages."""
    lines = (line.strip() for line in str(text).splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//"))


def _seconds(value: Any) -> str:
    try:
        s = float(value)
    except (TypeError, ValueError):
        return str(value)
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 60:
        return f"{s / 60:.3g} min"
    return f"{s:.3g} s"


# --- a finding's page -------------------------------------------------------------------------


def _finding_context(out: Path, item: _Item, painter: Any, baseline: Baseline | None,
                     neighbours: tuple[_Item | None, _Item | None]) -> dict[str, Any]:
    from hessdiff.harness.plots import fmt, hessian_limit

    f = item.finding
    n = f.program.n
    folder = out / item.folder
    expected = f.expected if f.expected is not None and f.expected.shape == (n, n) else None
    observed = f.observed
    square = observed is not None and expected is not None and observed.shape == (n, n)
    undefined = np.isnan(expected) if expected is not None else np.zeros((n, n), bool)
    bound = judged_bound(f) if expected is not None else None
    if bound is not None and np.shape(bound) != (n, n):
        bound = None
    prefix = f"f{item.number}"
    limit = hessian_limit(expected, observed if square else None)
    panels = []
    tips: dict[str, list[list[str]]] = {}  # hover text per heatmap, per entry (the page's script)
    entries: list[dict[str, Any]] = []
    if square:
        assert observed is not None and expected is not None
        ratio = _ratio(observed, expected, bound)
        item.worst = _worst(ratio, undefined)
        tips["main"] = _tips(f.variant, observed, expected, ratio, bound)
        over = _outlined(ratio, undefined)
        panels.append(("oracle", "main", painter.hessian(expected, title="oracle (true Hessian)", limit=limit,
                                                         prefix=f"{prefix}o", undefined=undefined)))
        panels.append(("observed", "main", painter.hessian(observed, title=f.variant, limit=limit,
                                                           prefix=f"{prefix}v", undefined=undefined,
                                                           outlined=over)))
        if ratio is not None:
            panels.append(("ratio", "main", painter.ratio(np.where(undefined, 0.0, ratio), title="|error| / bound",
                                                          prefix=f"{prefix}r", undefined=undefined,
                                                          values=observed)))
        entries = _entries(observed, expected, ratio, bound, undefined)
    else:
        if expected is not None:
            tips["oracle"] = _value_tips("oracle", expected)
            panels.append(("oracle", "oracle", painter.hessian(expected, title="oracle (true Hessian)", limit=limit,
                                                               prefix=f"{prefix}o", undefined=undefined)))
        if observed is not None and observed.ndim <= 2 and 0 < observed.size <= 4096:
            tips["observed"] = _value_tips(f.variant, np.atleast_2d(observed))
            panels.append(("observed", "observed", painter.hessian(
                observed, title=f"{f.variant}: shape {tuple(observed.shape)}", limit=hessian_limit(observed),
                prefix=f"{prefix}v")))
    others = _others(f, expected, observed if square else None, bound, undefined, painter, limit, prefix, tips)
    entry = baseline.entry_for(f) if baseline is not None else None
    repro = _read_text(folder / "repro.py")
    env_txt = _read_text(folder / "env.txt")
    bisect = None
    if (folder / "bisect.json").is_file():
        try:
            bisect = json.loads((folder / "bisect.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            bisect = None
    point = [(i, fmt(v), float(v).hex() if math.isfinite(float(v)) else fmt(v))
             for i, v in enumerate(np.asarray(f.point, dtype=np.float64))]
    return {
        "title": f"#{item.number} {f.kind.value} {f.variant}",
        "root": "../../",
        "item": item,
        "f": f,
        "n": n,
        "program": _highlight(f.program.pretty()),
        "point": point,
        "panels": panels,
        "tips": _packed(json.dumps(tips, separators=(",", ":"))),
        "entries": entries,
        "entries_shown": TABLE_ENTRIES,
        "has_bound": bound is not None,
        "others": others,
        "entry": entry,
        "repro": _packed(str(_highlight(repro))) if repro is not None else None,
        "env": env_txt,
        "bisect": bisect,
        "files": [name for name in ("repro.py", "env.txt", "finding.json", "bisect.json")
                  if (folder / name).is_file()],
        "prev": neighbours[0],
        "next": neighbours[1],
        "observed_shape": tuple(observed.shape) if observed is not None else None,
    }


def _ratio(observed: np.ndarray, expected: np.ndarray, bound: np.ndarray | None) -> np.ndarray | None:
    """|observed - expected| / bound per entry: 0 exact, inf where observed is not finite;
    undefined entries (NaN expected) are 0. None without a bound."""
    if bound is None:
        return None
    defined = ~np.isnan(expected)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.abs(observed - np.where(defined, expected, 0.0))
        ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err > 0, np.inf, 0.0))
    ratio = np.where(np.isfinite(observed), ratio, np.inf)
    return np.where(defined, ratio, 0.0)


def _outlined(ratio: np.ndarray | None, undefined: np.ndarray) -> np.ndarray:
    """The entries to outline as over their bound (a few; see ``hessdiff.harness.plots.few``)."""
    from hessdiff.harness.plots import few

    if ratio is None:
        return np.zeros(undefined.shape, bool)
    return few(~undefined & (ratio > 1.0))


def _worst(ratio: np.ndarray | None, undefined: np.ndarray) -> float | None:
    if ratio is None or not (~undefined).any():
        return None
    return float(np.max(ratio[~undefined]))


def _tips(variant: str, observed: np.ndarray, expected: np.ndarray, ratio: np.ndarray | None,
          bound: np.ndarray | None) -> list[list[str]]:
    from hessdiff.harness.plots import fmt

    n = expected.shape[0]
    tips = []
    for i in range(n):
        row = []
        for j in range(n):
            undefined = math.isnan(expected[i, j])
            text = (f"H[{i},{j}]\noracle: {'undefined (a kink)' if undefined else fmt(expected[i, j])}"
                    f"\n{variant}: {fmt(observed[i, j])}")
            if ratio is not None and bound is not None and not undefined:
                text += f"\n|error|/bound: {fmt(ratio[i, j])} (bound {fmt(bound[i, j])})"
            row.append(text)
        tips.append(row)
    return tips


def _value_tips(name: str, values: np.ndarray) -> list[list[str]]:
    from hessdiff.harness.plots import fmt

    return [[f"[{i},{j}]\n{name}: {fmt(v)}" for j, v in enumerate(row)] for i, row in enumerate(values)]


def _entries(observed: np.ndarray, expected: np.ndarray, ratio: np.ndarray | None, bound: np.ndarray | None,
             undefined: np.ndarray) -> list[dict[str, Any]]:
    """Every entry, the worst first (NaN/inf, then by |error| / bound, undefined last)."""
    rows = []
    n = expected.shape[0]
    for i in range(n):
        for j in range(i, n) if _symmetric(observed, expected) else range(n):
            undef = bool(undefined[i, j])
            obs = float(observed[i, j])
            r = None if ratio is None or undef else float(ratio[i, j])
            err = None if undef or not math.isfinite(obs) else abs(obs - float(expected[i, j]))
            flag = ("undefined" if undef else "NaN/inf" if not math.isfinite(obs)
                    else "over" if r is not None and r > 1 else "")
            rows.append({"i": i, "j": j, "expected": None if undef else float(expected[i, j]), "observed": obs,
                         "error": err, "bound": None if bound is None or undef else float(bound[i, j]),
                         "ratio": r, "flag": flag})

    def key(row: dict[str, Any]) -> tuple[int, float]:
        if row["flag"] == "undefined":
            return (2, 0.0)
        if row["flag"] == "NaN/inf":
            return (0, 0.0)
        return (1, -(row["ratio"] if row["ratio"] is not None else row["error"] or 0.0))

    return sorted(rows, key=key)


def _symmetric(observed: np.ndarray, expected: np.ndarray) -> bool:
    """Whether the lower triangle repeats the upper one (then the table lists i <= j only)."""
    same = lambda a: bool(np.array_equal(a, a.T, equal_nan=True))  # noqa: E731
    return same(observed) and same(expected)


def _others(f: Finding, expected: np.ndarray | None, observed: np.ndarray | None, bound: np.ndarray | None,
            undefined: np.ndarray, painter: Any, limit: float, prefix: str,
            tips: dict[str, list[list[str]]]) -> dict[str, Any]:
    """Every other variant at the same point: does it agree with the oracle? The few that
    disagree most are drawn too, each distinct Hessian once (one returning the finding's
    own Hessian is not drawn again)."""
    n = f.program.n
    rows = []
    for name, h in sorted(f.others.items()):
        row: dict[str, Any] = {"variant": name, "worst": None, "state": "", "svg": None, "tips": ""}
        if h is None:
            row["state"] = "no Hessian (crashed, timed out or unsupported)"
        elif expected is None or h.shape != (n, n):
            row["state"] = f"shape {tuple(h.shape)}"
        else:
            other_bound = bound_for(bound, f.variant, name, f.dtype) if bound is not None else None
            ratio = _ratio(h, expected, other_bound)
            worst = _worst(ratio, undefined)
            bad = int(np.sum(~np.isfinite(h) & ~undefined))
            row.update(worst=worst, ratio=ratio, values=h)
            row["state"] = (f"{bad} NaN/inf entr{'y' if bad == 1 else 'ies'}" if bad else
                            "within its bound" if worst is not None and worst <= 1 else
                            "over its bound" if worst is not None else "no bound recorded")
            if observed is not None and np.array_equal(h, observed, equal_nan=True):
                row["state"] += f", the same Hessian as {f.variant}"
        rows.append(row)
    disagreeing = sorted((r for r in rows if r.get("values") is not None and (r["worst"] is None or r["worst"] > 1)),
                         key=lambda r: -(r["worst"] if r["worst"] is not None else 0.0))
    drawn: list[dict[str, Any]] = []
    for row in disagreeing:
        if observed is not None and np.array_equal(row["values"], observed, equal_nan=True):
            continue
        twin = next((d for d in drawn if np.array_equal(d["values"], row["values"], equal_nan=True)), None)
        if twin is not None:
            twin["same"].append(row["variant"])
            continue
        if len(drawn) < OTHER_PANELS:
            row["same"] = []
            drawn.append(row)
    for k, row in enumerate(drawn):
        key = f"x{k}"
        tips[key] = _tips(row["variant"], row["values"], expected, row["ratio"], None)
        over = _outlined(row["ratio"], undefined)
        title = row["variant"] + (f" (+{len(row['same'])} alike)" if row["same"] else "")
        row["svg"] = painter.hessian(row["values"], title=title, limit=limit, prefix=f"{prefix}x{k}",
                                     undefined=undefined, outlined=over)
        row["tips"] = key
    for row in rows:
        row.pop("values", None)
        row.pop("ratio", None)
    return {"rows": rows, "drawn": drawn,
            "agree": sum(1 for r in rows if r["state"].startswith("within its bound"))}


def _packed(text: str) -> str:
    """``text`` deflated and base64-encoded, for the page's script to unpack
    (``DecompressionStream("deflate")``): a repro.py that lists every variant's Hessian is
    tens of kilobytes of digits, a few once compressed, and a report has hundreds."""
    return base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


# --- Python highlighting (the program listing and repro.py) -----------------------------------

_BUILTINS = frozenset({"print", "len", "range", "float", "int", "abs", "min", "max", "sum", "list", "tuple",
                       "dict", "str", "repr", "isinstance", "SystemExit", "Exception", "__name__", "True",
                       "False", "None"})


def _highlight(source: str) -> Any:
    """Python source as HTML with ``<span class="...">`` per token: keyword (k), string
    (s), comment (c), number (n), builtin (b), definition name (d), operator (o). Text
    that does not tokenize is shown plain."""
    from markupsafe import Markup, escape

    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out: list[str] = []
    pos = 0
    previous = ""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return Markup(escape(source))
    for tok in tokens:
        if tok.type in (tokenize.ENDMARKER, tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            continue
        (srow, scol), (erow, ecol) = tok.start, tok.end
        if srow - 1 >= len(lines) or erow - 1 >= len(lines):
            continue
        begin, end = starts[srow - 1] + scol, starts[erow - 1] + ecol
        if begin < pos:
            continue
        cls = _token_class(tok, previous)
        out.append(str(escape(source[pos:begin])))
        text = str(escape(source[begin:end]))
        out.append(f'<span class="{cls}">{text}</span>' if cls else text)
        pos = end
        if tok.type not in (tokenize.COMMENT,):
            previous = tok.string
    out.append(str(escape(source[pos:])))
    return Markup("".join(out))


def _token_class(tok: tokenize.TokenInfo, previous: str) -> str:
    name = tokenize.tok_name.get(tok.type, "")
    if tok.type == tokenize.STRING or name.startswith("FSTRING"):
        return "s"
    if tok.type == tokenize.COMMENT:
        return "c"
    if tok.type == tokenize.NUMBER:
        return "n"
    if tok.type == tokenize.NAME:
        if previous in ("def", "class"):
            return "d"
        if keyword.iskeyword(tok.string):
            return "k"
        if tok.string in _BUILTINS:
            return "b"
        return ""
    if tok.type == tokenize.OP and tok.string in ("=", "==", "+", "-", "*", "/", "**", "@", "<", ">", "<=", ">=",
                                                  "!=", "->"):
        return "o"
    return ""


# --- the index --------------------------------------------------------------------------------


def _index_context(out: Path, run: Mapping[str, Any], items: list[_Item], fixed: list[str],
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
            value = _seconds(value)
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


# --- coverage ---------------------------------------------------------------------------------


def _coverage_view(coverage: Mapping[str, Any] | None, run: Mapping[str, Any]) -> dict[str, Any] | None:
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


def _coverage_matrices(view: Mapping[str, Any]) -> list[Any]:
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


# --- the trend across merged reports ----------------------------------------------------------


def _trend_rows(paths: Sequence[str | Path]) -> list[dict[str, Any]] | None:
    """One row per merged report among ``paths``, oldest first (None: fewer than two)."""
    rows = []
    for path in paths:
        path = Path(path)
        data = _read_json(path)
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


def _trend_charts(rows: list[dict[str, Any]]) -> list[Any]:
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


# --- files ------------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


__all__ += ["merged_coverage"]
