"""The PyTorch backend: every variant agrees with JAX on smooth programs, its emitted
reproducers run standalone and print the adapter's numbers, and torch's odd result
types (ZeroTensor) and a missing install are handled cleanly."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hessdiff.backends.backend_variant import BackendVariant
from hessdiff.backends.base import BackendUnavailable, Unsupported
from hessdiff.backends.registry import check_backend, get_backend, get_variant
from hessdiff.harness.ir import Node, Program, const, op

BACKEND = get_backend("torch")
for _backend in (BACKEND, get_backend("jax")):
    if not _backend.availability().available:
        pytest.skip(_backend.availability().reason, allow_module_level=True)

import torch  # noqa: E402
VARIANTS = list(BACKEND.variants)
DTYPES = ("float32", "float64")
REPO = Path(__file__).resolve().parents[1]


from scripts import run_scripts  # noqa: E402 - tests/ is on sys.path
from programs import CORE_OPS, PROGRAMS, assert_close as _assert_close, point as _point, reference as _reference  # noqa: E402 - tests/ is on sys.path



def _variant_params() -> list:
    return [
        pytest.param(v, d, id=f"torch:{v}-{d}") for v in VARIANTS for d in DTYPES
    ]


# --- agreement with JAX -----------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(PROGRAMS))
@pytest.mark.parametrize("variant,dtype", _variant_params())
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
    torch_variant, jax_variant = BackendVariant(BACKEND, "func"), get_variant("jax:fwdrev")
    np.testing.assert_allclose(
        torch_variant.gradient(program, point), jax_variant.gradient(program, point), rtol=1e-12
    )
    np.testing.assert_allclose(
        torch_variant.value(program, point), jax_variant.value(program, point), rtol=1e-12
    )


def test_registration_is_valid() -> None:
    check_backend(BACKEND)


# --- emitted reproducers ----------------------------------------------------------------

ABS_AT_ZERO = Program(2, (Node("input"), op("abs", 0), op("sum", 1)))
SCRIPT_CASES = [
    (variant, dtype, key) for key in ("mlp", "reversed_gather") for variant in VARIANTS
    for dtype in DTYPES
] + [("func-revrev", "float64", "abs_at_zero")]


def _case(key: str, dtype: str) -> tuple[Program, np.ndarray]:
    if key == "abs_at_zero":
        return ABS_AT_ZERO, np.zeros(2, dtype=dtype)
    return PROGRAMS[key][0], _point(key, dtype)


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], str]:
    """Every reproducer's stdout, each run once, float32 first."""
    cases = sorted(SCRIPT_CASES, key=lambda case: DTYPES.index(case[1]))
    scripts = {
        "-".join((v, d, k)): BackendVariant(BACKEND, v).source(*_case(k, d)) for v, d, k in cases
    }
    outputs = run_scripts(tmp_path_factory.mktemp("torch_scripts"), scripts)
    return {case: outputs["-".join(case)] for case in SCRIPT_CASES}


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"torch:{c[0]}-{c[1]}-{c[2]}") for c in SCRIPT_CASES]
)
def test_emitted_source_reproduces_adapter_result(script_runs: dict, case: tuple) -> None:
    variant, dtype, key = case
    stdout = script_runs[case]
    label, _, printed = stdout.strip().splitlines()[-1].partition(" hessian: ")
    assert label == f"torch:{variant}", stdout
    expected = BackendVariant(BACKEND, variant).hessian(*_case(key, dtype))
    np.testing.assert_array_equal(np.asarray(ast.literal_eval(printed)), expected)


def test_emitted_source_is_plain_python() -> None:
    program, _ = PROGRAMS["mlp"]
    source = BackendVariant(BACKEND, "autograd").source(program, _point("mlp", "float32"))
    assert "def autograd_hessian(" in source
    assert "H = autograd_hessian(f)(x)" in source
    assert "dtype=torch.float32" in source
    compile(source, "<reproducer>", "exec")


# --- torch's odd results and a missing install --------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=[f"torch:{v}" for v in VARIANTS])
def test_abs_at_zero_does_not_crash(variant: str) -> None:
    # With torch 2.13, jacrev(jacrev(abs)) at 0 returns an internal ZeroTensor whose
    # .numpy() raises (older torch returned garbage); which variants do so varies.
    hessian = BackendVariant(BACKEND, variant).hessian(ABS_AT_ZERO, np.zeros(2))
    np.testing.assert_array_equal(hessian, np.zeros((2, 2)))


def test_to_numpy_materialises_zerotensor() -> None:
    make = getattr(torch, "_efficientzerotensor", None)
    if make is None:
        pytest.skip("this torch has no ZeroTensor constructor")
    zero = make((2, 3), dtype=torch.float32)
    assert zero._is_zerotensor()
    out = BACKEND.to_numpy(zero)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.zeros((2, 3)))


def test_to_numpy_detaches() -> None:
    value = torch.ones(2, dtype=torch.float64, requires_grad=True) * 2
    np.testing.assert_array_equal(BACKEND.to_numpy(value), [2.0, 2.0])


def test_unsupported_reason_recognises_missing_rules() -> None:
    missing = RuntimeError("Batching rule not implemented for aten::foo.\nmore")
    assert BACKEND.unsupported_reason(missing) == (
        "RuntimeError: Batching rule not implemented for aten::foo."
    )
    assert BACKEND.unsupported_reason(NotImplementedError("Trying to use forward AD")) is not None
    assert BACKEND.unsupported_reason(RuntimeError("size mismatch")) is None


def test_unavailable_when_a_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BACKEND, "modules", ("torch", "hessdiff_no_such_module"))
    status = BACKEND.availability()
    assert not status.available
    assert "hessdiff_no_such_module" in status.reason
    assert "pip install 'hessdiff[torch]'" in status.reason
    with pytest.raises(BackendUnavailable, match="hessdiff_no_such_module"):
        BackendVariant(BACKEND, "func").hessian(ABS_AT_ZERO, np.ones(2))


def test_module_imports_without_torch() -> None:
    # The backend module must import (and report unavailable) where torch is absent.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import hessdiff.backends.torch_backend as tb\n"
        "status = tb.TorchBackend().availability()\n"
        "assert not status.available, status\n"
        "print(status.reason)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "torch is not importable" in run.stdout


def test_unsupported_is_raised_not_crashed(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing_rule(m, a):  # noqa: ANN001, ANN202 - a lowering
        raise RuntimeError("Batching rule not implemented for aten::sin.")

    monkeypatch.setitem(BACKEND.lowerings, "sin", missing_rule)
    program = Program(1, (Node("input"), op("sin", 0), op("sum", 1)))
    with pytest.raises(Unsupported, match="torch:func: RuntimeError: Batching rule"):
        BackendVariant(BACKEND, "func").hessian(program, np.ones(1))


def test_a_framework_error_raised_from_c_is_a_crash_not_a_hessdiff_bug() -> None:
    """torch.linalg.inv of a singular matrix raises torch's own _LinAlgError with no Python
    frame of torch's: the last frame is our lowering's line. It is still the framework's
    answer to the input (a crash outcome, judged against the oracle), not hessdiff's bug."""
    from hessdiff.harness.outcomes import run_variant
    from hessdiff.harness.strategies import Case

    program = Program(4, (Node("input"), op("reshape", 0, shape=(2, 2)), op("inv", 1), op("sum", 2)))
    outcome = run_variant(get_variant("torch:func"), Case(program, np.ones(4), "float64"))
    assert outcome.status == "crash" and "singular" in outcome.error, outcome
