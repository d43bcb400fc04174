"""Every op generated on less than the reals says where, beside the mathematical domain,
and every narrowing has its reason (``hessdiff ops --domains``)."""

from __future__ import annotations

from hessdiff.harness.domains import NOTES, catalogue_domain, domain_rows, restricted
from hessdiff.harness.ops import CATALOGUE


def test_every_restricted_op_has_a_row_and_every_narrowing_a_reason() -> None:
    rows = {row[0]: row for row in domain_rows()}
    assert set(rows) == {name for name, spec in CATALOGUE.items() if restricted(spec)}
    for name, (_, generated, math, reason) in rows.items():
        assert generated and math, name
        narrowed = math not in ("the same", generated)
        assert (reason != "-") == narrowed, (name, generated, math, reason)


def test_a_predicate_domain_is_described_not_left_as_code() -> None:
    for name, spec in CATALOGUE.items():
        if spec.domain is not None:
            assert name in NOTES and NOTES[name].catalogue, name
            assert catalogue_domain(spec) == NOTES[name].catalogue


def test_a_constant_integer_exponent_shows_in_pows_domain() -> None:
    assert "every a beside a constant integer b" in catalogue_domain(CATALOGUE["pow"])


def test_each_argument_domain_is_one_description_whose_constants_and_guards_land_inside() -> None:
    """The generator's constants and guards, the oracle's edges and the text all come from
    one ``Domain``: its constants lie inside, its edges outside, and a guarded value
    (a**2 + c, or sin(a) * c) inside for every a."""
    from hessdiff.harness.ops import DOMAINS

    for domain in DOMAINS.values():
        lo, hi = domain.constants
        # Gamma's poles lie among off_poles' constants (-2, -1, 0): only the interval
        # domains hold every constant drawn.
        assert domain.edges_near is not None or (domain.contains(lo) and domain.contains(hi)), domain.name
        assert not any(domain.contains(edge) for edge in domain.edges), domain.name
        if domain.guard[0] == "square":  # a**2 + c, c in [0.125, 2] + lift: at least lift + 0.125
            assert domain.contains(domain.guard[1] + 0.125), domain.name
        else:  # sin(a) * c, |c| <= hi < 1
            assert domain.contains(domain.guard[2]) and domain.contains(-domain.guard[2]), domain.name
        assert "{}" in domain.text
    assert DOMAINS["off_poles"].edges_of(-2.6) == (-3,) and DOMAINS["off_poles"].edges_of(0.5) == (0,)
    assert {d for spec in CATALOGUE.values() for d in spec.arg_domains if d is not None} <= set(DOMAINS)
