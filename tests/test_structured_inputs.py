"""Hessians in structured inputs (issue #19, item 3): each backend's probe that
differentiates a parameter pytree, an ``eqx.Module``, a ``functional_call`` parameter dict
or an ``mlx.nn.Module``'s parameter tree directly (``backends/scenarios/*_probes.py``,
relation "parameters", ``campaign=True``) agrees with the oracle's H on the flattened
parameters, and a block assembly in the wrong leaf order would not."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys

import numpy as np
import pytest

from hessdiff.backends import (all_backends, all_variants, campaign_variants, get_backend, get_variant,
                               register)
from hessdiff.harness.findings import Kind
from hessdiff.harness.ir import Program, const, op
from hessdiff.harness.oracle import evaluate
from hessdiff.harness.relations import check
from hessdiff.harness.run import select_variants
from hessdiff.harness.strategies import Case
from planted import PlantedRelationsBackend

# backend -> its structured-input probe: what each framework's users differentiate.
STRUCTURED = {
    "jax": "params-pytree",  # jax.hessian of a dict holding a matrix and a tuple
    "equinox": "params-filter-hessian",  # eqx.filter_hessian of an eqx.Module (nn.MLP / nn.Linear)
    "torch": "params-dict",  # torch.func.hessian over a functional_call parameter dict
    "mlx": "params-tree",  # mx.grad over an mlx.nn.Module's parameter tree
}
SIZES = (1, 2, 5)  # one leaf; weight and bias; equinox's nn.MLP (two Linear layers)


def weighted(n: int) -> Program:
    """sum(tanh(x * reversed(x)) + c * sin(x)) with c = 1..n: cross terms everywhere, and a
    diagonal whose entries differ, so no reordering of the parameters leaves H as it is."""
    return Program(n, (op("input"), op("gather", 0, idx=tuple(reversed(range(n)))), op("mul", 0, 1),
                       op("tanh", 2), op("sin", 0), const(np.arange(1.0, n + 1)), op("mul", 4, 5),
                       op("add", 3, 6), op("sum", 7)))


def point(n: int, dtype: str = "float64") -> np.ndarray:
    return np.linspace(-0.9, 0.8, n).astype(dtype).astype(np.float64)


def _available(name: str) -> list:
    status = get_backend(name).availability()
    return [] if status.available else [pytest.mark.skip(reason=status.reason)]


def _equinox_0114() -> bool:
    try:
        return importlib.metadata.version("equinox") == "0.11.4"
    except importlib.metadata.PackageNotFoundError:
        return False


def _params(sizes: tuple[int, ...] = SIZES, dtypes: tuple[str, ...] = ("float64", "float32")) -> list:
    out = []
    for backend, probe in STRUCTURED.items():
        marks = _available(backend)
        if backend == "equinox" and _equinox_0114():
            why = "equinox 0.11.4 raises (test_equinox_0114_fails_on_a_module)"
            marks.append(pytest.mark.skip(reason=why))
        out += [pytest.param(backend, probe, n, dtype, marks=marks, id=f"{backend}-n{n}-{dtype}")
                for n in sizes for dtype in dtypes]
    return out


def test_every_backend_runs_its_structured_probe_in_the_campaign() -> None:
    for backend in all_backends():
        assert backend.name in STRUCTURED, f"{backend.name} has no structured-input probe"
        probe = backend.probe(STRUCTURED[backend.name])
        assert probe.relation == "parameters" and probe.campaign and probe.batchable, backend.name
        assert [v.name for v in campaign_variants([backend.name])] == (
            [v.name for v in all_variants([backend.name])] + [f"{backend.name}:{STRUCTURED[backend.name]}"])


def test_a_campaign_named_by_variant_runs_only_that_one() -> None:
    assert [v.name for v in campaign_variants(["jax:fwdrev", "torch:params-dict"])] == [
        "jax:fwdrev", "torch:params-dict"]


def test_hessdiff_run_selects_the_structured_probes_by_default() -> None:
    selected = {v.name for v in select_variants(None, err=sys.stderr)}
    for backend, probe in STRUCTURED.items():
        if get_backend(backend).availability().available:
            assert f"{backend}:{probe}" in selected


@pytest.mark.parametrize("backend,probe,n,dtype", _params())
def test_structured_hessian_agrees_with_the_oracle(backend: str, probe: str, n: int, dtype: str) -> None:
    case = Case(weighted(n), point(n, dtype), dtype)
    result = check("parameters", case, get_backend(backend), probes=[probe])
    assert result.checked == 1, result.notes
    assert [f.explanation for f in result.findings if f.kind.is_failure] == []


@pytest.mark.parametrize("backend,probe,n,dtype", _params(sizes=(5,), dtypes=("float64",)))
def test_a_batch_of_points_is_each_point_s_hessian(backend: str, probe: str, n: int, dtype: str) -> None:
    """The campaign checks its points in one vmapped call (``Backend.batched``)."""
    variant = get_variant(f"{backend}:{probe}")
    points = np.stack([point(n) * (1 + k / 4) for k in range(3)])
    batch = variant.hessians(weighted(n), points)
    alone = np.stack([variant.hessian(weighted(n), x) for x in points])
    np.testing.assert_allclose(batch, alone, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n", [n for n in SIZES if n > 1])
def test_no_reordering_of_the_leaves_keeps_the_pinned_hessian(n: int) -> None:
    """So a probe assembling its blocks in another order than its loss reads the leaves
    in (P H P^T for a permutation P) fails the test above: H's diagonal entries differ."""
    diagonal = np.diag(evaluate(weighted(n), point(n)).hessian_float())
    assert np.min(np.abs(np.subtract.outer(diagonal, diagonal))[~np.eye(n, dtype=bool)]) > 0.1


def test_a_block_assembly_in_the_wrong_leaf_order_is_a_finding(clean_registry: None) -> None:
    plantedrel = register(PlantedRelationsBackend())
    result = check("parameters", Case(weighted(5), point(5), "float64"), plantedrel,
                   probes=["params-pytree-insertion-order"])
    assert [f.kind for f in result.findings] == [Kind.WRONG_VALUE], result.notes


@pytest.mark.slow
@pytest.mark.parametrize("backend,probe,n,dtype", _params(sizes=(5,), dtypes=("float32",)))
def test_the_reproducer_builds_the_model_and_prints_the_same_hessian(backend: str, probe: str, n: int,
                                                                     dtype: str) -> None:
    variant = get_variant(f"{backend}:{probe}")
    x = point(n, dtype).astype(dtype)
    source = variant.source(weighted(n), x)
    run = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    printed = np.array(ast.literal_eval(run.stdout.split("hessian:", 1)[1].strip()))
    np.testing.assert_array_equal(printed, variant.hessian(weighted(n), x))


@pytest.mark.skipif(not _equinox_0114(), reason="equinox 0.11.4 only (tox -e differential-eqx0114)")
def test_equinox_0114_fails_on_a_module() -> None:
    """Equinox 0.11.4's filter_jacfwd combines the Jacobian of a pytree input with a None
    static output (equinox#741, fixed by PR #734): filter_hessian of a Module raises. The
    campaign reports it as a crash (regression/baseline-eqx0114.json knows it)."""
    with pytest.raises(ValueError, match="Custom node type mismatch"):
        get_variant("equinox:params-filter-hessian").hessian(weighted(2), point(2))
