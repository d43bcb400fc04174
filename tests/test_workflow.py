"""The nightly workflow is valid, minimal in permissions, pinned, and agrees with tox.ini.

It cannot run here, so it is linted: check-jsonschema validates it against the GitHub
workflow schema (vendored in the package, no network), and zizmor audits it (pinned
actions, permissions, credentials, template injection) offline. Both are installed by
``tox -e tests``; outside CI a missing linter is a skip, in CI it is a failure.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; tox -e tests installs it (tox.ini [testenv:tests] deps).")
        pytest.skip(f"{name} is not installed: pip install {name}")
    return found


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


def _zizmor(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("zizmor"), "--offline", "--no-progress", str(path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})


def test_nightly_workflow_matches_the_github_workflow_schema() -> None:
    proc = _schema_check(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nightly_workflow_passes_zizmor() -> None:
    proc = _zizmor(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_linters_reject_a_broken_workflow(tmp_path: Path) -> None:
    text = WORKFLOW.read_text()
    no_runner = tmp_path / "no-runner.yml"
    no_runner.write_text(text.replace("runs-on:", "runs_on:", 1))
    assert _schema_check(no_runner).returncode != 0
    unpinned = tmp_path / "unpinned.yml"
    unpinned.write_text(re.sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@main", text, count=1))
    assert _zizmor(unpinned).returncode != 0


def _jobs() -> dict:
    try:
        from ruamel.yaml import YAML  # check-jsonschema's YAML parser
    except ImportError:
        _tool("check-jsonschema")  # fails in CI, skips elsewhere
        pytest.skip("ruamel.yaml (installed with check-jsonschema) is not importable here")
    return YAML(typ="safe").load(WORKFLOW.read_text())


def test_schedule_and_manual_dispatch_with_minimal_permissions() -> None:
    data = _jobs()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    assert data["permissions"] == {}
    for name, job in data["jobs"].items():
        # The legs read earlier nights' example databases (artifacts); nothing else may.
        extra = {"actions": "read"} if name == "campaign" else {}
        assert job["permissions"] == {"contents": "read", **extra}
    for line in WORKFLOW.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d", line), line


def test_matrix_legs_are_tox_version_envs_with_their_own_seed_and_artifact() -> None:
    job = _jobs()["jobs"]["campaign"]
    matrix = job["strategy"]["matrix"]
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    sections = [s for s in tox.sections() if s.startswith("testenv:differential-{")]
    factors = [f for s in sections for f in re.search(r"\{(.+)\}", s).group(1).split(",")]
    assert len(sections) >= 3 and len(factors) >= 9  # latest/eqx0114, JAX releases, MLX releases
    assert sorted(matrix["env"]) == sorted(f"differential-{f}" for f in factors)
    assert len(set(matrix["seed"])) == len(matrix["seed"]) >= 2
    assert job["env"]["HESSDIFF_PROFILE"] == "nightly"
    run = " ".join(step.get("run", "") for step in job["steps"])
    assert '--hypothesis-seed="$HESSDIFF_SEED"' in run
    upload = next(s for s in job["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "always()"
    assert "${{ matrix.env }}" in upload["with"]["name"] and "${{ matrix.seed }}" in upload["with"]["name"]
    assert "reports/${{ matrix.env }}/" in upload["with"]["path"]


def test_each_leg_uploads_its_example_database_and_reads_every_seed_of_its_env() -> None:
    """Nights remember (harness/remembered.py): a leg uploads its database under a name that is
    the same every night, and reads back the newest upload of each seed of its env, so a fault
    found under one seed is replayed under every seed; the token reaches only the tox step."""
    job = _jobs()["jobs"]["campaign"]
    uploads = {s["with"]["name"]: s for s in job["steps"] if "upload-artifact" in s.get("uses", "")}
    database = uploads["examples-${{ matrix.env }}-seed${{ matrix.seed }}"]
    assert database["if"] == "always()" and database["with"]["path"] == "${{ env.HESSDIFF_DATABASE }}"
    assert job["env"]["HESSDIFF_DATABASE"].startswith(".hypothesis/") and database["with"]["include-hidden-files"]
    read = [name.strip() for name in job["env"]["HESSDIFF_ARTIFACTS"].split(",")]
    assert read == [f"examples-${{{{ matrix.env }}}}-seed{seed}" for seed in job["strategy"]["matrix"]["seed"]]
    (with_token,) = [s for s in job["steps"] if "GITHUB_TOKEN" in s.get("env", {})]
    assert with_token["env"]["GITHUB_TOKEN"] == "${{ github.token }}" and "tox -e" in with_token["run"]
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    for section in (s for s in tox.sections() if s.startswith("testenv:differential-{")):
        assert {"GITHUB_REPOSITORY", "GITHUB_TOKEN"} <= set(tox[section]["pass_env"].split()), section


def test_tox_version_envs_share_one_definition_and_their_own_report_folder() -> None:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    section = tox["testenv:differential-{latest,eqx0114}"]
    assert "--out {toxinidir}{/}reports{/}{envname}" in section["commands"]
    assert "GITHUB_STEP_SUMMARY" in section["pass_env"]
    regression = tox["testenv:regression{,-latest}"]
    assert "!latest: equinox==0.11.4" in regression["deps"]
    assert {e.strip() for e in regression["extras"].split()} == {"equinox", "test"}


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "regression").glob("baseline-*.json")))
def test_the_pinned_baseline_keeps_every_entry_of_the_main_one(name: str) -> None:
    import json

    from hessdiff.harness.baseline import load_baseline

    # It builds on the main baseline instead of copying it (a copy kept entries main dropped).
    assert json.loads((ROOT / "regression" / name).read_text())["extends"] in (
        "../reports/baseline.json", "baseline-mlx021.json")  # 0.25.2 builds on 0.21.1's
    main = load_baseline(ROOT / "reports" / "baseline.json")
    pinned = load_baseline(ROOT / "regression" / name)  # raises if malformed
    assert {e.signature for e in main.entries} <= {e.signature for e in pinned.entries}
