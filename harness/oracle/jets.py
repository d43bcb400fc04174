"""Second-order jets of one node (value, gradient, Hessian and their error scales) over
NumPy object arrays of mpf, and the sparse arithmetic the chain rule adds them up with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from hessdiff.harness.oracle.result import DIGITS


_NAN = mpmath.mpf("nan")
_ZERO = mpmath.mpf(0)

# The chain rule's error scales are first order: a product of two derivatives errs by
# each one's error times the other's size, which leaves out the product of the two
# errors. That term is all there is where both derivatives are (nearly) 0 and their
# errors are not: tanh' = 1 - y*y at |a| ~ 830 is e**-1660, but 2.2e-16 from a y one ulp
# below 1 (XLA's float64 tanh in JAX 0.7.1), so square(cumsum(tanh(x)))'s H[i, j] is
# 1e-30 where the first-order bound was the smallest normal. A derivative's own error is
# at most its error scale times the judge's factor (64) times the backend's unit
# roundoff (``hessdiff.harness.tolerance``; a test keeps the two in step).
ERROR_FACTOR = 64.0
# Backends whose arithmetic in a dtype is only as accurate as a narrower one: MLX's
# float64 transcendentals are float32-accurate (benchmarks/mlx_accuracy.py).
LESS_ACCURATE = {("mlx", "float64"): "float32"}


def second_order_unit(dtype: str, framework: str | None = None) -> float:
    """How large a derivative's own error may be, in units of its error scale, for
    ``framework`` (None: a backend as accurate as ``dtype``) computing in ``dtype``."""
    accurate_as = LESS_ACCURATE.get((framework or "", dtype), dtype)
    return ERROR_FACTOR * float(np.finfo(accurate_as).eps) / 2


def _with_error(magnitude: np.ndarray, scale: np.ndarray, unit: float) -> np.ndarray:
    """|d| widened by its own possible error (``unit`` times its error scale,
    ``second_order_unit``), for the factor a product's other error multiplies."""
    return magnitude + unit * np.asarray(scale, dtype=np.float64)


@dataclass
class _Jet:
    """Value, gradient and Hessian of one node, plus their error scales (float64).

    ``g`` and ``h`` are None for a constant (all derivatives exactly zero).
    """

    v: np.ndarray
    g: np.ndarray | None
    h: np.ndarray | None
    vm: np.ndarray
    gm: np.ndarray | None
    hm: np.ndarray | None
    peak: float = 0.0  # the largest intermediate of its formula that frameworks form too (``Vector.formula_range``)
    # |g| and |h| as float64 (``_abs_float``), once the jet is an argument (``_absolutes``):
    # the chain rule's error scales read them for every element of every node it feeds.
    ga: np.ndarray | None = None
    ha: np.ndarray | None = None
    # The gradient under the forward-mode rules' convention where it differs from the
    # reverse-mode rules' (``Resolution.columns``): a Hessian's second index follows it
    # (``column``). None: the same as ``g``.
    gc: np.ndarray | None = None


def column(jet: _Jet) -> np.ndarray | None:
    """The gradient a Hessian's second index (its column, the forward-mode direction)
    takes from this jet: ``gc`` under a mixed-mode convention, else ``g``."""
    return jet.g if jet.gc is None else jet.gc


def _absolutes(jet: _Jet) -> tuple[np.ndarray | None, np.ndarray | None]:
    """|g| and |h| of a finished jet as float64, computed once."""
    if jet.ga is None and jet.g is not None:
        jet.ga, jet.ha = _abs_float(jet.g), _abs_float(jet.h)
    return jet.ga, jet.ha


def _mul0_scalar(a: Any, b: Any) -> Any:
    # Truthiness, not ``== 0``: an mpf compared with the int 0 converts it first, and this
    # runs tens of millions of times a campaign.
    if not a or not b:
        return _ZERO
    return a * b


_mul0 = np.frompyfunc(_mul0_scalar, 2, 1)


def _support(a: np.ndarray) -> np.ndarray:
    """The flat indices of the entries of an object array that are not exactly 0 (NaN
    and inf count): the only entries a product with ``_mul0`` semantics can move."""
    return np.flatnonzero(np.asarray(a, dtype=object).astype(bool))


def _add_scaled(out: np.ndarray, d: Any, v: np.ndarray, support: np.ndarray | None = None) -> None:
    """out += d * v, in place, with 0 * anything = 0 (``_mul0``), touching only the
    entries of ``v`` that are not 0.

    The chain rule's terms are sparse (an element of an elementwise op depends on one or
    two inputs, so its gradient has one or two entries and its Hessian one to four of
    n**2): summing them entry by entry over the whole array was most of the oracle's time.
    """
    if not d:
        return
    flat_out, flat_v = out.reshape(-1), v.reshape(-1)
    idx = _support(flat_v) if support is None else support
    if idx.size:
        flat_out[idx] = flat_out[idx] + flat_v[idx] * d  # array first: mpf * array reprs the array


def _add_outer(out: np.ndarray, d: Any, a: np.ndarray, b: np.ndarray,
               sa: np.ndarray, sb: np.ndarray) -> None:
    """out += d * outer(a, b), in place, over the supports ``sa`` of a and ``sb`` of b
    (``_mul0`` semantics: an entry outside them gets 0)."""
    if not d or not sa.size or not sb.size:
        return
    block = np.ix_(sa, sb)
    out[block] = out[block] + np.outer(a[sa], b[sb]) * d


def _obj(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=object)


_nonzero = np.frompyfunc(lambda v: bool(v != 0) and not mpmath.isnan(v), 1, 1)


def _depends(jet: _Jet, where: Any = Ellipsis) -> np.ndarray:
    """Which inputs the elements ``where`` of a node depend on (a nonzero derivative or
    derivative error scale), as a boolean vector over the inputs."""
    g, gm = jet.g[where], jet.gm[where]
    n = g.shape[-1]
    used = np.asarray(_nonzero(g), dtype=bool) | (np.asarray(gm) > 0)
    return used.reshape(-1, n).any(axis=0)


_FLOAT_MAX = float(np.finfo(np.float64).max)


def _abs_float(a: np.ndarray) -> np.ndarray:
    """|a| as float64, with NaN (undefined) counted as 0 magnitude and a magnitude beyond
    float64's range as its largest value (as ``_fabs``)."""
    out = np.abs(np.asarray(a, dtype=np.float64))
    # fmax drops NaN for 0; the whole oracle's hot loop goes through here, and
    # np.nan_to_num costs ten times these two ufuncs.
    return np.minimum(np.fmax(out, 0.0), _FLOAT_MAX)


def _undefined_derivatives(result: tuple[Any, ...], args: list[_Jet], idx: tuple[int, ...],
                           derivs: list[bool], n: int) -> tuple[Any, ...]:
    """``result`` with every derivative entry undefined (NaN).

    A framework whose rounding put the argument outside the domain computes a NaN value
    there, and NaN reaches every entry of its derivatives (NaN times 0 is NaN), so no
    entry has a value it could be held to; the frameworks are still compared with each
    other there.
    """
    value, grad, hess, vm, gm, hm = result
    if not any(derivs):
        return result
    if grad is None:  # only the value was computed: the derivatives' scales do not matter
        return value, _full_nan((n,)), _full_nan((n, n)), vm, np.zeros(n), np.zeros((n, n))
    return value, _full_nan(grad.shape), _full_nan(hess.shape), vm, gm, hm


def _zeros_obj(shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(_ZERO)
    return out


def _broadcast(jet: _Jet, shape: tuple[int, ...], n: int) -> _Jet:
    def b(a: np.ndarray | None, extra: tuple[int, ...]) -> np.ndarray | None:
        if a is None:
            return None
        lead = a.shape[: a.ndim - len(extra)]
        a = a.reshape((1,) * (len(shape) - len(lead)) + a.shape)
        return np.broadcast_to(a, shape + extra)

    ga, ha = _absolutes(jet)
    return _Jet(b(jet.v, ()), b(jet.g, (n,)), b(jet.h, (n, n)), b(jet.vm, ()), b(jet.gm, (n,)),
                b(jet.hm, (n, n)), ga=b(ga, (n,)), ha=b(ha, (n, n)), gc=b(jet.gc, (n,)))



def _times(a: Any, b: Any) -> Any:
    """a * b of error magnitudes with 0 * inf = 0 (an unbounded term that feeds nothing;
    NumPy's NaN there would make the bound NaN, which no comparison fails)."""
    out = np.multiply(a, b)  # under the evaluation's errstate (over, invalid: ignored)
    if not np.isnan(out).any():  # 0 * inf is the only NaN: magnitudes are never NaN
        return out
    return np.where((np.asarray(a) == 0) | (np.asarray(b) == 0), 0.0, out)


def _fabs(v: Any) -> float:
    if mpmath.isnan(v):
        return 0.0
    out = float(abs(v))
    return out if np.isfinite(out) else float(np.finfo(np.float64).max)


def _merge_into(out: _Jet, idx: tuple[int, ...], results: list[tuple[Any, ...]]) -> None:
    """Write one element; where one-sided pieces disagree, the entry is undefined (NaN)."""
    value, grad, hess, vm, gm, hm = results[0]
    for other in results[1:]:
        value = _agree(value, other[0])
        if out.g is not None:
            grad = _agree_array(_or_zero(grad, out.g.shape[-1:]), _or_zero(other[1], out.g.shape[-1:]))
            hess = _agree_array(_or_zero(hess, out.h.shape[-2:]), _or_zero(other[2], out.h.shape[-2:]))
            gm = np.maximum(_or_fzero(gm, out.gm.shape[-1:]), _or_fzero(other[4], out.gm.shape[-1:]))
            hm = np.maximum(_or_fzero(hm, out.hm.shape[-2:]), _or_fzero(other[5], out.hm.shape[-2:]))
        vm = max(vm, other[3])
    if out.g is not None and len(results) > 1:
        if mpmath.isnan(value):
            grad = _full_nan(out.g.shape[-1:])
        # A gradient entry that jumps across the kink has no derivative along the
        # directions that cross it, even where both one-sided Hessians agree (|x| has
        # H = 0 on both sides, yet none at 0). The entries that jump are the directions
        # that cross, so H[i, j] is undefined when both g[i] and g[j] jump.
        jumped = np.array([mpmath.isnan(v) for v in grad], dtype=bool)
        if jumped.any():
            hess = hess.copy()
            hess[np.outer(jumped, jumped)] = _NAN
    out.v[idx] = value
    out.vm[idx] = vm
    if out.g is not None:
        out.g[idx] = _or_zero(grad, out.g.shape[-1:])
        out.h[idx] = _or_zero(hess, out.h.shape[-2:])
        out.gm[idx] = _or_fzero(gm, out.gm.shape[-1:])
        out.hm[idx] = _or_fzero(hm, out.hm.shape[-2:])


def _mean_obj(parts: list[Any]) -> Any:
    """The mean of equally shaped multi-precision values or object arrays (None: none)."""
    if parts[0] is None:
        return None
    return sum(parts[1:], parts[0]) / len(parts)


def _average(results: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """One element's one-sided results averaged (``Resolution.mid``): derivatives and
    value the mean, error scales the largest."""
    fields = list(zip(*results))
    mean = [_mean_obj(list(f)) for f in fields[:3]]
    scales = [None if f[0] is None else np.max(np.stack([np.asarray(x, dtype=np.float64) for x in f]), axis=0)
              for f in fields[3:]]
    scales[0] = float(scales[0])
    return (*mean, *scales)


def _or_zero(a: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return _zeros_obj(shape) if a is None else a


def _or_fzero(a: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape) if a is None else a


def _full_nan(shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(_NAN)
    return out


def _close(a: Any, b: Any) -> bool:
    if mpmath.isnan(a) or mpmath.isnan(b):
        return False
    scale = max(abs(a), abs(b), mpmath.mpf(1))
    return abs(a - b) <= scale * mpmath.mpf(10) ** (-(DIGITS - 10))


def _agree(a: Any, b: Any) -> Any:
    return a if _close(a, b) else _NAN


def _agree_array(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(*a.shape):
        out[idx] = _agree(a[idx], b[idx])
    return out



def _err_abs(v: Any) -> Any:
    """|v| for an error bound (multi-precision: no range to leave), NaN (undefined) as 0."""
    return _ZERO if mpmath.isnan(v) else abs(mpmath.mpf(v))


