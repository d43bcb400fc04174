"""``hessdiff merge`` on real shard reports: one finding per signature, counts added up."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hessdiff.backends import register
from hessdiff.backends.registry import unregister
from hessdiff.harness.cli import main
from hessdiff.harness.findings import load_findings
from hessdiff.harness.merge import MergeError, load_shard, merge_shards
from planted import PlantedBackend
from shards import write_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory):
    backend = register(PlantedBackend())
    try:
        yield write_shards(backend, tmp_path_factory.mktemp("shards"))
    finally:
        unregister(backend.name)


def test_merge_deduplicates_by_signature_with_counts_and_first_last_seen(shards) -> None:
    loaded = [load_shard(p) for p in shards]
    merged = {m.finding.signature: m for m in merge_shards(loaded)}
    every = [f for s in loaded for f in s.findings]
    assert set(merged) == {f.signature for f in every}
    assert len(merged) < len(every), "two seeds of one campaign share no fault: the fixture is too small"
    for signature, entry in merged.items():
        same = [f for f in every if f.signature == signature]
        assert entry.finding.count == sum(f.count for f in same)
        assert entry.finding.first_seen == min(f.first_seen for f in same)
        assert entry.finding.last_seen == max(f.last_seen for f in same)
        assert entry.finding.program.size == min(f.program.size for f in same)
        assert entry.shards == [s.name for s in loaded if any(f.signature == signature for f in s.findings)]


def test_merge_command_writes_a_complete_report(shards, tmp_path: Path) -> None:
    out = io.StringIO()
    merged_dir = tmp_path / "merged"
    code = main(["merge", *map(str, shards), "--out", str(merged_dir), "--baseline", str(tmp_path / "none.json")])
    assert code == 1, out.getvalue()  # planted faults are in no baseline: new failures
    for name in ("findings.json", "summary.md", "junit.xml", "merged.json"):
        assert (merged_dir / name).is_file(), name
    record = json.loads((merged_dir / "merged.json").read_text())
    assert [s["name"] for s in record["shards"]] == ["shard-1", "shard-2"]
    findings = load_findings(str(merged_dir / "findings.json"))
    assert len({f.signature for f in findings}) == len(findings) == len(record["findings"])
    run = json.loads((merged_dir / "findings.json").read_text())["run"]
    assert run["shards"] == ["shard-1", "shard-2"]
    assert run["examples"] == sum(json.loads(Path(p).read_text())["run"]["examples"] for p in shards)
    # The HTML report of the merged findings, with the shards each finding came from.
    pages = list(merged_dir.glob("findings/*/finding.html"))
    assert (merged_dir / "index.html").is_file() and len(pages) == len(findings)
    assert "shard-" in pages[0].read_text() and not (merged_dir / "trend.html").exists()
    # The merged report's reproducers still show the planted fault.
    folder = next(p for p in (merged_dir / "findings").iterdir() if "pl_gradient" in p.name)
    proc = subprocess.run([sys.executable, "repro.py"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_merge_of_one_report_is_that_report(shards) -> None:
    shard = load_shard(shards[0])
    merged = merge_shards([shard])
    assert [m.finding.signature for m in merged] == [f.signature for f in shard.findings]
    assert [m.finding.count for m in merged] == [f.count for f in shard.findings]


def test_merge_rejects_what_is_not_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "findings.json"
    bad.write_text("[]")
    with pytest.raises(MergeError, match="no 'findings' list"):
        load_shard(bad)
    assert main(["merge", str(bad), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hessdiff merge: error:") and err.count("\n") == 1
    assert main(["merge", str(tmp_path / "missing.json"), "--out", str(tmp_path / "m")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_merging_merged_reports_draws_the_trend(shards, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    none = str(tmp_path / "none.json")
    nights = []
    for night, shard in enumerate(shards):  # two nightlies of one shard each
        out = tmp_path / f"night-{night}"
        assert main(["merge", str(shard), "--out", str(out), "--baseline", none]) == 1
        nights.append(out / "findings.json")
    capsys.readouterr()
    trend = tmp_path / "trend"
    assert main(["merge", *map(str, nights), "--out", str(trend), "--baseline", none]) == 1
    assert "HTML report:" in capsys.readouterr().out
    rows = json.loads((trend / "trend.json").read_text())
    assert [r["path"] for r in sorted(rows, key=lambda r: r["path"])] == sorted(map(str, nights))
    assert all(r["frameworks"] == {"planted": r["failing"]} for r in rows)
    page = (trend / "trend.html").read_text()
    assert page.count('data-kind="trend"') == 2 and 'href="trend.html"' in (trend / "index.html").read_text()
