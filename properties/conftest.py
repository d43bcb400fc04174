"""Shared pieces of the property suite: the baseline and the per-backend parameters.

Hypothesis profiles are loaded once, by the root ``conftest.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hessdiff.harness.baseline import Baseline, load_baseline

# HESSDIFF_BASELINE: a version environment's own baseline (tox.ini, differential-eqx0114).
BASELINE_PATH = Path(os.environ.get("HESSDIFF_BASELINE") or
                     Path(__file__).resolve().parent.parent / "reports" / "baseline.json")


@pytest.fixture(scope="session")
def baseline() -> Baseline:
    return load_baseline(BASELINE_PATH)
