"""The Equinox backend: ``filter_hessian`` eager and jitted agree with ``jax.hessian`` on
smooth programs (and give 0 for relu away from its kink, the equinox#801 regression),
its reproducers run standalone and print the adapter's numbers, and a missing install is
reported cleanly."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hessdiff.backends.backend_variant import BackendVariant
from hessdiff.backends.base import BackendUnavailable
from hessdiff.backends.jax_backend import JAX_LOWERINGS
from hessdiff.backends.registry import check_backend, get_backend, get_variant
from hessdiff.harness.ir import Node, Program, const, op

BACKEND = get_backend("equinox")
for _backend in (BACKEND, get_backend("jax")):
    if not _backend.availability().available:
        pytest.skip(_backend.availability().reason, allow_module_level=True)

import jax.numpy as jnp  # noqa: E402
VARIANTS = list(BACKEND.variants)
DTYPES = ("float32", "float64")
REPO = Path(__file__).resolve().parents[1]


from scripts import run_scripts  # noqa: E402 - tests/ is on sys.path
from programs import CORE_OPS, PROGRAMS, assert_close as _assert_close, point as _point, reference as _reference  # noqa: E402 - tests/ is on sys.path

# sum(relu(x)) away from 0: the Hessian is exactly 0. equinox 0.11.4 with jax 0.4.26
# returned 1.0 for eqx.filter_hessian(jax.nn.relu)(jnp.ones(())) (patrick-kidger/
# equinox#801); the IR's input is always a vector, so this is the closest program.
RELU = Program(3, (Node("input"), op("relu", 0), op("sum", 1)))



def _variant_params() -> list:
    return [
        pytest.param(v, d, id=f"equinox:{v}-{d}") for v in VARIANTS for d in DTYPES
    ]


# --- agreement with JAX -----------------------------------------------------------------


# Eager JAX compiles every primitive per shape and dtype on first use; the float64
# references warm the float64 ones, but eager float32 pays afresh for each program
# (~10 CPU-seconds for every_op alone). every_op's lowerings are JAX's own, so eager
# float32 is left to the other programs and filter_jit covers every_op in float32.
AGREEMENT_CASES = [
    pytest.param(v, d, k, id=f"equinox:{v}-{d}-{k}")
    for v in VARIANTS for d in DTYPES for k in sorted(PROGRAMS)
    if (v, d, k) != ("filter_hessian", "float32", "every_op")
]


@pytest.mark.parametrize("variant,dtype,key", AGREEMENT_CASES)
def test_hand_built_programs_agree_with_jax(variant: str, dtype: str, key: str) -> None:
    program, point = PROGRAMS[key][0], _point(key, dtype)
    actual = BackendVariant(BACKEND, variant).hessian(program, point)
    assert actual.dtype == np.dtype(dtype)
    _assert_close(actual, _reference(program, tuple(point.tolist())), dtype)


def test_every_op_program_covers_the_catalogue() -> None:
    assert PROGRAMS["every_op"][0].op_names == set(CORE_OPS)


def test_gradient_and_value_agree_with_jax() -> None:
    program, x = PROGRAMS["mlp"]
    point = np.asarray(x)
    eqx_variant, jax_variant = BackendVariant(BACKEND, "filter_hessian"), get_variant("jax:fwdrev")
    np.testing.assert_allclose(
        eqx_variant.gradient(program, point), jax_variant.gradient(program, point), rtol=1e-12
    )
    np.testing.assert_allclose(
        eqx_variant.value(program, point), jax_variant.value(program, point), rtol=1e-12
    )


def test_float64_does_not_leak_into_global_jax_state() -> None:
    program, _ = PROGRAMS["mlp"]
    BackendVariant(BACKEND, "filter_jit").hessian(program, _point("mlp", "float64"))
    assert jnp.asarray(1.0).dtype == jnp.float32


def test_x_is_passed_as_a_jax_array_of_the_dtype() -> None:
    # Equinox's filtered transforms treat arrays and other leaves differently, so x is
    # handed over as a user would: a jnp array of the dtype.
    for dtype in DTYPES:
        with BACKEND.precision(dtype):
            x = BACKEND.asarray(np.ones(2), dtype)
            assert isinstance(x, jnp.ndarray)
            assert x.dtype == jnp.dtype(dtype)


def test_registration_reuses_the_jax_lowerings() -> None:
    check_backend(BACKEND)
    assert BACKEND.lowerings is JAX_LOWERINGS


# --- emitted reproducers ----------------------------------------------------------------

SCRIPT_CASES = [
    (variant, dtype, key) for key in ("mlp", "reversed_gather") for variant in VARIANTS
    for dtype in DTYPES
]
# The float32 scripts run first, before any float64 script turns on ``jax_enable_x64``
# (process-wide in a script), so that switch cannot leak into them.


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], str]:
    """Every reproducer's stdout, each run once, float32 first."""
    cases = sorted(SCRIPT_CASES, key=lambda case: DTYPES.index(case[1]))
    scripts = {
        "-".join((v, d, k)): BackendVariant(BACKEND, v).source(PROGRAMS[k][0], _point(k, d))
        for v, d, k in cases
    }
    outputs = run_scripts(tmp_path_factory.mktemp("equinox_scripts"), scripts)
    return {case: outputs["-".join(case)] for case in SCRIPT_CASES}


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"equinox:{c[0]}-{c[1]}-{c[2]}") for c in SCRIPT_CASES]
)
def test_emitted_source_reproduces_adapter_result(script_runs: dict, case: tuple) -> None:
    variant, dtype, key = case
    stdout = script_runs[case]
    label, _, printed = stdout.strip().splitlines()[-1].partition(" hessian: ")
    assert label == f"equinox:{variant}", stdout
    expected = BackendVariant(BACKEND, variant).hessian(PROGRAMS[key][0], _point(key, dtype))
    np.testing.assert_array_equal(np.asarray(ast.literal_eval(printed)), expected)


def test_emitted_source_uses_equinox() -> None:
    program, _ = PROGRAMS["mlp"]
    source = BackendVariant(BACKEND, "filter_jit").source(program, _point("mlp", "float64"))
    assert "import equinox as eqx" in source
    assert 'jax.config.update("jax_enable_x64", True)' in source
    assert "H = eqx.filter_jit(eqx.filter_hessian(f))(x)" in source
    compile(source, "<reproducer>", "exec")


# --- a missing install ------------------------------------------------------------------


def test_unavailable_when_a_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BACKEND, "modules", ("jax", "hessdiff_no_such_module"))
    status = BACKEND.availability()
    assert not status.available
    assert "hessdiff_no_such_module" in status.reason
    assert "pip install 'hessdiff[equinox]'" in status.reason
    with pytest.raises(BackendUnavailable, match="hessdiff_no_such_module"):
        BackendVariant(BACKEND, "filter_hessian").hessian(RELU, np.ones(3))


def test_module_imports_without_equinox() -> None:
    # The backend module must import (and report unavailable) where equinox is absent.
    code = (
        "import sys; sys.modules['equinox'] = None\n"
        "import hessdiff.backends.equinox_backend as eb\n"
        "status = eb.EquinoxBackend().availability()\n"
        "assert not status.available, status\n"
        "print(status.reason)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "equinox is not importable" in run.stdout
