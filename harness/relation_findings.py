"""What a relation found, and what every relation checks with: the oracle at a case, one
of the framework's own computations run, and its outcome judged by the oracle and turned
into a ``Finding`` (see ``hessdiff.harness.relations``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hessdiff.backends import Backend, BackendVariant
from hessdiff.harness.case import Case
from hessdiff.harness.engine import judge
from hessdiff.harness.outcomes import Outcome, run_variant
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.ir import Program
from hessdiff.harness.oracle import OracleResult, OutOfDomain, evaluate


@dataclass
class RelationResult:
    """What one relation found on one case for one backend.

    Arguments:
        findings: one per violation, attributed (see ``hessdiff.harness.relations``).
        notes: what was checked and dismissed, for a human (a piecewise-linear program's
            zero Laplacian, the float32 asymmetry of a long computation and its size).
        checked: how many comparisons ran (0 when nothing applied: out of domain, ...).
    """

    relation: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.kind.is_failure]


def oracle_of(program: Program, case: Case, dtype: str | None = None) -> OracleResult | None:
    """The oracle's verdict on ``program`` at the case's point; None out of its domain."""
    try:
        return evaluate(program, case.point, dtype or case.dtype)
    except OutOfDomain:
        return None


def make_finding(verdict_kind: Kind, variant: BackendVariant, case: Case, outcome: Outcome,
                 oracle: OracleResult, explanation: str, max_error: float,
                 others: dict[str, np.ndarray | None] | None = None,
                 expected: np.ndarray | None = None) -> Finding:
    """A finding of ``verdict_kind`` on ``variant``'s outcome (``expected``: the oracle's H
    unless given)."""
    return Finding(
        kind=verdict_kind,
        variant=variant.name,
        versions={variant.backend.name: variant.backend.version()},
        dtype=case.dtype,
        program=case.program,
        point=np.asarray(case.point, dtype=np.float64),
        observed=outcome.hessian,
        expected=oracle.hessian_float() if expected is None else expected,
        others=dict(others or {}),
        explanation=explanation,
        error=outcome.error,
        max_error=max_error,
    )


def attribute(case: Case, oracle: OracleResult, outcome: Outcome, judged_program: Program | None = None):
    """The engine's verdict on one outcome (None: the oracle accepts it)."""
    judged = Case(judged_program or case.program, case.point, case.dtype)
    result = judge(judged, oracle, {outcome.variant: outcome})
    verdicts = [v for v in result.verdicts if v.variant == outcome.variant]
    return (verdicts[0] if verdicts else None), result.note


def reference_variant(backend: Backend) -> BackendVariant:
    """The backend's first (eager, documented) variant: the relations' own reference."""
    return BackendVariant(backend, next(iter(backend.variants)))


def run_at(variant: BackendVariant, case: Case, dtype: str | None = None) -> Outcome:
    """``variant`` run on the case (in ``dtype`` when given), at its float64 point."""
    point = np.asarray(case.point, dtype=np.float64)
    return run_variant(variant, Case(case.program, point, dtype or case.dtype))
