"""Parameters shared by the property tests: one per backend, with readable ids."""

from __future__ import annotations

import pytest

from hessdiff.backends import all_backends, all_variants


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
