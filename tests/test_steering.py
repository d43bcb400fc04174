"""Coverage steering: what a campaign's probe cases are spent on."""

from __future__ import annotations

from hessdiff.harness.steering import Steering


def test_probe_wants_interleave_special_values_patterns_and_kinds() -> None:
    """A campaign checks a few probe cases after each round, in the order ``unswept``
    gives: listed axis after axis, the argument kinds came last and a 5-minute campaign
    never reached 11 of them. Interleaved, the first wants cover every axis."""
    steering = Steering(("div", "pow"), 1, None, 3, {}, {"div": ["jax:jit"], "pow": ["jax:jit"]})
    wants = steering.unswept()
    axes = ["special" if "@" in key else "pattern" if "/" in key else "kind" for key, _, _ in wants]
    assert axes[:3] == ["special", "pattern", "kind"]
    assert axes.count("kind") == 14 and "kind" in axes[:6]  # div's 6 and pow's 8, not last
    assert len(wants) == len({key for key, _, _ in wants})
