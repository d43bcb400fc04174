"""Local jets: multi-precision numbers with their first and second partial derivatives and
running error bounds, on which whole-array ops (``Vector``, ``Selection``) are evaluated
exactly without a symbolic step; and the namespaces their expressions run with.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import mpmath
import numpy as np

from hessdiff.harness.oracle.jets import _ZERO, _abs_float, _err_abs


class _LocalJet:
    """A multi-precision number with its first and second partial derivatives with respect
    to the ``m`` entries of one op's argument: how the oracle differentiates ``Vector`` ops
    exactly without a symbolic step.

    Each part carries a running error bound (``ev``, ``eg``, ``eh``; absolute): what
    evaluating the same formula in the dtype errs by, from the argument's own error
    (seeded in ``ev`` of the entries) and from every intermediate rounded to ``eps``
    relative and to ``tiny`` absolute (a product that underflows: the Hessian of norm(x)
    at x = (0, 2.3e-275) goes through |x|**2 = 5e-550, which float64 holds as 0). So
    intermediate underflow is modelled; overflow is not (frameworks shift by the max
    before exp, and a true overflow is the judge's ``max_magnitude``).

    The bounds are kept as float64 arrays of their base-2 logarithms (-inf for 0): a
    bound's intermediates may lie far beyond float64's range when its result does not
    ((sum |t|**3)**(1/3) of entries 1e-110; |H| times 1/(4 v**1.5) at norm's |x|**2 =
    5e-220), which the logarithm holds, and NumPy adds and multiplies them an array at
    a time where multi-precision scalars went entry by entry (43% of the oracle's time
    on a generated workload, issue 17).
    """

    __slots__ = ("v", "g", "h", "ev", "eg", "eh", "_ga", "_ha")

    # The dtype's unit roundoff and smallest normal, set per evaluation (``_rounding``),
    # and their base-2 logarithms.
    eps = mpmath.mpf(2) ** -53
    tiny = mpmath.mpf(float(np.finfo(np.float64).tiny))
    log_eps = -53.0
    log_tiny = math.log2(float(np.finfo(np.float64).tiny))
    # Whether an intermediate fell below ``tiny`` since ``_rounding`` began.
    underflow = False
    peak: Any = _ZERO  # the largest |value| formed (``Vector.formula_range``)

    def __init__(self, v: Any, g: np.ndarray, h: np.ndarray, ev: float = -math.inf,
                 eg: np.ndarray | None = None, eh: np.ndarray | None = None) -> None:
        self.v, self.g, self.h = v, g, h
        self.ev = ev
        self.eg = np.full(len(g), -math.inf) if eg is None else eg
        self.eh = np.full(h.shape, -math.inf) if eh is None else eh
        self._ga: np.ndarray | None = None
        self._ha: np.ndarray | None = None

    @property
    def ga(self) -> np.ndarray:
        """log2 |g|, computed once."""
        if self._ga is None:
            self._ga = _log2_abs_array(self.g)
        return self._ga

    @property
    def ha(self) -> np.ndarray:
        if self._ha is None:
            self._ha = _log2_abs_array(self.h)
        return self._ha

    @staticmethod
    def lift(other: Any, like: _LocalJet) -> _LocalJet:
        if isinstance(other, _LocalJet):
            return other
        return _LocalJet(mpmath.mpf(other), like.g * 0, like.h * 0)

    def _rounded(self) -> _LocalJet:
        """Each part rounded once more (the operation that made it)."""
        e, t = _LocalJet.log_eps, _LocalJet.log_tiny
        if self.v != 0 and abs(self.v) < _LocalJet.tiny:
            _LocalJet.underflow = True
        size = _err_abs(self.v)
        if size > _LocalJet.peak:
            _LocalJet.peak = size
        self.ev = _log_sum(self.ev, e + _log2_abs(size), t)
        self.eg = _log_sum(self.eg, self.ga + e, t)
        self.eh = _log_sum(self.eh, self.ha + e, t)
        return self

    def chain(self, f: Any, d1: Any, d2: Any, d3: Any = 0) -> _LocalJet:
        a1, a2, a3 = _log2_abs(d1), _log2_abs(d2), _log2_abs(d3)
        ga, ev = self.ga, self.ev
        return _LocalJet(
            f, self.g * d1, self.h * d1 + np.outer(self.g, self.g) * d2,
            _log_mul(a1, ev), _log_sum(_log_mul(self.eg, a1), _log_mul(ga, a2 + ev)),
            _log_sum(_log_mul(self.eh, a1), _log_mul(_log_outer_sym(self.eg, ga), a2),
                     _log_mul(self.ha, a2 + ev), _log_mul(np.add.outer(ga, ga), a3 + ev)),
        )._rounded()

    def __add__(self, o: Any) -> _LocalJet:
        o = _LocalJet.lift(o, self)
        return _LocalJet(self.v + o.v, self.g + o.g, self.h + o.h, _log_sum(self.ev, o.ev),
                         _log_sum(self.eg, o.eg), _log_sum(self.eh, o.eh))._rounded()

    __radd__ = __add__

    def __neg__(self) -> _LocalJet:
        out = _LocalJet(-self.v, -self.g, -self.h, self.ev, self.eg, self.eh)
        out._ga, out._ha = self._ga, self._ha
        return out

    def __sub__(self, o: Any) -> _LocalJet:
        return self + (-_LocalJet.lift(o, self))

    def __rsub__(self, o: Any) -> _LocalJet:
        return _LocalJet.lift(o, self) - self

    def __mul__(self, o: Any) -> _LocalJet:
        o = _LocalJet.lift(o, self)
        av, bv = _log2_abs(self.v), _log2_abs(o.v)
        ag, bg = self.ga, o.ga
        return _LocalJet(
            self.v * o.v, self.g * o.v + o.g * self.v,
            self.h * o.v + o.h * self.v + np.outer(self.g, o.g) + np.outer(o.g, self.g),
            _log_sum(_log_mul(av, o.ev), _log_mul(bv, self.ev)),
            _log_sum(_log_mul(ag, o.ev), _log_mul(self.eg, bv), _log_mul(bg, self.ev), _log_mul(o.eg, av)),
            _log_sum(_log_mul(self.ha, o.ev), _log_mul(self.eh, bv), _log_mul(o.ha, self.ev),
                     _log_mul(o.eh, av), _log_outer_sym(self.eg, bg), _log_outer_sym(ag, o.eg)),
        )._rounded()

    __rmul__ = __mul__

    def reciprocal(self) -> _LocalJet:
        r = 1 / self.v
        return self.chain(r, -r * r, 2 * r * r * r, -6 * r * r * r * r)

    def __truediv__(self, o: Any) -> _LocalJet:
        return self * (_LocalJet.lift(o, self).reciprocal())

    def __rtruediv__(self, o: Any) -> _LocalJet:
        return _LocalJet.lift(o, self) * self.reciprocal()

    def __pow__(self, p: int) -> _LocalJet:
        if p == 2:
            return self * self
        v = self.v
        return self.chain(v**p, p * v ** (p - 1), p * (p - 1) * v ** (p - 2), p * (p - 1) * (p - 2) * v ** (p - 3))


def _log2_abs(v: Any) -> float:
    """log2 |v| of an mpf (or a number) at float64 precision, for an error bound: -inf
    for 0 and for NaN (undefined, as ``_err_abs``), inf for an infinity. Read off the
    mantissa and exponent, so no magnitude is out of range."""
    if not isinstance(v, mpmath.mpf):
        v = mpmath.mpf(v)
    _, man, exp, bc = v._mpf_
    if not man:
        return math.inf if v._mpf_ in (mpmath.libmp.finf, mpmath.libmp.fninf) else -math.inf
    shift = bc - 60 if bc > 60 else 0
    return math.log2(int(man >> shift)) + shift + exp


_LOG2_ABS = np.frompyfunc(_log2_abs, 1, 1)


def _log2_abs_array(a: np.ndarray) -> np.ndarray:
    """``_log2_abs`` of every entry, as float64."""
    return _LOG2_ABS(a).astype(np.float64) if a.size else np.zeros(a.shape)


def _log_sum(*terms: Any) -> Any:
    """log2 of the sum of the bounds whose base-2 logarithms are ``terms``."""
    out = terms[0]
    for t in terms[1:]:
        out = np.logaddexp2(out, t)
    return out


def _log_mul(a: Any, b: Any) -> Any:
    """log2 of a product of bounds, with 0 * inf = 0 (an unbounded term that feeds
    nothing; -inf + inf would be NaN)."""
    out = np.add(a, b)
    if np.isnan(out).any():
        return np.where(np.isnan(out), -math.inf, out)
    return out


def _log_outer_sym(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log2 of outer(A, B) + outer(B, A) for the bounds whose logarithms are a, b."""
    ab = _log_mul(a[:, None], b[None, :])
    return np.logaddexp2(ab, ab.T)


def _einsum_up(subscripts: str, *operands: np.ndarray) -> np.ndarray:
    """``np.einsum`` of nonnegative error magnitudes with inf * 0 = 0 (an unbounded error
    that feeds nothing) and any other product with an inf factor inf."""
    finite = [np.where(np.isinf(x), 0.0, x) for x in operands]
    out = np.einsum(subscripts, *finite)
    if not any(np.isinf(x).any() for x in operands):
        return out
    nonzero = np.einsum(subscripts, *[(x != 0).astype(np.float64) for x in operands])
    bounded = np.einsum(subscripts, *[((x != 0) & np.isfinite(x)).astype(np.float64) for x in operands])
    return np.where(nonzero > bounded, np.inf, out)


@contextlib.contextmanager
def _rounding(dtype: str) -> Iterator[None]:
    """Local jets' running error bounds in ``dtype``'s unit roundoff and smallest normal."""
    finfo = np.finfo(dtype)
    saved = _LocalJet.eps, _LocalJet.tiny, _LocalJet.log_eps, _LocalJet.log_tiny
    _LocalJet.eps, _LocalJet.tiny = mpmath.mpf(float(finfo.eps)) / 2, mpmath.mpf(float(finfo.tiny))
    _LocalJet.log_eps, _LocalJet.log_tiny = math.log2(float(finfo.eps) / 2), math.log2(float(finfo.tiny))
    _LocalJet.underflow = False
    _LocalJet.peak = _ZERO
    try:
        yield
    finally:
        _LocalJet.eps, _LocalJet.tiny, _LocalJet.log_eps, _LocalJet.log_tiny = saved


class _JetFunctions:
    """``exp``/``log``/``sqrt``/``largest`` for ``Vector`` expressions, on jets or on plain mpf."""

    @staticmethod
    def largest(entries: list[Any]) -> Any:
        """The largest entry's value, as a constant (no derivative): the shift the
        frameworks subtract before ``exp`` (``reductions._shift``)."""
        return max(e.v if isinstance(e, _LocalJet) else e for e in entries)

    @staticmethod
    def exp(a: Any) -> Any:
        if isinstance(a, _LocalJet):
            e = mpmath.exp(a.v)
            return a.chain(e, e, e, e)
        return mpmath.exp(a)

    @staticmethod
    def log(a: Any) -> Any:
        if isinstance(a, _LocalJet):
            return a.chain(mpmath.log(a.v), 1 / a.v, -1 / (a.v * a.v), 2 / (a.v * a.v * a.v))
        return mpmath.log(a)

    @staticmethod
    def sqrt(a: Any) -> Any:
        if isinstance(a, _LocalJet):
            r = mpmath.sqrt(a.v)
            return a.chain(r, 1 / (2 * r), -1 / (4 * r * a.v), 3 / (8 * r * a.v * a.v))
        return mpmath.sqrt(a)


class _Ties:
    """The choices of one evaluation of a ``Selection`` expression.

    Evaluation ``rotation`` = r takes each group of tied keys in its index order rotated
    by r and, for r >= 1, flips the sign chosen for the (r-1)-th zero. The first (r = 0)
    records every choice's switch ``(special, gap, scale)`` and ``runs``, the number of
    evaluations that cover every alternative. ``vm`` is the error scale of each entry of
    the argument, so a gap is measured against the error of the keys it separates.
    """

    def __init__(self, rotation: int, vm: np.ndarray | None, floor: float, fuzz: float) -> None:
        self.rotation = rotation
        self.vm = vm
        self.floor = floor
        self.fuzz = fuzz
        self.switches: list[tuple[int, Any, float]] = []
        self.runs = 1
        self._zeros = 0

    @staticmethod
    def value(v: Any) -> Any:
        return v.v if isinstance(v, _LocalJet) else v

    def _error(self, v: Any) -> float:
        if not isinstance(v, _LocalJet) or self.vm is None:
            return 0.0
        return float(np.dot(_abs_float(v.g), self.vm))

    def _tied(self, gap: Any, scale: float) -> bool:
        return gap == 0 or (self.fuzz > 0 and float(abs(gap)) <= self.fuzz * scale)

    def _record(self, special: int, gap: Any, scale: float) -> None:
        if self.rotation == 0:
            self.switches.append((special, gap, scale))

    def abs(self, v: Any) -> Any:
        """|v| (the sign of a zero does not matter for a magnitude)."""
        return -v if self.value(v) < 0 else v

    def sign(self, v: Any, special: int) -> int:
        """+1 or -1 as v is positive or negative; a zero's sign is this evaluation's choice."""
        val = self.value(v)
        scale = self._error(v) + self.floor
        self._record(special, val, scale)
        if self._tied(val, scale):
            zero = self._zeros
            self._zeros += 1
            if self.rotation == 0:
                self.runs = max(self.runs, self._zeros + 1)
            return -1 if zero == self.rotation - 1 else 1
        return 1 if val > 0 else -1

    def _groups(self, keys: list[Any], special: int, top_only: bool) -> list[list[int]]:
        """Indices sorted by key ascending, in groups of tied keys (each in index order,
        rotated); records the gaps (only the top one with ``top_only``)."""
        vals = [self.value(k) for k in keys]
        order = sorted(range(len(keys)), key=lambda i: (vals[i], i))
        groups: list[list[int]] = [[order[0]]] if order else []
        for p in range(1, len(order)):
            lo, hi = order[p - 1], order[p]
            gap = vals[hi] - vals[lo]
            scale = max(self._error(keys[lo]), self._error(keys[hi])) + self.floor
            if not top_only or p == len(order) - 1:
                self._record(special, gap, scale)
            if self._tied(gap, scale):
                groups[-1].append(hi)
            else:
                groups.append([hi])
        if self.rotation == 0:
            self.runs = max([self.runs] + [len(g) for g in (groups[-1:] if top_only else groups)])
        out = []
        for g in groups:
            g = sorted(g)
            r = self.rotation % len(g)
            out.append(g[r:] + g[:r])
        return out

    def argmax(self, keys: list[Any], special: int) -> int:
        """The index of the largest key; among tied largest keys, this evaluation's choice."""
        return self._groups(keys, special, top_only=True)[-1][0]

    def order(self, keys: list[Any], special: int) -> list[int]:
        """The permutation sorting the keys ascending; tied keys in this evaluation's order."""
        return [i for g in self._groups(keys, special, top_only=False) for i in g]

