"""Fixtures for the project's own tests.

Warnings are errors for every test (``filterwarnings = ["error"]`` in pyproject.toml);
Hypothesis profiles are loaded by the root ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from hessdiff.backends import Absent, Backend, Namespace, Variant, registry
from hessdiff.harness.ops import CATALOGUE


class Planted(Backend):
    """A complete backend that computes nothing; tests subclass it to break one thing."""

    name = "planted"
    distribution = "planted-dist"
    extra = "planted"
    modules = ()
    variants = {"only": Variant("the identity", lambda m, f: f)}
    gradient = staticmethod(lambda m, f: f)
    lowerings = {"const": lambda m, value: value} | {
        name: Absent("planted for a test") for name in CATALOGUE
    }
    source_imports = ""

    def namespace(self, dtype: str) -> Namespace:
        return Namespace()

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return {}

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)


@pytest.fixture
def planted() -> type[Backend]:
    """The ``Planted`` backend class (not registered; register it with ``clean_registry``)."""
    return Planted


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Load the real backends, then undo whatever the test registers or removes."""
    registry.all_backends()
    tables = (registry._BACKENDS, registry._SOURCES, registry._BROKEN)
    saved = [(table, dict(table)) for table in tables]
    try:
        yield
    finally:
        for table, contents in saved:
            table.clear()
            table.update(contents)
