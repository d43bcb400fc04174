"""The oracle's Arb functions (``harness.oracle.arb``): the same digits as mpmath, or mpmath's."""

from __future__ import annotations

import mpmath
import pytest

from hessdiff.harness.oracle import arb
from hessdiff.harness.oracle.rules import _lambdify

POINTS = ["0.5", "1.7", "-0.3", "-2.5", "3", "123456.75", "1e15", "7.25e30", "1e300",
          "1e-10", "-1e-10", "1e-300", "-7.999999999", "-99999.5", "-3672541.4466803844506"]


@pytest.mark.parametrize("dps", [50, 300])
@pytest.mark.parametrize("x", POINTS)
def test_where_arb_answers_it_has_every_digit(x: str, dps: int) -> None:
    """Arb's ball midpoint is taken only when the ball is narrower than the working
    precision's unit: it agrees with mpmath at three times the digits to the working
    precision, at every order the oracle's rules reach. Where the ball is wider Arb does
    not answer: at -99999.5, psi(2) cancels (reflection), and mpmath at the working
    precision is itself wrong in the 47th digit there, which ``rules._stable`` catches by
    evaluating again with more digits; Arb answers with more bits (``arb._EXTRA_BITS``)."""
    answered = 0
    with mpmath.workdps(dps):
        point = mpmath.mpf(x)
        for order in range(5):
            value = arb._arb_polygamma(order, point)
            if value is None:
                continue
            answered += 1
            with mpmath.workdps(2 * dps):
                truth = _truth(order, point)
            assert abs(value - truth) <= abs(truth) * mpmath.mpf(10) ** (-(dps - 2)), (x, order)
    assert answered == 5


def _truth(order: int, x: mpmath.mpf) -> mpmath.mpf:
    """mpmath's psi(order, x); for a large negative x by mpmath's own reflection (its psi
    and cot at positive arguments), as mpmath's polygamma there takes seconds a value."""
    if x > -1000:
        return mpmath.polygamma(order, x)
    cot = mpmath.diff(lambda t: mpmath.cot(mpmath.pi * t), x, order)
    return (-1) ** order * mpmath.polygamma(order, 1 - x) - mpmath.pi * cot


def test_arb_answers_where_mpmath_is_slow_and_defers_at_a_pole() -> None:
    with mpmath.workdps(50):
        assert arb._arb_polygamma(2, mpmath.mpf("12345.678")) is not None
        assert arb._arb_polygamma(1, mpmath.mpf("-2.5")) is not None  # a reflected argument
        # reflected, it cancels ~50 bits: answered with more (mpmath took 8.8 s for it)
        assert arb._arb_polygamma(1, mpmath.mpf("-3672541.4466803844506")) is not None
        assert arb._arb_polygamma(0, mpmath.mpf(-3)) is None  # a pole: mpmath raises as before
        with pytest.raises(ValueError, match="pole"):
            arb.polygamma(0, mpmath.mpf(-3))


def test_without_python_flint_every_value_is_mpmaths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arb, "flint", None)
    with mpmath.workdps(50):
        x = mpmath.mpf("1.7")
        assert arb.polygamma(1, x) == mpmath.polygamma(1, x)


def test_a_lambdified_rule_calls_arbs_polygamma(monkeypatch: pytest.MonkeyPatch) -> None:
    import sympy as sp

    calls: list[tuple[int, object]] = []
    monkeypatch.setitem(arb.FUNCTIONS, "polygamma", lambda n, x: calls.append((n, x)) or mpmath.polygamma(n, x))
    a = sp.Symbol("a0", real=True)
    rule = _lambdify(sp, [a], sp.diff(sp.loggamma(a), a, 2))  # lgamma'' = psi(1, a)
    with mpmath.workdps(50):
        assert rule(mpmath.mpf(2)) == mpmath.polygamma(1, 2)
    assert calls == [(1, mpmath.mpf(2))]
