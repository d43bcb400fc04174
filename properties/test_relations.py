"""Metamorphic relations as properties: for every backend, on every generated case, each
relation between the framework's own computations holds (harness/relations.py).

A violation the oracle attributes to a computation is a finding like the campaign's; a
new one (not in reports/baseline.json) fails the test, after Hypothesis shrinks the case,
with the explanation in the message and a report (findings.json, repro.py, env.txt) under
the directory it names.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from hessdiff.backends import get_backend
from hessdiff.harness.relations import check
from hessdiff.harness.strategies import Case, cases
from _params import backend_params
from _relations import assert_no_new_findings, cost_scaled, report_dir  # noqa: F401 - a fixture

# The relations between a framework's own computations (probes included: the HVPs,
# vmap-batched and compiled Hessians are "transforms" of the same Hessian).
RELATION_GROUPS = {
    "symmetry": ("symmetry",),
    "hvp": ("hvp",),
    "laplacian": ("laplacian",),
    "modes": ("modes",),
    "transforms": ("transforms", "vmap", "compiled"),
    "precision": ("precision",),
    "finite_differences": ("finite_differences",),
}

PARAMS = [
    pytest.param(group, backend.values[0], id=f"{group}-{backend.id}", marks=backend.marks)
    for group in RELATION_GROUPS
    for backend in backend_params()
]


@pytest.mark.parametrize("group,backend", PARAMS)
@cost_scaled(10)
@given(case=cases(max_n=3, max_ops=4))
def test_relation_holds(group: str, backend: str, case: Case, baseline, report_dir) -> None:
    findings = []
    for relation in RELATION_GROUPS[group]:
        findings += check(relation, case, get_backend(backend)).findings
    assert_no_new_findings(findings, baseline, report_dir / f"{group}-{backend}")
