"""Selections: whole-array ops that are smooth once a discrete choice is made (max, min,
sort, and the norms, whose choices are the signs of zero entries and ties of
magnitudes).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from hessdiff.harness.ops.kinds import Selection
from hessdiff.harness.ops.reductions import REDUCE_ATTRS, along_axis, reduce_axis, reduce_recipe
from hessdiff.harness.ops.shapes import Attrs, Shape, at_most, reduced_shape
from hessdiff.harness.ops.spec import AttrSpec, OpSpec, register_op

__all__ = ["NORM_ORDS"]


# Norms of every order are one op: ``ord`` (default 2, so the programs written before it
# took one are unchanged) picks sqrt(sum t**2), sum |t| (a kink at every zero entry),
# max |t| (a kink where the two largest magnitudes tie) or (sum |t|**p)**(1/p) (twice
# differentiable at a zero entry for p >= 3, where the frameworks' rules still divide by
# or take powers of |t|). Every order is a vector norm of the entries reduced over.
NORM_ORDS = (1, 2, 3, 4, "inf")


def _norm_of(sp: Any, v: list[Any], ties: Any, ord: int | str) -> Any:
    if ord == 2:
        return sp.sqrt(sum(t**2 for t in v))
    if ord == "inf":
        top = v[ties.argmax([ties.abs(t) for t in v], 1)]
        return ties.sign(top, 0) * top
    if ord == 1:
        return sum(ties.sign(t, 0) * t for t in v)
    total = sum((ties.sign(t, 0) * t if ord % 2 else t) ** ord for t in v)
    return sp.exp(sp.log(total) / ord)


def _any_nonzero(a: Any) -> bool:
    return any(v != 0 for v in a.reshape(-1))


def _norm_ord(kit: Any, aim: int | None) -> Any:
    """Any order; aimed at a zero entry, one with a kink (1) or a rule dividing by |t| (3);
    at a tie of magnitudes, the inf-norm."""
    return kit.choice(NORM_ORDS) if aim is None else kit.choice(((1, 3), ("inf",))[aim])


def _norm_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    if attrs["ord"] not in NORM_ORDS:
        raise ValueError(f"norm: ord={attrs['ord']!r}, but it must be one of {NORM_ORDS}.")
    return at_most(reduced_shape("norm"), "norm")(shapes, attrs)


register_op(OpSpec(
    "norm", 1, "reduction",
    Selection(lambda sp, A, ties, axis, keepdims, ord: reduce_axis(A, axis, keepdims,
                                                                   lambda v: _norm_of(sp, v, ties, ord))),
    attrs=REDUCE_ATTRS + (AttrSpec("ord", "ord", 2),), shape=_norm_shape,
    domain=lambda args: _any_nonzero(args[0]), recipe=functools.partial(reduce_recipe, ords=_norm_ord),
    special=lambda attrs: (0.0, 0.0), special_names=("zero entry", "tie"),
    doc="vector norm of order 1, 2 (default; Frobenius for a matrix), 3, 4 or inf "
        "(along an axis or whole, keepdims; domain: not all zero; special: a zero entry, a tie of magnitudes)",
))


# Selections: max, min and sort choose entries, so they are linear wherever the choice
# is unique, and at a tie the one-sided derivatives differ.


def _sort_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    (a,) = shapes
    if not a or 0 in a or math.prod(a) > 8:
        raise ValueError(f"sort takes a non-empty array of at most 8 entries, got shape {a}.")
    return a


def _sort_row(v: list[Any], ties: Any) -> list[Any]:
    return [v[i] for i in ties.order(v, 0)]


def _sort_recipe(kit: Any, name: str, aim: int | None) -> None:
    a = kit.array()
    if aim is not None:
        a = kit.aimed_selection(a, name, aim, -1)
    kit.add(name, a)


register_op(OpSpec(
    "max", 1, "reduction",
    Selection(lambda sp, A, ties, axis, keepdims: reduce_axis(A, axis, keepdims, lambda v: v[ties.argmax(v, 0)]),
              linear=True),
    attrs=REDUCE_ATTRS, shape=at_most(reduced_shape("max"), "max"), special=lambda attrs: (0.0,),
    special_names=("tie",), recipe=reduce_recipe, doc="largest entry (along an axis or whole, keepdims; special: a tie of the two largest)",
))
register_op(OpSpec(
    "min", 1, "reduction",
    Selection(lambda sp, A, ties, axis, keepdims: reduce_axis(A, axis, keepdims,
                                                              lambda v: v[ties.argmax([-t for t in v], 0)]),
              linear=True),
    attrs=REDUCE_ATTRS, shape=at_most(reduced_shape("min"), "min"), special=lambda attrs: (0.0,),
    special_names=("tie",), recipe=reduce_recipe, doc="smallest entry (along an axis or whole, keepdims; special: a tie of the two smallest)",
))
register_op(OpSpec(
    "sort", 1, "reduction", Selection(lambda sp, A, ties: along_axis(A, -1, lambda v: _sort_row(v, ties)), linear=True),
    shape=_sort_shape, special=lambda attrs: (0.0,), special_names=("tie",), recipe=_sort_recipe,
    doc="ascending sort along the last axis (special: a tie)",
))

