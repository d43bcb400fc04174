"""Judging a Hessian at and near the kinks: the values the frameworks' conventions give.

At a kink the truth is one-sided and a framework resolves it by a convention of its own;
within rounding distance of one, its rounding may put the point on either side. The judge
(``hessdiff.harness.engine``) asks ``SideValues`` whether such a value is one a convention
gives, and the conventions are evaluated (``hessdiff.harness.oracle.conventions``) only as
far as that question needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hessdiff.backends.registry import framework_of
from hessdiff.harness.findings import Kind
from hessdiff.harness.oracle import (OracleResult, OutOfDomain, all_resolved, conventions, evaluate, mixed_modes,
                                     resolutions)
from hessdiff.harness.case import Case
from hessdiff.harness.underflow import floored, underflow_floors, underflow_rows
from hessdiff.harness.verdicts import Verdict

__all__ = ["AT_KINK", "Fuzz", "SideValues"]

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
            self.pending = self._conventions(self.base.sides) if self.base.sides else []
        except OutOfDomain:  # a side leaves the domain: unjudged
            self.base, self.pending = oracle, []
        self.undefined = self.base.undefined
        self.complete = all_resolved(self.base.sides)
        self.more()

    @staticmethod
    def _conventions(sides: Any) -> list[Any]:
        """Every convention, the ones both modes apply alike first, then the ones whose
        forward and reverse rules differ (``mixed_modes``), which only a value the first
        leave unexplained pays for."""
        alike = resolutions(sides)
        return alike + mixed_modes(sides, alike)

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


class SideValues:
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
            bound = floored(tol.bound(scale, size), *underflow_floors(size, self.oracle, tol), tol)
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
        underflow = underflow_rows(self.oracle)

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
        """Entries in the range of the conventions' values.

        A framework may resolve a kink one way in its forward rule and another in its
        reverse rule (MLX's max at a tie: the JVP picks the first tied entry, the VJP
        splits), which makes its Hessian there asymmetric; the conventions include such
        pairs of rules (``mixed_modes``), so the entry itself must lie in their range. A
        symmetric part would excuse a row off by a third (2 w_R w_F^T at a three-way tie,
        1% high: its H[1, 0] is outside every convention, its symmetric part inside)."""
        with np.errstate(invalid="ignore"):
            return (h >= values.min(axis=0) - bound) & (h <= values.max(axis=0) + bound)


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

