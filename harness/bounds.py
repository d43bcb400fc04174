"""The per-entry error bound a finding was judged against, recorded with the finding.

The judge accepts an entry when ``|observed - expected| <= bound``, where the bound is the
variant's tolerance (``hessdiff.harness.tolerance``) at the oracle's error scale for that entry.
A finding records the bound (``Finding.bound``) so that a report can draw |error| / bound
per entry without running the oracle again; findings written before the field existed
get it recomputed here, from the program, the point and the dtype they carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from hessdiff.backends.registry import framework_of
from hessdiff.harness.findings import Finding
from hessdiff.harness.oracle import evaluate
from hessdiff.harness.tolerance import tolerance_for

__all__ = ["bound_for", "judged_bound", "with_bounds"]


def judged_bound(finding: Finding) -> np.ndarray | None:
    """The bound of every Hessian entry of ``finding`` (None when it has none to give).

    Returns the recorded ``finding.bound`` if there is one. Otherwise the oracle is run on
    the finding's program and point (tens of milliseconds for a minimal program); None
    when the oracle cannot evaluate there (out of its domain, too slow) or the finding
    has no expected Hessian.
    """
    if finding.bound is not None:
        return finding.bound
    n = finding.program.n
    if finding.expected is None or np.shape(finding.expected) != (n, n):
        return None
    try:
        oracle = evaluate(finding.program, np.asarray(finding.point, dtype=np.float64), finding.dtype)
        tolerance = tolerance_for(finding.variant, finding.dtype)
    except Exception:  # noqa: BLE001 - a report draws without a bound rather than failing
        return None
    expected = oracle.hessian_float()
    # As the judge does (harness.engine): the error scale of this framework's own
    # derivative formulas, the variant's tolerance, at the (defined) true values.
    scale = oracle.scale_for(framework_of(finding.variant))
    return np.asarray(tolerance.bound(scale, np.where(np.isnan(expected), 0.0, expected)), dtype=np.float64)


def with_bounds(findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` with ``bound`` filled in where it is missing and can be computed."""
    out = []
    for finding in findings:
        bound = finding.bound if finding.bound is not None else judged_bound(finding)
        out.append(finding if bound is finding.bound else replace(finding, bound=bound))
    return out


def bound_for(bound: np.ndarray, variant: str, other: str, dtype: str) -> np.ndarray:
    """The bound ``other`` is held to, from ``variant``'s ``bound`` at the same point.

    A tolerance's bound is ``factor * (eps * t + tiny * (1 + t))`` of an entry's error
    scale ``t``: ``t`` is recovered from the one bound and the other tolerance applied to
    it (a test checks this against ``Tolerance.bound``, so a change of that formula
    shows). Exact for variants of one framework (one scale); for another framework it is
    an estimate: the judge gives each framework the scale of its own derivative formulas,
    which differs where those formulas do.
    """
    mine, theirs = tolerance_for(variant, dtype), tolerance_for(other, dtype)
    if mine == theirs:
        return bound
    with np.errstate(invalid="ignore", over="ignore"):
        t = np.maximum(np.asarray(bound, dtype=np.float64) / mine.factor - mine.tiny, 0.0) / (mine.eps + mine.tiny)
        return theirs.factor * (theirs.eps * t + theirs.tiny * (1.0 + t))
