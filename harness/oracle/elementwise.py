"""Elementwise ops, smooth and piecewise: each element through its op's derivative rule,
and at a kink through every piece the element may take; domain edges and special values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mpmath
import numpy as np

from hessdiff.harness.oracle import state
from hessdiff.harness.oracle.jets import (_NAN, _average, _broadcast, _depends, _fabs, _Jet, _merge_into,
                                          _undefined_derivatives, _zeros_obj)
from hessdiff.harness.oracle.result import Kink, OutOfDomain
from hessdiff.harness.oracle.rules import (EXPONENT_LIMIT, _apply_rule, _fixed_integers, _piece_rule, _Rule,
                                           _smooth_rule, _split_attrs, _switch_rules)
from hessdiff.harness.ops import OpSpec
from hessdiff.harness.ops.domains import DOMAINS

if TYPE_CHECKING:
    from hessdiff.harness.oracle.evaluator import _Evaluator

__all__ = ["SPECIAL_ULPS", "elementwise", "elementwise_curved", "elementwise_value"]


def elementwise(ev: _Evaluator, node: int, spec: OpSpec, attrs: dict[str, Any], args: list[_Jet],
                shape: tuple[int, ...], piecewise: bool = False) -> _Jet:
    """An elementwise op (``Elementwise``; ``Piecewise`` with ``piecewise``), element by element."""
    n = ev.n
    ints, floats = _split_attrs(spec, attrs)
    int_key = tuple(sorted(ints.items()))
    fvals = [mpmath.mpf(float(np.float64(attrs[name]).astype(ev.dtype))) for name in floats]
    bargs = [_broadcast(a, shape, n) for a in args]
    derivs = [a.g is not None for a in args]
    any_deriv = any(derivs)
    out = _Jet(
        _zeros_obj(shape), _zeros_obj(shape + (n,)) if any_deriv else None,
        _zeros_obj(shape + (n, n)) if any_deriv else None,
        np.zeros(shape), np.zeros(shape + (n,)) if any_deriv else None,
        np.zeros(shape + (n, n)) if any_deriv else None,
    )
    specials = spec.special(attrs)
    switch_specials = piecewise and len(specials) == len(
        _switch_rules(spec.name, int_key))
    ev.switch_specials = switch_specials
    # An argument a framework may see at another value than the exact one: traced, or
    # a constant computed (and rounded) from other constants.
    varying = tuple(d or ev.program.nodes[a].kind != "const"
                    for d, a in zip(derivs, ev.program.nodes[node].args))
    for idx in np.ndindex(*shape):
        vals = [a.v[idx] for a in bargs]
        point = [*vals, *fvals]
        if not spec.in_domain(tuple(vals), varying):
            raise OutOfDomain(
                f"node {node} ({spec.name}) is outside its domain at "
                f"{[mpmath.nstr(v, 8) for v in vals]}"
            )
        if specials and not switch_specials:
            _special_hits(ev, spec, specials, vals[spec.special_arg], bargs[spec.special_arg].vm[idx])
        if spec.formula_peak is not None:
            state.LOCAL_PEAK[0] = max(state.LOCAL_PEAK[0], _fabs(spec.formula_peak(mpmath, *vals)))
        edge = bool(spec.arg_domains and _near_edge(ev, spec.domains_at(tuple(vals), varying), vals, bargs, idx)) \
            or (spec.domain is not None and _near_excluded_point(ev, spec, vals, bargs, idx))
        if not piecewise:
            rule = _smooth_rule(spec.name, int_key, _fixed_integers(spec, vals, varying))
            # At an edge the derivatives are undefined: only the value is computed (the
            # derivatives there can cost minutes: lgamma's third, psi(2, a), at a =
            # -3e38, within rounding of a pole, held the oracle to its 20 s timeout).
            results = [_apply_rule(rule, point, bargs, idx, [False] * len(derivs) if edge else derivs,
                                   ev.framework, float(np.finfo(ev.dtype).eps), ev.limits, node,
                                   ev.second_order)]
            _squares_underflow(ev, rule, vals, bargs, idx)
            undefined_switch = False
        else:
            results, undefined_switch = _pieces(ev, node, spec, int_key, point, bargs, idx, derivs)
        if len(results) > 1 and ev.resolution is not None and not undefined_switch:
            results = [_average(results)]
        if edge:
            results = [_undefined_derivatives(results[0], bargs, idx, derivs, n)]
        _merge_into(out, idx, results)
    return out


def _squares_underflow(ev: _Evaluator, rule: _Rule, vals: list[Any], bargs: list[_Jet],
                       idx: tuple[int, ...]) -> None:
    """Note the inputs behind a traced argument whose square underflows the dtype.

    The frameworks' derivative formulas multiply an argument by itself where the
    mathematics does not (hypot's and arctan2's a*a + b*b, reciprocal's 1/(x*x)), so
    below sqrt(tiny) they divide 0 by 0 (JAX's Hessian of hypot(x, x) at x = 1e-30 in
    float32 is NaN where the truth is 0), and forward mode carries that NaN along
    every row of the input through 0 * NaN. Only an argument the op's derivatives
    divide by a function of, vanishing where it does, is marked (``_Rule.divides``):
    erf' = exp(-a*a) or tanh' = 1 - tanh(a)**2 only round to 1 or 0. A constant
    argument is squared too: hypot(a, c) at a = 0 and |c| = 1e-170 has the Hessian
    1/|c| = 1e170 in float64, but JAX's formula divides by c*c, which underflows, and
    returns NaN: the inputs behind every traced argument are marked. (Forward over
    forward also multiplies that NaN partial by the zero tangents of the other inputs,
    NaN at entries of inputs the node never reads:
    JAX's jacfwd(jacfwd) H[1, 1] of mean(hypot(x - c0, c)) with c[0] = 1e-170. That
    0 * NaN is reported, not excused.)
    """
    root = math.sqrt(float(np.finfo(ev.dtype).tiny))
    for value, arg, divides in zip(vals, bargs, rule.divides):
        if not (divides and value != 0 and abs(value) < root):
            continue
        for marked in ([arg] if arg.g is not None else [a for a in bargs if a.g is not None]):
            ev.underflow_vars |= _depends(marked, idx)


def _pieces(ev: _Evaluator, node: int, spec: OpSpec, int_key: tuple[tuple[str, Any], ...],
            point: list[Any], bargs: list[_Jet], idx: tuple[int, ...],
            derivs: list[bool]) -> tuple[list[tuple[Any, ...]], bool]:
    """Each piece the element may take, and whether a switch is undefined.

    A switch computed from a value a kink upstream left undefined (where's jump: the
    value is the constant on one side, the input on the other) is NaN, and lies on
    neither side: both pieces, merged, so what they disagree on stays undefined
    (NaN > 0 would pick one piece, a value no convention gives). It is no kink of
    its own: each convention of the kink upstream defines it."""
    switches = [s(*point) for s in _switch_rules(spec.name, int_key)]
    undefined = [bool(mpmath.isnan(s)) for s in switches]
    # A computed switch errs by about eps * scale, and by the dtype's smallest normal
    # where it underflows (x*x of a tiny x is 0 in float32): distances are relative
    # to that error unit, so "within k ulps" covers both.
    scale = max(float(bargs[k].vm[idx]) for k in range(len(bargs))) + ev.switch_floor
    for k, s in enumerate(switches):
        ev.note_switch(spec.name, k, 0.0 if s == 0 else float(abs(s)) / scale, ev.switch_specials,
                          0.0 if undefined[k] else float(abs(s)))
    on_kink = [not nan and bool(s == 0 or (ev.kink_fuzz and float(abs(s)) <= ev.kink_fuzz * scale))
               for s, nan in zip(switches, undefined)]
    choices: list[tuple[int, ...]] = []
    res = ev.resolution
    for k, s in enumerate(switches):
        if undefined[k]:
            choices.append((-1, 1))
        elif on_kink[k]:
            key = (spec.name, k) if s == 0 else (spec.name, k, node, idx)
            ev.sides[key] = 2
            # A near kink the resolution does not name (its switch was undefined where the
            # sides were listed: downstream of a tie within rounding) keeps the point's
            # own side; +1 put hard_sigmoid(max(...) - c + 3) on its flat side at
            # 3 - 1e-16 in every convention of the tie, and JAX's split was called wrong.
            choice = (-1, 1) if res is None or res.mid else res.choice(key, 1 if s >= 0 else -1)
            choices.append(choice if isinstance(choice, tuple) else (choice,))
        else:
            choices.append((1,) if s > 0 else (-1,))
    if any(on_kink):
        ev.kinks.append(Kink(node, spec.name, idx))
    combos = list(itertools.product(*choices))
    rules = [_piece_rule(spec.name, int_key, signs) for signs in combos]
    results = [_apply_rule(rule, point, bargs, idx, derivs, ev.framework, 0.0, ev.limits, node, ev.second_order)
               for rule in rules]
    for rule in rules:  # a piece dividing by a**2 + b**2 (arctan2's) underflows as a smooth rule does
        _squares_underflow(ev, rule, point[:len(bargs)], bargs, idx)
    own = tuple(1 if s > 0 else -1 for s in switches)
    if len(results) > 1 and all(s != 0 for s in switches) and not any(undefined) and own in combos:
        # Only near kinks (the fuzz), no switch on one: the point lies on a side of each,
        # and its value is that side's. The sides' values differ by rounding (leaky_relu
        # of -1.2e-39 is -1.2e-40 or -1.2e-39), and a NaN value would leave every node
        # after it undefined (erfinv of NaN), where only the derivatives are in doubt.
        value = results[combos.index(own)][0]
        results = [(value, *r[1:]) for r in results]
    return results, any(undefined)


def _near_edge(ev: _Evaluator, domains: tuple[str | None, ...], vals: list[Any], bargs: list[_Jet],
               idx: tuple[int, ...]) -> bool:
    """Whether an argument lies within rounding distance of its domain's edge.

    There a framework's own rounding decides whether the argument is inside (sqrt of
    a difference that is exactly 0 in floating point and 1e-17 in exact arithmetic),
    so the derivatives have no single value it could be held to.
    """
    for k, domain in enumerate(domains):
        if domain is None:
            continue
        for edge in _domain_edges(domain, vals[k]):
            if _within_rounding(ev, vals[k] - edge, max(float(bargs[k].vm[idx]), float(abs(edge)))):
                return True
    return False


def _within_rounding(ev: _Evaluator, distance: Any, scale: float) -> bool:
    """Whether ``distance`` is within ``SPECIAL_ULPS`` roundings of a value of size
    ``scale`` (an edge, a special value, an argument's own error scale) in the dtype:
    a framework computing that value may land on either side of, or exactly on, what
    it is compared with. The tiny/eps floor keeps subnormal scales from shrinking it
    below the dtype's spacing at 0."""
    finfo = np.finfo(ev.dtype)
    floor = float(finfo.tiny / finfo.eps)
    return float(abs(distance)) <= SPECIAL_ULPS * float(finfo.eps) * (scale + floor)


def _near_excluded_point(ev: _Evaluator, spec: OpSpec, vals: list[Any], bargs: list[_Jet],
                         idx: tuple[int, ...]) -> bool:
    """For an op whose domain excludes a point rather than a range of one argument
    (hypot at a = b = 0, its cone): whether the arguments are within rounding distance
    of it, i.e. each is 0 or as close to 0 as its own error. There the framework may
    compute every argument as exactly 0, so the derivatives have no value it could be
    held to."""
    snapped = [mpmath.mpf(0) if _within_rounding(ev, value, float(arg.vm[idx])) else value
               for value, arg in zip(vals, bargs)]
    return not spec.in_domain(tuple(snapped))


def _special_hits(ev: _Evaluator, spec: OpSpec, specials: tuple[float, ...], value: Any, error: float) -> None:
    """Record every special value that ``value`` lies within rounding distance of."""
    for k, target in enumerate(specials):
        if _within_rounding(ev, value - target, max(abs(target), float(error))):
            ev.specials.add((spec.name, k))


SPECIAL_ULPS = 64.0
def _domain_edges(domain: str, value: Any) -> tuple[Any, ...]:
    """The edges of ``domain`` that ``value`` may be near (``Domain.edges_of``)."""
    return DOMAINS[domain].edges_of(value)


def elementwise_value(spec: OpSpec, attrs: dict[str, Any], args: list[np.ndarray], dtype: str,
                      piecewise: bool = False) -> np.ndarray:
    """The value of an elementwise op (``Piecewise`` with ``piecewise``: the piece its
    switches choose), NaN where it is undefined."""
    ints, floats = _split_attrs(spec, attrs)
    int_key = tuple(sorted(ints.items()))
    fvals = [mpmath.mpf(float(np.float64(attrs[name]).astype(dtype))) for name in floats]

    def one(*vals: Any) -> Any:
        try:
            if not spec.in_domain(vals):
                return _NAN
            if not piecewise:
                # Every argument is given here: a constant integer is substituted, as the
                # evaluation does (``_fixed_integers``), so ldexp(329237.9, -7) is a
                # product, not 2**k guarded as an exponential (it was NaN, and blame's
                # rounded values of a program holding it gave up).
                rule = _smooth_rule(spec.name, int_key, _fixed_integers(spec, vals, (False,) * len(vals)))
            else:
                switches = [s(*vals, *fvals) for s in _switch_rules(spec.name, int_key)]
                rule = _piece_rule(spec.name, int_key, tuple(1 if s >= 0 else -1 for s in switches))
            if rule.exponential and any(abs(v) > EXPONENT_LIMIT for v in vals):
                return _NAN  # beyond every float format (see EXPONENT_LIMIT)
            return rule.f(*vals, *fvals)
        except (ZeroDivisionError, ValueError, OverflowError):
            return _NAN

    return np.asarray(np.frompyfunc(one, len(args), 1)(*args), dtype=object)


def elementwise_curved(spec: OpSpec, attrs: dict[str, Any], traced: list[bool], piecewise: bool = False) -> bool:
    """Whether some second derivative of the op (of a piece, with ``piecewise``) in its
    traced arguments is not identically 0."""
    ints, _ = _split_attrs(spec, attrs)
    int_key = tuple(sorted(ints.items()))
    if not piecewise:
        rules = [_smooth_rule(spec.name, int_key)]
    else:
        k = len(_switch_rules(spec.name, int_key))
        rules = [_piece_rule(spec.name, int_key, s) for s in itertools.product((-1, 1), repeat=k)]
    return any(traced[a] and traced[b] and not _is_zero_function(second, spec.arity)
               for rule in rules for a, row in enumerate(rule.d2) for b, second in enumerate(row))


def _is_zero_function(fn: Callable[..., Any], arity: int) -> bool:
    """Whether a lambdified derivative is identically 0 (it was simplified to a literal)."""
    probes = ([mpmath.mpf("0.37")] * arity, [mpmath.mpf("-1.3")] * arity)
    try:
        return all(fn(*p, *([mpmath.mpf("0.1")] * 4)[: fn.__code__.co_argcount - arity]) == 0 for p in probes)
    except (TypeError, ValueError, ZeroDivisionError):
        return False
