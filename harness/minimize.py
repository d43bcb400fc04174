"""Greedy program reduction after Hypothesis' shrink: drop every op the fault survives without.

Hypothesis shrinks the *choices* that built a program, which removes most of it, but it
cannot always see that a node in the middle could be bypassed (``tanh(W @ x)`` ->
``W @ x``). This pass tries exactly that, node by node, and removes constants and dead
nodes, keeping a change only when the fault (same variant, same kind) still shows. The
result is 1-minimal: no single op can be removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from hessdiff.harness.case import Case
from hessdiff.harness.ir import Node, Program, ProgramError

__all__ = ["bypass", "minimize"]


def bypass(program: Program, node: int, replacement: int) -> Program | None:
    """``program`` with every use of ``node`` replaced by ``replacement``; None if invalid."""
    nodes = list(program.nodes)
    if node == len(nodes) - 1:
        output = replacement
    else:
        output = len(nodes) - 1
        nodes = [
            Node(n.kind, tuple(replacement if a == node else a for a in n.args), n.attrs, n.value)
            for n in nodes
        ]
    return _prune(program.n, nodes, output)


def _prune(n: int, nodes: list[Node], output: int) -> Program | None:
    """Keep the input and the nodes the output depends on, renumbered in order."""
    live = {0, output}
    for i in range(output, 0, -1):
        if i in live:
            live.update(nodes[i].args)
    order = sorted(live)
    index = {old: new for new, old in enumerate(order)}
    kept = [
        Node(nodes[i].kind, tuple(index[a] for a in nodes[i].args), nodes[i].attrs, nodes[i].value)
        for i in order
    ]
    try:
        return Program(n, tuple(kept))
    except ProgramError:
        return None


def _candidates(program: Program) -> Iterator[Program]:
    for i in range(len(program.nodes) - 1, 0, -1):
        node = program.nodes[i]
        if node.kind == "const":
            continue
        for a in dict.fromkeys(node.args):
            candidate = bypass(program, i, a)
            if candidate is not None and candidate.size < program.size:
                yield candidate


def minimize(case: Case, still_fails: Callable[[Case], bool], max_attempts: int = 200) -> tuple[Case, int]:
    """The smallest case reachable by removing single ops, and how many attempts it took."""
    attempts = 0
    improved = True
    while improved and attempts < max_attempts:
        improved = False
        for candidate in _candidates(case.program):
            attempts += 1
            trial = Case(candidate, case.point, case.dtype)
            if still_fails(trial):
                case = trial
                improved = True
                break
            if attempts >= max_attempts:
                break
    return case, attempts
