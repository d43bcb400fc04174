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

This module writes the pages; reading the folder back is ``hessdiff.harness.html_folder``,
a finding's page ``html_finding``, the index, coverage and trend pages ``html_overview``.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hessdiff.harness.baseline import Baseline
from hessdiff.harness.findings import Kind
from hessdiff.harness.html_finding import finding_context
from hessdiff.harness.html_folder import HtmlError, coverage_of, load_report
from hessdiff.harness.html_overview import (coverage_matrices, coverage_view, index_context, seconds, trend_charts,
                                            trend_rows)

__all__ = ["HtmlPaths", "INSTALL_HINT", "html_note", "missing_dependencies", "write_html"]

INSTALL_HINT = "pip install 'hessdiff[report]'"
REQUIREMENTS = ("jinja2", "matplotlib")


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
    run, items, fixed = load_report(out)
    if coverage is None:
        coverage = coverage_of(out)
    elif not (out / "campaign.json").is_file():  # a merge: keep it for a re-render
        _atomic_write(out / "coverage.json", json.dumps(coverage, indent=1, sort_keys=True) + "\n")
    trend: list[dict[str, Any]] | None = None
    if trend_from:  # a merge: a trend of its merged inputs, or none (not an earlier one's)
        trend = trend_rows(trend_from)
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
            context = finding_context(out, item, painter, baseline, neighbours) | {"run": run}
            html = env.get_template("finding.html.j2").render(context)
        except Exception as exc:  # noqa: BLE001 - one undrawable finding must not lose the report
            problems.append(f"{item.folder}: {type(exc).__name__}: {exc}")
            html = env.get_template("stub.html.j2").render(
                title=f"#{item.number}", item=item, reason=f"{type(exc).__name__}: {exc}",
                root="../../", run=run)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, html)
        pages.append(path)

    cov_view = coverage_view(coverage, run)
    has_trend = bool(trend) and len(trend) >= 2
    _atomic_write(out / "coverage.html", env.get_template("coverage.html.j2").render(
        title="coverage", run=run, root="", coverage=cov_view, has_trend=has_trend,
        matrices=coverage_matrices(cov_view) if cov_view else []))
    trend_path = None
    if has_trend:
        trend_path = out / "trend.html"
        _atomic_write(trend_path, env.get_template("trend.html.j2").render(
            title="trend", run=run, root="", rows=trend, charts=trend_charts(trend), has_trend=True))
    _atomic_write(out / "index.html", env.get_template("index.html.j2").render(
        index_context(out, run, items, fixed, cov_view, baseline, has_trend)))
    return HtmlPaths(out / "index.html", out / "coverage.html", tuple(pages), trend_path, tuple(problems))


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hessdiff.harness", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from hessdiff.harness.plots import fmt

    env.filters["num"] = fmt
    env.filters["seconds"] = seconds
    env.filters["compact"] = _compact
    env.globals["kinds"] = [k.value for k in Kind]
    return env


def _compact(text: str) -> str:
    """Styles or a script without indentation, blank lines and whole-line comments: they
    are in every page of a report with hundreds of pages."""
    lines = (line.strip() for line in str(text).splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//"))


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
