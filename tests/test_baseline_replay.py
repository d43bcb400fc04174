"""Baseline entries with repros: ``record_repros`` and ``hessdiff baseline check``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hessdiff.harness.baseline import Baseline, BaselineEntry, BaselineError, load_baseline, write_baseline
from hessdiff.harness.baseline_replay import CANNOT_RUN, FIXED, REPRODUCES, record_repros, replay_baseline
from hessdiff.harness.cli import main
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.parse import parse_program

pytest.importorskip("torch")

SOFTPLUS = "torch|*|wrong_value|float64|*softplus*"  # torch's softplus is the identity past 20
TANH = "torch|*|wrong_value|float64|*tanh*"  # no such fault


def _finding(text: str, point: list[float], variant: str = "torch:func") -> Finding:
    return Finding(kind=Kind.WRONG_VALUE, variant=variant, versions={"torch": "x"}, dtype="float64",
                   program=parse_program(text, len(point)), point=np.asarray(point), observed=np.zeros((1, 1)),
                   expected=np.ones((1, 1)))


def test_record_gives_each_entry_the_smallest_finding_it_matches_and_keeps_a_recorded_one() -> None:
    kept = _finding("sum(tanh(x))", [0.5])
    baseline = Baseline((BaselineEntry(SOFTPLUS), BaselineEntry(TANH, repro=_repro(kept)),
                         BaselineEntry("mlx|*|nonfinite|float32|*cumprod*")))
    big = _finding("v1 = softplus(x); v2 = mul(v1, v1); v3 = sum(v2)", [21.0])
    small = _finding("sum(softplus(x))", [21.0])
    recorded, filled = record_repros(baseline, [big, small, _finding("sum(tanh(x))", [2.0])])
    assert [e.signature for e in filled] == [SOFTPLUS]
    entries = {e.signature: e for e in recorded.entries}
    assert entries[SOFTPLUS].repro["program_text"] == small.program.pretty()
    assert entries[TANH].repro["point"] == [0.5]
    assert entries["mlx|*|nonfinite|float32|*cumprod*"].repro is None


def _repro(finding: Finding) -> dict:
    from hessdiff.harness.baseline_replay import repro_of

    return repro_of(finding)


def test_a_written_baseline_reads_back_with_its_repros(tmp_path) -> None:
    baseline = Baseline((BaselineEntry(SOFTPLUS, "", "n", repro=_repro(_finding("sum(softplus(x))", [21.0]))),))
    write_baseline(baseline, tmp_path / "b.json")
    again = load_baseline(tmp_path / "b.json")
    assert again.entries[0].repro == baseline.entries[0].repro
    data = json.loads((tmp_path / "b.json").read_text())
    data["entries"][0]["repro"]["program"] = {"not": "a program"}
    (tmp_path / "b.json").write_text(json.dumps(data))
    with pytest.raises(BaselineError, match="entry 0: its repro is not a finding"):
        load_baseline(tmp_path / "b.json")


def test_check_replays_every_entry_reproduces_fixed_or_cannot_run() -> None:
    baseline = Baseline((
        BaselineEntry(SOFTPLUS, repro=_repro(_finding("sum(softplus(x))", [21.0]))),
        BaselineEntry(TANH, repro=_repro(_finding("sum(tanh(x))", [0.5]))),
        BaselineEntry("mlx|*|nonfinite|float32|*cumprod*"),
        BaselineEntry("nosuch:*|wrong_value|float64|*exp*", repro=_repro(_finding("sum(exp(x))", [1.0], "nosuch:x"))),
    ))
    replays = replay_baseline(baseline)
    assert [r.status for r in replays] == [REPRODUCES, FIXED, CANNOT_RUN, CANNOT_RUN]
    assert "torch:func" in replays[0].detail and "now passes" in replays[1].detail
    assert "no repro recorded" in replays[2].detail and "nosuch" in replays[3].detail


def test_check_says_when_a_fault_reproduces_but_is_blamed_on_a_rule_the_entry_does_not_name() -> None:
    """An entry naming a rule knows a campaign's finding only by its blame: a fault that
    reproduces but is blamed elsewhere today (a change to blame, or to the framework)
    would come back as new, so the check says so."""
    import io

    from hessdiff.harness.baseline_replay import print_replays

    repro = _repro(_finding("sum(softplus(x))", [21.0]))
    baseline = Baseline((BaselineEntry("torch|*|wrong_value|float64|*|softplus(T) @ *", repro=repro),
                         BaselineEntry("torch|*|wrong_value|float64|*|tanh(T) @ *", repro=repro)))
    replays = replay_baseline(baseline)
    assert [(r.status, r.matched) for r in replays] == [(REPRODUCES, True), (REPRODUCES, False)]
    assert "Blamed now as `softplus(T) @ ordinary`" in replays[1].detail
    out = io.StringIO()
    print_replays(replays, out)
    assert out.getvalue().splitlines()[-1] == (
        "2 entries: 2 reproduce (1 blamed on a rule the entry does not name), 0 fixed, 0 cannot run")


def test_the_command_says_fixed_with_exit_1_and_a_missing_baseline_is_a_usage_error(tmp_path, capsys) -> None:
    write_baseline(Baseline((BaselineEntry(TANH, repro=_repro(_finding("sum(tanh(x))", [0.5]))),)), tmp_path / "b.json")
    assert main(["baseline", "check", "--baseline", str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("FIXED") and "1 entries: 0 reproduce, 1 fixed, 0 cannot run" in out
    assert main(["baseline", "check", "--baseline", str(tmp_path / "none.json")]) == 2
    assert "is not a file" in capsys.readouterr().err
