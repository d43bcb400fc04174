"""Aiming: moving an intermediate onto a special value, or into an argument's domain.

Each function adds nodes that make one element of an existing node land exactly on (or a
few ulps beside) a kink, a tie, a clip bound or a domain edge at the drawn point, while
its derivative with respect to the input is untouched; or maps a node into the domain an
op's argument needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hessdiff.harness.ir import op
from hessdiff.harness.ops import in_arg_domain
from hessdiff.harness.ops.domains import DOMAINS
from hessdiff.harness.program_builder import Builder, Chooser


def guard(ch: Chooser, b: Builder, a: int, domain: str | None) -> int:
    """A node equal to ``a`` mapped into ``domain`` (its ``Domain.guard``), or ``a``
    itself when every entry of it already lies there at this point (mostly: a guard
    would keep the argument off the rest of the domain, tiny values, exact 1s, and give
    it a derivative of 0 where the input is 0)."""
    if domain is None:
        return a
    values = np.asarray(b.values[a], dtype=np.float64).reshape(-1)
    if values.size and all(np.isfinite(v) and in_arg_domain(domain, float(v)) for v in values) \
            and not ch.integer(0, 3) == 3:
        return a
    guard = DOMAINS[domain].guard
    if guard[0] == "sine":
        return b.add(op("mul", b.add(op("sin", a)), b.constant(ch.real(b.dtype, guard[1], guard[2]))))
    c = ch.real(b.dtype, 0.125, 2.0) + guard[1]
    return b.add(op("add", b.add(op("square", a)), b.constant(c)))


def aim_at(ch: Chooser, b: Builder, a: int, target: float, element: int | None = None,
         inside: Callable[[float], bool] | None = None) -> int:
    """A node equal to ``a`` except at one element (``element``, flat, or a chosen one),
    where it is ``target`` (or a few ulps off, unless the builder's ``exact_aims``).

    ``(a - c1) + c2`` with ``c1 = value(a)`` there (so the difference is exactly 0, or a
    few ulps of ``value(a)`` when c1 is nudged) and ``c2 = target``: the intermediate lands
    on the special value while its derivative with respect to the input is untouched.
    ``inside`` (the argument's domain) turns a nudge that would land outside it inward: a
    domain edge (log at 0, arcsin at 1) is only worth checking from the side where the op
    is defined.
    """
    shape = b.shapes[a]
    value = np.array(b.values[a], dtype=np.float64, ndmin=1).reshape(shape)
    size = int(np.prod(shape, dtype=np.int64))
    if element is None:
        element = ch.integer(0, max(size - 1, 0))
    v = value.reshape(-1)[element] if size else 0.0
    if not np.isfinite(v):
        return a
    ulps = 0 if b.exact_aims else ch.choice((0, 0, 1, -1, 2, -2))
    with np.errstate(over="ignore"):  # beyond float32's range: not aimed (below)
        c1v = np.asarray(v, dtype=b.dtype)
    if not np.isfinite(c1v):
        return a
    direction = np.asarray(np.inf if ulps > 0 else -np.inf, dtype=b.dtype)
    for _ in range(abs(ulps)):
        c1v = np.nextafter(c1v, direction)
    c1 = np.zeros(shape)
    c2 = np.zeros(shape)
    with np.errstate(over="ignore"):
        goal = np.asarray(target, dtype=b.dtype)
    if not np.isfinite(goal):  # a special value beyond this dtype's range (float64's edges in float32)
        return a
    if inside is not None:
        c1v, goal = _inward(np.asarray(v, dtype=b.dtype), c1v, goal, max(abs(ulps), 1), inside)
    c1.reshape(-1)[element] = float(c1v) if np.isfinite(c1v) else 0.0
    c2.reshape(-1)[element] = float(goal)
    out = b.add(op("sub", a, b.constant(c1)))
    return b.add(op("add", out, b.constant(c2))) if target != 0 else out


def _inward(v: np.ndarray, c1: np.ndarray, goal: np.ndarray, ulps: int,
            inside: Callable[[float], bool]) -> tuple[np.ndarray, np.ndarray]:
    """``(c1, c2)`` for ``(v - c1) + c2`` to land inside the domain, near ``goal``.

    Kept as drawn when they already do. At an edge at 0 (log, sqrt), ``c1`` moves ``ulps``
    ulps of ``v`` so the difference has the inward sign. At an edge elsewhere (arcsin at
    1), ``c1 = v`` and ``c2`` moves inward by ``ulps`` ulps of the edge, and by at least two
    ulps of ``v``: ``v`` is the intermediate's value rounded to the dtype, so the exact
    difference ``a - v`` may be half an ulp of ``v`` either way and must not carry the
    argument back across the edge. Unchanged when neither direction lands inside.
    """
    def lands(c1v: np.ndarray, c2v: np.ndarray) -> bool:
        with np.errstate(over="ignore", invalid="ignore"):
            value = (v - c1v) + c2v
        return bool(np.isfinite(value)) and inside(float(value))

    if lands(c1, goal):
        return c1, goal
    for direction in (np.inf, -np.inf):
        toward = np.asarray(direction, dtype=v.dtype)
        if goal == 0:
            moved = v
            for _ in range(ulps):
                moved = np.nextafter(moved, toward)
            if lands(moved, goal):
                return moved, goal
        else:
            step = max(ulps * float(np.spacing(np.abs(goal))), 2 * float(np.spacing(np.abs(v))))
            with np.errstate(over="ignore"):
                moved = np.asarray(float(goal) + (step if direction > 0 else -step), dtype=v.dtype)
            if lands(v, moved):
                return v, moved
    return c1, goal


def aimed_selection(ch: Chooser, b: Builder, a: int, name: str, aim: int, axis: int | None) -> int:
    """``a`` with one entry moved onto a tie (of the two largest for max, the two smallest
    for min, of any two in a row for sort, of the two largest magnitudes for the
    inf-norm) or onto 0 (the 1- and 3-norms), along ``axis`` (None: the whole array)."""
    shape = b.shapes[a]
    values = np.asarray(b.values[a], dtype=np.float64).reshape(shape)
    size = values.size
    element = ch.integer(0, size - 1)
    if name == "norm" and aim == 0:
        return aim_at(ch, b, a, 0.0, element)
    index = np.unravel_index(element, shape)
    if axis is None:
        others = np.delete(values.reshape(-1), element)
    else:
        row = np.moveaxis(values, axis, -1)[index[:axis % len(shape)] + index[axis % len(shape) + 1:]]
        others = np.delete(row, index[axis % len(shape)])
    if others.size == 0 or not np.all(np.isfinite(others)):
        return a
    if name == "max":
        target = others.max()
    elif name == "min":
        target = others.min()
    elif name == "sort":
        target = others[ch.integer(0, others.size - 1)]
    else:  # the inf-norm: the largest magnitude, with either sign
        target = np.abs(others).max() * ch.choice((1.0, -1.0))
    return aim_at(ch, b, a, float(target), element)


def clip_aimed(ch: Chooser, b: Builder, a: int, aim: int) -> dict[str, Any]:
    """clip bounds with ``lo`` (aim 0) or ``hi`` (aim 1) on one element of ``a``."""
    values = np.asarray(b.values[a], dtype=np.float64).reshape(-1)
    v = float(values[ch.integer(0, values.size - 1)]) if values.size else 0.0
    if not np.isfinite(v):
        v = 0.0
    one = np.asarray(1.0, dtype=b.dtype)
    lo, hi = (v, v + max(1.0, abs(v) * 1e-3)) if aim == 0 else (v - max(1.0, abs(v) * 1e-3), v)
    lo, hi = (float(np.asarray(t, dtype=b.dtype)) for t in (lo, hi))
    if not lo < hi:
        hi = float(np.nextafter(np.asarray(lo, dtype=b.dtype), np.asarray(np.inf, dtype=b.dtype)) * one)
    return {"lo": lo, "hi": hi}
