"""The run report: findings.json, summary.md, junit.xml, finding folders, the JSONL log."""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.findings import Finding, FindingError, Kind, load_findings
from hessdiff.harness.findings_jsonl import append_finding, read_jsonl
from hessdiff.harness.ir import Node, Program, op
from hessdiff.harness.report import write_report
from hessdiff.harness.summary_md import STEP_SUMMARY_LIMIT

RELU = Program(2, (Node("input"), op("relu", 0), op("sum", 1)))
SIN = Program(2, (Node("input"), op("sin", 0), op("sum", 1)))
ABS = Program(2, (Node("input"), op("abs", 0), op("square", 1), op("sum", 2)))
POINT = np.array([1.5, -0.25])


def _finding(kind: Kind, variant: str, program: Program, *, dtype: str = "float64",
             count: int = 1, error: str = "", explanation: str = "") -> Finding:
    observed = None if kind in (Kind.CRASH, Kind.TIMEOUT) else np.eye(2)
    return Finding(
        kind=kind, variant=variant, versions={"jax": "0.test"}, dtype=dtype, program=program,
        point=POINT, observed=observed, expected=np.array([[0.0, 0.0], [0.0, np.nan]]),
        others={"jax:fwdfwd": np.zeros((2, 2)), "torch:func": None},
        explanation=explanation or f"{kind.value} on {variant}. More detail here.",
        error=error, max_error=1.0 if observed is not None else 0.0, count=count,
    )


NEW_VALUE = _finding(Kind.WRONG_VALUE, "jax:fwdrev", RELU, count=7)
KNOWN_VALUE = _finding(Kind.WRONG_VALUE, "jax:revrev", RELU)
CONVENTION = _finding(Kind.CONVENTION, "jax:fwdrev", ABS, explanation="one-sided value at a kink.")
NEW_CRASH = _finding(Kind.CRASH, "jax:jit", SIN, error="\x1b[31mRuntimeError\x1b[0m: boom | <xml> & \x00")
FINDINGS = [CONVENTION, KNOWN_VALUE, NEW_CRASH, NEW_VALUE]

BASELINE = Baseline((
    BaselineEntry("jax|rev-over-rev|wrong_value|float64|*relu*", "https://example.org/issues/1", "known"),
    BaselineEntry("jax|fwd-over-fwd|nonfinite|float32|log+sum", "https://example.org/issues/2", "gone"),
))
RUN_INFO = {
    "seed": 1234,
    "budget": "60s",
    "examples": 321,
    "versions": {"jax": "0.test", "numpy": np.__version__},
    "checks_per_variant": {"jax:fwdrev": 100, "jax:revrev": 100, "jax:jit": 50, "jax:fwdfwd": 80},
}
COVERAGE = {
    "relu": {"jax:fwdrev": {"checks": 40, "special": 5, "findings": 1},
             "jax:revrev": {"checks": 40, "special": 5, "findings": 1}},
    "sin": {"jax:jit": {"checks": 12, "special": 0, "findings": 1}},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    paths = write_report(out, FINDINGS, baseline=BASELINE, run_info=RUN_INFO, coverage=COVERAGE)
    assert paths.problems == ()
    return out


def test_files_and_folders_exist(report: Path) -> None:
    for name in ("findings.json", "summary.md", "junit.xml"):
        assert (report / name).is_file()
    folders = sorted(p.name for p in (report / "findings").iterdir())
    assert len(folders) == 4
    # Ordered by severity, new before baselined: the new wrong value comes first.
    assert folders[0] == "001-jax-fwdrev-wrong_value-float64-relu-sum"
    for folder in folders:
        for name in ("repro.py", "env.txt", "finding.json"):
            assert (report / "findings" / folder / name).is_file()
        compile((report / "findings" / folder / "repro.py").read_text(), "repro.py", "exec")
    assert not list(report.rglob("*.tmp"))


def test_findings_json_loads_back(report: Path) -> None:
    loaded = load_findings(str(report / "findings.json"))
    assert sorted(f.signature for f in loaded) == sorted(f.signature for f in FINDINGS)
    data = json.loads((report / "findings.json").read_text())
    assert data["run"]["seed"] == 1234
    assert sorted(data["baseline"]["new"]) == sorted(
        f.signature for f in (NEW_VALUE, NEW_CRASH, CONVENTION))
    assert data["baseline"]["known"] == [KNOWN_VALUE.signature]
    assert data["baseline"]["fixed"] == ["jax|fwd-over-fwd|nonfinite|float32|log+sum"]
    first = data["findings"][0]
    assert first["folder"] == "findings/001-jax-fwdrev-wrong_value-float64-relu-sum"
    assert first["status"] == "new"
    one = load_findings(str(report / first["folder"] / "finding.json"))
    assert one[0].signature == NEW_VALUE.signature and one[0].count == 7


def test_junit_counts(report: Path) -> None:
    root = ET.parse(report / "junit.xml").getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"jax:fwdrev", "jax:revrev", "jax:jit", "jax:fwdfwd"}
    assert len(root.findall(".//failure")) == 2 == int(root.get("failures", "-1"))
    assert len(root.findall(".//skipped")) == 1 == int(root.get("skipped", "-1"))
    skipped = root.find(".//skipped")
    assert skipped is not None and skipped.get("message") == "baselined: https://example.org/issues/1"
    fwdrev = suites["jax:fwdrev"]
    assert fwdrev.get("tests") == "3" and fwdrev.get("failures") == "1"
    names = [c.get("name") for c in fwdrev.iter("testcase")]
    assert "checked 100 cases" in names
    convention = [c for c in fwdrev.iter("testcase") if "convention" in (c.get("name") or "")]
    assert convention and convention[0].find("failure") is None
    out = convention[0].find("system-out")
    assert out is not None and "one-sided value at a kink" in (out.text or "")
    crash = root.find(".//failure[@type='crash']")
    assert crash is not None and "RuntimeError: boom | <xml> &" in (crash.text or "")
    fwdfwd = suites["jax:fwdfwd"]  # checked, nothing found: one passing case
    assert fwdfwd.get("tests") == "1" and fwdfwd.get("failures") == "0"


def test_summary_reads_in_ten_seconds(report: Path) -> None:
    text = (report / "summary.md").read_text()
    assert "**2 new failure(s)**" in text
    header = "| variant | cases checked | " + " | ".join(k.value for k in Kind) + " |"
    assert header in text
    assert "| `jax:fwdrev` | 100 | **1** (7) | · | · | · | · | 1 | · |" in text
    assert "| `jax:fwdfwd` | 80 | · |" in text
    assert "(findings/001-jax-fwdrev-wrong_value-float64-relu-sum/)" in text
    assert "Not hit by this run** (not replayed" in text
    assert "`jax|fwd-over-fwd|nonfinite|float32|log+sum` → https://example.org/issues/2" in text
    assert "| seed | 1234 |" in text and "| examples | 321 |" in text
    assert "jax 0.test" in text
    assert "| op | `jax:fwdrev` | `jax:jit` | `jax:revrev` |" in text
    assert "| relu | 40/5/1 | — | 40/5/1 |" in text
    never = next(line for line in text.splitlines() if line.startswith("**Ops never reached**"))
    never_ops = set(never.split(": ", 1)[1].split(", "))
    assert "tanh" in never_ops and "leaky_relu" in never_ops
    assert "relu" not in never_ops and "sin" not in never_ops


def test_step_summary_is_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "step_summary.md"
    target.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    paths = write_report(tmp_path / "run", [NEW_VALUE], baseline=Baseline(), run_info={"seed": 1})
    assert paths.step_summary == target
    text = target.read_text()
    assert text.startswith("# earlier step\n")
    assert text.endswith((tmp_path / "run" / "summary.md").read_text())


def test_step_summary_stays_under_one_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "step_summary.md"
    target.write_bytes(b"x" * (STEP_SUMMARY_LIMIT - 3000) + b"\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    many = [_finding(Kind.WRONG_VALUE, f"jax:v{i}", RELU, explanation="é" * 100) for i in range(120)]
    write_report(tmp_path / "run", many, baseline=Baseline(), run_info={"seed": 1})
    size = target.stat().st_size
    assert size < STEP_SUMMARY_LIMIT
    assert len((tmp_path / "run" / "summary.md").read_bytes()) > 3000
    assert target.read_bytes().decode("utf-8").rstrip().endswith("see summary.md in the report._")
    # Already full: nothing more is appended.
    write_report(tmp_path / "run", many, baseline=Baseline(), run_info={"seed": 1})
    assert target.stat().st_size < STEP_SUMMARY_LIMIT


def test_rewriting_a_report_drops_stale_folders(tmp_path: Path) -> None:
    write_report(tmp_path, FINDINGS, baseline=BASELINE, run_info={})
    (tmp_path / "findings" / "notes").mkdir()  # not ours: kept
    write_report(tmp_path, [NEW_CRASH], baseline=BASELINE, run_info={})
    assert sorted(p.name for p in (tmp_path / "findings").iterdir()) == [
        "001-jax-jit-crash-float64-sin-sum", "notes"]


def test_unrenderable_repro_does_not_lose_the_report(tmp_path: Path) -> None:
    odd = _finding(Kind.CRASH, "nosuch:variant", SIN)
    paths = write_report(tmp_path, [odd, NEW_VALUE], baseline=Baseline(), run_info={})
    assert len(paths.problems) == 1 and "nosuch" in paths.problems[0]
    stub = (tmp_path / "findings" / "002-nosuch-variant-crash-float64-sin-sum" / "repro.py").read_text()
    assert "raise SystemExit(2)" in stub
    compile(stub, "repro.py", "exec")
    assert len(load_findings(str(paths.findings_json))) == 2


def test_jsonl_log_round_trips_and_survives_a_torn_line(tmp_path: Path) -> None:
    assert read_jsonl(tmp_path) == []
    for f in (NEW_VALUE, KNOWN_VALUE, NEW_CRASH):
        append_finding(tmp_path, f)
    log = tmp_path / "findings.jsonl"
    assert [f.signature for f in read_jsonl(tmp_path)] == [
        NEW_VALUE.signature, KNOWN_VALUE.signature, NEW_CRASH.signature]
    with open(log, "ab") as fh:  # a crash in the middle of a write
        fh.write(b'{"kind": "wrong_value", "variant": "jax:fw')
    assert len(read_jsonl(tmp_path)) == 3
    append_finding(tmp_path, CONVENTION)  # resuming drops the torn line
    loaded = read_jsonl(tmp_path)
    assert [f.signature for f in loaded][-1] == CONVENTION.signature and len(loaded) == 4
    assert all(line.startswith("{") for line in log.read_text().splitlines())
    nan_point = loaded[0].expected
    assert nan_point is not None and np.isnan(nan_point[1, 1])


def test_jsonl_corruption_in_the_middle_is_an_error(tmp_path: Path) -> None:
    append_finding(tmp_path, NEW_VALUE)
    with open(tmp_path / "findings.jsonl", "ab") as fh:
        fh.write(b"garbage\n")
    append_finding(tmp_path, NEW_CRASH)
    with pytest.raises(FindingError, match=r"findings.jsonl:2"):
        read_jsonl(tmp_path)


def test_report_into_a_fresh_nested_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    paths = write_report(out, [], baseline=Baseline(), run_info={"seed": 0})
    assert "**no new failures**" in paths.summary_md.read_text()
    root = ET.parse(paths.junit_xml).getroot()
    assert root.get("tests") == "0"
    assert os.listdir(out / "findings") == []


def test_coverage_marks_absent_pairs_and_lists_lowered_pairs_never_reached(tmp_path: Path) -> None:
    """A pair the framework lacks is `absent`, not a gap; a lowered pair no check reached
    is listed by name (the 5-minute campaign's acceptance reads it off the summary)."""
    coverage = {
        "sin": {"mlx:revrev": {"checks": 3, "special": 0, "findings": 0},
                "jax:fwdrev": {"checks": 2, "special": 0, "findings": 0}},
        "solve": {"jax:fwdrev": {"checks": 1, "special": 0, "findings": 0}},  # MLX lacks solve
    }
    write_report(tmp_path, [], baseline=Baseline(), run_info={}, coverage=coverage)
    summary = (tmp_path / "summary.md").read_text()
    assert "| solve | 1/0/0 | absent |" in summary
    pairs = summary.split("**Lowered (op, variant) pairs reached**:")[1].splitlines()[0]
    never = [item.strip() for item in pairs.split("never:")[1].split(",")]
    assert not [p for p in never if p.startswith(("sin on", "solve on"))], never
    assert "cos on `mlx:revrev`" in never and "cos on `jax:fwdrev`" in never


def test_a_variant_that_computed_no_hessian_is_named_in_the_summary(tmp_path: Path) -> None:
    """equinox 0.11.0 has no eqx.filter_hessian: every case of that variant is unsupported.
    The run must say so, not list the variants that did check and stay silent on it."""
    run_info = {
        "variants": ["jax:fwdrev", "equinox:filter_hessian"],
        "checks_per_variant": {"jax:fwdrev": 48},
        "outcomes": {"jax:fwdrev|ok": 48, "equinox:filter_hessian|unsupported": 48},
    }
    paths = write_report(tmp_path / "run", [], baseline=Baseline(), run_info=run_info)
    summary = paths.summary_md.read_text()
    assert "**Variants that computed no Hessian in this run**: `equinox:filter_hessian` (48 unsupported)" in summary
    assert "`jax:fwdrev` (" not in summary


def test_ops_a_release_lacks_are_listed_apart_from_the_ops_never_reached() -> None:
    """'Ops never reached: none' must mean every op the installed releases have was
    checked: an op every variant's release lacks (jax 0.4.13 has no jax.nn.mish) is named
    apart, not as a gap of the search."""
    from hessdiff.backends import Absent
    from hessdiff.backends.registry import register, unregister
    from hessdiff.harness.coverage_md import coverage_section
    from planted import OldJaxBackend

    backend = register(OldJaxBackend())
    try:
        assert isinstance(backend.installed_lowerings()["sin"], Absent)
        coverage = {"exp": {"oldjax:fwdrev": {"checks": 3}}}
        never = next(line for line in coverage_section(coverage) if line.startswith("**Ops never reached**"))
        unreached, _, absent = never.partition(" (absent in every variant's release, so never tried: ")
        assert "sin" not in unreached.split(": ", 1)[1].split(", ") and "cos" in unreached
        assert absent.rstrip(")").split(", ") == ["sin"]
    finally:
        unregister(backend.name)
