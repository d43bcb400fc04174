"""The known-issues baseline: loading, validation, and splitting a run's findings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hessdiff.harness.baseline import Baseline, BaselineEntry, BaselineError, load_baseline
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.ir import Node, Program, op

ROOT = Path(__file__).resolve().parent.parent


def _finding(variant: str, kind: Kind, dtype: str, *ops: str) -> Finding:
    nodes = [Node("input")] + [op(name, i) for i, name in enumerate(ops)] + [op("sum", len(ops))]
    program = Program(2, tuple(nodes))
    return Finding(kind, variant, {"jax": "test"}, dtype, program, np.array([1.0, -1.0]),
                   np.zeros((2, 2)), np.eye(2))


RELU = _finding("equinox:filter_hessian", Kind.WRONG_VALUE, "float64", "relu")
RELU_TANH = _finding("equinox:filter_hessian", Kind.WRONG_VALUE, "float64", "tanh", "relu")
RELU_F32 = _finding("equinox:filter_hessian", Kind.WRONG_VALUE, "float32", "relu")
SIN = _finding("jax:fwdrev", Kind.CRASH, "float64", "sin")


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_signature_shape() -> None:
    assert RELU.signature == "equinox|fwd-over-rev|wrong_value|float64|relu+sum"


def test_a_blamed_findings_signature_names_its_rule_and_a_baseline_entry_may_too() -> None:
    from dataclasses import replace

    blamed = replace(RELU, blame={"node": 1, "op": "relu", "pattern": "T", "rule": "relu(T)", "region": "zero",
                                  "root_cause": "relu(T) @ zero"})
    # The blamed node's op stands for the program's ops: one fault in two programs is
    # one signature.
    assert blamed.signature == "equinox|fwd-over-rev|wrong_value|float64|relu|relu(T) @ zero"
    assert replace(blamed, program=Program(2, (Node("input"), op("relu", 0), op("square", 1), op("sum", 2)))
                   ).signature == blamed.signature
    assert blamed.root_cause == "equinox|relu(T) @ zero|wrong_value|float64"
    ops_only = BaselineEntry("equinox|fwd-over-rev|wrong_value|float64|*relu*")
    assert ops_only.matches(blamed.signature) and ops_only.matches(RELU.signature)  # ops alone: either
    by_rule = BaselineEntry("equinox|*|wrong_value|float64|*|relu(T) @ *")
    assert by_rule.matches(blamed.signature)
    assert not by_rule.matches(RELU.signature)  # not blamed: not known to be this rule
    assert not BaselineEntry("equinox|*|wrong_value|float64|*|relu(T) @ tiny").matches(blamed.signature)
    assert not BaselineEntry("equinox|fwd-over-rev|wrong_value|float64|relu+sum|tanh(T) @ zero").matches(
        blamed.signature)


def test_exact_signature_splits() -> None:
    baseline = Baseline((BaselineEntry(RELU.signature, "https://example.org/801", "known"),))
    new, known, fixed = baseline.split([RELU, RELU_F32, SIN])
    assert known == [RELU]
    assert new == [RELU_F32, SIN]
    assert fixed == []


def test_wildcard_in_ops_covers_a_family() -> None:
    entry = BaselineEntry("equinox|fwd-over-rev|wrong_value|float64|*relu*", "https://example.org/1")
    new, known, _ = Baseline((entry,)).split([RELU, RELU_TANH, RELU_F32, SIN])
    assert known == [RELU, RELU_TANH]
    assert new == [RELU_F32, SIN]  # the dtype part is exact


def test_exact_entry_wins_over_a_pattern() -> None:
    pattern = BaselineEntry("equinox|fwd-over-rev|wrong_value|float64|*", "https://example.org/p")
    exact = BaselineEntry(RELU.signature, "https://example.org/e")
    baseline = Baseline((pattern, exact))
    assert baseline.entry_for(RELU) == exact
    assert baseline.entry_for(RELU_TANH) == pattern
    assert baseline.entry_for(SIN) is None


def test_entries_that_did_not_reproduce_are_fixed() -> None:
    gone = BaselineEntry("jax|rev-over-rev|wrong_value|float64|abs+sum", "https://example.org/2", "abs")
    elsewhere = BaselineEntry("torch|fwd-over-rev|crash|float32|sin+sum", "https://example.org/3")
    baseline = Baseline((BaselineEntry(RELU.signature), gone, elsewhere))
    _, known, fixed = baseline.split([RELU])
    assert known == [RELU]
    assert fixed == [gone, elsewhere]
    # torch was not run: its entry was not tried, so it is not "fixed".
    _, _, fixed = baseline.split([RELU], checked_variants=["equinox:filter_hessian", "jax:revrev"])
    assert fixed == [gone]


def test_missing_file_is_an_empty_baseline(tmp_path: Path) -> None:
    baseline = load_baseline(tmp_path / "nope.json")
    assert baseline.entries == ()
    assert baseline.split([RELU]) == ([RELU], [], [])


def test_committed_baseline_loads() -> None:
    baseline = load_baseline(ROOT / "reports" / "baseline.json")
    assert isinstance(baseline, Baseline)


def test_load_round_trips(tmp_path: Path) -> None:
    data = {"entries": [
        {"signature": RELU.signature, "upstream": "https://github.com/patrick-kidger/equinox/issues/801",
         "note": "relu"},
        {"signature": "jax|fwd-over-rev|crash|float64|*sin*", "upstream": ""},
    ]}
    baseline = load_baseline(_write(tmp_path, data))
    assert [e.signature for e in baseline.entries] == [RELU.signature, "jax|fwd-over-rev|crash|float64|*sin*"]
    assert baseline.entries[0].upstream.endswith("/801")
    assert baseline.to_json()["entries"][1] == {"signature": "jax|fwd-over-rev|crash|float64|*sin*",
                                               "upstream": "", "note": ""}
    assert baseline.entry_for(SIN) == baseline.entries[1]


@pytest.mark.parametrize("data, message", [
    ("{not json", "not valid JSON"),
    ("[]", '{"entries": [...]}'),
    ({"entries": {}}, '{"entries": [...]}'),
    ({"entries": ["x"]}, "entry 0 must be an object"),
    ({"entries": [{"signature": 3}]}, "signature=3"),
    ({"entries": [{"signature": "jax|fwd-over-rev|wrong_value|float64"}]}, "framework|route|kind|dtype|ops"),
    ({"entries": [{"signature": "jax|fwd-over-rev||float64|relu"}]}, "framework|route|kind|dtype|ops"),
    ({"entries": [{"signature": "jax|wrong_value|float64|relu"}]}, "framework|route|kind|dtype|ops"),
    ({"entries": [{"signature": "*|fwd-over-rev|wrong_value|float64|relu"}]}, "patterns go in the route"),
    ({"entries": [{"signature": "jax|fwd-over-rev|wrong_*|float64|relu"}]}, "patterns go in the route"),
    ({"entries": [{"signature": "jax|fwd-over-rev|wrong|float64|relu"}]}, "kind 'wrong'"),
    ({"entries": [{"signature": "jax:fwdrev|wrong_value|float64|relu"}]}, "hessdiff baseline upgrade"),
    ({"entries": [{"signature": "jax:*|wrong_value|float64|*|relu(T) @ *"}]}, "older form"),
    ({"entries": [{"signature": "jax|fwd-over-rev|crash|float16|relu"}]}, "dtype 'float16'"),
    ({"entries": [{"signature": "jax:fwdrev|fwd-over-rev|crash|float64|relu|relu(T) @ *"}]}, "plain names"),
    ({"entries": [{"signature": "jax|fwd-over-rev|crash|float64|relu", "upstream": "github.com/x"}]},
     "http(s) URL"),
    ({"entries": [{"signature": "jax|fwd-over-rev|crash|float64|relu", "url": "https://x"}]}, "unknown keys"),
    ({"entries": [{"signature": "jax|fwd-over-rev|crash|float64|relu"},
                  {"signature": "jax|fwd-over-rev|crash|float64|relu"}]}, "entries 0 and 1"),
])
def test_malformed_baseline_is_one_clear_line(tmp_path: Path, data: Any, message: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    text = str(info.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_a_program_without_ops_has_an_empty_ops_part_and_an_entry_may_name_it(tmp_path: Path) -> None:
    """f(x) = 0.0 has no op: its finding's signature is ``variant|crash|float32||composition``."""
    path = _write(tmp_path, {"entries": [{"signature": "equinox|*|crash|float32||composition"}]})
    baseline = load_baseline(path)
    assert baseline.entry_for("equinox|fwd-over-rev|crash|float32||composition") is not None
    assert baseline.entry_for("equinox|fwd-over-rev|crash|float32|sum|composition") is None


def test_a_variant_pattern_covers_every_variant_of_a_backend() -> None:
    entry = BaselineEntry("jax|*|wrong_value|float64|*tanh*", "https://example.org/1", "tanh'' near 0")
    assert entry.matches("jax|rev-over-rev|wrong_value|float64|sum+tanh")
    assert not entry.matches("torch|fwd-over-rev|wrong_value|float64|sum+tanh")
    assert not entry.matches("jax|rev-over-rev|wrong_value|float32|sum+tanh")
    assert entry.covers_variant("jax:jit") and not entry.covers_variant("equinox:filter_hessian")


def test_an_ops_pattern_can_name_one_op_exactly() -> None:
    """``*+max+*``: a program with max, wherever it sorts, and not one with maximum."""
    from hessdiff.harness.baseline import BaselineEntry

    entry = BaselineEntry("mlx|fwd-over-rev,fwd-over-rev+vmap|wrong_value|float32|*+max+*")
    assert entry.matches("mlx|fwd-over-rev|wrong_value|float32|max")
    assert entry.matches("mlx|fwd-over-rev+vmap|wrong_value|float32|erf+max+square")
    assert not entry.matches("mlx|fwd-over-rev|wrong_value|float32|maximum+square")
    assert not entry.matches("mlx|rev-over-rev|wrong_value|float32|max")


def test_a_baselines_repr_is_one_short_line() -> None:
    """A failing property prints its fixtures: the repr must not be the whole file."""
    baseline = load_baseline(Path(__file__).resolve().parent.parent / "reports" / "baseline.json")
    assert len(repr(baseline)) < 200 and str(len(baseline.entries)) in repr(baseline)


def test_hypothesis_prints_a_baseline_in_one_short_line_too() -> None:
    """Hypothesis prints a failing example's call with its own printer, which shows a
    dataclass field by field: the committed baseline made that call 40 kB, Hypothesis warned,
    and under the suite's warnings-as-errors a failing property (a framework's exception)
    was reported as FlakyStrategyDefinition instead."""
    from hypothesis.vendor.pretty import pretty

    baseline = load_baseline(Path(__file__).resolve().parent.parent / "reports" / "baseline.json")
    assert pretty(baseline) == repr(baseline)


def _entry(signature: str, note: str = "") -> dict[str, str]:
    return {"signature": signature, "upstream": "", "note": note}


def test_a_pinned_baseline_extends_the_main_one_and_its_own_entries_replace_inherited_ones(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "pinned").mkdir()
    main = tmp_path / "reports" / "baseline.json"
    main.write_text(json.dumps({"entries": [_entry(RELU.signature, "main"), _entry(SIN.signature, "main")]}))
    pinned = tmp_path / "pinned" / "baseline.json"
    pinned.write_text(json.dumps({"extends": "../reports/baseline.json",
                                  "entries": [_entry(RELU.signature, "pinned"), _entry(RELU_F32.signature)]}))
    loaded = load_baseline(pinned)
    assert {e.signature: e.note for e in loaded.entries} == {
        RELU.signature: "pinned", SIN.signature: "main", RELU_F32.signature: ""}
    new, known, _ = loaded.split([RELU, SIN, RELU_F32, RELU_TANH])
    assert new == [RELU_TANH] and len(known) == 3
    # An entry dropped from the main baseline is gone from the pinned one: nothing was copied.
    main.write_text(json.dumps({"entries": [_entry(RELU.signature, "main")]}))
    assert SIN.signature not in {e.signature for e in load_baseline(pinned).entries}


def test_writing_a_pinned_baseline_keeps_only_its_own_entries(tmp_path: Path) -> None:
    from dataclasses import replace

    from hessdiff.harness.baseline import write_baseline

    main = tmp_path / "main.json"
    main.write_text(json.dumps({"entries": [_entry(RELU.signature), _entry(SIN.signature)]}))
    pinned = tmp_path / "pinned.json"
    pinned.write_text(json.dumps({"extends": "main.json", "entries": [_entry(RELU_F32.signature)]}))
    loaded = load_baseline(pinned)
    # A note changed on an inherited entry (as `baseline record` fills a repro) makes it the pinned file's own.
    changed = tuple(replace(e, note="seen here") if e.signature == SIN.signature else e for e in loaded.entries)
    write_baseline(replace(loaded, entries=changed), pinned)
    written = json.loads(pinned.read_text())
    assert written["extends"] == "main.json"
    assert [e["signature"] for e in written["entries"]] == [RELU_F32.signature, SIN.signature]
    assert {e.signature for e in load_baseline(pinned).entries} == {RELU.signature, SIN.signature, RELU_F32.signature}


@pytest.mark.parametrize(
    ("extends", "message"),
    [
        ("missing.json", "extends missing.json, which is not a file"),
        ("baseline.json", "which extends it back"),
        (3, "must be a path"),
    ],
)
def test_a_bad_extends_is_one_clear_line(tmp_path: Path, extends: Any, message: str) -> None:
    path = _write(tmp_path, {"extends": extends, "entries": []})
    with pytest.raises(BaselineError, match=message):
        load_baseline(path)


def test_unknown_top_level_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=r"unknown keys \['include'\]"):
        load_baseline(_write(tmp_path, {"include": "x.json", "entries": []}))


@pytest.mark.parametrize("path", [ROOT / "reports" / "baseline.json",
                                  *sorted((ROOT / "regression").glob("baseline-*.json"))],
                         ids=lambda p: p.name if p.parent.name == "regression" else "main")
def test_committed_entries_name_the_broken_rule_never_the_ops_around_it(path: Path) -> None:
    """An op-set glob (``mlx:*|nonfinite|float32|*tanh*``) covered every fault of its
    variant, kind and dtype in any program with a tanh, arctanh or gelu_tanh in it: a new
    fault there was never reported. An entry names the rule its repro is blamed on
    (``...|*|tanh(T) @ *``); only a composition (an op set by nature) keeps its ops, and
    a fault of the Hessian helper itself covers every program (``...|*``)."""
    for entry in load_baseline(path).entries:
        parts = entry.signature.split("|")
        if len(parts) == 5:
            assert parts[4] == "*", entry.signature  # the whole route
        else:
            assert len(parts) == 6, entry.signature
            assert parts[4] == "*" or parts[5].startswith("composition"), entry.signature


def test_a_rule_named_entry_covers_the_rule_in_any_program_and_nothing_else() -> None:
    entry = BaselineEntry("mlx|*|nonfinite|float32|*|tanh(T) @ *")
    assert entry.matches("mlx|fwd-over-rev|nonfinite|float32|add+sum+tanh|tanh(T) @ huge")
    assert entry.matches("mlx|rev-over-rev|nonfinite|float32|arctanh+sum+tanh|tanh(T) @ ordinary")
    assert not entry.matches("mlx|rev-over-rev|nonfinite|float32|arctanh+sum+tanh|arctanh(T) @ ordinary")
    assert not entry.matches("mlx|rev-over-rev|nonfinite|float32|gelu_tanh+sum")  # not blamed: unknown
    baseline = Baseline((entry,))
    assert baseline.names_rules("mlx:fwdrev", "nonfinite", "float32")
    assert not baseline.names_rules("mlx:fwdrev", "nonfinite", "float64")
    assert not baseline.names_rules("jax:fwdrev", "nonfinite", "float32")


OLD_FORM = [
    "torch:*|wrong_value|float64|*|softplus(T) @ *",
    "torch:autograd*|nonfinite|float32|prod*|composition",
    "torch:func-fwdfwd|wrong_value|float32|*|det(T) @ *",
    "mlx:revrev-vmap|wrong_value|float32|*|slice(*) @ *",
    "equinox:params-filter-hessian|crash|float64|*",
    "mlx:fwdrev*|wrong_value|float32|*+max+*",
]


@pytest.mark.parametrize("old", OLD_FORM)
def test_upgrade_rewrites_an_older_entry_to_cover_exactly_the_variants_it_did(old: str) -> None:
    """An older entry's variant pattern becomes the routes of the variants it matched:
    ``torch:autograd*`` covers autograd and autograd-vec and not func-revrev, though all
    three are reverse over reverse; ``mlx:revrev-vmap`` not mlx:revrev."""
    import fnmatch

    from hessdiff.backends import registry
    from hessdiff.harness.baseline_upgrade import upgraded_signature

    new = BaselineEntry(upgraded_signature(old))
    assert ":" not in new.signature.split("|")[0]
    pattern = old.split("|", 1)[0]
    for variant in registry.campaign_variants():
        assert new.covers_variant(variant.name) == fnmatch.fnmatchcase(variant.name, pattern), variant.name
    assert upgraded_signature(new.signature) == new.signature  # the new form is left alone


def test_upgrade_command_rewrites_the_file_and_it_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hessdiff.harness.cli import main

    path = _write(tmp_path, {"entries": [{"signature": s, "upstream": "", "note": ""} for s in OLD_FORM]})
    with pytest.raises(BaselineError, match=r"older form .*hessdiff baseline upgrade"):
        load_baseline(path)
    assert main(["baseline", "upgrade", "--baseline", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: {len(OLD_FORM)} entries rewritten\n"
    entries = load_baseline(path).entries
    assert [e.signature.split("|")[0] for e in entries] == ["torch", "torch", "torch", "mlx", "equinox", "mlx"]
    assert main(["baseline", "upgrade", "--baseline", str(path)]) == 0  # again: nothing left to do
    assert capsys.readouterr().out == f"{path}: 0 entries rewritten\n"


def test_upgrade_of_an_entry_it_cannot_place_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hessdiff.harness.cli import main

    data = {"entries": [{"signature": "torch:nosuch*|crash|float64|*"}]}
    path = _write(tmp_path, data)
    assert main(["baseline", "upgrade", "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matches none of torch's variants" in err
    assert json.loads(path.read_text(encoding="utf-8")) == data


def test_a_finding_read_back_keeps_its_route_where_its_backend_is_not_installed() -> None:
    from hessdiff.harness.findings import finding_from_json

    data = RELU.to_json()
    data["variant"], data["route"] = "gone:fwdrev", "fwd-over-rev+vmap"
    assert finding_from_json(data).signature == "gone|fwd-over-rev+vmap|wrong_value|float64|relu+sum"


def test_a_copy_of_a_finding_for_another_variant_is_signed_by_that_variants_route() -> None:
    from dataclasses import replace

    assert RELU.route == "fwd-over-rev"
    copy = replace(RELU, variant="equinox:filter_jit")
    assert copy.signature == "equinox|fwd-over-rev+compiled|wrong_value|float64|relu+sum"
