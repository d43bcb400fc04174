"""Backends from other distributions: the ``hessdiff.backends`` entry-point group.

The fast tests put a distribution (a ``.dist-info`` folder and its module) on ``sys.path``,
so ``importlib.metadata`` finds a real entry point with a real distribution name; the slow
test builds a plugin package with a ``pyproject.toml``, installs it into a virtualenv with
pip and runs the ``hessdiff`` command line there, a campaign included.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import site
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hessdiff.backends import registry
from hessdiff.backends.registry import PluginError
from hessdiff.harness.cli import main

# A plugin as a third party writes it: JAX under another name, with one variant. It imports
# no framework at import (JaxBackend imports jax lazily), like a built-in backend.
PLUGIN_SOURCE = '''
from hessdiff.backends import Variant
from hessdiff.backends.jax_backend import JaxBackend


class JaxPluginBackend(JaxBackend):
    """JAX, registered from outside hessdiff."""

    name = "jaxplug"
    variants = {"hessian": Variant("jax.hessian, from a plugin", lambda m, f: m.jax.hessian(f))}


INSTANCE = JaxPluginBackend()
'''

Install = Callable[..., str]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None) -> Iterator[Install]:
    """``install(entry, source)``: a distribution ``<pkg>-hessdiff 0.1`` on ``sys.path``
    whose module ``<pkg>.backend`` holds ``source`` and which declares ``entry``
    (``"name = <pkg>.backend:Attr"``, ``{pkg}`` filled in) in the plugin group. The
    registry loads plugins again on its next use; everything is undone afterwards."""
    packages: list[str] = []

    def make(entry: str, source: str = PLUGIN_SOURCE) -> str:
        pkg = f"hessdiff_plugin_{len(packages)}_{os.getpid()}"
        root = tmp_path / f"site{len(packages)}"
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
        (root / pkg / "backend.py").write_text(source)
        info = root / f"{pkg}_hessdiff-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg}-hessdiff\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[{registry.PLUGIN_GROUP}]\n{entry.format(pkg=pkg)}\n")
        packages.append(pkg)
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.setattr(registry, "_loaded", False)
        return pkg

    try:
        yield make
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] in packages]:
            del sys.modules[name]


# --- a plugin that works ----------------------------------------------------------------


@pytest.mark.parametrize("attr", ["JaxPluginBackend", "INSTANCE"])
def test_a_plugin_naming_a_backend_class_or_instance_is_registered(install: Install, attr: str) -> None:
    pkg = install(f"jaxplug = {{pkg}}.backend:{attr}")
    backend = registry.get_backend("jaxplug")
    assert type(backend).__module__ == f"{pkg}.backend"
    assert [v.name for v in registry.all_variants(["jaxplug"])] == ["jaxplug:hessian"]
    assert registry._SOURCES["jaxplug"] == registry.PluginSource(
        "jaxplug", f"{pkg}.backend:{attr}", f"{pkg}-hessdiff", "0.1")
    assert registry.broken_plugins() == []
    assert registry.framework_of("jaxplug:hessian") == "jax"  # declared by the class it subclasses


def test_a_plugin_shows_in_backends_and_ops(install: Install, capsys: pytest.CaptureFixture[str]) -> None:
    install("jaxplug = {pkg}.backend:JaxPluginBackend")
    assert main(["backends"]) == 0
    # JaxBackend's structured-input probe runs in campaigns too, so it is listed beside it.
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.split()[:2] == ["jaxplug", "hessian"]]
    assert row.split()[:2] == ["jaxplug", "hessian"] and "jax.hessian, from a plugin" in row
    assert main(["ops"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert "jaxplug" in header and "jax" in header


# --- a plugin that does not ---------------------------------------------------------------


BROKEN = [
    pytest.param(
        "jaxplug = {pkg}.backend:JaxPluginBackend", "import no_such_framework_for_hessdiff\n",
        r"does not import: ModuleNotFoundError: No module named 'no_such_framework_for_hessdiff'",
        id="import-fails"),
    pytest.param(
        "jaxplug = {pkg}.backend:Missing", PLUGIN_SOURCE,
        r"does not import: AttributeError: .*Missing", id="no-such-attribute"),
    pytest.param(
        "jaxplug = {pkg}.backend:make", "def make():\n    return None\n",
        r"names the function \S+\.backend\.make, but it must name a subclass or an instance of "
        r"hessdiff\.backends\.Backend\.", id="a-function"),
    pytest.param(
        "jaxplug = {pkg}.backend:Other", "class Other:\n    name = 'jaxplug'\n",
        r"names the class \S+\.backend\.Other, but it must name a subclass or an instance", id="a-class"),
    pytest.param(
        "jaxplug = {pkg}.backend:NUMBER", "NUMBER = 3\n",
        r"names an object of type int, but it must name", id="an-object"),
    pytest.param(
        "jaxplug = {pkg}.backend", PLUGIN_SOURCE,
        r"names the module \S+\.backend, but it must name a subclass or an instance", id="a-module"),
    pytest.param(
        "jaxplug = {pkg}.backend:Abstract",
        "from hessdiff.backends import Backend\n\nclass Abstract(Backend):\n    name = 'jaxplug'\n",
        r"\S+\.backend\.Abstract does not implement: namespace, source_names, to_numpy\.", id="abstract"),
    pytest.param(
        "jaxplug = {pkg}.backend:NoLowerings",
        PLUGIN_SOURCE + "\nclass NoLowerings(JaxPluginBackend):\n    lowerings = {'const': JaxBackend.lowerings['const']}\n",
        r"\S+\.backend\.NoLowerings: no lowering or Absent\(reason\) for ops \['abs', ", id="lacks-lowerings"),
    pytest.param(
        "otherplug = {pkg}.backend:JaxPluginBackend", PLUGIN_SOURCE,
        r"its backend is named 'jaxplug', but the entry point's name must be the backend's name\.",
        id="name-differs"),
    pytest.param(
        "jaxplug = {pkg}.backend:Fails",
        PLUGIN_SOURCE + "\nclass Fails(JaxPluginBackend):\n    def __init__(self):\n        raise OSError('no GPU')\n",
        r"\S+\.backend\.Fails\(\) failed: OSError: no GPU", id="constructor-fails"),
]


@pytest.mark.parametrize(("entry", "source", "problem"), BROKEN)
def test_a_broken_plugin_is_named_with_what_it_lacks(install: Install, entry: str, source: str, problem: str) -> None:
    pkg = install(entry, source)
    name, value = (part.strip() for part in entry.format(pkg=pkg).split("="))
    [broken] = registry.broken_plugins()
    assert isinstance(broken, PluginError)
    assert str(broken).startswith(f"plugin '{name}' (distribution {pkg}-hessdiff 0.1, {value}): "), str(broken)
    assert broken.source.name == name
    assert re.search(problem, broken.problem), broken.problem
    assert name not in {b.name for b in registry.all_backends()}


def test_a_name_clash_with_a_built_in_names_both_and_keeps_the_built_in(install: Install) -> None:
    pkg = install("jax = {pkg}.backend:Clash", PLUGIN_SOURCE + "\nclass Clash(JaxPluginBackend):\n    name = 'jax'\n")
    [broken] = registry.broken_plugins()
    assert str(broken) == (
        f"plugin 'jax' (distribution {pkg}-hessdiff 0.1, {pkg}.backend:Clash): backend name 'jax' is taken by "
        f"hessdiff.backends.jax_backend.JaxBackend; cannot also register {pkg}.backend.Clash."
    )
    assert type(registry.get_backend("jax")).__module__ == "hessdiff.backends.jax_backend"


def test_two_plugins_of_one_name_name_both(install: Install) -> None:
    first = install("jaxplug = {pkg}.backend:JaxPluginBackend")
    second = install("jaxplug = {pkg}.backend:JaxPluginBackend")
    registry.all_backends()
    # sys.path order: the one prepended last is found first.
    [broken] = registry.broken_plugins()
    assert broken.source.distribution == f"{first}-hessdiff"
    assert f"is taken by {second}.backend.JaxPluginBackend from plugin 'jaxplug' (distribution {second}-hessdiff 0.1" \
        in broken.problem


def test_a_broken_plugin_leaves_the_rest_of_hessdiff_working(
    install: Install, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkg = install("jaxplug = {pkg}.backend:JaxPluginBackend", "import no_such_framework_for_hessdiff\n")
    message = (f"plugin 'jaxplug' (distribution {pkg}-hessdiff 0.1, {pkg}.backend:JaxPluginBackend): "
               "does not import: ModuleNotFoundError: No module named 'no_such_framework_for_hessdiff'")
    assert registry.get_backend("jax") is not None
    with pytest.raises(KeyError) as info:
        registry.get_backend("jaxplug")
    assert info.value.args[0] == message

    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("jaxplug ")]
    assert f"plugin from {pkg}-hessdiff ({pkg}.backend:JaxPluginBackend)" in row
    assert row.rstrip().endswith("broken: does not import: ModuleNotFoundError: No module named "
                                 "'no_such_framework_for_hessdiff'")
    assert any(line.startswith("jax ") and "available" in line for line in out.splitlines())

    assert main(["ops"]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"hessdiff: skipping {message}\n"
    assert "jaxplug" not in captured.out.splitlines()[0]

    # Named on the command line: one line and exit code 2, like a missing framework.
    assert main(["run", "--backends", "jaxplug", "--budget", "1s", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == f"hessdiff run: error: {message}\n"


# --- installed with pip into a virtualenv -------------------------------------------------


def _virtualenv(where: Path) -> Path:
    """A virtualenv that also sees the site-packages of this interpreter (hessdiff, jax).

    ``venv --system-site-packages`` would not do: run inside a virtualenv (tox's), it
    adds the *base* interpreter's site-packages, not the virtualenv's. A ``.pth`` line
    that adds each of ours as a site directory does, after the new env's own packages.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    (Path(own) / "hessdiff_test_parent_site.pth").write_text(lines)
    return python


def _plugin_project(root: Path) -> Path:
    project = root / "jaxplug-hessdiff"
    (project / "jaxplug_hessdiff").mkdir(parents=True)
    (project / "jaxplug_hessdiff" / "__init__.py").write_text("")
    (project / "jaxplug_hessdiff" / "backend.py").write_text(PLUGIN_SOURCE)
    (project / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "jaxplug-hessdiff"
        version = "0.1"

        [project.entry-points."hessdiff.backends"]
        jaxplug = "jaxplug_hessdiff.backend:JaxPluginBackend"
    """))
    return project


@pytest.mark.slow
def test_a_plugin_installed_with_pip_runs_in_backends_ops_and_a_campaign(tmp_path: Path) -> None:
    python = _virtualenv(tmp_path / "venv")
    project = _plugin_project(tmp_path)
    # This interpreter's pip installs into the virtualenv (--python); setuptools, when we
    # have it, builds there without a download (the virtualenv sees our site-packages).
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                          "--no-input", "--disable-pip-version-check", *isolation, str(project)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr

    def hessdiff(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(python), "-m", "hessdiff", *args], capture_output=True, text=True,
                              timeout=600, cwd=tmp_path)

    listed = hessdiff("backends")
    assert listed.returncode == 0, listed.stderr
    # JaxBackend's structured-input probe is listed beside the plugin's own variant.
    [row] = [line for line in listed.stdout.splitlines() if line.split()[:2] == ["jaxplug", "hessian"]]
    assert "hessian" in row and "jax.hessian, from a plugin" in row and "available" in row, row
    assert listed.stderr == ""

    ops = hessdiff("ops")
    assert ops.returncode == 0, ops.stderr
    assert "jaxplug" in ops.stdout.splitlines()[0].split()

    out = tmp_path / "report"
    campaign = hessdiff("run", "--backends", "jax:fwdrev,jaxplug", "--budget", "20s", "--seed", "0",
                        "--dtype", "float64", "--points", "2", "--out", str(out),
                        "--baseline", str(tmp_path / "no-baseline.json"))
    assert campaign.returncode in (0, 1), campaign.stderr
    run = json.loads((out / "findings.json").read_text())["run"]
    # Named whole, the plugin brings its campaign probes too (JaxBackend's structured-input one).
    assert sorted(run["variants"]) == ["jax:fwdrev", "jaxplug:hessian", "jaxplug:params-pytree"]
    assert run["harness_errors"] == []
    # The plugin's variant ran (in its worker process) and agreed with the oracle.
    assert run["outcomes"].get("jaxplug:hessian|ok", 0) > 0, run["outcomes"]
