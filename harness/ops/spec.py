"""An op entry (``OpSpec``), its attrs (``AttrSpec``), argument domains, and the registry
that checks an entry when it is added (``register_op``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hessdiff.harness.ops.domains import DOMAINS, integer_valued
from hessdiff.harness.ops.kinds import Elementwise, Math, Piecewise, RuleScale, Selection
from hessdiff.harness.ops.shapes import Attrs, Shape, broadcast_shape

__all__ = ["CATALOGUE", "FIXED_INTEGER_LIMIT", "REQUIRED", "AttrSpec", "CatalogueError", "OpSpec", "arrange",
           "fixed_integer", "get_op", "in_arg_domain", "piecewise_op", "register_op", "smooth_op", "unary_op"]


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
            ``"off_poles"`` (not 0, -1, -2, ...) or None: a name in
            ``hessdiff.harness.ops.domains.DOMAINS``, whose one description the generator
            (constants, guards), the oracle (edges) and ``hessdiff ops --domains`` read;
            it is the domain when ``domain`` is not given.
        integer_args: the arguments that, when a constant holding an integer, widen the
            others' domains (a**3 is defined and smooth for every real a, a**b for a
            non-integer b only for a > 0). The oracle differentiates the op with such a
            constant substituted exactly (a polynomial or a reciprocal power), and
            ``domains_at`` gives each argument's domain for the values and pattern at hand.
        integer_typed_args: the ``integer_args`` the frameworks take only as an integer
            type, never a float: a constant Python int or framework int32/int64 array
            (``jnp.ldexp(x, 1.0)`` is a TypeError). The IR refuses anything else there, and
            the generator draws nothing else.
        mask_args: the arguments a framework bool array may take (where's condition):
            a constant a user writes as ``jnp.array([True, False])``, lowered as it is
            (``where(mask, a, b)``, not ``where(c > 0, a, b)``).
        formula_peak: for an op every framework computes through a larger intermediate,
            ``formula_peak(sp, *args)`` is that intermediate's magnitude: past the dtype's
            range the framework's value and derivatives are inf or NaN though the op's own
            are not, and the point is unjudged, as where the op's value overflows (i0 and
            i1 as exp(|a|) * i0e(a): torch.func's Hessian of sum(i0(x)) in float32 at
            x5 = 89 is NaN at H[5, 0], exp(89) being past float32's range and i0(89) = 1.9e37
            not).
        recipe: how the generator draws the op's arguments and attrs, where an
            elementwise op's way (each argument from the input, an intermediate or a
            constant) does not fit: ``recipe(kit, name, aim)`` adds the op's nodes through
            the generator's kit (``hessdiff.harness.op_args.Kit``: its draws and the
            nodes built so far), ``aim`` being the special value to land on, or None.
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
    integer_typed_args: tuple[int, ...] = ()
    mask_args: tuple[int, ...] = ()
    formula_peak: Callable[..., Any] | None = None
    recipe: Callable[[Any, str, int | None], None] | None = None

    @property
    def smooth(self) -> bool:
        """Whether the op has no kinks (its math is not ``Piecewise``)."""
        return not isinstance(self.math, Piecewise)

    @property
    def elementwise(self) -> bool:
        """Whether the op maps its arguments entry by entry (``Elementwise`` or ``Piecewise``)."""
        return isinstance(self.math, (Elementwise, Piecewise))

    @property
    def choosing(self) -> bool:
        """Whether the op chooses among entries (``Selection``: max, sort, the norms)."""
        return isinstance(self.math, Selection)

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
        return all(DOMAINS[d].contains(v) for d, v in zip(self.domains_at(args, varying), args) if d is not None)

    def arg_in_domain(self, position: int, value: Any, domains: tuple[str | None, ...] | None = None) -> bool:
        """Whether argument ``position`` alone may take ``value`` (its entry of
        ``domains``, by default ``arg_domains``): the generator aims an argument at a
        domain edge from the inside."""
        domains = self.arg_domains if domains is None else domains
        domain = domains[position] if position < len(domains) else None
        return domain is None or bool(DOMAINS[domain].contains(value))

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
    if not set(spec.integer_typed_args) <= set(spec.integer_args):
        raise CatalogueError(f"op {spec.name!r}: integer_typed_args {spec.integer_typed_args} must be among its "
                             f"integer_args {spec.integer_args}.")
    for d in spec.arg_domains:
        if d is not None and d not in DOMAINS:
            raise CatalogueError(f"op {spec.name!r}: arg domain {d!r} is not one of {sorted(DOMAINS)}.")
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


# The largest constant integer an ``integer_args`` argument lifts the other arguments'
# domains for: the oracle differentiates a**b with such a b substituted (a polynomial of
# degree up to 64, defined at a <= 0); beyond it, the generic a**b rule, on a > 0 only.
FIXED_INTEGER_LIMIT = 64


def fixed_integer(value: Any) -> bool:
    """Whether a constant ``integer_args`` value is an integer the op's rule is taken at
    (``FIXED_INTEGER_LIMIT``): generation, domains and the oracle share this one test."""
    return integer_valued(value) and abs(value) <= FIXED_INTEGER_LIMIT


def in_arg_domain(domain: str | None, value: float) -> bool:
    """Whether ``value`` lies in the argument domain named ``domain`` ("pos", "unit", ...;
    None: everywhere)."""
    return domain is None or bool(DOMAINS[domain].contains(value))


def get_op(name: str) -> OpSpec:
    """The catalogue entry for ``name``; raise ``KeyError`` with the known names."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {', '.join(sorted(CATALOGUE))}.") from None



def arrange(order: tuple[str, ...]) -> None:
    """Put the catalogue in ``order``, the ops it does not name after them as registered.

    The catalogue's order is the order programs are drawn in (``strategies.DEFAULT_OPS``),
    so it is kept as it was when the catalogue was one module: a seed keeps drawing the
    same programs. A new op goes at the end, where it changes no earlier draw."""
    unknown = [name for name in order if name not in CATALOGUE]
    if unknown:
        raise CatalogueError(f"the catalogue order names ops that are not registered: {unknown}.")
    rest = [name for name in CATALOGUE if name not in order]
    entries = {name: CATALOGUE[name] for name in (*order, *rest)}
    CATALOGUE.clear()
    CATALOGUE.update(entries)


# --- shorthands for the catalogue's modules -------------------------------------------


def smooth_op(name: str, expr: Callable[..., Any], doc: str, group: str = "unary", **kw: Any) -> None:
    """Register a smooth unary op (``Elementwise``); ``kw`` are ``OpSpec`` fields."""
    register_op(OpSpec(name, 1, group, Elementwise(expr), doc=doc, **kw))


def unary_op(name: str, expr: Callable[..., Any], doc: str, special: tuple[float, ...] = (),
             group: str = "unary", **kw: Any) -> None:
    """Register a smooth unary op with fixed special values."""
    register_op(OpSpec(name, 1, group, Elementwise(expr), special=lambda attrs, s=special: s, doc=doc, **kw))


def piecewise_op(name: str, arity: int, switches: Callable[..., list[Any]], piece: Callable[..., Any],
                 special: tuple[float, ...], doc: str, group: str = "unary", **kw: Any) -> None:
    """Register a ``Piecewise`` op with fixed special values (its switches' zeros)."""
    register_op(OpSpec(name, arity, group, Piecewise(switches, piece), special=lambda attrs, s=special: s,
                       doc=doc, **kw))
