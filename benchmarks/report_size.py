"""The HTML report at the size of a 10-minute campaign: how long it takes to write, how
much it weighs, how fast its pages open in Chromium.

A report of ``--findings`` synthetic findings (default 400) shaped like a long campaign's:
every kind, float32 and float64, programs of 1 to 8 inputs (a matmul by a constant
matrix, an elementwise op, a sum: the dismissed findings of a real campaign are not
shrunk and keep n = 4 to 8), every other variant's Hessian beside each (17 of them, as an
all-backend run records), undefined entries at kinks and NaN/inf entries, and the
coverage of every op and variant. ``write_report`` writes the Markdown/JSON/JUnit files
and repro folders as ``hessdiff run`` does, then ``write_html`` the pages; the pages are
then opened in headless Chromium (Debian's, through Selenium) and timed from navigation
to the page's script having run (``document.body.dataset.ready``).

The last line is ``findings=<n> write_html_s=<t> html_mib=<m> folder_mib=<f>
index_load_s=<a> finding_load_s_max=<b> coverage_load_s=<c>``; the acceptance is under
20 MiB and under 2 s a page.

    PYTHONPATH=. python benchmarks/report_size.py [--findings 400] [--out DIR] [--pages 25]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hessdiff.backends import all_variants
from hessdiff.harness.baseline import Baseline
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.html_report import write_html
from hessdiff.harness.ir import Node, Program, const, op
from hessdiff.harness.ops import CATALOGUE
from hessdiff.harness.report import write_report

ELEMENTWISE = ("sin", "tanh", "relu", "softplus", "abs", "exp", "sigmoid", "square")
KINDS = [Kind.NOISE] * 5 + [Kind.CONVENTION] * 3 + [Kind.WRONG_VALUE] * 2 + [Kind.NONFINITE, Kind.CRASH,
                                                                             Kind.WRONG_SHAPE]


def synthetic_findings(count: int, seed: int = 0) -> list[Finding]:
    rng = np.random.default_rng(seed)
    variants = [v.name for v in all_variants()]
    out = []
    for k in range(count):
        n = int(rng.integers(1, 9))
        kind = KINDS[k % len(KINDS)]
        unary = ELEMENTWISE[k % len(ELEMENTWISE)]
        program = Program(n, (Node("input"), const(rng.normal(size=(n, n)).round(6)), op("matmul", 1, 0),
                              op(unary, 2), op("sum", 3)))
        h = rng.normal(size=(n, n)) * 10.0 ** rng.integers(-8, 3)
        expected = h + h.T
        if kind is Kind.CONVENTION or rng.random() < 0.2:
            i = int(rng.integers(n))
            expected[i, :] = expected[:, i] = np.nan
        observed: np.ndarray | None = expected + rng.normal(size=(n, n)) * 1e-9
        observed = np.where(np.isnan(expected), rng.normal(size=(n, n)), observed)
        if kind is Kind.NONFINITE:
            observed[0, 0] = np.nan
        elif kind is Kind.CRASH:
            observed = None
        elif kind is Kind.WRONG_SHAPE:
            observed = rng.normal(size=n)
        variant = variants[k % len(variants)]
        others = {v: (expected + rng.normal(size=(n, n)) * 1e-14 if rng.random() < 0.9 else None)
                  for v in variants if v != variant}
        out.append(Finding(
            kind=kind, variant=variant, versions={"jax": "0.bench", "torch": "0.bench"},
            dtype=("float64", "float32")[k % 2], program=program, point=rng.normal(size=n), observed=observed,
            expected=expected, others=others, explanation=f"synthetic {kind.value} number {k}.",
            error="RuntimeError: synthetic" if kind is Kind.CRASH else "", max_error=1.0, count=int(rng.integers(1, 50)),
            bound=np.full((n, n), 1e-12), first_seen="2026-11-30T00:00:00+00:00"))
    return out


def synthetic_coverage(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    variants = [v.name for v in all_variants()]
    coverage: dict = {}
    for name, spec in CATALOGUE.items():
        for v in variants:
            if rng.random() < 0.9:
                cell = {"checks": int(rng.integers(1, 5000)), "special": int(rng.integers(0, 50)), "findings": 0}
                for index in range(len(spec.special_names)):
                    if rng.random() < 0.7:
                        cell[f"special:{index}"] = int(rng.integers(1, 30))
                coverage.setdefault(name, {})[v] = cell
    return coverage


def load_seconds(pages: list[Path]) -> list[float]:
    """Seconds from navigation to the page's script having run, per page, in Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        driver.get("about:blank")
        times = []
        for page in pages:
            start = time.perf_counter()
            driver.get(page.as_uri())
            WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready") == "yes")
            times.append(time.perf_counter() - start)
        return times
    finally:
        driver.quit()


def _mib(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findings", type=int, default=400)
    parser.add_argument("--pages", type=int, default=25, help="finding pages opened in Chromium")
    parser.add_argument("--out", default=None, help="where the report goes (default: a temporary folder)")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="hessdiff-report-size-"))
    findings = synthetic_findings(args.findings)
    coverage = synthetic_coverage()
    run_info = {"name": out.name, "seed": 0, "budget_seconds": 600.0, "examples": 5000, "checked_pairs": 80000,
                "variants": [v.name for v in all_variants()]}
    start = time.perf_counter()
    write_report(out, findings, baseline=Baseline(), run_info=run_info, coverage=coverage)
    written = time.perf_counter()
    paths = write_html(out, coverage=coverage)
    html_s = time.perf_counter() - written
    pages = sorted(out.rglob("*.html"))
    html_mib, folder_mib = _mib(pages), _mib([p for p in out.rglob("*") if p.is_file()])
    finding_pages = list(paths.finding_pages)
    print(f"report files: {written - start:.1f} s; HTML: {html_s:.1f} s for {len(finding_pages)} finding pages "
          f"({html_s / max(len(finding_pages), 1):.3f} s each), {len(paths.problems)} problems; {out}")
    largest = max(finding_pages, key=lambda p: p.stat().st_size)
    print(f"HTML {html_mib:.1f} MiB (index {paths.index.stat().st_size / 1024:.0f} KiB, coverage "
          f"{paths.coverage.stat().st_size / 1024:.0f} KiB, finding pages median "
          f"{statistics.median(p.stat().st_size for p in finding_pages) / 1024:.0f} KiB, largest "
          f"{largest.stat().st_size / 1024:.0f} KiB); the whole folder {folder_mib:.1f} MiB")
    index_s = finding_max = coverage_s = float("nan")
    if not args.no_browser:
        sample = finding_pages[:: max(1, len(finding_pages) // args.pages)][: args.pages] + [largest]
        # The index twice: first in a browser just started (cold), last after the others.
        cold_s, coverage_s, *finding_s, index_s = load_seconds([paths.index, paths.coverage, *sample, paths.index])
        index_s = max(cold_s, index_s)
        finding_max = max(finding_s)
        print(f"Chromium: index {cold_s:.2f} s cold, coverage {coverage_s:.2f} s, finding pages median "
              f"{statistics.median(finding_s):.2f} s, max {finding_max:.2f} s over {len(finding_s)}")
    print(f"findings={len(findings)} write_html_s={html_s:.1f} html_mib={html_mib:.1f} folder_mib={folder_mib:.1f} "
          f"index_load_s={index_s:.2f} finding_load_s_max={finding_max:.2f} coverage_load_s={coverage_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
