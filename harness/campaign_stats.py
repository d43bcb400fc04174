"""A campaign's counters: what was checked, by which variant, with which outcome, and what
coverage of the op catalogue's special values and argument patterns that amounts to.

The campaign (``hessdiff.harness.campaign``) counts every judged point here; the progress
display, the report's tables and coverage steering (``hessdiff.harness.steering``) read it.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from hessdiff.harness.exact import Exercised
from hessdiff.harness.verdicts import CaseResult

__all__ = ["CampaignStats"]


@dataclass
class CampaignStats:
    """Counters for the progress display and the report."""

    examples: int = 0
    rounds: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    coverage: dict[str, dict[str, dict[str, int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: {"checks": 0, "special": 0, "findings": 0}))
    )
    harness_errors: list[str] = field(default_factory=list)
    checked: int = 0
    screened: int = 0
    # Hessian entries the oracle judged off the kinks, per variant, and how many of them
    # were ill-conditioned (an honest error bound larger than the entry: unjudged).
    entries: Counter[str] = field(default_factory=Counter)
    ill_conditioned: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    blame_seconds: float = 0.0  # blaming new failing findings' rules (harness.blame)
    shrink_seconds: float = 0.0  # checking Hypothesis' shrink steps (``Campaign._shrink_spent``)
    # Checking alone the other nodes of hits put down to a known fault (``Campaign._unmask``):
    # the time, the checks, and the faults found that way.
    unmask_seconds: float = 0.0
    unmask_checks: int = 0
    unmasked: int = 0
    replayed: int = 0  # cases earlier runs saved, checked before the first round
    swept: int = 0  # probe cases of ops no round had reached (``Campaign._sweep``)
    wanted_seconds: float = 0.0  # probe cases of what coverage lacks (``Campaign._sweep_wanted``)
    # Where the rest of the wall time went, so a campaign says what its minutes bought:
    # checking the sweeps' probe cases (``Campaign._sweep``, the wanted ones included) and
    # turning records into findings (``Campaign._collect``: the op-by-op reduction, every
    # variant on the minimal case, blame). The search rounds had the remainder.
    sweep_seconds: float = 0.0
    finish_seconds: float = 0.0

    def checks_per_variant(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (variant, status), count in self.outcomes.items():
            if status == "ok":
                out[variant] += count
        return dict(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "rounds": self.rounds,
            "seconds": round(time.monotonic() - self.started, 3),
            "oracle": dict(self.statuses),
            "outcomes": {f"{v}|{s}": c for (v, s), c in sorted(self.outcomes.items())},
            "backend_seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "verdicts": {f"{v}|{k}": c for (v, k), c in sorted(self.kinds.items())},
            "checks_per_variant": self.checks_per_variant(),
            "harness_errors": self.harness_errors,
            "checked_pairs": self.checked,
            "screened_pairs": self.screened,
            "hessian_entries_judged": sum(self.entries.values()),
            "hessian_entries_ill_conditioned": sum(self.ill_conditioned.values()),
            "unjudged_frac": round(self.unjudged_fraction(), 6),
            # where the unjudged entries come from: a variant whose backend computes at
            # another accuracy (MLX's float64) or whose programs saturate shows here
            "unjudged_frac_by_variant": {name: round(self.ill_conditioned[name] / judged, 6)
                                         for name, judged in sorted(self.entries.items()) if judged},
            "blame_seconds": round(self.blame_seconds, 3),
            "shrink_seconds": round(self.shrink_seconds, 3),
            "unmask_seconds": round(self.unmask_seconds, 3),
            "unmask_checks": self.unmask_checks,
            "unmasked": self.unmasked,
            "replayed": self.replayed,
            "swept": self.swept,
            "wanted_seconds": round(self.wanted_seconds, 3),
            "sweep_seconds": round(self.sweep_seconds, 3),
            "finish_seconds": round(self.finish_seconds, 3),
        }

    def unjudged_fraction(self) -> float:
        """The fraction of judged Hessian entries left unjudged as ill-conditioned."""
        total = sum(self.entries.values())
        return sum(self.ill_conditioned.values()) / total if total else 0.0

    def count(self, result: CaseResult, did: Exercised, exact: bool = True) -> None:
        """Coverage of one judged point: only the ops ``did`` differentiated count (an op
        on constants alone checks nothing), with the argument patterns they had, the
        special values the oracle saw within rounding distance (``special:i``) and those
        hit exactly where the op's first derivative reaches the Hessian too (``exact:i``;
        at the case's own point, the one generation aimed)."""
        self.statuses[result.status] += 1
        near = result.oracle is not None and result.oracle.kink_distance < 1e-6
        # Which special values (OpSpec.special, by index) each op's argument reached.
        hits: dict[str, set[int]] = defaultdict(set)
        for op_name, index in (result.oracle.specials if result.oracle is not None else ()):
            hits[op_name].add(index)
        exact_hits: dict[str, set[int]] = defaultdict(set)
        for op_name, index in (did.exact if exact else ()):
            hits[op_name].add(index)
        for op_name, index in (did.exact_curved if exact else ()):  # both derivative rules judged there
            exact_hits[op_name].add(index)
        patterns: dict[str, set[str]] = defaultdict(set)
        for op_name, pattern in did.patterns:
            patterns[op_name].add(pattern)
        kinds: dict[str, set[str]] = defaultdict(set)
        for op_name, kind in did.kinds:
            kinds[op_name].add(kind)
        for name, outcome in result.outcomes.items():
            self.outcomes[name, outcome.status] += 1
            self.seconds[name.split(":", 1)[0]] += outcome.seconds
            judged, ill = result.entries.get(name, (0, 0))
            self.entries[name] += judged
            self.ill_conditioned[name] += ill
            if outcome.status == "ok":
                for op_name in did.ops:
                    cell = self.coverage[op_name][name]
                    if judged and ill == judged:  # nothing held to a bound: not a check
                        cell["ill"] = cell.get("ill", 0) + 1
                        continue
                    cell["checks"] += 1
                    cell["special"] += int((near and op_name in result.oracle.kink_ops) or bool(hits[op_name]))
                    for index in hits[op_name]:
                        cell[f"special:{index}"] = cell.get(f"special:{index}", 0) + 1
                    for index in exact_hits[op_name]:
                        cell[f"exact:{index}"] = cell.get(f"exact:{index}", 0) + 1
                    for pattern in patterns[op_name]:
                        cell[f"pattern:{pattern}"] = cell.get(f"pattern:{pattern}", 0) + 1
                    for kind in kinds[op_name]:
                        cell[f"kind:{kind}"] = cell.get(f"kind:{kind}", 0) + 1
