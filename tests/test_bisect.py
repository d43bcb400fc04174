"""``hessdiff bisect``: ranges, the index listing, cached environments, replay, the table.

Fast tests use fake interpreters (shell scripts standing in for an environment's python)
so the reading of exit codes and of the table is tested without installing anything;
the real bisect of equinox#801 over PyPI wheels is regression/test_bisect_801.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from hessdiff.harness import bisect as b
from hessdiff.harness.cli import main
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.ir import Node, Program, op

RELU = Program(2, (Node("input"), op("relu", 0), op("sum", 1)))
FINDING = Finding(kind=Kind.WRONG_VALUE, variant="jax:fwdrev", versions={"jax": "0.test"}, dtype="float64",
                  program=RELU, point=np.array([1.5, -0.25]), observed=np.eye(2), expected=np.zeros((2, 2)),
                  explanation="planted for a test", max_error=1.0)


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.parametrize("text, expected", [("0.11.0..0.11.6", ("0.11.0", "0.11.6")),
                                             (" 1..2 ", ("1", "2")), ("0.4.26..0.4.26", ("0.4.26", "0.4.26"))])
def test_parse_range(text: str, expected: tuple[str, str]) -> None:
    assert b.parse_range(text) == expected


@pytest.mark.parametrize("text, message", [("0.11.0", "a range of releases"), ("0.11.6..0.11.0", "comes after"),
                                            ("0.11..x", "a range of releases"), ("1.0rc1..2", "a range")])
def test_parse_range_rejects(text: str, message: str) -> None:
    with pytest.raises(b.BisectError, match=message):
        b.parse_range(text)


def test_select_versions_orders_numerically_and_includes_both_ends() -> None:
    available = ["0.11.10", "0.11.9", "0.11.2", "0.11.1", "0.10.11", "0.12.0"]
    assert b.select_versions(available, "0.11.1", "0.11.10") == ["0.11.1", "0.11.2", "0.11.9", "0.11.10"]
    with pytest.raises(b.BisectError, match="no release between 0.13.0 and 0.14.0"):
        b.select_versions(available, "0.13.0", "0.14.0")


def test_pypi_versions_reads_pips_listing_and_drops_prereleases(tmp_path: Path) -> None:
    fake = _script(tmp_path / "python", 'echo "equinox (0.11.5)"\n'
                   'echo "Available versions: 0.11.5, 0.11.5rc1, 0.11.4, 0.11.10, 0.11.4.dev0"')
    assert b.pypi_versions("equinox", python=str(fake)) == ["0.11.4", "0.11.5", "0.11.10"]
    failing = _script(tmp_path / "bad", 'echo "ERROR: No matching distribution found for nope" >&2; exit 1')
    with pytest.raises(b.BisectError, match="No matching distribution"):
        b.pypi_versions("nope", python=str(failing))
    with pytest.raises(b.BisectError, match="not a package name"):
        b.pypi_versions("equinox; rm -rf /", python=str(fake))
    asked = _script(tmp_path / "asked", f'echo "$5" > {tmp_path}/name; echo "Available versions: 0.31.2, 0.21.1"')
    assert b.pypi_versions("mlx[cpu]", python=str(asked)) == ["0.21.1", "0.31.2"]
    assert (tmp_path / "name").read_text().strip() == "mlx"  # the index is asked for the package's releases
    with pytest.raises(b.BisectError, match="not a package name"):
        b.pypi_versions("mlx[cpu", python=str(fake))


@pytest.mark.parametrize("code, outcome", [(1, b.REPRODUCES), (0, b.FIXED), (2, b.INCONCLUSIVE),
                                           (139, b.INCONCLUSIVE)])
def test_replay_reads_the_repro_exit_status(tmp_path: Path, code: int, outcome: str) -> None:
    python = _script(tmp_path / "python", f'echo "line one"; echo "LAST LINE"; exit {code}')
    got, detail = b.replay_script(python, tmp_path / "repro.py")
    assert got == outcome
    assert detail.endswith("LAST LINE")
    assert detail.startswith("exit 139") == (code == 139)


def test_replay_times_out_as_inconclusive(tmp_path: Path) -> None:
    python = _script(tmp_path / "python", "sleep 5")
    assert b.replay_script(python, tmp_path / "repro.py", timeout=0.2)[0] == b.INCONCLUSIVE


def _fake_env(cache: Path, version: str, pins: list[str], exit_code: int | None) -> None:
    """A cached environment whose python exits ``exit_code``; None: a cached failed install."""
    folder = b._env_dir(cache, "pkg", version, pins)
    if exit_code is None:
        folder.mkdir(parents=True)
        (folder / "install-failed").write_text("ERROR: no matching distribution")
        return
    _script(folder / "bin" / "python", f'echo "exit {exit_code} for {version}"; exit {exit_code}')
    (folder / b._READY).write_text("")


def test_bisect_uses_cached_envs_and_names_first_bad_and_first_good(tmp_path: Path) -> None:
    pins = ["jax==0.4.26", "numpy<2"]
    plan = {"1.0": 2, "1.1": None, "1.2": 1, "1.3": 1, "1.4": 2, "1.5": 0, "1.6": 0}
    for version, code in plan.items():
        _fake_env(tmp_path / "cache", version, pins, code)
    seen = []
    result = b.bisect(FINDING, tmp_path / "scratch", package="pkg", versions=list(plan), pins=pins,
                      cache=tmp_path / "cache", on_row=seen.append)
    assert [r.outcome for r in result.rows] == [b.INCONCLUSIVE, b.INSTALL_FAILED, b.REPRODUCES, b.REPRODUCES,
                                                 b.INCONCLUSIVE, b.FIXED, b.FIXED]
    assert seen == list(result.rows)
    assert (result.first_bad, result.first_good) == ("1.2", "1.5")
    assert (tmp_path / "scratch" / "repro.py").read_text().startswith('"""')
    table = b.render_table(result)
    assert "first bad:  pkg 1.2" in table and "first good: pkg 1.5" in table
    assert "1.1      install-failed" in table
    record = b.result_json(result, pins)
    assert json.loads(json.dumps(record))["rows"][4] == {"version": "1.4", "outcome": "inconclusive",
                                                         "detail": "exit 2 for 1.4"}


def test_environments_are_keyed_by_pins(tmp_path: Path) -> None:
    assert b._env_dir(tmp_path, "pkg", "1.0", ["a==1"]) != b._env_dir(tmp_path, "pkg", "1.0", ["a==2"])
    assert b._env_dir(tmp_path, "pkg", "1.0", ["a==1", "b"]) == b._env_dir(tmp_path, "pkg", "1.0", ["b", "a==1"])


@pytest.mark.parametrize("plan, bad, good", [
    ({"1": 0, "2": 0}, None, None),       # never reproduces
    ({"1": 1, "2": 1}, "1", None),        # still reproduces at the end of the range
    ({"1": 0, "2": 1, "3": 0}, "2", "3"),  # a regression, then its fix
])
def test_reading_of_the_table(tmp_path: Path, plan: dict[str, int], bad: str | None, good: str | None) -> None:
    for version, code in plan.items():
        _fake_env(tmp_path, version, [], code)
    result = b.bisect(FINDING, tmp_path / "s", package="pkg", versions=list(plan), cache=tmp_path)
    assert (result.first_bad, result.first_good) == (bad, good)
    assert "first bad:  pkg " + (bad or "none in the range") in b.render_table(result)


def test_default_cache_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert b.default_cache() == tmp_path / "hessdiff" / "bisect"


@pytest.mark.parametrize("args, message", [
    (["--package", "equinox", "--versions", "0.11"], "a range of releases"),
    (["--package", "equinox", "--versions", "0.2..0.1"], "comes after"),
    (["--versions", "0.1..0.2"], "the following arguments are required: --package"),
])
def test_bisect_command_usage_errors(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    path = tmp_path / "finding.json"
    path.write_text(json.dumps(FINDING.to_json()))
    assert main(["bisect", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bisect_command_needs_one_finding(tmp_path: Path, capsys) -> None:
    path = tmp_path / "findings.json"
    path.write_text(json.dumps({"findings": [FINDING.to_json(), FINDING.to_json()]}))
    assert main(["bisect", str(path), "--package", "equinox", "--versions", "0.1..0.2"]) == 2
    assert "holds 2 findings; choose one with --index N" in capsys.readouterr().err
    assert main(["bisect", str(path), "--package", "equinox", "--versions", "0.1..0.2", "--index", "3"]) == 2
    assert "--index=3" in capsys.readouterr().err


@pytest.mark.slow
def test_an_uninstallable_version_is_install_failed_and_cached(tmp_path: Path) -> None:
    python, why = b.ensure_env(tmp_path, "equinox", "0.0.0", [])
    assert python is None and "install.log" in why
    again, why_again = b.ensure_env(tmp_path, "equinox", "0.0.0", [])
    assert again is None and "cached" in why_again



FLIP = Program(2, (Node("input"), op("flip", 0, axis=0), op("square", 1), op("sum", 2)))


def _mlx_flip_finding() -> Finding:
    from hessdiff.backends import get_backend

    if not get_backend("mlx").availability().available:
        pytest.skip("mlx is not installed")
    return Finding(kind=Kind.WRONG_VALUE, variant="mlx:revrev", versions={"mlx": "0.test"}, dtype="float32",
                   program=FLIP, point=np.array([1.5, -0.25]), observed=np.zeros((2, 2)),
                   expected=2 * np.eye(2), explanation="planted for a test", max_error=2.0)


def test_a_release_without_an_api_the_repro_calls_is_absent_naming_the_op(tmp_path: Path) -> None:
    """The repro of a flip finding, run where ``mx.flip`` is missing (as in mlx < 0.32: a
    sitecustomize removes it from the installed MLX), says which API and op the release
    lacks, and bisect reads that row as ``absent``, not as the finding's verdict."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import mlx.core\ndel mlx.core.flip\n")
    import sys

    python = _script(tmp_path / "old-mlx" / "python", f'PYTHONPATH={site} exec {sys.executable} "$@"')
    script = tmp_path / "repro.py"
    script.write_text(b.render_repro(_mlx_flip_finding()))
    outcome, detail = b.replay_script(python, script)
    assert outcome == b.ABSENT, detail
    assert detail.startswith("mlx ") and detail.endswith("has no mlx.core.flip (op flip)")
    result = b.BisectResult("mlx", (b.VersionRow("0.31.2", outcome, detail), b.VersionRow("0.32.0", b.FIXED)),
                            None, None)
    assert f"lacking:    {detail}" in b.render_table(result)


def test_bisect_reads_absent_rows_apart_from_reproduces_and_fixed(tmp_path: Path) -> None:
    for version, body in {"1.0": 'echo "ABSENT: pkg 1.0 has no pkg.core.flip (op flip); not judged"; exit 2',
                          "1.1": "exit 1", "1.2": "exit 0"}.items():
        folder = b._env_dir(tmp_path, "pkg", version, [])
        _script(folder / "bin" / "python", body)
        (folder / b._READY).write_text("")
    result = b.bisect(FINDING, tmp_path / "s", package="pkg", versions=["1.0", "1.1", "1.2"], cache=tmp_path)
    assert [r.outcome for r in result.rows] == [b.ABSENT, b.REPRODUCES, b.FIXED]
    assert result.rows[0].detail == "pkg 1.0 has no pkg.core.flip (op flip)"
    assert (result.first_bad, result.first_good) == ("1.1", "1.2")
