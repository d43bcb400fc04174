"""The real-world scenarios behind the bug reports, as properties (harness/relations.py
checks them through each backend's probes, backends/scenarios/):

- a PINN Laplacian of an MLP u(x, y), tanh (must match the oracle) and relu (zero almost
  everywhere: explained as expected, never reported);
- custom differentiation rules (jax.custom_jvp with symbolic zeros, eqx.filter_custom_jvp
  with None tangents, torch.autograd.Function with jvp, mx.custom_function), also in a
  loop, under jit and with respect to a tuple of arguments;
- a model's parameter Hessian through its parameter tree (eqx.partition + ravel_pytree,
  torch.func.functional_call, mlx.nn.Module.update) on an MLP loss in its parameters, and
  in the structured input itself (jax.hessian of a dict/tuple pytree, eqx.filter_hessian
  of an eqx.Module, torch.func.hessian over a parameter dict, mx.grad over an
  mlx.nn.Module's parameter tree), its blocks compared with the flattened parameters' H;
- a Neural ODE: the parameter Hessian of a fixed-step Euler solve (a loop written in each
  framework, and diffrax.Euler with a constant step), against the same solve as a program
  for the oracle; of an adaptive diffrax solve (Tsit5, PID controller), against the exact
  solution's loss within the solver's tolerance; and the symmetry of each in float32 and
  float64 (float32 asymmetry is a note with its magnitude, not a finding).
"""

from __future__ import annotations

import importlib.util
import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hessdiff.backends import all_backends, get_backend
from hessdiff.harness.ir import Program, const, op
from hessdiff.harness.relations import check, probes_for
from hessdiff.harness.strategies import Case, cases
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
        pytest.skip(f"{backend} has no parameter-tree probe")
    result = check("parameters", case, _backend(backend))
    assert_no_new_findings(result.findings, baseline, report_dir / f"params-{backend}")


def _uses_diffrax(backend, probe: str) -> bool:
    return any("import diffrax" in inspect.getsource(h) for h in backend.probe(probe).helpers)


def _loops(backend: str) -> list[str]:
    """The backend's fixed-step solves written in the framework itself (not diffrax)."""
    return [p for p in probes_for(_backend(backend), "neural_ode") if not _uses_diffrax(_backend(backend), p)]


@pytest.mark.parametrize("backend", backend_params())
@cost_scaled(10)
@given(case=cases(max_n=3, max_ops=3, mlps=False))
def test_neural_ode(backend: str, case: Case, baseline, report_dir) -> None:
    if not _loops(backend):
        pytest.skip(f"{backend} has no Neural-ODE loop of its own (equinox's diffrax solves: "
                    "test_neural_ode_diffrax)")
    solve = check("neural_ode", case, _backend(backend), probes=_loops(backend))
    symmetric = check("symmetry", case, _backend(backend), probes=_loops(backend))
    assert_no_new_findings(solve.findings + symmetric.findings, baseline, report_dir / f"ode-{backend}")
    if case.dtype == "float32":
        assert all("numerical" in note for note in symmetric.notes)


def diffrax_params() -> list:
    """One parameter per (ODE relation, backend, diffrax probe, dtype), with ids like
    ``equinox-adaptive-ode-tsit5-float32``; skipped with the install hint where the backend
    or diffrax is missing. Both dtypes always: symmetry is checked in each."""
    params = []
    for backend in all_backends():
        status = backend.availability()
        for relation in ("neural_ode", "neural_ode_adaptive"):
            for probe in probes_for(backend, relation):
                if not _uses_diffrax(backend, probe):
                    continue
                marks = [] if status.available else [pytest.mark.skip(reason=status.reason)]
                if importlib.util.find_spec("diffrax") is None:
                    marks.append(pytest.mark.skip(reason="diffrax is not installed: "
                                                  "pip install 'hessdiff[diffrax]'"))
                params += [pytest.param(relation, backend.name, probe, dtype, marks=marks,
                                        id=f"{backend.name}-{probe}-{dtype}") for dtype in DTYPES]
    return params


# A diffrax solve compiles for seconds (jax.hessian through diffeqsolve's loops): fewer examples.
@pytest.mark.parametrize("relation,backend,probe,dtype", diffrax_params())
@cost_scaled(25)
@given(data=st.data())
def test_neural_ode_diffrax(relation: str, backend: str, probe: str, dtype: str, data, baseline,
                            report_dir) -> None:
    """The diffrax solve against its reference (the Euler program, or the exact solution
    within the solver's tolerance), and its symmetry: a float32 asymmetry is a note stating
    its magnitude (or a noise finding), never a failure."""
    case = data.draw(cases(dtypes=(dtype,), max_n=3, max_ops=3, mlps=False))
    solve = check(relation, case, _backend(backend), probes=[probe])
    symmetric = check("symmetry", case, _backend(backend), probes=[probe])
    assert_no_new_findings(solve.findings + symmetric.findings, baseline,
                           report_dir / f"{probe}-{backend}-{dtype}")
    if dtype == "float32":
        assert all("numerical" in note and "max |H - H^T| =" in note for note in symmetric.notes)
    if relation == "neural_ode_adaptive" and solve.checked:
        assert any("the solve's own error, numerical" in note for note in solve.notes), solve.notes
