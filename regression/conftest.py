"""The one campaign the regression tests read: seed 0, default ops, a fixed example budget."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hessdiff.backends import all_variants  # noqa: E402
from hessdiff.harness.campaign import Campaign, CampaignConfig  # noqa: E402
from regression_setup import EXAMPLES, ROUNDS  # noqa: E402


@pytest.fixture(scope="session")
def campaign() -> Campaign:
    """jax.hessian and both equinox variants, float64, ROUNDS x EXAMPLES examples."""
    variants = all_variants(["jax:fwdrev", "equinox"])
    for variant in variants:
        status = variant.backend.availability()
        assert status.available, status.reason  # never a skip: this env exists for it
    config = CampaignConfig(budget_seconds=900, seed=0, max_rounds=ROUNDS, round_examples=EXAMPLES,
                            dtypes=("float64",))
    campaign = Campaign(variants, config)
    campaign.run()
    return campaign
