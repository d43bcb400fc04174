"""Shape rules the catalogue's groups share: broadcasting, an axis, a reduction along one."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

Shape = tuple[int, ...]
Attrs = Mapping[str, Any]
ShapeRule = Callable[[tuple[Shape, ...], Attrs], Shape]

__all__ = ["Attrs", "Shape", "ShapeRule", "along_shape", "at_most", "attr_shape", "broadcast_shape", "norm_axis",
           "reduced_shape"]


def broadcast_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    """NumPy broadcasting of the argument shapes; raises ``ValueError`` when they clash."""
    ndim = max((len(s) for s in shapes), default=0)
    out: list[int] = []
    for axis in range(ndim):
        sizes = {s[len(s) - ndim + axis] for s in shapes if len(s) - ndim + axis >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            raise ValueError(f"shapes {list(shapes)} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def norm_axis(shape: Shape, axis: int | None, op: str) -> int | None:
    """``axis`` as a non-negative index into ``shape`` (None stays None); raises ``ValueError``
    naming ``op`` when it is out of range."""
    if axis is None:
        return None
    if not shape or not -len(shape) <= axis < len(shape):
        raise ValueError(f"{op}: axis={axis} is out of range for shape {shape}.")
    return axis % len(shape)


def reduced_shape(op: str) -> ShapeRule:
    """The shape rule of a reduction over ``axis`` (None: the whole array) with ``keepdims``."""
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        (a,) = shapes
        if not a or 0 in a:
            raise ValueError(f"{op} takes a non-empty array, got shape {a}.")
        axis = norm_axis(a, attrs["axis"], op)
        if axis is None:
            return (1,) * len(a) if attrs["keepdims"] else ()
        return tuple(1 if i == axis else s for i, s in enumerate(a)) if attrs["keepdims"] else a[:axis] + a[axis + 1:]

    return rule


def along_shape(op: str, max_size: int = 8) -> ShapeRule:
    """The shape rule of a map along a required ``axis`` (softmax, cumprod) of at most
    ``max_size`` entries."""
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        (a,) = shapes
        if not a or 0 in a:
            raise ValueError(f"{op} takes a non-empty array, got shape {a}.")
        norm_axis(a, attrs["axis"], op)
        if attrs["axis"] is None:
            raise ValueError(f"{op} needs an axis.")
        if math.prod(a) > max_size:
            raise ValueError(f"{op}: at most {max_size} entries (the oracle differentiates symbolically), got {a}.")
        return a

    return rule


def at_most(rule: ShapeRule, op: str, max_size: int = 8) -> ShapeRule:
    """``rule`` for an argument of at most ``max_size`` entries (the oracle differentiates
    whole-array ops entry by entry)."""
    def checked(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        if math.prod(shapes[0]) > max_size:
            raise ValueError(f"{op}: at most {max_size} entries (the oracle differentiates symbolically), "
                             f"got {shapes[0]}.")
        return rule(shapes, attrs)

    return checked


def attr_shape(fn: Callable[[Shape, Attrs], Shape]) -> ShapeRule:
    """A shape rule of one argument from ``fn(shape, attrs)``."""
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        return fn(shapes[0], attrs)

    return rule

