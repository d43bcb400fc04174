"""The Neural-ODE scenario through diffrax (backends/scenarios/equinox_probes.py, the
``neural_ode`` and ``neural_ode_adaptive`` relations of harness/probe_relations.py): the
fixed-step diffrax solve is the hand-written Euler loop, the adaptive one is within its
tolerance of the exact solution, float32 asymmetry is numerical, and a planted fault in
each is caught.

Every test that runs a diffrax solve compiles it under jax.hessian (seconds each): those
are marked slow, and skip without diffrax.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import final

import numpy as np
import pytest

from hessdiff.backends import Variant, all_backends, get_backend, get_variant, register
from hessdiff.backends.backend_variant import BackendVariant, constants_read_by
from hessdiff.backends.jax_backend import JaxBackend
from hessdiff.backends.scenarios import ode_problem
from hessdiff.backends.scenarios.equinox_probes import diffrax_adaptive_hessian
from hessdiff.harness.baseline import Baseline
from hessdiff.harness.findings import Kind
from hessdiff.harness.ir import Program, op
from hessdiff.harness.oracle import evaluate
from hessdiff.harness.outcomes import run_variant
from hessdiff.harness.probe_relations import ADAPTIVE_ODE_MAX_RATE, exact_ode_program
from hessdiff.harness.relations import check, probes_for
from hessdiff.harness.report import write_report
from hessdiff.harness.strategies import Case

# sum(tanh(x * reversed(x)) + sin(x)): every entry of H is non-zero, cross terms included.
SMOOTH = Program(
    3,
    (op("input"), op("gather", 0, idx=(2, 1, 0)), op("mul", 0, 1), op("tanh", 2), op("sin", 0),
     op("add", 3, 4), op("sum", 5)),
)
POINT = np.array([0.375, -1.25, 0.625])
DTYPES = ("float64", "float32")

needs_diffrax = pytest.mark.skipif(
    importlib.util.find_spec("diffrax") is None,
    reason="diffrax is not installed: pip install 'hessdiff[diffrax]'",
)


def _case(dtype: str = "float64", program: Program = SMOOTH, point: np.ndarray = POINT) -> Case:
    return Case(program, point.astype(dtype).astype(np.float64), dtype)


# --- planted faults: one per ODE relation -----------------------------------------------


def diffrax_euler_frozen_field(f):
    """A broken diffrax solve: after the first Euler step the vector field sees
    ``stop_gradient(theta)``, so only that step is differentiated."""
    import diffrax
    import jax
    import jax.numpy as jnp

    def loss(theta):
        def field(t, y, args):
            rate = jnp.where(t < 0.125, f(args), f(jax.lax.stop_gradient(args)))
            return -rate * y

        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(field), diffrax.Euler(), t0=0.0, t1=1.0, dt0=1.0 / 4,
            y0=jnp.ones((), theta.dtype), args=theta, stepsize_controller=diffrax.ConstantStepSize(),
        )
        return solution.ys[-1]

    return jax.hessian(loss)


def diffrax_adaptive_frozen_field(f):
    """A broken adaptive solve: on the second half of [0, 1] the vector field sees
    ``stop_gradient(theta)``."""
    import diffrax
    import jax
    import jax.numpy as jnp

    def loss(theta):
        def field(t, y, args):
            rate = jnp.where(t < 0.5, f(args), f(jax.lax.stop_gradient(args)))
            return -rate * y

        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(field), diffrax.Tsit5(), t0=0.0, t1=1.0, dt0=None,
            y0=jnp.ones((), theta.dtype), args=theta,
            stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=0.0),
            adjoint=diffrax.DirectAdjoint(), max_steps=1024,
        )
        return solution.ys[-1]

    return jax.hessian(loss)


def diffrax_adaptive_loose(f):
    """A solve that does not honour the tolerance the relation assumes: rtol 1e-3."""
    import diffrax
    import jax
    import jax.numpy as jnp

    def loss(theta):
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: -f(args) * y), diffrax.Tsit5(), t0=0.0, t1=1.0,
            dt0=None, y0=jnp.ones((), theta.dtype), args=theta,
            stepsize_controller=diffrax.PIDController(rtol=1e-3, atol=0.0),
            adjoint=diffrax.DirectAdjoint(), max_steps=1024,
        )
        return solution.ys[-1]

    return jax.hessian(loss)


ODE_PROBES = {
    "ode-diffrax-frozen-field": Variant.calling("a diffrax Euler solve differentiated through its first step only",
                                                diffrax_euler_frozen_field, relation="neural_ode"),
    "adaptive-ode-frozen-field": Variant.calling("an adaptive solve not differentiated on [0.5, 1]",
                                                 diffrax_adaptive_frozen_field,
                                                 relation="neural_ode_adaptive"),
    "adaptive-ode-loose": Variant.calling("an adaptive solve at rtol 1e-3", diffrax_adaptive_loose,
                                          relation="neural_ode_adaptive"),
}


@final
class PlantedOdeBackend(JaxBackend):
    """JAX with planted faults in diffrax Neural-ODE solves (plus an honest reference)."""

    name = "plantedode"
    variants = {"honest": Variant("jax.hessian, unchanged", lambda m, f: m.jax.hessian(f))}

    def probes(self):
        return ODE_PROBES


@pytest.fixture
def plantedode(clean_registry):
    return register(PlantedOdeBackend())


# --- the reference programs and constants -------------------------------------------------


def test_exact_ode_program_is_the_exact_solution() -> None:
    """dy/dt = -f y from y = 1 gives y(1) = exp(-f)."""
    value = float(evaluate(SMOOTH, POINT).value)
    assert float(evaluate(exact_ode_program(SMOOTH), POINT).value) == pytest.approx(np.exp(-value), rel=1e-14)


def test_the_adaptive_probe_solves_with_the_tolerance_of_the_problem_definition() -> None:
    """The probe reads its rtol from ode_problem (no number of its own), as the relation does."""
    source = inspect.getsource(diffrax_adaptive_hessian)
    assert "rtol = ADAPTIVE_ODE_TOLERANCE[theta.dtype.name]" in source
    assert not re.search(r"\d+e-\d+", source), "the probe writes a tolerance of its own"
    assert constants_read_by((diffrax_adaptive_hessian,)) == {
        "ADAPTIVE_ODE_TOLERANCE": ode_problem.ADAPTIVE_ODE_TOLERANCE,
        "ADAPTIVE_ODE_MAX_STEPS": ode_problem.ADAPTIVE_ODE_MAX_STEPS,
    }


def _ode_probes() -> list[BackendVariant]:
    return [BackendVariant(backend, probe) for backend in all_backends()
            for relation in ("neural_ode", "neural_ode_adaptive") for probe in probes_for(backend, relation)]


def test_every_ode_probe_reads_the_problem_from_its_one_definition() -> None:
    probes = _ode_probes()
    assert {p.name for p in probes} >= {"jax:ode-euler", "torch:ode-euler", "mlx:ode-euler",
                                        "equinox:ode-diffrax-euler", "equinox:adaptive-ode-tsit5"}
    for probe in probes:
        read = constants_read_by(probe.spec.helpers)
        assert read and read.items() <= vars(ode_problem).items(), (probe.name, read)


def test_a_reproducer_does_not_set_the_module_s_dunders() -> None:
    """A class defined in a helper reads ``__name__`` (for its ``__module__``); a script
    that set it to the probe's module would break such a class (an ``eqx.Module`` is a
    dataclass, which looks its module up for an annotation like ``sign: int``)."""
    variant = get_variant("equinox:params-module")
    assert not [name for name in constants_read_by(variant.spec.helpers) if name.startswith("__")]
    assert "\n__name__ = " not in variant.source(SMOOTH, POINT)


@pytest.mark.parametrize("name", ["jax:ode-euler", "equinox:adaptive-ode-tsit5"])
def test_an_ode_reproducer_defines_the_problem_constants_it_reads(name: str) -> None:
    source = get_variant(name).source(SMOOTH, POINT)
    read = constants_read_by(get_variant(name).spec.helpers)
    for constant, value in read.items():
        assert f"\n{constant} = {value!r}\n" in source
    compile(source, name, "exec")


def test_an_ode_reproducer_runs_with_the_problem_it_was_rendered_with() -> None:
    """The jax Euler probe's script computes the Hessian the probe does in-process."""
    source = get_variant("jax:ode-euler").source(SMOOTH, POINT)
    run = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    printed = np.array(ast.literal_eval(run.stdout.split("hessian:", 1)[1].strip()))
    np.testing.assert_allclose(printed, get_variant("jax:ode-euler").hessian(SMOOTH, POINT), rtol=1e-12)


# --- the diffrax probes -------------------------------------------------------------------


@needs_diffrax
@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_diffrax_euler_is_the_hand_written_euler_loop(dtype: str) -> None:
    """diffrax.Euler with a constant step 1/4 does the same 4 steps as jax.lax.fori_loop."""
    x = POINT.astype(dtype)
    ours = get_variant("equinox:ode-diffrax-euler").hessian(SMOOTH, x)
    loop = get_variant("jax:ode-euler").hessian(SMOOTH, x)
    eps = float(np.finfo(dtype).eps)
    assert np.max(np.abs(ours - loop)) <= 16 * eps * np.max(np.abs(loop)), (ours, loop)


@needs_diffrax
@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relation", ["neural_ode", "neural_ode_adaptive"])
def test_the_diffrax_solves_match_their_references(relation: str, dtype: str) -> None:
    result = check(relation, _case(dtype), get_backend("equinox"))
    assert result.checked == 1
    assert not result.findings, [f.explanation for f in result.findings]
    if relation == "neural_ode_adaptive":
        assert any("the solve's own error, numerical" in note for note in result.notes), result.notes


@needs_diffrax
@pytest.mark.slow
def test_float32_asymmetry_of_the_diffrax_solves_is_numerical_with_its_magnitude() -> None:
    result = check("symmetry", _case("float32"), get_backend("equinox"),
                   probes=["ode-diffrax-euler", "adaptive-ode-tsit5"])
    assert result.checked == 2
    assert not result.failures
    assert result.notes and all("numerical" in note and "max |H - H^T| =" in note for note in result.notes)


def test_a_fast_growing_adaptive_solve_is_not_judged() -> None:
    """|f| over ADAPTIVE_ODE_MAX_RATE: a note, and the probe is not even run."""
    program = Program(1, (op("input"), op("sum", 0)))
    point = np.array([2 * ADAPTIVE_ODE_MAX_RATE])
    result = check("neural_ode_adaptive", _case(program=program, point=point), get_backend("equinox"))
    assert result.checked == 0 and not result.findings
    assert any("not judged" in note and "ADAPTIVE_ODE_MAX_RATE" in note for note in result.notes)


def test_without_diffrax_the_probes_are_unsupported(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "diffrax", None)  # import diffrax now raises ImportError
    for probe in ("ode-diffrax-euler", "adaptive-ode-tsit5"):
        outcome = run_variant(get_variant(f"equinox:{probe}"), _case())
        assert outcome.status == "unsupported", outcome
        assert "pip install 'hessdiff[diffrax]'" in outcome.error
    assert check("neural_ode_adaptive", _case(), get_backend("equinox")).checked == 0


# --- planted faults -----------------------------------------------------------------------

PLANTED = [
    ("neural_ode", "float64", "ode-diffrax-frozen-field"),
    ("neural_ode_adaptive", "float64", "adaptive-ode-frozen-field"),
    ("neural_ode_adaptive", "float32", "adaptive-ode-frozen-field"),
    ("neural_ode_adaptive", "float64", "adaptive-ode-loose"),
]


@needs_diffrax
@pytest.mark.slow
@pytest.mark.parametrize("relation,dtype,probe", PLANTED, ids=[f"{p[2]}-{p[1]}" for p in PLANTED])
def test_a_planted_ode_fault_is_caught(plantedode, relation: str, dtype: str, probe: str) -> None:
    result = check(relation, _case(dtype), plantedode, probes=[probe])
    assert [f.kind for f in result.findings] == [Kind.WRONG_VALUE], [f.explanation for f in result.findings]
    finding = result.findings[0]
    assert finding.explanation.startswith("Relation violated:"), finding.explanation
    assert finding.signature.startswith(f"plantedode|{probe}|wrong_value|{dtype}|")


@needs_diffrax
@pytest.mark.slow
def test_a_planted_adaptive_finding_has_a_repro_that_reproduces(plantedode, tmp_path: Path) -> None:
    result = check("neural_ode_adaptive", _case(), plantedode, probes=["adaptive-ode-frozen-field"])
    finding = result.findings[0]
    paths = write_report(tmp_path / "report", [finding], baseline=Baseline(), run_info={})
    folder = paths.finding_dirs[0]
    run = subprocess.run([sys.executable, str(folder / "repro.py")], capture_output=True, text=True,
                         timeout=300, cwd=folder)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "REPRODUCED" in run.stdout + run.stderr
