"""The HTML report: pages for a report folder, heatmap marks, links, ``hessdiff report``.

What a browser makes of the pages is tests/test_html_browser.py; these run without one.
"""

from __future__ import annotations

import html
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from hessdiff.harness import cli
from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.highlight import highlight
from hessdiff.harness.html_report import html_note, missing_dependencies, write_html
from hessdiff.harness.ir import Node, Program, op
from hessdiff.harness.report import write_report

pytest.importorskip("jinja2", reason="the HTML report needs jinja2: pip install 'hessdiff[report]'")
pytest.importorskip("matplotlib", reason="the HTML report needs matplotlib: pip install 'hessdiff[report]'")

from hessdiff.harness.plots import NONFINITE_FACE, Painter  # noqa: E402

RELU = Program(2, (Node("input"), op("relu", 0), op("square", 1), op("sum", 2)))
SIN = Program(2, (Node("input"), op("sin", 0), op("sum", 1)))
POINT = np.array([0.0, -0.25])
EXPECTED = np.array([[np.nan, 0.0], [0.0, 0.0]])  # relu's kink at 0: H[0,0] undefined


def _finding(kind: Kind, variant: str, program: Program, observed: np.ndarray | None, **extra) -> Finding:
    return Finding(kind=kind, variant=variant, versions={"jax": "0.test"}, dtype="float64", program=program,
                   point=POINT, observed=observed, expected=EXPECTED,
                   others={"jax:fwdfwd": np.zeros((2, 2)), "jax:revrev": np.array([[1.0, 0.0], [0.0, np.inf]]),
                           "torch:func": None},
                   explanation=f"{kind.value} on {variant}.", max_error=1.0, count=3,
                   bound=np.full((2, 2), 1e-13), **extra)


FINDINGS = [
    _finding(Kind.WRONG_VALUE, "jax:fwdrev", RELU, np.array([[0.0, 0.5], [0.5, 0.0]])),
    _finding(Kind.NONFINITE, "jax:jit", RELU, np.array([[0.0, np.nan], [np.nan, np.inf]])),
    _finding(Kind.CRASH, "jax:revrev", SIN, None, error="RuntimeError: boom <script>"),
    _finding(Kind.WRONG_SHAPE, "equinox:filter_hessian", RELU, np.array([1.0, 2.0])),
]
BASELINE = Baseline((BaselineEntry("jax|fwd-over-rev+compiled|nonfinite|float64|*", "https://example.org/issues/7", "known NaN"),))
RUN_INFO = {"name": "html-test", "seed": 7, "budget_seconds": 60.0, "examples": 12, "checked_pairs": 190,
            "versions": {"jax": "0.test"}, "checks_per_variant": {"jax:fwdrev": 10, "jax:jit": 10}}
COVERAGE = {"relu": {"jax:fwdrev": {"checks": 40, "special": 5, "findings": 1, "special:0": 5}},
            "sin": {"jax:jit": {"checks": 3, "special": 0, "findings": 0}}}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html")
    write_report(out, FINDINGS, baseline=BASELINE, run_info=RUN_INFO, coverage=COVERAGE)
    paths = write_html(out, baseline=BASELINE, coverage=COVERAGE)
    assert paths.problems == ()
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value and tag in ("a", "link", "script", "img"):
                self.hrefs.append(value)


def _local_links(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return [h for h in parser.hrefs if not re.match(r"^(https?:|data:|#|mailto:)", h)]


def test_an_index_a_coverage_page_and_a_page_per_finding(report: Path) -> None:
    index = (report / "index.html").read_text()
    assert (report / "coverage.html").is_file()
    pages = sorted(report.glob("findings/*/finding.html"))
    assert len(pages) == len(FINDINGS)
    for page in pages:
        assert f'href="{page.relative_to(report).as_posix()}"' in index
    assert "html-test" in index and "0.test" in index  # the run's name and versions
    assert re.search(r"<b>\d+</b>new failing", index)


def test_every_local_link_resolves(report: Path) -> None:
    for page in [report / "index.html", report / "coverage.html", *report.glob("findings/*/finding.html")]:
        links = _local_links(page)
        assert links, page
        for href in links:
            target = (page.parent / href.split("#", 1)[0]).resolve()
            assert target.exists(), f"{page.relative_to(report)} links to missing {href}"


def test_pages_are_self_contained(report: Path) -> None:
    for page in report.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', text.replace('href="https://example.org', "")), page
        assert "<style>" in text and "<script>" in text


def test_a_finding_page_shows_heatmaps_program_baseline_and_repro(report: Path) -> None:
    page = next(report.glob("findings/*jax-jit-nonfinite*/finding.html")).read_text()
    kinds = re.findall(r'<figure class="plot heatmap" data-kind="(\w+)"', page)
    assert kinds[:3] == ["oracle", "observed", "ratio"]
    assert "https://example.org/issues/7" in page and "known NaN" in page  # the baseline entry
    assert 'id="repro" data-packed="' in page and 'class="copy"' in page
    assert '<span class="o">=</span> relu(v0)' in page  # the program, highlighted
    assert "jax:revrev" in page and "1 NaN/inf entry" in page  # every other variant


def test_text_is_escaped(report: Path) -> None:
    page = next(report.glob("findings/*jax-revrev-crash*/finding.html")).read_text()
    assert "boom &lt;script&gt;" in page and "boom <script>" not in page


def _fills(markup: str) -> dict[str, str]:
    """Each heatmap cell's fill, by its entry ("i j")."""
    return {m.group(1): m.group(2) for m in re.finditer(r'data-c="(\d+ \d+)"[^>]*?(?:fill="|fill: )([^";]+)',
                                                        markup)}


def test_undefined_entries_are_hatched() -> None:
    svg = Painter().hessian(EXPECTED, title="oracle", limit=1.0, prefix="t", undefined=np.isnan(EXPECTED))
    fills = _fills(svg.markup)
    assert len(fills) == 4
    assert "<pattern" in svg.markup and fills["0 0"].startswith("url(#t-")  # the hatch pattern
    assert not any(f.startswith("url(") for k, f in fills.items() if k != "0 0")


def test_nan_and_inf_entries_are_marked() -> None:
    values = np.array([[1.0, np.nan], [np.inf, -np.inf]])
    svg = Painter().hessian(values, title="variant", limit=1.0, prefix="t")
    fills = _fills(svg.markup)
    assert fills["0 1"] == fills["1 0"] == fills["1 1"] == NONFINITE_FACE
    assert fills["0 0"] != NONFINITE_FACE
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg.markup)
    assert {"NaN", "+inf", "-inf"} <= set(texts)


def test_a_heatmap_has_labelled_axes_and_a_size_in_pixels() -> None:
    svg = Painter().hessian(np.eye(3), title="oracle", limit=1.0, prefix="t")
    assert f'width="{svg.width}px" height="{svg.height}px"' in svg.markup
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg.markup)
    assert "j (input index)" in texts and "i (input index)" in texts and {"0", "1", "2"} <= set(texts)
    assert len(re.findall(r"data-c=", svg.markup)) == 9


def test_ratio_panel_marks_nonfinite_and_outlines_entries_over_the_bound() -> None:
    ratio = np.array([[0.0, 5.0], [0.5, np.inf]])
    values = np.array([[1.0, 2.0], [3.0, np.nan]])
    svg = Painter().ratio(ratio, title="r", prefix="t", undefined=np.zeros((2, 2), bool), values=values)
    assert "NaN" in re.findall(r"<text[^>]*>([^<]*)</text>", svg.markup)
    assert svg.markup.count("stroke-width: 1.8") == 1  # the one finite entry over its bound


def test_highlighting_keeps_the_source() -> None:
    source = 'def f(x):\n    """doc"""\n    return x ** 2  # square\n'
    marked = str(highlight(source))
    assert '<span class="k">def</span>' in marked and '<span class="d">f</span>' in marked
    assert '<span class="c"># square</span>' in marked and '<span class="n">2</span>' in marked
    assert html.unescape(re.sub(r"<[^>]+>", "", marked)) == source
    broken = 'x = """never closed\n'
    assert html.unescape(re.sub(r"<[^>]+>", "", str(highlight(broken)))) == broken


# --- without the report extra ------------------------------------------------------------------


def test_without_matplotlib_no_html_and_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_report(tmp_path, FINDINGS, baseline=BASELINE, run_info=RUN_INFO)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert missing_dependencies() == ["matplotlib"]
    note = html_note(tmp_path)
    assert note == "no HTML report: matplotlib not installed (pip install 'hessdiff[report]')"
    assert not (tmp_path / "index.html").exists()
    for name in ("findings.json", "summary.md", "junit.xml"):
        assert (tmp_path / name).is_file()


def test_a_drawing_problem_is_one_line_not_an_exception(tmp_path: Path) -> None:
    (tmp_path / "findings.json").write_text('{"findings": "nope"}')
    note = html_note(tmp_path)
    assert note.startswith("report problem: cannot write the HTML report: HtmlError:") and "\n" not in note


# --- hessdiff report -----------------------------------------------------------------------


def test_report_command_renders_again(report: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (report / "index.html").unlink()
    code = cli.main(["report", str(report), "--baseline", str(report / "no-baseline.json")])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert (report / "index.html").is_file() and "4 finding page(s)" in out
    # The coverage it was given first is kept (a run's campaign.json, or coverage.json).
    assert "ops reached" in (report / "index.html").read_text()


@pytest.mark.parametrize("make", ["missing", "empty", "not-json", "no-findings"])
def test_report_command_on_a_bad_folder_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str) -> None:
    target = tmp_path / "r"
    if make != "missing":
        target.mkdir()
    if make == "not-json":
        (target / "findings.json").write_text("{")
    if make == "no-findings":
        (target / "findings.json").write_text("[]")
    assert cli.main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hessdiff report: error:") and err.count("\n") == 1 and "Traceback" not in err


def test_report_command_without_the_extra_is_one_line_and_exit_2(
        report: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    assert cli.main(["report", str(report)]) == 2
    err = capsys.readouterr().err
    assert err == "hessdiff report: error: the HTML report needs jinja2: pip install 'hessdiff[report]'\n"


def test_the_templates_load_outside_the_source_tree(tmp_path: Path) -> None:
    """Run from another folder, with only the installed package importable: the templates
    are hessdiff.harness's (a loader naming the source tree's ``harness`` wrote no HTML
    report for any campaign run outside the repository)."""
    import subprocess

    pytest.importorskip("jinja2")
    code = ("import sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
            "from hessdiff.harness.html_report import _environment; "
            "print(_environment().get_template('index.html.j2').name)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and run.stdout.strip() == "index.html.j2", run.stderr[-2000:]
