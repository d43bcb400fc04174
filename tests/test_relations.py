"""The metamorphic relations (harness/relations.py and the modules it fronts): each catches
its planted fault with the right kind and a runnable repro.py, and stays quiet on an honest
backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hessdiff.backends import CAMPAIGN_RELATIONS, PROBE_RELATIONS, all_backends, get_backend, get_variant, register
from hessdiff.backends.registry import variant_route
from hessdiff.harness.findings import Kind
from hessdiff.harness.ir import Program, const, op
from hessdiff.harness import probe_relations
from hessdiff.harness.probe_relations import ALL_ZERO_NOTE, ode_program
from hessdiff.harness.relations import RELATIONS, check, probes_for
from hessdiff.harness.oracle import evaluate
from hessdiff.harness.report import write_report
from hessdiff.harness.baseline import Baseline
from hessdiff.harness.strategies import Case
from planted import PlantedRelationsBackend

# sum(tanh(x * reversed(x)) + sin(x)): every entry of H is non-zero, cross terms included.
SMOOTH = Program(
    3,
    (op("input"), op("gather", 0, idx=(2, 1, 0)), op("mul", 0, 1), op("tanh", 2), op("sin", 0),
     op("add", 3, 4), op("sum", 5)),
)
POINT = np.array([0.375, -1.25, 0.625])

# A PINN-style u(x, y) = w . act(W x + b): a 2-input MLP.
W = [[0.5, -1.0], [1.25, 0.75], [-0.5, 0.25]]


def mlp(activation: str) -> Program:
    return Program(
        2,
        (op("input"), const(W), op("matmul", 1, 0), const([0.125, -0.25, 0.5]), op("add", 2, 3),
         op(activation, 4), const([1.0, -0.75, 0.5]), op("matmul", 5, 6)),
    )


@pytest.fixture
def plantedrel(clean_registry):
    return register(PlantedRelationsBackend())


def _case(dtype: str = "float64", program: Program = SMOOTH, point: np.ndarray = POINT) -> Case:
    return Case(program, point.astype(dtype).astype(np.float64), dtype)


def _only(findings, variant: str):
    hits = [f for f in findings if f.variant == variant]
    assert hits, f"no finding for {variant}: {[(f.variant, f.kind.value) for f in findings]}"
    return hits[0]


def _repro_exit(finding, tmp_path: Path) -> tuple[int, str]:
    paths = write_report(tmp_path / "report", [finding], baseline=Baseline(), run_info={})
    folder = paths.finding_dirs[0]
    assert (folder / "env.txt").exists()
    run = subprocess.run([sys.executable, str(folder / "repro.py")], capture_output=True, text=True,
                         timeout=300, cwd=folder)
    return run.returncode, run.stdout + run.stderr


# (relation, case dtype, planted computation): one planted fault per relation.
PLANTED = [
    ("symmetry", "float64", "plantedrel:row0"),
    ("hvp", "float64", "plantedrel:hvp-diagonal"),
    ("laplacian", "float64", "plantedrel:laplacian-first"),
    ("modes", "float64", "plantedrel:no_cross"),
    ("transforms", "float64", "plantedrel:jit"),
    ("vmap", "float64", "plantedrel:vmap-wrong-point"),
    ("precision", "float32", "plantedrel:f32scaled"),
    ("finite_differences", "float64", "plantedrel:no_cross"),
    ("custom_rules", "float64", "plantedrel:custom-first-order"),
    ("parameters", "float64", "plantedrel:params-combine-swapped"),
    ("neural_ode", "float64", "plantedrel:ode-frozen-field"),
]


@pytest.mark.parametrize("relation,dtype,culprit", PLANTED, ids=[p[0] for p in PLANTED])
def test_each_relation_catches_its_planted_fault(plantedrel, relation, dtype, culprit) -> None:
    result = check(relation, _case(dtype), plantedrel)
    finding = _only(result.findings, culprit)
    assert finding.kind is Kind.WRONG_VALUE, finding.explanation
    assert finding.explanation.startswith("Relation violated:"), finding.explanation
    assert finding.signature.startswith(f"{culprit.split(':')[0]}|{variant_route(culprit)}|wrong_value|{dtype}|")


def test_the_honest_reference_is_never_blamed(plantedrel) -> None:
    for relation in RELATIONS:
        for dtype in ("float64", "float32"):
            result = check(relation, _case(dtype), plantedrel)
            assert not [f for f in result.findings if f.variant == "plantedrel:honest"], relation


@pytest.mark.slow
@pytest.mark.parametrize(
    "relation,dtype,culprit",
    [p for p in PLANTED if p[0] in ("symmetry", "hvp", "laplacian", "transforms", "custom_rules",
                                    "parameters", "neural_ode")],
    ids=lambda v: v if isinstance(v, str) and ":" not in v and not v.startswith("float") else "",
)
def test_each_planted_finding_has_a_repro_that_reproduces(plantedrel, tmp_path, relation, dtype,
                                                           culprit) -> None:
    finding = _only(check(relation, _case(dtype), plantedrel).findings, culprit)
    code, output = _repro_exit(finding, tmp_path)
    assert code == 1, output
    assert "REPRODUCED" in output


def test_an_all_zero_parameter_hessian_is_explained(plantedrel) -> None:
    finding = _only(check("parameters", _case(), plantedrel).findings, "plantedrel:params-combine-swapped")
    assert not np.any(finding.observed)
    assert ALL_ZERO_NOTE in finding.explanation


def test_a_laplacian_finding_states_the_laplacian(plantedrel) -> None:
    finding = _only(check("laplacian", _case(), plantedrel).findings, "plantedrel:laplacian-first")
    true = float(np.trace(evaluate(SMOOTH, POINT).hessian_float()))
    assert f"trace of the true Hessian: {true!r}" in finding.explanation


def test_relu_pinn_laplacian_is_zero_and_explained_as_expected() -> None:
    """With relu the Laplacian is 0 almost everywhere: a note, never a finding."""
    result = check("laplacian", _case(program=mlp("relu"), point=np.array([0.3, -0.7])), get_backend("jax"))
    assert result.checked >= 1
    assert not result.findings
    assert any("piecewise-linear" in note for note in result.notes), result.notes


def test_tanh_pinn_laplacian_matches_the_oracle() -> None:
    case = _case(program=mlp("tanh"), point=np.array([0.3, -0.7]))
    result = check("laplacian", case, get_backend("jax"))
    assert result.checked >= 1 and not result.findings
    terms = get_variant("jax:laplacian-vmap").hessian(case.program, case.point)
    true = float(np.trace(evaluate(case.program, case.point).hessian_float()))
    assert abs(float(np.trace(terms)) - true) < 1e-12


def test_ode_program_is_the_euler_solve() -> None:
    """(1 - f/4)**4 is 4 Euler steps of dy/dt = -f y from y = 1 on [0, 1]."""
    x = np.array([0.375, -1.25, 0.625])
    value = float(evaluate(SMOOTH, x).value)
    y = 1.0
    for _ in range(4):
        y = y + 0.25 * (-value * y)
    assert float(evaluate(ode_program(SMOOTH), x).value) == pytest.approx(y, rel=1e-14)


def test_every_relation_a_probe_may_declare_has_a_check() -> None:
    """backends.PROBE_RELATIONS (what registration accepts) and the checks here are one set."""
    assert tuple(probe_relations.PROBE_RELATIONS) == PROBE_RELATIONS
    assert set(PROBE_RELATIONS) <= set(RELATIONS)


def test_a_probe_the_campaign_may_run_computes_h_itself() -> None:
    """backends.CAMPAIGN_RELATIONS are exactly the probe relations judged against the
    oracle's full H of the program untransformed, as the campaign judges a variant."""
    plain = {name for name, relation in probe_relations.PROBE_RELATIONS.items()
             if relation.target == "hessian" and relation.transform is None and relation.solver_tolerance is None}
    assert set(CAMPAIGN_RELATIONS) == plain


def test_a_probe_is_checked_by_the_relation_it_declares_whatever_its_name(plantedrel) -> None:
    assert probes_for(plantedrel, "hvp") == ["hvp-diagonal"]
    renamed = {f"probe{i}": spec for i, spec in enumerate(plantedrel.probes().values())}
    plantedrel.probes = lambda: renamed  # names that say nothing: the declaration decides
    assert probes_for(plantedrel, "hvp") == ["probe0"]
    assert [f.variant for f in check("hvp", _case(), plantedrel).failures] == ["plantedrel:probe0"]


def test_the_transforms_relation_compares_the_variants_declared_compiled() -> None:
    compiled = {b.name: [name for name, spec in b.variants.items() if spec.compiled] for b in all_backends()}
    assert compiled == {"jax": ["jit"], "equinox": ["filter_jit"], "mlx": ["compile", "compile-revrev"],
                        "torch": []}


def test_unknown_relation_names_the_choices() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        check("symmetri", _case(), get_backend("jax"))


def test_probes_are_reachable_by_name_and_absent_ones_are_unsupported() -> None:
    from hessdiff.backends import Unsupported

    assert get_variant("jax:hvp-jvp-grad").name == "jax:hvp-jvp-grad"
    with pytest.raises(Unsupported, match="has no probe"):
        get_backend("jax").probe("no-such-probe")
    with pytest.raises(KeyError):
        get_variant("jax:no-such-probe")


def test_neural_ode_float32_asymmetry_is_a_note_with_its_magnitude() -> None:
    backend = get_backend("jax")
    result = check("symmetry", _case("float32"), backend, probes=["ode-euler"])
    assert result.checked == 1
    assert not result.failures
    assert all("numerical" in note and "max |H - H^T| =" in note for note in result.notes)


def test_symmetry_of_a_probe_is_judged_on_the_probe_s_own_function(plantedrel) -> None:
    """The frozen-field solve is symmetric but wrong: symmetry passes, neural_ode fails."""
    assert not check("symmetry", _case(), plantedrel, probes=["ode-frozen-field"]).failures
    assert check("neural_ode", _case(), plantedrel).failures
