from __future__ import annotations

import re

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hessdiff.backends import Absent, Backend, registry
from hessdiff.harness import cli
from hessdiff.harness.ops import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_no_traceback(err: str) -> None:
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


# --- the tables ---------------------------------------------------------------------------


def test_backends_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "backends")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["backend", "variant", "route", "description", "version", "status"]
    assert set(lines[1]) <= {"-", " "}
    variants = registry.campaign_variants()  # what ``hessdiff run`` checks, probes included
    assert len(lines) == 2 + len(variants)
    for line, variant in zip(lines[2:], variants):
        assert line.split()[:3] == [variant.backend.name, variant.variant, registry.variant_route(variant.name)]
        assert variant.description in line
        status = variant.backend.availability()
        assert line.endswith("available" if status.available else status.reason)


def test_backends_table_shows_the_install_hint(
    capsys: pytest.CaptureFixture[str], clean_registry: None, planted: type[Backend]
) -> None:
    class Missing(planted):  # type: ignore[misc, valid-type]
        name = "missing_fw"
        extra = "missing_fw"
        modules = ("hessdiff_no_such_module_xyz",)

    registry.register(Missing())
    code, out, _ = run(capsys, "backends")
    assert code == 0
    (line,) = [x for x in out.splitlines() if x.startswith("missing_fw ")]
    assert "unavailable: missing_fw: hessdiff_no_such_module_xyz is not importable" in line
    assert "pip install 'hessdiff[missing_fw]'" in line


def test_ops_domains_lists_each_restricted_op_with_its_mathematical_domain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ops", "--domains")
    assert (code, err) == (0, "")
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "pow" in rows and "every a beside a constant integer b" in rows["pow"]
    assert "branch cut" in rows["arctan2"] and "sin" not in rows


def test_ops_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ops")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    backends = registry.all_backends()
    assert lines[0].split() == ["op", "group", *(b.name for b in backends), "doc"]
    assert len(lines) == 2 + len(CATALOGUE)
    for line, spec in zip(lines[2:], CATALOGUE.values()):
        assert line.split()[:2] == [spec.name, spec.group]
        for backend in backends:
            lowering = backend.lowerings[spec.name]
            expected = f"absent({lowering.reason})" if isinstance(lowering, Absent) else "lowered"
            assert expected in line


def test_ops_table_shows_absent_reasons(
    capsys: pytest.CaptureFixture[str], clean_registry: None, planted: type[Backend]
) -> None:
    registry.register(planted())
    code, out, _ = run(capsys, "ops")
    assert code == 0
    assert "absent(planted for a test)" in out


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--help")
    assert code == 0 and "backends" in out and "ops" in out and err == ""
    code, out, err = run(capsys, "--version")
    assert code == 0 and out.startswith("hessdiff ")


# --- bad input: exit 2, one line, no traceback ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["frobnicate"], "invalid choice: 'frobnicate'", id="unknown-command"),
        pytest.param([], "a command is required, one of: run, replay, backends, ops", id="no-command"),
        pytest.param(["--bogus"], "unrecognized arguments: --bogus", id="bad-flag"),
        pytest.param(["ops", "--bogus"], "unrecognized arguments: --bogus", id="bad-subcommand-flag"),
        pytest.param(["backends", "extra"], "unrecognized arguments: extra", id="extra-argument"),
        pytest.param(["run", "--backends", "nope"], "unknown backend 'nope'", id="run-unknown-backend"),
        pytest.param(["run", "--backends", "jax:nope"], "unknown variant 'jax:nope'", id="run-unknown-variant"),
        pytest.param(["run", "--budget", "soon"], "--budget='soon', but it must be", id="run-bad-budget"),
        pytest.param(["run", "--rounds", "0"], "--rounds=0, but it must be at least 1", id="run-bad-rounds"),
        pytest.param(["run", "--dtype", "float16"], "--dtype='float16'", id="run-bad-dtype"),
        pytest.param(["run", "--ops", "frobnicate"], "unknown ops ['frobnicate']", id="run-unknown-op"),
        pytest.param(["run", "--seed", "x"], "invalid int value: 'x'", id="run-bad-seed"),
        pytest.param(["replay", "/nonexistent/finding.json"], "cannot read /nonexistent/finding.json",
                     id="replay-unreadable"),
        pytest.param(["check", "sum(tanhh(x))", "--at", "50"],
                     "hessdiff check: error: unknown op 'tanhh' at column 5 (did you mean 'tanh'?)", id="check-unknown-op"),
        pytest.param(["check", "v1 = tanh(x)\nv2 = sum(v1", "--at", "50"],
                     "expected ',' or ')', found the end of the text at line 2, column 12", id="check-unclosed"),
        pytest.param(["check", "sum(x)"], "the following arguments are required: --at", id="check-no-point"),
        pytest.param(["check", "sum(x)", "--at", "1,,2"], "--at='1,,2', but it must be comma-separated numbers",
                     id="check-bad-point"),
        pytest.param(["check", "sum(x)", "--at", "inf"], "x=[inf], but every entry must be a finite float64",
                     id="check-infinite-point"),
        pytest.param(["check", "sum(x)", "--at", "1", "--variants", "jax:nope"], "unknown variant 'jax:nope'",
                     id="check-unknown-variant"),
        pytest.param(["check", "sum(x)", "--at", "1", "--dtype", "float16"], "invalid choice: 'float16'",
                     id="check-bad-dtype"),
        pytest.param(["check", "sum(log(x))", "--at=-1", "--variants", "jax:fwdrev"],
                     "the program is undefined at this point: node 1 (log) is outside its domain", id="check-undefined"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert_one_line_no_traceback(err)
    assert re.match(r"hessdiff( \w+)?: error: ", err), err
    assert message in err


# --- check: one function, every variant beside the oracle ---------------------------------------


@pytest.fixture
def planted_jax(clean_registry: None) -> None:
    jax = registry.get_backend("jax").availability()
    if not jax.available:
        pytest.skip(jax.reason)
    sys.path.insert(0, str(ROOT / "tests"))
    from planted import PlantedBackend

    registry.register(PlantedBackend())


def test_check_exits_0_when_every_variant_agrees_and_1_when_one_is_wrong(
    capsys: pytest.CaptureFixture[str], planted_jax: None
) -> None:
    program = "v1 = tanh(x); v2 = gather(x, idx=(1, 0)); v3 = mul(v1, v2); sum(v3)"
    code, out, err = run(capsys, "check", program, "--at", "50,0.5", "--variants", "planted:honest")
    assert (code, err) == (0, "")
    assert re.search(r"^oracle +truth ", out, re.M) and re.search(r"^planted:honest +agrees ", out, re.M)
    code, out, err = run(capsys, "check", program, "--at", "0.5,-1", "--dtype", "float32",
                         "--variants", "planted:honest,planted:no_cross")
    assert (code, err) == (1, "")
    assert "in float32" in out.splitlines()[0]
    assert re.search(r"^planted:no_cross +wrong_value ", out, re.M)
    assert out.rstrip().endswith("judged wrong: planted:no_cross")


@pytest.mark.slow
def test_check_sum_tanh_at_50_prints_every_available_variant_against_the_oracle(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "check", "sum(tanh(x))", "--at", "50")
    assert (code, err) == (0, "")
    listed = [line.split()[0] for line in out.splitlines() if re.match(r"[\w:-]+ +[a-z_]+ +", line)]
    assert listed[0] == "variant"
    assert listed[1:] == ["oracle"] + [v.name for v in registry.all_variants()]  # after the header


# --- internal errors and interrupts ------------------------------------------------------------


def test_internal_error_is_one_line_and_exit_70(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom() -> list[object]:
        raise RuntimeError("registry exploded\nsecond line")

    monkeypatch.delenv("HESSDIFF_DEBUG", raising=False)
    monkeypatch.setattr(registry, "all_backends", boom)
    monkeypatch.setattr("hessdiff.backends.all_backends", boom)
    code, out, err = run(capsys, "ops")
    assert code == 70
    assert_one_line_no_traceback(err)
    assert err.strip() == "hessdiff: internal error: RuntimeError: registry exploded second line"


def test_debug_lets_the_traceback_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> list[object]:
        raise RuntimeError("registry exploded")

    monkeypatch.setenv("HESSDIFF_DEBUG", "1")
    monkeypatch.setattr("hessdiff.backends.all_backends", boom)
    with pytest.raises(RuntimeError, match="registry exploded"):
        cli.main(["ops"])


def test_keyboard_interrupt_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted() -> list[object]:
        raise KeyboardInterrupt

    monkeypatch.setattr("hessdiff.backends.all_backends", interrupted)
    code, _, err = run(capsys, "backends")
    assert code == 130
    assert_one_line_no_traceback(err)


def test_main_never_raises_system_exit(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["--version"], ["nope"], []):
        assert isinstance(cli.main(argv), int)
    capsys.readouterr()


# --- as a separate process ---------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HESSDIFF_DEBUG", None)
    return env


def test_python_dash_m_harness() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "harness", "ops"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].startswith("op ")
    assert ok.stderr == ""

    bad = subprocess.run(
        [sys.executable, "-m", "harness", "nope"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert_one_line_no_traceback(bad.stderr)


def test_installed_console_script(tmp_path: Path) -> None:
    """The ``hessdiff`` entry point of the installed package (tox installs the wheel)."""
    script = shutil.which("hessdiff", path=str(Path(sys.executable).parent))
    if script is None:
        if os.environ.get("CI"):
            pytest.fail("hessdiff is not installed next to this Python; tox should install it.")
        pytest.skip("hessdiff is not installed in this environment (tox installs it)")
    # Run from an empty folder so the installed package, not the source tree, is imported.
    done = subprocess.run(
        [script, "backends"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "jax" in done.stdout


def test_replay_of_a_malformed_finding_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    bad = tmp_path / "finding.json"
    bad.write_text('{"kind": "wrong_value"}')
    code, out, err = run(capsys, "replay", str(bad))
    assert code == 2
    assert err.count("\n") == 1 and "malformed finding" in err and "Traceback" not in err


# --- folders hessdiff writes in ----------------------------------------------------------------


def _report(folder: Path) -> Path:
    """A report folder holding one finding: ``findings.json`` and ``<finding>/finding.json``."""
    import json

    import numpy as np

    from hessdiff.harness.findings import Finding, Kind
    from hessdiff.harness.ir import Program, op

    finding = Finding(kind=Kind.WRONG_VALUE, variant="jax:fwdrev", versions={"jax": "0.test"}, dtype="float64",
                      program=Program(1, (op("input"), op("sum", 0))), point=np.array([0.5]),
                      observed=np.eye(1), expected=np.zeros((1, 1)), explanation="planted", max_error=1.0)
    (folder / "one").mkdir(parents=True)
    (folder / "findings.json").write_text(json.dumps({"findings": [finding.to_json()]}))
    (folder / "one" / "finding.json").write_text(json.dumps(finding.to_json()))
    return folder


@pytest.mark.parametrize(
    ("argv", "what"),
    [
        pytest.param(["run", "--backends", "jax:fwdrev", "--out", "{file}/sub"], "--out='{file}/sub'",
                     id="run-out"),
        pytest.param(["run", "--out", "{file}"], "--out='{file}'", id="run-out-is-a-file"),
        pytest.param(["run", "--resume", "{file}"], "--resume='{file}'", id="run-resume"),
        pytest.param(["merge", "{report}/findings.json", "--out", "{file}/merged"], "--out='{file}/merged'",
                     id="merge-out"),
        pytest.param(["triage", "{report}", "--out", "{file}/drafts"], "--out='{file}/drafts'",
                     id="triage-out"),
        pytest.param(["bisect", "{report}/one/finding.json", "--package", "equinox", "--versions", "0.1..0.2",
                      "--cache", "{file}/cache"], "--cache='{file}/cache'", id="bisect-cache"),
    ],
)
def test_a_folder_that_cannot_be_written_is_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str],
    what: str,
) -> None:
    """Exit 2 and one line naming the option, before any work (bisect asks PyPI nothing)."""
    from hessdiff.harness import bisect

    monkeypatch.setattr(bisect, "pypi_versions", lambda package: pytest.fail("bisect went on to PyPI"))
    names = {"file": str(tmp_path / "a-file"), "report": str(_report(tmp_path / "report"))}
    (tmp_path / "a-file").write_text("not a folder")
    code, out, err = run(capsys, *(a.format(**names) for a in argv))
    assert (code, out) == (2, "")
    assert_one_line_no_traceback(err)
    expected = (f"{what.format(**names)}, but it must be a folder hessdiff can write in: "
                f"{names['file']} is not a folder.")
    assert expected in err, err


@pytest.mark.parametrize("command", ["report", "triage"])
def test_a_report_folder_that_cannot_be_written_is_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str,
) -> None:
    """``report`` writes its pages into REPORT_DIR, ``triage`` its drafts (by default)."""
    import tempfile

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    from hessdiff.harness.html_report import INSTALL_HINT, missing_dependencies

    if command == "report" and missing_dependencies():
        pytest.skip(f"the HTML report needs {' and '.join(missing_dependencies())}: {INSTALL_HINT}")
    report = _report(tmp_path / "report")
    monkeypatch.setattr(tempfile, "TemporaryFile", denied)  # a read-only folder, even for root
    code, out, err = run(capsys, command, str(report))
    assert (code, out) == (2, "")
    assert_one_line_no_traceback(err)
    assert f"REPORT_DIR='{report}', but it must be a folder hessdiff can write in: cannot write in " in err
    assert err.rstrip().endswith("(Permission denied).")
