"""Every backend variant agrees with the oracle on hand-written programs with known Hessians.

Agreement is judged by the diff engine with the tolerance table of ``hessdiff.harness.tolerance``
(measured per backend and dtype), and in float64 JAX and PyTorch must also meet 1e-10
relative. Where a variant cannot run a program at all (MLX forward-over-reverse on an
indexing program), the adapter must say so with ``Unsupported``: a distinct outcome,
neither a crash nor a silent skip.
"""

from __future__ import annotations

import numpy as np
import pytest

from hessdiff.backends import Unsupported, all_variants
from hessdiff.harness.engine import check_case
from hessdiff.harness.findings import Kind
from hessdiff.harness.ir import Node, Program, const, op
from hessdiff.harness.oracle import evaluate
from hessdiff.harness.strategies import Case

W = np.array([[0.5, -1.0, 0.25], [1.5, 0.3, -0.7], [-0.2, 0.8, 1.1], [0.9, -0.4, 0.6]])
B = np.array([0.1, -0.2, 0.3, 0.05])
V = np.array([1.0, -2.0, 0.5, 1.5])


def _p(*nodes: Node) -> Program:
    return Program(3, (Node("input"), *nodes))


PROGRAMS = {
    # x0^3 x1 + x1^2 x2 + x2^4 (via products of picked coordinates)
    "polynomial": _p(
        op("gather", 0, idx=(1, 2, 0)), op("mul", 0, 1), op("powi", 0, p=3), op("mul", 3, 1),
        op("powi", 0, p=4), op("add", 4, 5), op("sum", 6), op("square", 7),
    ),
    "tanh-mlp": _p(const(W), op("matmul", 1, 0), const(B), op("add", 2, 3), op("tanh", 4),
                   const(V), op("matmul", 5, 6)),
    "relu-mlp": _p(const(W), op("matmul", 1, 0), const(B), op("add", 2, 3), op("relu", 4),
                   const(V), op("matmul", 5, 6), op("square", 7)),
    "abs-max": _p(op("gather", 0, idx=(2, 1, 0)), op("maximum", 0, 1), op("abs", 0), op("mul", 2, 3),
                  op("minimum", 4, 1), op("sum", 5), op("square", 6)),
    "piecewise-mix": _p(op("clip", 0, lo=-0.5, hi=0.5), op("leaky_relu", 0, alpha=0.1), op("mul", 1, 2),
                        op("where", 0, 3, 1), op("sigmoid", 4), op("softplus", 0), op("mul", 5, 6),
                        op("sum", 7)),
    # Python numbers, not arrays, beside traced values: 3 - 2 ** (0.5 x) ..., x ** 2
    "python-numbers": _p(const(0.5, "float"), op("mul", 0, 1), const(2, "int"), op("pow", 3, 2),
                         const(3.0, "float"), op("sub", 5, 4), op("sin", 6), op("div", 7, 5), op("sum", 8),
                         const(2, "int"), op("pow", 9, 10)),
    "reversed-coupling": _p(op("gather", 0, idx=(2, 1, 0)), op("mul", 0, 1), op("sin", 2), op("exp", 0),
                            op("add", 3, 4), op("log", 5), op("sum", 6)),
}
POINT = np.array([0.3, -0.7, 1.1])  # generic: off every kink and tie of these programs


def _variants():
    return [pytest.param(v, id=v.name) for v in all_variants()]


def _unsupported_expected(variant, program: Program) -> bool:
    """MLX's forward-over-reverse cannot differentiate the scatter in gather's gradient."""
    return variant.backend.name == "mlx" and "fwdrev" in variant.variant and "gather" in program.op_names \
        or variant.backend.name == "mlx" and variant.variant == "compile" and "gather" in program.op_names


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("variant", _variants())
def test_variant_agrees_with_oracle(variant, name: str, dtype: str) -> None:
    status = variant.backend.availability()
    if not status.available:
        pytest.skip(status.reason)
    program = PROGRAMS[name]
    case = Case(program, POINT.astype(dtype).astype(np.float64), dtype)
    if _unsupported_expected(variant, program):
        with pytest.raises(Unsupported, match="scatter"):
            variant.hessian(program, case.point.astype(dtype))
        return
    result = check_case(case, [variant])
    assert result.outcomes[variant.name].status == "ok", result.outcomes[variant.name].error
    failures = [v for v in result.verdicts if v.kind is not Kind.NOISE]
    assert not failures, failures[0].explanation
    if dtype == "float64" and variant.backend.name in ("jax", "torch", "equinox"):
        expected = result.oracle.hessian_float()
        observed = result.outcomes[variant.name].hessian
        scale = np.abs(expected).max()
        assert np.abs(observed - expected).max() <= 1e-10 * scale


KINK_PROGRAM = Program(1, (Node("input"), op("relu", 0), op("square", 1), op("sum", 2)))


def test_oracle_says_relu_squared_at_zero_has_no_hessian() -> None:
    result = evaluate(KINK_PROGRAM, np.array([0.0]))
    assert result.undefined.tolist() == [[True]]
    assert [k.op for k in result.kinks] == ["relu"]


# What each framework returns for d2/dx2 relu(x)^2 at exactly 0, where the one-sided values
# are 0 and 2: every framework takes relu'(0) = 0, so every variant gives 0.
@pytest.mark.parametrize("variant", _variants())
def test_what_each_variant_returns_at_the_relu_kink(variant) -> None:
    status = variant.backend.availability()
    if not status.available:
        pytest.skip(status.reason)
    hessian = variant.hessian(KINK_PROGRAM, np.array([0.0]))
    assert hessian.tolist() == [[0.0]], f"{variant.name} returns {hessian.tolist()} at the kink"
