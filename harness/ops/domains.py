"""The argument domains an op entry names in ``OpSpec.arg_domains``: one description each,
which the registry, the generator, the oracle and ``hessdiff ops --domains`` all read.

A domain says which values an argument may take (``contains``), where its edges are
(``edges``: the oracle leaves the derivatives undefined within rounding of one, where a
framework's rounding decides the side), how the generator draws a constant inside it
(``constants``) and maps a traced value into it (``guard``), and how it reads
(``text``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["DOMAINS", "Domain", "UNRESTRICTED_CONSTANTS", "integer_valued"]


def integer_valued(value: Any) -> bool:
    """Whether a scalar (float or multi-precision) is a finite integer."""
    try:
        return bool(value == int(value))
    except (OverflowError, ValueError, TypeError):
        return False


def _nearest_pole(value: Any) -> tuple[Any, ...]:
    """Gamma's pole nearest to ``value`` (0 for a positive one)."""
    if value < 0:
        import mpmath  # the oracle's values; importing the catalogue imports no mpmath

        return (min(0, int(mpmath.nint(value))),)
    return (0,)


@dataclass(frozen=True)
class Domain:
    """Where one argument of an op must lie.

    Arguments:
        name: the name entries use in ``OpSpec.arg_domains``.
        contains: ``contains(v)`` is True for a value inside (float or multi-precision).
        edges: the domain's edges, or ``edges_near(v)`` for those that depend on where
            the value is (Gamma's poles).
        constants: the range (lo, hi) the generator draws a constant argument from.
        guard: how the generator maps a traced value into the domain: ``("sine", lo,
            hi)`` is sin(a) * c with c drawn from [lo, hi]; ``("square", lift)`` is
            a**2 + c with c drawn from [0.125, 2] plus ``lift``.
        text: the domain in words, ``{}`` standing for the argument.
    """

    name: str
    contains: Callable[[Any], bool]
    edges: tuple[float, ...]
    constants: tuple[float, float]
    guard: tuple[Any, ...]
    text: str
    edges_near: Callable[[Any], tuple[Any, ...]] | None = None

    def edges_of(self, value: Any) -> tuple[Any, ...]:
        """The edges ``value`` may be near."""
        return self.edges if self.edges_near is None else self.edges_near(value)


# Where a constant argument of an op without a domain is drawn from.
UNRESTRICTED_CONSTANTS = (-2.0, 2.0)

DOMAINS: dict[str, Domain] = {d.name: d for d in (
    Domain("pos", lambda v: v > 0, (0,), (0.125, 2.0), ("square", 0.0), "{} > 0"),
    Domain("nonzero", lambda v: v != 0, (0,), (0.125, 2.0), ("square", 0.0), "{} != 0"),
    Domain("gt1", lambda v: v > 1, (1,), (1.125, 3.0), ("square", 1.0), "{} > 1"),
    Domain("gt_neg1", lambda v: v > -1, (-1,), (-0.875, 2.0), ("square", -1.0), "{} > -1"),
    Domain("unit", lambda v: -1 < v < 1, (-1, 1), (-0.875, 0.875), ("sine", 0.125, 0.9375), "-1 < {} < 1"),
    # Gamma's poles: 0, -1, -2, ...
    Domain("off_poles", lambda v: v > 0 or not integer_valued(v), (0,), (-2.0, 2.0), ("square", 0.0),
           "{} not 0, -1, -2, ...", edges_near=_nearest_pole),
)}
