"""The packaging, tox, CI script and README agree with each other."""

from __future__ import annotations

import configparser
import fnmatch
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from hypothesis import settings

from hessdiff.harness.profiles import PROFILES, default_profile, register_profiles

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quickstart, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _ci_command() -> str:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return lines[-1]


def test_readme_quickstart_starts_with_the_campaign_then_the_tests() -> None:
    first, second = _readme_commands()[:2]
    assert first.endswith("-m tox -e differential")
    assert re.search(r"-m tox -e tests(,[\w-]+)*$", second), second


def test_ci_runs_exactly_the_readme_test_command() -> None:
    assert _ci_command() == _readme_commands()[1]


def test_ci_script_is_strict() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text


def _tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini")
    return parser


@pytest.mark.parametrize("env", ["tests", "differential"])
def test_tox_envs_pass_the_ci_profile_and_never_ignore_failures(env: str) -> None:
    tox = _tox()
    section = tox[f"testenv:{env}"]
    commands = [c.strip() for c in section["commands"].splitlines() if c.strip()]
    assert commands and all(c.startswith("pytest ") for c in commands)
    assert all("--hypothesis-profile=ci" in c for c in commands)
    for key in ("ignore_outcome", "ignore_errors"):
        assert key not in section and key not in tox["testenv"]


def test_tox_installs_everything_with_our_constraints() -> None:
    base = _tox()["testenv"]
    assert "-c {toxinidir}{/}constraints.txt" in base["install_command"]
    assert {e.strip() for e in base["extras"].split()} == {"all", "test"}


def test_the_tests_env_installs_the_report_extra_and_the_wheel_ships_its_templates() -> None:
    extras = {e.strip() for e in _tox()["testenv:tests"]["extras"].split()}
    assert {"all", "test", "report"} <= extras
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "report" in project["project"]["optional-dependencies"]
    patterns = project["tool"]["setuptools"]["package-data"]["hessdiff.harness"]
    for path in (ROOT / "harness" / "templates").iterdir():
        assert any(fnmatch.fnmatch(f"templates/{path.name}", p) for p in patterns), path


def test_the_torch_pin_is_the_projects_not_the_users() -> None:
    # The machines' CPU wheel is pinned in constraints.txt; the extras name each framework
    # with its oldest supported release only (issue #15: a declared support range), so a
    # user's own torch (or jax, mlx) of any later release satisfies them.
    pins = (ROOT / "constraints.txt").read_text().split()
    assert "torch==2.13.0" in pins
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["torch"] == ["torch>=2.0"]
    for extra in ("jax", "equinox", "mlx", "torch", "diffrax"):
        for requirement in extras[extra]:
            assert re.fullmatch(r"[\w.\[\]-]+>=[\d.]+", requirement.split(";")[0].strip()), (extra, requirement)


def test_pyproject_packages_and_entry_point() -> None:
    # One installed namespace: the repository's harness/ and backends/ are hessdiff.harness
    # and hessdiff.backends, and every package on disk is one of them.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    packages = setuptools["packages"]
    assert all(p == "hessdiff" or p.startswith("hessdiff.") for p in packages)
    mapped = {"hessdiff": "hessdiff", **setuptools["package-dir"]}

    def folder(package: str) -> str:
        prefix = max((m for m in mapped if package == m or package.startswith(m + ".")), key=len)
        return "/".join([mapped[prefix], *package[len(prefix) + 1:].split(".")]).rstrip("/")

    on_disk = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("**/__init__.py")
                     if p.parts[len(ROOT.parts)] in {"hessdiff", "harness", "backends"})
    assert sorted(folder(p) for p in packages) == on_disk
    assert project["project"]["scripts"] == {"hessdiff": "hessdiff.harness.cli:main"}
    assert set(project["project"]["optional-dependencies"]) >= {"jax", "equinox", "mlx", "torch", "all", "test"}


# --- Hypothesis profiles ----------------------------------------------------------------------


def test_profiles_are_registered_with_no_deadline() -> None:
    register_profiles()
    for name in PROFILES:
        assert settings.get_profile(name).deadline is None


def test_profiles_scale_from_dev_to_nightly() -> None:
    dev, ci, nightly = (settings.get_profile(name) for name in ("dev", "ci", "nightly"))
    assert ci.derandomize and not nightly.derandomize
    assert dev.max_examples < ci.max_examples < nightly.max_examples


def test_default_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert default_profile() == "dev"
    monkeypatch.setenv("CI", "true")
    assert default_profile() == "ci"
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "nightly")
    assert default_profile() == "nightly"
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"HYPOTHESIS_PROFILE='fast', but it must be one of"):
        default_profile()


# --- the built wheel ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_package_and_names_frameworks_unpinned(tmp_path: Path) -> None:
    """What ``pip install .`` puts in site-packages: the wheel pip builds from this tree."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("hessdiff-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"hessdiff"}
    assert {"hessdiff/harness/ops/spec.py", "hessdiff/harness/oracle/evaluator.py",
            "hessdiff/backends/scenarios/__init__.py"} <= set(names)
    assert any(n.startswith("hessdiff/harness/templates/") for n in names)
    torch = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: torch")]
    assert torch and all(re.fullmatch(r"Requires-Dist: torch ?(>=[\d.]+)? ?; .*extra == \"(torch|all)\".*", t) for t in torch), torch


def test_the_readme_layout_table_matches_the_tree() -> None:
    """Every top-level folder the repository tracks has a row in README's Layout table, and
    every row names a folder that exists: a newcomer's map of the tree is the tree."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([\w.-]+)/` \|", table, flags=re.M))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    folders = {path.split("/", 1)[0] for path in tracked.stdout.splitlines() if "/" in path}
    folders -= {".ci", ".github"}  # CI plumbing, described in its own README section
    assert rows == folders
