"""Hand-built programs shared by the backend tests: each with a point away from its kinks,
ties and domain bounds, so every correct backend variant agrees on its Hessian."""

from __future__ import annotations

import functools

import numpy as np

from hessdiff.backends.registry import get_variant
from hessdiff.harness.ir import Node, Program, const, op
from hessdiff.harness.ops import CATALOGUE

# The first catalogue: the ops every backend test runs in one program. The whole
# catalogue, op by op on every variant, is tests/test_ops.py's job.
CORE_OPS = (
    "neg", "square", "powi", "sin", "cos", "tanh", "exp", "log", "sigmoid", "softplus",
    "add", "sub", "mul", "div", "relu", "abs", "leaky_relu", "clip", "maximum", "minimum",
    "where", "sum", "mean", "gather", "matmul",
)



def _polynomial() -> Program:
    # sum(x**3 * x[perm]) + 0.5 * sum(x * x) - sum(x / c)
    return Program(3, (
        Node("input"),
        op("powi", 0, p=3),
        op("gather", 0, idx=(1, 2, 0)),
        op("mul", 1, 2),
        op("square", 0),
        const(0.5),
        op("mul", 4, 5),
        op("add", 3, 6),
        const([2.0, -3.0, 4.0]),
        op("div", 0, 8),
        op("sub", 7, 9),
        op("sum", 10),
    ))


def _mlp() -> Program:
    # w2 @ tanh(W1 @ x + b1): a dense Hessian through matmul with constant weights.
    w1 = [[0.5, -0.3, 0.8], [0.1, 0.9, -0.4], [-0.7, 0.2, 0.6], [0.3, -0.5, -0.2]]
    return Program(3, (
        Node("input"),
        const(w1),
        op("matmul", 1, 0),
        const([0.1, -0.2, 0.3, 0.05]),
        op("add", 2, 3),
        op("tanh", 4),
        const([1.0, -0.5, 0.7, 1.3]),
        op("matmul", 6, 5),
    ))


def _kinks() -> Program:
    # relu, abs, leaky_relu and clip, each away from its kink at the test point.
    return Program(4, (
        Node("input"),
        op("relu", 0),
        op("sin", 0),
        op("mul", 1, 2),
        op("abs", 0),
        op("exp", 0),
        op("mul", 4, 5),
        op("leaky_relu", 0, alpha=0.2),
        op("powi", 7, p=3),
        op("clip", 0, lo=-0.5, hi=0.5),
        op("cos", 9),
        op("add", 3, 6),
        op("add", 11, 8),
        op("mul", 12, 10),
        op("sum", 13),
    ))


def _select() -> Program:
    # maximum, minimum and where between smooth branches, away from ties.
    return Program(4, (
        Node("input"),
        op("sin", 0),
        op("cos", 0),
        op("maximum", 1, 2),
        op("minimum", 1, 2),
        const([1.0, -1.0, 0.5, -2.0]),
        op("exp", 0),
        op("square", 0),
        op("where", 5, 6, 7),
        op("mul", 3, 4),
        op("add", 9, 8),
        op("mean", 10),
        op("sigmoid", 11),
    ))


def _reversed_gather() -> Program:
    # sin(sum(x * x[::-1])): the reversal couples x_i with x_{n-1-i}, the outer sin
    # makes every pair interact, so the Hessian is dense.
    return Program(4, (
        Node("input"),
        op("gather", 0, idx=(3, 2, 1, 0)),
        op("mul", 0, 1),
        op("sum", 2),
        op("sin", 3),
    ))


def _every_op() -> Program:
    """Every core op once, each away from its kinks, ties and domain bounds at
    ``x = [0.4, 1.3, 0.8]``, the terms summed: one compile per variant covers the table."""
    nodes = [Node("input")]

    def add(node: Node) -> int:
        nodes.append(node)
        return len(nodes) - 1

    x = 0
    s = add(op("sub", x, add(const([0.9, 0.2, 1.5]))))  # [-0.5, 1.1, -0.7]: mixed signs
    t = add(op("mul", x, add(const([0.3, -0.2, 0.7]))))  # never ties with s
    select = add(const([1.0, -1.0, 2.0]))
    weights = add(const(np.arange(9.0).reshape(3, 3) / 10 - 0.4))
    special = {
        "log": lambda: op("log", x),
        "div": lambda: op("div", t, x),
        "powi": lambda: op("powi", s, p=3),
        "leaky_relu": lambda: op("leaky_relu", s, alpha=0.1),
        "clip": lambda: op("clip", s, lo=-0.6, hi=0.6),
        "gather": lambda: op("gather", s, idx=(2, -3, 2)),
        "matmul": lambda: op("matmul", weights, s),
        "where": lambda: op("where", select, s, t),
    }
    terms = []
    for name in sorted(CORE_OPS):
        spec = CATALOGUE[name]
        if name in special:
            value = add(special[name]())
        elif spec.group == "reduction":
            terms.append(add(op(name, add(op("mul", s, t)))))
            continue
        else:
            value = add(op(name, *(s, t)[: spec.arity]))
        terms.append(add(op("sum", add(op("mul", value, x)))))
    total = terms[0]
    for term in terms[1:]:
        total = add(op("add", total, term))
    return Program(3, tuple(nodes))


PROGRAMS = {
    "polynomial": (_polynomial(), [0.7, -1.1, 0.4]),
    "mlp": (_mlp(), [0.3, -0.6, 1.2]),
    "kinks": (_kinks(), [0.8, -1.2, 0.3, -0.4]),
    "select": (_select(), [0.3, 1.1, -0.9, 2.0]),
    "reversed_gather": (_reversed_gather(), [0.5, -0.8, 1.3, 0.2]),
    "every_op": (_every_op(), [0.4, 1.3, 0.8]),
}


@functools.cache
def point(key: str, dtype: str) -> np.ndarray:
    return np.asarray(PROGRAMS[key][1], dtype=dtype)


# Agreement with jax:fwdrev in float64, the reference of the backend tests.
RTOL = {"float32": 1e-4, "float64": 1e-10}


@functools.cache
def reference(program: Program, x: tuple[float, ...]) -> np.ndarray:
    # jax:fwdrev in float64 is the reference for both dtypes: a float32 result is
    # compared with it at the float32-rounded point. Eager JAX compiles every primitive
    # on first use (seconds a program), so each reference is computed once.
    return get_variant("jax:fwdrev").hessian(program, np.asarray(x, dtype=np.float64))


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str) -> None:
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(actual - expected))) / scale
    assert error <= RTOL[dtype], f"relative error {error:.3g} > {RTOL[dtype]:.0e}"
