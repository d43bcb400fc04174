"""Reductions: linear ones (sum, mean, their masked forms, cumsum) and smooth maps of a
whole array along an axis (prod, logsumexp, var, std, cumprod, softmax, log_softmax).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hessdiff.harness.ops.kinds import Structural, Vector
from hessdiff.harness.ops.shapes import Attrs, Shape, along_shape, at_most, attr_shape, norm_axis, reduced_shape
from hessdiff.harness.ops.spec import AttrSpec, OpSpec, register_op

__all__ = ["REDUCE_ATTRS", "along_axis", "along_recipe", "reduce_axis", "reduce_recipe"]


# Structural (linear) ops. sum and mean reduce the whole array unless given an axis
# (attrs with defaults, so the programs written before they took one still load, print
# and serialise unchanged); the defaults are in the signatures too, for callers that pass
# a node's attrs as they are.


def _sum_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    if attrs["axis"] is None and not attrs["keepdims"]:
        return ()  # the whole array, any shape (a scalar too), as always
    return reduced_shape("sum")(shapes, attrs)


def _sum_reduce(xp: Any, a: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    if axis is None and not keepdims:
        return xp.sum(a)
    return xp.sum(a, axis=axis, keepdims=keepdims)


def _mean_reduce(xp: Any, a: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    count = a.size if axis is None else a.shape[axis]
    return _sum_reduce(xp, a, axis, keepdims) / count


def _sum_recipe(kit: Any, name: str, aim: int | None) -> None:
    """Any array; along an axis (or whole, kept as all-ones dims) sometimes. sum and mean
    of a vector are drawn as before they took an axis, so campaigns over vectors keep
    their seeds; a masked one always gets an axis choice and a mask."""
    a = kit.pick([s for s in set(kit.shapes) if s != ()])
    attrs: dict[str, Any] = {}
    if (name.endswith("_where") or len(kit.shapes[a]) > 1) and kit.boolean():
        attrs = {"axis": kit.axis(len(kit.shapes[a]), True), "keepdims": kit.boolean()}
    if name.endswith("_where"):
        attrs["mask"] = kit.mask(kit.shapes[a], attrs.get("axis"), name == "mean_where")
    kit.add(name, a, **attrs)


def reduce_recipe(kit: Any, name: str, aim: int | None, ords: Callable[[Any, int | None], Any] | None = None) -> None:
    """An array of at most 8 entries along an axis or whole (``ords``: its norm order);
    aimed, with an entry moved onto a tie or a zero (``kit.aimed_selection``)."""
    a = kit.array()
    attrs = {"axis": kit.axis(len(kit.shapes[a]), True), "keepdims": kit.boolean()}
    if ords is not None:
        attrs["ord"] = ords(kit, aim)
    if aim is not None:
        a = kit.aimed_selection(a, name, aim, attrs["axis"])
    kit.add(name, a, **attrs)


def along_recipe(kit: Any, name: str, aim: int | None) -> None:
    """An array along a required axis (flip, which the oracle applies linearly, up to 64
    entries)."""
    a = kit.array(8 if name != "flip" else 64)
    kit.add(name, a, axis=kit.axis(len(kit.shapes[a]), False))


_OPTIONAL_REDUCE_ATTRS = (AttrSpec("axis", "axis", None), AttrSpec("keepdims", "bool", False))
register_op(OpSpec("sum", 1, "reduction", Structural(_sum_reduce), attrs=_OPTIONAL_REDUCE_ATTRS, shape=_sum_shape,
                   doc="sum of all entries, or along an axis (keepdims)", recipe=_sum_recipe))
register_op(OpSpec("mean", 1, "reduction", Structural(_mean_reduce), attrs=_OPTIONAL_REDUCE_ATTRS, shape=_sum_shape,
                   doc="mean of all entries, or along an axis (keepdims)", recipe=_sum_recipe))


def reduce_axis(A: Any, axis: int | None, keepdims: bool, fn: Callable[[list[Any]], Any]) -> Any:
    """Apply ``fn`` (a list of entries -> one expression) along ``axis`` of an object array."""
    import numpy as np

    if axis is None:
        out = np.empty((), dtype=object)
        out[()] = fn(list(A.reshape(-1)))
        return out.reshape((1,) * A.ndim) if keepdims else out
    moved = np.moveaxis(A, axis, -1)
    out = np.empty(moved.shape[:-1], dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = fn(list(moved[idx]))
    return np.expand_dims(out, axis) if keepdims else out


def along_axis(A: Any, axis: int, fn: Callable[[list[Any]], list[Any]]) -> Any:
    """Apply ``fn`` (a list -> a list of the same length) along ``axis``."""
    import numpy as np

    moved = np.moveaxis(A, axis, -1)
    out = np.empty(moved.shape, dtype=object)
    for idx in np.ndindex(*moved.shape[:-1]):
        out[idx] = np.array(fn(list(moved[idx])) + [None], dtype=object)[:-1]
    return np.moveaxis(out, -1, axis)


REDUCE_ATTRS = (AttrSpec("axis", "axis"), AttrSpec("keepdims", "bool"))
_AXIS_ATTR = (AttrSpec("axis", "axis"),)


def _vector_reduction(name: str, fn: Callable[[Any, list[Any]], Any], doc: str, output_based: bool = False,
                      products: bool = False, divides_output: tuple[str, ...] = (), formula_range: bool = False,
                      **kw: Any) -> None:
    register_op(OpSpec(
        name, 1, "reduction",
        Vector(lambda sp, A, axis, keepdims: reduce_axis(A, axis, keepdims, lambda v: fn(sp, v)), output_based,
               products, divides_output, formula_range),
        attrs=REDUCE_ATTRS, shape=at_most(reduced_shape(name), name), doc=doc, recipe=reduce_recipe, **kw,
    ))


def _mean(v: list[Any]) -> Any:
    return sum(v) / len(v)


# PyTorch's prod backward is grad * result / self where no entry is 0 (derivatives.yaml
# prod: prod_backward), and its forward-mode rule the same quotient.
_vector_reduction("prod", lambda sp, v: math.prod(v), "product (along an axis or whole, keepdims)",
                  products=True, divides_output=("torch",))
def _shift(sp: Any, v: list[Any]) -> Any:
    """The constant the frameworks subtract before ``exp`` in logsumexp, softmax and
    log_softmax: the largest entry (``ns.largest``; 0 in a namespace without it, such as
    SymPy's). Each op is the same function of x - c for any constant c, so its value and
    derivatives do not change, but the rounding the oracle models does: unshifted,
    softmax(x) at x0 = 880 forms exp(880) = 1e382, and the errors of the other entries'
    quotients (floored at the dtype's smallest normal) times it made the error scale of
    a saturated softmax inf in float32 and 1e90 in float64: every entry of such a program
    was unjudged (a 5-minute campaign)."""
    largest = getattr(sp, "largest", None)
    return largest(v) if largest is not None else 0


def _logsumexp(sp: Any, v: list[Any]) -> Any:
    c = _shift(sp, v)
    return c + sp.log(sum(sp.exp(t - c) for t in v))


_vector_reduction("logsumexp", _logsumexp,
                  "log of the sum of exp (along an axis or whole, keepdims)", output_based=True)
_vector_reduction("var", lambda sp, v: sum((t - _mean(v)) ** 2 for t in v) / len(v),
                  "population variance (ddof 0; along an axis or whole, keepdims)", formula_range=True)
_vector_reduction("std", lambda sp, v: sp.sqrt(sum((t - _mean(v)) ** 2 for t in v) / len(v)),
                  "population standard deviation (domain: entries not all equal)",
                  domain=lambda args: _spread(args[0]), formula_range=True)


def _spread(a: Any) -> bool:
    """Entries not (nearly) all equal: std is not differentiable at zero spread, and near
    it its Hessian (~1/spread) amplifies the entries' own rounding error by 1/spread**2,
    beyond what a rounding-error scale can bound (float32 std of 1 + x**2 at x ~ 0.01)."""
    flat = list(a.reshape(-1))
    return max(flat) - min(flat) > 1e-3 * max(max(abs(v) for v in flat), 1e-300)


def _cumprod(v: list[Any]) -> list[Any]:
    out, acc = [], 1
    for t in v:
        acc = acc * t
        out.append(acc)
    return out


def _softmax(sp: Any, v: list[Any]) -> list[Any]:
    c = _shift(sp, v)
    e = [sp.exp(t - c) for t in v]
    total = sum(e)
    return [u / total for u in e]


def _log_softmax(sp: Any, v: list[Any]) -> list[Any]:
    c = _shift(sp, v)
    log_total = sp.log(sum(sp.exp(u - c) for u in v))
    return [t - c - log_total for t in v]


# PyTorch's cumprod backward divides the output by the input where no entry is 0
# (derivatives.yaml cumprod: cumprod_backward), as MLX's Scan vjp for prod does
# (mlx/primitives.cpp: cumprod(...) / x).
_DIVIDES_OUTPUT = {"cumprod": ("torch", "mlx")}
for _name, _fn, _doc in (
    ("cumprod", lambda sp, v: _cumprod(v), "cumulative product along an axis"),
    ("softmax", _softmax, "softmax along an axis"),
    ("log_softmax", _log_softmax, "log-softmax along an axis"),
):
    register_op(OpSpec(
        _name, 1, "reduction",
        Vector(lambda sp, A, axis, fn=_fn: along_axis(A, axis, lambda v: fn(sp, v)), output_based=_name != "cumprod",
               products=_name == "cumprod", divides_output=_DIVIDES_OUTPUT.get(_name, ())),
        attrs=_AXIS_ATTR, shape=along_shape(_name), doc=_doc, recipe=along_recipe,
    ))


# Masked reductions: the entries where the mask (a constant, one flag per entry in
# row-major order) is 0 are left out, as ``jnp.sum(a, where=mask)`` does.


def _mask_of(xp: Any, a: Any, mask: tuple[int, ...]) -> Any:
    return xp.asarray(mask, dtype=bool).reshape(a.shape)


def _sum_where(xp: Any, a: Any, mask: tuple[int, ...], axis: int | None = None, keepdims: bool = False) -> Any:
    return _sum_reduce(xp, xp.where(_mask_of(xp, a, mask), a, 0), axis, keepdims)


def _mean_where(xp: Any, a: Any, mask: tuple[int, ...], axis: int | None = None, keepdims: bool = False) -> Any:
    return _sum_where(xp, a, mask, axis, keepdims) / _sum_reduce(xp, _mask_of(xp, a, mask).astype(int), axis,
                                                                keepdims)


def _masked_shape(op: str) -> Callable[[tuple[Shape, ...], Attrs], Shape]:
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        (a,) = shapes
        mask = attrs["mask"]
        if len(mask) != math.prod(a) or any(v not in (0, 1) for v in mask):
            raise ValueError(f"{op}: mask={list(mask)} must be one 0/1 flag per entry of shape {a}.")
        out = _sum_shape(shapes, attrs)
        if op == "mean_where":
            import numpy as np

            counts = np.sum(np.reshape(mask, a), axis=attrs["axis"]) if a else np.asarray(mask[0])
            if np.any(counts == 0):
                raise ValueError(f"mean_where: mask={list(mask)} leaves a reduced slice of shape {a} empty.")
        return out

    return rule


_MASK_ATTRS = (AttrSpec("mask", "int_tuple"),) + _OPTIONAL_REDUCE_ATTRS
register_op(OpSpec("sum_where", 1, "reduction", Structural(_sum_where), attrs=_MASK_ATTRS,
                   shape=_masked_shape("sum_where"), recipe=_sum_recipe,
                   doc="sum of the entries where a constant mask is 1 (whole or along an axis, keepdims)"))
register_op(OpSpec("mean_where", 1, "reduction", Structural(_mean_where), attrs=_MASK_ATTRS,
                   shape=_masked_shape("mean_where"), recipe=_sum_recipe,
                   doc="mean of the entries where a constant mask is 1 (whole or along an axis, keepdims)"))


def _cumsum_rule(a: Shape, attrs: Attrs) -> Shape:
    if norm_axis(a, attrs["axis"], "cumsum") is None:
        raise ValueError("cumsum needs an axis.")
    return a


register_op(OpSpec("cumsum", 1, "reduction", Structural(lambda xp, a, axis: xp.cumsum(a, axis=axis)),
                   attrs=_AXIS_ATTR, shape=attr_shape(_cumsum_rule), doc="cumulative sum along an axis",
                   recipe=along_recipe))
