"""Probe relations: a probe's matrix (``Backend.probes()``, each declaring its relation in
``Variant.relation``) against a target from the oracle: H, its diagonal (the PINN
Laplacian's terms), or the Hessian of the loss a Neural-ODE probe solves (a fixed-step
solve exactly, an adaptive one within the solver's tolerance).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import numpy as np

from hessdiff.backends import Backend, BackendVariant
from hessdiff.backends.scenarios.ode_problem import ADAPTIVE_ODE_TOLERANCE, ODE_STEPS
from hessdiff.harness.case import Case
from hessdiff.harness.ir import Program, const, op
from hessdiff.harness.oracle import OracleResult
from hessdiff.harness.relation_findings import (
    RelationResult, attribute, make_finding, oracle_of, reference_variant, run_at,
)
from hessdiff.harness.tolerance import tolerance_for

# The ODE the Neural-ODE probes solve, its steps and the adaptive solves' tolerances, are
# ``hessdiff.backends.scenarios.ode_problem``'s.

# Beyond |f(x)| = 16 the adaptive solve of dy/dt = -f y takes hundreds of steps (about 25
# per unit of |f| at rtol 1e-10) towards ode_problem.ADAPTIVE_ODE_MAX_STEPS, and exp(-f)
# approaches float32's range: such a point is not judged (a note says so), rather than
# reported as the solver giving up.
ADAPTIVE_ODE_MAX_RATE = 16.0
# How many solver tolerances (relative to the entry's error scale) an adaptive solve's
# Hessian may be off the exact solution's. Measured with Tsit5, rtol 1e-10 (float64) and
# 1e-6 (float32), over |f| from 0.1 to 14: at most 13x rtol, typically 1-5x (the
# controller bounds the local error; the global error, and the derivatives of the solve at
# the fixed, stop_gradient-ed step sizes diffrax uses, follow it).
SOLVER_SLACK = 64.0

ALL_ZERO_NOTE = (
    "The parameter Hessian is all zero while the model's true Hessian is not: the "
    "differentiated parameters never reach the loss (e.g. eqx.combine(model, params) keeps "
    "the model's own leaves, as combine takes the first non-None leaf)."
)


def ode_program(program: Program, steps: int = ODE_STEPS) -> Program:
    """The Euler Neural-ODE loss the ``ode-*`` probes compute, as a program for the oracle.

    dy/dt = -f(theta) y, y(0) = 1 on [0, 1] in ``steps`` explicit Euler steps gives
    y(1) = (1 - f(theta) / steps) ** steps exactly (each step multiplies by that factor).
    """
    k = len(program.nodes)
    nodes = program.nodes + (
        const(1.0 / steps),
        op("mul", k - 1, k),
        const(1.0),
        op("sub", k + 2, k + 1),
        op("powi", k + 3, p=steps),
    )
    return Program(program.n, nodes)


def exact_ode_program(program: Program) -> Program:
    """The exact solution's loss, as a program for the oracle: dy/dt = -f(theta) y,
    y(0) = 1 gives y(1) = exp(-f(theta)).

    The reference of an adaptive solve: unlike a fixed-step one, it is not a known finite
    formula, but it converges to this to within the solver's tolerance.
    """
    k = len(program.nodes)
    return Program(program.n, program.nodes + (op("neg", k - 1), op("exp", k)))


@dataclass(frozen=True)
class ProbeRelation:
    """How a probe declaring this relation (``Variant.relation``) is judged."""

    statement: str
    target: str = "hessian"  # or "diagonal": the Laplacian's terms
    transform: Callable[[Program], Program] | None = None
    # An approximate solve: dtype -> its tolerance, allowed on top of rounding (SOLVER_SLACK
    # times it, relative to the entry's scale), and the largest |f(x)| it is judged at.
    solver_tolerance: dict[str, float] | None = None
    max_rate: float | None = None


PROBE_RELATIONS: dict[str, ProbeRelation] = {
    "hvp": ProbeRelation("the framework's Hessian-vector products assemble H"),
    "laplacian": ProbeRelation(
        "the PINN Laplacian's per-axis second derivatives (nested grad, vmap over points) "
        "are the diagonal of H, so the Laplacian is trace(H)",
        target="diagonal",
    ),
    "vmap": ProbeRelation("vmap over a batch of points gives each point's H"),
    "custom_rules": ProbeRelation("the Hessian through a custom differentiation rule equals the plain H"),
    "parameters": ProbeRelation("a model's parameter Hessian, through its parameter tree, equals H"),
    "neural_ode": ProbeRelation(
        f"the parameter Hessian of an {ODE_STEPS}-step Euler Neural-ODE loss equals the "
        "Hessian of the same solve written as a program",
        transform=ode_program,
    ),
    "neural_ode_adaptive": ProbeRelation(
        "the parameter Hessian of an adaptive Neural-ODE solve equals the Hessian of the exact "
        "solution's loss exp(-f(theta)) to within the solver's tolerance",
        transform=exact_ode_program,
        solver_tolerance=ADAPTIVE_ODE_TOLERANCE,
        max_rate=ADAPTIVE_ODE_MAX_RATE,
    ),
    "compiled": ProbeRelation("a compiled Hessian equals the eager one"),
}


def declared_relation(variant: BackendVariant) -> ProbeRelation | None:
    """The relation a probe declares; None for a campaign variant."""
    return PROBE_RELATIONS[variant.spec.relation] if variant.spec.relation is not None else None


def _diagonal_only(oracle: OracleResult) -> OracleResult:
    """The oracle's verdict with every off-diagonal entry zero (the Laplacian's terms)."""
    n = oracle.hessian.shape[0]
    hessian = np.array(oracle.hessian, dtype=object, copy=True)
    scale = np.array(oracle.hessian_scale, dtype=np.float64, copy=True)
    off = ~np.eye(n, dtype=bool)
    hessian[off] = mpmath.mpf(0)
    scale[off] = 0.0
    return dataclasses.replace(oracle, hessian=hessian, hessian_scale=scale)


# A transform feeds f's *value* into the derivatives (the ODE loss multiplies H_f by a
# function of f), so an error in f's value reaches H through a path the oracle's Hessian
# error scale does not follow. When the framework's own f(x) is off the exact value by more
# than rounding (an ill-conditioned program: cancellation of huge terms) the transformed
# loss is not judged, and the note says so.


def value_is_reproducible(program: Program, case: Case, backend: Backend,
                          max_rate: float | None = None) -> tuple[bool, str]:
    """Whether the framework's own f(x) is within rounding of the exact value (and |f(x)|
    within ``max_rate``), so a transformed loss may be judged; else why not."""
    oracle = oracle_of(program, case)
    if oracle is None:
        return False, "f is out of its domain"
    exact = float(oracle.value)
    if max_rate is not None and not abs(exact) <= max_rate:
        return False, (f"|f(x)| = {abs(exact):.3g} is over {max_rate:g}: an adaptive solve of "
                       "dy/dt = -f y needs too many steps there (see ADAPTIVE_ODE_MAX_RATE)")
    try:
        value = float(np.asarray(reference_variant(backend).value(program, case.point.astype(case.dtype))))
    except Exception as exc:  # noqa: BLE001 - the probe's own run reports a crash
        return True, f"{type(exc).__name__}"
    tol = tolerance_for(backend.name, case.dtype)
    bound = tol.factor * (tol.eps * (float(oracle.value_scale) + abs(exact)) + tol.tiny)
    if np.isfinite(value) and abs(value - exact) <= bound:
        return True, ""
    return False, (f"{backend.name} computes f(x) = {value!r} where the exact value is {exact!r}: "
                   "f's value is ill-conditioned in this dtype, and the transformed loss depends on it")


def with_solver_error(oracle: OracleResult, relation: ProbeRelation, name: str, dtype: str) -> OracleResult:
    """The oracle's verdict with SOLVER_SLACK * rtol * (scale + |H|) added to each entry's
    error bound: what an approximate (adaptive) solve may be off the exact solution.

    The judge bounds an entry's error by ``factor * eps * (scale + |H|)`` (see
    ``hessdiff.harness.tolerance``), so the allowance goes in as extra scale.
    """
    if relation.solver_tolerance is None:
        return oracle
    tol = tolerance_for(name, dtype)
    widen = SOLVER_SLACK * relation.solver_tolerance[dtype] / (tol.factor * tol.eps)
    extra = widen * (oracle.hessian_scale + np.abs(oracle.hessian_float()))
    return dataclasses.replace(oracle, hessian_scale=oracle.hessian_scale + np.nan_to_num(extra))


def _solver_note(name: str, relation: ProbeRelation, dtype: str, oracle: OracleResult,
                 observed: np.ndarray | None) -> str:
    """How far an approximate solve's Hessian is from the exact one, in solver tolerances."""
    if observed is None or observed.shape != oracle.hessian.shape:
        return ""
    rtol = relation.solver_tolerance[dtype]
    scale = oracle.hessian_scale + np.abs(oracle.hessian_float())
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(observed - oracle.hessian_float())
        ratio = np.where(~oracle.undefined & (scale > 0), err / (rtol * scale), 0.0)
    return (f"{name}: max |H - H_exact| = {float(np.nanmax(err, initial=0.0)):.3g}, "
            f"{float(np.nanmax(ratio, initial=0.0)):.3g}x the solver's rtol {rtol:g} relative to "
            f"the entry's scale (allowed: {SOLVER_SLACK:g}x): the solve's own error, numerical")


def check_probe(result: RelationResult, relation: ProbeRelation, case: Case, probe: BackendVariant) -> None:
    """``probe``'s matrix against ``relation``'s target from the oracle, into ``result``."""
    program = relation.transform(case.program) if relation.transform else case.program
    if relation.transform is not None:
        reproducible, why = value_is_reproducible(case.program, case, probe.backend, relation.max_rate)
        if not reproducible:
            result.notes.append(f"{probe.name}: not judged: {why}")
            return
    oracle = oracle_of(program, case)
    if oracle is None:
        return
    if relation.target == "diagonal":
        oracle = _diagonal_only(oracle)
    exact = oracle
    oracle = with_solver_error(oracle, relation, probe.name, case.dtype)
    outcome = run_at(probe, case)
    if outcome.status == "unsupported":
        return
    result.checked += 1
    verdict, note = attribute(case, oracle, outcome, program)
    if note:
        result.notes.append(f"{probe.name}: {note}")
    if relation.solver_tolerance is not None:
        result.notes.append(_solver_note(probe.name, relation, case.dtype, exact, outcome.hessian))
        if verdict is not None and not verdict.kind.is_failure:
            return  # beyond rounding but within the solver's tolerance: the note says how far
    if verdict is None:
        return
    reference = reference_variant(probe.backend)
    own = run_at(reference, Case(program, case.point, case.dtype))
    text = f"Relation violated: {relation.statement}. {verdict.explanation}"
    if relation.target == "diagonal" and outcome.hessian is not None and outcome.hessian.shape[-1:] == (program.n,):
        observed = np.asarray(outcome.hessian, dtype=np.float64)
        lap = float(np.trace(observed)) if observed.ndim == 2 else float("nan")
        true = float(np.trace(oracle.hessian_float()))
        text += f" The Laplacian it sums to is {lap!r}; trace of the true Hessian: {true!r}."
    if relation is PROBE_RELATIONS["parameters"] and outcome.hessian is not None \
            and not np.any(outcome.hessian) and np.any(oracle.hessian_float()[~oracle.undefined]):
        text += " " + ALL_ZERO_NOTE
    if own.hessian is not None:
        text += f" The framework's own {reference.name} Hessian of the same function is given under others."
    expected = oracle.hessian_float()
    result.findings.append(make_finding(verdict.kind, probe, case, outcome, oracle, text, verdict.max_error,
                                        {reference.name: own.hessian}, expected))
