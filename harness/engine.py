"""The diff engine: run every backend variant on a case, judge each against the oracle.

Each variant's Hessian is sorted into one kind (``hessdiff.harness.findings.Kind``): wrong value
at a differentiable point, wrong shape, NaN/inf where the truth is finite, a crash of the
framework, a disagreement only at (or within a few ulps of) a kink, which is a
convention, or numerical noise that cancellation explains. Agreement is judged with the
per-backend, per-dtype tolerance model of ``hessdiff.harness.tolerance`` scaled entry by entry by
the oracle's error scale, never one magic atol.

The harness's own errors (a bug in a lowering, in the oracle) raise ``HarnessError`` and
are never reported as a framework's fault.

Running a variant is ``hessdiff.harness.outcomes``; the records the judge hands back are
``hessdiff.harness.verdicts``; the values a framework may return at and near a kink are
``hessdiff.harness.kink_judge``'s to say. This module holds the judge itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hessdiff.backends import BackendVariant
from hessdiff.backends.registry import framework_of
from hessdiff.harness.case import Case
from hessdiff.harness.findings import Kind
from hessdiff.harness.kink_judge import SideValues
from hessdiff.harness.oracle import OracleResult, OutOfDomain, evaluate, piecewise_linear
from hessdiff.harness.outcomes import Outcome, Runner, collect_all, run_variant
from hessdiff.harness.tolerance import tolerance_for
from hessdiff.harness.underflow import floored, underflow_floors, underflow_rows
from hessdiff.harness.verdicts import CaseResult, Verdict

__all__ = ["check_case", "judge"]

PIECEWISE_LINEAR_NOTE = "expected: piecewise-linear, second derivative is 0 almost everywhere"


def check_case(case: Case, variants: Sequence[BackendVariant | Runner]) -> CaseResult:
    """Run the oracle and every variant (or runner) on ``case``, and judge them.

    Runners are submitted first, so frameworks in worker processes compute at the same
    time as each other and as the oracle."""
    runners = [v for v in variants if isinstance(v, Runner)]
    for runner in runners:
        runner.submit(case)
    try:
        oracle = evaluate(case.program, case.point, case.dtype)
    except OutOfDomain as exc:
        oracle, note = None, str(exc)
    finally:  # collected whatever happens: a worker left with a result would hand it to the next call
        ran = collect_all(runners, lambda runner: runner.collect())
    if oracle is None:
        return CaseResult(case, None, "out_of_domain", {}, note=note)
    outcomes = {v.name: ran[v.name] if isinstance(v, Runner) else run_variant(v, case) for v in variants}
    return judge(case, oracle, outcomes)


def judge(case: Case, oracle: OracleResult, outcomes: dict[str, Outcome]) -> CaseResult:
    """Sort every outcome against the oracle.

    Off the kinks an entry must lie within its error bound of the truth. At a kink (and
    within rounding distance of one) the truth is one-sided, and a framework's value must
    be one its conventions can give (``SideValues``); where it is, and the frameworks
    still differ, that is a convention, reported at low severity.
    """
    result = CaseResult(case, oracle, "judged", outcomes)
    expected = oracle.hessian_float()
    defined = ~oracle.undefined
    if piecewise_linear(case.program) and not np.any(expected[defined]):
        result.note = PIECEWISE_LINEAR_NOTE
    n = case.program.n
    sides = SideValues(case, oracle)
    at_kink: dict[str, np.ndarray] = {}
    for name, outcome in outcomes.items():
        if outcome.status == "unsupported":
            continue
        tol = tolerance_for(name, case.dtype)
        overflows = oracle.max_magnitude > tol.max_magnitude / 4
        if outcome.status == "crash" and overflows:
            # An exception on the infs an honest overflow feeds it (torch.linalg.svd "failed
            # to converge" in det's backward of i0(x) past float32's range) is the
            # framework's business, as the NaN it would otherwise return; a hang is not.
            continue
        if outcome.status == "crash":
            result.verdicts.append(Verdict(name, Kind.CRASH, f"{name} raised {outcome.error}"))
            continue
        if outcome.status == "timeout":
            result.verdicts.append(Verdict(name, Kind.TIMEOUT, f"{name} {outcome.error}"))
            continue
        if overflows:
            continue  # the true intermediates overflow this backend's range: not judged
        h = outcome.hessian
        assert h is not None
        if h.shape != (n, n):
            result.verdicts.append(Verdict(name, Kind.WRONG_SHAPE, _shape_text(name, h, n, oracle)))
            continue
        side = sides.at_kink
        verdict = sides.judge_at_kink(name, h, tol) if side.any() else None
        if verdict is None:
            verdict = _judge_values(name, h, expected, defined & ~side, oracle, tol, result, sides)
        if verdict is not None:
            result.verdicts.append(verdict)
        elif oracle.kinks:
            at_kink[name] = h[oracle.undefined]
    result.verdicts.extend(_conventions(at_kink, oracle, case.dtype))
    return result


NOISE_ULPS = 1024.0

def _judge_values(name: str, h: np.ndarray, expected: np.ndarray, judged: np.ndarray,
                  oracle: OracleResult, tol: Any, result: CaseResult, sides: SideValues) -> Verdict | None:
    """The verdict on the entries off the kinks, and the count of entries judged and of
    entries too ill-conditioned to judge (``CaseResult.entries``)."""
    truth = np.where(judged, expected, 0.0)
    nonfinite = judged & ~np.isfinite(h)
    err = np.where(judged & ~nonfinite, np.abs(h - truth), 0.0)
    scale = oracle.hessian_scale
    if np.any(judged & (err > tol.bound(scale, truth))):  # the framework's own formulas may explain it
        scale = oracle.scale_for(framework_of(name))
    bound = tol.bound(scale, truth)
    rows_nan_honest = underflow_rows(oracle)
    # An entry whose honest error bound exceeds the entry itself: whatever lies within
    # the bound cannot be told from the truth (a genuinely ill-conditioned point). A value
    # beyond the bound is still wrong; within it, the entry is not counted as checked.
    # An exact 0 has no size to exceed: it is ill-conditioned where its bound exceeds
    # sqrt(eps) times the largest entry (beyond that, a value of a size that matters can
    # no longer be told from it), and where every entry is 0, where its bound exceeds
    # tiny/eps (below it an entry cannot be told from 0 in a framework that flushes:
    # ``underflow_floors``; prod + prod**2 with five zero entries in float32 has a bound
    # of 7e-34 at each exact 0, and was all unjudged). The bound's absolute floor at the
    # dtype's smallest normal (where a framework may flush) does not count.
    with np.errstate(invalid="ignore", over="ignore"):
        relative = tol.factor * tol.eps * scale
        largest = float(np.max(np.abs(truth[judged]), initial=0.0))
        zero_floor = np.sqrt(tol.eps) * largest if largest > 0 else tol.tiny / tol.eps
        floor = np.where(truth != 0, np.abs(truth), zero_floor)
        ill = judged & ~(relative <= np.maximum(floor, tol.factor * tol.tiny))
        flushed, rows = underflow_floors(np.abs(truth), oracle, tol)
        flushed &= judged
        rows &= judged
        ill |= flushed | rows
        bound = floored(bound, flushed, rows, tol)
    result.entries[name] = (int(judged.sum()), int(ill.sum()))
    # A bound past float64's range (an intermediate of the derivative formulas beyond
    # it, or inf * 0 in the error scale): there is no value to hold the entry to.
    free = judged & ~np.isfinite(bound)
    # Where intermediates underflow, the frameworks' formulas can divide an underflowed 0
    # by another (x0 x1 / |x|**2 in norm's Hessian at |x| = 1e-275), so NaN is an honest
    # outcome in the rows of the inputs behind the underflow (``underflow_rows``), and
    # only there: elsewhere no honest formula divides by it (MLX's NaN tanh'' at x0 = 464
    # was excused because x2 = 2.2e-308 squared underflowed). Where a product the chain
    # rule forms may pass the dtype's range (``product_peak``), a NaN or inf is honest
    # too; a finite value is still held to the bound.
    excused = free | rows_nan_honest | (oracle.product_peak > tol.max_magnitude)
    failing = (nonfinite & ~excused) | (judged & (err > bound))
    bad = sides.unexplained_near_kink(name, h, tol, failing) if failing.any() else failing
    if (bad & ~np.isfinite(h)).any() or bad.any():
        near = sides.near_kink_verdict(name, h, tol, bad) if tol.near_kink(oracle.kink_distance, oracle.kink_gap) else None
        if near is not None:
            return near
    if (bad & nonfinite).any():
        i, j = np.argwhere(bad & nonfinite)[0]
        return Verdict(
            name, Kind.NONFINITE,
            f"{name} returns H[{i},{j}] = {float(h[i, j])} where the true value is finite "
            f"({float(expected[i, j])!r}, oracle: 50-digit multi-precision).",
            float("inf"), bad,
        )
    if bad.any():
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # a bound of 1e-306 and less
            ratio = np.where(bad, err / bound, 0.0)
        i, j = np.unravel_index(np.argmax(ratio), err.shape)
        text = (
            f"{name} returns H[{i},{j}] = {float(h[i, j])!r}; the oracle (50-digit multi-precision, "
            f"independent of every framework) gives {float(expected[i, j])!r}. |difference| = "
            f"{err[i, j]:.3g}, {ratio[i, j]:.3g}x the {tol.factor:g}-ulp error bound "
            f"{bound[i, j]:.3g} for this entry."
        )
        if result.note:
            text += f" ({result.note}.)"
        gradient = oracle.gradient_float()
        if np.all(np.isfinite(gradient)) and np.allclose(np.diag(h), gradient, rtol=1e-5, atol=1e-12) \
                and not np.allclose(np.diag(expected), gradient, rtol=1e-5, atol=1e-12):
            text += " The diagonal it returns equals the gradient: a first derivative, not the second."
        return Verdict(name, Kind.WRONG_VALUE, text, float(err[bad].max()), bad)
    # Entries a side of a nearby kink explains (``failing`` but not ``bad``) are that
    # side's value, not noise around the truth.
    noisy = judged & ~ill & ~failing & (err > NOISE_ULPS * tol.naive_bound(truth))
    if noisy.any():
        i, j = np.argwhere(noisy)[0]
        if expected[i, j] != 0:
            size = f"{scale[i, j] / abs(expected[i, j]):.3g}x larger than it"
        else:
            size = f"of size {scale[i, j]:.3g}, cancelling to the true 0"
        return Verdict(
            name, Kind.NOISE,
            f"{name} returns H[{i},{j}] = {float(h[i, j])!r} vs {float(expected[i, j])!r}: a relative "
            f"error over {NOISE_ULPS:g}x{tol.factor:g} ulps, dismissed: the terms rounded on the "
            f"way to this entry are {size} (cancellation in the chain rule, or "
            "in a derivative formula computed from an op's output, like tanh' = 1 - y*y where tanh "
            f"saturates), and the difference, {err[i, j]:.3g}, is within eps times those terms "
            f"({bound[i, j]:.3g}).",
            float(err.max()),
        )
    return None


def _conventions(at_kink: dict[str, np.ndarray], oracle: OracleResult, dtype: str) -> list[Verdict]:
    """Where every framework's value at a kink is one a convention gives, but they differ:
    each picked a different convention (reported, at low severity)."""
    if len(at_kink) < 2:
        return []
    values = np.stack(list(at_kink.values()))
    scale = np.maximum(np.abs(values).max(axis=0), 1.0)
    eps = max(tolerance_for(name, dtype).eps for name in at_kink)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, NaN at a domain edge
        same = bool(np.all(np.abs(values - values[0]) <= 64 * eps * scale))
    if same:
        return []
    where = [tuple(int(v) for v in ij) for ij in np.argwhere(oracle.undefined)]
    kinks = ", ".join(sorted({f"{k.op} (node {k.node})" for k in oracle.kinks}))
    listing = "; ".join(f"{name}: {np.round(v, 6).tolist()}" for name, v in at_kink.items())
    text = (
        f"At a kink of {kinks} the entries {where} are undefined (the one-sided values "
        f"differ); the frameworks pick different conventions: {listing}."
    )
    return [Verdict(name, Kind.CONVENTION, text) for name in at_kink]


def _shape_text(name: str, h: np.ndarray, n: int, oracle: OracleResult) -> str:
    text = f"{name} returns an array of shape {h.shape}; the Hessian of f: R^{n} -> R is ({n}, {n})."
    gradient = oracle.gradient_float()
    if h.size == n and np.allclose(h.reshape(-1), gradient, rtol=1e-5, atol=1e-12):
        text += " Its entries equal the gradient: a first derivative, not the second."
    return text
