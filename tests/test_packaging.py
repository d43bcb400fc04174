"""The packaging, tox, CI script and README agree with each other."""

from __future__ import annotations

import configparser
import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import settings

from harness.profiles import PROFILES, default_profile, register_profiles

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
    patterns = project["tool"]["setuptools"]["package-data"]["harness"]
    for path in (ROOT / "harness" / "templates").iterdir():
        assert any(fnmatch.fnmatch(f"templates/{path.name}", p) for p in patterns), path


def test_torch_pin_agrees() -> None:
    pins = (ROOT / "constraints.txt").read_text().split()
    assert "torch==2.13.0" in pins
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["torch"] == ["torch==2.13.0"]


def test_pyproject_packages_and_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]
    on_disk = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    assert sorted(packages) == on_disk
    assert project["project"]["scripts"] == {"hessdiff": "harness.cli:main"}
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
