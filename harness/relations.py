"""Metamorphic relations: what must hold between a framework's own computations.

Cross-framework agreement misses a bug every framework shares and a bug in a code path
nobody compares (an HVP, a PINN Laplacian, a custom rule, vmap, a compiler). Each relation
here compares two of one framework's own computations, with no other framework:

- ``symmetry``: H equals its transpose;
- ``hvp``: the framework's Hessian-vector products (jvp-of-grad, vjp-of-grad,
  ``torch.autograd.functional.hvp/vhp``) assemble H;
- ``laplacian``: the PINN Laplacian (nested grad per axis, vmapped over points) is trace(H);
- ``modes``: every differentiation order (fwd-over-rev, rev-over-rev, ...) gives one H;
- ``transforms``: jit/compile and vmap commute with differentiation;
- ``precision``: float32 and float64 agree to float32 accuracy where well-conditioned;
- ``finite_differences``: H equals central differences of the framework's own gradient;

and the scenarios behind real bug reports, checked the same way through a backend's
*probes* (``Backend.probes()``, each declaring the relation that checks it):
``custom_rules`` (a custom differentiation rule),
``parameters`` (a model's parameter Hessian), ``neural_ode`` (a fixed-step ODE loss) and
``neural_ode_adaptive`` (an adaptive ODE solve, judged against the exact solution within
the solver's tolerance).

Every violation is attributed with the independent oracle (``hessdiff.harness.oracle``): the
computation the oracle rejects is the one at fault, judged by ``hessdiff.harness.engine.judge`` like
a campaign variant, and becomes a ``Finding`` of that kind (whose ``repro.py`` runs that
computation). A violation the oracle accepts on both sides is the relation's tolerance
meeting rounding: a ``noise`` finding that states its magnitude, never a failure.

This module is the relations' front (which relations there are, and checking one); the
probe relations are ``probe_relations``, the pair relations ``pair_relations``, and what
both find with ``relation_findings``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hessdiff.backends import Backend, BackendVariant
from hessdiff.harness.case import Case
from hessdiff.harness.pair_relations import PAIR_CHECKS, check_symmetry
from hessdiff.harness.probe_relations import PROBE_RELATIONS, check_probe
from hessdiff.harness.relation_findings import RelationResult

# RelationResult is relation_findings': the type check() returns, importable with it. The
# probe relations, the ODE programs and their constants are probe_relations'.
__all__ = ["RELATIONS", "RelationResult", "check", "probes_for"]

RELATIONS: tuple[str, ...] = (
    "symmetry", "modes", "transforms", "precision", "finite_differences", *PROBE_RELATIONS,
)


def probes_for(backend: Backend, relation: str) -> list[str]:
    """The names of ``backend``'s probes that ``relation`` checks (maybe none): those that
    declare it (``Variant.relation``)."""
    if relation not in PROBE_RELATIONS:
        raise ValueError(f"relation={relation!r}, but it must be one of {tuple(PROBE_RELATIONS)}.")
    return [name for name, probe in backend.probes().items() if probe.relation == relation]


def check(relation: str, case: Case, backend: Backend, probes: Sequence[str] | None = None) -> RelationResult:
    """Check ``relation`` on ``case`` for every applicable computation of ``backend``.

    Arguments:
        relation: one of ``RELATIONS``.
        case: the program, point and dtype.
        backend: the backend whose own computations are compared.
        probes: for a probe relation, the probe names to check (default: all it has).

    Returns:
        A ``RelationResult``; a violation is a finding, never an exception. ``Unsupported``
        computations are skipped.
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation={relation!r}, but it must be one of {RELATIONS}.")
    # inf - inf and the like are data here (a non-finite Hessian is judged, not a warning).
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _check(relation, case, backend, probes)


def _check(relation: str, case: Case, backend: Backend, probes: Sequence[str] | None) -> RelationResult:
    result = RelationResult(relation)
    if relation in PROBE_RELATIONS:
        names = list(probes) if probes is not None else probes_for(backend, relation)
        for name in names:
            check_probe(result, PROBE_RELATIONS[relation], case, BackendVariant(backend, name))
        return result
    if relation == "symmetry" and probes is not None:
        check_symmetry(result, case, backend, list(probes))
        return result
    PAIR_CHECKS[relation](result, case, backend)
    return result
