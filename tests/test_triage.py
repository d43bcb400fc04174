"""``hessdiff triage`` on a real report: drafts per framework, in the framework's template."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hessdiff.backends import register
from hessdiff.backends.registry import unregister
from hessdiff.harness.bisect import BisectResult, VersionRow, result_json
from hessdiff.harness.cli import main
from hessdiff.harness.triage import TEMPLATES, TriageError, load_items, render_draft, triage
from planted import PlantedBackend
from shards import write_shards


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    backend = register(PlantedBackend())
    try:
        (findings_json,) = write_shards(backend, tmp_path_factory.mktemp("triage"), seeds=(1,))
    finally:
        unregister(backend.name)
    return findings_json.parent


@pytest.fixture
def copy(report: Path, tmp_path: Path) -> Path:
    target = tmp_path / "report"
    shutil.copytree(report, target)
    return target


def test_triage_writes_one_draft_per_failure_grouped_by_framework(copy: Path, capsys) -> None:
    assert main(["triage", str(copy)]) == 0
    assert "draft(s) for planted" in capsys.readouterr().out
    records = json.loads((copy / "findings.json").read_text())["findings"]
    failing = [r for r in records if r["kind"] in ("wrong_value", "wrong_shape", "nonfinite", "crash", "timeout")]
    assert failing, "the planted campaign found nothing: the fixture is broken"
    index = (copy / "triage" / "README.md").read_text()
    assert "## planted (" in index
    drafts = sorted((copy / "triage" / "planted").glob("*.md"))
    causes = {r["root_cause"].rsplit("|", 1)[0] if r.get("root_cause") else r["signature"] for r in failing}
    assert len(drafts) == len(causes)  # one per root cause: the variants and dtypes of one rule are one bug
    for record in failing:
        path = copy / "triage" / "planted" / (Path(record["folder"]).name + ".md")
        if not path.exists():  # covered by another finding's draft of the same root cause
            assert any(record["variant"] in d.read_text() for d in drafts)
            continue
        assert record["signature"] in index
        draft = path.read_text()
        repro = (copy / record["folder"] / "repro.py").read_text().rstrip("\n")
        env = (copy / record["folder"] / "env.txt").read_text().rstrip("\n")
        assert repro in draft and env in draft  # the minimal code and the environment block
        assert "## Why the expected value is right" in draft
        assert "Observed" in draft and "Expected" in draft
        assert "review before filing" in draft
        assert "not bisected" in index


def test_a_bisect_result_beside_the_finding_goes_into_its_draft(copy: Path) -> None:
    item = load_items(copy)[0]
    rows = (VersionRow("0.11.4", "reproduces"), VersionRow("0.11.5", "fixed"))
    record = result_json(BisectResult("equinox", rows, "0.11.4", "0.11.5"), ["jax==0.4.26"])
    (item.folder / "bisect.json").write_text(json.dumps(record))
    index, items = triage(copy)
    draft = render_draft(items[0])
    assert "## Which release" in draft and "| 0.11.5 | fixed |" in draft
    assert "first good: equinox 0.11.5" in draft.lower()
    assert "first bad 0.11.4, first good 0.11.5" in index.read_text()


@pytest.mark.parametrize("framework", sorted(TEMPLATES))
def test_each_framework_gets_its_own_template(copy: Path, framework: str) -> None:
    from dataclasses import replace

    item = load_items(copy)[0]
    item = replace(item, finding=replace(item.finding, variant=f"{framework}:x"))
    draft = render_draft(item)
    template = TEMPLATES[framework]
    assert template.tracker in draft
    for heading in (template.description, template.code, template.environment):
        assert f"## {heading}" in draft
    assert template.env_command in draft


def test_triage_of_a_folder_that_is_no_report_is_a_usage_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(TriageError, match="no findings.json"):
        triage(tmp_path)
    assert main(["triage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hessdiff triage: error:") and err.count("\n") == 1


def test_one_draft_stands_for_every_variant_and_dtype_of_one_broken_rule(copy: Path) -> None:
    from dataclasses import replace

    from hessdiff.harness.triage import root_cause_key

    item = load_items(copy)[0]
    blame = {"node": 1, "op": "exp", "pattern": "T", "rule": "exp(T)", "region": "tiny", "root_cause": "exp(T) @ tiny",
             "kind": "wrong_value"}
    f64 = replace(item.finding, blame=blame, dtype="float64")
    f32 = replace(item.finding, blame=blame, dtype="float32", variant="planted:other")
    assert root_cause_key(f64) == root_cause_key(f32) == f"planted|exp(T) @ tiny|{item.finding.kind.value}"
    composed = replace(item.finding, blame={"node": None, "rule": "composition", "root_cause": "composition"})
    assert "composition(" in root_cause_key(composed)  # a composition names its ops: not one bucket
    draft = render_draft(replace(item, finding=f64), [replace(item, finding=f32)])
    assert "the derivative rule `exp(T) @ tiny` checked alone is wrong" in draft
    assert "## The same rule elsewhere" in draft and "`planted:other` float32" in draft


def test_a_draft_names_the_modes_its_root_cause_shows_in(copy: Path) -> None:
    """One draft per broken rule lists the differentiation modes of every variant that
    shows it: a rule wrong only forward-over-forward points the maintainer at its JVP."""
    from dataclasses import replace

    item = load_items(copy)[0]
    blame = {"node": 1, "op": "exp", "pattern": "T", "rule": "exp(T)", "region": "tiny", "root_cause": "exp(T) @ tiny",
             "kind": "wrong_value"}
    fwdfwd = replace(item.finding, blame=blame, variant="torch:func-fwdfwd")
    revrev = replace(item.finding, blame=blame, variant="torch:autograd")
    draft = render_draft(replace(item, finding=fwdfwd), [replace(item, finding=revrev)])
    assert ("Differentiation modes it shows in: fwd-over-fwd (`torch:func-fwdfwd`); "
            "rev-over-rev (`torch:autograd`).") in draft, draft
