"""A first smoke property, until the campaign replaces it: on a few hand-built smooth
programs, JAX's forward-over-reverse Hessian is symmetric and equals reverse-over-reverse.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hessdiff.backends import BackendVariant, get_variant
from hessdiff.harness.ir import Program, const, op

PROGRAMS = {
    # sum(sin(x) * x)
    "sin_mul": Program(3, (op("input"), op("sin", 0), op("mul", 1, 0), op("sum", 2))),
    # sum(softplus(x * reversed(x)))
    "gather_softplus": Program(
        2,
        (op("input"), op("gather", 0, idx=(1, 0)), op("mul", 0, 1), op("softplus", 2), op("sum", 3)),
    ),
    # tanh(c @ x) * exp(mean(x))
    "matmul_tanh_exp": Program(
        3,
        (
            op("input"),
            const([0.5, -1.25, 2.0]),
            op("matmul", 1, 0),
            op("tanh", 2),
            op("mean", 0),
            op("exp", 4),
            op("mul", 3, 5),
        ),
    ),
    # sum(sigmoid(x) ** 3 - cos(x) / (1 + x**2))
    "powi_div": Program(
        2,
        (
            op("input"),
            op("sigmoid", 0),
            op("powi", 1, p=3),
            op("cos", 0),
            op("square", 0),
            const(1.0),
            op("add", 4, 5),
            op("div", 3, 6),
            op("sub", 2, 7),
            op("sum", 8),
        ),
    ),
}


def _variant(spec: str) -> BackendVariant:
    variant = get_variant(spec)
    status = variant.backend.availability()
    if not status.available:
        pytest.skip(status.reason)
    return variant


@st.composite
def program_and_point(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    name = draw(st.sampled_from(sorted(PROGRAMS)))
    n = PROGRAMS[name].n
    point = draw(st.lists(st.floats(-2.0, 2.0), min_size=n, max_size=n))
    return name, np.array(point, dtype=np.float64)


@given(program_and_point())
def test_jax_fwdrev_hessian_is_symmetric_and_matches_revrev(case: tuple[str, np.ndarray]) -> None:
    name, x = case
    program = PROGRAMS[name]
    fwdrev = _variant("jax:fwdrev").hessian(program, x)
    revrev = _variant("jax:revrev").hessian(program, x)
    assert fwdrev.shape == (program.n, program.n)
    np.testing.assert_allclose(fwdrev, fwdrev.T, rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(fwdrev, revrev, rtol=1e-12, atol=1e-12, err_msg=name)
