"""The campaign as a property: on every generated case, every backend variant's Hessian
agrees with the independent oracle, except where the baseline documents a known fault.

A failure is a *new* fault: Hypothesis shrinks the case to a minimal program, and the
assertion message carries the diff engine's explanation; ``hessdiff run`` produces the
full report with repro.py for the same kind of search.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from hessdiff.harness.engine import check_case
from hessdiff.harness.strategies import Case, cases
from _params import backend_params, variants_of


def _signature(case: Case, variant: str, kind) -> str:
    ops = "+".join(sorted(case.program.op_names))
    return f"{variant}|{kind.value}|{case.dtype}|{ops}"


@pytest.mark.parametrize("backend", backend_params())
@given(case=cases(max_n=4, max_ops=5))
def test_every_variant_agrees_with_the_oracle(backend: str, case: Case, baseline) -> None:
    result = check_case(case, variants_of(backend))
    new = [
        v for v in result.verdicts
        if v.kind.is_failure and baseline.entry_for(_signature(case, v.variant, v.kind)) is None
    ]
    assert not new, "\n".join(f"[{v.kind.value}] {v.explanation}" for v in new)


