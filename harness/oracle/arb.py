"""Arb ball arithmetic (python-flint) for the oracle's functions mpmath computes slowly.

The oracle evaluates a rule's derivatives with mpmath, and ``rules._stable`` evaluates each
again with more digits (90, 180, ... up to 4000) until two evaluations agree. mpmath's
polygamma costs grow steeply with the digits asked for (it sums a series in complex
arithmetic, ``mpc_psi``, even for a real argument): in a 60-second torch campaign
(``hessdiff run --backends torch --seed 1``) 808 polygamma calls took 300 of 380 s, and the
sweep checked 10 cases in 220 s. Arb computes the same function in C as a ball, a midpoint
with a rigorous radius, and the ball is returned only when its radius is below the working
precision's unit: the value is as certain as mpmath's, and where Arb cannot give it (a
pole, a ball too wide, python-flint not installed) mpmath computes it as before.
"""

from __future__ import annotations

import math
from typing import Any

import mpmath

try:  # an optional speed-up: without it every value comes from mpmath, as before
    import flint
except ImportError:  # pragma: no cover - python-flint is a dependency; a bare install may lack it
    flint = None

__all__ = ["FUNCTIONS", "polygamma"]

# Bits beyond the working precision Arb computes with, tried in turn until the ball is
# narrower than the working precision's unit: the first suffices but where the function
# cancels (a reflected negative argument) or near a pole.
_EXTRA_BITS = (32, 128, 512, 2048)


def polygamma(n: Any, x: Any) -> Any:
    """psi(n, x) (``mpmath.polygamma``) at the working precision: Arb's ball midpoint when
    the ball is that narrow, else mpmath's value."""
    value = _arb_polygamma(n, x)
    return mpmath.polygamma(n, x) if value is None else value


def _arb_polygamma(n: Any, x: Any) -> Any | None:
    if flint is None or not isinstance(x, mpmath.mpf) or not mpmath.isfinite(x):
        return None
    try:
        order = int(n)
    except (TypeError, ValueError):
        return None
    if order != n or order < 0:
        return None
    sign, man, exp, _ = x._mpf_
    point = (int(-man if sign else man), int(exp))
    prec = mpmath.mp.prec
    # A negative argument is reflected (``_ball``), which may cancel; near a pole the
    # function is steep. The ball says so by its width, and it is computed again with
    # more bits (mpmath took 8.8 s for psi(1, -3672541.45) at 50 digits).
    for extra in _EXTRA_BITS:
        ball = _ball(point, order, prec + extra)
        if not ball.is_finite():
            continue  # a pole, or too near one for these bits
        mid = _mpf(ball.mid())
        rad = _mpf(ball.rad())
        if mid != 0 and rad <= abs(mid) * mpmath.ldexp(1, -prec - 1):
            return +mid  # rounded to the working precision
    return None  # too wide at every precision tried: mpmath decides


def _ball(point: tuple[int, int], order: int, bits: int) -> Any:
    """psi(order, man * 2**exp) as a real Arb ball computed with ``bits`` of precision.

    A negative argument goes through the reflection formula, differentiated ``order``
    times: psi(n, x) = (-1)^n psi(n, 1 - x) - pi n! [t^n] cot(pi (x + t)), the cotangent's
    Taylor coefficient from Arb's power series; Arb's own polygamma gives an infinite ball
    for a large negative argument (psi(1, -3672541.45))."""
    saved = flint.ctx.prec
    flint.ctx.prec = bits
    try:
        x = flint.arb(point)
        if x >= 0:
            # psi(n, x) of a real x is real: an imaginary part is only the ball's width about 0.
            return flint.acb(x).polygamma(order).real
        coeffs = flint.arb_series([x, 1], prec=order + 1).cot_pi().coeffs()
        cot = coeffs[order] if order < len(coeffs) else flint.arb(0)  # a zero coefficient is trimmed
        return (-1) ** order * flint.acb(1 - x).polygamma(order).real - flint.arb.pi() * math.factorial(order) * cot
    finally:
        flint.ctx.prec = saved


def _mpf(value: Any) -> Any:
    """An exact arb midpoint or radius (a dyadic number) as an mpf."""
    man, exp = value.man_exp()
    with mpmath.workprec(max(int(man).bit_length(), 1) + 8):
        return mpmath.mpf((int(man), int(exp)))


# The names a lambdified rule calls that this module computes (``rules._lambdify``).
FUNCTIONS: dict[str, Any] = {"polygamma": polygamma}
