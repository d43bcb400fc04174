"""The real-world scenarios behind the bug reports, as properties (harness/relations.py
checks them through each backend's probes, backends/scenarios/):

- a PINN Laplacian of an MLP u(x, y), tanh (must match the oracle) and relu (zero almost
  everywhere: explained as expected, never reported);
- custom differentiation rules (jax.custom_jvp with symbolic zeros, eqx.filter_custom_jvp
  with None tangents, torch.autograd.Function with jvp, mx.custom_function), also in a
  loop, under jit and with respect to a tuple of arguments;
- a model's parameter Hessian through its parameter tree (eqx.partition + ravel_pytree,
  torch.func.functional_call, mlx.nn.Module.update) on an MLP loss in its parameters;
- a Neural ODE: the parameter Hessian of a fixed-step Euler solve, against the same solve
  as a program for the oracle, and its symmetry in float32 and float64 (float32 asymmetry
  is a note with its magnitude, not a finding).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import get_backend
from harness.ir import Program, const, op
from harness.relations import check, probes_for
from harness.strategies import Case, cases
from _params import backend_params
from _relations import assert_no_new_findings, cost_scaled, report_dir  # noqa: F401 - a fixture

DTYPES = ("float64", "float32")


def _exact(dtype: str) -> st.SearchStrategy[float]:
    return st.floats(-1.5, 1.5, allow_nan=False, width=32 if dtype == "float32" else 64)


@st.composite
def pinn_cases(draw: st.DrawFn, activation: str) -> Case:
    """u(x, y) = w . act(W (x, y) + b) with random weights at a random point."""
    dtype = draw(st.sampled_from(DTYPES))
    width = draw(st.integers(1, 4))
    W = draw(st.lists(_exact(dtype), min_size=2 * width, max_size=2 * width))
    b = draw(st.lists(_exact(dtype), min_size=width, max_size=width))
    w = draw(st.lists(_exact(dtype), min_size=width, max_size=width))
    program = Program(2, (op("input"), const(np.reshape(W, (width, 2))), op("matmul", 1, 0), const(b),
                          op("add", 2, 3), op(activation, 4), const(w), op("matmul", 5, 6)))
    point = np.array(draw(st.lists(_exact(dtype), min_size=2, max_size=2)), dtype=np.float64)
    return Case(program, point, dtype)


@st.composite
def parameter_losses(draw: st.DrawFn) -> Case:
    """(w2 . act(W1 z + b1) - target)**2 as a function of the flat parameters (W1, b1, w2)
    for one data point z: the loss whose Hessian a second-order optimiser needs."""
    dtype = draw(st.sampled_from(DTYPES))
    hidden = draw(st.integers(1, 2))
    z = draw(st.lists(_exact(dtype), min_size=2, max_size=2))
    target = draw(_exact(dtype))
    activation = draw(st.sampled_from(("tanh", "sigmoid", "softplus")))
    n = 2 * hidden + 2 * hidden
    nodes = [op("input")]

    def add(node) -> int:
        nodes.append(node)
        return len(nodes) - 1

    pre = -1
    for j in range(2):
        column = add(op("gather", 0, idx=tuple(k * 2 + j for k in range(hidden))))
        term = add(op("mul", column, add(const(z[j]))))
        pre = term if pre < 0 else add(op("add", pre, term))
    pre = add(op("add", pre, add(op("gather", 0, idx=tuple(2 * hidden + k for k in range(hidden))))))
    act = add(op(activation, pre))
    w2 = add(op("gather", 0, idx=tuple(3 * hidden + k for k in range(hidden))))
    u = add(op("sum", add(op("mul", act, w2))))
    add(op("square", add(op("sub", u, add(const(target))))))
    point = np.array(draw(st.lists(_exact(dtype), min_size=n, max_size=n)), dtype=np.float64)
    return Case(Program(n, tuple(nodes)), point, dtype)


def _backend(name: str):
    return get_backend(name)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("backend", backend_params())
@cost_scaled(10)
@given(data=st.data())
def test_pinn_laplacian(backend: str, activation: str, data, baseline, report_dir) -> None:
    case = data.draw(pinn_cases(activation))
    result = check("laplacian", case, _backend(backend))
    assert_no_new_findings(result.findings, baseline, report_dir / f"pinn-{activation}-{backend}")
    if activation == "relu" and result.checked:
        assert any("piecewise-linear" in note for note in result.notes), result.notes


@pytest.mark.parametrize("backend", backend_params())
@cost_scaled(10)
@given(case=cases(max_n=3, max_ops=4))
def test_custom_rules(backend: str, case: Case, baseline, report_dir) -> None:
    if not probes_for(_backend(backend), "custom_rules"):
        pytest.skip(f"{backend} has no custom-rule probe")
    result = check("custom_rules", case, _backend(backend))
    assert_no_new_findings(result.findings, baseline, report_dir / f"custom-{backend}")


@pytest.mark.parametrize("backend", backend_params())
@cost_scaled(10)
@given(case=parameter_losses())
def test_parameter_hessians(backend: str, case: Case, baseline, report_dir) -> None:
    if not probes_for(_backend(backend), "parameters"):
        pytest.skip(f"{backend} has no parameter-tree probe (jax's is the equinox backend's)")
    result = check("parameters", case, _backend(backend))
    assert_no_new_findings(result.findings, baseline, report_dir / f"params-{backend}")


@pytest.mark.parametrize("backend", backend_params())
@cost_scaled(10)
@given(case=cases(max_n=3, max_ops=3, mlps=False))
def test_neural_ode(backend: str, case: Case, baseline, report_dir) -> None:
    if not probes_for(_backend(backend), "neural_ode"):
        pytest.skip(f"{backend} has no Neural-ODE probe (equinox's is the jax backend's)")
    solve = check("neural_ode", case, _backend(backend))
    symmetric = check("symmetry", case, _backend(backend), probes=probes_for(_backend(backend), "neural_ode"))
    assert_no_new_findings(solve.findings + symmetric.findings, baseline, report_dir / f"ode-{backend}")
    if case.dtype == "float32":
        assert all("numerical" in note for note in symmetric.notes)
