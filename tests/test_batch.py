"""The fast path: float screening, batched Hessians, the oracle where it matters."""

from __future__ import annotations

import numpy as np
import pytest

from hessdiff.backends import BackendVariant, get_variant, register
from hessdiff.backends.registry import unregister
from hessdiff.harness.batch import check_program
from hessdiff.harness.engine import check_case
from hessdiff.harness.findings import Kind
from hessdiff.harness.ir import Node, Program, const, op
from hessdiff.harness.screen import NEAR, agree, screen
from hessdiff.harness.strategies import Case
from planted import PlantedBackend

CROSS = Program(2, (Node("input"), op("gather", 0, idx=(1, 0)), op("mul", 0, 1), op("sin", 2), op("sum", 3)))
KINK = Program(2, (Node("input"), op("relu", 0), op("square", 1), op("sum", 2)))
LOG = Program(2, (Node("input"), op("log", 0), op("sum", 1)))
MLP = Program(2, (Node("input"), const([[0.5, -1.0], [1.5, 0.3]]), op("matmul", 1, 0), op("tanh", 2),
                  op("sum", 3)))
POINTS = np.array([[0.3, -0.7], [1.1, 0.4], [-0.2, 0.9], [0.0, 0.5]])


def test_screen_measures_the_distance_to_kinks_per_point() -> None:
    distance = screen(KINK, POINTS, "float64")
    assert distance[3] == 0.0  # relu(0.0): on the kink
    assert np.all(distance[:3] > 0.1)
    assert np.all(screen(MLP, POINTS, "float64") == np.inf)  # smooth: no kink anywhere


def test_screen_cannot_vouch_outside_the_domain() -> None:
    distance = screen(LOG, POINTS, "float64")
    assert np.isnan(distance[0]) and distance[1] > NEAR
    # sqrt(0) is finite, but 0 is outside sqrt's domain (a > 0): its Hessian is not.
    sqrt = Program(2, (Node("input"), op("sqrt", 0), op("sum", 1)))
    distance = screen(sqrt, np.array([[0.0, 1.0], [2.0, 1.0]]), "float64")
    assert np.isnan(distance[0]) and distance[1] > NEAR


def test_screen_sends_points_at_or_near_a_special_value_to_the_oracle() -> None:
    """Derivative rules branch on exact values (log1p near 0, arcsin near 1): however well
    the frameworks agree there, they may share the fault; such a point is the oracle's."""
    log1p = Program(2, (Node("input"), op("log1p", 0), op("sum", 1)))
    distance = screen(log1p, np.array([[1e-25, 0.5], [0.3, 0.5], [0.0, 0.5]]), "float64")
    assert distance[0] <= NEAR and distance[2] == 0.0 and distance[1] > NEAR


def test_screen_evaluates_whole_array_ops_and_step_functions() -> None:
    """logsumexp (a Vector op) feeds a relu whose kink sits at logsumexp(x) = 1; floor
    jumps at integers. Both are screened, not left to the oracle wholesale."""
    c = 1.0
    lse = Program(2, (Node("input"), op("logsumexp", 0, axis=None, keepdims=False), const(c), op("sub", 1, 2), op("relu", 3),
                      op("sum", 4)))
    on_kink = np.array([np.log(np.exp(c) - np.exp(0.25)), 0.25])
    distance = screen(lse, np.array([on_kink, [0.3, -0.7]]), "float64")
    assert distance[0] < 1e-12 and 0.1 < distance[1] < np.inf
    floor = Program(2, (Node("input"), op("floor", 0), op("sum", 1)))
    distance = screen(floor, np.array([[0.25, 1.5], [2.0, 1.0]]), "float64")
    assert np.allclose(distance, [1 / 3, 0.0])


def test_screen_measures_ties_of_choosing_ops() -> None:
    """max at a tie of its two largest entries, the 1-norm at a zero entry: distance 0."""
    top = Program(3, (Node("input"), op("max", 0, axis=None, keepdims=False), op("square", 1)))
    assert np.allclose(screen(top, np.array([[1.0, 2.0, 2.0], [1.0, 2.0, 3.0]]), "float64"), [0.0, 1 / 3])
    l1 = Program(3, (Node("input"), op("norm", 0, axis=None, keepdims=False, ord=1), op("square", 1)))
    assert np.allclose(screen(l1, np.array([[1.0, 0.0, 2.0], [1.0, 2.0, 3.0]]), "float64"), [0.0, 1 / 3])


def test_agreement_uses_each_backends_own_tolerance() -> None:
    h = np.array([[2.0, 0.5], [0.5, 1.0]])
    off = h * (1 + 1e-9)
    assert agree({"jax:fwdrev": h, "torch:func": h}, 2, "float64")
    assert not agree({"jax:fwdrev": h, "torch:func": off}, 2, "float64")
    assert agree({"jax:fwdrev": h, "mlx:fwdrev": off}, 2, "float64")  # float32-accurate MLX
    assert not agree({"jax:fwdrev": h, "torch:func": None}, 2, "float64")
    assert not agree({"jax:fwdrev": h, "torch:func": h[:1]}, 2, "float64")


@pytest.fixture(scope="module")
def planted():
    backend = register(PlantedBackend())
    yield backend
    unregister(backend.name)


def test_batched_hessians_equal_one_point_hessians() -> None:
    variant = get_variant("jax:fwdrev")
    batch = variant.hessians(CROSS, POINTS)
    assert batch.shape == (4, 2, 2)
    for x, h in zip(POINTS, batch):
        np.testing.assert_allclose(h, variant.hessian(CROSS, x), rtol=1e-13, atol=1e-15)


def test_a_planted_fault_is_judged_at_every_point_and_honesty_is_screened(planted) -> None:
    honest, wrong = BackendVariant(planted, "honest"), BackendVariant(planted, "no_cross")
    fast = check_program(CROSS, list(POINTS), "float64", [honest, wrong])
    assert fast.checked == 4 and len(fast.judged) == 4  # no_cross disagrees: the oracle judges all
    for result in fast.judged:
        kinds = {(v.variant, v.kind) for v in result.verdicts}
        slow = check_case(Case(CROSS, result.case.point, "float64"), [honest, wrong])
        assert kinds == {(v.variant, v.kind) for v in slow.verdicts}
        assert ("planted:no_cross", Kind.WRONG_VALUE) in kinds

    agreeing = check_program(MLP, list(POINTS), "float64", [honest, get_variant("torch:func")])
    assert agreeing.checked == 4 and agreeing.screened == 3  # only the first point needs the oracle
    assert agreeing.judged[0].verdicts == []


def test_variants_of_one_framework_cannot_vouch_for_each_other(planted) -> None:
    """planted is JAX, and Equinox is JAX too: their agreement shares JAX's derivative
    rules, and so its faults; screening vouches only for independent frameworks."""
    honest = BackendVariant(planted, "honest")
    h = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert not agree({"jax:fwdrev": h, "equinox:filter_hessian": h, "planted:honest": h}, 2, "float64")
    assert agree({"jax:fwdrev": h, "torch:func": h}, 2, "float64")
    same = check_program(MLP, list(POINTS), "float64", [honest, get_variant("jax:revrev")])
    assert same.checked == 4 and same.screened == 0
