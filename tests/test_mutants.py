"""The mutant frameworks of ``benchmarks/mutants.py``: each is wrong where it says, only
there, and the runner kills a few of them from random generation."""

from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from hessdiff.backends import get_variant
from hessdiff.harness.ops import CATALOGUE
from hessdiff.harness.oracle import evaluate
from hessdiff.harness.outcomes import Outcome, run_variant
from hessdiff.harness.strategies import Case

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from mutant_backends import CLASSES, FRAMEWORKS, MUTANTS, Mutant, Probe, get_mutant, honest_variant, region_hits  # noqa: E402


def _ids(mutant: Mutant) -> str:
    return mutant.name


def _run(variant, probe: Probe) -> Outcome:
    return run_variant(variant, Case(probe.program, np.asarray(probe.point, dtype=np.float64), probe.dtype))


def _honest(mutant: Mutant, probe: Probe):
    main, rev = FRAMEWORKS[mutant.framework]
    return get_variant(f"{mutant.framework}:{main if probe.composition == 'main' else rev}")


def _same(a: Outcome, b: Outcome, mutant: Mutant, dtype: str) -> bool:
    if a.status != b.status:
        return False
    if a.status != "ok":
        return True
    # MLX's float64 transcendental functions are float32-accurate; a wrapper's rounding
    # may differ from the framework's own formula by a few ulps of that.
    rtol = 1e-9 if dtype == "float64" and mutant.framework != "mlx" else 1e-5
    return bool(np.allclose(a.hessian, b.hessian, rtol=rtol, atol=1e-12, equal_nan=True))


@pytest.mark.parametrize("mutant", MUTANTS, ids=_ids)
def test_a_mutant_is_wrong_in_its_region_and_only_there(mutant: Mutant) -> None:
    """Inside its region the mutant's Hessian differs from its framework's (or it
    raises); just outside it is the framework's; its twin is the framework's at both."""
    inside, outside = mutant.inside, mutant.outside
    honest_in, honest_out = _run(_honest(mutant, inside), inside), _run(_honest(mutant, outside), outside)
    assert honest_in.status == honest_out.status == "ok", (honest_in.error, honest_out.error)
    mutated = _run(mutant.variant_of(composition=inside.composition), inside)
    assert not _same(mutated, honest_in, mutant, inside.dtype), (mutated.hessian, honest_in.hessian)
    if mutant.kind == "crash":
        # Under jax.jit the callback's exception comes back as a JaxRuntimeError whose
        # message starts with the callback's traceback.
        assert mutated.status == "crash" and re.search("FloatingPointError|CpuCallback", mutated.error), mutated
    elif mutant.kind == "nan-at-kink":
        assert np.isnan(mutated.hessian).any() and np.isfinite(honest_in.hessian).all()
    assert _same(_run(mutant.variant_of(composition=outside.composition), outside), honest_out, mutant,
                 outside.dtype)
    for probe, honest in ((inside, honest_in), (outside, honest_out)):
        twin = _run(mutant.variant_of(twin=True, composition=probe.composition), probe)
        assert _same(twin, honest, mutant, probe.dtype), (probe, twin.hessian, honest.hessian)


@pytest.mark.parametrize("mutant", MUTANTS, ids=_ids)
def test_a_mutants_region_is_where_its_probes_say(mutant: Mutant) -> None:
    """What the runner counts as reaching the region (on values rounded to the dtype
    node by node): the inside probe does; the outside one does not, except for a
    forward-only mutant, whose outside probe is the same case by reverse-over-reverse. A
    special-value region is the one the oracle names and the generator aims at."""
    inside, outside = mutant.inside, mutant.outside
    assert region_hits(mutant, inside.program, np.asarray(inside.point), inside.dtype)
    assert region_hits(mutant, outside.program, np.asarray(outside.point), outside.dtype) == (
        mutant.kind == "forward-only")
    if mutant.special is not None:
        hits = evaluate(inside.program, np.asarray(inside.point), inside.dtype).specials
        assert (mutant.op, mutant.special) in hits, (hits, CATALOGUE[mutant.op].special_names)


def test_region_values_are_rounded_node_by_node() -> None:
    """An intermediate aimed at 0 as (v - c1) with c1 = v rounded is exactly 0, as in a
    framework, though its exact value is not."""
    from hessdiff.harness.ir import Node, Program, const, op

    from mutant_backends import dtype_values

    square = float(np.float32(0.3) * np.float32(0.3))  # IEEE: the rounded product
    program = Program(1, (Node("input"), op("square", 0), const([square]), op("sub", 1, 2), op("relu", 3),
                          op("sum", 4)))
    values = dtype_values(program, np.array([0.3]), "float32")
    assert values is not None and values[3][0] == 0.0
    assert region_hits(get_mutant("mut-relu-nan"), program, np.array([0.3]), "float32")


def test_the_set_covers_every_class_framework_and_op_group() -> None:
    assert len(MUTANTS) >= 32
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    by_class = {kind: [m for m in MUTANTS if m.kind == kind] for kind in CLASSES}
    assert all(by_class.values()), {k: len(v) for k, v in by_class.items()}
    assert {m.framework for m in MUTANTS} == set(FRAMEWORKS)
    for framework in FRAMEWORKS:
        assert sum(m.framework == framework for m in MUTANTS) >= 5, framework
    groups = {CATALOGUE[m.op].group for m in MUTANTS}
    assert {"unary", "activation", "binary", "reduction", "linalg"} <= groups, groups
    assert {"logsumexp", "prod", "max", "det"} <= {m.op for m in MUTANTS}
    assert len({m.op for m in MUTANTS}) >= 25
    for m in MUTANTS:
        assert "\n" not in m.description and m.kind in m.description and m.op in m.description
        assert m.framework in m.description


def test_a_mutant_travels_to_a_worker_by_name() -> None:
    """Workers unpickle the variant: the mutant comes back as the same backend object."""
    mutant = get_mutant("jax:mut-div-const")
    for twin in (False, True):
        variant = mutant.variant_of(twin=twin)
        again = pickle.loads(pickle.dumps(variant))
        assert again.backend is variant.backend and again.name == variant.name
    assert mutant.variant_of().name == "jax:mut-div-const"
    assert mutant.variant_of(twin=True).name == "jax:mut-div-const-twin"
    assert honest_variant("mlx") == "mlx:fwdrev"


def test_each_campaign_draws_the_mutated_op_and_a_seeded_sample() -> None:
    import mutants

    for mutant in MUTANTS:
        ops = mutants.campaign_ops(mutant, seed=0)
        assert ops[0] == mutant.op and len(set(ops)) == 1 + mutants.OTHER_OPS
        assert ops == mutants.campaign_ops(mutant, seed=0)
        assert all(not hasattr(mutant.variant_of().backend.lowerings[name], "reason") for name in ops)
    assert mutants.campaign_ops(MUTANTS[0], seed=0) != mutants.campaign_ops(MUTANTS[0], seed=1)


@pytest.mark.slow
def test_the_runner_kills_cheap_mutants_and_prints_the_score(capsys, tmp_path) -> None:
    """Three mutants random generation meets at once (an exception at 0, a Hessian of
    logsumexp without its -p p^T, tanh'' = 0), in 20-second campaigns."""
    import json

    import mutants

    names = "mut-abs-crash-zero,mut-logsumexp-detached,mut-tanh-detached"
    out = tmp_path / "mutants.json"
    assert mutants.main(["--only", names, "--budget", "20", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"mutation_score=\d+/3 false_alarms=\d+ unjudged_frac=\d\.\d{4}", lines[-1]), lines[-1]
    results = json.loads(out.read_text())["mutants"]
    assert [r["name"] for r in results] == ["mlx:mut-abs-crash-zero", "torch:mut-logsumexp-detached",
                                            "torch:mut-tanh-detached"]
    assert all(r["killed"] for r in results), [(r["name"], r["reason"]) for r in results]
    assert lines[-1].startswith("mutation_score=3/3 ")
    assert [r["kind"] for r in results] == ["crash", "wrong_value", "wrong_value"]
