"""Shared pieces of the property suite: the baseline and the per-backend parameters.

Hypothesis profiles are loaded once, by the root ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backends import all_backends, all_variants
from harness.baseline import Baseline, load_baseline

BASELINE_PATH = Path(__file__).resolve().parent.parent / "reports" / "baseline.json"


@pytest.fixture(scope="session")
def baseline() -> Baseline:
    return load_baseline(BASELINE_PATH)


def backend_params() -> list:
    """One parameter per backend, skipped with the install hint if it is missing."""
    params = []
    for backend in all_backends():
        status = backend.availability()
        marks = [] if status.available else [pytest.mark.skip(reason=status.reason)]
        params.append(pytest.param(backend.name, id=backend.name, marks=marks))
    return params


def variants_of(backend: str) -> list:
    return all_variants([backend])
