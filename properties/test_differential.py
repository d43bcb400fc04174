"""The campaign as a property: on every generated case, every backend variant's Hessian
agrees with the independent oracle, except where the baseline documents a known fault.

A failure is a *new* fault: Hypothesis shrinks the case to a minimal program, and the
assertion message carries the diff engine's explanation; ``hessdiff run`` produces the
full report with repro.py for the same kind of search.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from hessdiff.backends.registry import variant_route
from hessdiff.harness.blame import blame
from hessdiff.harness.engine import check_case
from hessdiff.harness.outcomes import HarnessError
from hessdiff.harness.strategies import Case, cases
from _params import backend_params, variants_of


def _signature(case: Case, variant: str, kind) -> str:
    """The signature of an unblamed finding of ``variant`` on ``case`` (``Finding.signature``)."""
    ops = "+".join(sorted(case.program.op_names))
    return f"{variant.partition(':')[0]}|{variant_route(variant)}|{kind.value}|{case.dtype}|{ops}"


def _known(baseline, case: Case, verdict, variants: list) -> bool:
    """Whether the baseline knows this failing verdict: by its ops, or, for an entry that
    names the broken rule (``...|tanh(T) @ *``), by the rule the case is blamed on."""
    signature = _signature(case, verdict.variant, verdict.kind)
    if baseline.entry_for(signature) is not None:
        return True
    if not baseline.names_rules(verdict.variant, verdict.kind.value, case.dtype):
        return False
    variant = next(v for v in variants if v.name == verdict.variant)
    try:
        cause = blame(case, variant).root_cause
    except HarnessError:
        return False
    return baseline.entry_for(f"{signature}|{cause}") is not None


@pytest.mark.parametrize("backend", backend_params())
@given(case=cases(max_n=4, max_ops=5))
def test_every_variant_agrees_with_the_oracle(backend: str, case: Case, baseline) -> None:
    variants = variants_of(backend)
    result = check_case(case, variants)
    new = [v for v in result.verdicts if v.kind.is_failure and not _known(baseline, case, v, variants)]
    assert not new, "\n".join(f"[{v.kind.value}] {v.explanation}" for v in new)


