"""The oracle against Hessians known in closed form, at 30+ significant digits."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from hessdiff.harness.fdcheck import fd_hessian
from hessdiff.harness.ir import Node, Program, const, op
from hessdiff.harness.oracle import OutOfDomain, Resolution, all_resolved, evaluate, mixed_modes, resolutions


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


@pytest.mark.parametrize(("exponent", "literal", "x", "h"), [
    (3.0, None, -2.0, -12.0), (2.0, "float", 0.0, 2.0), (1.0, "int", 0.0, 0.0), (0.0, None, 0.0, 0.0),
    (-1.0, None, -0.5, -16.0), (4.0, None, -1.0, 12.0),
])
def test_a_constant_integer_exponent_takes_every_base(exponent: float, literal: str | None, x: float,
                                                      h: float) -> None:
    """a**k for a constant integer k is a polynomial (or 1/a**|k|): defined, and twice
    differentiable, at a <= 0 too, exactly as a framework's integer power computes it."""
    p = _program(1, const(exponent, literal), op("pow", 0, 1), op("sum", 2))
    r = evaluate(p, np.array([x]))
    assert r.hessian_float()[0, 0] == h
    assert not r.undefined.any()


@pytest.mark.parametrize(("nodes", "x"), [
    ((const(2.5), op("pow", 0, 1), op("sum", 2)), -1.0),  # a non-integer exponent: a > 0 only
    ((const(-1.0), op("pow", 0, 1), op("sum", 2)), 0.0),  # a negative one: a pole at 0
    ((op("pow", 0, 0), op("sum", 1)), -2.0),  # a traced exponent: its derivative is a**b log a
    ((const(1.0), const(2.0), op("add", 1, 2), op("pow", 0, 3), op("sum", 4)), -2.0),  # computed: rounded
])
def test_an_exponent_that_is_not_a_constant_integer_keeps_the_base_positive(nodes: tuple[Node, ...],
                                                                            x: float) -> None:
    with pytest.raises(OutOfDomain, match="pow"):
        evaluate(_program(1, *nodes), np.array([x]))


def test_hypot_is_judged_where_one_argument_is_zero_and_undefined_at_its_cone() -> None:
    """hypot(a, 0) for a != 0 is smooth (H = [[0, 0], [0, 1/|a|]]); only a = b = 0 is
    excluded, and an argument as close to 0 as its own rounding error may be exactly 0
    in the framework, so beside another 0 the derivatives are undefined, not a value."""
    def hypot_of(first: tuple[Node, ...]) -> Program:
        k = len(first)
        return _program(2, op("gather", 0, idx=(0,)), *first, op("gather", 0, idx=(1,)),
                        op("hypot", k + 1, k + 2), op("sum", k + 3))

    r = evaluate(hypot_of(()), np.array([-0.5, 0.0]))
    assert r.hessian_float().tolist() == [[0.0, 0.0], [0.0, 2.0]]
    assert not r.undefined.any()
    with pytest.raises(OutOfDomain, match="hypot"):
        evaluate(hypot_of(()), np.array([0.0, 0.0]))
    # 3 * 0.1 - fl(3 * 0.1) is -2.8e-17 exactly, and 0 in float64.
    near = hypot_of((const([3.0]), op("mul", 1, 2), const([3 * 0.1]), op("sub", 3, 4)))
    assert evaluate(near, np.array([0.1, 0.0])).undefined.all()
    assert not evaluate(near, np.array([0.1, 0.25])).undefined.any()


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


# --- selections (max, min, sort, the 1- and inf-norms), reductions along an axis, masks,
# --- solve and cholesky: against closed forms and the rule "undefined at a tie"


@pytest.mark.parametrize("square", [
    (op("square", 1),),  # an elementwise rule
    (op("mul", 1, 1),),  # a binary elementwise rule
    (op("dot", 1, 1),),  # a bilinear op
    (op("tile", 1, reps=2), op("prod", 2, axis=None, keepdims=False)),  # a whole-array op
], ids=["square", "mul", "dot", "prod"])
def test_a_mixed_mode_convention_takes_rows_from_reverse_and_columns_from_forward(square) -> None:
    """m = min of three tied entries, m**2 by three kinds of op: with the reverse rule
    splitting (w_R = 1/3 each) and the forward rule picking the first (w_F = e0), the
    Hessian of fwd-over-rev is 2 w_R w_F^T (MLX); the same two rules the other way round
    give its transpose."""
    reduced = len(square) > 1 or square[0].kind == "dot"
    p = _program(3, op("min", 0, axis=None, keepdims=True), *square, *(() if reduced else (op("sum", 2),)))
    x = np.zeros(3)
    sides = evaluate(p, x).sides
    split, first = ((("min", -1), (0, 1, 2)),), ((("min", -1), 0),)
    w_r, w_f = np.full(3, 1 / 3), np.eye(3)[0]
    rows_split = evaluate(p, x, resolution=Resolution(split, columns=first)).hessian_float()
    assert rows_split == pytest.approx(2 * np.outer(w_r, w_f), abs=1e-30)
    rows_first = evaluate(p, x, resolution=Resolution(first, columns=split)).hessian_float()
    assert rows_first == pytest.approx(2 * np.outer(w_f, w_r), abs=1e-30)
    mixed = mixed_modes(sides, resolutions(sides))
    assert Resolution(split, columns=first) in mixed and Resolution(first, columns=split) in mixed
    # two different picks are no documented rule: not offered
    assert Resolution(first, columns=((("min", -1), 1),)) not in mixed


def test_max_is_a_selection_and_a_tie_of_the_two_largest_is_a_kink() -> None:
    p = _program(3, op("max", 0, axis=None, keepdims=False), op("square", 1))
    r = evaluate(p, np.array([0.5, 0.2, -1.0]))
    assert r.hessian_float().tolist() == [[2.0, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert r.kinks == () and r.kink_distance == pytest.approx(0.3 / 0.5)
    tie = evaluate(p, np.array([0.5, 0.5, -1.0]))
    # Either tied entry may be the max: the block of the two is undefined, the rest is 0.
    assert tie.undefined.tolist() == [[True, True, False], [True, True, False], [False, False, False]]
    assert ("max", 0) in tie.specials and [k.op for k in tie.kinks] == ["max"]
    # A tie of the two smallest is no kink of max.
    assert not evaluate(p, np.array([0.5, -1.0, -1.0])).kinks


def test_min_along_an_axis_with_keepdims() -> None:
    # min over the rows of [[x0, x1], [x2, x0]] (axis 0): (min(x0, x2), min(x1, x0)).
    p = _program(3, op("gather", 0, idx=(0, 1, 2, 0)), op("reshape", 1, shape=(2, 2)),
                 op("min", 2, axis=0, keepdims=True), op("square", 3), op("sum", 4))
    assert p.shapes[3] == (1, 2)
    r = evaluate(p, np.array([0.5, -1.0, 2.0]))
    # min(x0, x2) = x0, min(x1, x0) = x1: f = x0^2 + x1^2.
    assert r.hessian_float().tolist() == [[2.0, 0, 0], [0, 2.0, 0], [0, 0, 0]]


def test_sort_ties_of_one_coordinate_are_smooth_and_of_two_are_not() -> None:
    # f = sum(w * sort(x)^2): a tie of x0 with x1 makes the choice of which goes where
    # change the Hessian; a tie of an entry with a copy of itself does not.
    w = const([1.0, 2.0, 3.0])
    p = _program(3, op("sort", 0), w, op("square", 1), op("mul", 2, 3), op("sum", 4))
    r = evaluate(p, np.array([0.5, 0.2, -1.0]))
    assert r.hessian_float().tolist() == [[6.0, 0, 0], [0, 4.0, 0], [0, 0, 2.0]]
    tie = evaluate(p, np.array([0.5, 0.5, -1.0]))
    assert tie.undefined[:2, :2].all() and not tie.undefined[2].any()
    assert ("sort", 0) in tie.specials
    copies = _program(3, op("gather", 0, idx=(0, 0, 1)), op("sort", 1), w, op("square", 2), op("mul", 3, 4),
                      op("sum", 5))
    same = evaluate(copies, np.array([0.5, -1.0, 0.0]))
    assert not same.undefined.any()
    assert same.hessian_float().tolist() == [[2 * (2.0 + 3.0), 0, 0], [0, 2.0, 0], [0, 0, 0]]


def test_sort_of_three_equal_entries_covers_every_order() -> None:
    # Three distinct coordinates tied: each output may be any of them, so every entry
    # of every pair that meets in a weighted square is undefined.
    p = _program(3, op("sort", 0), const([1.0, 2.0, 3.0]), op("mul", 1, 2), op("square", 3), op("sum", 4))
    assert evaluate(p, np.array([0.5, 0.5, 0.5])).undefined.all()


@pytest.mark.parametrize(("ord_", "expected"), [
    # f = ||(x0, x1, x2)|| at (3, -4, 0); closed forms of each order's Hessian.
    (2, [[16 / 125, 12 / 125, 0], [12 / 125, 9 / 125, 0], [0, 0, 1 / 5]]),
    (4, None),
])
def test_norm_orders_against_closed_forms(ord_, expected) -> None:
    x = np.array([3.0, -4.0, 0.0])
    attrs = {"axis": None, "keepdims": False} | ({"ord": ord_} if ord_ != 2 else {})
    r = evaluate(_program(3, op("norm", 0, **attrs)), x)
    if expected is None:  # ||x||_4 = s^(1/4), s = sum x^4: H = 3 x_i^2 / s^(3/4) d_ij - 3 x_i^3 x_j^3 / s^(7/4)
        s = np.sum(x**4)
        expected = 3 * np.diag(x**2) / s**0.75 - 3 * np.outer(x**3, x**3) / s**1.75
    np.testing.assert_allclose(r.hessian_float(), expected, rtol=1e-14, atol=1e-16)


def test_norm_1_kinks_at_a_zero_entry_and_3_does_not() -> None:
    x = np.array([0.5, 0.0, -1.0])
    one = evaluate(_program(3, op("norm", 0, axis=None, keepdims=False, ord=1), op("square", 1)), x)
    # f = (|x0| + |x1| + |x2|)^2: H = 2 s s^T, s = sign(x); undefined through x1.
    assert one.undefined.tolist() == [[False, True, False], [True, True, True], [False, True, False]]
    assert one.hessian_float()[[0, 0, 2], [0, 2, 2]].tolist() == [2.0, -2.0, 2.0]
    assert ("norm", 0) in one.specials
    three = evaluate(_program(3, op("norm", 0, axis=None, keepdims=False, ord=3)), x)
    # |t|^3 is twice differentiable at 0: every entry is defined, those through x1 are 0.
    assert not three.undefined.any()
    assert three.hessian_float()[1].tolist() == [0.0, 0.0, 0.0]
    assert ("norm", 0) in three.specials


def test_norm_inf_kinks_where_the_largest_magnitudes_tie() -> None:
    p = _program(3, op("norm", 0, axis=None, keepdims=False, ord="inf"), op("square", 1))
    r = evaluate(p, np.array([1.0, 0.2, -0.5]))
    assert r.hessian_float().tolist() == [[2.0, 0, 0], [0, 0, 0], [0, 0, 0]]
    tie = evaluate(p, np.array([1.0, 0.2, -1.0]))
    assert tie.undefined.tolist() == [[True, False, True], [False, False, False], [True, False, True]]
    assert ("norm", 1) in tie.specials
    with pytest.raises(OutOfDomain, match="norm"):
        evaluate(p, np.zeros(3))


def test_sum_and_mean_along_an_axis() -> None:
    # M = [[x0, x1, x2], [x1, x2, x0]]; f = sum(mean(M, axis=1)^2) + sum(sum(M, axis=0, keepdims)^2).
    p = _program(3, op("gather", 0, idx=(0, 1, 2, 1, 2, 0)), op("reshape", 1, shape=(2, 3)),
                 op("mean", 2, axis=1, keepdims=False), op("square", 3), op("sum", 4),
                 op("sum", 2, axis=0, keepdims=True), op("square", 6), op("sum", 7), op("add", 5, 8))
    assert p.shapes[3] == (2,) and p.shapes[6] == (1, 3)
    r = evaluate(p, np.array([0.3, -0.7, 1.1]))
    # Both row means are (x0 + x1 + x2) / 3: 2 * 2/9 = 4/9 everywhere; columns x0+x1,
    # x1+x2, x2+x0 give 2 * (2 on the diagonal, 1 off it).
    expected = np.full((3, 3), 4 / 9) + 2 * (np.eye(3) + np.ones((3, 3)))
    np.testing.assert_allclose(r.hessian_float(), expected, rtol=1e-15)


def test_sum_and_mean_without_attrs_are_unchanged() -> None:
    plain = _program(3, op("sum", 0))
    spelled = _program(3, op("sum", 0, axis=None, keepdims=False))
    assert plain == spelled and plain.dumps() == '{"n": 3, "nodes": [{"op": "input"}, {"op": "sum", "args": [0]}]}'
    assert _program(1, const(2.0), op("mean", 1), op("add", 0, 2), op("sum", 3)).shapes[2] == ()


def test_masked_sum_and_mean_leave_out_the_masked_entries() -> None:
    p = _program(3, op("square", 0), op("sum_where", 1, mask=(1, 0, 1)),
                 op("mean_where", 1, mask=(0, 1, 1)), op("add", 2, 3))
    r = evaluate(p, np.array([0.3, -0.7, 1.1]))
    assert r.hessian_float().tolist() == [[2.0, 0, 0], [0, 1.0, 0], [0, 0, 3.0]]
    with pytest.raises(Exception, match="leaves a reduced slice"):
        _program(3, op("mean_where", 0, mask=(0, 0, 0)))


def test_solve_against_a_closed_form() -> None:
    # [[x0, 1], [1, 2]] y = (x1, x2): y0 = (2 x1 - x2) / (2 x0 - 1), f = y0.
    p = _program(3, op("gather", 0, idx=(0,)), const([[0.0, 1.0], [1.0, 2.0]]),
                 op("reshape", 1, shape=(1, 1)), op("broadcast_to", 3, shape=(2, 2)),
                 const([[1.0, 0.0], [0.0, 0.0]]), op("mul", 4, 5), op("add", 6, 2),
                 op("gather", 0, idx=(1, 2)), op("solve", 7, 8), op("gather", 9, idx=(0,)), op("sum", 10))
    x0, x1, x2 = 1.5, -0.7, 0.4
    r = evaluate(p, np.array([x0, x1, x2]))
    d = 2 * x0 - 1
    num = 2 * x1 - x2
    expected = [[8 * num / d**3, -4 / d**2, 2 / d**2], [-4 / d**2, 0, 0], [2 / d**2, 0, 0]]
    np.testing.assert_allclose(r.hessian_float(), expected, rtol=1e-14, atol=1e-16)


def test_cholesky_of_a_gram_matrix_against_a_closed_form() -> None:
    # S = [[x0^2 + 1, x0 x1], [x0 x1, x1^2 + 1]] = m m^T + I with m = (x0, x1)^T:
    # L11 = sqrt(x0^2 + 1), L21 = x0 x1 / L11, L22 = sqrt(S22 - L21^2); f = L21 + L22.
    p = _program(2, op("gather", 0, idx=(0, 1)), op("reshape", 1, shape=(2, 1)), op("transpose", 2),
                 op("matmul", 2, 3), const(np.eye(2)), op("add", 4, 5), op("cholesky", 6), op("sum", 7))
    x = np.array([0.6, -1.3])
    r = evaluate(p, x)

    def f(v: np.ndarray) -> float:
        l11 = np.sqrt(v[0] ** 2 + 1)
        l21 = v[0] * v[1] / l11
        return l11 + l21 + np.sqrt(v[1] ** 2 + 1 - l21**2)

    assert float(r.value) == pytest.approx(f(x), rel=1e-15)
    h = 1e-4
    fd = np.array([[(f(x + h * (ei + ej)) - f(x + h * (ei - ej)) - f(x - h * (ei - ej)) + f(x - h * (ei + ej)))
                    / (4 * h * h) for ej in np.eye(2)] for ei in np.eye(2)])
    np.testing.assert_allclose(r.hessian_float(), fd, rtol=1e-6, atol=1e-7)
    with pytest.raises(OutOfDomain, match="cholesky"):  # not symmetric
        evaluate(_program(2, op("gather", 0, idx=(0, 1, 0, 0)), op("reshape", 1, shape=(2, 2)),
                          op("cholesky", 2), op("sum", 3)), np.array([2.0, 0.5]))


def test_cholesky_of_a_matrix_that_varies_off_the_symmetric_ones_is_out_of_domain() -> None:
    """cholesky(reshape(x)) at a symmetric x: the value is defined, but a derivative in
    x1 alone breaks the symmetry, and there the frameworks disagree among themselves
    (PyTorch's forward and reverse modes too): no truth to judge against. The same matrix
    symmetrized, (X + X^T) / 2, varies along symmetric matrices and is judged."""
    x = np.array([2.0, 0.3, 0.3, 1.5])
    plain = [op("reshape", 0, shape=(2, 2))]
    with pytest.raises(OutOfDomain, match="varies off the symmetric matrices"):
        evaluate(_program(4, *plain, op("cholesky", 1), op("sum", 2)), x)
    symmetric = _program(4, *plain, op("transpose", 1), op("add", 1, 2), const(0.5), op("mul", 3, 4),
                         op("cholesky", 5), op("sum", 6))
    r = evaluate(symmetric, x)
    h = r.hessian_float()
    np.testing.assert_array_equal(h[1], h[2])  # x1 and x2 enter as one symmetric entry


def test_values_beyond_exact_arithmetic_are_out_of_domain_not_a_crash() -> None:
    """exp(exp(exp(1e300))) has more digits than Python's integers allow."""
    from hessdiff.harness.oracle import OutOfDomain, evaluate

    program = Program(1, (Node("input"), op("exp", 0), op("exp", 1), op("exp", 2), op("sum", 3)))
    with pytest.raises(OutOfDomain, match="outgrow exact arithmetic|beyond every float format"):
        evaluate(program, np.array([1e300]), "float64")


def test_the_oracle_gives_up_after_its_time_limit() -> None:
    """A computation that would run for hours (exp of a huge integer by repeated squaring)
    becomes an unjudged point, not a hung campaign."""
    import time

    from hessdiff.harness.oracle.result import OracleTimeout, _time_limit

    start = time.monotonic()
    with pytest.raises(OracleTimeout, match="within 0.2 s"):
        with _time_limit(0.2, "a busy loop"):
            while True:
                pass
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("point", [
    (1.0, 1.096455796042573, 0.001953125, 2.2250738585072014e-308),  # torch: p/x_i of a subnormal p
    (-2.0, 1.0, -512.9798449122127, 0.5, 64.0, -2.2250738585072014e-308, 0.5487191396568898),  # XLA flushes
])
def test_prod_through_subnormal_partial_products_is_not_a_fault(point) -> None:
    """An entry at the smallest normal number makes prod's partial products subnormal:
    XLA on CPU flushes them to zero (JAX returned 0 for H[6,1] = -7.3e-304), PyTorch keeps
    a subnormal's few bits and divides by entries (9e-17 off on 2.1e-3). Both are the
    floating-point range, not a derivative fault; the error scale of prod says so."""
    from hessdiff.backends import get_variant
    from hessdiff.harness.engine import check_case
    from hessdiff.harness.strategies import Case

    program = Program(len(point), (Node("input"), op("prod", 0, axis=-1, keepdims=False)))
    result = check_case(Case(program, np.array(point), "float64"),
                        [get_variant(v) for v in ("jax:fwdrev", "torch:func", "equinox:filter_hessian")])
    assert not [v.explanation for v in result.verdicts if v.kind.is_failure]


def test_prod_error_scale_away_from_underflow_is_rounding_only() -> None:
    """The underflow allowance does not loosen prod where no partial product is tiny."""
    x = np.array([1.5, 2.0, -0.5])
    result = evaluate(Program(3, (Node("input"), op("prod", 0, axis=None, keepdims=False))), x, "float64")
    h = np.abs(result.hessian.astype(float))
    assert np.all(result.hessian_scale <= 100 * (h + 1.0))


@pytest.mark.parametrize("x", [-632.0, -1e6, 3.0])
def test_softsign_far_from_zero_is_judged_by_its_quotient_rule_terms(x) -> None:
    """JAX and PyTorch differentiate softsign as the quotient a / (1 + |a|): its terms are
    |a| times larger than the second derivative, and cancel to it within eps of them."""
    from hessdiff.backends import get_variant
    from hessdiff.harness.engine import check_case
    from hessdiff.harness.strategies import Case

    program = Program(1, (Node("input"), op("softsign", 0), op("sum", 1)))
    for dtype in ("float64", "float32"):
        result = check_case(Case(program, np.array([x]), dtype),
                            [get_variant(v) for v in ("jax:fwdrev", "torch:func")])
        assert not [v.explanation for v in result.verdicts if v.kind.is_failure], dtype


def test_copysign_through_torchs_division_formula_is_rounding() -> None:
    """PyTorch's copysign gradient is grad * result / a; reverse over reverse it leaves
    1/a - result/a**2 = 1.8e-15 where copysign(x, x)'' = 0: rounding of terms of size
    1/|a|, judged as such (the NaN it gives at a = 0 stays a finding, baselined)."""
    from hessdiff.backends import get_variant
    from hessdiff.harness.engine import check_case
    from hessdiff.harness.strategies import Case

    program = Program(3, (Node("input"), op("copysign", 0, 0), op("mean", 1)))
    x = np.array([-0.02942314506926475, -0.0735091621173407, 0.1308990432788248])
    for dtype in ("float64", "float32"):
        result = check_case(Case(program, x, dtype), [get_variant("torch:func-revrev")])
        assert not [v.explanation for v in result.verdicts if v.kind.is_failure], dtype


def test_cumprod_through_flushed_partial_products_is_not_a_fault() -> None:
    """cumprod forms partial products too: with an entry at float64's smallest normal, XLA
    flushed one to zero (JAX: H[3,1] = 0, true 4.8e-306); its error scale allows for that."""
    from hessdiff.backends import get_variant
    from hessdiff.harness.engine import check_case
    from hessdiff.harness.strategies import Case

    point = [2.2250738585072014e-308, -3.995178161795836e-15, 732.3638804844447, -3.995178161795836e-15,
             -0.7049621468935818, 0.0, 0.0]
    program = Program(7, (Node("input"), op("cumprod", 0, axis=-1), op("sum", 1)))
    result = check_case(Case(program, np.array(point), "float64"),
                        [get_variant(v) for v in ("jax:fwdrev", "equinox:filter_hessian")])
    assert not [v.explanation for v in result.verdicts if v.kind.is_failure]


def test_resolutions_give_each_kink_a_convention_of_its_own() -> None:
    """A side at one kink beside an average at another (JAX at a tie of max under relu),
    a tie split among some of its entries, and every combination of sides while few."""
    few = {r.choices for r in resolutions(((("relu", 0), 2), (("abs", 0), 2)))}
    assert len(few) == 9 and ((("relu", 0), -1), (("abs", 0), (-1, 1))) in few
    sides = ((("relu", 0), 2), (("max", -1), 3))
    many = {r.choices for r in resolutions(sides)}
    assert ((("relu", 0), -1), (("max", -1), (0, 1, 2))) in many
    assert ((("relu", 0), 1), (("max", -1), (0, 2))) in many
    assert all_resolved(sides)
    wide = tuple(((f"op{k}", 0), 2) for k in range(6))
    combos = [dict(r.choices) for r in resolutions(wide)]
    assert len(combos) < 64
    for k in range(6):  # every option of each kink, the others averaged
        assert any(c[(f"op{k}", 0)] == -1 and all(c[(f"op{m}", 0)] == (-1, 1) for m in range(6) if m != k)
                   for c in combos)


def test_underflow_vars_are_inputs_a_curved_op_squares_below_sqrt_tiny() -> None:
    """hypot's formulas square a tiny argument (NaN may follow in its row); add's and
    mul's never do, and a larger argument's square does not underflow."""
    hypot = Program(2, (Node("input"), op("hypot", 0, 0), op("sum", 1)))
    assert evaluate(hypot, np.array([1e-30, 0.5]), "float32").underflow_vars == (0,)
    assert evaluate(hypot, np.array([1e-30, 0.5]), "float64").underflow_vars == ()
    linear = Program(2, (Node("input"), const([2.0, 3.0]), op("mul", 0, 1), op("add", 2, 1), op("sum", 3)))
    assert evaluate(linear, np.array([1e-30, 0.5]), "float32").underflow_vars == ()
    # A tiny constant argument is squared too: the inputs behind the traced one are marked.
    tiny_constant = Program(2, (Node("input"), const([1e-170, 0.5]), op("hypot", 0, 1), op("sum", 2)))
    assert evaluate(tiny_constant, np.array([0.0, 2.0])).underflow_vars == (0,)


def test_the_sparse_chain_rule_is_the_dense_one_with_zero_times_anything_zero() -> None:
    """``_vector_chain`` forms only the nonzero terms (the oracle's hot loop); it must give
    exactly the dense contraction with 0 * NaN = 0 * inf = 0, on mostly sparse inputs
    with undefined (NaN) and unbounded entries among them."""
    from hessdiff.harness.oracle import jets, whole

    rng = np.random.default_rng(3)
    specials = [mpmath.mpf("nan"), mpmath.mpf("inf"), mpmath.mpf(0)]

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty(shape, dtype=object)
        for idx in np.ndindex(*shape):
            u = rng.random()
            out[idx] = specials[rng.integers(3)] if u < 0.1 else mpmath.mpf(0) if u < 0.6 \
                else mpmath.mpf(float(rng.standard_normal()))
        return out

    for p, m, n in ((1, 1, 1), (3, 2, 4), (2, 5, 3)):
        J, K, G, H = draw((p, m)), draw((p, m, m)), draw((m, n)), draw((m, n, n))
        g, h = whole._vector_chain(J, K, G, H)
        dense_g = jets._mul0(J[:, :, None], G[None]).sum(axis=1)
        GG = jets._mul0(G[:, None, :, None], G[None, :, None, :])
        dense_h = jets._mul0(J[:, :, None, None], H[None]).sum(axis=1) + jets._mul0(K[:, :, :, None, None], GG[None]).sum(axis=(1, 2))
        assert str(g.tolist()) == str(dense_g.tolist())
        assert np.allclose(np.asarray(h, dtype=float), np.asarray(dense_h, dtype=float), equal_nan=True, rtol=1e-14)


def test_within_rounding_of_a_pole_only_the_value_is_computed() -> None:
    """lgamma(sinh(x0) - 3.06e38) at x0 = 82.53: the argument, -3.05e38, is within
    rounding of Gamma's poles (float64's spacing there is 4e22), so the derivatives are
    undefined; computing them anyway (psi(2, a) at a = -3e38) ran into the oracle's
    timeout on every such point. The value is still exact; the derivatives are NaN (a
    framework's NaN value there reaches every entry through NaN * 0)."""
    program = Program(2, (Node("input"), op("gather", 0, idx=(0,)), op("sinh", 1),
                          const([3.0563196790587926e38]), op("sub", 2, 3), op("lgamma", 4),
                          op("gather", 0, idx=(1,)), op("square", 6), op("add", 5, 7), op("sum", 8)))
    result = evaluate(program, np.array([82.53002031433977, 3.0]), "float64")
    h = result.hessian_float()
    assert np.isnan(h).all()
    assert mpmath.isfinite(result.value)


def test_arctan2_is_smooth_off_its_branch_cut_a_jump_on_it_and_undefined_at_the_origin() -> None:
    """atan2(a, c) with c = -1 (b < 0, once outside the generated domain): off the cut its
    value and a-derivatives are the closed forms; on the cut (a = 0) the value jumps from
    pi to -pi with a's sign, so it and what is differentiated across it are undefined, as
    at floor's jumps; at the origin the op is undefined."""
    program = _program(1, const(-1.0), op("arctan2", 0, 1), op("square", 2), op("sum", 3))
    a = 0.3
    result = evaluate(program, np.array([a]))
    theta, d1, d2 = mpmath.atan2(a, -1), -1 / (a * a + 1), 2 * a / (a * a + 1) ** 2
    assert abs(result.value / theta**2 - 1) < 1e-14
    assert abs(result.hessian[0, 0] / (2 * d1 * d1 + 2 * theta * d2) - 1) < 1e-14
    linear = _program(1, const(-1.0), op("arctan2", 0, 1), op("sum", 2))
    above, below = (evaluate(linear, np.array([v])).value for v in (a, -a))
    assert abs(above - below - (2 * mpmath.pi - 2 * mpmath.atan(a))) < 1e-14  # across the cut
    on_cut = evaluate(program, np.array([0.0]))
    assert mpmath.isnan(on_cut.hessian[0, 0]) and on_cut.kinks
    with pytest.raises(OutOfDomain, match="arctan2"):
        evaluate(_program(1, op("arctan2", 0, 0), op("sum", 1)), np.array([0.0]))


def test_a_norm_within_a_subnormal_of_all_zero_is_out_of_domain() -> None:
    """norm(x - c, inf) with x - c = (-1e-323, 0) in float64: XLA flushes the subnormal and
    computes the norm at 0, outside its domain, where JAX's tie rule (amax with
    initial=0) gives H[0, 1] = 0.125 for square(norm), no convention of the exact point
    (a 5-minute campaign called it a new fault). At (-1e-300, 0), a normal number, it is
    judged as before."""
    def program(c: float) -> Program:
        return _program(2, const([c, 0.0]), op("sub", 0, 1), op("norm", 2, axis=-1, keepdims=True, ord="inf"),
                        op("square", 3), op("sum", 4))

    with pytest.raises(OutOfDomain, match="within a subnormal of its domain's edge"):
        evaluate(program(1e-323), np.zeros(2))
    np.testing.assert_array_equal(evaluate(program(1e-300), np.zeros(2)).hessian_float(), [[2.0, 0.0], [0.0, 0.0]])
