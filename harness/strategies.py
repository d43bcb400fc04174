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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from hessdiff.harness.case import Case
from hessdiff.harness.ir import LITERALS, PYTHON_NUMBER_OPS, Node, Program, const, integer_array, literal_of, op
from hessdiff.harness.oracle import node_values
from hessdiff.harness.ops import CATALOGUE, in_arg_domain
from hessdiff.harness.ops.domains import DOMAINS, UNRESTRICTED_CONSTANTS

# Case is the case module's: the type cases() draws, importable with it.
__all__ = ["Case", "cases", "mlp_programs", "points", "programs", "DEFAULT_OPS"]


# Ordered simplest first: Hypothesis shrinks a sampled_from towards the front. Every
# catalogue op is in it (the original dozen first, then the catalogue's order).
_FIRST_OPS: tuple[str, ...] = (
    "relu", "square", "mul", "add", "sin", "tanh", "abs", "maximum", "sub", "exp", "cos",
    "minimum", "neg", "sigmoid", "softplus", "leaky_relu", "clip", "where", "powi", "div",
    "log", "gather", "matmul", "sum", "mean",
)
DEFAULT_OPS: tuple[str, ...] = _FIRST_OPS + tuple(n for n in CATALOGUE if n not in _FIRST_OPS)

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
        self.attrs: dict[str, Any] = {}
        # Per op, argument patterns (harness.exact.pattern_of) steering asks for.
        self.patterns: Mapping[str, Sequence[str]] = {}
        self.read_out = False  # the next node gets y + y**2 (``_read_out``)

    def add(self, node: Node) -> int:
        if node.kind != "const":  # the IR's own check, now rather than at the end
            spec = CATALOGUE[node.kind]
            spec.shape(tuple(self.shapes[a] for a in node.args), spec.check_attrs(node.attr_dict))
        self.nodes.append(node)
        self.used.update(node.args)
        value = node_values(self.n, self.nodes, self.x, self.dtype)[-1]
        self.values.append(value)
        self.shapes.append(np.shape(value))
        return len(self.nodes) - 1

    def constant(self, value: Any, literal: str | None = None, integer: bool = False) -> int:
        """A constant of the dtype (``integer``: a framework int32 array); an entry
        beyond the dtype's range is 0 (an aiming offset of a value near float64's overflow
        has no float32 counterpart)."""
        with np.errstate(over="ignore"):
            rounded = np.asarray(value, dtype=self.dtype).astype(np.float64)
        return self.add(const(np.where(np.isfinite(rounded), rounded, 0.0), literal, integer))

    def pick(self, ch: _Chooser, shapes: Sequence[tuple[int, ...]] | None = None) -> int:
        """An existing node (recent ones first), optionally of one of ``shapes``; never a
        Python-number constant (only the op it was made for may take it)."""
        candidates = [
            i for i in range(len(self.nodes))
            if (shapes is None or self.shapes[i] in shapes) and not literal_of(self.nodes[i])
            and not integer_array(self.nodes[i])
        ]
        if not candidates:
            return -1
        return candidates[len(candidates) - 1 - ch.integer(0, len(candidates) - 1)]

    def rollback(self, length: int) -> None:
        """Forget every node from ``length`` on (an op whose arguments did not fit)."""
        del self.nodes[length:], self.shapes[length:], self.values[length:]
        self.used = {a for node in self.nodes for a in node.args}
        self.read_out = False

    def pick_op(self, ch: _Chooser, shape: tuple[int, ...] | None) -> int:
        """An intermediate (an op node) of ``shape`` or scalar; the input if there is none."""
        candidates = [
            i for i in range(1, len(self.nodes)) if self.nodes[i].kind != "const"
            and (shape is None or self.shapes[i] in (shape, ()))
        ]
        if not candidates:
            return 0
        return candidates[len(candidates) - 1 - ch.integer(0, len(candidates) - 1)]

    def aimed_offset(self, ch: _Chooser, target: int) -> int:
        """A constant equal to ``target``'s value at one element, a few ulps off or not."""
        value = np.array(self.values[target], dtype=np.float64, ndmin=1).reshape(self.shapes[target])
        offsets = np.zeros(self.shapes[target])
        flat = offsets.reshape(-1)
        element = ch.integer(0, max(flat.size - 1, 0))
        if flat.size:
            v = np.asarray(value.reshape(-1)[element], dtype=self.dtype)
            ulps = ch.choice((0, 1, -1, 2, -2))
            direction = np.asarray(np.inf if ulps > 0 else -np.inf, dtype=self.dtype)
            for _ in range(abs(ulps)):
                v = np.nextafter(v, direction)
            flat[element] = float(v) if np.isfinite(v) else 0.0
        return self.constant(offsets)

    def finish(self, ch: _Chooser) -> Program:
        """Reduce every unused node to a scalar and add them: every op feeds the output."""
        sinks = [i for i in range(1, len(self.nodes)) if i not in self.used]
        sinks = [i for i in sinks if self.nodes[i].kind != "const"] or [len(self.nodes) - 1]
        scalars = []
        for i in sinks:
            # Sometimes read it out as f + f**2: a Hessian of a linear readout of an op is
            # blind to the op's first derivative (d2/dx2 of sum(f) is sum(f'')); of
            # sum(f + f**2) it is 2 J^T J + sum((1 + 2 f) f''), so a wrong gradient (a wrong
            # forward-mode rule, a wrong rule for a constant argument) shows as well, and
            # f'' still shows where f = 0 (under f**2 alone it would vanish there).
            if ch.boolean():
                i = self.add(op("add", i, self.add(op("square", i))))
            if self.shapes[i] != ():
                reduce = ch.choice(("sum", "mean"))
                i = self.add(op(reduce, i))
            scalars.append(i)
        out = scalars[0]
        for other in scalars[1:]:
            out = self.add(op("add", out, other))
        if self.shapes[out] != ():  # only the input node: reduce it
            out = self.add(op("sum", out))
        return Program(self.n, tuple(self.nodes))


class _Chooser:
    """Where generation gets its choices: Hypothesis draws, or a seeded RNG for probes.

    Every choice goes through these four methods, so the same builder serves the
    campaign (shrinkable draws) and the per-op tests (deterministic, any seed).
    """

    def __init__(self, draw: st.DrawFn | None = None, rng: Any = None) -> None:
        self.draw = draw
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        if self.draw is not None:
            return self.draw(st.integers(lo, hi))
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.integer(0, len(options) - 1)]

    def boolean(self) -> bool:
        return bool(self.integer(0, 1))

    def real(self, dtype: str, lo: float, hi: float) -> float:
        if self.draw is not None:
            return self.draw(_float(dtype, lo, hi))
        return float(np.asarray(self.rng.uniform(lo, hi), dtype=dtype))

    def reals(self, dtype: str, lo: float, hi: float, size: int) -> list[float]:
        return [self.real(dtype, lo, hi) for _ in range(size)]


# Generation strategy for the arguments of elementwise ops: where each one comes from.
_SOURCES = ("node", "input", "const")



def _guard(ch: _Chooser, b: _Builder, a: int, domain: str | None) -> int:
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


def _aim(ch: _Chooser, b: _Builder, a: int, target: float, element: int | None = None,
         inside: Callable[[float], bool] | None = None) -> int:
    """A node equal to ``a`` except at one element (``element``, flat, or a chosen one),
    where it is ``target`` (or a few ulps off).

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
    ulps = ch.choice((0, 0, 1, -1, 2, -2))
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


def _source(ch: _Chooser, b: _Builder, shapes: Sequence[tuple[int, ...]] | None = None) -> str:
    source = ch.choice(_SOURCES)
    if source == "input" and shapes is not None and b.shapes[0] not in shapes:
        source = "node"
    return source


def _elementwise_args(ch: _Chooser, b: _Builder, spec: Any, aim: int | None) -> list[int] | None:
    """Arguments of an elementwise op: each a traced input, an intermediate or a constant."""
    k = spec.arity
    sources = [_source(ch, b) for _ in range(k)]
    wanted = b.patterns.get(spec.name, ())
    # The all-traced pattern is what the generator draws unsteered (most arguments are
    # traced): steering spends its draws on the patterns with a constant, the only ones
    # that reach a rule's constant-argument path, unless all-traced is all it lacks.
    with_constant = tuple(p for p in wanted if "C" in p)
    steered = bool(wanted) and ch.boolean()  # steering: a traced/constant pattern no check has had
    if steered:
        pattern = ch.choice(with_constant or tuple(wanted))
        b.read_out = "C" in pattern  # see _read_out
        sources = [("const" if c == "C" else ch.choice(("node", "input"))) for c in pattern]
    target = aim if spec.name == "copysign" and aim is not None else (0 if spec.name == "where" else spec.special_arg)
    if aim is not None and sources[target] == "const":
        # An aimed argument is traced (a constant at a special value checks nothing),
        # unless steering asked for it constant: then the pattern wins and the aim waits.
        # Else a/c, aimed at c = 0 while c's special values were missing, was never drawn.
        if steered:
            aim = None
        else:
            sources[target] = "node"
    args: list[int | None] = [None] * k
    shape: tuple[int, ...] | None = None
    for p in range(k):  # traced ones first fix the shape
        if sources[p] == "input":
            args[p] = 0
        elif sources[p] == "node":
            args[p] = b.pick_op(ch, shape)
        if args[p] is not None and shape is None and b.shapes[args[p]] != ():
            shape = b.shapes[args[p]]
        if args[p] is not None and shape is not None and b.shapes[args[p]] not in (shape, ()):
            args[p] = b.pick_op(ch, shape)
    domains = spec.arg_domains or (None,) * k
    constant = [a is None for a in args]
    for p in range(k):  # constants before guards: a constant integer exponent widens the base's domain
        if args[p] is None:
            lo, hi = UNRESTRICTED_CONSTANTS if domains[p] is None else DOMAINS[domains[p]].constants
            literal = _literal(ch, spec.name, args)
            const_shape = shape if (literal is None and shape is not None and ch.boolean()) else ()
            size = int(np.prod(const_shape, dtype=np.int64))
            values = np.reshape(ch.reals(b.dtype, lo, hi, size), const_shape)
            if literal == "int":  # the nearest integer inside the argument's range
                values = np.asarray(float(min(max(round(float(values)), int(np.ceil(lo))), int(np.floor(hi)))))
            integer = False
            if literal != "int" and p in spec.integer_args and ch.boolean():
                # an integer-valued float (x ** 3.0, array or Python float), or an int32 array
                values = np.full(const_shape, float(ch.integer(-2, 4)))
                integer = literal is None and ch.boolean()
            args[p] = b.constant(values, literal, integer)
    domains = spec.domains_at(tuple(_one_value(b, a) for a in args), tuple(not c for c in constant))
    for p in range(k):
        if not constant[p] and domains[p] is not None:
            args[p] = _guard(ch, b, args[p], domains[p])
    if aim is not None:
        specials = spec.special(b.attrs)
        if spec.name in ("maximum", "minimum"):
            if ch.boolean():
                args[1] = args[0]  # an exact tie everywhere
            else:
                diff = np.asarray(b.values[args[0]]) - np.asarray(b.values[args[1]])
                diff = np.broadcast_to(diff, np.broadcast_shapes(b.shapes[args[0]], b.shapes[args[1]]))
                args[1] = b.add(op("add", args[1], b.constant(np.nan_to_num(diff))))
        elif spec.name == "remainder":  # a / b lands on an integer: a = b * m
            args[0] = b.add(op("mul", args[1], b.constant(float(ch.integer(-3, 3)))))
        elif spec.name != "clip":
            args[target] = _aim(ch, b, args[target], specials[aim],
                                inside=lambda value: spec.arg_in_domain(target, value, domains))
    return [int(a) for a in args]


def _one_value(b: _Builder, a: int | None) -> float:
    """Node ``a``'s value when every entry of it is one number, else NaN (which no
    domain rule reads as an integer)."""
    values = np.unique(np.asarray(b.values[a], dtype=np.float64)) if a is not None else ()
    return float(values[0]) if len(values) == 1 else float("nan")


def _literal(ch: _Chooser, name: str, args: Sequence[int | None]) -> str | None:
    """Whether a constant argument is a Python number ("float", "int") rather than a
    framework array: only for the ops every framework takes one in, beside a traced value
    (so not when every argument is a constant)."""
    if name not in PYTHON_NUMBER_OPS or sum(a is None for a in args) > 1 or not ch.boolean():
        return None
    return ch.choice(LITERALS)


def _vector(ch: _Chooser, b: _Builder, max_size: int = 8) -> int:
    """A vector node (intermediate or the input), at most ``max_size`` long."""
    a = b.pick(ch, [s for s in set(b.shapes) if len(s) == 1 and s[0] <= max_size])
    return a if a >= 0 else b.add(op("slice", 0, start=0, stop=max_size, step=1))


def _matrix(ch: _Chooser, b: _Builder, rows: int | None = None, cols: int | None = None) -> int:
    """A matrix node: an existing one, or entries of a vector gathered and reshaped."""
    if rows is None:
        a = b.pick(ch, [s for s in set(b.shapes) if len(s) == 2 and s[0] * s[1] <= 9])
        if a >= 0 and ch.boolean():
            return a
        rows, cols = ch.integer(1, 3), ch.integer(1, 3)
    cols = rows if cols is None else cols
    v = b.pick(ch, [s for s in set(b.shapes) if len(s) == 1]) if ch.boolean() else 0
    m = b.shapes[v][0]
    idx = tuple(ch.integer(0, m - 1) for _ in range(rows * cols))
    return b.add(op("reshape", b.add(op("gather", v, idx=idx)), shape=(rows, cols)))


def _array(ch: _Chooser, b: _Builder, max_size: int = 8) -> int:
    a = b.pick(ch, [s for s in set(b.shapes) if s and 0 < int(np.prod(s)) <= max_size])
    return a if a >= 0 else _vector(ch, b, max_size)


def _axis(ch: _Chooser, ndim: int, allow_none: bool) -> int | None:
    options: list[int | None] = list(range(-ndim, ndim))
    if allow_none:
        options.append(None)
    return ch.choice(options)


def _vector_or_const(ch: _Chooser, b: _Builder, length: int | None) -> int:
    """A vector argument of a two-vector op: traced input, intermediate or constant."""
    source = ch.choice(_SOURCES)
    if source == "const" and length is not None:
        return b.constant(ch.reals(b.dtype, -2.0, 2.0, length))
    if source == "input" and (length is None or length == b.n):
        return 0
    if length is None:
        return _vector(ch, b)
    a = b.pick(ch, [(length,)])
    return a if a >= 0 else b.constant(ch.reals(b.dtype, -2.0, 2.0, length))


class _Kit:
    """What an op's generation recipe (``OpSpec.recipe``) draws with: the chooser's draws
    and the builder's nodes, in the terms of the catalogue (op names and attrs), so the
    catalogue needs nothing of this module."""

    def __init__(self, ch: _Chooser, b: _Builder) -> None:
        self.ch, self.b = ch, b
        self.dtype = b.dtype
        self.n = b.n
        self.integer, self.choice, self.boolean = ch.integer, ch.choice, ch.boolean

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return self.b.shapes

    def real(self, lo: float, hi: float) -> float:
        return self.ch.real(self.b.dtype, lo, hi)

    def reals(self, lo: float, hi: float, size: int) -> list[float]:
        return self.ch.reals(self.b.dtype, lo, hi, size)

    def value(self, a: int) -> np.ndarray:
        return self.b.values[a]

    def add(self, kind: str, *args: int, **attrs: Any) -> int:
        return self.b.add(op(kind, *args, **attrs))

    def constant(self, value: Any) -> int:
        return self.b.constant(value)

    def pick(self, shapes: Sequence[tuple[int, ...]] | None = None) -> int:
        return self.b.pick(self.ch, shapes)

    def vector(self, max_size: int = 8) -> int:
        return _vector(self.ch, self.b, max_size)

    def matrix(self, rows: int | None = None, cols: int | None = None) -> int:
        return _matrix(self.ch, self.b, rows, cols)

    def array(self, max_size: int = 8) -> int:
        return _array(self.ch, self.b, max_size)

    def axis(self, ndim: int, allow_none: bool) -> int | None:
        return _axis(self.ch, ndim, allow_none)

    def vector_or_const(self, length: int | None) -> int:
        return _vector_or_const(self.ch, self.b, length)

    def mask(self, shape: tuple[int, ...], axis: int | None, nonempty: bool) -> tuple[int, ...]:
        return _mask(self.ch, shape, axis, nonempty)

    def aimed_selection(self, a: int, name: str, aim: int, axis: int | None) -> int:
        return _aimed_selection(self.ch, self.b, a, name, aim, axis)


def _apply(ch: _Chooser, b: _Builder, name: str, aim: int | None = None) -> None:
    """Append one op ``name`` with chosen arguments; ``aim`` = index of a special value.

    An op with a recipe of its own (``OpSpec.recipe``) draws by it; an elementwise op
    draws each argument from the input, an intermediate or a constant; any other op takes
    existing nodes of any shape."""
    spec = CATALOGUE[name]
    if spec.recipe is not None:
        spec.recipe(_Kit(ch, b), name, aim)
        return
    if spec.elementwise:
        b.attrs = _attrs(ch, b, name)
        args = _elementwise_args(ch, b, spec, aim if spec.special(b.attrs) else None)
        attrs = b.attrs
        if name == "clip" and aim is not None:
            attrs = _clip_aimed(ch, b, args[0], aim)
        if args is not None:
            b.add(op(name, *args, **attrs))
            _read_out(b)
        b.read_out = False
        return
    b.attrs = _attrs(ch, b, name)
    b.add(op(name, *(b.pick(ch) for _ in range(spec.arity)), **b.attrs))


def _mask(ch: _Chooser, shape: tuple[int, ...], axis: int | None, nonempty: bool) -> tuple[int, ...]:
    """One 0/1 flag per entry; with ``nonempty`` every reduced slice keeps an entry."""
    size = int(np.prod(shape, dtype=np.int64))
    flags = np.reshape([ch.integer(0, 1) for _ in range(size)], shape).astype(int)
    if nonempty:
        moved = np.moveaxis(flags, axis, -1) if axis is not None and shape else flags.reshape(1, -1)
        for idx in np.ndindex(*moved.shape[:-1]):
            if not moved[idx].any():
                moved[idx + (ch.integer(0, moved.shape[-1] - 1),)] = 1
    return tuple(int(v) for v in flags.reshape(-1))


def _aimed_selection(ch: _Chooser, b: _Builder, a: int, name: str, aim: int, axis: int | None) -> int:
    """``a`` with one entry moved onto a tie (of the two largest for max, the two smallest
    for min, of any two in a row for sort, of the two largest magnitudes for the
    inf-norm) or onto 0 (the 1- and 3-norms), along ``axis`` (None: the whole array)."""
    shape = b.shapes[a]
    values = np.asarray(b.values[a], dtype=np.float64).reshape(shape)
    size = values.size
    element = ch.integer(0, size - 1)
    if name == "norm" and aim == 0:
        return _aim(ch, b, a, 0.0, element)
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
    return _aim(ch, b, a, float(target), element)


def _clip_aimed(ch: _Chooser, b: _Builder, a: int, aim: int) -> dict[str, Any]:
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


def _attrs(ch: _Chooser, b: _Builder, name: str) -> dict[str, Any]:
    if name == "powi":
        return {"p": ch.integer(2, 4)}
    if name == "ldexp":
        return {"k": ch.integer(-8, 8)}
    if name == "leaky_relu":
        return {"alpha": ch.choice((0.01, 0.1, 0.2, 0.5, 1.5))}
    if name in ("elu", "celu"):
        return {"alpha": ch.choice((1.0, 0.5, 2.0, 1.5))}
    if name == "clip":
        lo = ch.real(b.dtype, -2.0, 0.0)
        hi = float(np.asarray(lo + ch.real(b.dtype, 0.125, 3.0), dtype=b.dtype))
        return {"lo": lo, "hi": hi}
    return {}


@st.composite
def programs_at(draw: st.DrawFn, n: int, x: np.ndarray, dtype: str, ops: Sequence[str] = DEFAULT_OPS,
                max_ops: int = 6, aims: Mapping[str, Sequence[int]] | None = None,
                patterns: Mapping[str, Sequence[str]] | None = None) -> Program:
    """A random program in ``n`` inputs built knowing the point ``x`` (for aiming).

    ``aims``: per op, the special values (indices) to aim at when it aims at all -- a
    campaign passes the ones no check has hit exactly yet; an op not in it aims at any.
    ``patterns``: per elementwise op, traced/constant argument patterns ("TC") to favour.
    """
    b = _Builder(n, x, dtype)
    b.patterns = patterns or {}
    ch = _Chooser(draw)
    for _ in range(draw(st.integers(1, max_ops))):
        name = draw(st.sampled_from(tuple(ops)))
        specials = CATALOGUE[name].special_names
        aim = None
        if specials and draw(st.booleans()):
            preferred = tuple((aims or {}).get(name, ()))
            aim = draw(st.sampled_from(preferred)) if preferred else draw(st.integers(0, len(specials) - 1))
        _apply_or_skip(ch, b, name, aim)
    return b.finish(ch)


def _read_out(b: _Builder) -> None:
    """After a node steering drew with a constant argument, ``y + y**2`` of it at once.

    A rule's constant-argument path is where a framework takes a fast path for a
    symbolic-zero tangent, and its faults are often in the first derivative alone (d/da
    of a / b as b, not 1 / b). A first derivative shows in a Hessian only through
    curvature around the node: under a linear use (sum(x / c)) both are 0. ``finish``
    reads out sinks so half the time, and a node used by a linear op not even then; a
    steered node gets it always (d2(y + y**2) = 2 J^T J + (1 + 2y) y'')."""
    if not b.read_out:
        return
    b.read_out = False
    y = len(b.nodes) - 1
    b.add(op("add", y, b.add(op("square", y))))


def _apply_or_skip(ch: _Chooser, b: _Builder, name: str, aim: int | None) -> None:
    length = len(b.nodes)
    try:
        _apply(ch, b, name, aim)
    except ValueError:  # the chosen arguments do not fit the op (shape, size): skip it
        b.rollback(length)


def probe_program(name: str, n: int, x: np.ndarray, dtype: str, seed: int, aim: int | None = None,
                  patterns: Sequence[str] = ()) -> Program:
    """One program around op ``name`` at ``x``, chosen by a seeded RNG (for per-op tests).

    With ``aim`` = i, the op's argument lands on (or a few ulps beside) its i-th special
    value at one element; ``patterns`` are the traced/constant argument patterns steering
    asks for (see ``programs_at``). Raises ``ValueError`` when the seed's choices make no
    program.
    """
    b = _Builder(n, x, dtype)
    b.patterns = {name: tuple(patterns)} if patterns else {}
    ch = _Chooser(rng=np.random.default_rng(seed))
    warmup = ch.choice((None, "sin", "tanh", "square"))
    if warmup is not None:  # an intermediate for the op's arguments to come from
        b.add(op(warmup, 0))
    if name in ("sum", "mean", "sum_where", "mean_where") and ch.boolean():
        _matrix(ch, b)  # a matrix to reduce along either axis
    _apply(ch, b, name, aim)
    if len(b.nodes) == 1:
        raise ValueError(f"no program for {name} with seed {seed}")
    return b.finish(_Chooser(rng=np.random.default_rng(seed)))


# How far from 0 a fitted MLP layer's pre-activations reach (``mlp_programs_at``).
MLP_REACH = 4.0


@st.composite
def mlp_programs_at(draw: st.DrawFn, n: int, x: np.ndarray, dtype: str) -> Program:
    """A small MLP ``w . act(W2 act(W1 x + b1) + b2)`` with random weights.

    Most of the time a layer's weights are scaled so its pre-activations stay within
    ``MLP_REACH`` (as a network trained on normalised inputs has them): at the points
    this generator draws (up to 1e3) they would otherwise saturate tanh, sigmoid and
    softplus almost always, where the Hessian is far below the rounding of the formulas
    that compute it and nothing but a NaN can be judged. A quarter of the networks keep
    the raw weights, and saturate.
    """
    b = _Builder(n, x, dtype)
    h = 0
    m = n
    fit = draw(st.integers(0, 3)) > 0
    for _ in range(draw(st.integers(1, 2))):
        width = draw(st.integers(1, 8))
        w = np.reshape(draw(st.lists(_float(dtype, -1.5, 1.5), min_size=width * m, max_size=width * m)),
                       (width, m))
        bias = draw(st.lists(_float(dtype, -1.0, 1.0), min_size=width, max_size=width))
        reach = float(np.max(np.abs(w @ np.ravel(b.values[h])), initial=0.0))
        if fit and reach > MLP_REACH:
            w = w * (MLP_REACH / reach)
        z = b.add(op("matmul", b.constant(w), h))
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
          ops: Sequence[str] = DEFAULT_OPS, max_ops: int = 6, mlps: bool = True,
          aims: Mapping[str, Sequence[int]] | None = None,
          patterns: Mapping[str, Sequence[str]] | None = None) -> Case:
    """A whole check: dtype, a point, and a program built around that point (``aims``,
    ``patterns``: see ``programs_at``)."""
    dtype = draw(st.sampled_from(tuple(dtypes)))
    n = draw(st.integers(1, max_n))
    x = draw(points(n, dtype))
    if mlps and draw(st.integers(0, 4)) == 4:
        program = draw(mlp_programs_at(n, x, dtype))
    else:
        program = draw(programs_at(n, x, dtype, ops, max_ops, aims, patterns))
    return Case(program, x, dtype)


def programs(n: int = 3, dtype: str = "float64", **kwargs: Any) -> st.SearchStrategy[Program]:
    """Programs in ``n`` inputs, aimed at a point drawn alongside and then dropped."""
    return points(n, dtype).flatmap(lambda x: programs_at(n, x, dtype, **kwargs))


def mlp_programs(n: int = 3, dtype: str = "float64") -> st.SearchStrategy[Program]:
    return points(n, dtype).flatmap(lambda x: mlp_programs_at(n, x, dtype))
