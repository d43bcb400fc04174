"""Symbolic derivative rules of elementwise ops, compiled once per op with SymPy, and their
application to one element: value, gradient, Hessian and error scales by the chain rule.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from hessdiff.harness.oracle import arb, state
from hessdiff.harness.oracle.jets import (ERROR_FACTOR, _ZERO, _abs_float, _add_outer, _add_scaled, _err_abs, _fabs, _Jet,
                                          _support, _times, _with_error, _zeros_obj, column)
from hessdiff.harness.oracle.result import OutOfDomain
from hessdiff.harness.ops import Elementwise, OpSpec, Piecewise, fixed_integer, get_op


@dataclass(frozen=True)
class _Rule:
    """Lambdified f and its partials up to third order, for one smooth expression."""

    f: Callable[..., Any]
    d1: tuple[Callable[..., Any], ...]
    d2: tuple[tuple[Callable[..., Any], ...], ...]
    d3: tuple[tuple[tuple[Callable[..., Any], ...], ...], ...]
    # For a unary op whose frameworks compute derivatives from its output (tanh' as
    # 1 - y*y): the magnitude of the terms those formulas add, orders 1..3.
    rule_scale: tuple[Callable[..., Any], ...] | None = None
    rule_frameworks: tuple[str, ...] = ()  # whose formula it is (``RuleScale.frameworks``)
    value_terms: Callable[..., Any] | None = None  # ``RuleScale.value``: the value formula's terms
    scale_above_eps: bool = False  # ``RuleScale.above_eps``: no formula terms where |a| <= eps
    # Per argument, whether f's first or second derivative divides by a function of it
    # that vanishes where the arguments do (1/a**2, a/sqrt(a**2 + b**2)): only there does
    # an argument multiplied by itself underflow into a 0 that the frameworks' formulas
    # divide by (``_squares_underflow``). exp(-a**2) in erf' or 1 - tanh(a)**2 underflow
    # harmlessly, to a term of 1 or 0.
    divides: tuple[bool, ...] = ()
    # Whether the expression exponentiates an argument (exp, sinh, a**b with b traced):
    # in exact arithmetic exp of an integer-valued 1e300 is a multiplication of numbers
    # with millions of digits that no signal interrupts.
    exponential: bool = False
    # Per first derivative (by argument) and second derivative (by pair): the products of
    # two or more arguments in its numerator, each as (product, its share of the
    # derivative), and the largest such product's degree (``_flushed_products``).
    products1: tuple[tuple[tuple[Callable[..., Any], Callable[..., Any]], ...], ...] = ()
    products2: tuple[tuple[tuple[tuple[Callable[..., Any], Callable[..., Any]], ...], ...], ...] = ()
    product_degree: int = 0


# Frameworks whose arithmetic on CPU flushes a subnormal result to 0 (XLA sets FTZ/DAZ):
# measured, 1e-160 * 1e-160 in float64 is 0.0 under JAX (jit or not) and 1e-320 under
# PyTorch and MLX.
FLUSHES_SUBNORMALS = frozenset({"jax", "equinox"})
# A numerator with more operations than this is not searched for products (expanding it
# costs more than the rule's compilation).
_PRODUCT_OPS_LIMIT = 60


# An exponential of an argument past this is beyond every float format (e**1e5 has 43430
# digits in its exponent's place): the oracle declines it rather than compute it exactly.
EXPONENT_LIMIT = 1e5


def _sympy() -> Any:
    import sympy

    return sympy


def _compile(expr_builder: Callable[..., Any], arity: int, int_attrs: dict[str, int],
             float_attrs: Sequence[str]) -> tuple[Any, ...]:
    sp = _sympy()
    args = sp.symbols(f"a0:{arity}", real=True)
    fattrs = {name: sp.Symbol(f"attr_{name}", real=True) for name in float_attrs}
    return sp, args, fattrs, expr_builder(sp, *args, **int_attrs, **fattrs)


def _lambdify(sp: Any, params: Sequence[Any], expr: Any) -> Callable[..., Any]:
    """``expr`` as an mpmath function of ``params``; the functions ``arb.FUNCTIONS`` names
    (polygamma) through Arb, which gives the same digits many times faster."""
    return sp.lambdify(params, expr, modules=[arb.FUNCTIONS, "mpmath"])


def _rule_from_expr(sp: Any, args: Sequence[Any], params: Sequence[Any], expr: Any) -> _Rule:
    n = len(args)
    d1 = [sp.diff(expr, a) for a in args]
    d2 = [[sp.diff(d1[i], args[j]) for j in range(n)] for i in range(n)]
    d3 = [[[sp.diff(d2[i][j], args[k]) for k in range(n)] for j in range(n)] for i in range(n)]
    lam = functools.partial(_lambdify, sp, params)
    exponential = bool(expr.atoms(sp.exp, sp.sinh, sp.cosh, sp.tanh)) or any(
        p.exp.free_symbols & set(args) for p in expr.atoms(sp.Pow))
    products1 = [_product_terms(sp, e, args) for e in d1]
    products2 = [[_product_terms(sp, e, args) for e in row] for row in d2]
    degree = max((d for terms in [*products1, *(t for row in products2 for t in row)] for _, _, d in terms),
                 default=0)
    return _Rule(
        lam(expr),
        tuple(lam(e) for e in d1),
        tuple(tuple(lam(e) for e in row) for row in d2),
        tuple(tuple(tuple(lam(e) for e in col) for col in row) for row in d3),
        exponential=exponential,
        divides=tuple(_divides_by_vanishing(sp, (d1[i], d2[i][i]), args[i], args) for i in range(n)),
        products1=tuple(tuple((lam(t), lam(share)) for t, share, _ in terms) for terms in products1),
        products2=tuple(tuple(tuple((lam(t), lam(share)) for t, share, _ in terms) for terms in row)
                        for row in products2),
        product_degree=degree,
    )


def _product_terms(sp: Any, expr: Any, args: Sequence[Any]) -> list[tuple[Any, Any, int]]:
    """The terms of ``expr``'s numerator that multiply two or more arguments, as (term,
    term / denominator, degree), where the numerator is a polynomial in the arguments.

    A framework forms such a product on the way to the derivative (arctan2's second
    derivative in a is -2ab / (a**2 + b**2)**2); where it lies below the smallest normal
    and the framework flushes subnormals, the term is lost while the derivative, divided
    by a small denominator, is not small (JAX's H of arctan2(x, c) at a = 1.7e-73,
    c = -5.8e-243 in float64 is 0 where the truth is 2.4e-24: 2ab = 1.9e-315)."""
    num, den = sp.fraction(sp.together(expr), exact=True)
    if not num.free_symbols & set(args) or sp.count_ops(num) > _PRODUCT_OPS_LIMIT \
            or not num.is_polynomial(*args):
        return []
    terms = []
    for term in sp.Add.make_args(sp.expand(num)):
        degree = sp.Poly(term, *args).total_degree()
        if degree >= 2:
            terms.append((term, term / den, int(degree)))
    return terms


def _divides_by_vanishing(sp: Any, derivatives: Sequence[Any], arg: Any, args: Sequence[Any]) -> bool:
    """Whether one of ``derivatives`` has a denominator in ``arg`` that is 0 (or
    undefined) where every argument is 0 (``_Rule.divides``)."""
    at_zero = {a: 0 for a in args}
    for expr in derivatives:
        _, den = sp.fraction(sp.together(expr), exact=True)
        if arg in den.free_symbols:
            value = den.subs(at_zero)
            if value == 0 or value.has(sp.zoo, sp.nan, sp.oo):
                return True
    return False


def _split_attrs(spec: OpSpec, attrs: dict[str, Any]) -> tuple[dict[str, int], tuple[str, ...]]:
    ints = {a.name: attrs[a.name] for a in spec.attrs if a.kind != "float"}
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    return ints, floats


def _fixed_integers(spec: OpSpec, vals: Sequence[Any], varying: Sequence[bool]) -> tuple[tuple[int, int], ...]:
    """The ``integer_args`` that are constant integers here, as (position, value): the
    rule is differentiated with them substituted, so a**3 is the polynomial it is at
    a <= 0, not a**b with its log a."""
    fixed = []
    for p in spec.integer_args:
        v = vals[p]
        if not varying[p] and fixed_integer(v):
            fixed.append((p, int(v)))
    return tuple(fixed)


@functools.lru_cache(maxsize=None)
def _smooth_rule(op: str, int_attrs: tuple[tuple[str, Any], ...], fixed: tuple[tuple[int, int], ...] = ()) -> _Rule:
    """The rule of elementwise ``op``; ``fixed`` substitutes constant integer arguments
    (see ``_fixed_integers``)."""
    spec = get_op(op)
    assert isinstance(spec.math, Elementwise)
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    sp, args, fattrs, expr = _compile(spec.math.expr, spec.arity, dict(int_attrs), floats)
    if fixed:
        expr = expr.subs({args[p]: sp.Integer(v) for p, v in fixed})
    params = [*args, *fattrs.values()]
    rule = _rule_from_expr(sp, args, params, expr)
    if spec.rule_scale is not None:
        scales = spec.rule_scale.scale(sp, *args, **dict(int_attrs), **fattrs)
        rule = dataclasses.replace(rule, rule_scale=tuple(_lambdify(sp, params, e) for e in scales),
                                   rule_frameworks=spec.rule_scale.frameworks,
                                   scale_above_eps=spec.rule_scale.above_eps)
        if spec.rule_scale.value is not None:
            terms = spec.rule_scale.value(sp, *args, **dict(int_attrs), **fattrs)
            rule = dataclasses.replace(rule, value_terms=_lambdify(sp, params, sp.sympify(terms)))
    return rule


@functools.lru_cache(maxsize=None)
def _switch_rules(op: str, int_attrs: tuple[tuple[str, Any], ...]) -> tuple[Callable[..., Any], ...]:
    spec = get_op(op)
    assert isinstance(spec.math, Piecewise)
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    sp = _sympy()
    args = sp.symbols(f"a0:{spec.arity}", real=True)
    fattrs = {name: sp.Symbol(f"attr_{name}", real=True) for name in floats}
    switches = spec.math.switches(sp, *args, **dict(int_attrs), **fattrs)
    return tuple(_lambdify(sp, [*args, *fattrs.values()], s) for s in switches)


@functools.lru_cache(maxsize=None)
def _piece_rule(op: str, int_attrs: tuple[tuple[str, Any], ...], signs: tuple[int, ...]) -> _Rule:
    spec = get_op(op)
    assert isinstance(spec.math, Piecewise)
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    sp = _sympy()
    args = sp.symbols(f"a0:{spec.arity}", real=True)
    fattrs = {name: sp.Symbol(f"attr_{name}", real=True) for name in floats}
    expr = sp.sympify(spec.math.piece(sp, signs, *args, **dict(int_attrs), **fattrs))
    params = [*args, *fattrs.values()]
    rule = _rule_from_expr(sp, args, params, expr)
    if spec.rule_scale is not None:  # a piece's formula scale depends on the piece
        scales = spec.rule_scale.scale(sp, signs, *args, **dict(int_attrs), **fattrs)
        rule = dataclasses.replace(rule, rule_scale=tuple(_lambdify(sp, params, sp.sympify(e)) for e in scales),
                                   rule_frameworks=spec.rule_scale.frameworks)
    return rule


_GUARD_DIGITS = 40
_MAX_DIGITS = 4000


def _stable(fn: Callable[..., Any], point: list[Any]) -> Any:
    """``fn(*point)`` to the working precision, whatever cancellation is inside ``fn``.

    A rule as written can cancel (``log(1 + exp(a))`` is 0 at 50 digits for a = -270;
    softplus'' is a difference of two numbers near 1 for a = 200), so it is evaluated
    again with more digits, and with more still until two evaluations agree to the
    working precision: the oracle's digits are guaranteed, not hoped for.
    """
    if state.MEMO is not None:
        key = (id(fn), mpmath.mp.dps, tuple(point))
        if key not in state.MEMO:
            state.MEMO[key] = _stable_uncached(fn, point)
        return state.MEMO[key]
    return _stable_uncached(fn, point)


def _stable_uncached(fn: Callable[..., Any], point: list[Any]) -> Any:
    working = mpmath.mp.dps
    value = fn(*point)
    # An exact 0 may be total cancellation (log(1 + 1e-117) at 90 digits is 0 too):
    # confirm a zero with many more digits.
    digits = working + _GUARD_DIGITS if value != 0 else _MAX_DIGITS // 4
    while True:
        with mpmath.workdps(digits):
            better = fn(*point)
        if _agrees_to(value, better, working - 10):
            return +better  # rounded back to the working precision
        if digits >= _MAX_DIGITS:
            return +better
        value, digits = better, min(2 * digits, _MAX_DIGITS)


def _agrees_to(a: Any, b: Any, digits: int) -> bool:
    if mpmath.isnan(a) or mpmath.isnan(b) or mpmath.isinf(a) or mpmath.isinf(b):
        return (mpmath.isnan(a) and mpmath.isnan(b)) or a == b
    if a == b:
        return True
    return abs(a - b) <= abs(b) * mpmath.mpf(10) ** (-digits)


def _apply_rule(rule: _Rule, point: list[Any], args: list[_Jet], idx: tuple[int, ...],
                derivs: list[bool], framework: str | None = None, eps: float = 0.0,
                limits: tuple[float, float] = (0.0, 0.0), node: int | None = None,
                unit: float = 0.0) -> tuple[Any, ...]:
    """One element of y = f(args): value, gradient, Hessian and their error scales.

    ``eps``: below it, a rule scale ``above_eps`` does not apply. ``limits``: the dtype's
    unit roundoff and smallest normal, where the framework's formula may leave its range
    (0: not modelled); ``node``: the node, noted in ``state.UNDERFLOWS`` where it does.
    ``unit``: an argument derivative's own error per unit of its error scale
    (``jets.second_order_unit``; 0: first-order scales only)."""
    k = len(args)
    if rule.exponential and any(abs(v) > EXPONENT_LIMIT for v in point):
        raise OutOfDomain("an exponential of an argument beyond every float format's range "
                          f"(|argument| > {EXPONENT_LIMIT:g}): the oracle declines to compute it exactly")
    value = _stable(rule.f, point)
    vm = [float(args[i].vm[idx]) for i in range(k)]
    d1 = [_stable(rule.d1[i], point) if derivs[i] else _ZERO for i in range(k)]
    active = [i for i in range(k) if derivs[i]]
    inactive = [i for i in range(k) if not derivs[i]]
    # A constant argument is exact in derivatives but not in value: the framework rounded
    # the constant subexpression that made it (exp(c)**2 + c2 - c3 cancels to a few ulps
    # of 6), so its error moves this value and, through the next derivative, the
    # derivatives. Plain-precision magnitudes suffice for a scale.
    value_scale = _fabs(value) + sum(_fabs(d1[i]) * vm[i] for i in active) + sum(
        _magnitude(rule.d1[i], point) * vm[i] for i in inactive)
    if rule.value_terms is not None and (not rule.rule_frameworks or framework in rule.rule_frameworks):
        value_scale = value_scale + _fabs(rule.value_terms(*point))
    if not active:
        return value, None, None, value_scale, None, None
    d2 = {(i, j): _stable(rule.d2[i][j], point) for i in active for j in active}
    state.LOCAL_PEAK[0] = max(state.LOCAL_PEAK[0], *(_fabs(d1[i]) for i in active), *(_fabs(d) for d in d2.values()))
    d3 = {(i, j, m): rule.d3[i][j][m](*point) for i in active for j in active for m in range(k)}
    g = {i: args[i].g[idx] for i in active}
    h = {i: args[i].h[idx] for i in active}
    gm = {i: args[i].gm[idx] for i in active}
    hm = {i: args[i].hm[idx] for i in active}
    gabs = {i: args[i].ga[idx] for i in active}  # every argument jet is ``_broadcast``, which sets them
    habs = {i: args[i].ha[idx] for i in active}
    grad = _zeros_obj(g[active[0]].shape)
    hess = _zeros_obj(h[active[0]].shape)
    support = {i: _support(g[i]) for i in active}
    for i in active:
        _add_scaled(grad, d1[i], g[i], support[i])
        _add_scaled(hess, d1[i], h[i])
    # The second index follows the forward-mode rules' gradients (``jets.column``): the
    # same as g unless the modes resolve a kink differently.
    gc = {i: column(args[i])[idx] for i in active}
    support_c = {i: support[i] if args[i].gc is None else _support(gc[i]) for i in active}
    for i in active:
        for j in active:
            _add_outer(hess, d2[i, j], g[i], gc[j], support[i], support_c[j])
    # Error scales: |d| grows by the second derivative times the argument's own error.
    # The error of a derivative rule: its own rounding (or, for rules computed from the
    # op's output, the terms that formula adds) plus the argument's error times the next
    # derivative.
    if rule.rule_scale is not None and (not rule.rule_frameworks or framework in rule.rule_frameworks) \
            and not (rule.scale_above_eps and abs(point[0]) <= eps):
        s1, s2, s3, flushed = _flushed_terms([r(*point) for r in rule.rule_scale], *limits)
        if flushed and node is not None and state.UNDERFLOWS is not None:
            state.UNDERFLOWS.append(node)
    else:
        s1 = s2 = s3 = 0.0
    f1, f2 = _flushed_products(rule, point, active, limits[1])
    if framework in FLUSHES_SUBNORMALS and (f1 or f2):
        # The term lost is the error: twice it, in units of the judge's bound (its factor
        # times the unit roundoff), leaves room for the rounding of what is left.
        unit_error = ERROR_FACTOR * limits[0] / 2
        s1 = {i: max(s1, f1.get(i, 0.0) / unit_error) for i in active}
        s2 = {key: max(s2, f2.get(key, 0.0) / unit_error) for key in d2}
    else:
        s1 = dict.fromkeys(active, s1)
        s2 = dict.fromkeys(d2, s2)
    d1m = {
        i: max(_fabs(d1[i]), s1[i]) + sum(_fabs(d2.get((i, j), _ZERO)) * vm[j] for j in active)
        + sum(_magnitude(rule.d2[i][j], point) * vm[j] for j in inactive)
        for i in active
    }
    d2m = {
        (i, j): max(_fabs(d2[i, j]), s2[i, j]) + sum(_fabs(d3[i, j, m]) * vm[m] for m in range(k))
        for i in active for j in active
    }
    x = _times
    # The magnitudes an error multiplies carry their own error too (``unit``):
    # d1 g errs by err(d1) (|g| + err(g)) + |d1| err(g).
    gabs = {i: _with_error(gabs[i], gm[i], unit) for i in active}
    gcabs = {i: gabs[i] if args[i].gc is None else _with_error(_abs_float(gc[i]), gm[i], unit) for i in active}
    habs = {i: _with_error(habs[i], hm[i], unit) for i in active}
    grad_scale = sum(x(d1m[i], gabs[i]) + x(_fabs(d1[i]), gm[i]) for i in active)
    hess_scale = sum(x(d1m[i], habs[i]) + x(_fabs(d1[i]), hm[i]) for i in active)
    for i in active:
        for j in active:
            hess_scale = hess_scale + x(d2m[i, j], np.outer(gabs[i], gcabs[j])) + x(_fabs(d2[i, j]), (
                x(gm[i][:, None], gcabs[j][None, :]) + x(gabs[i][:, None], gm[j][None, :])))
    return value, grad, hess, value_scale, grad_scale, hess_scale


def _flushed_products(rule: _Rule, point: list[Any], active: list[int],
                      tiny: float) -> tuple[dict[int, float], dict[tuple[int, int], float]]:
    """The shares of the first and second derivatives (by argument, by pair) made of a
    product of arguments below ``tiny`` (``_product_terms``), where a framework that
    flushes subnormals loses them; noted in ``state.FLUSHED_PRODUCTS``.

    Computed only where some argument is small enough for such a product: a product of
    d factors lies below tiny only if one factor does below tiny**(1/d)."""
    if not rule.product_degree or not tiny:
        return {}, {}
    small = tiny ** (1.0 / rule.product_degree)
    if not any(v != 0 and abs(v) < small for v in point[:len(rule.d1)]):
        return {}, {}

    def lost(terms: tuple[tuple[Callable[..., Any], Callable[..., Any]], ...]) -> float:
        total = 0.0
        for product, share in terms:
            value = abs(product(*point))  # exact: a float would flush it itself
            if 0 < value < tiny:
                total += _magnitude(share, point)
        return total

    f1 = {i: lost(rule.products1[i]) for i in active}
    f2 = {(i, j): lost(rule.products2[i][j]) for i in active for j in active}
    f1 = {k: v for k, v in f1.items() if v}
    f2 = {k: v for k, v in f2.items() if v}
    if f1 or f2:
        state.FLUSHED_PRODUCTS[0] = True
    return f1, f2


def _flushed_terms(terms: list[Any], eps: float, tiny: float) -> tuple[float, float, float, bool]:
    """The rule scales of orders 1, 2, 3 (float, in units of eps; ``terms``: their exact
    values) where the framework's formula may leave the dtype's range, and whether it does.

    A rule scale's order-k terms are of the size 1/(1 + |a|)**k where the formula is a
    quotient, computed from (1 + |a|)**k itself: where that term lies below the smallest
    normal, the power overflowed (or the term flushed), and the terms of the order below,
    which it cancels, lose their partner: that order is then accurate only to its terms'
    full size, not eps times it. (JAX's revrev H[0, 0] of softsign(expm1(x0)) at x0 =
    300 is -2.0 in float64 where the truth is -5.1e-131: a / (1 + |a|) at a = 1.9e130,
    whose third power overflows, differentiated twice.)"""
    s1, s2, s3 = (_err_abs(t) for t in terms)  # exact: a float would flush them itself
    flushed = False
    if tiny > 0 and eps > 0:
        if 0 < s3 < tiny or 0 < s2 < tiny:
            s2, flushed = s2 / eps, True
        if 0 < s2 * eps < tiny or 0 < s1 < tiny:
            s1, flushed = s1 / eps, True
    return _fabs(s1), _fabs(s2), _fabs(s3), flushed


def _magnitude(fn: Any, point: list[Any]) -> float:
    """|fn(point)| at working precision, for an error scale (never raises)."""
    try:
        return _fabs(fn(*point))
    except (ZeroDivisionError, ValueError, OverflowError, TypeError):
        return float(np.finfo(np.float64).max)


