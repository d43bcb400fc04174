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
    "FIXED_INTEGER_LIMIT",
    "NORM_ORDS",
    "Elementwise",
    "OpSpec",
    "Piecewise",
    "Selection",
    "Shape",
    "Structural",
    "Vector",
    "fixed_integer",
    "get_op",
    "in_arg_domain",
    "register_op",
]


class CatalogueError(ValueError):
    """An op entry is malformed or its name is taken."""


class _Required:
    """The default of an attr that has none (a program must give it)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class AttrSpec:
    """One non-array argument of an op (a slope, a bound, an index tuple, an integer power).

    ``kind`` is one of ``"float"``, ``"int"``, ``"int_tuple"``, ``"axis"`` (an integer
    axis or ``None`` for the whole array), ``"bool"`` (keepdims) and ``"ord"`` (a norm's
    order: a positive integer or ``"inf"``, a string so that it survives JSON).

    An attr with a ``default`` may be left out, and is left out of a normalised node
    when it has its default value: an attr added to an existing op this way keeps every
    program written before it (and its JSON, and the seeds derived from that) unchanged.
    """

    name: str
    kind: str
    default: Any = REQUIRED

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
        if self.kind == "axis":
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{op}: attr {self.name}={value!r}, but it must be an integer axis or null.")
            return int(value)
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{op}: attr {self.name}={value!r}, but it must be true or false.")
            return value
        if self.kind == "ord":
            if value == "inf" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                return value
            raise ValueError(f"{op}: attr {self.name}={value!r}, but it must be a positive integer or 'inf'.")
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


@dataclass(frozen=True)
class Vector:
    """A smooth op of a whole array (prod, logsumexp, softmax, det, inv).

    ``expr(ns, A, **attrs)`` takes a NumPy object array ``A`` shaped like the argument and
    returns an object array shaped like the output, using only arithmetic and ``ns.exp``,
    ``ns.log``, ``ns.sqrt``. The oracle runs it on multi-precision second-order jets (so
    it gets every first and second partial derivative exactly, with no symbolic step) and
    on plain multi-precision numbers for values. ``domain`` receives the whole argument.

    ``output_based``: frameworks differentiate the op through its output (softmax' = p
    (delta - p), logsumexp' = exp(a - y)), so every derivative errs by eps times the
    output's own scale, not the derivative's (sum(softmax(x))'' = 0 comes out as 2 eps).

    ``products``: computed from partial products of its entries (prod, cumprod; the
    ``axis`` attr says which entries go together), so a partial product below the dtype's smallest
    normal number is flushed to zero (XLA on CPU) or kept with a subnormal's few bits
    (PyTorch, which then divides: prod' = p / x_i), and a derivative errs by up to that
    tiny number times the remaining factors, or by a subnormal's spacing over the
    entries it is divided by.

    ``divides_output``: the frameworks whose derivative rule divides the output by the
    entries (y / x_i), which the op's entry names the source of; only their bounds widen
    by the terms that formula cancels (``hessdiff.harness.oracle._divided_output``).

    ``formula_range``: every framework computes the op by ``expr``'s formula, unscaled,
    so an intermediate of it beyond the dtype's range overflows there too (std's squared
    deviations: JAX's Hessian of std(expm1(x)) at x = (355, 0.7) in float64 is NaN, where
    the truth's H[0, 0] is 7.5e153): the point is unjudged, as where a node's own value
    overflows. Not for ops the frameworks rescale (logsumexp and softmax shift by the
    max).
    """

    expr: Callable[..., Any]
    output_based: bool = False
    products: bool = False
    divides_output: tuple[str, ...] = ()
    formula_range: bool = False


@dataclass(frozen=True)
class Selection:
    """A whole-array op that is smooth once its discrete choices are made: which entry is
    the largest (max, min, the inf-norm), the order of equal entries (sort), the sign of
    a zero entry (the 1-norm).

    ``expr(ns, A, ties, **attrs)`` is a ``Vector`` expression that makes every choice
    through ``ties``: ``ties.argmax(keys, k)`` (the index of the largest key),
    ``ties.order(keys, k)`` (the permutation sorting the keys ascending), ``ties.sign(v,
    k)`` (+1 or -1) and ``ties.abs(v)`` (|v|, not a choice the op's derivative depends
    on). Where a choice is not unique (equal keys, a zero) the oracle evaluates the
    expression once for every way of making it and marks every derivative entry where
    they differ as undefined; the gap of each choice (the difference of the two largest
    keys, the zero) is a switch whose zero is the op's ``k``-th special value.

    ``linear``: every piece is linear in the argument (max, sort), so the Hessian is 0
    off the kinks.
    """

    expr: Callable[..., Any]
    linear: bool = False


Math = Elementwise | Piecewise | Structural | Bilinear | Vector | Selection


@dataclass(frozen=True)
class RuleScale:
    """The magnitude of the terms a framework's derivative formula for an op adds up, at
    orders 1, 2, 3, where the formula is not the derivative itself (tanh' = 1 - y*y from
    the output y; copysign's gradient grad * result / a): it is accurate to eps times
    these, not to eps times the (possibly tiny) derivative, and the judge allows for it.

    ``scale(sp, *args, **attrs)`` (a ``Piecewise`` op's also gets the piece's signs first)
    returns the three magnitudes. ``source`` names the framework code it models, and
    ``frameworks`` the frameworks whose rules compute it so (empty: every framework, as
    for a composite all lowerings share): only their bounds are widened. ``value``
    (optional, same arguments) is the magnitude of the terms the op's *value* formula adds
    where they cancel (gelu_tanh's a (1 + tanh(u)) / 2 for a << 0): the value is accurate
    to eps times it, which decides whether two such values may tie in the framework.
    ``above_eps``: the formula is used only where |a| > eps of the dtype; below, the
    frameworks return its limit (PyTorch's and JAX's i1 gradient is 0.5 there), which
    adds no terms.
    """

    scale: Callable[..., tuple[Any, Any, Any]]
    source: str
    frameworks: tuple[str, ...] = ()
    value: Callable[..., Any] | None = None
    above_eps: bool = False

    def applies_to(self, framework: str | None) -> bool:
        return not self.frameworks or (framework is not None and framework in self.frameworks)


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
            is tiny where the output saturates), and the judge allows for it. A
            ``Piecewise`` op's ``rule_scale(sp, signs, a, ...)`` also gets the piece's
            signs (elu's negative piece is differentiated through expm1's output).
        smooth: whether the op is twice differentiable everywhere on its domain.
        doc: one line for ``hessdiff ops``.
        special_names: a name for each special value, in order (derived from
            ``special({})`` when the op takes no attrs); coverage reports them.
        special_arg: which argument the special values belong to (the denominator of a
            division is argument 1). A piecewise op's special values are its switches'
            zeros, in the order of ``switches``.
        arg_domains: per argument, where it must lie: ``"pos"`` (> 0), ``"nonzero"``,
            ``"gt1"`` (> 1), ``"gt_neg1"`` (> -1), ``"unit"`` (-1 < a < 1),
            ``"off_poles"`` (not 0, -1, -2, ...) or None; the
            generator guards arguments with it, and it is the domain when ``domain`` is
            not given.
        integer_args: the arguments that, when a constant holding an integer, widen the
            others' domains (a**3 is defined and smooth for every real a, a**b for a
            non-integer b only for a > 0). The oracle differentiates the op with such a
            constant substituted exactly (a polynomial or a reciprocal power), and
            ``domains_at`` gives each argument's domain for the values and pattern at hand.
        formula_peak: for an op every framework computes through a larger intermediate,
            ``formula_peak(sp, *args)`` is that intermediate's magnitude: past the dtype's
            range the framework's value and derivatives are inf or NaN though the op's own
            are not, and the point is unjudged, as where the op's value overflows (i0 and
            i1 as exp(|a|) * i0e(a): torch.func's Hessian of sum(i0(x)) in float32 at
            x5 = 89 is NaN at H[5, 0], exp(89) being past float32's range and i0(89) = 1.9e37
            not).
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
    rule_scale: RuleScale | None = None
    special_names: tuple[str, ...] = ()
    special_arg: int = 0
    arg_domains: tuple[str | None, ...] = ()
    integer_args: tuple[int, ...] = ()
    formula_peak: Callable[..., Any] | None = None

    @property
    def smooth(self) -> bool:
        return not isinstance(self.math, Piecewise)

    def domains_at(self, args: tuple[Any, ...], varying: tuple[bool, ...] | None = None) -> tuple[str | None, ...]:
        """Each argument's domain at these argument values.

        ``varying``: per argument, whether it may differ from its value here (it is
        traced, or a computed constant the framework rounds its own way); None when only
        the value is asked for. An ``integer_args`` argument that is a fixed integer
        lifts the others' domains: where it is a non-negative integer, to every real;
        where it is a negative one, to every real but 0 (a pole). Otherwise
        ``arg_domains`` holds.
        """
        domains = self.arg_domains or (None,) * self.arity
        for p in self.integer_args:
            if p >= len(args) or (varying is not None and varying[p]) or not fixed_integer(args[p]):
                continue
            lifted = None if args[p] >= 0 else "nonzero"
            domains = tuple(lifted if q != p and d is not None else d for q, d in enumerate(domains))
        return domains

    def in_domain(self, args: tuple[Any, ...], varying: tuple[bool, ...] | None = None) -> bool:
        """Whether the op is defined at these argument values (elementwise ops); with
        ``varying`` (see ``domains_at``), whether it is differentiable there too."""
        if self.domain is not None:
            return bool(self.domain(args))
        return all(_ARG_DOMAINS[d](v) for d, v in zip(self.domains_at(args, varying), args) if d is not None)

    def arg_in_domain(self, position: int, value: Any, domains: tuple[str | None, ...] | None = None) -> bool:
        """Whether argument ``position`` alone may take ``value`` (its entry of
        ``domains``, by default ``arg_domains``): the generator aims an argument at a
        domain edge from the inside."""
        domains = self.arg_domains if domains is None else domains
        domain = domains[position] if position < len(domains) else None
        return domain is None or bool(_ARG_DOMAINS[domain](value))

    def check_attrs(self, attrs: Attrs) -> dict[str, Any]:
        """Validate ``attrs`` against the spec; raise ``ValueError`` naming the problem.

        Returns the normalised attrs: each validated, an attr at its default left out.
        """
        names = {a.name for a in self.attrs}
        extra = set(attrs) - names
        if extra:
            raise ValueError(f"{self.name}: unexpected attrs {sorted(extra)}; it takes {sorted(names)}.")
        missing = {a.name for a in self.attrs if a.default is REQUIRED} - set(attrs)
        if missing:
            raise ValueError(f"{self.name}: missing attrs {sorted(missing)}.")
        out = {}
        for a in self.attrs:
            if a.name in attrs:
                value = a.validate(self.name, attrs[a.name])
                if a.default is REQUIRED or value != a.default or type(value) is not type(a.default):
                    out[a.name] = value
        return out

    def full_attrs(self, attrs: Attrs) -> dict[str, Any]:
        """``attrs`` with every attr left at its default filled in."""
        return {a.name: a.default for a in self.attrs if a.default is not REQUIRED} | dict(attrs)


CATALOGUE: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    """Add an op to the catalogue; a duplicate name is an error that names both."""
    if spec.name in CATALOGUE:
        raise CatalogueError(f"op {spec.name!r} is already in the catalogue ({CATALOGUE[spec.name].doc!r}).")
    if spec.arity < 1:
        raise CatalogueError(f"op {spec.name!r}: arity must be >= 1, got {spec.arity}.")
    for d in spec.arg_domains:
        if d is not None and d not in _ARG_DOMAINS:
            raise CatalogueError(f"op {spec.name!r}: arg domain {d!r} is not one of {sorted(_ARG_DOMAINS)}.")
    if any(a.default is not REQUIRED for a in spec.attrs):
        # Shape rules and special values read every attr: give them the defaults.
        shape, special = spec.shape, spec.special
        object.__setattr__(spec, "shape", lambda shapes, attrs: shape(shapes, spec.full_attrs(attrs)))
        object.__setattr__(spec, "special", lambda attrs: special(spec.full_attrs(attrs)))
    if not spec.special_names:
        try:
            names = tuple(f"{v:g}" for v in spec.special({}))
        except KeyError:
            raise CatalogueError(
                f"op {spec.name!r}: its special values depend on attrs, so it needs special_names."
            ) from None
        object.__setattr__(spec, "special_names", names)
    CATALOGUE[spec.name] = spec
    return spec


_ARG_DOMAINS: dict[str, Callable[[Any], bool]] = {
    "pos": lambda v: v > 0,
    "nonzero": lambda v: v != 0,
    "gt1": lambda v: v > 1,
    "gt_neg1": lambda v: v > -1,
    "unit": lambda v: -1 < v < 1,
    "off_poles": lambda v: v > 0 or not _integer_valued(v),  # Gamma's poles: 0, -1, -2, ...
}


def _integer_valued(value: Any) -> bool:
    """Whether a scalar (float or multi-precision) is a finite integer."""
    try:
        return bool(value == int(value))
    except (OverflowError, ValueError, TypeError):
        return False


# The largest constant integer an ``integer_args`` argument lifts the other arguments'
# domains for: the oracle differentiates a**b with such a b substituted (a polynomial of
# degree up to 64, defined at a <= 0); beyond it, the generic a**b rule, on a > 0 only.
FIXED_INTEGER_LIMIT = 64


def fixed_integer(value: Any) -> bool:
    """Whether a constant ``integer_args`` value is an integer the op's rule is taken at
    (``FIXED_INTEGER_LIMIT``): generation, domains and the oracle share this one test."""
    return _integer_valued(value) and abs(value) <= FIXED_INTEGER_LIMIT


def in_arg_domain(domain: str | None, value: float) -> bool:
    """Whether ``value`` lies in the argument domain named ``domain`` ("pos", "unit", ...;
    None: everywhere)."""
    return domain is None or bool(_ARG_DOMAINS[domain](value))


def get_op(name: str) -> OpSpec:
    """The catalogue entry for ``name``; raise ``KeyError`` with the known names."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {', '.join(sorted(CATALOGUE))}.") from None


# --- shape rules ----------------------------------------------------------------------


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
    rule_scale=RuleScale(
        lambda sp, a: (1 + sp.tanh(a) ** 2, 2 * (1 + sp.tanh(a) ** 2), 2 + 6 * sp.tanh(a) ** 2),
        "JAX lax.tanh_p jvp g * (1 + ans) * (1 - ans); PyTorch derivatives.yaml tanh: "
        "tanh_backward(grad, result); MLX Tanh::vjp 1 - square(output)"),
)
_smooth_unary("exp", lambda sp, a: sp.exp(a), "exponential")
_smooth_unary(
    "log", lambda sp, a: sp.log(a), "natural log (domain a > 0)", arg_domains=("pos",),
    special=lambda attrs: (0.0,),
)
# sigmoid' = y (1 - y), from y = sigmoid(a): terms of magnitude y, y**2 (the difference
# 1 - y has an absolute error of eps where y saturates at 1).
_sigmoid = lambda sp, a: 1 / (1 + sp.exp(-a))  # noqa: E731
_smooth_unary(
    "sigmoid", _sigmoid, "logistic sigmoid", group="activation",
    rule_scale=RuleScale(
        lambda sp, a: (2 * _sigmoid(sp, a), 6 * _sigmoid(sp, a), 26 * _sigmoid(sp, a)),
        "JAX lax.logistic_p jvp g * ans * (1 - ans); PyTorch derivatives.yaml sigmoid: "
        "sigmoid_backward(grad, result); MLX Sigmoid::vjp s * (1 - s)"),
)
# softplus' = sigmoid(a), so its second and third derivatives are sigmoid's first two.
_smooth_unary(
    "softplus", lambda sp, a: sp.log(1 + sp.exp(a)), "log(1 + exp(a))", group="activation",
    rule_scale=RuleScale(
        lambda sp, a: (_sigmoid(sp, a), 2 * _sigmoid(sp, a), 6 * _sigmoid(sp, a)),
        "softplus' is sigmoid(a) in every framework (JAX jax.nn.softplus = logaddexp(a, 0), "
        "PyTorch softplus_backward, MLX log1p(exp)); its derivatives are sigmoid's, from its output"),
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
        "div", 2, "binary", Elementwise(lambda sp, a, b: a / b), arg_domains=(None, "nonzero"),
        special=lambda attrs: (0.0,), special_arg=1,
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
        attrs=(AttrSpec("alpha", "float"),), special=lambda attrs: (0.0,), special_names=("0",),
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
        special=lambda attrs: (attrs["lo"], attrs["hi"]), special_names=("lo", "hi"),
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

# Structural (linear) ops. sum and mean reduce the whole array unless given an axis
# (attrs with defaults, so the programs written before they took one still load, print
# and serialise unchanged); the defaults are in the signatures too, for callers that pass
# a node's attrs as they are.


def _sum_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    if attrs["axis"] is None and not attrs["keepdims"]:
        return ()  # the whole array, any shape (a scalar too), as always
    return _reduced_shape("sum")(shapes, attrs)


def _sum_reduce(xp: Any, a: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    if axis is None and not keepdims:
        return xp.sum(a)
    return xp.sum(a, axis=axis, keepdims=keepdims)


def _mean_reduce(xp: Any, a: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    count = a.size if axis is None else a.shape[axis]
    return _sum_reduce(xp, a, axis, keepdims) / count


_OPTIONAL_REDUCE_ATTRS = (AttrSpec("axis", "axis", None), AttrSpec("keepdims", "bool", False))
register_op(OpSpec("sum", 1, "reduction", Structural(_sum_reduce), attrs=_OPTIONAL_REDUCE_ATTRS, shape=_sum_shape,
                   doc="sum of all entries, or along an axis (keepdims)"))
register_op(OpSpec("mean", 1, "reduction", Structural(_mean_reduce), attrs=_OPTIONAL_REDUCE_ATTRS, shape=_sum_shape,
                   doc="mean of all entries, or along an axis (keepdims)"))
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


# --- the wider catalogue (issue #8) -----------------------------------------------------
#
# Step functions (floor, ceil, round, remainder) are written with SymPy functions whose
# derivative is 0 and whose multi-precision value comes from mpmath: the oracle then sees
# the derivative every framework uses (0 almost everywhere), and a switch that is 0 at
# the jumps reports how close the point is to one.

_STEPS: dict[str, Any] = {}


def _step(sp: Any, name: str) -> Any:
    """A SymPy function ``floor_``/``ceil_``/``round_`` with derivative 0 and mpmath value."""
    if name not in _STEPS:
        import mpmath

        impl = {
            "floor_": mpmath.floor,
            "ceil_": mpmath.ceil,
            # Round half to even, as every framework does.
            "round_": lambda v: mpmath.mpf(round(v)) if abs(v) < mpmath.mpf(2) ** 60 else v,
        }[name]
        _STEPS[name] = type(
            name, (sp.Function,),
            {"fdiff": lambda self, argindex=1: sp.Integer(0), "_imp_": staticmethod(impl), "is_real": True},
        )
    return _STEPS[name]


def _unary(name: str, expr: Callable[..., Any], doc: str, special: tuple[float, ...] = (),
           group: str = "unary", **kw: Any) -> None:
    register_op(OpSpec(name, 1, group, Elementwise(expr), special=lambda attrs, s=special: s, doc=doc, **kw))


def _piecewise(name: str, arity: int, switches: Callable[..., list[Any]], piece: Callable[..., Any],
               special: tuple[float, ...], doc: str, group: str = "unary", **kw: Any) -> None:
    register_op(OpSpec(name, arity, group, Piecewise(switches, piece), special=lambda attrs, s=special: s,
                       doc=doc, **kw))


# Overflow edges: exp(a) overflows float32 past 88.72 and float64 past 709.78.
_EXP_EDGES = (88.0, 709.0)
_unary("sqrt", lambda sp, a: sp.sqrt(a), "square root (domain a > 0)", (0.0,), arg_domains=("pos",))
_unary("rsqrt", lambda sp, a: 1 / sp.sqrt(a), "1 / sqrt(a) (domain a > 0)", (0.0,), arg_domains=("pos",))
_unary("reciprocal", lambda sp, a: 1 / a, "1 / a (domain a != 0)", (0.0,), arg_domains=("nonzero",))
_unary("exp2", lambda sp, a: 2**a, "2**a", (0.0, 127.0, 1023.0))
# PyTorch differentiates expm1 through its output (derivatives.yaml: grad * (result + 1)),
# which near result = -1 cancels terms of size 1 + |result| at every order.
_unary("expm1", lambda sp, a: sp.exp(a) - 1, "exp(a) - 1", (0.0,) + _EXP_EDGES,
       rule_scale=RuleScale(lambda sp, a: (1 + abs(sp.exp(a) - 1),) * 3,
                            "PyTorch derivatives.yaml expm1: grad * (result + 1); JAX lax.expm1_p jvp "
                            "g * (ans + 1)", ("jax", "torch")))
_unary("log2", lambda sp, a: sp.log(a) / sp.log(2), "log base 2 (domain a > 0)", (0.0, 1.0), arg_domains=("pos",))
_unary("log10", lambda sp, a: sp.log(a) / sp.log(10), "log base 10 (domain a > 0)", (0.0, 1.0),
       arg_domains=("pos",))
_unary("log1p", lambda sp, a: sp.log(1 + a), "log(1 + a) (domain a > -1)", (-1.0, 0.0), arg_domains=("gt_neg1",))
_unary("tan", lambda sp, a: sp.tan(a), "tangent", (0.0, 1.5707963267948966))
_unary("arcsin", lambda sp, a: sp.asin(a), "inverse sine (domain -1 < a < 1)", (-1.0, 0.0, 1.0),
       arg_domains=("unit",))
_unary("arccos", lambda sp, a: sp.acos(a), "inverse cosine (domain -1 < a < 1)", (-1.0, 0.0, 1.0),
       arg_domains=("unit",))
_unary("arctan", lambda sp, a: sp.atan(a), "inverse tangent", (0.0,))
_unary("sinh", lambda sp, a: sp.sinh(a), "hyperbolic sine", (0.0, 89.0, 710.0))
_unary("cosh", lambda sp, a: sp.cosh(a), "hyperbolic cosine", (0.0, 89.0, 710.0))
_unary("arcsinh", lambda sp, a: sp.asinh(a), "inverse hyperbolic sine", (0.0,))
_unary("arccosh", lambda sp, a: sp.acosh(a), "inverse hyperbolic cosine (domain a > 1)", (1.0,),
       arg_domains=("gt1",))


def _arctanh_scale(sp: Any, a: Any) -> tuple[Any, Any, Any]:
    """JAX's arctanh rule 1/(1 + a) * g/(1 - a), differentiated again, adds two terms of
    size 1 near 0 that cancel to the true 2a/(1 - a**2)**2 (jax.hessian(jnp.arctanh)(1e-30)
    is 0, true 2e-30); their magnitudes, and the next order's."""
    p, m = abs(1 + a), abs(1 - a)
    return 1 / (p * m), 1 / (p**2 * m) + 1 / (p * m**2), 2 / (p**3 * m) + 2 / (p**2 * m**2) + 2 / (p * m**3)


_unary("arctanh", lambda sp, a: sp.atanh(a), "inverse hyperbolic tangent (domain -1 < a < 1)", (-1.0, 0.0, 1.0),
       rule_scale=RuleScale(_arctanh_scale, "JAX jax/_src/lax/lax.py: ad.defjvp(atanh_p, lambda g, x: "
                            "mul(reciprocal(_one(x) + x), div(g, (_one(x) - x))))", ("jax",)),
       arg_domains=("unit",))
_unary("erf", lambda sp, a: sp.erf(a), "error function", (0.0, 4.0))
_unary("erfc", lambda sp, a: sp.erfc(a), "complementary error function", (0.0, 10.0, 27.0))
_unary("erfinv", lambda sp, a: sp.erfinv(a), "inverse error function (domain -1 < a < 1)", (-1.0, 0.0, 1.0),
       arg_domains=("unit",))
# log |Gamma(a)|: the real part of the complex log-gamma (which adds i pi k for a < 0); its
# derivatives are the polygammas, real on the whole domain.
_unary("lgamma", lambda sp, a: sp.re(sp.loggamma(a)), "log |Gamma(a)| (domain: a not 0, -1, -2, ...)",
       (0.0, 1.0, 2.0, -1.0), arg_domains=("off_poles",))
_unary("digamma", lambda sp, a: sp.polygamma(0, a), "digamma (domain: a not 0, -1, -2, ...)", (0.0, 1.0, -1.0),
       arg_domains=("off_poles",))
# JAX's i0 and i1 are exp(|x|) * i0e(x) and exp(|x|) * i1e(x) (jax.scipy.special); PyTorch's
# CPU kernels (calc_i0, calc_i1) multiply exp(x) by a Chebyshev series too.
_BESSEL_PEAK = lambda sp, a: sp.exp(abs(a))  # noqa: E731
_unary("i0", lambda sp, a: sp.besseli(0, a), "modified Bessel function I0", (0.0,), formula_peak=_BESSEL_PEAK)


def _i1_scale(sp: Any, a: Any) -> tuple[Any, Any, Any]:
    """The terms of i1's derivative formula i0(a) - i1(a) / a, differentiated again:
    i1 / a**2 and i0 / a, of size 1 / |a| near 0 where they cancel to the true
    i1''(a) ~ 3a/8 (PyTorch's H of i1 at a = -0.0034 errs by 1.8e-13 in float64)."""
    i0, i1 = abs(sp.besseli(0, a)), abs(sp.besseli(1, a))
    r = 1 / sp.Max(abs(a), sp.Float("1e-300"))
    both = i0 + i1
    return both + i1 * r, both * (1 + 2 * r) + 2 * i1 * r**2, both * (1 + 3 * r + 3 * r**2) + 6 * i1 * r**3


_unary("i1", lambda sp, a: sp.besseli(1, a), "modified Bessel function I1", (0.0,),
       rule_scale=RuleScale(_i1_scale, "PyTorch derivatives.yaml special_i1: i1_backward(grad, self, result) = "
                            "grad * (i0(self) - result / self); JAX lax.bessel_i1e_p jvp "
                            "i0e(x) - y * (sign(x) + 1 / x), both 0.5 where |x| <= eps", ("jax", "torch"),
                            above_eps=True), formula_peak=_BESSEL_PEAK)
_piecewise("sign", 1, lambda sp, a: [a], lambda sp, s, a: sp.Integer(s[0]), (0.0,), "sign of a (jumps at 0)")
# Each piece says which side of the jump it is: with n = round(a), floor(a) is n on the
# right of n (switch a - n > 0) and n - 1 on the left, so at an integer the two pieces
# differ and the oracle marks the value (and what depends on it) undefined there: a
# framework's rounding decides the side, as for any kink.
_piecewise("floor", 1, lambda sp, a: [a - _step(sp, "round_")(a)],
           lambda sp, s, a: _step(sp, "round_")(a) - (0 if s[0] > 0 else 1),
           (0.0, 1.0, -1.0), "floor (jumps at integers; derivative 0)")
_piecewise("ceil", 1, lambda sp, a: [a - _step(sp, "round_")(a)],
           lambda sp, s, a: _step(sp, "round_")(a) + (1 if s[0] > 0 else 0),
           (0.0, 1.0, -1.0), "ceil (jumps at integers; derivative 0)")
_piecewise("round", 1, lambda sp, a: [a - _step(sp, "floor_")(a) - sp.Rational(1, 2)],
           lambda sp, s, a: _step(sp, "floor_")(a) + (1 if s[0] > 0 else 0), (0.5, -0.5, 1.5, 2.5),
           "round half to even (jumps at half-integers; derivative 0)")

def _expm1_scale(sp: Any, signs: tuple[int, ...], a: Any, alpha: Any, width: Any) -> tuple[Any, Any, Any]:
    """The terms of the ELU family's derivatives on the negative piece alpha expm1(a /
    width): JAX and PyTorch differentiate it through the output (expm1' = y + 1, torch's
    elu_backward uses output + alpha), which cancels terms of size |alpha| (1 + |y|)
    where y = expm1(a / width) is near -1, at every order (divided by width each time)."""
    if signs[0] > 0:
        return (0, 0, 0)
    y = sp.exp(a / width) - 1
    base = abs(alpha) * (1 + abs(y))
    return (base / width, base / width**2, base / width**3)


# Activations.
_ELU_SOURCE = ("the negative piece through expm1's output: PyTorch derivatives.yaml elu: elu_backward(grad, "
               "alpha, scale, input_scale, is_result, result); JAX jax.nn.elu/selu/celu call expm1, whose "
               "jvp is g * (ans + 1)")
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_piecewise("relu6", 1, lambda sp, a: [a, a - 6], lambda sp, s, a: sp.Integer(0) if s[0] < 0 else (a if s[1] < 0 else sp.Integer(6)),
           (0.0, 6.0), "min(max(a, 0), 6)", group="activation")
register_op(OpSpec(
    "elu", 1, "activation",
    Piecewise(lambda sp, a, alpha: [a], lambda sp, s, a, alpha: a if s[0] > 0 else alpha * (sp.exp(a) - 1)),
    attrs=(AttrSpec("alpha", "float"),), special=lambda attrs: (0.0,), special_names=("0",),
    doc="a if a > 0 else alpha (exp(a) - 1)",
    rule_scale=RuleScale(lambda sp, s, a, alpha: _expm1_scale(sp, s, a, alpha, 1), _ELU_SOURCE, ("jax", "torch")),
))
_piecewise("selu", 1, lambda sp, a: [a],
           lambda sp, s, a: _SELU_SCALE * (a if s[0] > 0 else _SELU_ALPHA * (sp.exp(a) - 1)),
           (0.0,), "scale * elu(a, alpha) with the SELU constants", group="activation",
           rule_scale=RuleScale(lambda sp, s, a: _expm1_scale(sp, s, a, _SELU_SCALE * _SELU_ALPHA, 1),
                                _ELU_SOURCE, ("jax", "torch")))
register_op(OpSpec(
    "celu", 1, "activation",
    Piecewise(lambda sp, a, alpha: [a],
              lambda sp, s, a, alpha: a if s[0] > 0 else alpha * (sp.exp(a / alpha) - 1)),
    attrs=(AttrSpec("alpha", "float"),), special=lambda attrs: (0.0,), special_names=("0",),
    doc="a if a > 0 else alpha (exp(a / alpha) - 1), alpha > 0",
    rule_scale=RuleScale(lambda sp, s, a, alpha: _expm1_scale(sp, s, a, alpha, alpha), _ELU_SOURCE,
                         ("jax", "torch")),
))
_unary("gelu", lambda sp, a: a * (1 + sp.erf(a / sp.sqrt(2))) / 2, "exact GELU a Phi(a)", (0.0,), group="activation")
def _gelu_tanh_scale(sp: Any, a: Any) -> tuple[Any, Any, Any]:
    """Terms of gelu_tanh's derivatives as frameworks compute them: through tanh's output
    (tanh' = 1 - t**2, which cancels where the inner tanh saturates), times the inner
    polynomial's derivatives."""
    c, k = sp.sqrt(2 / sp.pi), sp.Rational(44715, 1000000)
    t = sp.tanh(c * (a + k * a**3))
    inner = 1 + c * (1 + 3 * k * a**2) + 6 * c * k * abs(a) + 6 * c * k
    base = (1 + abs(a)) * (1 + t**2) * inner
    return (base, 2 * base * inner, 6 * base * inner**2)


_unary("gelu_tanh", lambda sp, a: a * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (a + sp.Rational(44715, 1000000) * a**3))) / 2,
       "GELU, tanh approximation", (0.0,), group="activation",
       rule_scale=RuleScale(_gelu_tanh_scale, "a composite through tanh in every framework (jax.nn.gelu(approximate="
                            "True), torch gelu(approximate='tanh') backward, mlx.nn.gelu_approx): tanh's rule",
                            value=lambda sp, a: abs(a)))
_unary("silu", lambda sp, a: a * _sigmoid(sp, a), "a sigmoid(a)", (0.0,), group="activation",
       rule_scale=RuleScale(lambda sp, a: (2 + 2 * abs(a), 6 + 6 * abs(a), 26 + 26 * abs(a)),
                            "a * sigmoid(a) in every framework: sigmoid's rule from its output, times a"))
_unary("mish", lambda sp, a: a * sp.tanh(sp.log(1 + sp.exp(a))), "a tanh(softplus(a))", (0.0,), group="activation",
       rule_scale=RuleScale(lambda sp, a: (2 + 2 * abs(a), 6 + 6 * abs(a), 26 + 26 * abs(a)),
                            "a * tanh(softplus(a)) in every framework: tanh's and sigmoid's rules from "
                            "their outputs, times a"))
# Frameworks compute softsign as the quotient a / (1 + |a|) and differentiate that: the
# quotient rule's terms (of size 1/(1 + |a|)^k at order k) cancel to the true derivative,
# |a| times smaller for large |a| (at a = -632, to 7.9e-9 from terms of 5e-6).
_piecewise("softsign", 1, lambda sp, a: [a], lambda sp, s, a: a / (1 + s[0] * a), (0.0,),
           "a / (1 + |a|) (third derivative jumps at 0)", group="activation",
           rule_scale=RuleScale(
               lambda sp, s, a: (2 / (1 + s[0] * a), 4 / (1 + s[0] * a) ** 2, 12 / (1 + s[0] * a) ** 3),
               "the quotient a / (1 + |a|) in every framework (jax.nn.soft_sign, torch "
               "F.softsign, mlx.nn.softsign): the quotient rule's terms"))
_unary("log_sigmoid", lambda sp, a: -sp.log(1 + sp.exp(-a)), "log(sigmoid(a))", (0.0, -_EXP_EDGES[0]),
       group="activation", rule_scale=RuleScale(lambda sp, a: (2, 6, 26),
                                                "-softplus(-a) in every framework: sigmoid's rule from its output"))
_piecewise("hard_tanh", 1, lambda sp, a: [a + 1, a - 1],
           lambda sp, s, a: sp.Integer(-1) if s[0] < 0 else (a if s[1] < 0 else sp.Integer(1)),
           (-1.0, 1.0), "clip(a, -1, 1)", group="activation")
_piecewise("hard_sigmoid", 1, lambda sp, a: [a + 3, a - 3],
           lambda sp, s, a: sp.Integer(0) if s[0] < 0 else (a / 6 + sp.Rational(1, 2) if s[1] < 0 else sp.Integer(1)),
           (-3.0, 3.0), "relu6(a + 3) / 6", group="activation")

# Binary.
# a**b: for a traced (or computed) exponent a > 0 (its derivative is a**b log a); for a
# constant integer exponent every real a (a != 0 if b < 0), which the frameworks
# differentiate with their own select(b == 0, ...) and integer-power paths.
register_op(OpSpec("pow", 2, "binary", Elementwise(lambda sp, a, b: a**b), arg_domains=("pos", None),
                   integer_args=(1,), special=lambda attrs: (0.0, 1.0),
                   doc="a**b: a > 0, or any a for a constant integer b (a != 0 if b < 0); special: a at 0 and 1"))
register_op(OpSpec("arctan2", 2, "binary", Elementwise(lambda sp, a, b: sp.atan2(a, b)), arg_domains=(None, "pos"),
                   special=lambda attrs: (0.0,), doc="atan2(a, b), b > 0 here (the branch cut is b < 0, a = 0)"))
# PyTorch differentiates hypot through its output, a / result: differentiated again,
# 1/h - a**2/h**3 cancels terms of size 1/h to b**2/h**3 (3e-11 relative at (-287, 0.4)).
register_op(OpSpec("hypot", 2, "binary", Elementwise(lambda sp, a, b: sp.sqrt(a**2 + b**2)),
                   domain=lambda args: args[0] != 0 or args[1] != 0, special=lambda attrs: (0.0,),
                   doc="sqrt(a**2 + b**2) away from a = b = 0 (a cone there)",
                   rule_scale=RuleScale(lambda sp, a, b: (1, 1 / sp.sqrt(a**2 + b**2), 3 / (a**2 + b**2)),
                                        "PyTorch derivatives.yaml hypot: self: grad * self / result, "
                                        "other: grad * other / result", ("torch",))))
# JAX and PyTorch differentiate logaddexp through its output, exp(a - y) and exp(b - y):
# y carries a rounding error of eps |y|, so every derivative errs by eps (|a| + |b|) times
# its own size (logaddexp(x, x)'' = 0 comes out as 1e-13 at x = -600 in float64).
register_op(OpSpec("logaddexp", 2, "binary", Elementwise(lambda sp, a, b: sp.log(sp.exp(a) + sp.exp(b))),
                   special=lambda attrs: (0.0, _EXP_EDGES[1]), doc="log(exp(a) + exp(b))",
                   rule_scale=RuleScale(lambda sp, a, b: (1 + abs(a) + abs(b),) * 3,
                                        "JAX jnp.logaddexp custom_jvp: exp(x1 - out), exp(x2 - out); PyTorch "
                                        "derivatives.yaml logaddexp: grad / (1 + exp(other - self)): a "
                                        "difference of the arguments exponentiated", ("jax", "torch"))))
register_op(OpSpec("xlogy", 2, "binary", Elementwise(lambda sp, a, b: a * sp.log(b)), arg_domains=(None, "pos"),
                   special=lambda attrs: (0.0,), doc="a log(b), b > 0"))
register_op(OpSpec(
    "remainder", 2, "binary",
    Piecewise(lambda sp, a, b: [a / b - _step(sp, "round_")(a / b)],
              lambda sp, s, a, b: a - b * (_step(sp, "round_")(a / b) - (0 if s[0] > 0 else 1))),
    arg_domains=(None, "nonzero"), special=lambda attrs: (0.0,),
    doc="a - b floor(a / b) (Python's %: the sign of b; jumps where a / b is an integer)",
))
register_op(OpSpec(
    "copysign", 2, "binary",
    Piecewise(lambda sp, a, b: [a, b], lambda sp, s, a, b: (a if s[0] > 0 else -a) * s[1]),
    special=lambda attrs: (0.0, 0.0), special_names=("a=0", "b=0"), doc="|a| with the sign of b",
    # PyTorch's gradient is grad * result / a (derivatives.yaml): differentiated again
    # (reverse over reverse), 1/a - result/a**2 cancels terms of size 1/|a| to 0.
    rule_scale=RuleScale(lambda sp, s, a, b: (2, 2 / sp.Max(abs(a), sp.Float("1e-300")),
                                              4 / sp.Max(a**2, sp.Float("1e-300"))),
                         "PyTorch derivatives.yaml copysign: copysign_tensor_self_backward(grad, self, "
                         "result) = grad * result / self", ("torch",)),
))
register_op(OpSpec("ldexp", 1, "unary", Elementwise(lambda sp, a, k: a * sp.Integer(2) ** k),
                   attrs=(AttrSpec("k", "int"),), doc="a * 2**k for an integer k (-8..8)",
                   shape=lambda shapes, attrs: _ldexp_shape(shapes, attrs)))


def _ldexp_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    if not -8 <= attrs["k"] <= 8:
        raise ValueError(f"ldexp takes a small integer exponent -8..8, got k={attrs['k']}.")
    return broadcast_shape(shapes, attrs)


# --- shape helpers for reductions and data movement -------------------------------------


def _norm_axis(shape: Shape, axis: int | None, op: str) -> int | None:
    if axis is None:
        return None
    if not shape or not -len(shape) <= axis < len(shape):
        raise ValueError(f"{op}: axis={axis} is out of range for shape {shape}.")
    return axis % len(shape)


def _reduced_shape(op: str) -> Callable[[tuple[Shape, ...], Attrs], Shape]:
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        (a,) = shapes
        if not a or 0 in a:
            raise ValueError(f"{op} takes a non-empty array, got shape {a}.")
        axis = _norm_axis(a, attrs["axis"], op)
        if axis is None:
            return (1,) * len(a) if attrs["keepdims"] else ()
        return tuple(1 if i == axis else s for i, s in enumerate(a)) if attrs["keepdims"] else a[:axis] + a[axis + 1:]

    return rule


def _along_shape(op: str, max_size: int = 8) -> Callable[[tuple[Shape, ...], Attrs], Shape]:
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        (a,) = shapes
        if not a or 0 in a:
            raise ValueError(f"{op} takes a non-empty array, got shape {a}.")
        _norm_axis(a, attrs["axis"], op)
        if attrs["axis"] is None:
            raise ValueError(f"{op} needs an axis.")
        if math.prod(a) > max_size:
            raise ValueError(f"{op}: at most {max_size} entries (the oracle differentiates symbolically), got {a}.")
        return a

    return rule


def _small(rule: Callable[[tuple[Shape, ...], Attrs], Shape], op: str, max_size: int = 8) -> Callable[..., Shape]:
    def checked(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        if math.prod(shapes[0]) > max_size:
            raise ValueError(f"{op}: at most {max_size} entries (the oracle differentiates symbolically), got {shapes[0]}.")
        return rule(shapes, attrs)

    return checked


def _reduce(A: Any, axis: int | None, keepdims: bool, fn: Callable[[list[Any]], Any]) -> Any:
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


def _along(A: Any, axis: int, fn: Callable[[list[Any]], list[Any]]) -> Any:
    """Apply ``fn`` (a list -> a list of the same length) along ``axis``."""
    import numpy as np

    moved = np.moveaxis(A, axis, -1)
    out = np.empty(moved.shape, dtype=object)
    for idx in np.ndindex(*moved.shape[:-1]):
        out[idx] = np.array(fn(list(moved[idx])) + [None], dtype=object)[:-1]
    return np.moveaxis(out, -1, axis)


_REDUCE_ATTRS = (AttrSpec("axis", "axis"), AttrSpec("keepdims", "bool"))
_AXIS_ATTR = (AttrSpec("axis", "axis"),)


def _vector_reduction(name: str, fn: Callable[[Any, list[Any]], Any], doc: str, output_based: bool = False,
                      products: bool = False, divides_output: tuple[str, ...] = (), formula_range: bool = False,
                      **kw: Any) -> None:
    register_op(OpSpec(
        name, 1, "reduction",
        Vector(lambda sp, A, axis, keepdims: _reduce(A, axis, keepdims, lambda v: fn(sp, v)), output_based,
               products, divides_output, formula_range),
        attrs=_REDUCE_ATTRS, shape=_small(_reduced_shape(name), name), doc=doc, **kw,
    ))


def _mean(v: list[Any]) -> Any:
    return sum(v) / len(v)


# PyTorch's prod backward is grad * result / self where no entry is 0 (derivatives.yaml
# prod: prod_backward), and its forward-mode rule the same quotient.
_vector_reduction("prod", lambda sp, v: math.prod(v), "product (along an axis or whole, keepdims)",
                  products=True, divides_output=("torch",))
_vector_reduction("logsumexp", lambda sp, v: sp.log(sum(sp.exp(t) for t in v)),
                  "log of the sum of exp (along an axis or whole, keepdims)", output_based=True)
_vector_reduction("var", lambda sp, v: sum((t - _mean(v)) ** 2 for t in v) / len(v),
                  "population variance (ddof 0; along an axis or whole, keepdims)", formula_range=True)
_vector_reduction("std", lambda sp, v: sp.sqrt(sum((t - _mean(v)) ** 2 for t in v) / len(v)),
                  "population standard deviation (domain: entries not all equal)",
                  domain=lambda args: _spread(args[0]), formula_range=True)


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


def _norm_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    if attrs["ord"] not in NORM_ORDS:
        raise ValueError(f"norm: ord={attrs['ord']!r}, but it must be one of {NORM_ORDS}.")
    return _small(_reduced_shape("norm"), "norm")(shapes, attrs)


register_op(OpSpec(
    "norm", 1, "reduction",
    Selection(lambda sp, A, ties, axis, keepdims, ord: _reduce(A, axis, keepdims, lambda v: _norm_of(sp, v, ties, ord))),
    attrs=_REDUCE_ATTRS + (AttrSpec("ord", "ord", 2),), shape=_norm_shape,
    domain=lambda args: _any_nonzero(args[0]),
    special=lambda attrs: (0.0, 0.0), special_names=("zero entry", "tie"),
    doc="vector norm of order 1, 2 (default; Frobenius for a matrix), 3, 4 or inf "
        "(along an axis or whole, keepdims; domain: not all zero; special: a zero entry, a tie of magnitudes)",
))


def _spread(a: Any) -> bool:
    """Entries not (nearly) all equal: std is not differentiable at zero spread, and near
    it its Hessian (~1/spread) amplifies the entries' own rounding error by 1/spread**2,
    beyond what a rounding-error scale can bound (float32 std of 1 + x**2 at x ~ 0.01)."""
    flat = list(a.reshape(-1))
    return max(flat) - min(flat) > 1e-3 * max(max(abs(v) for v in flat), 1e-300)


def _any_nonzero(a: Any) -> bool:
    return any(v != 0 for v in a.reshape(-1))


def _cumprod(v: list[Any]) -> list[Any]:
    out, acc = [], 1
    for t in v:
        acc = acc * t
        out.append(acc)
    return out


def _softmax(sp: Any, v: list[Any]) -> list[Any]:
    total = sum(sp.exp(t) for t in v)
    return [sp.exp(t) / total for t in v]


# PyTorch's cumprod backward divides the output by the input where no entry is 0
# (derivatives.yaml cumprod: cumprod_backward), as MLX's Scan vjp for prod does
# (mlx/primitives.cpp: cumprod(...) / x).
_DIVIDES_OUTPUT = {"cumprod": ("torch", "mlx")}
for _name, _fn, _doc in (
    ("cumprod", lambda sp, v: _cumprod(v), "cumulative product along an axis"),
    ("softmax", _softmax, "softmax along an axis"),
    ("log_softmax", lambda sp, v: [t - sp.log(sum(sp.exp(u) for u in v)) for t in v], "log-softmax along an axis"),
):
    register_op(OpSpec(
        _name, 1, "reduction",
        Vector(lambda sp, A, axis, fn=_fn: _along(A, axis, lambda v: fn(sp, v)), output_based=_name != "cumprod",
               products=_name == "cumprod", divides_output=_DIVIDES_OUTPUT.get(_name, ())),
        attrs=_AXIS_ATTR, shape=_along_shape(_name), doc=_doc,
    ))


def _square_shape(op: str, max_size: int) -> Callable[[tuple[Shape, ...], Attrs], Shape]:
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        (a,) = shapes
        if len(a) != 2 or a[0] != a[1] or not 1 <= a[0] <= max_size:
            raise ValueError(f"{op} takes a square matrix of size 1..{max_size}, got shape {a}.")
        return () if op == "det" else a

    return rule


def _det_of(A: Any) -> Any:
    """The determinant of a 1x1..3x3 object array by cofactors (arithmetic only)."""
    k = A.shape[0]
    if k == 1:
        return A[0, 0]
    if k == 2:
        return A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]
    return (A[0, 0] * (A[1, 1] * A[2, 2] - A[1, 2] * A[2, 1])
            - A[0, 1] * (A[1, 0] * A[2, 2] - A[1, 2] * A[2, 0])
            + A[0, 2] * (A[1, 0] * A[2, 1] - A[1, 1] * A[2, 0]))


def _det(ns: Any, A: Any) -> Any:
    import numpy as np

    out = np.empty((), dtype=object)
    out[()] = _det_of(A)
    return out


def _inv(ns: Any, A: Any) -> Any:
    import numpy as np

    det = _det_of(A)
    out = np.empty(A.shape, dtype=object)
    if A.shape[0] == 1:
        out[0, 0] = 1 / det
        return out
    out[0, 0], out[0, 1] = A[1, 1] / det, -A[0, 1] / det
    out[1, 0], out[1, 1] = -A[1, 0] / det, A[0, 0] / det
    return out


def _well_conditioned(args: tuple[Any, ...]) -> bool:
    import mpmath

    m = mpmath.matrix(args[0].tolist())
    try:
        det = mpmath.det(m)
    except ZeroDivisionError:
        return False
    scale = 1
    for i in range(m.rows):
        scale *= max(mpmath.sqrt(sum(m[i, j] ** 2 for j in range(m.cols))), mpmath.mpf(1e-300))
    # |det| / (product of row norms) > 1e-2: condition numbers up to about 100. Frameworks
    # solve by LU with pivoting, whose error grows with the condition number by constants
    # the oracle's Cramer's-rule error scale does not model (at 1e-3, JAX's solve Hessian
    # erred by 3x the 64-ulp bound on a matrix of condition 550).
    return abs(det) > 1e-2 * scale


register_op(OpSpec("det", 1, "linalg", Vector(_det), shape=_square_shape("det", 3),
                   doc="determinant of a square matrix (1x1..3x3)"))
register_op(OpSpec("inv", 1, "linalg", Vector(_inv), shape=_square_shape("inv", 2),
                   domain=_well_conditioned, doc="inverse of a well-conditioned square matrix (1x1, 2x2)"))


def _solve(ns: Any, A: Any, b: Any) -> Any:
    """x = A^-1 b by Cramer's rule (arithmetic only, so it runs on jets)."""
    import numpy as np

    det = _det_of(A)
    out = np.empty(b.shape, dtype=object)
    for i in range(A.shape[0]):
        Ai = A.copy()
        Ai[:, i] = b
        out[i] = _det_of(Ai) / det
    return out


def _solve_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    a, b = shapes
    if len(a) != 2 or a[0] != a[1] or not 1 <= a[0] <= 3 or b != (a[0],):
        raise ValueError(f"solve takes a square matrix of size 1..3 and a vector of its size, got {a} and {b}.")
    return b


def _cholesky(ns: Any, S: Any) -> Any:
    """The lower Cholesky factor, read from the lower triangle (as LAPACK does)."""
    import numpy as np

    k = S.shape[0]
    L = np.empty((k, k), dtype=object)
    L.fill(0)
    for j in range(k):
        L[j, j] = ns.sqrt(S[j, j] - sum(L[j, m] ** 2 for m in range(j)))
        for i in range(j + 1, k):
            L[i, j] = (S[i, j] - sum(L[i, m] * L[j, m] for m in range(j))) / L[j, j]
    return L


def _positive_definite(args: tuple[Any, ...]) -> bool:
    """Exactly symmetric (the derivative of the lower triangle alone is then every
    framework's) and positive definite with every pivot well above rounding."""
    import mpmath

    S = args[0]
    k = S.shape[0]
    if any(S[i, j] != S[j, i] for i in range(k) for j in range(i)):
        return False
    m = mpmath.matrix(S.tolist())
    for j in range(1, k + 1):
        minor = mpmath.det(m[:j, :j]) if j > 1 else m[0, 0]
        scale = max(abs(m[i, i]) for i in range(j)) ** j
        if not minor > 1e-6 * scale:
            return False
    return True


register_op(OpSpec("solve", 2, "linalg", Vector(_solve), shape=_solve_shape, domain=_well_conditioned,
                   doc="x with A x = b, A a well-conditioned square matrix (1x1..3x3), b a vector"))
register_op(OpSpec("cholesky", 1, "linalg", Vector(_cholesky), shape=_square_shape("cholesky", 3),
                   domain=_positive_definite,
                   doc="lower Cholesky factor of a symmetric positive definite matrix (1x1..3x3)"))


# Selections: max, min and sort choose entries, so they are linear wherever the choice
# is unique, and at a tie the one-sided derivatives differ.


def _sort_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    (a,) = shapes
    if not a or 0 in a or math.prod(a) > 8:
        raise ValueError(f"sort takes a non-empty array of at most 8 entries, got shape {a}.")
    return a


def _sort_row(v: list[Any], ties: Any) -> list[Any]:
    return [v[i] for i in ties.order(v, 0)]


register_op(OpSpec(
    "max", 1, "reduction",
    Selection(lambda sp, A, ties, axis, keepdims: _reduce(A, axis, keepdims, lambda v: v[ties.argmax(v, 0)]),
              linear=True),
    attrs=_REDUCE_ATTRS, shape=_small(_reduced_shape("max"), "max"), special=lambda attrs: (0.0,),
    special_names=("tie",), doc="largest entry (along an axis or whole, keepdims; special: a tie of the two largest)",
))
register_op(OpSpec(
    "min", 1, "reduction",
    Selection(lambda sp, A, ties, axis, keepdims: _reduce(A, axis, keepdims,
                                                          lambda v: v[ties.argmax([-t for t in v], 0)]),
              linear=True),
    attrs=_REDUCE_ATTRS, shape=_small(_reduced_shape("min"), "min"), special=lambda attrs: (0.0,),
    special_names=("tie",), doc="smallest entry (along an axis or whole, keepdims; special: a tie of the two smallest)",
))
register_op(OpSpec(
    "sort", 1, "reduction", Selection(lambda sp, A, ties: _along(A, -1, lambda v: _sort_row(v, ties)), linear=True),
    shape=_sort_shape, special=lambda attrs: (0.0,), special_names=("tie",),
    doc="ascending sort along the last axis (special: a tie)",
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
                   shape=_masked_shape("sum_where"),
                   doc="sum of the entries where a constant mask is 1 (whole or along an axis, keepdims)"))
register_op(OpSpec("mean_where", 1, "reduction", Structural(_mean_where), attrs=_MASK_ATTRS,
                   shape=_masked_shape("mean_where"),
                   doc="mean of the entries where a constant mask is 1 (whole or along an axis, keepdims)"))


# Linear ops (Structural): the oracle applies them to values and derivative slices alike.


def _attr_shape(fn: Callable[[Shape, Attrs], Shape]) -> Callable[[tuple[Shape, ...], Attrs], Shape]:
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        return fn(shapes[0], attrs)

    return rule


def _reshape_rule(a: Shape, attrs: Attrs) -> Shape:
    shape = attrs["shape"]
    if math.prod(shape) != math.prod(a) or any(s < 1 for s in shape):
        raise ValueError(f"reshape cannot turn shape {a} into {shape}.")
    return shape


def _need_ndim(op: str, lo: int, hi: int) -> Callable[[Shape, Attrs], Shape]:
    def rule(a: Shape, attrs: Attrs) -> Shape:
        if not lo <= len(a) <= hi:
            raise ValueError(f"{op} takes an array of {lo}..{hi} dimensions, got shape {a}.")
        return a

    return rule


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


def _diagonal_rule(a: Shape, attrs: Attrs) -> Shape:
    if len(a) != 2:
        raise ValueError(f"diagonal takes a matrix, got shape {a}.")
    return (min(a),)


def _trace_rule(a: Shape, attrs: Attrs) -> Shape:
    if len(a) != 2:
        raise ValueError(f"trace takes a matrix, got shape {a}.")
    return ()


def _cumsum_rule(a: Shape, attrs: Attrs) -> Shape:
    if _norm_axis(a, attrs["axis"], "cumsum") is None:
        raise ValueError("cumsum needs an axis.")
    return a


def _flip_rule(a: Shape, attrs: Attrs) -> Shape:
    if _norm_axis(a, attrs["axis"], "flip") is None:
        raise ValueError("flip needs an axis.")
    return a


def _roll_rule(a: Shape, attrs: Attrs) -> Shape:
    if _norm_axis(a, attrs["axis"], "roll") is None:
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


def _pad(xp: Any, a: Any, before: int, after: int) -> Any:
    out = xp.zeros(before + a.shape[0] + after, dtype=a.dtype)
    out[before: before + a.shape[0]] = a
    return out


for _name, _apply, _attrs, _rule, _doc in (
    ("reshape", lambda xp, a, shape: a.reshape(shape), (AttrSpec("shape", "int_tuple"),), _reshape_rule,
     "reshape to a shape of the same size"),
    ("transpose", lambda xp, a: a.T, (), _transpose_rule, "matrix transpose"),
    ("flip", lambda xp, a, axis: xp.flip(a, axis), _AXIS_ATTR, _flip_rule, "reverse along an axis"),
    ("slice", lambda xp, a, start, stop, step: a[start:stop:step],
     (AttrSpec("start", "int"), AttrSpec("stop", "int"), AttrSpec("step", "int")), _slice_rule,
     "a[start:stop:step] on the first axis (negative bounds and steps too)"),
    ("roll", lambda xp, a, shift, axis: xp.roll(a, shift, axis), (AttrSpec("shift", "int"), AttrSpec("axis", "axis")),
     _roll_rule, "cyclic shift along an axis"),
    ("tile", lambda xp, a, reps: xp.tile(a, reps), (AttrSpec("reps", "int"),), _tile_rule, "a vector repeated whole"),
    ("repeat", lambda xp, a, repeats: xp.repeat(a, repeats), (AttrSpec("repeats", "int"),), _repeat_rule,
     "each entry repeated"),
    ("pad", _pad, (AttrSpec("before", "int"), AttrSpec("after", "int")), _pad_rule, "zero padding of a vector"),
    ("broadcast_to", lambda xp, a, shape: xp.broadcast_to(a, shape).copy(), (AttrSpec("shape", "int_tuple"),),
     _broadcast_rule, "broadcast to a larger shape"),
    ("diagonal", lambda xp, a: xp.diagonal(a).copy(), (), _diagonal_rule, "the main diagonal of a matrix"),
    ("trace", lambda xp, a: xp.trace(a), (), _trace_rule, "the trace of a matrix"),
    ("cumsum", lambda xp, a, axis: xp.cumsum(a, axis=axis), _AXIS_ATTR, _cumsum_rule, "cumulative sum along an axis"),
):
    register_op(OpSpec(_name, 1, "shape" if _name not in ("trace", "diagonal", "cumsum") else
                       ("linalg" if _name != "cumsum" else "reduction"),
                       Structural(_apply), attrs=_attrs, shape=_attr_shape(_rule), doc=_doc))


def _same_shapes(op: str, stack: bool) -> Callable[[tuple[Shape, ...], Attrs], Shape]:
    def rule(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
        a, b = shapes
        if len(a) != 1 or len(b) != 1 or (stack and a != b):
            raise ValueError(f"{op} takes two vectors{' of one length' if stack else ''}, got {a} and {b}.")
        return (2, a[0]) if stack else (a[0] + b[0],)

    return rule


register_op(OpSpec("concatenate", 2, "shape", Structural(lambda xp, a, b: xp.concatenate([a, b])),
                   shape=_same_shapes("concatenate", False), doc="two vectors end to end"))
register_op(OpSpec("stack", 2, "shape", Structural(lambda xp, a, b: xp.stack([a, b])),
                   shape=_same_shapes("stack", True), doc="two vectors of one length as the rows of a matrix"))


def _dot_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    a, b = shapes
    if len(a) != 1 or a != b:
        raise ValueError(f"dot takes two vectors of one length, got {a} and {b}.")
    return ()


def _outer_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    a, b = shapes
    if len(a) != 1 or len(b) != 1:
        raise ValueError(f"outer takes two vectors, got {a} and {b}.")
    return (a[0], b[0])


register_op(OpSpec("dot", 2, "linalg", Bilinear(lambda xp, a, b, mul: mul(a, b).sum()), shape=_dot_shape,
                   doc="inner product of two vectors"))
register_op(OpSpec("outer", 2, "linalg", Bilinear(lambda xp, a, b, mul: mul(a[:, None], b[None, :])),
                   shape=_outer_shape, doc="outer product of two vectors"))
