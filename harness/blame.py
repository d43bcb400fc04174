"""Which derivative rule a failing finding blames: the node whose own Hessian is wrong.

A finding's program may hold several ops; a maintainer wants the one rule that is
broken. Each differentiated node is checked alone: a one-op program whose input feeds
the node's traced arguments at the very values the framework saw (every node computed
and rounded in the dtype, ``hessdiff.harness.exact.rounded_values``), whose constant arguments
are the same constants (same kind: framework array, Python number, int32 or int64 array), read
out as ``sum(y + y*y)`` (or ``y - y*y``, ``_readout``) so that a wrong first derivative
shows in the Hessian as well as a wrong second one. The variant computes its Hessian,
the oracle judges it. The first node (in program order) whose local check fails is blamed; when none fails, the fault
lives in how the rules compose (0 * NaN through a zero cotangent, say), and the blame
says so.

A local check costs one framework call and one oracle run per differentiated node,
on a shrunk program of a few nodes. Its readout uses mul, add and sum: were one of
those rules the broken one, every local check would fail and the first node would be
blamed; the blamed one-op program is in the finding, so such a blame is easy to see
through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hessdiff.harness.case import Case
from hessdiff.harness.engine import check_case
from hessdiff.harness.exact import node_region, pattern_of, rounded_values, traced_nodes
from hessdiff.harness.ir import Node, Program, ProgramError, const, integer_dtype, literal_of, op
from hessdiff.harness.outcomes import HarnessError
from hessdiff.harness.verdicts import CaseResult, Verdict

__all__ = ["Blame", "LocalFault", "blame", "local_case", "local_faults"]

COMPOSITION = "composition"


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

    @property
    def rule(self) -> str:
        """One line for a report: ``pow(T, C)`` or ``composition``."""
        if self.node is None:
            return COMPOSITION
        return f"{self.op}({', '.join(self.pattern)})" if self.pattern else f"{self.op}(T)"

    @property
    def root_cause(self) -> str:
        """The rule and where it broke, ``pow(T, C) @ zero``: what one upstream fault is."""
        return f"{self.rule} @ {self.region}" if self.node is not None and self.region else self.rule

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node, "op": self.op, "pattern": self.pattern, "kind": self.kind, "rule": self.rule,
            "explanation": self.explanation, "local": self.local.to_json() if self.local is not None else None,
            "point": list(self.point), "unchecked": list(self.unchecked), "region": self.region,
            "root_cause": self.root_cause,
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


def local_case(program: Program, index: int, values: Sequence[np.ndarray], dtype: str) -> Case | None:
    """Node ``index`` of ``program`` alone (see the module), or None if it has no traced
    argument or the one-op program cannot be built."""
    traced = traced_nodes(program)
    node = program.nodes[index]
    sources = [a for a in dict.fromkeys(node.args) if traced[a]]
    if not sources:
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
        where[a] = ref
        start += size
    args = []
    for a in node.args:
        if a in where:
            args.append(where[a])
            continue
        source = program.nodes[a]
        literal = literal_of(source)
        nodes.append(const(np.asarray(values[a]), literal, integer_dtype(source) or False))
        args.append(len(nodes) - 1)
    nodes.append(Node(node.kind, tuple(args), node.attrs))
    y = len(nodes) - 1
    nodes += [op("mul", y, y), _readout(values[index], y)]
    if program.shapes[index] != ():
        nodes.append(op("sum", y + 2))
    point = np.concatenate([np.asarray(values[a], dtype=np.float64).reshape(-1) for a in sources])
    try:
        local = Program(n, tuple(nodes))
    except ProgramError:
        return None
    return Case(local, point, dtype)


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
    for index, rule, local, _, failing in _checked_alone(case, variant, values, lambda rule: False):
        if local is None:
            unchecked.append(index)
            continue
        checked += 1
        if failing:
            verdict = failing[0]
            return Blame(index, rule[0], rule[1], verdict.kind.value, verdict.explanation, local.program,
                         tuple(float(v) for v in local.point), tuple(unchecked), rule[2])
    return Blame(None, "", "", COMPOSITION,
                 f"each of the {checked} differentiated node(s) checked alone is right: "
                 "the fault is in how the rules compose", unchecked=tuple(unchecked))


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

    for index, rule, local, result, failing in _checked_alone(case, variant, values, known):
        if local is None or result is None:
            continue
        if failing:
            # the node is the local program's own: the op before its readout (y, y*y, y +- y*y[, sum])
            y = len(local.program.nodes) - (3 if case.program.shapes[index] == () else 4)
            found = Blame(y, rule[0], rule[1], failing[0].kind.value, failing[0].explanation, local.program,
                          tuple(float(v) for v in local.point), (), rule[2])
            faults.append(LocalFault(rule, local, result, failing[0], found))
        else:
            held.append(rule)
    return faults, held


def _checked_alone(case: Case, variant: Any, values: Sequence[np.ndarray],
                   skip: Callable[[Rule], bool]
                   ) -> Iterator[tuple[int, Rule, Case | None, CaseResult | None, list[Verdict]]]:
    """Each differentiated node of ``case`` whose rule ``skip`` (asked as the walk gets
    there) does not rule out, checked alone with ``variant``: its index, its rule, the
    one-op case and its result (both None where it cannot be checked alone: no local
    program, a harness error, the variant unsupported or the point unjudged there) and
    the variant's failing verdicts on it. ``blame`` stops at the first failing node;
    ``local_faults`` walks them all."""
    program = case.program
    traced = traced_nodes(program)
    for index, node in enumerate(program.nodes):
        if node.kind in ("input", "const") or not traced[index]:
            continue
        rule = (node.kind, pattern_of(node, traced),
                node_region(node, [values[a] for a in node.args], traced, case.dtype))
        if skip(rule):
            continue
        local = local_case(program, index, values, case.dtype)
        result = None
        if local is not None:
            try:
                result = check_case(local, [variant])
            except HarnessError:
                result = None
        outcome = None if result is None else result.outcomes.get(variant.name)
        if result is None or outcome is None or outcome.status == "unsupported" or result.status != "judged":
            yield index, rule, None, None, []
            continue
        yield index, rule, local, result, [v for v in result.verdicts if v.variant == variant.name and v.kind.is_failure]
