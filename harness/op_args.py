"""Drawing one op and its arguments into a program being built.

An op with a generation recipe of its own (``OpSpec.recipe``) draws through a ``Kit``;
an elementwise op draws each argument from the input, an intermediate or a constant
(steered towards traced/constant patterns, guarded into its domains, aimed at a special
value); any other op takes existing nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hessdiff.harness.aiming import aim_at, aimed_selection, clip_aimed, guard
from hessdiff.harness.ir import INTEGER_DTYPES, LITERALS, PYTHON_NUMBER_OPS, op
from hessdiff.harness.ops import CATALOGUE
from hessdiff.harness.ops.domains import DOMAINS, UNRESTRICTED_CONSTANTS
from hessdiff.harness.program_builder import Builder, Chooser

# Generation strategy for the arguments of elementwise ops: where each one comes from.
_SOURCES = ("node", "input", "const")


class Kit:
    """What an op's generation recipe (``OpSpec.recipe``) draws with: the chooser's draws
    and the builder's nodes, in the terms of the catalogue (op names and attrs), so the
    catalogue needs nothing of this module."""

    def __init__(self, ch: Chooser, b: Builder) -> None:
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
        return aimed_selection(self.ch, self.b, a, name, aim, axis)


def apply_op(ch: Chooser, b: Builder, name: str, aim: int | None = None) -> None:
    """Append one op ``name`` with chosen arguments; ``aim`` = index of a special value.

    An op with a recipe of its own (``OpSpec.recipe``) draws by it; an elementwise op
    draws each argument from the input, an intermediate or a constant; any other op takes
    existing nodes of any shape."""
    spec = CATALOGUE[name]
    if spec.recipe is not None:
        spec.recipe(Kit(ch, b), name, aim)
        return
    if spec.elementwise:
        b.attrs = _attrs(ch, b, name)
        args = _elementwise_args(ch, b, spec, aim if spec.special(b.attrs) else None)
        attrs = b.attrs
        if name == "clip" and aim is not None:
            attrs = clip_aimed(ch, b, args[0], aim)
        if args is not None:
            b.add(op(name, *args, **attrs))
            _read_out(b)
        b.read_out = False
        return
    b.attrs = _attrs(ch, b, name)
    b.add(op(name, *(b.pick(ch) for _ in range(spec.arity)), **b.attrs))


def apply_op_or_skip(ch: Chooser, b: Builder, name: str, aim: int | None) -> None:
    """``apply_op``, or nothing when the drawn arguments do not fit the op: a campaign's
    program skips such an op rather than failing the draw."""
    length = len(b.nodes)
    try:
        apply_op(ch, b, name, aim)
    except ValueError:  # the chosen arguments do not fit the op (shape, size): skip it
        b.rollback(length)


def _read_out(b: Builder) -> None:
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


def _attrs(ch: Chooser, b: Builder, name: str) -> dict[str, Any]:
    if name == "powi":
        return {"p": ch.integer(2, 4)}
    if name == "leaky_relu":
        return {"alpha": ch.choice((0.01, 0.1, 0.2, 0.5, 1.5))}
    if name in ("elu", "celu"):
        return {"alpha": ch.choice((1.0, 0.5, 2.0, 1.5))}
    if name == "clip":
        lo = ch.real(b.dtype, -2.0, 0.0)
        hi = float(np.asarray(lo + ch.real(b.dtype, 0.125, 3.0), dtype=b.dtype))
        return {"lo": lo, "hi": hi}
    return {}


def _source(ch: Chooser, b: Builder, shapes: Sequence[tuple[int, ...]] | None = None) -> str:
    source = ch.choice(_SOURCES)
    if source == "input" and shapes is not None and b.shapes[0] not in shapes:
        source = "node"
    return source


def _elementwise_args(ch: Chooser, b: Builder, spec: Any, aim: int | None) -> list[int] | None:
    """Arguments of an elementwise op: each a traced input, an intermediate or a constant."""
    k = spec.arity
    sources = ["const" if p in spec.integer_typed_args else _source(ch, b) for p in range(k)]
    wanted = b.patterns.get(spec.name, ())
    # The all-traced pattern is what the generator draws unsteered (most arguments are
    # traced): steering spends its draws on the patterns with a constant, the only ones
    # that reach a rule's constant-argument path, unless all-traced is all it lacks.
    with_constant = tuple(p for p in wanted if "C" in p)
    wanted_kind = _wanted_kind(b, spec)
    if wanted_kind is not None:  # a constant argument kind asked for: that argument constant, the others traced
        steered, pattern = True, "".join("C" if p == wanted_kind[0] else "T" for p in range(k))
    else:
        steered = bool(wanted) and ch.boolean()  # steering: a traced/constant pattern no check has had
        pattern = ch.choice(with_constant or tuple(wanted)) if steered else ""
    if steered:
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
        as_kind = wanted_kind[1] if wanted_kind is not None and wanted_kind[0] == p else None
        if args[p] is None and p in spec.integer_typed_args:
            args[p] = _typed_integer(ch, b, shape, as_kind)
        elif args[p] is None:
            lo, hi = UNRESTRICTED_CONSTANTS if domains[p] is None else DOMAINS[domains[p]].constants
            literal = _literal(ch, spec.name, args) if as_kind is None else \
                (as_kind if as_kind in LITERALS else None)
            const_shape = shape if (literal is None and shape is not None and ch.boolean()) else ()
            size = int(np.prod(const_shape, dtype=np.int64))
            values = np.reshape(ch.reals(b.dtype, lo, hi, size), const_shape)
            if literal == "int":  # the nearest integer inside the argument's range
                values = np.asarray(float(min(max(round(float(values)), int(np.ceil(lo))), int(np.floor(hi)))))
            integer: bool | str = False
            if as_kind in INTEGER_DTYPES or (as_kind is None and literal != "int" and p in spec.integer_args
                                             and ch.boolean()):
                # an integer-valued float (x ** 3.0, array or Python float), or an int32 or
                # int64 array
                values = np.full(const_shape, float(ch.integer(-2, 4)))
                if as_kind in INTEGER_DTYPES:
                    integer = as_kind
                elif literal is None and ch.boolean():
                    integer = INTEGER_DTYPES[ch.integer(0, len(INTEGER_DTYPES) - 1)]
            # a constant condition may be a framework bool mask, True where positive
            # (where(jnp.array([True, False]), a, b)); the choice is drawn only here
            boolean = as_kind == "bool" or (as_kind is None and p in spec.mask_args and ch.boolean())
            args[p] = b.constant(values, literal, integer, boolean)
    domains = spec.domains_at(tuple(_one_value(b, a) for a in args), tuple(not c for c in constant))
    for p in range(k):
        if not constant[p] and domains[p] is not None:
            args[p] = guard(ch, b, args[p], domains[p])
    if aim is not None:
        specials = spec.special(b.attrs)
        if spec.name == "arctan2" and ch.boolean():
            # a at 0 is on the branch cut only where b < 0: half the aims put b there,
            # -(b**2 + c) with c drawn as a "pos" guard draws it
            lift = b.constant(ch.real(b.dtype, *DOMAINS["pos"].constants))
            args[1] = b.add(op("neg", b.add(op("add", b.add(op("square", args[1])), lift))))
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
            args[target] = aim_at(ch, b, args[target], specials[aim],
                                inside=lambda value: spec.arg_in_domain(target, value, domains))
    return [int(a) for a in args]


# The integers an ``integer_typed_args`` argument is drawn from: ldexp's shift, a few
# binades either way, keeps a * 2**k within the dtype's range at ordinary a.
_TYPED_INTEGERS = (-8, 8)


def _typed_integer(ch: Chooser, b: Builder, shape: tuple[int, ...] | None, kind: str | None) -> int:
    """A constant integer as the frameworks take it where they take no float (ldexp's
    shift): a Python int, or a framework int32 or int64 array (a scalar, or one integer
    per entry of ``shape``); ``kind`` chooses which, or the draw does."""
    kind = kind or ch.choice(("int", *INTEGER_DTYPES))
    if kind == "int":
        return b.constant(float(ch.integer(*_TYPED_INTEGERS)), "int")
    const_shape = shape if shape is not None and ch.boolean() else ()
    size = int(np.prod(const_shape, dtype=np.int64))
    values = np.reshape([float(ch.integer(*_TYPED_INTEGERS)) for _ in range(size)], const_shape)
    return b.constant(values, None, kind)


def _wanted_kind(b: Builder, spec: Any) -> tuple[int, str] | None:
    """(position, kind) of the constant argument kind ``b.kind`` asks op ``spec`` for, or
    None (no kind asked, or one this op cannot take there)."""
    if b.kind is None:
        return None
    from hessdiff.harness.exact import argument_kinds

    if b.kind not in argument_kinds(spec.name):
        return None
    position, kind = b.kind.split(":")
    return int(position), kind


def _one_value(b: Builder, a: int | None) -> float:
    """Node ``a``'s value when every entry of it is one number, else NaN (which no
    domain rule reads as an integer)."""
    values = np.unique(np.asarray(b.values[a], dtype=np.float64)) if a is not None else ()
    return float(values[0]) if len(values) == 1 else float("nan")


def _literal(ch: Chooser, name: str, args: Sequence[int | None]) -> str | None:
    """Whether a constant argument is a Python number ("float", "int") rather than a
    framework array: only for the ops every framework takes one in, beside a traced value
    (so not when every argument is a constant)."""
    if name not in PYTHON_NUMBER_OPS or sum(a is None for a in args) > 1 or not ch.boolean():
        return None
    return ch.choice(LITERALS)


def _vector(ch: Chooser, b: Builder, max_size: int = 8) -> int:
    """A vector node (intermediate or the input), at most ``max_size`` long."""
    a = b.pick(ch, [s for s in set(b.shapes) if len(s) == 1 and s[0] <= max_size])
    return a if a >= 0 else b.add(op("slice", 0, start=0, stop=max_size, step=1))


def _matrix(ch: Chooser, b: Builder, rows: int | None = None, cols: int | None = None) -> int:
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


def _array(ch: Chooser, b: Builder, max_size: int = 8) -> int:
    a = b.pick(ch, [s for s in set(b.shapes) if s and 0 < int(np.prod(s)) <= max_size])
    return a if a >= 0 else _vector(ch, b, max_size)


def _axis(ch: Chooser, ndim: int, allow_none: bool) -> int | None:
    options: list[int | None] = list(range(-ndim, ndim))
    if allow_none:
        options.append(None)
    return ch.choice(options)


def _vector_or_const(ch: Chooser, b: Builder, length: int | None) -> int:
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


def _mask(ch: Chooser, shape: tuple[int, ...], axis: int | None, nonempty: bool) -> tuple[int, ...]:
    """One 0/1 flag per entry; with ``nonempty`` every reduced slice keeps an entry."""
    size = int(np.prod(shape, dtype=np.int64))
    flags = np.reshape([ch.integer(0, 1) for _ in range(size)], shape).astype(int)
    if nonempty:
        moved = np.moveaxis(flags, axis, -1) if axis is not None and shape else flags.reshape(1, -1)
        for idx in np.ndindex(*moved.shape[:-1]):
            if not moved[idx].any():
                moved[idx + (ch.integer(0, moved.shape[-1] - 1),)] = 1
    return tuple(int(v) for v in flags.reshape(-1))
