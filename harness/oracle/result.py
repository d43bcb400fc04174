"""What the oracle returns (``OracleResult``), and the errors it raises where a program is
undefined or out of its reach.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

__all__ = ["DIGITS", "Kink", "OracleResult", "OracleTimeout", "OutOfDomain"]


DIGITS = 50


class OutOfDomain(ValueError):
    """The program is undefined at this point (log of a negative, division by zero)."""


class OracleTimeout(OutOfDomain):
    """The oracle could not evaluate the program here in its time limit.

    Exact arithmetic has no overflow: exp of an integer-valued 1e300 (the dtype's edge,
    where the generator aims) is computed by repeated squaring of ever longer integers,
    and takes hours. No float format holds such a value; the point is left unjudged.
    """


ORACLE_SECONDS = 20.0


@contextlib.contextmanager
def _time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise ``OracleTimeout`` in the main thread after ``seconds`` (a no-op elsewhere:
    signals reach only the main thread)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise OracleTimeout(f"the oracle did not finish {what} within {seconds:g} s (exact arithmetic "
                            "on values far beyond the dtype's range)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Kink:
    """A piecewise op whose switch is exactly zero at the point."""

    node: int
    op: str
    element: tuple[int, ...]


@dataclass(frozen=True)
class OracleResult:
    """The oracle's verdict on a program at a point.

    Arguments:
        value: f(x), multi-precision.
        gradient: (n,) object array of mpf, NaN where undefined.
        hessian: (n, n) object array of mpf, NaN where undefined.
        hessian_scale: (n, n) float64; the sum of absolute values of every term the chain
            rule adds into each entry (a floating-point evaluation errs by about
            ``eps * hessian_scale``).
        gradient_scale: (n,) float64, the same for the gradient.
        value_scale: float, the same for the value.
        kinks: every piecewise op exactly at a kink.
        kink_distance: the smallest relative distance |switch| / scale of any piecewise
            op from its kink (``inf`` for a smooth program); the scale is the switch's
            error scale plus ``tiny / eps`` of the dtype, so a switch that underflows to
            zero counts as within rounding distance.
        kink_ops: the ops whose kink that distance belongs to.
        kink_gap: the smallest absolute |switch| of any piecewise op (``inf`` for a smooth
            program): a framework whose arithmetic keeps a narrower range than the dtype
            (MLX's float64 transcendentals flush below float32's smallest normal) rounds a
            switch that small onto its kink (``Tolerance.near_kink``).
        max_magnitude: the largest magnitude of any value or derivative carried along, so
            the judge can tell when the true result overflows the dtype.
        product_peak: the largest product of a derivative carried along (a gradient or
            Hessian entry of any node) and a value, another such derivative, or an op's
            own local derivative. The chain rule multiplies such pairs in an order the
            mathematics does not fix, and reverse mode multiplies an adjoint by the next
            factor before dividing by another (JAX's jacrev(jacrev) of
            square(std(expm1(x))) at x1 = 341 in float64 multiplies an adjoint of 3.7e296
            by a tangent of 1.9e148 before dividing by std**2): past the dtype's range, a
            NaN or inf is the dtype's honest outcome, though every true value is finite.
        dtype: the dtype whose rounding of inputs and constants was applied.
        specials: ``(op, i)`` for every op whose argument came within rounding distance
            of its ``i``-th special value (``OpSpec.special``) somewhere in the program.
        underflow: whether a node's value, or an intermediate of a whole-array op's
            formula, lies below the dtype's smallest normal (where the frameworks' own
            formulas may divide 0 by 0).
        underflow_vars: the inputs such an intermediate depends on, and those of a traced
            argument whose square underflows (``elementwise._squares_underflow``): a NaN
            made of 0/0 there reaches every entry of their rows and columns (0 * NaN).
        framework_scales: every framework with a rule scale of its own in this program,
            whose ``scale_for`` differs from ``hessian_scale``.
        flushed_products: whether a product of arguments in an op's derivative formula
            lies below the smallest normal (``rules._flushed_products``): the frameworks
            that flush subnormals lose it, and their ``scale_for`` says so.
        sides: ``(key, choices)`` for every choice a kink leaves open (``Resolution``):
            a piecewise op's ``k``-th switch at 0, key ``(op, k)`` (within the fuzz of
            one, ``(op, k, node, element)``), with 2 choices, its two sides; or a
            selection op's ties, key ``(op, -1)``, with the ways to break them.
    """

    value: Any
    gradient: np.ndarray
    hessian: np.ndarray
    hessian_scale: np.ndarray
    gradient_scale: np.ndarray
    value_scale: float
    kinks: tuple[Kink, ...]
    kink_distance: float
    kink_ops: frozenset[str]
    max_magnitude: float
    dtype: str
    specials: frozenset[tuple[str, int]] = frozenset()
    sides: tuple[tuple[tuple[Any, ...], int], ...] = ()
    framework_scales: tuple[str, ...] = ()
    kink_gap: float = float("inf")
    underflow: bool = False
    underflow_vars: tuple[int, ...] = ()
    product_peak: float = 0.0
    flushed_products: bool = False
    # Evaluates a framework's scale when first asked (``scale_for``), and keeps it.
    _rescale: Callable[[str], np.ndarray] | None = dataclasses.field(default=None, compare=False, repr=False)
    _scales: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def scale_for(self, framework: str | None) -> np.ndarray:
        """``hessian_scale`` with the rule scales of ``framework``'s own derivative formulas
        (``hessdiff.harness.ops.RuleScale``): another framework's formula never widens its bound.
        Never smaller than ``hessian_scale``, and computed (by evaluating the program's
        error scales again) only when asked: a judge asks only where the tighter
        ``hessian_scale`` fails."""
        if not framework or framework not in self.framework_scales or self._rescale is None:
            return self.hessian_scale
        if framework not in self._scales:  # a replaced (widened) hessian_scale stays in
            self._scales[framework] = np.maximum(self.hessian_scale, self._rescale(framework))
        return self._scales[framework]

    @property
    def undefined(self) -> np.ndarray:
        """Boolean (n, n): entries with no single value (a kink makes them one-sided)."""
        return np.vectorize(mpmath.isnan, otypes=[bool])(self.hessian)

    def hessian_float(self) -> np.ndarray:
        """The Hessian in float64, NaN where undefined."""
        return _to_float(self.hessian)

    def gradient_float(self) -> np.ndarray:
        return _to_float(self.gradient)


def _to_float(a: np.ndarray) -> np.ndarray:
    return np.array([float(v) for v in a.ravel()], dtype=np.float64).reshape(a.shape)

