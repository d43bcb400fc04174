"""Where each op is generated, beside where the mathematics defines it.

A fault that lives where the catalogue never goes cannot be found, so every place where
the catalogue's domain is smaller than the mathematical one (the set where the op is
defined and twice differentiable in its traced arguments) is written down here with the
reason, and ``hessdiff ops --domains`` prints it. An op whose domain is the mathematical
one needs no entry: its catalogue domain is derived from ``OpSpec.arg_domains`` and
``integer_args``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hessdiff.harness.ops import CATALOGUE, OpSpec
from hessdiff.harness.ops.domains import DOMAINS

__all__ = ["DomainNote", "NOTES", "catalogue_domain", "domain_rows", "restricted"]

_ARG_NAMES = "abc"


@dataclass(frozen=True)
class DomainNote:
    """The domain of an op whose catalogue domain is a predicate, or narrower than the
    mathematics.

    ``catalogue``: what the predicate admits (for an ``OpSpec.domain``). ``math``: where
    the op is defined and twice differentiable in its traced arguments, "" when that is
    the catalogue's domain. ``reason``: why the catalogue admits less, one measured or
    structural reason.
    """

    math: str = ""
    catalogue: str = ""
    reason: str = ""


NOTES: dict[str, DomainNote] = {
    "pow": DomainNote(
        math="a > 0 for a traced b (d/db = a**b log a); for a constant b: every a if b is an integer >= 0, "
             "a != 0 if b is a negative integer, a > 0 or (a = 0 and b >= 2) otherwise",
        reason="a = 0 beside a constant non-integer b >= 2 is not generated: the third derivative in the "
               "oracle's error terms, b (b-1) (b-2) a**(b-3), is infinite there for 2 < b < 3"),
    "arctan2": DomainNote(
        catalogue="every (a, b) but a = b = 0 (on the branch cut a = 0, b < 0 the value jumps by 2 pi: "
                  "undefined within rounding of it, as at floor's jumps)"),
    "hypot": DomainNote(catalogue="every (a, b) but a = b = 0 (a cone)"),
    "std": DomainNote(
        math="entries not all equal", catalogue="a spread of more than 1e-3 of the largest magnitude",
        reason="near zero spread the Hessian (~1/spread) amplifies the entries' rounding by 1/spread**2, "
               "beyond the rounding-error scale (float32 std of 1 + x**2 at x ~ 0.01)"),
    "norm": DomainNote(catalogue="not all entries 0"),
    "inv": DomainNote(
        math="a non-singular matrix", catalogue="|det| > 1e-2 times the product of the row norms",
        reason="LU with pivoting errs by the condition number times constants the oracle's Cramer's-rule "
               "error scale does not model (at 1e-3 JAX's solve Hessian erred by 3x the 64-ulp bound, "
               "condition 550)"),
    "solve": DomainNote(
        math="a non-singular matrix", catalogue="|det| > 1e-2 times the product of the row norms",
        reason="as for inv"),
    "cholesky": DomainNote(
        math="a symmetric positive definite matrix",
        catalogue="exactly symmetric and varying along symmetric matrices, every leading minor above 1e-6 of "
                  "its diagonal scale",
        reason="off the symmetric matrices the frameworks' derivatives disagree (JAX symmetrizes the input, "
               "PyTorch's reverse rule the cotangent, its forward rule neither); minors near rounding make "
               "the factor's derivatives ill-conditioned"),
}


def restricted(spec: OpSpec) -> bool:
    """Whether the op is generated on less than every real argument."""
    return spec.domain is not None or any(spec.arg_domains) or spec.name in NOTES


def catalogue_domain(spec: OpSpec) -> str:
    """The catalogue's domain of ``spec`` in words."""
    note = NOTES.get(spec.name)
    if spec.domain is not None:
        return note.catalogue if note is not None and note.catalogue else "a predicate (see harness/ops/)"
    parts = [DOMAINS[d].text.format(_ARG_NAMES[i]) for i, d in enumerate(spec.arg_domains) if d is not None]
    text = ", ".join(parts) or "every real argument"
    for p in spec.integer_args:
        others = ", ".join(_ARG_NAMES[q] for q, d in enumerate(spec.arg_domains) if d is not None and q != p)
        text += (f"; every {others} beside a constant integer {_ARG_NAMES[p]} "
                 f"({others} != 0 if {_ARG_NAMES[p]} < 0)")
    return text


def domain_rows() -> list[list[str]]:
    """One row per restricted op: name, catalogue domain, mathematical domain, reason."""
    rows = []
    for spec in CATALOGUE.values():
        if not restricted(spec):
            continue
        note = NOTES.get(spec.name)
        math = note.math if note is not None and note.math else "the same"
        reason = note.reason if note is not None and note.reason else "-"
        rows.append([spec.name, catalogue_domain(spec), math, reason])
    return rows
