"""The MLX backend: every variant against jax:fwdrev, Unsupported outcomes, reproducers."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hessdiff.backends import Unsupported, get_backend, get_variant
from hessdiff.backends.backend_variant import BackendVariant
from hessdiff.backends.registry import check_backend
from hessdiff.harness.ir import Node, Program, const, op

MLX = get_backend("mlx")
for _backend in (MLX, get_backend("jax")):
    if not _backend.availability().available:
        pytest.skip(_backend.availability().reason, allow_module_level=True)

# Tolerance, from benchmarks/mlx_accuracy.py (MLX 0.32, CPU): the worst error of one MLX
# elementwise op or of its first or second derivative, relative to max(1, |exact value|)
# (column "max mixed"), on the benchmark's ranges (|x| <= 20 for exp, |x| <= 10 for the
# rest), is 9.1e-7 in float32 and 1.8e-6 in float64, both from exp: float64 exp, sin and
# cos are float32 computations on the argument rounded to float32, so their error grows
# like |x| * 2**-24 * |f'(x)|. A test program chains about ten ops and each Hessian entry
# is a sum of a few products of such values: allow 50 times one op's error, relative to
# the entry and to the largest entry of the reference Hessian.
PER_OP_ERROR = {"float32": 9.1e-7, "float64": 1.8e-6}
TOLERANCE = {dtype: 50 * error for dtype, error in PER_OP_ERROR.items()}

VARIANTS = tuple(MLX.variants)
# The variants that take a JVP of mx.grad(f): MLX has no JVP for the scatter that the
# gradient of an indexing op produces, so they cannot differentiate `gather`.
FORWARD_OVER_REVERSE = ("fwdrev", "fwdrev-vmap", "compile")
DTYPES = ("float32", "float64")
X = np.array([0.3, -0.8, 1.2, 0.5])
REPO = Path(__file__).resolve().parents[1]


class _Builder:
    """Build a program node by node; each call returns the new node's index."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.nodes: list[Node] = [Node("input")]

    def __call__(self, kind: str, *args: int, **attrs: Any) -> int:
        self.nodes.append(op(kind, *args, **attrs))
        return len(self.nodes) - 1

    def const(self, value: Any) -> int:
        self.nodes.append(const(value))
        return len(self.nodes) - 1

    def build(self) -> Program:
        return Program(self.n, tuple(self.nodes))


def _quadratic_form() -> Program:
    """x @ (A @ x): no elementwise op, so mx.compile builds no C++ kernel for it."""
    b = _Builder(4)
    b("matmul", 0, b("matmul", b.const(np.random.default_rng(1).normal(size=(4, 4))), 0))
    return b.build()


def _polynomial() -> Program:
    b = _Builder(4)
    cubed = b("powi", 0, p=3)
    quartic = b("mul", cubed, 0)
    minus_square = b("neg", b("square", 0))
    weights = b.const([1.0, -2.0, 0.5, 3.0])
    b("sum", b("mul", b("add", quartic, minus_square), weights))
    return b.build()


def _tanh_mlp() -> Program:
    rng = np.random.default_rng(0)
    b = _Builder(4)
    hidden = b("matmul", 0, b.const(rng.normal(size=(4, 3))))
    hidden = b("tanh", b("add", hidden, b.const(rng.normal(size=3))))
    b("matmul", hidden, b.const(rng.normal(size=3)))
    return b.build()


def _piecewise_at_smooth_points() -> Program:
    """relu, abs, leaky_relu, maximum, minimum, where, clip, none of them at a kink of X."""
    b = _Builder(4)
    other = b.const([0.0, 0.0, 1.0, 1.0])  # X - other = (0.3, -0.8, 0.2, -0.5)
    terms = [
        b("square", b("relu", 0)),
        b("mul", b("abs", 0), b("sin", 0)),
        b("powi", b("maximum", 0, other), p=3),
        b("mul", b("minimum", 0, other), 0),
        b("where", 0, b("exp", 0), b("cos", 0)),
        b("mul", b("clip", 0, lo=-0.5, hi=1.0), 0),
        b("square", b("leaky_relu", 0, alpha=0.2)),
    ]
    total = terms[0]
    for term in terms[1:]:
        total = b("add", total, term)
    b("sum", total)
    return b.build()


def _transcendental() -> Program:
    """exp, log, sigmoid, softplus, sin, cos, div, sub and mean."""
    b = _Builder(4)
    positive = b("add", b("square", 0), b.const(1.0))
    ratio = b("div", b("log", positive), b("softplus", 0))
    wave = b("sub", b("sin", 0), b("cos", b("exp", b("mul", 0, b.const(0.5)))))
    b("mean", b("mul", b("add", ratio, wave), b("sigmoid", 0)))
    return b.build()


def _gather_reversed() -> Program:
    b = _Builder(4)
    b("sum", b("mul", b("sin", b("gather", 0, idx=(3, 2, 1, 0))), b("square", 0)))
    return b.build()


PROGRAMS = {
    "quadratic_form": _quadratic_form(),
    "polynomial": _polynomial(),
    "tanh_mlp": _tanh_mlp(),
    "piecewise": _piecewise_at_smooth_points(),
    "transcendental": _transcendental(),
    "gather_reversed": _gather_reversed(),
}


def _cases(programs: list[str], variants: tuple[str, ...]) -> list[Any]:
    return [
        pytest.param(program, variant, dtype, id=f"{program}-mlx:{variant}-{dtype}")
        for program in programs
        for variant in variants
        for dtype in DTYPES
    ]


@functools.cache
def _jax(program: str, dtype: str, what: str) -> np.ndarray:
    reference = get_variant("jax:fwdrev")
    return getattr(reference, what)(PROGRAMS[program], X.astype(dtype))


def _assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str) -> None:
    tol = TOLERANCE[dtype]
    assert actual.dtype == np.dtype(dtype)
    np.testing.assert_allclose(
        actual, expected, rtol=tol, atol=tol * max(1.0, float(np.max(np.abs(expected))))
    )


SMOOTH_PROGRAMS = ["quadratic_form", "polynomial", "tanh_mlp", "piecewise", "transcendental"]
COMPILED = ("compile", "compile-revrev")
EAGER = tuple(v for v in VARIANTS if v not in COMPILED)
# mx.compile on the CPU writes and builds C++ (g++) for every new fused kernel, about 0.5 s
# each, cached in $TMPDIR/mlx/<version>/cpu: on a cold cache the compiled variants cost
# 1-16 s a program (tanh_mlp 2 s, piecewise 16 s), on a warm one milliseconds.
COMPILED_FAST = ["quadratic_form", "tanh_mlp"]
COMPILED_SLOW = ["polynomial", "piecewise", "transcendental"]


def _slow(cases: list[Any]) -> list[Any]:
    return [pytest.param(*case.values, id=case.id, marks=pytest.mark.slow) for case in cases]


@pytest.mark.parametrize(
    "program, variant, dtype",
    _cases(SMOOTH_PROGRAMS, EAGER)
    + _cases(COMPILED_FAST, COMPILED)
    + _slow(_cases(COMPILED_SLOW, COMPILED))
    + _cases(["gather_reversed"], ("revrev", "revrev-vmap"))
    + _slow(_cases(["gather_reversed"], ("compile-revrev",))),
)
def test_hessian_agrees_with_jax(program: str, variant: str, dtype: str) -> None:
    hessian = BackendVariant(MLX, variant).hessian(PROGRAMS[program], X.astype(dtype))
    assert hessian.shape == (4, 4)
    _assert_close(hessian, _jax(program, dtype, "hessian"), dtype)


@pytest.mark.parametrize(
    "program, variant, dtype", _cases(["gather_reversed"], FORWARD_OVER_REVERSE)
)
def test_gather_is_unsupported_forward_over_reverse(program: str, variant: str, dtype: str) -> None:
    with pytest.raises(Unsupported, match=r"mlx:.*\[scatter\] JVP not yet implemented"):
        BackendVariant(MLX, variant).hessian(PROGRAMS[program], X.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("program", list(PROGRAMS))
def test_gradient_and_value_agree_with_jax(program: str, dtype: str) -> None:
    variant = BackendVariant(MLX, "fwdrev")
    x = X.astype(dtype)
    _assert_close(variant.gradient(PROGRAMS[program], x), _jax(program, dtype, "gradient"), dtype)
    _assert_close(variant.value(PROGRAMS[program], x), _jax(program, dtype, "value"), dtype)


@pytest.mark.parametrize(
    "program, variant, dtype",
    _cases(["quadratic_form", "tanh_mlp"], VARIANTS) + _cases(["gather_reversed"], ("revrev",)),
)
def test_emitted_source_reproduces_the_adapter(
    tmp_path: Any, program: str, variant: str, dtype: str
) -> None:
    backend_variant = BackendVariant(MLX, variant)
    x = X.astype(dtype)
    script = tmp_path / "reproduce.py"
    script.write_text(backend_variant.source(PROGRAMS[program], x))
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    prefix = f"{backend_variant.name} hessian: "
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith(prefix), run.stdout
    printed = np.asarray(ast.literal_eval(last[len(prefix):]), dtype=dtype)
    np.testing.assert_array_equal(printed, backend_variant.hessian(PROGRAMS[program], x))


def test_backend_meets_the_interface() -> None:
    check_backend(MLX)
    assert MLX.availability().available
    assert set(FORWARD_OVER_REVERSE) <= set(VARIANTS)


def test_environment_report_names_the_version_and_device() -> None:
    report = MLX.environment_report()
    assert f"mlx=={MLX.version()}" in report
    assert "default device" in report


def test_importing_the_backend_does_not_import_mlx() -> None:
    code = textwrap.dedent(
        """
        import sys
        import hessdiff.backends.mlx_backend
        assert "mlx" not in sys.modules, sorted(m for m in sys.modules if m.startswith("mlx"))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize(
    "message",
    [
        "[scatter] JVP not yet implemented",
        "[Primitive::jvp] Not implemented for Foo.",
        "JVP is not implemented for cumulative prod/min/max",
        "[Pad::vmap] Vmap over padding value is not supported.",
        "Pad vmap is NYI.",  # mlx 0.27.1
        "[gather_axis] Cannot calculate JVP with respect to indices.",  # mlx 0.31.2
        "Unsupported compilation type float64",  # mx.compile, mlx 0.25.2
        "Unsupported constant type",  # mx.compile of a float64 constant, mlx 0.25.2
    ],
)
def test_mlx_not_implemented_messages_are_unsupported(message: str) -> None:
    assert MLX.unsupported_reason(RuntimeError(message)) == f"RuntimeError: {message}"


def test_other_errors_are_not_unsupported() -> None:
    assert MLX.unsupported_reason(ValueError("[matmul] Last dimension of first input ...")) is None
