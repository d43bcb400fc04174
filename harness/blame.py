"""Which derivative rule a failing finding blames: the node whose own Hessian is wrong.

A finding's program may hold several ops; a maintainer wants the one rule that is
broken. Each differentiated node is checked alone: a one-op program whose input feeds
the node's traced arguments at the very values the framework saw (every node computed
and rounded in the dtype, ``hessdiff.harness.exact.rounded_values``), whose constant arguments
are the same constants (same kind: framework array, Python number, int32 or int64 array), read
out as ``sum(y + y*y)`` (or ``y - y*y``, ``_readout``) so that a wrong first derivative
shows in the Hessian as well as a wrong second one; where that check holds, an
elementwise op is checked again read out as ``sum(a * y)``, which shows a first
derivative that ``y*y`` squares into nothing beside a large second one (i0' ~ e / 2 at
a tiny e). The variant computes its Hessian, the oracle judges it. The first node (in
program order) whose local check fails is blamed, with the region of the elements it
fails at. When none fails, a node whose
*value* the framework computed beyond its rounding is blamed (``value_fault``: every
rule is right, but applied at another point); else the fault lives in how the rules
compose (0 * NaN through a zero cotangent, say), and the blame says so.

A local check costs one or two framework calls and oracle runs per differentiated node,
on a shrunk program of a few nodes. Its readout uses mul, add and sum: were one of
those rules the broken one, every local check would fail and the first node would be
blamed; the blamed one-op program is in the finding, so such a blame is easy to see
through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hessdiff.harness.case import Case
from hessdiff.harness.engine import check_case
from hessdiff.harness.exact import elements_region, node_region, op_value, pattern_of, rounded_values, traced_nodes
from hessdiff.harness.findings import Kind
from hessdiff.harness.ir import Node, Program, ProgramError, boolean_array, const, integer_dtype, literal_of, op
from hessdiff.harness.ops import CATALOGUE, Vector
from hessdiff.harness.outcomes import HarnessError, Runner, run_node_values
from hessdiff.harness.tolerance import tolerance_for
from hessdiff.harness.verdicts import CaseResult, Verdict

__all__ = ["Blame", "LocalFault", "blame", "local_case", "local_faults", "value_fault"]

COMPOSITION = "composition"
# The significant digits beyond its arguments' smallest magnitude at which
# ``value_fault`` evaluates an op exactly (and at twice as many, to check).
VALUE_DIGITS = 40


@dataclass(frozen=True)
class Blame:
    """What a failing finding is blamed on.

    ``node``: the blamed node of the finding's program, None for a composition fault.
    ``op`` and ``pattern``: its op and traced/constant argument pattern ("TC").
    ``kind``: the local verdict's kind (``Kind.value``), or "composition".
    ``explanation``: the local verdict's explanation, or why no node was blamed.
    ``local``: the one-op program and point that show the fault (None for composition).
    ``unchecked``: nodes whose local check could not run (the variant cannot
    differentiate the isolated op, e.g. MLX's forward mode through a slice).
    ``region``: where the blamed node sat (``hessdiff.harness.exact.node_region``: "at 0",
    "tiny", "ordinary", ...); "" for a composition fault.
    ``aspect``: "derivative" (the node's Hessian alone is wrong) or "value" (every node's
    Hessian alone is right, but the framework computed this node's *value* beyond its
    rounding: ``value_fault``).
    """

    node: int | None
    op: str
    pattern: str
    kind: str
    explanation: str
    local: Program | None = None
    point: tuple[float, ...] = ()
    unchecked: tuple[int, ...] = ()
    region: str = ""
    aspect: str = "derivative"

    @property
    def rule(self) -> str:
        """One line for a report: ``pow(T, C)``, ``elu(T) value`` or ``composition``."""
        if self.node is None:
            return COMPOSITION
        rule = f"{self.op}({', '.join(self.pattern)})" if self.pattern else f"{self.op}(T)"
        return f"{rule} value" if self.aspect == "value" else rule

    @property
    def root_cause(self) -> str:
        """The rule and where it broke, ``pow(T, C) @ zero``: what one upstream fault is."""
        return f"{self.rule} @ {self.region}" if self.node is not None and self.region else self.rule

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node, "op": self.op, "pattern": self.pattern, "kind": self.kind, "rule": self.rule,
            "explanation": self.explanation, "local": self.local.to_json() if self.local is not None else None,
            "point": list(self.point), "unchecked": list(self.unchecked), "region": self.region,
            "root_cause": self.root_cause, "aspect": self.aspect,
        }


def _readout(y_value: np.ndarray, y: int) -> Node:
    """``y + y*y``, or ``y - y*y`` where that is further from cancelling: its Hessian is
    (1 +- 2y) y'' +- 2 y'y'^T, and 1 + 2y = 0 at y = -1/2 would hide a wrong y'' (elu
    with alpha 1/2 far below 0 sits there, where MLX 0.21.1's float32 exp(x < -55) is
    2**-80 instead of ~0, and such a blame said 'composition'). 1 + 2y and 1 - 2y
    cannot both be small: y - y*y where 1 + 2y comes within 1/4 of 0 and 1 - 2y does not."""
    with np.errstate(invalid="ignore"):
        values = np.asarray(y_value, dtype=np.float64).reshape(-1)
        plus = float(np.nanmin(np.abs(1 + 2 * values), initial=np.inf))
        minus = float(np.nanmin(np.abs(1 - 2 * values), initial=np.inf))
    # y + y*y unless it cancels to a quarter or less somewhere (and y - y*y less so)
    return op("sub", y, y + 1) if plus < 0.25 and minus > plus else op("add", y, y + 1)


def local_case(program: Program, index: int, values: Sequence[np.ndarray], dtype: str,
               first: bool = False) -> Case | None:
    """Node ``index`` of ``program`` alone (see the module), or None if it has no traced
    argument or the one-op program cannot be built.

    With ``first``, read out as ``sum(a * y)``, ``a`` the op's first traced argument,
    for an elementwise op whose output has ``a``'s shape (None otherwise): its Hessian
    is a y'' + 2 y' on the diagonal (and y' of the other arguments off it), so a wrong
    first derivative shows where ``y + y*y`` hides it. There, (1 + 2y) y'' + 2 y'**2
    holds y' only squared: JAX's i0 at a tiny argument e (i0' = i1(e) ~ e / 2, wrong
    by half) is invisible beside i0'' ~ 1/2, and i0(erfc(x + c)) with erfc ~ 1e-45
    was blamed as a composition four times in one 5-minute campaign."""
    traced = traced_nodes(program)
    node = program.nodes[index]
    sources = [a for a in dict.fromkeys(node.args) if traced[a]]
    if not sources:
        return None
    if first and (not CATALOGUE[node.kind].elementwise or program.shapes[sources[0]] != program.shapes[index]):
        return None
    sizes = [int(np.prod(program.shapes[a], dtype=np.int64)) for a in sources]
    n = sum(sizes)
    nodes: list[Node] = [Node("input")]
    where: dict[int, int] = {}
    start = 0
    for a, size in zip(sources, sizes):
        shape = program.shapes[a]
        ref = 0
        if len(sources) > 1:
            nodes.append(op("slice", 0, start=start, stop=start + size, step=1))
            ref = len(nodes) - 1
        if shape == ():
            nodes.append(op("sum", ref))
            ref = len(nodes) - 1
        elif shape != (size,):
            nodes.append(op("reshape", ref, shape=shape))
            ref = len(nodes) - 1
        if isinstance(CATALOGUE[node.kind].math, Vector) and CATALOGUE[node.kind].math.symmetric:
            ref = _symmetrized(nodes, ref)
        where[a] = ref
        start += size
    args = []
    for a in node.args:
        if a in where:
            args.append(where[a])
            continue
        source = program.nodes[a]
        literal = literal_of(source)
        nodes.append(const(np.asarray(values[a]), literal, integer_dtype(source) or False, boolean_array(source)))
        args.append(len(nodes) - 1)
    nodes.append(Node(node.kind, tuple(args), node.attrs))
    y = len(nodes) - 1
    nodes += [op("mul", where[sources[0]], y)] if first else [op("mul", y, y), _readout(values[index], y)]
    if program.shapes[index] != ():
        nodes.append(op("sum", len(nodes) - 1))
    point = np.concatenate([np.asarray(values[a], dtype=np.float64).reshape(-1) for a in sources])
    try:
        local = Program(n, tuple(nodes))
    except ProgramError:
        return None
    return Case(local, point, dtype)


def _symmetrized(nodes: list[Node], ref: int) -> int:
    """(X + X^T) * 0.5 of the matrix at ``ref``, appended to ``nodes``: an op defined on
    symmetric matrices only (``Vector.symmetric``) is checked along them. At the
    symmetric point it is X exactly."""
    nodes.append(op("transpose", ref))
    nodes.append(op("add", ref, len(nodes) - 1))
    nodes.append(const(np.float64(0.5)))
    nodes.append(op("mul", len(nodes) - 2, len(nodes) - 1))
    return len(nodes) - 1


def blame(case: Case, variant: Any) -> Blame:
    """The blame of a failing ``case`` of ``variant`` (a ``BackendVariant``, or a
    ``Runner`` that runs it in a worker): the first node that fails checked alone. A
    local failure of any kind counts: a rule's NaN at one node may be a wrong value at
    the node that reads it."""
    values = rounded_values(case.program, case.point, case.dtype)
    if values is None:
        return Blame(None, "", "", COMPOSITION, "an intermediate is not finite at this point: no node checked alone")
    unchecked: list[int] = []
    checked = 0
    for node in _checked_alone(case, variant, values, lambda rule: False):
        if node.local is None:
            unchecked.append(node.index)
            continue
        checked += 1
        if node.failing:
            verdict = node.failing[0]
            return Blame(node.index, node.rule[0], node.rule[1], verdict.kind.value, verdict.explanation,
                         node.local.program, tuple(float(v) for v in node.local.point), tuple(unchecked),
                         _failing_region(case, node.index, values, verdict) or node.rule[2])
    found = value_fault(case, variant, values)
    if found is not None:
        return replace(found, unchecked=tuple(unchecked))
    return Blame(None, "", "", COMPOSITION,
                 f"each of the {checked} differentiated node(s) checked alone is right: "
                 "the fault is in how the rules compose", unchecked=tuple(unchecked))


def value_fault(case: Case, variant: Any, values: Sequence[np.ndarray]) -> Blame | None:
    """The first elementwise node whose value the framework computed beyond its rounding,
    where every node's Hessian alone is right; None if there is none (or the framework's
    values cannot be had).

    A derivative rule can be right while the value it is applied to is not: MLX's elu is
    ``exp(x) - 1``, which is 0 for x = -1e-30 in float32 (the truth is -1e-30), and a
    norm downstream then sits on its kink, where its Hessian is another. Checked alone,
    each node is right, so such faults came out as four "compositions" of four op sets
    in one 5-minute campaign. Each node's framework value (``run_node_values``: one eager
    call of the program, no derivative) is held against the op applied exactly to the
    framework's own arguments, within the backend's tolerance of the correctly rounded
    result (``Tolerance.naive_bound``). Elementwise ops only: a correct reduction errs
    by its terms' size, not its result's (a sum that cancels). The blamed program has
    been shrunk, so every node of it is needed for the fault, this one included.
    """
    program = case.program
    if isinstance(variant, Runner):
        framework = variant.node_values(program, case.point, case.dtype)
    elif hasattr(variant, "node_values"):
        framework = run_node_values(variant, program, case.point, case.dtype)
    else:
        return None
    if framework is None or len(framework) != len(program.nodes):
        return None
    tol = tolerance_for(variant.name, case.dtype)
    traced = traced_nodes(program)
    for index, node in enumerate(program.nodes):
        if node.kind in ("input", "const") or not traced[index] or not CATALOGUE[node.kind].elementwise:
            continue
        args = [np.asarray(framework[a], dtype=np.float64) for a in node.args]
        if not all(np.all(np.isfinite(a)) for a in args):
            continue
        digits = _value_digits(args)
        try:  # two precisions that agree
            exact, check = (op_value(node, args, case.dtype, d) for d in (digits, 2 * digits))
        except (ArithmeticError, ValueError, ProgramError):
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            exact = exact.astype(case.dtype).astype(np.float64)
            if not np.array_equal(exact, check.astype(case.dtype).astype(np.float64), equal_nan=True):
                continue
            got = np.broadcast_to(np.asarray(framework[index], dtype=np.float64), exact.shape)
            wrong = np.isfinite(exact) & ~(np.abs(got - exact) <= tol.naive_bound(exact))
        if not np.any(wrong):
            continue
        j = int(np.flatnonzero(wrong.reshape(-1))[0])
        arg_text = ", ".join(f"{float(np.broadcast_to(a, exact.shape).reshape(-1)[j]):.17g}" for a in args)
        return Blame(index, node.kind, pattern_of(node, traced), Kind.WRONG_VALUE.value,
                     f"every node's Hessian checked alone is right, but the framework's value of "
                     f"{node.kind} at ({arg_text}), its own arguments, is {got.reshape(-1)[j]:.17g} where the "
                     f"correctly rounded value is {exact.reshape(-1)[j]:.17g} ({case.dtype}): the nodes after it "
                     f"differentiate at another point",
                     region=elements_region(node, [values[a] for a in node.args], traced, case.dtype, [j]),
                     aspect="value")
    return None


def _failing_region(case: Case, index: int, values: Sequence[np.ndarray], verdict: Verdict) -> str | None:
    """The region of the elements node ``index``'s local check fails at, for an
    elementwise node (None where it cannot tell: the node's region stands).

    The local program's input is the node's traced arguments, concatenated; an entry of
    its Hessian that fails names the elements it involves. Where some diagonal entry
    fails, its elements are the culprits (a NaN leaking along a row through 0 * NaN
    reaches entries of elements that are right); otherwise every element of a failing
    entry. The region is theirs (``elements_region``), not the whole node's: a node with
    one element at 0 and the faulty one at 254 is at 254's region."""
    bad = verdict.entries
    if bad is None or bad.ndim != 2:
        return None
    program = case.program
    node = program.nodes[index]
    traced = traced_nodes(program)
    diagonal = [i for i in range(bad.shape[0]) if bad[i, i]]
    culprits = diagonal or sorted({int(i) for pair in np.argwhere(bad) for i in pair})
    if not culprits:
        return None
    # local input index -> the node's output element: each traced source in turn
    out_size = int(np.prod(program.shapes[index], dtype=np.int64))
    elements: set[int] = set()
    start = 0
    for a in [a for a in dict.fromkeys(node.args) if traced[a]]:
        size = int(np.prod(program.shapes[a], dtype=np.int64))
        mine = [i - start for i in culprits if start <= i < start + size]
        if mine and size == out_size:
            elements.update(mine)
        elif mine:
            elements.update(range(out_size))  # a broadcast argument: every element it reaches
        start += size
    return elements_region(node, [values[a] for a in node.args], traced, case.dtype, sorted(elements))


def _value_digits(args: Sequence[np.ndarray]) -> int:
    """Digits enough for an op's exact value at ``args``: exp(x) - 1 at x = -1e-300
    cancels to 0 unless the working precision reaches x's 300th digit, so ``VALUE_DIGITS``
    beyond the smallest nonzero argument's decimal exponent (a node is held to its value
    only where this precision and twice it round to the same number in the dtype)."""
    magnitudes = np.abs(np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in args]))
    smallest = magnitudes[magnitudes > 0].min(initial=1.0)
    return VALUE_DIGITS + max(0, int(np.ceil(-np.log10(smallest))))


# A rule as the campaign tracks it: (op, traced/constant pattern, region).
Rule = tuple[str, str, str]


@dataclass(frozen=True)
class LocalFault:
    """A node of a program that fails checked alone: its rule, and the one-op case and
    result that show it (a finding of its own, already minimal)."""

    rule: Rule
    case: Case
    result: CaseResult
    verdict: Verdict
    blame: Blame


def local_faults(case: Case, variant: Any, skip: Callable[[Rule], bool]) -> tuple[list[LocalFault], list[Rule]]:
    """Every differentiated node of ``case`` whose rule ``skip`` does not rule out, each
    checked alone (``local_case``) with ``variant``: the ones that fail, and the rules
    that were checked and held.

    A hit the campaign puts down to a known fault (a finding already made, a baseline
    entry) may carry a second fault in another node; the Hessian of the whole program is
    wrong either way, so only the nodes checked alone tell. ``skip`` spares the known
    rule, and the rules already checked, so each costs one call."""
    values = rounded_values(case.program, case.point, case.dtype)
    if values is None:
        return [], []
    faults: list[LocalFault] = []
    held: list[Rule] = []

    def known(rule: Rule) -> bool:
        return skip(rule) or rule in held or any(f.rule == rule for f in faults)

    for node in _checked_alone(case, variant, values, known):
        if node.local is None or node.result is None:
            continue
        if node.failing:
            verdict = node.failing[0]
            y = _local_op(node.local, node.first, case.program.shapes[node.index] == ())
            region = _failing_region(case, node.index, values, verdict) or node.rule[2]
            found = Blame(y, node.rule[0], node.rule[1], verdict.kind.value, verdict.explanation,
                          node.local.program, tuple(float(v) for v in node.local.point), (), region)
            faults.append(LocalFault((*node.rule[:2], region), node.local, node.result, verdict, found))
        else:
            held.append(node.rule)
    return faults, held


@dataclass(frozen=True)
class CheckedAlone:
    """One node checked alone (``_checked_alone``).

    Arguments:
        index: the node's index in the program.
        rule: its (op, argument pattern, region).
        local: the one-op case, or None where the node has no local program.
        result: its result, or None where it cannot be checked alone (no local program,
            a harness error, the variant unsupported or the point unjudged there).
        failing: the variant's failing verdicts on it.
        first: whether the first-derivative readout (``local_case``'s ``first``) is the
            one checked, the curved one having held.
    """

    index: int
    rule: Rule
    local: Case | None
    result: CaseResult | None
    failing: list[Verdict]
    first: bool


def _checked_alone(case: Case, variant: Any, values: Sequence[np.ndarray],
                   skip: Callable[[Rule], bool]) -> Iterator[CheckedAlone]:
    """Each differentiated node of ``case`` whose rule ``skip`` (asked as the walk gets
    there) does not rule out, checked alone with ``variant``. ``blame`` stops at the
    first failing node; ``local_faults`` walks them all."""
    program = case.program
    traced = traced_nodes(program)
    for index, node in enumerate(program.nodes):
        if node.kind in ("input", "const") or not traced[index]:
            continue
        rule = (node.kind, pattern_of(node, traced),
                node_region(node, [values[a] for a in node.args], traced, case.dtype))
        if skip(rule):
            continue
        # the curved readout first; where it holds (or cannot be checked), the
        # first-derivative readout of an elementwise op: a second call only then
        local, result = _check_alone(local_case(program, index, values, case.dtype), variant)
        first = False
        if result is None or not _failing(result, variant):
            exposed = _check_alone(local_case(program, index, values, case.dtype, first=True), variant)
            if exposed[1] is not None:
                (local, result), first = exposed, True
        if result is None:
            yield CheckedAlone(index, rule, None, None, [], False)
            continue
        yield CheckedAlone(index, rule, local, result, _failing(result, variant), first)


def _check_alone(local: Case | None, variant: Any) -> tuple[Case | None, CaseResult | None]:
    """``local`` checked with ``variant``, or (local, None) where it cannot be: no local
    program, a harness error, the variant unsupported or the point unjudged there."""
    if local is None:
        return None, None
    try:
        result = check_case(local, [variant])
    except HarnessError:
        return local, None
    outcome = result.outcomes.get(variant.name)
    if outcome is None or outcome.status == "unsupported" or result.status != "judged":
        return local, None
    return local, result


def _failing(result: CaseResult, variant: Any) -> list[Verdict]:
    return [v for v in result.verdicts if v.variant == variant.name and v.kind.is_failure]


def _local_op(local: Case, first: bool, scalar: bool) -> int:
    """Where the op checked alone sits in its local program: before its readout (``y*y``
    and ``y +- y*y``, or ``a * y`` with ``first``), then a ``sum`` unless y is a scalar."""
    return len(local.program.nodes) - (2 if first else 3) - (0 if scalar else 1)
