"""What a check really exercised: which ops were differentiated, with which arguments
traced, and which special values their arguments hit *exactly* as a framework sees them.

A derivative rule's special cases test exact values (``x == 0``, ``a == b``), and a
framework computes each node from its arguments rounded to the dtype. So an argument
"hits" a special value here when its value, each node evaluated on its arguments'
dtype-rounded values and rounded in turn (as a framework computes them, up to its own
last-bit errors), equals the special value exactly; the oracle's ``specials`` are the
looser "within rounding distance" hits. An op counts as differentiated only when some
argument depends on the input (an op on constants alone has no derivative to check).

Coverage (``hessdiff.harness.campaign``) counts by these, and steering aims at what is missing.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import mpmath
import numpy as np

from hessdiff.harness.ir import (INTEGER_DTYPES, LITERALS, PYTHON_NUMBER_OPS, Node, Program, boolean_array, const,
                                 integer_dtype, literal_of, op)
from hessdiff.harness.ops import CATALOGUE

__all__ = ["REGIONS", "Exercised", "argument_kinds", "argument_patterns", "attainable", "carrying_nodes", "curved_after",
           "elements_region", "exercised", "kind_of", "node_region", "op_value", "pattern_of", "rounded_values",
           "traced_nodes"]


@dataclass(frozen=True)
class Exercised:
    """What one check differentiated.

    ``ops``: the ops with a traced argument. ``patterns``: ``(op, pattern)`` per
    differentiated node of a multi-argument op, the pattern one letter per argument,
    ``T`` traced and ``C`` constant (``"TC"``: the second argument constant).
    ``exact``: ``(op, k)`` where a differentiated node's argument is exactly at the
    op's ``k``-th special value (a traced argument, or the switch it sits on).
    ``kinds``: ``(op, "p:kind")`` for each constant argument of a differentiated node
    of a multi-argument op, by how the framework receives it (``argument_kinds``).
    ``rules``: ``(op, pattern, region)`` per differentiated node (``pattern_of``,
    ``node_region``; "" for a node whose inputs are not all finite): the rules this
    check exercised, in the terms a blame names one. ``exact_curved``: the ``exact``
    hits of nodes whose first derivative reaches the Hessian too (``curved_after``):
    coverage counts only these, so the sweep probes (read out curved) what a linear
    readout hit (a tie rule shows in no Hessian of sum(maximum(x, x))).
    """

    ops: frozenset[str]
    patterns: frozenset[tuple[str, str]]
    exact: frozenset[tuple[str, int]]
    kinds: frozenset[tuple[str, str]] = frozenset()
    rules: frozenset[tuple[str, str, str]] = frozenset()
    exact_curved: frozenset[tuple[str, int]] = frozenset()


def traced_nodes(program: Program) -> tuple[bool, ...]:
    """Per node, whether its value depends on the input."""
    traced: list[bool] = []
    for node in program.nodes:
        traced.append(node.kind == "input" or (node.kind != "const" and any(traced[a] for a in node.args)))
    return tuple(traced)


# Ops whose derivative is 0 wherever it exists: what depends on the input only through
# them carries no derivative, so an op there is not differentiated and an exact hit there
# checks nothing (a 60-second campaign counted log10's argument exactly 1 behind a sign,
# twice, and stopped aiming at it while the rule at 1 went unchecked).
STEP_OPS = frozenset({"sign", "floor", "ceil", "round"})


def carrying_nodes(program: Program) -> tuple[bool, ...]:
    """Per node, whether a derivative with respect to the input flows into it: traced
    (``traced_nodes``) through some path that avoids ``STEP_OPS``."""
    carries: list[bool] = []
    for node in program.nodes:
        carries.append(node.kind == "input" or (node.kind not in ("const", *STEP_OPS)
                                                and any(carries[a] for a in node.args)))
    return tuple(carries)


def curved_after(program: Program) -> tuple[bool, ...]:
    """Per node, whether an op curved in it lies on some path from it to the output:
    only then does its *first* derivative reach the Hessian (d2/dx2 of sum(f(x)) is
    sum(f''(x)); of f + f**2 it is 2 f' f'^T + ...). Under linear and piecewise-linear
    ops alone a rule's first derivative, a tie's convention among them, is invisible."""
    from hessdiff.harness.oracle.kinds import kind_of

    traced = traced_nodes(program)
    after = [False] * len(program.nodes)
    for j in range(len(program.nodes) - 1, 0, -1):
        node = program.nodes[j]
        if node.kind == "const" or node.kind in STEP_OPS or not traced[j]:
            continue
        spec = CATALOGUE[node.kind]
        curved = kind_of(spec).curved(spec, spec.full_attrs(node.attr_dict), [traced[a] for a in node.args])
        if curved or after[j]:
            for a in node.args:
                after[a] = after[a] or traced[a]
    return tuple(after)


def pattern_of(node: Node, traced: Sequence[bool]) -> str:
    return "".join("T" if traced[a] else "C" for a in node.args)


def argument_patterns(name: str) -> tuple[str, ...]:
    """The traced/constant patterns coverage tracks for op ``name``: every one with a
    traced argument, for an elementwise op of two or more arguments; none otherwise."""
    spec = CATALOGUE[name]
    if spec.arity < 2 or not spec.elementwise:
        return ()
    return tuple(p for p in ("".join(t) for t in itertools.product("TC", repeat=spec.arity))
                 if "T" in p and not any(p[q] == "T" for q in spec.integer_typed_args))


def argument_kinds(name: str) -> tuple[str, ...]:
    """The ways a constant argument of op ``name`` reaches a framework, as ``"p:kind"``
    (position, kind), for an elementwise op of two or more arguments: a framework
    array of the dtype ("array"), a Python float and int (the ops that take a Python
    number), a framework int32 and int64 array (its ``integer_args``). Each takes its own
    path in the frameworks' derivative rules (JAX's pow has one for an integer exponent).
    An ``integer_typed_args`` argument takes only the integer kinds, a Python int among
    them (ldexp's shift); a ``mask_args`` one a framework bool array too ("bool": where's
    condition as a mask, not a float compared with 0); an argument that is never
    constant beside a traced one (ldexp's first, beside its constant shift) has none."""
    spec = CATALOGUE[name]
    if spec.arity < 2 or not spec.elementwise:
        return ()
    patterns = argument_patterns(name)
    kinds = []
    for p in range(spec.arity):
        if p in spec.integer_typed_args:
            kinds += [f"{p}:int", *(f"{p}:{width}" for width in INTEGER_DTYPES)]
            continue
        if not any(pattern[p] == "C" for pattern in patterns):
            continue
        kinds.append(f"{p}:array")
        if p in spec.mask_args:
            kinds.append(f"{p}:bool")
        if name in PYTHON_NUMBER_OPS:
            kinds += [f"{p}:{literal}" for literal in LITERALS]
        if p in spec.integer_args:
            kinds += [f"{p}:{width}" for width in INTEGER_DTYPES]
    return tuple(kinds)


@functools.cache
def attainable(name: str, index: int, dtypes: tuple[str, ...] = ("float64", "float32")) -> bool:
    """Whether a traced argument of op ``name`` can sit *exactly* on its ``index``-th
    special value with the op finite and twice differentiable there, in one of ``dtypes``.

    Not so at a domain edge (log at 0, arcsin at 1, lgamma's poles: the op or its
    derivatives are undefined there, so only a near hit, from inside, is checked), nor
    beyond a dtype's range (exp2 at 1023 in float32). Coverage counts exact hits against
    the attainable special values, steering asks for exact hits of these alone, and the
    campaign's sweep aims at them exactly (``hessdiff.harness.campaign``).
    """
    from hessdiff.harness.oracle import node_values

    spec = CATALOGUE[name]
    if spec.choosing or not spec.elementwise:
        return True  # a tie or a zero entry: inside every such op's domain
    try:
        target = spec.special(spec.full_attrs({}))[index]
    except KeyError:  # set by a drawn attr (clip's lo and hi), inside the domain with it
        return True
    position = spec.special_arg if name != "copysign" else index
    # A constant integer in an integer argument (pow's exponent 2) widens the others'.
    fixed = tuple(2.0 if p in spec.integer_args and p != position else float("nan") for p in range(spec.arity))
    domains = spec.domains_at(fixed, tuple(p not in spec.integer_args for p in range(spec.arity)))
    if not spec.arg_in_domain(position, target, domains):
        return False
    for dtype in dtypes:
        with np.errstate(over="ignore"):
            rounded = np.asarray(target, dtype=dtype)
        if not np.isfinite(rounded) or float(rounded) != target:
            continue
        if spec.arity > 1 or len(spec.full_attrs({})) < len(spec.attrs):
            return True  # finite at a special value of the others (leaky_relu's alpha is drawn)
        nodes = [Node("input"), op(name, 0, **spec.full_attrs({}))]
        value = node_values(1, nodes, np.asarray([float(rounded)]), dtype, digits=20)[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            if np.all(np.isfinite(np.asarray(value, dtype=np.float64).astype(dtype))):
                return True
    return False


def kind_of(node: Node) -> str:
    """How a constant argument node reaches the framework (see ``argument_kinds``)."""
    return integer_dtype(node) or literal_of(node) or ("bool" if boolean_array(node) else "array")


def op_value(node: Node, args: Sequence[np.ndarray], dtype: str, digits: int) -> np.ndarray:
    """``node``'s op applied to the argument values ``args`` at ``digits`` decimal digits
    (not rounded to ``dtype``): one op alone, its arguments as constants, so that what
    it is fed is given, not computed (the oracle's errors: ``ArithmeticError``,
    ``ValueError``, ``ProgramError``)."""
    from hessdiff.harness.oracle import node_values

    local = [Node("input"), *(const(a) for a in args), op(node.kind, *range(1, len(args) + 1), **node.attr_dict)]
    return np.asarray(node_values(1, local, np.zeros(1), dtype, digits=digits)[-1], dtype=np.float64)


def rounded_values(program: Program, point: np.ndarray, dtype: str) -> list[np.ndarray] | None:
    """Every node's value at ``point``, each op evaluated on its arguments' values and
    rounded to ``dtype`` in turn; None if an intermediate is not finite."""
    values: list[np.ndarray] = []
    for node in program.nodes:
        if node.kind == "input":
            value = np.asarray(point, dtype=np.float64)
        elif node.kind == "const":
            value = program.constant(len(values))
        else:
            args = [values[a] for a in node.args]
            if any(not np.all(np.isfinite(a)) for a in args):
                return None
            value = op_value(node, args, dtype, digits=20)
        with np.errstate(over="ignore", invalid="ignore"):
            values.append(np.asarray(value, dtype=np.float64).astype(dtype).astype(np.float64))
    return values


def _exact_hits(node: Node, args: list[np.ndarray], traced: Sequence[bool], dtype: str) -> set[int]:
    """The special values (indices) ``node``'s traced arguments sit on exactly."""
    spec = CATALOGUE[node.kind]
    attrs = spec.full_attrs(node.attr_dict)
    specials = spec.special(attrs)
    hits: set[int] = set()
    if not specials:
        return hits
    if not spec.smooth:
        from hessdiff.harness.oracle.rules import _split_attrs, _switch_rules

        ints, floats = _split_attrs(spec, attrs)
        rules = _switch_rules(spec.name, tuple(sorted(ints.items())))
        if len(rules) == len(specials):
            shape = np.broadcast_shapes(*(np.shape(a) for a in args))
            fvals = [mpmath.mpf(float(np.float64(attrs[name]).astype(dtype))) for name in floats]
            for idx in np.ndindex(*shape):
                point = [mpmath.mpf(float(np.broadcast_to(a, shape)[idx])) for a in args] + fvals
                hits.update(k for k, rule in enumerate(rules) if rule(*point) == 0)
            return hits
    if spec.choosing:
        from hessdiff.harness.oracle.local import _JetFunctions, _Ties

        ties = _Ties(0, None, 0.0, 0.0)
        arrays = np.asarray(np.vectorize(mpmath.mpf, otypes=[object])(args[0]), dtype=object)
        try:
            spec.math.expr(_JetFunctions, arrays, ties, **attrs)
        except (ZeroDivisionError, ValueError, OverflowError, TypeError):
            return hits
        return {k for k, gap, _ in ties.switches if gap == 0}
    if spec.elementwise:
        arg = spec.special_arg
        if arg < len(args) and traced[node.args[arg]]:
            with np.errstate(over="ignore"):  # a special value beyond the dtype's range: never hit
                rounded = [float(np.asarray(target, dtype=dtype)) for target in specials]
            hits.update(k for k, target in enumerate(rounded) if np.any(args[arg] == target))
    return hits


# Where a rule was exercised, from most to least particular: exactly at one of the op's
# special values ("at <name>"), a traced argument exactly 0, below the dtype's epsilon in
# magnitude (where 1 + x == x's neighbours collapse and frameworks take series branches),
# at or above 1/epsilon (where x + 1 == x), or none of these.
REGIONS = ("at", "zero", "tiny", "huge", "ordinary")


def node_region(node: Node, args: Sequence[np.ndarray], traced: Sequence[bool], dtype: str) -> str:
    """The region ``node`` sits in (``REGIONS``), from its arguments' dtype-rounded values:
    a blame names it with the rule, and a hit counts as a known fault only in the region
    that fault was blamed in (a rule broken for tiny inputs says nothing of ordinary ones)."""
    hits = _exact_hits(node, list(args), traced, dtype)
    if hits:
        return f"at {CATALOGUE[node.kind].special_names[min(hits)]}"
    values = [np.abs(np.asarray(a, dtype=np.float64)).reshape(-1) for a, t in
              zip(args, (traced[i] for i in node.args)) if t]
    flat = np.concatenate(values) if values else np.zeros(0)
    eps = float(np.finfo(dtype).eps)
    if np.any(flat == 0):
        return "zero"
    if np.any(flat < eps):
        return "tiny"
    if np.any(flat >= 1 / eps):
        return "huge"
    return "ordinary"


def elements_region(node: Node, args: Sequence[np.ndarray], traced: Sequence[bool], dtype: str,
                    elements: Sequence[int]) -> str:
    """``node_region`` of an elementwise ``node`` over the output ``elements`` only (the
    ones a blamed fault shows in); of the whole node for any other op, or no elements.

    A node whose elements sit at 0 and at 254 has the region "at 0"; MLX's gelu_tanh NaN
    at x = 254 (its rule at an ordinary argument) was blamed "at 0" for it, and one fault
    came out as two root causes. A hit still counts a node by its whole region
    (``Exercised.rules``): a known fault at one element must not explain a hit whose
    other elements sit where no fault is known yet."""
    flat = _flat_elements(args) if CATALOGUE[node.kind].elementwise else []
    chosen = [k for k in elements if flat and 0 <= k < len(flat[0])]
    if not chosen:
        return node_region(node, args, traced, dtype)
    return node_region(node, [f[chosen] for f in flat], traced, dtype)


def _flat_elements(args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """An elementwise op's arguments broadcast to its output's shape, flattened."""
    arrays = [np.asarray(a, dtype=np.float64) for a in args]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return [np.broadcast_to(a, shape).reshape(-1) for a in arrays]


def exercised(program: Program, point: np.ndarray, dtype: str) -> Exercised:
    """What a check of ``program`` at ``point`` in ``dtype`` differentiated (see the module)."""
    traced = traced_nodes(program)
    carries = carrying_nodes(program)
    where = [i for i, node in enumerate(program.nodes)
             if node.kind not in ("input", "const") and any(carries[a] for a in node.args)]
    differentiated = [program.nodes[i] for i in where]
    ops = {node.kind for node in differentiated}
    patterns = {(node.kind, pattern_of(node, traced)) for node in differentiated if len(node.args) > 1}
    kinds = {(node.kind, f"{p}:{kind_of(program.nodes[a])}") for node in differentiated if len(node.args) > 1
             for p, a in enumerate(node.args) if not traced[a]}
    exact: set[tuple[str, int]] = set()
    values = rounded_values(program, point, dtype) if differentiated else None
    # Hits where both of the op's derivative rules reach the Hessian: one read out
    # linearly tests the second derivative only.
    read_out: set[tuple[str, int]] = set()
    if values is not None and any(CATALOGUE[n.kind].special_names for n in differentiated):
        curved = curved_after(program)
        for i in where:
            node = program.nodes[i]
            hits = {(node.kind, k) for k in _exact_hits(node, [values[a] for a in node.args], carries, dtype)}
            exact |= hits
            if curved[i]:
                read_out |= hits
    rules = {(node.kind, pattern_of(node, traced),
              node_region(node, [values[a] for a in node.args], traced, dtype) if values is not None else "")
             for node in differentiated}
    return Exercised(frozenset(ops), frozenset(patterns), frozenset(exact), frozenset(kinds), frozenset(rules),
                     frozenset(read_out))
