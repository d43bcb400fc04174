"""Real shard reports for the merge and triage tests: tiny campaigns over planted faults.

Two shards (two seeds) of the same campaign, each written by ``write_report`` exactly as
``hessdiff run`` writes it, so ``hessdiff merge`` and ``triage`` are tested on the files
a nightly run produces, not on hand-made JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hessdiff.backends import BackendVariant
from hessdiff.harness.baseline import Baseline
from hessdiff.harness.campaign import Campaign, CampaignConfig
from hessdiff.harness.findings import Finding
from hessdiff.harness.report import write_report
from planted import PlantedBackend

OPS = ("relu", "square", "mul", "add", "sub", "abs", "maximum", "sum")
VARIANTS = ("honest", "pl_gradient", "no_cross")


def write_shards(backend: PlantedBackend, root: Path, seeds: tuple[int, ...] = (1, 2)) -> list[Path]:
    """One report per seed under ``root/shard-<seed>``; returns their findings.json paths."""
    variants = [BackendVariant(backend, v) for v in VARIANTS]
    paths = []
    for seed in seeds:
        if seed not in _CAMPAIGNS:  # findings are data: one campaign per seed per session
            config = CampaignConfig(budget_seconds=600, seed=seed, max_rounds=2, round_examples=15,
                                    dtypes=("float64",), max_n=3, max_ops=4, mlps=False, ops=OPS)
            campaign = Campaign(variants, config)
            findings = campaign.run()
            _CAMPAIGNS[seed] = (findings, {
                "name": f"shard-{seed}", "seed": seed, "examples": campaign.stats.examples,
                "versions": {"planted": backend.version()},
                "checks_per_variant": campaign.stats.checks_per_variant()})
        findings, run_info = _CAMPAIGNS[seed]
        paths.append(write_report(root / f"shard-{seed}", findings, baseline=Baseline(), run_info=run_info)
                     .findings_json)
    return paths


_CAMPAIGNS: dict[int, tuple[list[Finding], dict[str, Any]]] = {}
