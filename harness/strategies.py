"""Hypothesis strategies for programs, points and whole test cases.

A case is a program, one point and a dtype. The point is drawn first and the program is
built knowing it, so a piecewise op can be *aimed*: a constant offset is chosen so that,
at this point, its argument lands exactly on (or a few ulps beside) a kink, a tie or a
clip bound, at an intermediate and not only at an input.

Everything is drawn so that Hypothesis shrinks towards small programs with simple
constants: the op count shrinks to one, op choices to the simplest ops, arguments to the
most recent node, constants to 0 and 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from harness.ir import Node, Program, const, op
from harness.oracle import node_values
from harness.ops import CATALOGUE, Piecewise

__all__ = ["Case", "cases", "mlp_programs", "points", "programs", "DEFAULT_OPS"]


@dataclass(frozen=True)
class Case:
    """One check: a program, a point exactly representable in ``dtype``, the dtype."""

    program: Program
    point: np.ndarray
    dtype: str

    def __repr__(self) -> str:
        return (
            f"Case(dtype={self.dtype!r}, point={[float(v) for v in self.point]},\n"
            f"{self.program.pretty()})"
        )


# Ordered simplest first: Hypothesis shrinks a sampled_from towards the front.
DEFAULT_OPS: tuple[str, ...] = (
    "relu", "square", "mul", "add", "sin", "tanh", "abs", "maximum", "sub", "exp", "cos",
    "minimum", "neg", "sigmoid", "softplus", "leaky_relu", "clip", "where", "powi", "div",
    "log", "gather", "matmul", "sum", "mean",
)

_SIMPLE = (0.0, 1.0, -1.0, 0.5, 2.0, -0.5, -2.0)


def _float(dtype: str, lo: float, hi: float) -> st.SearchStrategy[float]:
    if dtype == "float32":
        lo32, hi32 = np.float32(lo), np.float32(hi)
        lo = float(lo32 if lo32 >= lo else np.nextafter(lo32, np.float32(np.inf)))
        hi = float(hi32 if hi32 <= hi else np.nextafter(hi32, np.float32(-np.inf)))
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32)
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _coordinate(dtype: str) -> st.SearchStrategy[float]:
    tiny = np.finfo(dtype).tiny
    return st.one_of(
        _float(dtype, -3.0, 3.0),
        st.sampled_from(_SIMPLE),
        _float(dtype, -1e3, 1e3),
        st.sampled_from((float(tiny), -float(tiny), 1e-30, -1e-30)),
    )


@st.composite
def points(draw: st.DrawFn, n: int, dtype: str) -> np.ndarray:
    """A point in R^n, exactly representable in ``dtype``; sometimes with tied coordinates."""
    coords = draw(st.lists(_coordinate(dtype), min_size=n, max_size=n))
    if n > 1 and draw(st.booleans()):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        coords[j] = coords[i]
    return np.asarray(coords, dtype=dtype).astype(np.float64)


class _Builder:
    """Grows a node list, knowing every node's value at the point (for aiming)."""

    def __init__(self, n: int, x: np.ndarray, dtype: str) -> None:
        self.n = n
        self.x = x
        self.dtype = dtype
        self.nodes: list[Node] = [Node("input")]
        self.shapes: list[tuple[int, ...]] = [(n,)]
        self.values: list[np.ndarray] = [x]
        self.used: set[int] = set()

    def add(self, node: Node) -> int:
        self.nodes.append(node)
        self.used.update(node.args)
        value = node_values(self.n, self.nodes, self.x, self.dtype)[-1]
        self.values.append(value)
        self.shapes.append(np.shape(value))
        return len(self.nodes) - 1

    def constant(self, value: Any) -> int:
        return self.add(const(np.asarray(value, dtype=self.dtype).astype(np.float64)))

    def pick(self, draw: st.DrawFn, shapes: Sequence[tuple[int, ...]] | None = None) -> int:
        """An existing node (recent ones first), optionally of one of ``shapes``."""
        candidates = [
            i for i in range(len(self.nodes)) if shapes is None or self.shapes[i] in shapes
        ]
        if not candidates:
            return -1
        return candidates[len(candidates) - 1 - draw(st.integers(0, len(candidates) - 1))]

    def aimed_offset(self, draw: st.DrawFn, target: int) -> int:
        """A constant equal to ``target``'s value at one element, a few ulps off or not."""
        value = np.array(self.values[target], dtype=np.float64, ndmin=1).reshape(self.shapes[target])
        offsets = np.zeros(self.shapes[target])
        flat = offsets.reshape(-1)
        element = draw(st.integers(0, max(flat.size - 1, 0)))
        if flat.size:
            v = np.asarray(value.reshape(-1)[element], dtype=self.dtype)
            ulps = draw(st.sampled_from((0, 1, -1, 2, -2)))
            direction = np.asarray(np.inf if ulps > 0 else -np.inf, dtype=self.dtype)
            for _ in range(abs(ulps)):
                v = np.nextafter(v, direction)
            flat[element] = float(v) if np.isfinite(v) else 0.0
        return self.constant(offsets)

    def finish(self, draw: st.DrawFn) -> Program:
        """Reduce every unused node to a scalar and add them: every op feeds the output."""
        sinks = [i for i in range(1, len(self.nodes)) if i not in self.used]
        sinks = [i for i in sinks if self.nodes[i].kind != "const"] or [len(self.nodes) - 1]
        scalars = []
        for i in sinks:
            if self.shapes[i] != ():
                reduce = draw(st.sampled_from(("sum", "mean")))
                i = self.add(op(reduce, i))
            scalars.append(i)
        out = scalars[0]
        for other in scalars[1:]:
            out = self.add(op("add", out, other))
        if self.shapes[out] != ():  # only the input node: reduce it
            out = self.add(op("sum", out))
        return Program(self.n, tuple(self.nodes))


def _apply(draw: st.DrawFn, b: _Builder, name: str) -> None:
    """Append one op ``name`` with drawn arguments (and aimed offsets for kinks)."""
    spec = CATALOGUE[name]
    aim = isinstance(spec.math, Piecewise) and draw(st.booleans())
    if name == "gather":
        a = b.pick(draw, [s for s in set(b.shapes) if len(s) == 1])
        if a < 0:
            return
        m = b.shapes[a][0]
        idx = draw(
            st.one_of(
                st.just(tuple(range(m - 1, -1, -1))),
                st.permutations(range(m)).map(tuple),
                st.lists(st.integers(0, m - 1), min_size=1, max_size=m).map(tuple),
            )
        )
        b.add(op("gather", a, idx=idx))
        return
    if name == "matmul":
        a = b.pick(draw, [s for s in set(b.shapes) if len(s) == 1])
        if a < 0:
            return
        m = b.shapes[a][0]
        kind = draw(st.sampled_from(("layer", "dot", "bilinear")))
        if kind == "layer":
            h = draw(st.integers(1, 8))
            w = draw(st.lists(_float(b.dtype, -2, 2), min_size=h * m, max_size=h * m))
            c = b.constant(np.reshape(w, (h, m)))
            b.add(op("matmul", c, a))
        elif kind == "dot":
            w = draw(st.lists(_float(b.dtype, -2, 2), min_size=m, max_size=m))
            c = b.constant(w)
            b.add(op("matmul", a, c))
        else:
            other = b.pick(draw, [(m,)])
            b.add(op("matmul", a, other))
        return
    if name in ("sum", "mean"):
        a = b.pick(draw, [s for s in set(b.shapes) if s != ()])
        if a >= 0:
            b.add(op(name, a))
        return
    a = b.pick(draw)
    if spec.arity == 1:
        attrs = _attrs(draw, b, name, a, aim)
        if name == "log":  # guard the domain: log(a**2 + c), c > 0
            a = b.add(op("add", b.add(op("square", a)), b.constant(draw(_float(b.dtype, 0.1, 2.0)))))
        elif aim and name != "clip":
            a = b.add(op("sub", a, b.aimed_offset(draw, a)))
        b.add(op(name, a, **attrs))
        return
    shape_a = b.shapes[a]
    compatible = [s for s in set(b.shapes) if s == shape_a or s == () or shape_a == ()]
    if name in ("maximum", "minimum") and aim:
        if draw(st.booleans()):
            other = a  # an exact tie everywhere
        else:
            start = b.pick(draw, compatible)
            diff = np.broadcast_to(np.asarray(b.values[a]) - np.asarray(b.values[start]), np.broadcast_shapes(b.shapes[a], b.shapes[start]))
            other = b.add(op("add", start, b.constant(np.nan_to_num(diff))))
        b.add(op(name, a, other))
        return
    if draw(st.booleans()):
        other = b.constant(draw(st.lists(_float(b.dtype, -2, 2), min_size=1, max_size=1))[0])
    else:
        other = b.pick(draw, compatible)
    if name == "div":  # guard the denominator: a / (other**2 + c), c > 0
        other = b.add(op("add", b.add(op("square", other)), b.constant(draw(_float(b.dtype, 0.1, 2.0)))))
    if name == "where":
        cond = b.pick(draw, compatible)
        if aim:
            cond = b.add(op("sub", cond, b.aimed_offset(draw, cond)))
        shapes = {b.shapes[cond], b.shapes[a], b.shapes[other]}
        try:
            np.broadcast_shapes(*shapes)
        except ValueError:
            return
        b.add(op("where", cond, a, other))
        return
    b.add(op(name, a, other))


def _attrs(draw: st.DrawFn, b: _Builder, name: str, a: int, aim: bool) -> dict[str, Any]:
    if name == "powi":
        return {"p": draw(st.integers(2, 4))}
    if name == "leaky_relu":
        return {"alpha": draw(st.sampled_from((0.01, 0.1, 0.2, 0.5, 1.5)))}
    if name == "clip":
        lo = draw(_float(b.dtype, -2.0, 0.0))
        hi = lo + draw(_float(b.dtype, 0.125, 3.0))
        if aim:
            v = float(np.asarray(b.values[a], dtype=np.float64).reshape(-1)[0])
            if np.isfinite(v):
                if draw(st.booleans()):
                    lo, hi = v, max(v + 1.0, np.nextafter(v, np.inf))
                else:
                    lo, hi = v - 1.0, v
        lo, hi = (float(np.asarray(t, dtype=b.dtype)) for t in (lo, hi))
        return {"lo": lo, "hi": hi} if lo < hi else {"lo": lo, "hi": float(np.nextafter(np.asarray(lo, dtype=b.dtype), np.asarray(np.inf, dtype=b.dtype)))}
    return {}


@st.composite
def programs_at(draw: st.DrawFn, n: int, x: np.ndarray, dtype: str, ops: Sequence[str] = DEFAULT_OPS,
                max_ops: int = 6) -> Program:
    """A random program in ``n`` inputs built knowing the point ``x`` (for aiming)."""
    b = _Builder(n, x, dtype)
    for _ in range(draw(st.integers(1, max_ops))):
        _apply(draw, b, draw(st.sampled_from(tuple(ops))))
    return b.finish(draw)


@st.composite
def mlp_programs_at(draw: st.DrawFn, n: int, x: np.ndarray, dtype: str) -> Program:
    """A small MLP ``w . act(W2 act(W1 x + b1) + b2)`` with random weights."""
    b = _Builder(n, x, dtype)
    h = 0
    m = n
    for _ in range(draw(st.integers(1, 2))):
        width = draw(st.integers(1, 8))
        w = draw(st.lists(_float(dtype, -1.5, 1.5), min_size=width * m, max_size=width * m))
        bias = draw(st.lists(_float(dtype, -1.0, 1.0), min_size=width, max_size=width))
        z = b.add(op("matmul", b.constant(np.reshape(w, (width, m))), h))
        z = b.add(op("add", z, b.constant(bias)))
        act = draw(st.sampled_from(("tanh", "relu", "softplus", "sigmoid", "leaky_relu")))
        h = b.add(op(act, z, **({"alpha": 0.1} if act == "leaky_relu" else {})))
        m = width
    out = draw(st.lists(_float(dtype, -1.5, 1.5), min_size=m, max_size=m))
    y = b.add(op("matmul", h, b.constant(out)))
    if draw(st.booleans()):
        b.add(op("square", y))
    return Program(n, tuple(b.nodes))


@st.composite
def cases(draw: st.DrawFn, dtypes: Sequence[str] = ("float64", "float32"), max_n: int = 8,
          ops: Sequence[str] = DEFAULT_OPS, max_ops: int = 6, mlps: bool = True) -> Case:
    """A whole check: dtype, a point, and a program built around that point."""
    dtype = draw(st.sampled_from(tuple(dtypes)))
    n = draw(st.integers(1, max_n))
    x = draw(points(n, dtype))
    if mlps and draw(st.integers(0, 4)) == 4:
        program = draw(mlp_programs_at(n, x, dtype))
    else:
        program = draw(programs_at(n, x, dtype, ops, max_ops))
    return Case(program, x, dtype)


def programs(n: int = 3, dtype: str = "float64", **kwargs: Any) -> st.SearchStrategy[Program]:
    """Programs in ``n`` inputs, aimed at a point drawn alongside and then dropped."""
    return points(n, dtype).flatmap(lambda x: programs_at(n, x, dtype, **kwargs))


def mlp_programs(n: int = 3, dtype: str = "float64") -> st.SearchStrategy[Program]:
    return points(n, dtype).flatmap(lambda x: mlp_programs_at(n, x, dtype))
