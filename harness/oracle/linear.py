"""Linear and bilinear ops (``Structural``, ``Bilinear``): applied alike to values and to
every derivative slice.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from hessdiff.harness.oracle.jets import _abs_float, _Jet, _mul0, _zeros_obj, column
from hessdiff.harness.ops import OpSpec

if TYPE_CHECKING:
    from hessdiff.harness.oracle.evaluator import _Evaluator

__all__ = ["bilinear_jet", "bilinear_value", "structural_jet", "structural_value"]


def _per_slice(apply: Callable[[np.ndarray], Any], a: np.ndarray, extra: int, dtype: Any) -> np.ndarray:
    """Apply a linear map of the leading axes to every derivative slice of ``a``."""
    trailing = a.shape[a.ndim - extra:]
    slices = [np.asarray(apply(a[(...,) + k]), dtype=dtype) for k in np.ndindex(*trailing)]
    stacked = np.stack(slices, axis=-1)
    return stacked.reshape(stacked.shape[:-1] + trailing)


def _structural(apply: Callable[..., Any], args: list[_Jet], attrs: dict[str, Any], n: int) -> _Jet:
    """A linear op of one or more arrays: applied to values and derivative slices alike."""
    fn = functools.partial(apply, np, **attrs)
    v = np.asarray(fn(*(a.v for a in args)), dtype=object)
    vm = np.asarray(fn(*(a.vm for a in args)), dtype=np.float64)
    if all(a.g is None for a in args):
        return _Jet(v, None, None, vm, None, None)

    def part(name: str, extra: tuple[int, ...], dtype: Any) -> list[np.ndarray]:
        out = []
        for a in args:
            p = getattr(a, name)
            if p is None:
                p = _zeros_obj(a.v.shape + extra) if dtype is object else np.zeros(a.v.shape + extra)
            out.append(p)
        return out

    def sliced(parts: list[np.ndarray], extra: int, dtype: Any) -> np.ndarray:
        if len(parts) == 1:
            return _per_slice(fn, parts[0], extra, dtype)
        trailing = parts[0].shape[parts[0].ndim - extra:]
        slices = [np.asarray(fn(*(p[(...,) + k] for p in parts)), dtype=dtype) for k in np.ndindex(*trailing)]
        stacked = np.stack(slices, axis=-1)
        return stacked.reshape(stacked.shape[:-1] + trailing)

    return _Jet(
        v, sliced(part("g", (n,), object), 1, object), sliced(part("h", (n, n), object), 2, object), vm,
        sliced(part("gm", (n,), np.float64), 1, np.float64), sliced(part("hm", (n, n), np.float64), 2, np.float64),
    )



def _bilinear(apply: Callable[..., Any], a: _Jet, b: _Jet, n: int) -> _Jet:
    def mul(p: np.ndarray, q: np.ndarray, exact: bool = True) -> np.ndarray:
        return np.asarray(apply(np, p, q, _mul0 if exact else np.multiply),
                          dtype=object if exact else np.float64)

    a_abs, b_abs = _abs_float(a.v), _abs_float(b.v)
    v = mul(a.v, b.v)
    vm = mul(a.vm, b_abs, False) + mul(a_abs, b.vm, False)
    if a.g is None and b.g is None:
        return _Jet(v, None, None, vm, None, None)
    g_slices, h_slices, gm_slices, hm_slices = {}, {}, {}, {}
    ac, bc = column(a), column(b)
    zero_g = lambda jet, k: jet.g is None  # noqa: E731
    for k in range(n):
        terms, scales = [], []
        if not zero_g(a, k):
            terms.append(mul(a.g[..., k], b.v))
            scales.append(mul(a.gm[..., k], b_abs, False) + mul(_abs_float(a.g[..., k]), b.vm, False))
        if not zero_g(b, k):
            terms.append(mul(a.v, b.g[..., k]))
            scales.append(mul(a_abs, b.gm[..., k], False) + mul(a.vm, _abs_float(b.g[..., k]), False))
        g_slices[k] = sum(terms[1:], terms[0])
        gm_slices[k] = sum(scales[1:], scales[0])
    for k, l in itertools.product(range(n), repeat=2):
        terms, scales = [], []
        if a.h is not None:
            terms.append(mul(a.h[..., k, l], b.v))
            scales.append(mul(a.hm[..., k, l], b_abs, False) + mul(_abs_float(a.h[..., k, l]), b.vm, False))
        if b.h is not None:
            terms.append(mul(a.v, b.h[..., k, l]))
            scales.append(mul(a_abs, b.hm[..., k, l], False) + mul(a.vm, _abs_float(b.h[..., k, l]), False))
        if a.g is not None and b.g is not None:
            # h[k, l] = a_k b_l + a_l b_k, the row's factor from g and the column's from the
            # forward-mode rules' gradient (``jets.column``): the same unless they differ.
            for left, right, left_m, right_m in ((a.g[..., k], bc[..., l], a.gm[..., k], b.gm[..., l]),
                                                 (ac[..., l], b.g[..., k], a.gm[..., l], b.gm[..., k])):
                terms.append(mul(left, right))
                scales.append(mul(left_m, _abs_float(right), False) + mul(_abs_float(left), right_m, False))
        h_slices[k, l] = sum(terms[1:], terms[0])
        hm_slices[k, l] = sum(scales[1:], scales[0])
    g = np.stack([g_slices[k] for k in range(n)], axis=-1)
    gm = np.stack([gm_slices[k] for k in range(n)], axis=-1)
    h = np.stack([np.stack([h_slices[k, l] for l in range(n)], axis=-1) for k in range(n)], axis=-2)
    hm = np.stack([np.stack([hm_slices[k, l] for l in range(n)], axis=-1) for k in range(n)], axis=-2)
    return _Jet(v, g, h, vm, gm, hm)


# Seconds spent in the oracle so far in this process, counted once however calls nest
# (the judge's one-sided Hessians and per-framework error scales included): a benchmark
# tells the oracle's time from the harness's by it.


def structural_jet(ev: _Evaluator, node: int, spec: OpSpec, attrs: dict[str, Any], args: list[_Jet],
                   shape: tuple[int, ...]) -> _Jet:
    """A ``Structural`` op on jets."""
    return _structural(spec.math.apply, args, attrs, ev.n)


def bilinear_jet(ev: _Evaluator, node: int, spec: OpSpec, attrs: dict[str, Any], args: list[_Jet],
                 shape: tuple[int, ...]) -> _Jet:
    """A ``Bilinear`` op on jets."""
    return _bilinear(spec.math.apply, args[0], args[1], ev.n)


def structural_value(spec: OpSpec, attrs: dict[str, Any], args: list[np.ndarray], dtype: str) -> np.ndarray:
    return np.asarray(spec.math.apply(np, *args, **attrs), dtype=object)


def bilinear_value(spec: OpSpec, attrs: dict[str, Any], args: list[np.ndarray], dtype: str) -> np.ndarray:
    return np.asarray(spec.math.apply(np, args[0], args[1], _mul0), dtype=object)
