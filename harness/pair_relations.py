"""Pair relations: two of a framework's own results compared (H and its transpose, two
differentiation orders, eager and compiled, float32 and float64, H and finite
differences of the gradient), a violation attributed by the oracle to the side it
rejects, or reported as noise when it rejects neither.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hessdiff.backends import Backend, BackendVariant, Unsupported
from hessdiff.harness.case import Case
from hessdiff.harness.outcomes import Outcome
from hessdiff.harness.fdcheck import fd_hessian
from hessdiff.harness.findings import Kind
from hessdiff.harness.ir import Program
from hessdiff.harness.oracle import OracleResult
from hessdiff.harness.probe_relations import declared_relation, value_is_reproducible, with_solver_error
from hessdiff.harness.relation_findings import (
    RelationResult, attribute, make_finding, oracle_of, reference_variant, run_at,
)
from hessdiff.harness.tolerance import tolerance_for


def _bound(name: str, dtype: str, oracle: OracleResult, h: np.ndarray, widen: float = 1.0) -> np.ndarray:
    tol = tolerance_for(name, dtype)
    return widen * tol.bound(oracle.hessian_scale + oracle.hessian_scale.T, np.abs(h))


def _violation_finding(result: RelationResult, case: Case, oracle: OracleResult, statement: str,
                       pairs: list[tuple[BackendVariant, Outcome]], detail: str, magnitude: float,
                       others: dict[str, np.ndarray | None], program: Program | None = None) -> None:
    """A violated relation: a finding for each side the oracle rejects, else one noise.

    ``program`` is the function whose Hessian the oracle evaluated, when it is not the
    case's own (a probe's Neural-ODE loss).
    """
    blamed = False
    for variant, outcome in pairs:
        verdict, _ = attribute(case, oracle, outcome, program)
        if verdict is None or not verdict.kind.is_failure:
            continue
        blamed = True
        text = f"Relation violated: {statement}. {detail} {verdict.explanation}"
        result.findings.append(make_finding(verdict.kind, variant, case, outcome, oracle, text,
                                            verdict.max_error, others))
    if not blamed:
        variant, outcome = pairs[0]
        text = (f"Relation violated within rounding: {statement}. {detail} The oracle accepts "
                f"every side within its error model, so this is numerical (magnitude "
                f"{magnitude:.3g}), not a bug.")
        result.findings.append(make_finding(Kind.NOISE, variant, case, outcome, oracle, text, magnitude, others))


def _ok(outcome: Outcome, n: int) -> bool:
    return outcome.status == "ok" and outcome.hessian is not None and outcome.hessian.shape == (n, n)


def _defined_both(oracle: OracleResult) -> np.ndarray:
    defined = ~oracle.undefined
    return defined & defined.T


def check_symmetry(result: RelationResult, case: Case, backend: Backend,
                   probes: list[str] | None = None) -> None:
    """Every variant's H (or, given ``probes``, each probe's matrix) is symmetric."""
    for name in probes if probes is not None else list(backend.variants):
        variant = BackendVariant(backend, name)
        declared = declared_relation(variant)
        if declared is not None and declared.target == "diagonal":
            continue  # a diagonal is symmetric by construction
        # Only a transform changes the function differentiated (the Neural-ODE loss).
        relation = declared if declared is not None and declared.transform is not None else None
        program = relation.transform(case.program) if relation is not None else case.program
        if relation is not None and not value_is_reproducible(case.program, case, backend,
                                                               relation.max_rate)[0]:
            continue  # see value_is_reproducible
        oracle = oracle_of(program, case)
        if oracle is None:
            continue
        # An approximate solve is judged within its tolerance; its asymmetry within rounding.
        judged = oracle if relation is None else with_solver_error(oracle, relation, variant.name,
                                                                    case.dtype)
        outcome = run_at(variant, case)
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
    oracle = oracle_of(case.program, case)
    if oracle is None:
        return
    reference = reference_variant(backend)
    ref = (reference, run_at(reference, case))
    for name, spec in list(backend.variants.items())[1:]:
        if spec.compiled:
            continue  # the transforms relation compares those
        variant = BackendVariant(backend, name)
        _compare(result, case, oracle, "every differentiation order gives the same H", ref,
                 (variant, run_at(variant, case)))


def _check_transforms(result: RelationResult, case: Case, backend: Backend) -> None:
    oracle = oracle_of(case.program, case)
    if oracle is None:
        return
    reference = reference_variant(backend)
    ref = (reference, run_at(reference, case))
    names = [name for name, spec in backend.variants.items() if spec.compiled]
    for name in names:
        variant = BackendVariant(backend, name)
        _compare(result, case, oracle, "jit/compile commutes with differentiation", ref,
                 (variant, run_at(variant, case)))


def _check_precision(result: RelationResult, case: Case, backend: Backend) -> None:
    """float32 vs float64 at the same (float32-exact) point, where well-conditioned."""
    if case.dtype != "float32":
        return
    oracle32 = oracle_of(case.program, case)
    oracle64 = oracle_of(case.program, case, "float64")
    if oracle32 is None or oracle64 is None:
        return
    expected = oracle64.hessian_float()
    well = np.isfinite(expected) & (oracle64.hessian_scale <= 16.0 * np.abs(expected) + 1e-6)
    if not well.any():
        return
    for name in backend.variants:
        variant = BackendVariant(backend, name)
        o32, o64 = run_at(variant, case, "float32"), run_at(variant, case, "float64")
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
        verdict, _ = attribute(f64, oracle64, o64)
        if verdict is not None and verdict.kind.is_failure:
            result.findings.append(make_finding(verdict.kind, variant, f64, o64, oracle64,
                                                f"Relation violated: float32 and float64 agree. {detail} "
                                                f"{verdict.explanation}", verdict.max_error))
            continue
        _violation_finding(result, case, oracle32, "float32 and float64 agree where well-conditioned",
                           [(variant, o32)], detail, float(diff.max()),
                           {f"{variant.name} (float64)": o64.hessian})


def _check_finite_differences(result: RelationResult, case: Case, backend: Backend) -> None:
    """H against central differences of the framework's own float64 gradient."""
    oracle = oracle_of(case.program, case)
    if oracle is None or oracle.undefined.any():
        return
    x64 = np.asarray(case.point, dtype=np.float64)
    # A kink within the finite-difference stencil makes differences meaningless.
    step = 2 * float(np.finfo(np.float64).eps) ** (1 / 3) * max(1.0, float(np.max(np.abs(x64))))
    if oracle.kink_distance <= 100 * step:
        return
    for name in backend.variants:
        variant = BackendVariant(backend, name)
        outcome = run_at(variant, case)
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


PAIR_CHECKS: dict[str, Callable[[RelationResult, Case, Backend], None]] = {
    "symmetry": check_symmetry,
    "modes": _check_modes,
    "transforms": _check_transforms,
    "precision": _check_precision,
    "finite_differences": _check_finite_differences,
}
