"""Finding.bound: recorded with a finding, recomputed for older ones, carried over to other variants."""

from __future__ import annotations

import numpy as np
import pytest

from hessdiff.backends.registry import framework_of
from hessdiff.harness.bounds import bound_for, judged_bound, with_bounds
from hessdiff.harness.findings import Finding, Kind, finding_from_json
from hessdiff.harness.ir import Node, Program, op
from hessdiff.harness.oracle import evaluate
from hessdiff.harness.tolerance import tolerance_for

PROGRAM = Program(2, (Node("input"), op("sin", 0), op("mul", 1, 0), op("sum", 2)))
POINT = np.array([0.75, -1.5])


def _finding(variant: str = "jax:fwdrev", dtype: str = "float64", bound: np.ndarray | None = None) -> Finding:
    expected = evaluate(PROGRAM, POINT, dtype).hessian_float()
    return Finding(kind=Kind.WRONG_VALUE, variant=variant, versions={}, dtype=dtype, program=PROGRAM, point=POINT,
                   observed=expected + 1.0, expected=expected, bound=bound)


@pytest.mark.parametrize("variant", ["jax:fwdrev", "torch:func", "mlx:fwdrev"])
def test_judged_bound_is_the_judges(variant: str) -> None:
    """The variant's tolerance at its framework's error scale, as harness.engine judges."""
    oracle = evaluate(PROGRAM, POINT, "float64")
    scale = oracle.scale_for(framework_of(variant))
    want = tolerance_for(variant, "float64").bound(scale, oracle.hessian_float())
    np.testing.assert_array_equal(judged_bound(_finding(variant)), want)


def test_bound_is_optional_in_json_and_round_trips() -> None:
    plain = _finding()
    assert "bound" not in plain.to_json()  # files written before the field stay as they were
    assert finding_from_json(plain.to_json()).bound is None
    (bounded,) = with_bounds([plain])
    data = bounded.to_json()
    np.testing.assert_array_equal(finding_from_json(data).bound, bounded.bound)


def test_a_recorded_bound_is_kept() -> None:
    recorded = np.full((2, 2), 0.5)
    (finding,) = with_bounds([_finding(bound=recorded)])
    assert finding.bound is recorded


@pytest.mark.parametrize("other", ["torch:func", "mlx:fwdrev"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bound_for_another_variant_is_its_tolerance_at_the_same_scale(other: str, dtype: str) -> None:
    scale = evaluate(PROGRAM, POINT, dtype).hessian_scale
    truth = evaluate(PROGRAM, POINT, dtype).hessian_float()
    mine = tolerance_for("jax:fwdrev", dtype).bound(scale, truth)
    theirs = tolerance_for(other, dtype).bound(scale, truth)
    np.testing.assert_allclose(bound_for(mine, "jax:fwdrev", other, dtype), theirs, rtol=1e-12)
