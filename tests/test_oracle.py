"""The oracle against Hessians known in closed form, at 30+ significant digits."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from harness.fdcheck import fd_hessian
from harness.ir import Node, Program, const, op
from harness.oracle import OutOfDomain, evaluate


def _program(n: int, *nodes: Node) -> Program:
    return Program(n, (Node("input"), *nodes))


def test_polynomial_hessian_is_exact() -> None:
    # f = x0**3 * x1 + x1**2  ->  H = [[6 x0 x1, 3 x0**2], [3 x0**2, 2]]
    p = _program(
        2,
        op("gather", 0, idx=(0,)), op("sum", 1), op("powi", 2, p=3),
        op("gather", 0, idx=(1,)), op("sum", 4), op("mul", 3, 5), op("square", 5), op("add", 6, 7),
    )
    x = np.array([1.5, -2.0])
    r = evaluate(p, x)
    expected = np.array([[6 * 1.5 * -2.0, 3 * 1.5**2], [3 * 1.5**2, 2.0]])
    assert r.hessian_float() == pytest.approx(expected, rel=0, abs=0)
    assert not r.undefined.any()
    assert r.kinks == ()


def test_thirty_digits_against_closed_form() -> None:
    # f = sin(x0 * x1): H = [[-x1^2 s, c - x0 x1 s], [c - x0 x1 s, -x0^2 s]].
    p = _program(2, op("gather", 0, idx=(1, 0)), op("mul", 0, 1), op("mean", 2), op("sin", 3))
    x = np.array([0.7, -1.3])
    r = evaluate(p, x)
    with mpmath.workdps(60):
        a, b = mpmath.mpf(0.7), mpmath.mpf(-1.3)
        u = a * b
        s, c = mpmath.sin(u), mpmath.cos(u)
        expected = [[-(b**2) * s, c - u * s], [c - u * s, -(a**2) * s]]
        for i in range(2):
            for j in range(2):
                assert abs(r.hessian[i, j] - expected[i][j]) < mpmath.mpf(10) ** -30


def test_tanh_mlp_matches_hand_derivation() -> None:
    w = np.array([[0.5, -1.0, 0.25], [1.5, 0.3, -0.7]])
    v = np.array([1.0, -2.0])
    p = _program(3, const(w), op("matmul", 1, 0), op("tanh", 2), const(v), op("matmul", 3, 4))
    x = np.array([0.1, 0.2, -0.3])
    z = w @ x
    # f = v . tanh(W x): H = W^T diag(v * tanh''(z)) W, tanh'' = -2 tanh sech^2.
    d2 = -2 * np.tanh(z) / np.cosh(z) ** 2
    expected = w.T @ np.diag(v * d2) @ w
    assert evaluate(p, x).hessian_float() == pytest.approx(expected, rel=1e-14, abs=1e-15)


def test_relu_at_exact_kink_is_undefined_and_reported() -> None:
    p = _program(1, op("relu", 0), op("square", 1), op("sum", 2))
    r = evaluate(p, np.array([0.0]))
    # relu(x)^2 is C1: the gradient 0 is defined on both sides, the Hessian (2 vs 0) not.
    assert r.gradient_float().tolist() == [0.0]
    assert r.undefined.tolist() == [[True]]
    assert [k.op for k in r.kinks] == ["relu"]
    assert r.kink_distance == 0.0


def test_relu_of_piecewise_linear_has_zero_hessian_off_the_kink() -> None:
    p = _program(1, op("relu", 0), op("sum", 1))
    r = evaluate(p, np.array([1.0]))
    assert r.hessian_float().tolist() == [[0.0]]
    assert r.kink_distance == 1.0


def test_abs_kink_leaves_unrelated_entries_defined() -> None:
    # f = |x0| + x1^2 * x0... only entries touching x0's one-sided derivative are undefined.
    p = _program(2, op("abs", 0), op("gather", 1, idx=(0,)), op("sum", 2),
                 op("gather", 0, idx=(1,)), op("sum", 4), op("square", 5), op("add", 3, 6))
    r = evaluate(p, np.array([0.0, 3.0]))
    assert r.undefined.tolist() == [[True, False], [False, False]]
    assert r.hessian_float()[1, 1] == 2.0


def test_tie_of_maximum_is_a_kink_and_near_tie_is_measured() -> None:
    p = _program(2, op("gather", 0, idx=(1, 0)), op("maximum", 0, 1), op("square", 2), op("sum", 3))
    assert evaluate(p, np.array([0.5, 0.5])).kinks
    near = evaluate(p, np.array([0.5, np.nextafter(0.5, 1.0)]))
    assert near.kinks == ()
    assert 0 < near.kink_distance < 1e-15


def test_float32_rounds_the_program_it_judges() -> None:
    # In float32, 0.1 - 0.1f is exactly 0: the float32 program sits on the kink.
    p = _program(1, const([0.1]), op("sub", 0, 1), op("relu", 2), op("sum", 3))
    assert evaluate(p, np.array([np.float32(0.1)]), "float32").kinks
    assert not evaluate(p, np.array([np.float32(0.1)]), "float64").kinks


def test_domain_violation_is_its_own_error() -> None:
    p = _program(1, op("log", 0), op("sum", 1))
    with pytest.raises(OutOfDomain, match="log"):
        evaluate(p, np.array([-1.0]))


def test_cancellation_shows_in_the_error_scale() -> None:
    # f = exp(x) - exp(x) * (1 + 1e-12): the tiny Hessian is the difference of two big ones.
    p = _program(1, op("exp", 0), const([1 + 1e-12]), op("mul", 1, 2), op("sub", 1, 3), op("sum", 4))
    r = evaluate(p, np.array([10.0]))
    assert abs(float(r.hessian[0, 0])) < 1e-6 * r.hessian_scale[0, 0]


def test_fd_hessian_of_a_known_gradient() -> None:
    grad = lambda x: np.array([np.cos(x[0]) * x[1], np.sin(x[0])])  # noqa: E731 - f = sin(x0) x1
    x = np.array([0.4, 2.0])
    fd = fd_hessian(grad, x)
    exact = np.array([[-np.sin(0.4) * 2.0, np.cos(0.4)], [np.cos(0.4), 0.0]])
    assert fd.agrees(exact)
    assert not fd.agrees(exact + 1e-3)


@pytest.mark.parametrize("a", [-270.0, 200.0, 21.0, -3.0])
def test_rules_that_cancel_still_give_every_digit(a: float) -> None:
    # softplus = log(1 + exp(a)) is 0 at 50 digits for a = -270, and softplus'' as SymPy
    # writes it is a difference of two numbers near 1 for a = 200: the oracle must
    # still be exact (here against closed forms at 400 digits).
    p = _program(1, op("softplus", 0), op("sum", 1))
    r = evaluate(p, np.array([a]))
    with mpmath.workdps(400):
        x = mpmath.mpf(a)
        value = mpmath.log1p(mpmath.exp(x))
        second = mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2
        assert abs(r.value - value) <= abs(value) * mpmath.mpf(10) ** -30
        assert abs(r.hessian[0, 0] - second) <= abs(second) * mpmath.mpf(10) ** -30
