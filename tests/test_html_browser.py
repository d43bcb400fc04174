"""The HTML report as a person sees it: a real campaign's report opened in headless Chromium.

Debian's ``chromium`` and ``chromium-driver`` packages, driven by Selenium with both paths
given, so nothing downloads a browser or a driver. Without them the test skips with the
install command, except in CI (``CI`` set), where it fails: .ci/run installs them.
Screenshots of every page opened are saved in the test's temporary folder (its path is
printed) and, when ``HESSDIFF_SCREENSHOTS`` names a folder, there too.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from hessdiff.backends import register
from hessdiff.backends.registry import unregister
from hessdiff.harness.run import run
from planted import PlantedBackend

pytest.importorskip("jinja2", reason="the HTML report needs jinja2: pip install 'hessdiff[report]'")
pytest.importorskip("matplotlib", reason="the HTML report needs matplotlib: pip install 'hessdiff[report]'")

pytestmark = pytest.mark.slow

INSTALL = "apt-get install chromium chromium-driver (Debian), and pip install selenium"
CHROMIUM = ("chromium", "/usr/bin/chromium", "/usr/lib/chromium/chromium")
CHROMEDRIVER = ("chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
PAGES_CHECKED = 4  # finding pages opened (every one is checked without a browser elsewhere)


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test (.ci/run installs it): {INSTALL}")
    pytest.skip(f"{reason}: {INSTALL}")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed")
    browser, chromedriver = _find(CHROMIUM), _find(CHROMEDRIVER)
    if browser is None or chromedriver is None:
        _unavailable("Chromium or chromedriver is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tmp_path_factory.mktemp("chromium-profile")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--hide-scrollbars", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
        chrome = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    chrome.set_page_load_timeout(60)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real campaign's report: planted faults, found by random generation."""
    backend = register(PlantedBackend())
    out = tmp_path_factory.mktemp("campaign") / "run"
    try:
        stdout, stderr = io.StringIO(), io.StringIO()
        code = run(backends="planted:honest,planted:pl_gradient,planted:no_cross", budget=600.0, rounds=1, seed=3,
                   dtypes=["float64"], out=out, baseline_path=out.parent / "no-baseline.json",
                   ops=("relu", "add", "mul", "sum", "square", "abs", "sin"), max_ops=3, stdout=stdout,
                   stderr=stderr, isolate=False)
    finally:
        unregister(backend.name)
    assert code == 1, stdout.getvalue() + stderr.getvalue()
    assert (out / "index.html").is_file(), stdout.getvalue()
    return out


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("HESSDIFF_SCREENSHOTS"):
        folders.append(Path(os.environ["HESSDIFF_SCREENSHOTS"]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folders[0]}")
    return folders


def _open(driver, page: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(page.as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready") == "yes")


def _console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def _save(driver, shots: list[Path], name: str) -> None:
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 6000)")
    driver.set_window_size(1400, max(1000, int(height)))
    for folder in shots:
        assert driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def _check_links(driver, page: Path) -> int:
    hrefs = driver.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    local = [h for h in hrefs if h.startswith("file:")]
    for href in local:
        target = Path(unquote(urlparse(href).path))
        assert target.exists(), f"{page.name}: a link to {href}, which does not exist"
    return len(local)


def _check_heatmaps(driver, page: Path) -> int:
    figures = driver.execute_script("""
        return Array.from(document.querySelectorAll('figure.heatmap')).map(function (figure) {
            var svg = figure.querySelector('svg');
            var box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
            var content = svg ? svg.getBBox() : {width: 0, height: 0};
            return {kind: figure.dataset.kind, width: box.width, height: box.height,
                    wantWidth: Number(figure.dataset.width), wantHeight: Number(figure.dataset.height),
                    drawn: svg ? svg.querySelectorAll('rect, path, image, text').length : 0,
                    contentWidth: content.width, contentHeight: content.height,
                    cells: figure.querySelectorAll('[data-c]').length,
                    titled: figure.querySelectorAll('[data-c] > title').length};
        });""")
    for f in figures:
        assert f["width"] > 0 and f["height"] > 0, (page.name, f)
        assert abs(f["width"] - f["wantWidth"]) <= 1 and abs(f["height"] - f["wantHeight"]) <= 1, (page.name, f)
        assert f["drawn"] > 10 and f["contentWidth"] > 50 and f["contentHeight"] > 50, (page.name, f)
        assert f["titled"] == f["cells"], f"{page.name}: {f['cells'] - f['titled']} cells have no hover title"
    return len(figures)


def test_index_in_chromium(driver, report: Path, shots: list[Path]) -> None:
    _open(driver, report / "index.html")
    rows = driver.execute_script("return document.querySelectorAll('#findings tbody tr').length")
    assert rows == len(list(report.glob("findings/*/finding.html"))) > 0
    assert _check_links(driver, report / "index.html") >= rows
    assert _console_errors(driver) == []
    _save(driver, shots, "index")


def test_finding_pages_in_chromium(driver, report: Path, shots: list[Path]) -> None:
    pages = sorted(report.glob("findings/*/finding.html"))[:PAGES_CHECKED]
    for k, page in enumerate(pages):
        _open(driver, page)
        assert _check_heatmaps(driver, page) >= 2  # the oracle's and the variant's at least
        _check_links(driver, page)
        repro = driver.execute_script("return document.getElementById('repro').textContent")
        assert repro == (page.parent / "repro.py").read_text(), f"{page}: the inline repro.py differs from the file"
        driver.find_element("css selector", "button.copy").click()
        # The clipboard answers asynchronously, and the label reverts after 2 s (a busy
        # machine can take longer than that to run the test's next line): the button
        # keeps what happened in data-copied.
        copied = ""
        for _ in range(100):
            copied = driver.execute_script("return document.querySelector('button.copy').dataset.copied || ''")
            if copied:
                break
            time.sleep(0.1)
        assert copied in ("yes", "selected")
        assert _console_errors(driver) == [], page
        _save(driver, shots, f"finding-{k + 1}")


def test_coverage_page_in_chromium(driver, report: Path, shots: list[Path]) -> None:
    _open(driver, report / "coverage.html")
    assert _check_heatmaps(driver, report / "coverage.html") == 2  # checks, and special values
    _check_links(driver, report / "coverage.html")
    assert _console_errors(driver) == []
    _save(driver, shots, "coverage")
