"""Data movement: linear ops that gather, reshape, reorder, repeat or pad entries, applied
alike to values and derivative slices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hessdiff.harness.ops.kinds import Structural
from hessdiff.harness.ops.linalg import matrix_recipe, two_vectors_recipe
from hessdiff.harness.ops.reductions import along_recipe
from hessdiff.harness.ops.shapes import Attrs, Shape, attr_shape, broadcast_shape, norm_axis
from hessdiff.harness.ops.spec import AttrSpec, OpSpec, register_op

_AXIS_ATTR = (AttrSpec("axis", "axis"),)


def _gather_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    (a,) = shapes
    if len(a) != 1:
        raise ValueError(f"gather takes a vector, got shape {a}")
    for i in attrs["idx"]:
        if not -a[0] <= i < a[0]:
            raise ValueError(f"gather index {i} out of range for length {a[0]}.")
    return (len(attrs["idx"]),)


def _gather_recipe(kit: Any, name: str, aim: int | None) -> None:
    """A vector reversed, permuted, or its entries picked with repetition."""
    import numpy as np

    a = kit.vector(64)
    m = kit.shapes[a][0]
    kind = kit.integer(0, 2)
    if kind == 0:
        idx = tuple(range(m - 1, -1, -1))
    elif kind == 1:
        idx = tuple(int(i) for i in np.argsort([kit.integer(0, 1000) for _ in range(m)]))
    else:
        idx = tuple(kit.integer(0, m - 1) for _ in range(kit.integer(1, m)))
    kit.add("gather", a, idx=idx)


register_op(
    OpSpec(
        "gather", 1, "shape", Structural(lambda xp, a, idx: a[list(idx)]),
        attrs=(AttrSpec("idx", "int_tuple"),), shape=_gather_shape,
        doc="a[idx] for an integer index tuple (reversal, permutation, repetition)", recipe=_gather_recipe,
    )
)


def _reshape_rule(a: Shape, attrs: Attrs) -> Shape:
    shape = attrs["shape"]
    if math.prod(shape) != math.prod(a) or any(s < 1 for s in shape):
        raise ValueError(f"reshape cannot turn shape {a} into {shape}.")
    return shape


def _slice_rule(a: Shape, attrs: Attrs) -> Shape:
    if len(a) < 1 or attrs["step"] == 0:
        raise ValueError(f"slice needs an array and a nonzero step, got shape {a}, step {attrs['step']}.")
    if attrs["step"] < 0 and (attrs["start"] >= 0 or attrs["stop"] >= 0):
        raise ValueError(f"slice with a negative step takes negative bounds, got {attrs['start']}:{attrs['stop']}.")
    size = len(range(*slice(attrs["start"], attrs["stop"], attrs["step"]).indices(a[0])))
    if size == 0:
        raise ValueError(f"slice [{attrs['start']}:{attrs['stop']}:{attrs['step']}] of length {a[0]} is empty.")
    return (size,) + a[1:]


def _transpose_rule(a: Shape, attrs: Attrs) -> Shape:
    if len(a) != 2:
        raise ValueError(f"transpose takes a matrix, got shape {a}.")
    return (a[1], a[0])


def _flip_rule(a: Shape, attrs: Attrs) -> Shape:
    if norm_axis(a, attrs["axis"], "flip") is None:
        raise ValueError("flip needs an axis.")
    return a


def _roll_rule(a: Shape, attrs: Attrs) -> Shape:
    if norm_axis(a, attrs["axis"], "roll") is None:
        raise ValueError("roll needs an axis.")
    return a


def _tile_rule(a: Shape, attrs: Attrs) -> Shape:
    if len(a) != 1 or not 1 <= attrs["reps"] <= 4:
        raise ValueError(f"tile takes a vector and reps 1..4, got shape {a}, reps {attrs['reps']}.")
    return (a[0] * attrs["reps"],)


def _repeat_rule(a: Shape, attrs: Attrs) -> Shape:
    if len(a) != 1 or not 1 <= attrs["repeats"] <= 4:
        raise ValueError(f"repeat takes a vector and repeats 1..4, got shape {a}, repeats {attrs['repeats']}.")
    return (a[0] * attrs["repeats"],)


def _pad_rule(a: Shape, attrs: Attrs) -> Shape:
    if len(a) != 1 or not (0 <= attrs["before"] <= 3 and 0 <= attrs["after"] <= 3):
        raise ValueError(f"pad takes a vector and widths 0..3, got shape {a}, {attrs['before']}, {attrs['after']}.")
    return (attrs["before"] + a[0] + attrs["after"],)


def _broadcast_rule(a: Shape, attrs: Attrs) -> Shape:
    shape = attrs["shape"]
    broadcast_shape((a, shape), attrs)
    if broadcast_shape((a, shape), attrs) != shape:
        raise ValueError(f"broadcast_to cannot broadcast {a} to {shape}.")
    return shape


def _reshape_recipe(kit: Any, name: str, aim: int | None) -> None:
    import numpy as np

    a = kit.array(64)
    size = int(np.prod(kit.shapes[a]))
    rows = kit.choice([r for r in range(1, size + 1) if size % r == 0])
    shape = (size,) if kit.boolean() else (rows, size // rows)
    kit.add(name, a, shape=shape)


def _slice_recipe(kit: Any, name: str, aim: int | None) -> None:
    """Any step, the bounds counted from either end."""
    a = kit.array(64)
    m = kit.shapes[a][0]
    step = kit.choice((1, 2, 3, -1, -2))
    if step > 0:
        start = kit.integer(-m, m - 1)
        stop = kit.integer(start % m + 1, m)
        if stop < m and kit.boolean():
            stop -= m  # the same bound, counted from the end
    else:
        start = kit.integer(-m, -1)
        stop = kit.integer(-m - 1, start - 1)
    kit.add(name, a, start=start, stop=stop, step=step)


def _roll_recipe(kit: Any, name: str, aim: int | None) -> None:
    a = kit.array(64)
    kit.add(name, a, shift=kit.integer(-3, 3), axis=kit.axis(len(kit.shapes[a]), False))


def _repeat_recipe(kit: Any, name: str, aim: int | None) -> None:
    key = "reps" if name == "tile" else "repeats"
    kit.add(name, kit.vector(), **{key: kit.integer(1, 3)})


def _pad_recipe(kit: Any, name: str, aim: int | None) -> None:
    kit.add(name, kit.vector(), before=kit.integer(0, 3), after=kit.integer(0, 3))


def _broadcast_recipe(kit: Any, name: str, aim: int | None) -> None:
    a = kit.pick([s for s in set(kit.shapes) if len(s) <= 1])
    kit.add(name, a, shape=(kit.integer(1, 3),) + kit.shapes[a])


def _pad(xp: Any, a: Any, before: int, after: int) -> Any:
    out = xp.zeros(before + a.shape[0] + after, dtype=a.dtype)
    out[before: before + a.shape[0]] = a
    return out


for _name, _apply, _attrs, _rule, _recipe, _doc in (
    ("reshape", lambda xp, a, shape: a.reshape(shape), (AttrSpec("shape", "int_tuple"),), _reshape_rule,
     _reshape_recipe, "reshape to a shape of the same size"),
    ("transpose", lambda xp, a: a.T, (), _transpose_rule, matrix_recipe, "matrix transpose"),
    ("flip", lambda xp, a, axis: xp.flip(a, axis), _AXIS_ATTR, _flip_rule, along_recipe, "reverse along an axis"),
    ("slice", lambda xp, a, start, stop, step: a[start:stop:step],
     (AttrSpec("start", "int"), AttrSpec("stop", "int"), AttrSpec("step", "int")), _slice_rule, _slice_recipe,
     "a[start:stop:step] on the first axis (negative bounds and steps too)"),
    ("roll", lambda xp, a, shift, axis: xp.roll(a, shift, axis), (AttrSpec("shift", "int"), AttrSpec("axis", "axis")),
     _roll_rule, _roll_recipe, "cyclic shift along an axis"),
    ("tile", lambda xp, a, reps: xp.tile(a, reps), (AttrSpec("reps", "int"),), _tile_rule, _repeat_recipe,
     "a vector repeated whole"),
    ("repeat", lambda xp, a, repeats: xp.repeat(a, repeats), (AttrSpec("repeats", "int"),), _repeat_rule,
     _repeat_recipe, "each entry repeated"),
    ("pad", _pad, (AttrSpec("before", "int"), AttrSpec("after", "int")), _pad_rule, _pad_recipe,
     "zero padding of a vector"),
    ("broadcast_to", lambda xp, a, shape: xp.broadcast_to(a, shape).copy(), (AttrSpec("shape", "int_tuple"),),
     _broadcast_rule, _broadcast_recipe, "broadcast to a larger shape"),
):
    register_op(OpSpec(_name, 1, "shape", Structural(_apply), attrs=_attrs, shape=attr_shape(_rule), doc=_doc,
                       recipe=_recipe))


def _same_shapes(op: str, stack: bool) -> Callable[[tuple[Shape, ...], Attrs], Shape]:
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        a, b = shapes
        if len(a) != 1 or len(b) != 1 or (stack and a != b):
            raise ValueError(f"{op} takes two vectors{' of one length' if stack else ''}, got {a} and {b}.")
        return (2, a[0]) if stack else (a[0] + b[0],)

    return rule


register_op(OpSpec("concatenate", 2, "shape", Structural(lambda xp, a, b: xp.concatenate([a, b])),
                   shape=_same_shapes("concatenate", False), doc="two vectors end to end",
                   recipe=two_vectors_recipe))
register_op(OpSpec("stack", 2, "shape", Structural(lambda xp, a, b: xp.stack([a, b])),
                   shape=_same_shapes("stack", True), doc="two vectors of one length as the rows of a matrix",
                   recipe=two_vectors_recipe))
