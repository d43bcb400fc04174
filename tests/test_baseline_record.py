"""An entry's repro recorded by hand: ``hessdiff baseline record --entry --program --at``."""

from __future__ import annotations

import json

import pytest

from hessdiff.backends import get_variant
from hessdiff.harness.api import InputError, case_of
from hessdiff.harness.baseline import Baseline, BaselineEntry, load_baseline, write_baseline
from hessdiff.harness.baseline_record import ReproError, default_variant, record_by_hand
from hessdiff.harness.baseline_replay import REPRO_KEYS, REPRODUCES, replay_baseline
from hessdiff.harness.cli import main

pytest.importorskip("torch")

# torch's softplus is the identity past 20: its second derivative is 0 at 21, the truth 7.6e-10.
SOFTPLUS = "torch|*|wrong_value|float64|*softplus*"
OTHER = "torch|*|wrong_value|float64|*tanh*"


def _baseline() -> Baseline:
    return Baseline((BaselineEntry(SOFTPLUS, "https://example.org/1", "the note"), BaselineEntry(OTHER)), "b.json")


def test_a_case_that_shows_the_fault_becomes_the_entrys_repro_and_replays() -> None:
    case = case_of("sum(softplus(x))", [21.0], "float64")
    recorded, finding = record_by_hand(_baseline(), SOFTPLUS, case, get_variant("torch:func"))
    entry = recorded.entries[0]
    assert (entry.signature, entry.upstream, entry.note) == (SOFTPLUS, "https://example.org/1", "the note")
    assert tuple(entry.repro) == REPRO_KEYS
    assert entry.repro["variant"] == "torch:func" and entry.repro["point"] == [21.0]
    assert entry.repro["observed"] == [[0.0]] and entry.repro["expected"][0][0] == pytest.approx(7.5826e-10, rel=1e-4)
    assert set(entry.repro["versions"]) == {"torch"}
    assert entry.repro["signature"] == finding.signature and "softplus(T)" in finding.signature  # blamed
    assert recorded.entries[1].repro is None
    [replay] = replay_baseline(Baseline(recorded.entries[:1]))
    assert replay.status == REPRODUCES


@pytest.mark.parametrize(("signature", "x", "says"), [
    (SOFTPLUS, 2.0, "torch:func passes: returns [[0.104994]], the oracle [[0.104994]]; "
                    "not wrong_value"),
    ("torch|*|nonfinite|float64|*softplus*", 21.0, "torch:func is judged wrong_value: "),
    (OTHER, 21.0, "torch:func fails as wrong_value, but its finding 'torch|fwd-over-rev|wrong_value|float64|softplus|"),
])
def test_a_case_that_does_not_show_the_entrys_fault_says_what_the_variant_did(signature: str, x: float,
                                                                              says: str) -> None:
    baseline = Baseline((BaselineEntry(signature),))
    with pytest.raises(ReproError) as raised:
        record_by_hand(baseline, signature, case_of("sum(softplus(x))", [x]), get_variant("torch:func"))
    assert str(raised.value).startswith(says) and "\n" not in str(raised.value)


def test_an_unknown_entry_or_a_variant_it_does_not_cover_is_bad_input() -> None:
    case = case_of("sum(softplus(x))", [21.0])
    with pytest.raises(InputError, match="no entry 'torch:func|wrong_value"):
        record_by_hand(_baseline(), "torch|fwd-over-rev|wrong_value|float64|*softplus*", case, get_variant("torch:func"))
    entry = "torch|rev-over-rev+tape,rev-over-rev+tape+vmap|wrong_value|float64|*softplus*"
    with pytest.raises(InputError, match=r"torch:func is not a variant the entry covers \(torch\|rev-over-rev\+tape,"):
        record_by_hand(Baseline((BaselineEntry(entry),)), entry, case, get_variant("torch:func"))


def test_the_default_variant_is_the_first_the_entry_covers() -> None:
    names = ["jax:fwdrev", "torch:func", "torch:func-revrev", "torch:autograd", "torch:autograd-vec"]
    assert default_variant(BaselineEntry(SOFTPLUS), names) == "torch:func"
    assert default_variant(BaselineEntry("torch|rev-over-rev+tape,rev-over-rev+tape+vmap|nonfinite|float32|prod*"), names) == "torch:autograd"
    assert default_variant(BaselineEntry("mlx|*|nonfinite|float32|*tanh*"), names) is None


def test_the_command_writes_the_repro_or_exits_1_with_one_line_and_writes_nothing(tmp_path, capsys) -> None:
    path = tmp_path / "b.json"
    write_baseline(_baseline(), path)
    before = path.read_text()
    args = ["baseline", "record", "--baseline", str(path), "--entry", SOFTPLUS, "--program", "sum(softplus(x))"]
    assert main([*args, "--at", "2"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("not recorded: torch:func passes: returns [[0.104994]]") and out.count("\n") == 1
    assert path.read_text() == before
    assert main([*args, "--at", "21", "--variant", "torch:func-revrev"]) == 0
    assert capsys.readouterr().out.startswith("recorded: torch|rev-over-rev|wrong_value|float64|softplus|softplus(T)")
    assert load_baseline(path).entries[0].repro["variant"] == "torch:func-revrev"
    assert json.loads(path.read_text())["entries"][1] == {"signature": OTHER, "upstream": "", "note": ""}


@pytest.mark.parametrize(("extra", "says"), [
    (["--entry", SOFTPLUS, "--program", "sum(softplus(x))"], "takes --entry, --program and --at together"),
    (["--entry", SOFTPLUS, "--program", "sum(softplus(x)", "--at", "21"], "hessdiff baseline record: error: "),
    (["--entry", SOFTPLUS, "--program", "sum(softplus(x))", "--at", "a"], "--at='a', but it must be"),
    (["--entry", SOFTPLUS, "--program", "sum(softplus(x))", "--at", "21", "--variant", "nosuch:x"], "nosuch"),
    ([], "give runs' findings (FINDINGS.json...) or --entry"),
])
def test_bad_input_to_a_hand_record_is_one_line_and_exit_2(tmp_path, capsys, extra: list[str], says: str) -> None:
    write_baseline(_baseline(), tmp_path / "b.json")
    assert main(["baseline", "record", "--baseline", str(tmp_path / "b.json"), *extra]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
