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
