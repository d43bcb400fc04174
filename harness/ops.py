"""The op catalogue: one entry per op, read by the IR, the generator, the oracle and
every backend's lowering table.

An entry says what an op *is* mathematically (so the oracle can differentiate it without
any framework), which arguments it takes, what shape it returns, where it is defined and
which argument values are special (kinks, ties, domain bounds). It says nothing about any
framework: each backend module holds its own lowering table keyed by these names, so
adding an op is one entry here plus one lowering per backend, and adding a backend is one
new module.

The mathematical definitions are SymPy expressions built lazily from a namespace argument
(``sp``), so importing the catalogue never imports SymPy or a framework.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Shape = tuple[int, ...]
Attrs = Mapping[str, Any]

__all__ = [
    "AttrSpec",
    "Bilinear",
    "CATALOGUE",
    "Elementwise",
    "OpSpec",
    "Piecewise",
    "Shape",
    "Structural",
    "get_op",
    "register_op",
]


class CatalogueError(ValueError):
    """An op entry is malformed or its name is taken."""


@dataclass(frozen=True)
class AttrSpec:
    """One non-array argument of an op (a slope, a bound, an index tuple, an integer power).

    ``kind`` is one of ``"float"``, ``"int"``, ``"int_tuple"``.
    """

    name: str
    kind: str

    def validate(self, op: str, value: Any) -> Any:
        """Return ``value`` normalised to the attr's kind, or raise ``ValueError``."""
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{op}: attr {self.name}={value!r}, but it must be a finite number.")
            return float(value)
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{op}: attr {self.name}={value!r}, but it must be an integer.")
            return int(value)
        if self.kind == "int_tuple":
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ValueError(
                    f"{op}: attr {self.name}={value!r}, but it must be a list of integers."
                )
            return tuple(int(v) for v in value)
        raise CatalogueError(f"unknown attr kind {self.kind!r}")


# --- how the oracle differentiates an op ---------------------------------------------


@dataclass(frozen=True)
class Elementwise:
    """A smooth elementwise op; ``expr(sp, *arg_symbols, **attrs)`` is its definition.

    The oracle differentiates the expression symbolically once and evaluates the partial
    derivatives in multi-precision; arguments broadcast like NumPy's.
    """

    expr: Callable[..., Any]


@dataclass(frozen=True)
class Piecewise:
    """An elementwise op made of smooth pieces chosen by the signs of switch expressions.

    ``switches(sp, *args, **attrs)`` returns the switch expressions; ``piece(sp, signs,
    *args, **attrs)`` the smooth piece for a tuple of signs (each -1 or +1). Where a switch
    is exactly 0 the op is at a kink: the oracle evaluates the pieces on both sides and
    marks every derivative entry where they differ as undefined.
    """

    switches: Callable[..., list[Any]]
    piece: Callable[..., Any]


@dataclass(frozen=True)
class Structural:
    """An op that is linear in its single array argument (sum, indexing, reshape, ...).

    ``apply(xp, a, **attrs)`` computes it with NumPy (``xp``) on an array of any dtype
    (the oracle passes object arrays of multi-precision numbers), so the same function
    carries values, gradients and Hessians.
    """

    apply: Callable[..., Any]


@dataclass(frozen=True)
class Bilinear:
    """An op linear in each of its two array arguments (matmul, dot, outer).

    ``apply(xp, a, b, mul)`` computes it with NumPy; ``mul`` is the elementwise product the
    oracle uses (it treats an exact zero times an undefined entry as zero).
    """

    apply: Callable[..., Any]


Math = Elementwise | Piecewise | Structural | Bilinear


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


@dataclass(frozen=True)
class OpSpec:
    """One op of the catalogue.

    Arguments:
        name: the op's name in programs and lowering tables.
        arity: the number of array arguments.
        group: the catalogue group ("unary", "activation", "binary", "select",
            "reduction", "linalg", "shape").
        math: how the oracle differentiates it.
        attrs: the non-array arguments.
        shape: the output shape from the argument shapes and attrs.
        domain: ``domain(args)`` on multi-precision argument values is False where the op
            is undefined (log of a negative, division by 0).
        special: ``special(attrs)`` gives the argument values at which the op's derivative
            rule is special (kinks, ties, bounds); the generator aims intermediates there.
        rule_scale: for a unary op that frameworks differentiate through its *output*
            (tanh' = 1 - y**2, sigmoid' = y (1 - y)): ``rule_scale(sp, a)`` gives the
            magnitude of the terms those formulas add at orders 1, 2, 3. Such a formula is
            accurate to eps times these, not to eps times the derivative itself (which
            is tiny where the output saturates), and the judge allows for it.
        smooth: whether the op is twice differentiable everywhere on its domain.
        doc: one line for ``hessdiff ops``.
    """

    name: str
    arity: int
    group: str
    math: Math
    attrs: tuple[AttrSpec, ...] = ()
    shape: Callable[[tuple[Shape, ...], Attrs], Shape] = broadcast_shape
    domain: Callable[[tuple[Any, ...]], bool] | None = None
    special: Callable[[Attrs], tuple[float, ...]] = field(default=lambda attrs: ())
    doc: str = ""
    rule_scale: Callable[..., tuple[Any, Any, Any]] | None = None

    @property
    def smooth(self) -> bool:
        return not isinstance(self.math, Piecewise)

    def check_attrs(self, attrs: Attrs) -> dict[str, Any]:
        """Validate ``attrs`` against the spec; raise ``ValueError`` naming the problem."""
        names = {a.name for a in self.attrs}
        extra = set(attrs) - names
        if extra:
            raise ValueError(f"{self.name}: unexpected attrs {sorted(extra)}; it takes {sorted(names)}.")
        missing = names - set(attrs)
        if missing:
            raise ValueError(f"{self.name}: missing attrs {sorted(missing)}.")
        return {a.name: a.validate(self.name, attrs[a.name]) for a in self.attrs}


CATALOGUE: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    """Add an op to the catalogue; a duplicate name is an error that names both."""
    if spec.name in CATALOGUE:
        raise CatalogueError(f"op {spec.name!r} is already in the catalogue ({CATALOGUE[spec.name].doc!r}).")
    if spec.arity < 1:
        raise CatalogueError(f"op {spec.name!r}: arity must be >= 1, got {spec.arity}.")
    CATALOGUE[spec.name] = spec
    return spec


def get_op(name: str) -> OpSpec:
    """The catalogue entry for ``name``; raise ``KeyError`` with the known names."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {', '.join(sorted(CATALOGUE))}.") from None


# --- shape rules ----------------------------------------------------------------------


def _scalar(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    return ()


def _gather_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    (a,) = shapes
    if len(a) != 1:
        raise ValueError(f"gather takes a vector, got shape {a}")
    for i in attrs["idx"]:
        if not -a[0] <= i < a[0]:
            raise ValueError(f"gather index {i} out of range for length {a[0]}.")
    return (len(attrs["idx"]),)


def _matmul_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    a, b = shapes
    if not (1 <= len(a) <= 2 and 1 <= len(b) <= 2):
        raise ValueError(f"matmul takes vectors or matrices, got {a} and {b}")
    if a[-1] != b[0]:
        raise ValueError(f"matmul inner sizes differ: {a} @ {b}")
    return a[:-1] + b[1:]


# --- the catalogue --------------------------------------------------------------------

_positive = lambda args: args[0] > 0  # noqa: E731
_nonzero_denominator = lambda args: args[1] != 0  # noqa: E731


def _smooth_unary(name: str, expr: Callable[..., Any], doc: str, group: str = "unary", **kw: Any) -> None:
    register_op(OpSpec(name, 1, group, Elementwise(expr), doc=doc, **kw))


_smooth_unary("neg", lambda sp, a: -a, "negation")
_smooth_unary("square", lambda sp, a: a**2, "a**2")
_smooth_unary("sin", lambda sp, a: sp.sin(a), "sine")
_smooth_unary("cos", lambda sp, a: sp.cos(a), "cosine")
# tanh' = (1 - y)(1 + y) and its derivatives are computed from y = tanh(a) by every
# framework: terms of magnitude about 1 whatever the (tiny) result.
_smooth_unary(
    "tanh", lambda sp, a: sp.tanh(a), "hyperbolic tangent", group="activation",
    rule_scale=lambda sp, a: (1 + sp.tanh(a) ** 2, 2 * (1 + sp.tanh(a) ** 2), 2 + 6 * sp.tanh(a) ** 2),
)
_smooth_unary("exp", lambda sp, a: sp.exp(a), "exponential")
_smooth_unary(
    "log", lambda sp, a: sp.log(a), "natural log (domain a > 0)", domain=_positive,
    special=lambda attrs: (0.0,),
)
# sigmoid' = y (1 - y), from y = sigmoid(a): terms of magnitude y, y**2 (the difference
# 1 - y has an absolute error of eps where y saturates at 1).
_sigmoid = lambda sp, a: 1 / (1 + sp.exp(-a))  # noqa: E731
_smooth_unary(
    "sigmoid", _sigmoid, "logistic sigmoid", group="activation",
    rule_scale=lambda sp, a: (2 * _sigmoid(sp, a), 6 * _sigmoid(sp, a), 26 * _sigmoid(sp, a)),
)
# softplus' = sigmoid(a), so its second and third derivatives are sigmoid's first two.
_smooth_unary(
    "softplus", lambda sp, a: sp.log(1 + sp.exp(a)), "log(1 + exp(a))", group="activation",
    rule_scale=lambda sp, a: (_sigmoid(sp, a), 2 * _sigmoid(sp, a), 6 * _sigmoid(sp, a)),
)
register_op(
    OpSpec(
        "powi", 1, "unary", Elementwise(lambda sp, a, p: a**p), attrs=(AttrSpec("p", "int"),),
        shape=lambda shapes, attrs: _powi_shape(shapes, attrs), doc="a**p for a small integer p (1..8)",
    )
)

register_op(OpSpec("add", 2, "binary", Elementwise(lambda sp, a, b: a + b), doc="a + b"))
register_op(OpSpec("sub", 2, "binary", Elementwise(lambda sp, a, b: a - b), doc="a - b"))
register_op(OpSpec("mul", 2, "binary", Elementwise(lambda sp, a, b: a * b), doc="a * b"))
register_op(
    OpSpec(
        "div", 2, "binary", Elementwise(lambda sp, a, b: a / b), domain=_nonzero_denominator,
        doc="a / b (domain b != 0)",
    )
)

# Piecewise ops: the pieces are chosen by the sign of each switch.
register_op(
    OpSpec(
        "relu", 1, "activation",
        Piecewise(lambda sp, a: [a], lambda sp, s, a: a if s[0] > 0 else sp.Integer(0)),
        special=lambda attrs: (0.0,), doc="max(a, 0)",
    )
)
register_op(
    OpSpec(
        "abs", 1, "unary",
        Piecewise(lambda sp, a: [a], lambda sp, s, a: a if s[0] > 0 else -a),
        special=lambda attrs: (0.0,), doc="|a|",
    )
)
register_op(
    OpSpec(
        "leaky_relu", 1, "activation",
        Piecewise(lambda sp, a, alpha: [a], lambda sp, s, a, alpha: a if s[0] > 0 else alpha * a),
        attrs=(AttrSpec("alpha", "float"),), special=lambda attrs: (0.0,),
        doc="a if a > 0 else alpha * a",
    )
)
def _clip_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    if not attrs["lo"] < attrs["hi"]:
        raise ValueError(f"clip needs lo < hi, got lo={attrs['lo']!r}, hi={attrs['hi']!r}.")
    return broadcast_shape(shapes, attrs)


def _powi_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    if not 1 <= attrs["p"] <= 8:
        raise ValueError(f"powi takes a small positive integer power 1..8, got p={attrs['p']}.")
    return broadcast_shape(shapes, attrs)


register_op(
    OpSpec(
        "clip", 1, "unary",
        Piecewise(
            lambda sp, a, lo, hi: [a - lo, a - hi],
            lambda sp, s, a, lo, hi: lo if s[0] < 0 else (a if s[1] < 0 else hi),
        ),
        attrs=(AttrSpec("lo", "float"), AttrSpec("hi", "float")), shape=_clip_shape,
        special=lambda attrs: (attrs["lo"], attrs["hi"]),
        doc="min(max(a, lo), hi), lo < hi",
    )
)
register_op(
    OpSpec(
        "maximum", 2, "binary",
        Piecewise(lambda sp, a, b: [a - b], lambda sp, s, a, b: a if s[0] > 0 else b),
        special=lambda attrs: (0.0,), doc="elementwise max (special: a tie)",
    )
)
register_op(
    OpSpec(
        "minimum", 2, "binary",
        Piecewise(lambda sp, a, b: [a - b], lambda sp, s, a, b: b if s[0] > 0 else a),
        special=lambda attrs: (0.0,), doc="elementwise min (special: a tie)",
    )
)
register_op(
    OpSpec(
        "where", 3, "select",
        Piecewise(lambda sp, c, a, b: [c], lambda sp, s, c, a, b: a if s[0] > 0 else b),
        special=lambda attrs: (0.0,), doc="a where c > 0 else b",
    )
)

# Structural (linear) ops.
register_op(
    OpSpec("sum", 1, "reduction", Structural(lambda xp, a: xp.sum(a)), shape=_scalar, doc="sum of all entries")
)
register_op(
    OpSpec(
        "mean", 1, "reduction", Structural(lambda xp, a: xp.sum(a) / a.size), shape=_scalar,
        doc="mean of all entries",
    )
)
register_op(
    OpSpec(
        "gather", 1, "shape", Structural(lambda xp, a, idx: a[list(idx)]),
        attrs=(AttrSpec("idx", "int_tuple"),), shape=_gather_shape,
        doc="a[idx] for an integer index tuple (reversal, permutation, repetition)",
    )
)
register_op(
    OpSpec(
        "matmul", 2, "linalg", Bilinear(lambda xp, a, b, mul: _matmul(xp, a, b, mul)),
        shape=_matmul_shape, doc="a @ b for vectors and matrices",
    )
)


def _matmul(xp: Any, a: Any, b: Any, mul: Callable[[Any, Any], Any]) -> Any:
    """``a @ b`` written as broadcast products and a sum, so ``mul`` decides 0 * undefined."""
    a2 = a if a.ndim == 2 else a[None, :]
    b2 = b if b.ndim == 2 else b[:, None]
    out = mul(a2[:, :, None], b2[None, :, :]).sum(axis=1)
    if a.ndim == 1:
        out = out[0]
    if b.ndim == 1:
        out = out[..., 0]
    return out
