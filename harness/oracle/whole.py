"""Whole-array ops: smooth maps of whole arrays (``Vector``) by their local Jacobian and
Hessian, and selections (``Selection``), once per way of making their tied choices.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mpmath
import numpy as np

from hessdiff.harness.oracle import state
from hessdiff.harness.oracle.jets import (_NAN, _abs_float, _add_outer, _add_scaled, _fabs, _Jet, _mean_obj,
                                          _merge_into, _support, _with_error, _zeros_obj, column, second_order_unit)
from hessdiff.harness.oracle.local import _einsum_up, _JetFunctions, _LocalJet, _log2_abs, _rounding, _Ties
from hessdiff.harness.oracle.result import Kink, OutOfDomain, _to_float
from hessdiff.harness.ops import OpSpec, Vector

if TYPE_CHECKING:
    from hessdiff.harness.oracle.evaluator import _Evaluator

__all__ = ["selection_jet", "vector_jet", "whole_value"]


def _vector_local(spec: OpSpec, attrs: dict[str, Any], values: list[np.ndarray],
                  ties: _Ties | None = None, errors: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """f (p,), J (p, m), K (p, m, m) of a ``Vector`` (or ``Selection``) op at the argument
    values, and the running error bounds of J and K (absolute, float64; ``_LocalJet``)
    when the entries err by ``errors`` (absolute); the m local variables are every
    argument's entries, one argument after another."""
    m = sum(v.size for v in values)
    flat = np.concatenate([np.reshape(v, -1) for v in values]) if values else np.empty(0, dtype=object)
    eye = np.empty((m, m), dtype=object)
    for i, j in itertools.product(range(m), repeat=2):
        eye[i, j] = mpmath.mpf(int(i == j))
    A = np.empty(m, dtype=object)
    for k in range(m):
        A[k] = _LocalJet(flat[k], eye[k].copy(), _zeros_obj((m, m)),
                         -math.inf if errors is None else _log2_abs(float(errors[k])))
    arrays, start = [], 0
    for v in values:
        arrays.append(A[start:start + v.size].reshape(v.shape))
        start += v.size
    if ties is None:
        out = spec.math.expr(_JetFunctions, *arrays, **attrs)
    else:
        out = spec.math.expr(_JetFunctions, arrays[0], ties, **attrs)
    out = np.asarray(out, dtype=object)
    jets = [o if isinstance(o, _LocalJet) else _LocalJet.lift(o, A[0]) for o in out.reshape(-1)]
    f = np.array([j.v for j in jets] + [None], dtype=object)[:-1]
    J = np.array([list(j.g) for j in jets], dtype=object).reshape(len(jets), m)
    K = np.array([j.h for j in jets], dtype=object).reshape(len(jets), m, m)
    with np.errstate(over="ignore", under="ignore"):  # inf beyond float64's range, 0 below it
        eJ = np.exp2(np.array([j.eg for j in jets], dtype=np.float64).reshape(len(jets), m))
        eK = np.exp2(np.array([j.eh for j in jets], dtype=np.float64).reshape(len(jets), m, m))
    return f, J, K, out.shape, eJ, eK


def _factors(entries: np.ndarray, axis: int | None, outputs: int) -> list[tuple[int, list[int]]]:
    """(output, the flat indices of the entries it multiplies) of a product reduction:
    the entries along ``axis`` go together, one output per such group (prod), or one per
    entry, the product of the group's entries up to it (cumprod, whose output has the
    argument's shape)."""
    index = np.arange(entries.size).reshape(entries.shape)
    groups = index.reshape(1, -1) if axis is None else np.moveaxis(index, axis, -1).reshape(-1, entries.shape[axis])
    if outputs == len(groups):
        return [(p, list(group)) for p, group in enumerate(groups)]
    return [(int(group[t]), list(group[:t + 1])) for group in groups for t in range(len(group))]


def _subnormal_products(Ja: np.ndarray, Ka: np.ndarray, entries: np.ndarray, axis: int | None,
                        finfo: Any) -> tuple[np.ndarray, np.ndarray]:
    """``Ja``, ``Ka`` (error scales, in units of eps) of a product reduction widened for
    its partial products' underflow (``Vector.products``).

    A partial product below ``tiny`` errs by up to ``tiny`` (flushed to zero), and a
    derivative built on it by that times the remaining factors (each counted as at least
    1, since which partial products a framework forms is its own business); a subnormal
    product divided by entries (p / x_i, PyTorch's prod backward) errs by its spacing,
    ``tiny * eps``, times the factors multiplied in after it, over them (measured:
    torch.func's H[0, 1] of prod(207, 1e-30, 1.2e-38, 4.5e-247) errs by 32 spacings over
    x0 x1, the partial product 1e-30 * 1.2e-38 * 4.5e-247 being subnormal).
    The entries along ``axis`` go together (``_factors``). Only where some partial
    product can lie below ``tiny`` and above 0 (the nonzero entries below 1 multiply to
    less than ``tiny``): elsewhere every partial product is normal or exactly 0, and the
    frameworks' rules take an exact path around an entry that is 0 (PyTorch's
    prod_safe_zeros_backward multiplies the others, dividing by none); a bound of
    ``after`` at the zeros of prod(0, 0, 0, 5)'s Hessian, exactly 0, left them unjudged.
    There the division is by the nonzero entries alone: PyTorch's H[0, 2] of
    sum(cumprod(x)) at (0, 2.7e-22, 2.2e-308) is (x1 x2) / x2 with x1 x2 below the
    smallest subnormal, 0 where the truth is 2.7e-22.
    """
    tiny, eps = float(finfo.tiny), float(finfo.eps)
    products = _factors(entries, axis, Ja.shape[0])
    flat = entries.reshape(-1)
    big = np.maximum(flat, 1.0)
    Ja, Ka = Ja.copy(), Ka.copy()
    with np.errstate(over="ignore", divide="ignore"):
        for p, factors in products:
            group = flat[factors]
            small = group[(group != 0) & (group < 1)]
            if not small.size or float(np.sum(np.log(small))) >= math.log(tiny):
                continue  # no partial product is subnormal
            after = float(np.prod(big[factors]))
            for i in factors:
                rest = [k for k in factors if k != i]
                divided = 0.0 if flat[i] == 0 else tiny * after / max(flat[i], tiny)
                Ja[p, i] += tiny * float(np.prod(big[rest])) / eps + divided
                for j in rest:
                    others = [k for k in rest if k != j]
                    divisors = [flat[k] for k in (i, j) if flat[k] != 0]
                    divided = tiny * after / max(float(np.prod(divisors)), tiny) if divisors else 0.0
                    Ka[p, i, j] += tiny * float(np.prod(big[others])) / eps + divided
    return Ja, Ka


def _divided_output(Ja: np.ndarray, Ka: np.ndarray, outputs: np.ndarray, entries: np.ndarray,
                    axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``Ja``, ``Ka`` (error scales, in units of eps) of a product reduction whose
    framework differentiates it by dividing its output by the entries
    (``Vector.divides_output``): y / x_i, differentiated again, cancels terms of size
    |y| / |x_i x_j| (to 0 on the diagonal: the truth), so each derivative errs by eps
    times those (measured: PyTorch's and MLX's reverse-over-reverse H[0, 0] of
    sum(cumprod(x)) at x = (0.083, 493, -2.5, 1e-3) in float32 is -9.8e-4, where the truth
    is 0 and x1 / x0 = 5936)."""
    Ja, Ka = Ja.copy(), Ka.copy()
    flat = entries.reshape(-1)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for p, factors in _factors(entries, axis, Ja.shape[0]):
            y = float(outputs[p])
            if y == 0:
                continue  # an entry is 0: the frameworks take another formula
            for i in factors:
                Ja[p, i] += y / flat[i]
                for j in factors:
                    Ka[p, i, j] += y / (flat[i] * flat[j])
    big = float(np.finfo(np.float64).max)
    return np.nan_to_num(Ja, nan=0.0, posinf=big), np.nan_to_num(Ka, nan=0.0, posinf=big)


def _subnormals_flushed(values: list[np.ndarray], dtype: str) -> tuple[np.ndarray, ...] | None:
    """``values`` with every entry below the dtype's smallest normal set to 0, as XLA on
    CPU reads them: the inf-norm of (-1e-323, 0) in float64 is JAX's norm at 0, outside
    norm's domain, where JAX's tie rule (amax with initial=0) gives H = 2 g g^T with
    g = (1/4, 1/4), no convention of the exact point's (a 5-minute campaign). None where
    no entry is subnormal: the domain, already checked on ``values``, need not be checked
    again (for cholesky, inv and solve that check is an exact determinant or minors)."""
    tiny = float(np.finfo(dtype).tiny)
    arrays = [np.asarray(v, dtype=object) for v in values]
    if not any(e != 0 and abs(e) < tiny for arr in arrays for e in arr.reshape(-1)):
        return None
    return tuple(np.vectorize(lambda e: 0 if e != 0 and abs(e) < tiny else e, otypes=[object])(arr)
                 if arr.size else arr for arr in arrays)


def _varies_symmetrically(arg: _Jet) -> bool:
    """Whether the matrix ``arg``'s gradient and Hessian are symmetric in its two axes
    (to 10 digits short of the working precision): it varies along symmetric matrices."""
    if arg.g is None:
        return True
    tolerance = mpmath.mpf(10) ** (10 - mpmath.mp.dps)
    for part in (arg.g, arg.h):
        swapped = np.swapaxes(part, 0, 1)
        for a, b in zip(part.reshape(-1), swapped.reshape(-1)):
            if a != b and abs(a - b) > tolerance * max(abs(a), abs(b)):
                return False
    return True


def _vector(node: int, spec: OpSpec, attrs: dict[str, Any], args: list[_Jet], n: int,
            ties: _Ties | None = None, dtype: str = "float64", framework: str | None = None) -> _Jet:
    """y = F(args) for a smooth map of whole arrays: chain rule with its Jacobian and Hessians."""
    values = [a.v for a in args]
    if spec.domain is not None and not spec.domain(tuple(values)):
        raise OutOfDomain(f"node {node} ({spec.name}) is outside its domain at {_to_float(values[0]).tolist()}")
    flushed = _subnormals_flushed(values, dtype) if spec.domain is not None else None
    if flushed is not None and not spec.domain(flushed):
        raise OutOfDomain(f"node {node} ({spec.name}) is within a subnormal of its domain's edge: a framework "
                          "that flushes subnormals to 0 (XLA) evaluates it outside its domain")
    if isinstance(spec.math, Vector) and spec.math.symmetric and not _varies_symmetrically(args[0]):
        raise OutOfDomain(f"node {node} ({spec.name}) takes a symmetric matrix, but its argument varies "
                          "off the symmetric matrices (its derivatives are not symmetric)")
    vm_in = np.concatenate([np.reshape(a.vm, -1) for a in args])
    # The argument's own error (eps * vm, per entry): frameworks compute such ops by
    # algorithms that mix the entries (LU with pivoting, a shift by the max, a mean
    # subtracted), so each entry errs by the largest entry's error (normwise); products
    # (prod, cumprod) are computed entry by entry, so theirs is entrywise.
    eps = float(np.finfo(dtype).eps) / 2
    # A ``Selection`` is evaluated with its ties' choices; a ``Vector`` has none.
    vector: Vector | None = spec.math if ties is None else None
    linear = ties is not None and spec.math.linear
    normwise = not (vector is not None and vector.products)
    delta = np.full(vm_in.shape, float(np.max(vm_in, initial=0.0))) if normwise else vm_in
    try:
        with _rounding(dtype):
            f, J, K, out_shape, eJ, eK = _vector_local(spec, attrs, values, ties, None if linear else eps * delta)
            if _LocalJet.underflow and state.UNDERFLOWS is not None:
                state.UNDERFLOWS.append(node)
            peak = _fabs(_LocalJet.peak) if vector is not None and vector.formula_range else 0.0
    except (ZeroDivisionError, ValueError, OverflowError) as exc:
        raise OutOfDomain(f"node {node} ({spec.name}) is undefined at {_to_float(values[0]).tolist()}: {exc}") from None
    Ja, Ka = _abs_float(J), _abs_float(K)
    vm_flat = _abs_float(f) + Ja @ vm_in
    vm = vm_flat.reshape(out_shape)
    # The error of the op's own derivatives, in units of eps (error ~ eps * scale), never
    # from dividing by an entry's size, so a tiny argument cannot inflate it:
    # * the running error bound of its formula evaluated in the dtype (``_LocalJet``),
    #   from the argument's error and every intermediate's rounding, underflow included;
    # * where the algorithm mixes the entries, a derivative that is exactly 0 in exact
    #   arithmetic (det is multilinear: d2 det / dA_ij**2 = 0) comes out as eps times the
    #   op's other derivatives of that order (normwise over the local Jacobian and
    #   Hessian); a product's zeros are structural (d2 (x0 x1) / dx0**2 is no sum).
    # A selection of entries (max, sort) is exact.
    Jerr, Kerr = Ja, Ka
    if not linear:
        Jerr, Kerr = Ja + eJ / eps, Ka + eK / eps
        if normwise:
            p = Ja.shape[0]
            Jerr = Jerr + Ja.reshape(p, -1).max(axis=1, initial=0.0)[:, None]
            Kerr = Kerr + Ka.reshape(p, -1).max(axis=1, initial=0.0)[:, None, None]
    # Frameworks differentiate some ops through their output (softmax' = p (delta - p),
    # logsumexp'' = diag(p) - p p^T computed as p - p*p near p = 1): every derivative
    # errs by eps times the output's scale, and second derivatives by eps times the
    # products of first derivatives they are assembled from.
    if vector is not None and vector.output_based:
        Kerr = Kerr + vm_flat[:, None, None] + Ja[:, :, None] * Ja[:, None, :]
        Jerr = Jerr + vm_flat[:, None]
    if vector is not None and vector.products:
        Jerr, Kerr = _subnormal_products(Jerr, Kerr, _abs_float(values[0]), attrs.get("axis"), np.finfo(dtype))
    if vector is not None and framework in vector.divides_output:
        Jerr, Kerr = _divided_output(Jerr, Kerr, _abs_float(f), _abs_float(values[0]), attrs.get("axis"))
    v = f.reshape(out_shape)
    if all(a.g is None for a in args):
        return _Jet(v, None, None, vm, None, None, peak)

    def stacked(part: Callable[[_Jet], np.ndarray | None], extra: tuple[int, ...], dtype: Any) -> np.ndarray:
        blocks = []
        for a in args:
            p = part(a)
            if p is None:
                p = _zeros_obj(a.v.shape + extra) if dtype is object else np.zeros(a.v.shape + extra)
            blocks.append(np.reshape(p, (a.v.size,) + extra))
        return np.concatenate(blocks).astype(dtype, copy=False)

    G, H = stacked(lambda a: a.g, (n,), object), stacked(lambda a: a.h, (n, n), object)
    gm_in, hm_in = stacked(lambda a: a.gm, (n,), np.float64), stacked(lambda a: a.hm, (n, n), np.float64)
    # Each magnitude with its own possible error (``second_order_unit``): a product of
    # two erring factors errs by the product of their errors as well.
    unit = second_order_unit(dtype, framework)
    Ga, Ha = _with_error(_abs_float(G), gm_in, unit), _with_error(_abs_float(H), hm_in, unit)
    # The second index follows the forward-mode rules' gradients (``jets.column``).
    mixed = any(a.gc is not None for a in args)
    Gc = stacked(column, (n,), object) if mixed else G
    Gca = _with_error(_abs_float(Gc), gm_in, unit) if mixed else Ga
    g, h = _vector_chain(J, K, G, H, Gc)
    # Error scales: each term of the chain rule with its own error (Jerr, Kerr) and its
    # inputs' (gm_in, hm_in).
    gm = _einsum_up("pk,kn->pn", Jerr, Ga) + _einsum_up("pk,kn->pn", Ja, gm_in)
    hm = (_einsum_up("pk,kij->pij", Jerr, Ha) + _einsum_up("pk,kij->pij", Ja, hm_in)
          + _einsum_up("pkl,ki,lj->pij", Ka + Kerr, Ga, Gca)
          + _einsum_up("pkl,ki,lj->pij", Ka, gm_in, Gca) + _einsum_up("pkl,ki,lj->pij", Ka, Ga, gm_in))
    return _Jet(v, g.reshape(out_shape + (n,)), h.reshape(out_shape + (n, n)), vm,
                gm.reshape(out_shape + (n,)), hm.reshape(out_shape + (n, n)), peak)


def _vector_chain(J: np.ndarray, K: np.ndarray, G: np.ndarray, H: np.ndarray,
                  Gc: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The chain rule of a whole-array op, exactly: g[p] = sum_k J[p, k] G[k] and
    h[p] = sum_k J[p, k] H[k] + sum_kl K[p, k, l] outer(G[k], Gc[l]), over the (p, m) local
    Jacobian J, (p, m, m) local Hessian K and the (m, n) gradients G and (m, n, n) Hessians
    H of its m argument entries, with 0 * anything = 0 (``_mul0``). ``Gc``: the gradients
    the second index follows (``jets.column``; None: G). Only the nonzero terms are
    formed: the arguments' derivatives are mostly sparse."""
    p, m = J.shape
    n = G.shape[-1]
    g, h = _zeros_obj((p, n)), _zeros_obj((p, n, n))
    g_support = [_support(G[k]) for k in range(m)]
    gc_support = g_support if Gc is None or Gc is G else [_support(Gc[k]) for k in range(m)]
    Gc = G if Gc is None else Gc
    h_support = [_support(H[k]) for k in range(m)]
    J_nonzero, K_nonzero = J.astype(bool), K.astype(bool)
    for q in range(p):
        for k in np.flatnonzero(J_nonzero[q]):
            _add_scaled(g[q], J[q, k], G[k], g_support[k])
            _add_scaled(h[q], J[q, k], H[k], h_support[k])
        for k, l in zip(*np.nonzero(K_nonzero[q])):
            _add_outer(h[q], K[q, k, l], G[k], Gc[l], g_support[k], gc_support[l])
    return g, h


def selection_jet(ev: _Evaluator, node: int, spec: OpSpec, attrs: dict[str, Any], args: list[_Jet],
                  shape: tuple[int, ...]) -> _Jet:
    """A ``Selection`` op: one ``Vector`` evaluation per way of making its tied choices.

    The first evaluation records every choice's gap (a switch: its distance from the
    kink and the special value it is) and how many alternatives the tied ones have;
    the others rotate the order of tied entries and flip the sign of one zero at a
    time, so every entry a tie could select appears at every output it could reach.
    Where the evaluations differ the entry is undefined, as at a piecewise op's kink.
    """
    floor = ev.switch_floor
    vm = np.concatenate([np.ravel(a.vm) for a in args])
    first = _Ties(0, vm, floor, ev.kink_fuzz)
    jets = [_vector(node, spec, attrs, args, ev.n, first, dtype=ev.dtype)]
    for k, gap, scale in first.switches:
        ev.note_switch(spec.name, k, 0.0 if gap == 0 else float(abs(gap)) / scale, True, float(abs(gap)))
    if first.runs == 1:
        return jets[0]
    ev.kinks.append(Kink(node, spec.name, ()))
    ev.sides[spec.name, -1] = max(ev.sides.get((spec.name, -1), 1), first.runs)  # ties: per op
    jets += [_vector(node, spec, attrs, args, ev.n, _Ties(r, vm, floor, ev.kink_fuzz), dtype=ev.dtype)
             for r in range(1, first.runs)]
    res = ev.resolution
    if res is not None and not res.mid:
        choice = res.choice((spec.name, -1), 0)
        if not isinstance(choice, tuple):
            return jets[choice % len(jets)]
        jets = [jets[r % len(jets)] for r in dict.fromkeys(choice)]  # split among these only
    out = jets[0]
    if out.g is None:
        return out
    if res is not None:  # mid: the tie's derivatives split equally among the ways to break it
        return _Jet(out.v.copy(), *(_mean_obj([getattr(j, part) for j in jets]) for part in ("g", "h")),
                    out.vm.copy(), *(np.max([getattr(j, part) for j in jets], axis=0) for part in ("gm", "hm")))
    out = _Jet(out.v.copy(), out.g.copy(), out.h.copy(), out.vm.copy(), out.gm.copy(), out.hm.copy())
    for idx in np.ndindex(*out.v.shape):
        _merge_into(out, idx, [(j.v[idx], j.g[idx], j.h[idx], j.vm[idx], j.gm[idx], j.hm[idx]) for j in jets])
    return out


def vector_jet(ev: _Evaluator, node: int, spec: OpSpec, attrs: dict[str, Any], args: list[_Jet],
               shape: tuple[int, ...]) -> _Jet:
    """A ``Vector`` op: one evaluation on local jets, chained."""
    return _vector(node, spec, attrs, args, ev.n, dtype=ev.dtype, framework=ev.framework)


def whole_value(spec: OpSpec, attrs: dict[str, Any], args: list[np.ndarray], dtype: str,
                choosing: bool = False) -> np.ndarray:
    """The value of a whole-array op (a ``Selection`` with ``choosing``: its first choices),
    NaN where it is undefined."""
    arrays = [np.asarray(a, dtype=object) for a in args]
    out_shape = tuple(spec.shape(tuple(a.shape for a in arrays), attrs))
    try:
        if spec.domain is not None and not spec.domain(tuple(arrays)):
            raise ValueError("out of domain")
        if choosing:
            out = spec.math.expr(_JetFunctions, arrays[0], _Ties(0, None, 0.0, 0.0), **attrs)
        else:
            out = spec.math.expr(_JetFunctions, *arrays, **attrs)
        return np.asarray(out, dtype=object).reshape(out_shape)
    except (ZeroDivisionError, ValueError, OverflowError, TypeError):
        out = np.empty(out_shape, dtype=object)
        out.fill(_NAN)
        return out
