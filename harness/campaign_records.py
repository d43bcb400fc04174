"""A campaign's records of the faults met in a round, and how a hit is told to be a known one.

Within a round each fault has a ``Record``: the smallest case seen for it so far, and its
count; at the end of the round a record becomes a ``Finding``. A hit a finding already
explains (``explaining``) only bumps that finding's count. A new fault raises its own
``NewFinding`` class (``exception_for``), so that Hypothesis shrinks each fault apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hessdiff.backends.registry import variant_route
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.case import Case
from hessdiff.harness.verdicts import CaseResult, Verdict

__all__ = ["Key", "NewFinding", "Record", "RecordKey", "exception_for", "explaining", "same_rule"]

Key = tuple[str, Kind, str]
# A round's record of one fault: its key and the ops of its first failing case.
RecordKey = tuple[str, Kind, str, frozenset[str]]


class NewFinding(Exception):
    """Raised inside the Hypothesis test for a fault not yet explained; one class per key."""


_EXCEPTION_CLASSES: dict[tuple[str, str, Kind, str, frozenset[str]], type[NewFinding]] = {}


def exception_for(key: RecordKey) -> type[NewFinding]:
    """The class a record's fault raises: one per framework, route, kind and dtype (as its
    finding is signed) and first case's ops, which a shrink of it keeps within
    (``Record.admits``). Hypothesis shrinks each class as a bug of its own; two variants
    of one route share a class, as they share a finding."""
    variant, kind, dtype, ops = key
    backend, route = variant.partition(":")[0], variant_route(variant)
    signed = (backend, route, kind, dtype, ops)
    if signed not in _EXCEPTION_CLASSES:
        text = f"{backend}_{route}_{kind.value}_{dtype}_{'_'.join(sorted(ops))}"
        name = "Finding_" + "".join(ch if ch.isalnum() else "_" for ch in text)
        _EXCEPTION_CLASSES[signed] = type(name, (NewFinding,), {})
    return _EXCEPTION_CLASSES[signed]


def same_rule(rule: tuple[str, str, str], known: tuple[str, str, str]) -> bool:
    """Whether a node's rule (op, argument pattern, region) is a known blamed rule: the
    same op and pattern, in its region (a blame without a region, from before regions,
    takes every region)."""
    return rule[:2] == known[:2] and (not known[2] or rule[2] == known[2])


def blamed_rule(blame: Mapping[str, Any] | None) -> tuple[str, str, str] | None:
    """The rule (op, argument pattern, region) a finding's or record's blame names; None
    where it names none (not blamed, or a composition) or blames a node's value, not its
    derivative rule (a later hit that exercises the rule is not that fault: it is known by
    its ops, as a composition is)."""
    if not blame or blame.get("node") is None or blame.get("aspect") == "value":
        return None
    return blame.get("op", ""), blame.get("pattern", ""), blame.get("region", "")


@dataclass
class Record:
    """The smallest case seen so far for one key, with how big the first one was."""

    case: Case
    result: CaseResult
    verdict: Verdict
    first_size: int
    count: int = 1
    first_seen: str = ""
    last_seen: str = ""
    reduce_attempts: int = 0
    provisional: set[str] = field(default_factory=set)  # signatures logged before minimising
    baselined: bool = False  # the baseline covers its first hit: not shrunk
    first_ops: frozenset[str] = frozenset()  # the first case's: a shrink may drop them, never add one
    blame: dict[str, Any] | None = None  # known when it was made (a node checked alone: ``Campaign._unmask``)

    def __post_init__(self) -> None:
        self.first_ops = self.first_ops or self.case.program.op_names

    def admits(self, case: Case) -> bool:
        """Whether ``case`` failing the same way is the same fault, shrunk: it brings in no
        op the first case lacked. Without this, shrinking slips from the fault it started
        on to another of the same variant, kind and dtype that simpler programs show (a
        mutated arctan2 rule shrank to MLX's own fault at a tie of min, at x = 0), and one
        of the two is never reported."""
        return case.program.op_names <= self.first_ops

    def finding(self, versions: Mapping[str, str], provisional: bool = False) -> Finding:
        """The finding this record makes, with the frameworks' ``versions``; ``provisional``:
        logged at its first hit, before its round minimises it."""
        case, result, verdict = self.case, self.result, self.verdict
        outcome = result.outcomes[verdict.variant]
        oracle = result.oracle
        explanation = verdict.explanation
        if result.note and result.note not in explanation:
            explanation += f" ({result.note}.)"
        return Finding(
            kind=verdict.kind,
            variant=verdict.variant,
            versions=dict(versions),
            dtype=case.dtype,
            program=case.program,
            point=case.point,
            observed=outcome.hessian,
            expected=oracle.hessian_float() if oracle is not None else None,
            others={n: o.hessian for n, o in result.outcomes.items() if n != verdict.variant},
            explanation=explanation,
            error=outcome.error,
            max_error=verdict.max_error,
            count=self.count,
            minimised=(
                f"not minimised yet: logged at its first hit ({case.program.size} ops), while its round ran"
                if provisional else
                f"not minimised: the baseline already covers it (first seen on {self.first_size} ops)"
                if self.baselined else
                f"first seen on a program of {self.first_size} ops; Hypothesis shrink, then "
                f"greedy op removal ({self.reduce_attempts} attempts): {case.program.size} ops"
            ),
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            provisional=provisional,
        )


def explaining(findings: Iterable[Finding], key: Key, case: Case,
               rules: frozenset[tuple[str, str, str]]) -> Finding | None:
    """The finding already made that explains this hit, if one does.

    A finding speaks for its framework and route (``Finding.signature``): a hit of
    another variant of the same route, kind and dtype is its fault too. A blamed finding explains a hit that exercised its blamed rule, with the same
    argument pattern, in the same region (``rules``: the hit's, ``Exercised.rules``);
    an unblamed one (a composition fault, a dismissed kind, a baselined or older
    finding) one whose program holds all its ops. Judged by op set alone, a finding
    on ``tanh + sum`` took every later fault of its variant, kind and dtype in a
    program with a tanh and a sum for itself, and a new fault there was never seen."""
    ops = case.program.op_names
    variant, kind, dtype = key
    where = (variant.partition(":")[0], variant_route(variant), kind, dtype)
    for finding in findings:
        if (finding.backend, finding.route, finding.kind, finding.dtype) != where:
            continue
        known = blamed_rule(finding.blame)
        if known is not None:
            explains = any(same_rule(rule, known) for rule in rules)
        else:
            explains = finding.program.op_names <= ops
        if explains:
            return finding
    return None
