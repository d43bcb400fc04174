"""Metamorphic relations: what must hold between a framework's own computations.

Cross-framework agreement misses a bug every framework shares and a bug in a code path
nobody compares (an HVP, a PINN Laplacian, a custom rule, vmap, a compiler). Each relation
here compares two of one framework's own computations, with no other framework:

- ``symmetry``: H equals its transpose;
- ``hvp``: the framework's Hessian-vector products (jvp-of-grad, vjp-of-grad,
  ``torch.autograd.functional.hvp/vhp``) assemble H;
- ``laplacian``: the PINN Laplacian (nested grad per axis, vmapped over points) is trace(H);
- ``modes``: every differentiation order (fwd-over-rev, rev-over-rev, ...) gives one H;
- ``transforms``: jit/compile and vmap commute with differentiation;
- ``precision``: float32 and float64 agree to float32 accuracy where well-conditioned;
- ``finite_differences``: H equals central differences of the framework's own gradient;

and the scenarios behind real bug reports, checked the same way through a backend's
*probes* (``Backend.probes()``, each declaring the relation that checks it):
``custom_rules`` (a custom differentiation rule),
``parameters`` (a model's parameter Hessian), ``neural_ode`` (a fixed-step ODE loss) and
``neural_ode_adaptive`` (an adaptive ODE solve, judged against the exact solution within
the solver's tolerance).

Every violation is attributed with the independent oracle (``hessdiff.harness.oracle``): the
computation the oracle rejects is the one at fault, judged by ``hessdiff.harness.engine.judge`` like
a campaign variant, and becomes a ``Finding`` of that kind (whose ``repro.py`` runs that
computation). A violation the oracle accepts on both sides is the relation's tolerance
meeting rounding: a ``noise`` finding that states its magnitude, never a failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mpmath
import numpy as np

from hessdiff.backends import Backend, BackendVariant, Unsupported
from hessdiff.backends.scenarios.ode_problem import ADAPTIVE_ODE_TOLERANCE, ODE_STEPS
from hessdiff.harness.case import Case
from hessdiff.harness.engine import judge
from hessdiff.harness.fdcheck import fd_hessian
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.ir import Program, const, op
from hessdiff.harness.oracle import OracleResult, OutOfDomain, evaluate
from hessdiff.harness.outcomes import Outcome, run_variant
from hessdiff.harness.tolerance import tolerance_for

__all__ = [
    "ADAPTIVE_ODE_MAX_RATE",
    "PROBE_RELATIONS",
    "RELATIONS",
    "RelationResult",
    "check",
    "exact_ode_program",
    "ode_program",
    "probes_for",
]

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


@dataclass
class RelationResult:
    """What one relation found on one case for one backend.

    Arguments:
        findings: one per violation, attributed (see the module docstring).
        notes: what was checked and dismissed, for a human (a piecewise-linear program's
            zero Laplacian, the float32 asymmetry of a long computation and its size).
        checked: how many comparisons ran (0 when nothing applied: out of domain, ...).
    """

    relation: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.kind.is_failure]


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


# --- probe relations: a probe's matrix against a target from the oracle -----------------


@dataclass(frozen=True)
class _ProbeRelation:
    """How a probe declaring this relation (``Variant.relation``) is judged."""

    statement: str
    target: str = "hessian"  # or "diagonal": the Laplacian's terms
    transform: Callable[[Program], Program] | None = None
    # An approximate solve: dtype -> its tolerance, allowed on top of rounding (SOLVER_SLACK
    # times it, relative to the entry's scale), and the largest |f(x)| it is judged at.
    solver_tolerance: dict[str, float] | None = None
    max_rate: float | None = None


PROBE_RELATIONS: dict[str, _ProbeRelation] = {
    "hvp": _ProbeRelation("the framework's Hessian-vector products assemble H"),
    "laplacian": _ProbeRelation(
        "the PINN Laplacian's per-axis second derivatives (nested grad, vmap over points) "
        "are the diagonal of H, so the Laplacian is trace(H)",
        target="diagonal",
    ),
    "vmap": _ProbeRelation("vmap over a batch of points gives each point's H"),
    "custom_rules": _ProbeRelation("the Hessian through a custom differentiation rule equals the plain H"),
    "parameters": _ProbeRelation("a model's parameter Hessian, through its parameter tree, equals H"),
    "neural_ode": _ProbeRelation(
        f"the parameter Hessian of an {ODE_STEPS}-step Euler Neural-ODE loss equals the "
        "Hessian of the same solve written as a program",
        transform=ode_program,
    ),
    "neural_ode_adaptive": _ProbeRelation(
        "the parameter Hessian of an adaptive Neural-ODE solve equals the Hessian of the exact "
        "solution's loss exp(-f(theta)) to within the solver's tolerance",
        transform=exact_ode_program,
        solver_tolerance=ADAPTIVE_ODE_TOLERANCE,
        max_rate=ADAPTIVE_ODE_MAX_RATE,
    ),
    "compiled": _ProbeRelation("a compiled Hessian equals the eager one"),
}

RELATIONS: tuple[str, ...] = (
    "symmetry", "modes", "transforms", "precision", "finite_differences", *PROBE_RELATIONS,
)


def probes_for(backend: Backend, relation: str) -> list[str]:
    """The names of ``backend``'s probes that ``relation`` checks (maybe none): those that
    declare it (``Variant.relation``)."""
    if relation not in PROBE_RELATIONS:
        raise ValueError(f"relation={relation!r}, but it must be one of {tuple(PROBE_RELATIONS)}.")
    return [name for name, probe in backend.probes().items() if probe.relation == relation]


def check(relation: str, case: Case, backend: Backend, probes: Sequence[str] | None = None) -> RelationResult:
    """Check ``relation`` on ``case`` for every applicable computation of ``backend``.

    Arguments:
        relation: one of ``RELATIONS``.
        case: the program, point and dtype.
        backend: the backend whose own computations are compared.
        probes: for a probe relation, the probe names to check (default: all it has).

    Returns:
        A ``RelationResult``; a violation is a finding, never an exception. ``Unsupported``
        computations are skipped.
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation={relation!r}, but it must be one of {RELATIONS}.")
    # inf - inf and the like are data here (a non-finite Hessian is judged, not a warning).
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _check(relation, case, backend, probes)


def _check(relation: str, case: Case, backend: Backend, probes: Sequence[str] | None) -> RelationResult:
    result = RelationResult(relation)
    if relation in PROBE_RELATIONS:
        names = list(probes) if probes is not None else probes_for(backend, relation)
        for name in names:
            _check_probe(result, PROBE_RELATIONS[relation], case, BackendVariant(backend, name))
        return result
    if relation == "symmetry" and probes is not None:
        _check_symmetry(result, case, backend, list(probes))
        return result
    _PAIR_CHECKS[relation](result, case, backend)
    return result


# --- shared machinery ---------------------------------------------------------------------


def _oracle(program: Program, case: Case, dtype: str | None = None) -> OracleResult | None:
    try:
        return evaluate(program, case.point, dtype or case.dtype)
    except OutOfDomain:
        return None


def _finding(verdict_kind: Kind, variant: BackendVariant, case: Case, outcome: Outcome,
             oracle: OracleResult, explanation: str, max_error: float,
             others: dict[str, np.ndarray | None] | None = None,
             expected: np.ndarray | None = None) -> Finding:
    return Finding(
        kind=verdict_kind,
        variant=variant.name,
        versions={variant.backend.name: variant.backend.version()},
        dtype=case.dtype,
        program=case.program,
        point=np.asarray(case.point, dtype=np.float64),
        observed=outcome.hessian,
        expected=oracle.hessian_float() if expected is None else expected,
        others=dict(others or {}),
        explanation=explanation,
        error=outcome.error,
        max_error=max_error,
    )


def _attribute(case: Case, oracle: OracleResult, outcome: Outcome, judged_program: Program | None = None):
    """The engine's verdict on one outcome (None: the oracle accepts it)."""
    judged = Case(judged_program or case.program, case.point, case.dtype)
    result = judge(judged, oracle, {outcome.variant: outcome})
    verdicts = [v for v in result.verdicts if v.variant == outcome.variant]
    return (verdicts[0] if verdicts else None), result.note


def _diagonal_only(oracle: OracleResult) -> OracleResult:
    """The oracle's verdict with every off-diagonal entry zero (the Laplacian's terms)."""
    n = oracle.hessian.shape[0]
    hessian = np.array(oracle.hessian, dtype=object, copy=True)
    scale = np.array(oracle.hessian_scale, dtype=np.float64, copy=True)
    off = ~np.eye(n, dtype=bool)
    hessian[off] = mpmath.mpf(0)
    scale[off] = 0.0
    return dataclasses.replace(oracle, hessian=hessian, hessian_scale=scale)


def _reference(backend: Backend) -> BackendVariant:
    """The backend's first (eager, documented) variant: the relations' own reference."""
    return BackendVariant(backend, next(iter(backend.variants)))


def _run(variant: BackendVariant, case: Case, dtype: str | None = None) -> Outcome:
    point = np.asarray(case.point, dtype=np.float64)
    return run_variant(variant, Case(case.program, point, dtype or case.dtype))


def _bound(name: str, dtype: str, oracle: OracleResult, h: np.ndarray, widen: float = 1.0) -> np.ndarray:
    tol = tolerance_for(name, dtype)
    return widen * tol.bound(oracle.hessian_scale + oracle.hessian_scale.T, np.abs(h))


# --- probe relations ----------------------------------------------------------------------


# A transform feeds f's *value* into the derivatives (the ODE loss multiplies H_f by a
# function of f), so an error in f's value reaches H through a path the oracle's Hessian
# error scale does not follow. When the framework's own f(x) is off the exact value by more
# than rounding (an ill-conditioned program: cancellation of huge terms) the transformed
# loss is not judged, and the note says so.


def _value_is_reproducible(program: Program, case: Case, backend: Backend,
                           max_rate: float | None = None) -> tuple[bool, str]:
    oracle = _oracle(program, case)
    if oracle is None:
        return False, "f is out of its domain"
    exact = float(oracle.value)
    if max_rate is not None and not abs(exact) <= max_rate:
        return False, (f"|f(x)| = {abs(exact):.3g} is over {max_rate:g}: an adaptive solve of "
                       "dy/dt = -f y needs too many steps there (see ADAPTIVE_ODE_MAX_RATE)")
    try:
        value = float(np.asarray(_reference(backend).value(program, case.point.astype(case.dtype))))
    except Exception as exc:  # noqa: BLE001 - the probe's own run reports a crash
        return True, f"{type(exc).__name__}"
    tol = tolerance_for(backend.name, case.dtype)
    bound = tol.factor * (tol.eps * (float(oracle.value_scale) + abs(exact)) + tol.tiny)
    if np.isfinite(value) and abs(value - exact) <= bound:
        return True, ""
    return False, (f"{backend.name} computes f(x) = {value!r} where the exact value is {exact!r}: "
                   "f's value is ill-conditioned in this dtype, and the transformed loss depends on it")


def _with_solver_error(oracle: OracleResult, relation: _ProbeRelation, name: str, dtype: str) -> OracleResult:
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


def _solver_note(name: str, relation: _ProbeRelation, dtype: str, oracle: OracleResult,
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


def _check_probe(result: RelationResult, relation: _ProbeRelation, case: Case, probe: BackendVariant) -> None:
    program = relation.transform(case.program) if relation.transform else case.program
    if relation.transform is not None:
        reproducible, why = _value_is_reproducible(case.program, case, probe.backend, relation.max_rate)
        if not reproducible:
            result.notes.append(f"{probe.name}: not judged: {why}")
            return
    oracle = _oracle(program, case)
    if oracle is None:
        return
    if relation.target == "diagonal":
        oracle = _diagonal_only(oracle)
    exact = oracle
    oracle = _with_solver_error(oracle, relation, probe.name, case.dtype)
    outcome = _run(probe, case)
    if outcome.status == "unsupported":
        return
    result.checked += 1
    verdict, note = _attribute(case, oracle, outcome, program)
    if note:
        result.notes.append(f"{probe.name}: {note}")
    if relation.solver_tolerance is not None:
        result.notes.append(_solver_note(probe.name, relation, case.dtype, exact, outcome.hessian))
        if verdict is not None and not verdict.kind.is_failure:
            return  # beyond rounding but within the solver's tolerance: the note says how far
    if verdict is None:
        return
    reference = _reference(probe.backend)
    own = _run(reference, Case(program, case.point, case.dtype))
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
    result.findings.append(_finding(verdict.kind, probe, case, outcome, oracle, text, verdict.max_error,
                                    {reference.name: own.hessian}, expected))


# --- pair relations: two of the framework's own results, attributed by the oracle -------


def _violation_finding(result: RelationResult, case: Case, oracle: OracleResult, statement: str,
                       pairs: list[tuple[BackendVariant, Outcome]], detail: str, magnitude: float,
                       others: dict[str, np.ndarray | None], program: Program | None = None) -> None:
    """A violated relation: a finding for each side the oracle rejects, else one noise.

    ``program`` is the function whose Hessian the oracle evaluated, when it is not the
    case's own (a probe's Neural-ODE loss).
    """
    blamed = False
    for variant, outcome in pairs:
        verdict, _ = _attribute(case, oracle, outcome, program)
        if verdict is None or not verdict.kind.is_failure:
            continue
        blamed = True
        text = f"Relation violated: {statement}. {detail} {verdict.explanation}"
        result.findings.append(_finding(verdict.kind, variant, case, outcome, oracle, text,
                                        verdict.max_error, others))
    if not blamed:
        variant, outcome = pairs[0]
        text = (f"Relation violated within rounding: {statement}. {detail} The oracle accepts "
                f"every side within its error model, so this is numerical (magnitude "
                f"{magnitude:.3g}), not a bug.")
        result.findings.append(_finding(Kind.NOISE, variant, case, outcome, oracle, text, magnitude, others))


def _ok(outcome: Outcome, n: int) -> bool:
    return outcome.status == "ok" and outcome.hessian is not None and outcome.hessian.shape == (n, n)


def _defined_both(oracle: OracleResult) -> np.ndarray:
    defined = ~oracle.undefined
    return defined & defined.T


def _probe_relation(variant: BackendVariant) -> _ProbeRelation | None:
    """The relation a probe declares; None for a campaign variant."""
    return PROBE_RELATIONS[variant.spec.relation] if variant.spec.relation is not None else None


def _check_symmetry(result: RelationResult, case: Case, backend: Backend,
                    probes: list[str] | None = None) -> None:
    """Every variant's H (or, given ``probes``, each probe's matrix) is symmetric."""
    for name in probes if probes is not None else list(backend.variants):
        variant = BackendVariant(backend, name)
        declared = _probe_relation(variant)
        if declared is not None and declared.target == "diagonal":
            continue  # a diagonal is symmetric by construction
        # Only a transform changes the function differentiated (the Neural-ODE loss).
        relation = declared if declared is not None and declared.transform is not None else None
        program = relation.transform(case.program) if relation is not None else case.program
        if relation is not None and not _value_is_reproducible(case.program, case, backend,
                                                               relation.max_rate)[0]:
            continue  # see _value_is_reproducible
        oracle = _oracle(program, case)
        if oracle is None:
            continue
        # An approximate solve is judged within its tolerance; its asymmetry within rounding.
        judged = oracle if relation is None else _with_solver_error(oracle, relation, variant.name,
                                                                    case.dtype)
        outcome = _run(variant, case)
        if not _ok(outcome, case.program.n):
            continue
        result.checked += 1
        h = outcome.hessian
        defined = _defined_both(oracle) & np.isfinite(h) & np.isfinite(h.T)
        asym = np.where(defined, np.abs(h - h.T), 0.0)
        bound = _bound(variant.name, case.dtype, oracle, h)
        worst = float(asym.max(initial=0.0))
        if worst > 0 and case.dtype == "float32":
            result.notes.append(f"{variant.name}: float32 asymmetry max |H - H^T| = {worst:.3g} "
                                f"({worst / float(bound.max(initial=1e-300)):.2g}x the bound): numerical")
        if not (asym > bound).any():
            continue
        i, j = np.unravel_index(np.argmax(np.where(asym > bound, asym / bound, 0.0)), asym.shape)
        detail = (f"{variant.name} returns H[{i},{j}] = {float(h[i, j])!r} but H[{j},{i}] = "
                  f"{float(h[j, i])!r}: asymmetric by {float(asym[i, j]):.3g}, "
                  f"{float(asym[i, j] / bound[i, j]):.3g}x the bound {float(bound[i, j]):.3g} that "
                  "rounding over this much work allows.")
        _violation_finding(result, case, judged, "H is symmetric", [(variant, outcome)], detail,
                           worst, {}, program)


def _compare(result: RelationResult, case: Case, oracle: OracleResult, statement: str,
             left: tuple[BackendVariant, Outcome], right: tuple[BackendVariant, Outcome],
             dtype_right: str | None = None) -> None:
    """|left - right| within both sides' rounding bounds on the defined entries."""
    (lv, lo), (rv, ro) = left, right
    n = case.program.n
    if not (_ok(lo, n) and _ok(ro, n)):
        return
    result.checked += 1
    defined = ~oracle.undefined & np.isfinite(lo.hessian) & np.isfinite(ro.hessian)
    if not _far_from_kinks(oracle, case.dtype, lv, rv):
        return
    diff = np.where(defined, np.abs(lo.hessian - ro.hessian), 0.0)
    bound = _bound(lv.name, case.dtype, oracle, lo.hessian) + _bound(rv.name, dtype_right or case.dtype,
                                                                       oracle, ro.hessian)
    if not (diff > bound).any():
        return
    i, j = np.unravel_index(np.argmax(np.where(diff > bound, diff / bound, 0.0)), diff.shape)
    detail = (f"{lv.name} gives H[{i},{j}] = {float(lo.hessian[i, j])!r}, {rv.name}"
              f"{' (' + dtype_right + ')' if dtype_right else ''} gives {float(ro.hessian[i, j])!r}: "
              f"{float(diff[i, j] / bound[i, j]):.3g}x the rounding bound.")
    _violation_finding(result, case, oracle, statement, [left, right], detail, float(diff.max()),
                       {lv.name: lo.hessian, rv.name: ro.hessian})


def _far_from_kinks(oracle: OracleResult, dtype: str, *variants: BackendVariant) -> bool:
    """Two computations may round a point onto different sides of a nearby kink."""
    return not any(tolerance_for(v.name, dtype).near_kink(oracle.kink_distance, oracle.kink_gap) for v in variants)


def _check_modes(result: RelationResult, case: Case, backend: Backend) -> None:
    oracle = _oracle(case.program, case)
    if oracle is None:
        return
    reference = _reference(backend)
    ref = (reference, _run(reference, case))
    for name, spec in list(backend.variants.items())[1:]:
        if spec.compiled:
            continue  # the transforms relation compares those
        variant = BackendVariant(backend, name)
        _compare(result, case, oracle, "every differentiation order gives the same H", ref,
                 (variant, _run(variant, case)))


def _check_transforms(result: RelationResult, case: Case, backend: Backend) -> None:
    oracle = _oracle(case.program, case)
    if oracle is None:
        return
    reference = _reference(backend)
    ref = (reference, _run(reference, case))
    names = [name for name, spec in backend.variants.items() if spec.compiled]
    for name in names:
        variant = BackendVariant(backend, name)
        _compare(result, case, oracle, "jit/compile commutes with differentiation", ref,
                 (variant, _run(variant, case)))


def _check_precision(result: RelationResult, case: Case, backend: Backend) -> None:
    """float32 vs float64 at the same (float32-exact) point, where well-conditioned."""
    if case.dtype != "float32":
        return
    oracle32 = _oracle(case.program, case)
    oracle64 = _oracle(case.program, case, "float64")
    if oracle32 is None or oracle64 is None:
        return
    expected = oracle64.hessian_float()
    well = np.isfinite(expected) & (oracle64.hessian_scale <= 16.0 * np.abs(expected) + 1e-6)
    if not well.any():
        return
    for name in backend.variants:
        variant = BackendVariant(backend, name)
        o32, o64 = _run(variant, case, "float32"), _run(variant, case, "float64")
        if not (_ok(o32, case.program.n) and _ok(o64, case.program.n)):
            continue
        result.checked += 1
        if not _far_from_kinks(oracle32, "float32", variant):
            continue
        diff = np.where(well, np.abs(o32.hessian - o64.hessian), 0.0)
        bound = _bound(variant.name, "float32", oracle32, o64.hessian)
        if not (diff > bound).any():
            continue
        i, j = np.unravel_index(np.argmax(np.where(diff > bound, diff / bound, 0.0)), diff.shape)
        detail = (f"On a well-conditioned entry {variant.name} gives H[{i},{j}] = "
                  f"{float(o32.hessian[i, j])!r} in float32 and {float(o64.hessian[i, j])!r} in "
                  f"float64: {float(diff[i, j] / bound[i, j]):.3g}x float32's rounding bound.")
        f64 = Case(case.program, case.point, "float64")
        verdict, _ = _attribute(f64, oracle64, o64)
        if verdict is not None and verdict.kind.is_failure:
            result.findings.append(_finding(verdict.kind, variant, f64, o64, oracle64,
                                            f"Relation violated: float32 and float64 agree. {detail} "
                                            f"{verdict.explanation}", verdict.max_error))
            continue
        _violation_finding(result, case, oracle32, "float32 and float64 agree where well-conditioned",
                           [(variant, o32)], detail, float(diff.max()),
                           {f"{variant.name} (float64)": o64.hessian})


def _check_finite_differences(result: RelationResult, case: Case, backend: Backend) -> None:
    """H against central differences of the framework's own float64 gradient."""
    oracle = _oracle(case.program, case)
    if oracle is None or oracle.undefined.any():
        return
    x64 = np.asarray(case.point, dtype=np.float64)
    # A kink within the finite-difference stencil makes differences meaningless.
    step = 2 * float(np.finfo(np.float64).eps) ** (1 / 3) * max(1.0, float(np.max(np.abs(x64))))
    if oracle.kink_distance <= 100 * step:
        return
    for name in backend.variants:
        variant = BackendVariant(backend, name)
        outcome = _run(variant, case)
        if not _ok(outcome, case.program.n):
            continue
        try:
            fd = fd_hessian(lambda y: variant.gradient(case.program, y), x64)
        except Unsupported:
            continue
        except Exception:  # noqa: BLE001 - a crashing gradient is the campaign's to report
            continue
        result.checked += 1
        h = outcome.hessian
        # fd_hessian estimates the gradient's rounding with float64's eps; a backend whose
        # float64 is less accurate (MLX: float32 transcendentals) rounds its gradient more.
        grad_eps = tolerance_for(variant.name, "float64").eps
        grad_scale = float(np.max(np.abs(oracle.gradient_float()), initial=1.0))
        noise = 64 * grad_eps * (grad_scale + float(np.max(oracle.gradient_scale, initial=0.0))) / step
        bound = 10 * fd.error + noise + _bound(variant.name, case.dtype, oracle, h, widen=2.0)
        diff = np.abs(h - fd.hessian)
        bad = np.isfinite(fd.hessian) & ~(diff <= bound)
        if not bad.any():
            continue
        i, j = np.unravel_index(np.argmax(np.where(bad, diff / np.maximum(bound, 1e-300), 0.0)), diff.shape)
        detail = (f"{variant.name} gives H[{i},{j}] = {float(h[i, j])!r}; central differences of its own "
                  f"float64 gradient give {float(fd.hessian[i, j])!r} (error estimate "
                  f"{float(fd.error[i, j]):.3g}).")
        _violation_finding(result, case, oracle, "H equals finite differences of the gradient",
                           [(variant, outcome)], detail, float(diff[bad].max()),
                           {f"finite differences of {variant.name}'s gradient": fd.hessian})


_PAIR_CHECKS: dict[str, Callable[[RelationResult, Case, Backend], None]] = {
    "symmetry": _check_symmetry,
    "modes": _check_modes,
    "transforms": _check_transforms,
    "precision": _check_precision,
    "finite_differences": _check_finite_differences,
}

