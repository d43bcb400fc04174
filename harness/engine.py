"""The diff engine: run every backend variant on a case, judge each against the oracle.

Each variant's Hessian is sorted into one kind (``hessdiff.harness.findings.Kind``): wrong value
at a differentiable point, wrong shape, NaN/inf where the truth is finite, a crash of the
framework, a disagreement only at (or within a few ulps of) a kink, which is a
convention, or numerical noise that cancellation explains. Agreement is judged with the
per-backend, per-dtype tolerance model of ``hessdiff.harness.tolerance`` scaled entry by entry by
the oracle's error scale, never one magic atol.

The harness's own errors (a bug in a lowering, in the oracle) raise ``HarnessError`` and
are never reported as a framework's fault.
"""

from __future__ import annotations

import os
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hessdiff.backends import BackendVariant, Unsupported
from hessdiff.backends.registry import framework_of
from hessdiff.harness.case import Case
from hessdiff.harness.findings import Kind
from hessdiff.harness.ir import Program
from hessdiff.harness.oracle import (OracleResult, OutOfDomain, all_resolved, conventions, evaluate, piecewise_linear,
                            resolutions)
from hessdiff.harness.tolerance import tolerance_for

__all__ = ["CaseResult", "HarnessError", "Outcome", "Runner", "Verdict", "check_case", "judge", "run_points",
           "run_variant"]

_OWN_DIRS = tuple(
    os.path.dirname(os.path.abspath(p))
    for p in (__file__, __import__("hessdiff.backends", fromlist=["_"]).__file__)
)

PIECEWISE_LINEAR_NOTE = "expected: piecewise-linear, second derivative is 0 almost everywhere"


class HarnessError(RuntimeError):
    """hessdiff itself failed (not the framework): a bug to fix here, never a finding."""


@dataclass(frozen=True)
class Outcome:
    """What one variant did on one case: a Hessian, "unsupported", a crash or a timeout.

    ``status`` is one of "ok", "unsupported", "crash", "timeout" (the last only from a
    variant run in a worker process, ``hessdiff.harness.worker``, which can kill a hung call).
    """

    variant: str
    status: str
    hessian: np.ndarray | None = None
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """One variant's disagreement with the truth on one case."""

    variant: str
    kind: Kind
    explanation: str
    max_error: float = 0.0


@dataclass
class CaseResult:
    """Everything the engine learned from one case."""

    case: Case
    oracle: OracleResult | None
    status: str
    outcomes: dict[str, Outcome]
    verdicts: list[Verdict] = field(default_factory=list)
    note: str = ""
    # Per variant, Hessian entries judged off the kinks and how many of them were too
    # ill-conditioned to tell a wrong value within the bound from the truth.
    entries: dict[str, tuple[int, int]] = field(default_factory=dict)

    def hessians(self) -> dict[str, np.ndarray | None]:
        return {name: o.hessian for name, o in self.outcomes.items()}


class Runner(ABC):
    """A variant run somewhere else than in this process (``hessdiff.harness.worker``).

    The engine calls ``run(case)`` instead of the variant's ``hessian``: a runner may turn
    a dead or hung framework into a crash or timeout outcome instead of dying with it.
    """

    name: str
    variant: BackendVariant
    _submitted: Case | None = None

    @property
    def backend(self) -> Any:
        return self.variant.backend

    @abstractmethod
    def run(self, case: Case) -> Outcome:
        """What the variant did on ``case``; raises ``HarnessError`` for our own bug."""

    def submit(self, case: Case) -> None:
        """Start ``run(case)`` and return at once where the runner can (a worker process
        computes while the oracle does); ``collect`` waits for it. Here: run at collect."""
        self._submitted = case

    def collect(self) -> Outcome:
        """The outcome of the last ``submit``."""
        case, self._submitted = self._submitted, None
        if case is None:
            raise HarnessError("collect() without submit()")
        return self.run(case)


def _ours(filename: str) -> bool:
    path = os.path.abspath(filename)
    return any(path.startswith(d + os.sep) for d in _OWN_DIRS)


def _framework_class(exc: BaseException) -> bool:
    """Whether ``exc``'s class comes from a framework (``torch._C._LinAlgError``), not
    from Python itself or from hessdiff."""
    root = type(exc).__module__.split(".")[0]
    return root not in ("builtins", "harness", "backends", "numpy", "__main__")


def _from_c_extension(exc: BaseException, filename: str) -> bool:
    """Whether ``exc``, raised with a frame of ``backends`` last, came from a framework
    call written in C on that line (see ``run_variant``)."""
    backends_dir = os.path.dirname(os.path.abspath(__import__("hessdiff.backends", fromlist=["_"]).__file__))
    return type(exc) is RuntimeError and os.path.abspath(filename).startswith(backends_dir + os.sep)


def run_variant(variant: BackendVariant, case: Case) -> Outcome:
    """Run one variant; a framework exception is a crash outcome, ours a HarnessError."""
    x = case.point.astype(case.dtype)
    start = time.perf_counter()
    try:
        hessian = variant.hessian(case.program, x)
    except Unsupported as exc:
        return Outcome(variant.name, "unsupported", error=str(exc), seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - every framework error is data
        frames = traceback.extract_tb(exc.__traceback__)
        # Our own frame last means our bug, unless the exception is a framework's own
        # class, or a RuntimeError from a backend's code: a framework function written in
        # C (torch.linalg.inv on a singular matrix, MLX's vmap: "Pad vmap is NYI")
        # raises with no Python frame of its own, from our lowering's or helper's line,
        # and hessdiff's backends never raise RuntimeError themselves.
        if frames and _ours(frames[-1].filename) and not _framework_class(exc) \
                and not _from_c_extension(exc, frames[-1].filename):
            raise HarnessError(
                f"{variant.name} failed inside hessdiff ({frames[-1].filename}:{frames[-1].lineno}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        text = f"{type(exc).__name__}: {exc}".strip()
        return Outcome(variant.name, "crash", error=text[:2000], seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    try:
        hessian = np.asarray(hessian, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"{variant.name} returned something that is not an array: {exc}") from exc
    return Outcome(variant.name, "ok", hessian, seconds=seconds)


def run_points(variant: BackendVariant, program: Program, points: Sequence[np.ndarray],
               dtype: str) -> list[Outcome]:
    """One outcome per point, from one batched call (``BackendVariant.hessians``).

    If the batched call fails in any way (the framework cannot vectorise this program),
    every point is run on its own, so the outcomes are the ones ``run_variant`` gives.
    """
    xs = np.stack([np.asarray(p, dtype=np.float64) for p in points]).astype(dtype)
    start = time.perf_counter()
    try:
        batch = np.asarray(variant.hessians(program, xs), dtype=np.float64)
    except Exception:  # noqa: BLE001 - fall back to the one-point path, which classifies
        batch = None
    seconds = (time.perf_counter() - start) / max(len(xs), 1)
    if batch is None or batch.shape[:1] != (len(xs),):
        return [run_variant(variant, Case(program, np.asarray(p, dtype=np.float64), dtype)) for p in points]
    return [Outcome(variant.name, "ok", batch[k], seconds=seconds) for k in range(len(xs))]


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
        ran = {runner.name: runner.collect() for runner in runners}
    if oracle is None:
        return CaseResult(case, None, "out_of_domain", {}, note=note)
    outcomes = {v.name: ran[v.name] if isinstance(v, Runner) else run_variant(v, case) for v in variants}
    return judge(case, oracle, outcomes)


def judge(case: Case, oracle: OracleResult, outcomes: dict[str, Outcome]) -> CaseResult:
    """Sort every outcome against the oracle.

    Off the kinks an entry must lie within its error bound of the truth. At a kink (and
    within rounding distance of one) the truth is one-sided, and a framework's value must
    be one its conventions can give (``_SideValues``); where it is, and the frameworks
    still differ, that is a convention, reported at low severity.
    """
    result = CaseResult(case, oracle, "judged", outcomes)
    expected = oracle.hessian_float()
    defined = ~oracle.undefined
    if piecewise_linear(case.program) and not np.any(expected[defined]):
        result.note = PIECEWISE_LINEAR_NOTE
    n = case.program.n
    sides = _SideValues(case, oracle)
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

# A rounding distance from the kinks: (relative to a switch's error scale, the smallest
# normal the framework keeps). AT_KINK is none: exactly at the kinks.
Fuzz = tuple[float, float]
AT_KINK: Fuzz = (0.0, 0.0)


def _rounding_distance(tol: Any) -> Fuzz:
    """How far from a kink a variant's rounding may put a switch (``Tolerance.near_kink``):
    ``kink_ulps`` of its eps relative to the switch's error scale, or of its smallest
    normal."""
    return (tol.kink_ulps * tol.eps, tol.tiny)


class _Enumeration:
    """The conventions of one case at one rounding distance (``hessdiff.harness.oracle.conventions``),
    evaluated a few at a time as a judge asks for more (``more``), and kept for every
    variant judged after it."""

    FIRST = 2  # evaluated on the first ask; each later ask doubles what is in

    def __init__(self, case: Case, oracle: OracleResult, fuzz: Fuzz) -> None:
        self.case, self.fuzz = case, fuzz
        self.results: list[OracleResult] = []
        self.hessians: list[np.ndarray] = []  # each result's, in float64 (every judge reads them)
        self._memo: dict[Any, Any] = {}
        try:
            self.base = evaluate(case.program, case.point, case.dtype, kink_fuzz=fuzz[0],
                                 range_tiny=fuzz[1]) if fuzz != AT_KINK else oracle
            self.pending = resolutions(self.base.sides) if self.base.sides else []
        except OutOfDomain:  # a side leaves the domain: unjudged
            self.base, self.pending = oracle, []
        self.undefined = self.base.undefined
        self.complete = all_resolved(self.base.sides)
        self.more()

    def more(self) -> bool:
        """Evaluate more conventions; False when every one is already in."""
        if not self.pending:
            return False
        size = max(self.FIRST, len(self.results))
        chunk, self.pending = self.pending[:size], self.pending[size:]
        try:
            more = conventions(self.case.program, self.case.point, self.case.dtype, self.base.sides,
                               self.fuzz[0], only=chunk, memo=self._memo, range_tiny=self.fuzz[1])
        except OutOfDomain:  # a side leaves the domain, or exact arithmetic outgrows it: unjudged
            self.results, self.hessians, self.pending = [], [], []
            return True
        self.results += more
        self.hessians += [r.hessian_float() for r in more]
        return True


class _SideValues:
    """What a framework may return at and near the kinks of one case.

    At a kink the oracle's entry is undefined: the one-sided values differ. A framework
    resolves the kink by a convention of its own (a side, relu'(0) = 0; or an average,
    a tie's gradient split equally), so its entry must lie in the range of the values
    every such convention gives (``hessdiff.harness.oracle.conventions``), within their error
    bound. Within rounding distance of a kink (``Tolerance.near_kink``) the framework's
    rounding may put the point on either side, or on the kink: an entry that fails
    against the truth must match one of those values. NaN or inf is never a convention
    where those values are finite. Entries no convention defines (NaN in all of them: a
    domain edge) are not judged. The conventions are evaluated only when needed, once
    per case (and per rounding distance).
    """

    def __init__(self, case: Case, oracle: OracleResult) -> None:
        self.case = case
        self.oracle = oracle
        self._by_fuzz: dict[Fuzz, _Enumeration] = {}

    @property
    def at_kink(self) -> np.ndarray:
        """The entries a kink the point lies on decides (undefined in the oracle)."""
        if not self.oracle.kinks:
            return np.zeros(self.oracle.hessian.shape, dtype=bool)
        return self.oracle.undefined

    def _resolved(self, fuzz: Fuzz) -> _Enumeration:
        """The conventions at rounding distance ``fuzz`` (``AT_KINK``: at the kinks), evaluated so far."""
        if fuzz not in self._by_fuzz:
            self._by_fuzz[fuzz] = _Enumeration(self.case, self.oracle, fuzz)
        return self._by_fuzz[fuzz]

    def _values(self, name: str, fuzz: Fuzz, tol: Any,
                own: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(the Hessian of every convention evaluated so far, their error bound (``own``:
        with the rule scales of the variant's framework), entries some convention leaves
        undefined), or None where no convention could be evaluated."""
        enumeration = self._resolved(fuzz)
        resolved = enumeration.results
        if not resolved:
            return None
        values = np.stack(enumeration.hessians)
        framework = framework_of(name) if own else None
        scale = np.max(np.stack([r.scale_for(framework) for r in resolved]), axis=0)
        with np.errstate(invalid="ignore", over="ignore"):
            size = np.abs(values).max(axis=0)
            # Where intermediates underflow, the same floors as off the kinks (JAX's
            # jacfwd(jacfwd) H[0, 3] at x0 = -2.2e-308, at a kink of remainder, is
            # -2.8e-298 where every convention gives -4.1e-299).
            bound = _floored(tol.bound(scale, size), *_underflow_floors(size, self.oracle, tol), tol)
        # No value to hold an entry to: a convention leaves it undefined (a domain edge),
        # or its bound is past float64's range.
        return values, bound, np.isnan(values).any(axis=0) | ~np.isfinite(bound)

    def _until_explained(self, fuzz: Fuzz, unexplained: Callable[[], np.ndarray]) -> np.ndarray:
        """``unexplained()`` over more and more conventions, until it is empty or every
        convention is in. Each test only excuses more as conventions are added (a value
        matched, a range widened, a NaN or overflow freed), so stopping early changes no
        verdict, and an honest value, which usually matches the first side or two, costs
        two evaluations instead of every combination of every kink's options."""
        enumeration = self._resolved(fuzz)
        left = unexplained()
        while left.any() and enumeration.more():
            left = unexplained()
        return left

    def judge_at_kink(self, name: str, h: np.ndarray, tol: Any, own: bool = False) -> Verdict | None:
        if self._values(name, AT_KINK, tol, own) is None:  # no convention could be evaluated
            return None
        underflow = _underflow_rows(self.oracle)

        def unexplained() -> np.ndarray:
            found = self._values(name, AT_KINK, tol, own)
            if found is None:  # a later convention left the domain: unjudged, as all of them
                return np.zeros_like(self.at_kink)
            values, bound, free = found
            honest_nan = underflow | self._overflows(AT_KINK, tol)
            return self.at_kink & ~free & ~self._in_range(h, values, bound) & ~(honest_nan & ~np.isfinite(h))

        bad = self._until_explained(AT_KINK, unexplained)
        if bad.any() and tol.near_kink(self.oracle.kink_distance, self.oracle.kink_gap):
            # Another kink within rounding distance may fall either way, or exactly on
            # itself, in the framework (a subnormal gap that XLA reads as 0): the range
            # over those sides as well (over some of them where they are too many to
            # combine: a smaller range only excuses less).
            fuzz = _rounding_distance(tol)
            at = bad

            def unexplained_near() -> np.ndarray:
                near = self._values(name, fuzz, tol, own)
                return at if near is None else at & ~(near[2] | self._in_range(h, near[0], near[1]))

            bad = self._until_explained(fuzz, unexplained_near)
        if bad.any() and not own:  # the framework's own formulas may explain it
            return self.judge_at_kink(name, h, tol, own=True)
        found = self._values(name, AT_KINK, tol, own)
        if not bad.any() or found is None:
            return None
        return self._verdict(name, h, found[0], found[1], bad, "at a kink")

    def _overflows(self, fuzz: Fuzz, tol: Any) -> bool:
        """Whether a convention's intermediates exceed the dtype's range: a framework
        that resolves the kink that way overflows honestly (remainder(-3x, x) at x = 493
        in float32 is 0 on one side, x on the other, where i1(493) = 3e212 is inf)."""
        return any(r.max_magnitude > tol.max_magnitude / 4 for r in self._resolved(fuzz).results)

    def unexplained_near_kink(self, name: str, h: np.ndarray, tol: Any, bad: np.ndarray) -> np.ndarray:
        """Of the ``bad`` entries (failing against the truth), those that no side of a kink
        within this variant's rounding distance explains."""
        if not tol.near_kink(self.oracle.kink_distance, self.oracle.kink_gap):
            return bad
        fuzz = _rounding_distance(tol)
        enumeration = self._resolved(fuzz)
        if not enumeration.complete:
            # Too many elements near kinks to enumerate their sides: a finite value there
            # is the framework's rounding's business; NaN or inf where the truth is
            # finite is still not.
            return bad & ~(enumeration.undefined & np.isfinite(h))
        # The common bound first: the framework's own rule scales only widen it, and
        # evaluating them re-runs the program once per convention, so they are asked for
        # only where the common bound leaves an entry unexplained.
        failing = bad
        bad = self._until_explained(
            fuzz, lambda: self._unexplained_by(self._values(name, fuzz, tol), h, tol, fuzz, failing))
        if bad.any() and framework_of(name) in self.oracle.framework_scales:
            bad = self._unexplained_by(self._values(name, fuzz, tol, own=True), h, tol, fuzz, bad)
        return bad

    def _unexplained_by(self, found: tuple[np.ndarray, np.ndarray, np.ndarray] | None, h: np.ndarray,
                        tol: Any, fuzz: Fuzz, bad: np.ndarray) -> np.ndarray:
        """Of ``bad``, the entries that none of the conventions' values ``found`` (values,
        bound, entries without a value) explains near a kink."""
        if found is None:
            return bad & ~(self._resolved(fuzz).undefined & np.isfinite(h))
        values, bound, free = found
        if self._overflows(fuzz, tol):
            free = free | ~np.isfinite(h)
        with np.errstate(invalid="ignore"):
            matches = (np.abs(values - h) <= bound).any(axis=0)
        # Rounding may also put the framework exactly on the kink (-1 - 1.4e-45 is -1 in
        # float32: a tie the exact arithmetic does not have), where its own convention
        # holds: the range of the conventions, as at a kink.
        # Every entry, not only those the sides' values differ at: a side can also change an
        # entry's error bound (a tied entry of max whose derivative is pure rounding noise
        # on one side and structurally 0 on the other).
        return bad & ~(free | matches | self._in_range(h, values, bound))

    @staticmethod
    def _in_range(h: np.ndarray, values: np.ndarray, bound: np.ndarray) -> np.ndarray:
        """Entries whose symmetric part lies in the range of the conventions' values.

        A framework may resolve a kink one way in its forward rule and another in its
        reverse rule (MLX's max at a tie: the JVP picks the first tied entry, the VJP
        splits), which makes its Hessian there asymmetric: the range holds its symmetric
        part (asymmetry is the symmetry relation's to report)."""
        sym = np.where(np.isfinite(h) & np.isfinite(h.T), (h + h.T) / 2, h)
        with np.errstate(invalid="ignore"):
            lo, hi = values.min(axis=0), values.max(axis=0)
            return (sym >= lo - bound) & (sym <= hi + bound)


    def near_kink_verdict(self, name: str, h: np.ndarray, tol: Any, bad: np.ndarray) -> Verdict | None:
        fuzz = _rounding_distance(tol)
        found = self._values(name, fuzz, tol)
        affected = self._resolved(fuzz).undefined
        if found is None or not (bad & affected).any():
            return None
        values, bound, _ = found
        return self._verdict(name, h, values, bound, bad & affected, "within rounding distance of a kink")

    def _verdict(self, name: str, h: np.ndarray, values: np.ndarray, bound: np.ndarray, bad: np.ndarray,
                 where: str) -> Verdict:
        nonfinite = bad & ~np.isfinite(h)
        i, j = np.argwhere(nonfinite if nonfinite.any() else bad)[0]
        kinks = ", ".join(sorted({k.op for k in self.oracle.kinks} | set(self.oracle.kink_ops)))
        options = sorted({float(v) for v in values[:, i, j]})
        text = (f"{name} returns H[{i},{j}] = {float(h[i, j])!r} {where} of {kinks}, where the values the "
                f"frameworks' conventions give (each side of the kink, and their average) are "
                f"{[float(f'{v:.6g}') for v in options]}")
        if nonfinite.any():
            return Verdict(name, Kind.NONFINITE, text + ": all finite.", float("inf"))
        return Verdict(name, Kind.WRONG_VALUE, text + f", each within {float(bound[i, j]):.3g}.",
                       float(np.min(np.abs(values[:, i, j] - h[i, j]))))


def _judge_values(name: str, h: np.ndarray, expected: np.ndarray, judged: np.ndarray,
                  oracle: OracleResult, tol: Any, result: CaseResult, sides: _SideValues) -> Verdict | None:
    """The verdict on the entries off the kinks, and the count of entries judged and of
    entries too ill-conditioned to judge (``CaseResult.entries``)."""
    truth = np.where(judged, expected, 0.0)
    nonfinite = judged & ~np.isfinite(h)
    err = np.where(judged & ~nonfinite, np.abs(h - truth), 0.0)
    scale = oracle.hessian_scale
    if np.any(judged & (err > tol.bound(scale, truth))):  # the framework's own formulas may explain it
        scale = oracle.scale_for(framework_of(name))
    bound = tol.bound(scale, truth)
    underflow_rows = _underflow_rows(oracle)
    # An entry whose honest error bound exceeds the entry itself: whatever lies within
    # the bound cannot be told from the truth (a genuinely ill-conditioned point). A value
    # beyond the bound is still wrong; within it, the entry is not counted as checked.
    # An exact 0 has no size to exceed: it is ill-conditioned where its bound exceeds
    # sqrt(eps) times the largest entry (beyond that, a value of a size that matters can
    # no longer be told from it). The bound's absolute floor at the dtype's smallest
    # normal (where a framework may flush) does not count.
    with np.errstate(invalid="ignore", over="ignore"):
        relative = tol.factor * tol.eps * scale
        largest = float(np.max(np.abs(truth[judged]), initial=0.0))
        floor = np.where(truth != 0, np.abs(truth), np.sqrt(tol.eps) * largest)
        ill = judged & ~(relative <= np.maximum(floor, tol.factor * tol.tiny))
        flushed, rows = _underflow_floors(np.abs(truth), oracle, tol)
        flushed &= judged
        rows &= judged
        ill |= flushed | rows
        bound = _floored(bound, flushed, rows, tol)
    result.entries[name] = (int(judged.sum()), int(ill.sum()))
    # A bound past float64's range (an intermediate of the derivative formulas beyond
    # it, or inf * 0 in the error scale): there is no value to hold the entry to.
    free = judged & ~np.isfinite(bound)
    # At a point where intermediates underflow, the frameworks' formulas can divide an
    # underflowed 0 by another (x0 x1 / |x|**2 in norm's Hessian at |x| = 1e-275), so NaN
    # is an honest outcome at an ill-conditioned entry, or at an exact 0 made of such terms.
    # Where a product the chain rule forms may pass the dtype's range (``product_peak``),
    # a NaN or inf is honest too; a finite value is still held to the bound.
    excused = free | (oracle.underflow & (ill | (truth == 0) & (scale > 0))) | underflow_rows \
        | (oracle.product_peak > tol.max_magnitude)
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
            float("inf"),
        )
    if bad.any():
        i, j = np.unravel_index(np.argmax(np.where(bad, err / bound, 0.0)), err.shape)
        text = (
            f"{name} returns H[{i},{j}] = {float(h[i, j])!r}; the oracle (50-digit multi-precision, "
            f"independent of every framework) gives {float(expected[i, j])!r}. |difference| = "
            f"{err[i, j]:.3g}, {err[i, j] / bound[i, j]:.3g}x the {tol.factor:g}-ulp error bound "
            f"{bound[i, j]:.3g} for this entry."
        )
        if result.note:
            text += f" ({result.note}.)"
        gradient = oracle.gradient_float()
        if np.all(np.isfinite(gradient)) and np.allclose(np.diag(h), gradient, rtol=1e-5, atol=1e-12) \
                and not np.allclose(np.diag(expected), gradient, rtol=1e-5, atol=1e-12):
            text += " The diagonal it returns equals the gradient: a first derivative, not the second."
        return Verdict(name, Kind.WRONG_VALUE, text, float(err[bad].max()))
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


def _underflow_floors(size: np.ndarray, oracle: OracleResult, tol: Any) -> tuple[np.ndarray, np.ndarray]:
    """(flushed, rows): the nonzero entries of magnitude ``size`` held only to tiny/eps,
    and to tiny/eps**2, where intermediates underflow.

    A framework that flushes subnormals to zero (XLA on CPU does) loses every digit of
    a product that passes below the smallest normal, and the chain rule multiplies that
    loss by factors the per-op error floor does not follow: an entry below tiny/eps
    there cannot be told from 0 (measured: JAX's H of var(x**2) at x = (731, 2.2e-308)
    is 0 where the truth is 2.7e-306; of square(mean(x**2)) at 1.2e-38 in float32, 0
    where it is 5.5e-36). In the rows of the inputs behind the underflow, a framework's
    own tangents pass below tiny too and are flushed where the chain rule then
    multiplies them by up to 1/eps: JAX's forward-mode H[2, 1] of square(std(square(x)))
    at x1 = -1e-30 in float32 (x1**2 underflows; the tangent of 1 / (2 std) is 5.5e-43,
    flushed) is 2.5e-28 where the truth is 1.2e-28 (reverse mode, PyTorch and float64
    agree)."""
    nonzero = size != 0
    flushed = oracle.underflow & nonzero & (size < tol.tiny / tol.eps)
    rows = _underflow_rows(oracle) & nonzero & (size < tol.tiny / tol.eps**2)
    return flushed, rows


def _floored(bound: np.ndarray, flushed: np.ndarray, rows: np.ndarray, tol: Any) -> np.ndarray:
    """``bound`` raised to the floors ``_underflow_floors`` names."""
    bound = np.where(flushed, np.maximum(bound, tol.tiny / tol.eps), bound)
    return np.where(rows, np.maximum(bound, tol.tiny / tol.eps**2), bound)


def _underflow_rows(oracle: OracleResult) -> np.ndarray:
    """The entries where NaN or inf is the dtype's honest outcome: the rows and columns of
    the inputs behind an intermediate that underflows (``OracleResult.underflow_vars``),
    where the frameworks' formulas divide 0 by 0 and forward mode spreads the NaN along
    the row through 0 * NaN (JAX's Hessian of mean(hypot(x, x)) in float32 at
    x1 = -6.9e-22 is NaN at H[1, 0], where the truth is 0)."""
    n = oracle.hessian.shape[0]
    rows = np.zeros(n, dtype=bool)
    rows[list(oracle.underflow_vars)] = True
    return rows[:, None] | rows[None, :]


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
