"""``hessdiff run`` end to end (in-process, on a planted backend): report, exit codes, baseline."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from hessdiff.backends import register
from hessdiff.backends.registry import unregister
from hessdiff.harness.findings import load_findings
from hessdiff.harness.run import UsageError, parse_budget, run
from planted import PlantedBackend


@pytest.fixture(scope="module")
def planted():
    backend = register(PlantedBackend())
    yield backend
    unregister(backend.name)


def _run(out: Path, baseline: Path) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(
        backends="planted:pl_gradient", budget=600.0, rounds=1, seed=3, dtypes=["float64"], out=out,
        baseline_path=baseline, ops=("relu", "add", "sum", "square"), max_ops=3,
        stdout=stdout, stderr=stderr,
    )
    return code, stdout.getvalue()


def test_new_failures_exit_1_with_a_full_report(planted, tmp_path: Path) -> None:
    code, text = _run(tmp_path / "run", tmp_path / "missing-baseline.json")
    assert code == 1, text
    out = tmp_path / "run"
    for name in ("findings.json", "findings.jsonl", "summary.md", "junit.xml"):
        assert (out / name).is_file(), name
    findings = load_findings(str(out / "findings.json"))
    assert any(f.kind.is_failure for f in findings)
    folders = sorted((out / "findings").iterdir())
    assert (folders[0] / "repro.py").is_file() and (folders[0] / "env.txt").is_file()
    # The crash-safe log holds what the report holds.
    assert len(load_findings(str(out / "findings.json"))) >= 1
    assert "new failing" in text
    # The HTML report (the report extra is installed where the tests run): an index and a
    # page per finding, each finding's bound recorded for its |error| / bound heatmap.
    assert f"HTML report: {out / 'index.html'}" in text
    assert len(list(out.glob("findings/*/finding.html"))) == len(findings) == len(folders)
    assert all(f.bound is not None for f in findings if f.observed is not None)


def test_without_the_report_extra_the_rest_is_written(planted, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now fails
    code, text = _run(tmp_path / "run", tmp_path / "missing-baseline.json")
    assert code == 1, text
    assert "no HTML report: jinja2 not installed (pip install 'hessdiff[report]')" in text
    assert not (tmp_path / "run" / "index.html").exists()
    for name in ("findings.json", "summary.md", "junit.xml"):
        assert (tmp_path / "run" / name).is_file(), name


def test_a_baselined_fault_does_not_fail(planted, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"entries": [{
        "signature": "planted|pl_gradient|wrong_value|float64|*",
        "upstream": "https://example.org/planted", "note": "planted on purpose",
    }]}))
    code, text = _run(tmp_path / "run", baseline)
    assert code == 0, text


@pytest.mark.parametrize("text, seconds", [("60s", 60), ("5m", 300), ("1h", 3600), ("90", 90), ("1.5m", 90)])
def test_budget_parses(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5s", "5d", "soon"])
def test_bad_budget_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--budget"):
        parse_budget(text)
