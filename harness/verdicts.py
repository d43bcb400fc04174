"""The judge's records: one variant's ``Verdict`` on a case, and the ``CaseResult`` of a case.

Kept apart from the judge (``hessdiff.harness.engine``) because everything downstream of it
(the campaign, blame, batches, relations) reads these records without judging anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hessdiff.harness.findings import Kind
from hessdiff.harness.oracle import OracleResult
from hessdiff.harness.outcomes import Outcome
from hessdiff.harness.case import Case

__all__ = ["CaseResult", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """One variant's disagreement with the truth on one case."""

    variant: str
    kind: Kind
    explanation: str
    max_error: float = 0.0


@dataclass
class CaseResult:
    """Everything the engine learned from one case."""

    case: Case
    oracle: OracleResult | None
    status: str
    outcomes: dict[str, Outcome]
    verdicts: list[Verdict] = field(default_factory=list)
    note: str = ""
    # Per variant, Hessian entries judged off the kinks and how many of them were too
    # ill-conditioned to tell a wrong value within the bound from the truth.
    entries: dict[str, tuple[int, int]] = field(default_factory=dict)

    def hessians(self) -> dict[str, np.ndarray | None]:
        return {name: o.hessian for name, o in self.outcomes.items()}

