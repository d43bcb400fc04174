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
    # The Hessian entries that fail (a boolean (n, n) mask) for a wrong or non-finite
    # value off the kinks; None where the judge did not single them out. Blame reads it
    # to name the elements a fault is at (``hessdiff.harness.blame``).
    entries: np.ndarray | None = field(default=None, compare=False, repr=False)


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

