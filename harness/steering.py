"""Coverage steering: which ops each round of a campaign draws from, and what it aims at.

A campaign left to Hypothesis keeps returning to a few of a hundred ops; steering gives
each round a window of the op catalogue (a seeded shuffle, so a short campaign still
reaches every op) and, from the second cycle of windows on, adds the ops whose special
values or argument patterns no check has reached yet (``missing``, ``patterns_wanted``),
which the generator is then aimed at. Everything here is a function of the seed, the
round and the coverage so far, so a resumed campaign steers as the uninterrupted one.
"""

from __future__ import annotations

import itertools

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hessdiff.backends import Absent, BackendVariant
from hessdiff.harness.exact import argument_kinds, argument_patterns, attainable
from hessdiff.harness.ops import CATALOGUE
from hessdiff.harness.outcomes import Runner

__all__ = ["PATTERN_SHARE", "Steering", "lowered_by"]

# A traced/constant argument pattern below this fraction of its fair share of an op's
# checks is steered for (``Steering.patterns_wanted``).
PATTERN_SHARE = 0.5


def lowered_by(variants: Sequence[BackendVariant | Runner], ops: Sequence[str]) -> dict[str, list[str]]:
    """Per op, the variants whose backend lowers it: steering chases an op until each of
    them has checked it, and never one every backend lacks."""
    return {
        name: [v.name for v in variants
               if not isinstance(_installed(v.backend).get(name), Absent)]
        for name in ops
    }


def _installed(backend: object) -> Mapping[str, object]:
    """The backend's lowering table as its installed release runs it (a stand-in backend
    of a test may have only a declared table, or none)."""
    installed = getattr(backend, "installed_lowerings", None)
    return installed() if callable(installed) else getattr(backend, "lowerings", {})


@dataclass
class Steering:
    """The steering of one campaign.

    Arguments:
        ops: the campaign's ops (``CampaignConfig.ops``).
        seed: the campaign's seed: each cycle of windows is a shuffle seeded by it.
        focus: ops per window (None: every round draws from every op).
        steer: at most this many missing ops added to a round (0: no steering).
        coverage: op -> variant -> counts, the campaign's own (``CampaignStats.coverage``),
            read as it grows.
        lowering: per op, the variants that lower it (``lowered_by``).
    """

    ops: tuple[str, ...]
    seed: int
    focus: int | None
    steer: int
    coverage: Mapping[str, Mapping[str, Mapping[str, int]]]
    lowering: Mapping[str, list[str]]

    def round_ops(self, round_index: int) -> tuple[str, ...]:
        """The ops round ``round_index`` draws from: its window, plus (after the first
        cycle) ops coverage steering wants. A function of the seed, the round and the
        coverage so far, which a resumed campaign restores, so a resumed campaign's round
        k is the uninterrupted campaign's round k."""
        ops, size = tuple(self.ops), self.focus
        if not size or len(ops) <= size:
            return ops
        parts = math.ceil(len(ops) / size)
        cycle, part = divmod(round_index, parts)
        order = list(ops)
        random.Random(self.seed * 1_000_003 + cycle).shuffle(order)
        width = math.ceil(len(ops) / parts)
        window = tuple(order[part * width:(part + 1) * width])
        starved = [name for name in self.missing() if name not in window]
        if cycle == 0 or not starved or not self.steer:
            return window
        # The least-checked first: an op no check has reached at all before one a single
        # variant lacks (a variant that computes nothing on this release, an old Equinox
        # without filter_hessian, makes every op "missing"), before special values. Half
        # the slots go to the head of that order, the rest rotate through the others, so
        # an op no variant can differentiate here does not hold a slot for ever.
        starved.sort(key=self._checks)
        head = math.ceil(self.steer / 2)
        rest = starved[head:]
        start = (round_index * self.steer) % len(rest) if rest else 0
        return window + tuple(starved[:head] + (rest[start:] + rest[:start])[:self.steer - head])

    def _checks(self, name: str) -> int:
        """How many checks ``name`` has had, over every variant."""
        cells = self.coverage[name].values() if name in self.coverage else ()
        return sum(int(c.get("checks", 0)) for c in cells)

    def unreached(self, ops: Sequence[str]) -> tuple[str, ...]:
        """The ops of ``ops`` some variant lowers and no check has reached yet, in any
        variant: a round makes programs around them first (``programs_at``'s
        ``require``), so a round that meets a fault early, and ends in shrinking after a
        handful of programs, has still spent them on what was never checked."""
        return tuple(name for name in ops if self.lowering.get(name) and not self._checks(name))

    def missing(self) -> dict[str, tuple[int, ...]]:
        """Per op some variant lowers that coverage lacks: the indices of its special
        values no check has hit *exactly* with a traced argument (a derivative rule's
        special case tests an exact value; a near hit is not enough; ``attainable``: at
        a domain edge, none reached within rounding distance), or empty when only
        the op itself, or one of its argument patterns, is unreached."""
        out: dict[str, tuple[int, ...]] = {}
        for name in self.ops:
            if not self.lowering[name]:
                continue
            per_variant = self.coverage[name] if name in self.coverage else {}
            cells = list(per_variant.values())
            # An edge of the op's domain (log at 0) is never hit exactly: reached within
            # rounding distance (from inside) is all it can have.
            special = tuple(
                i for i in range(len(CATALOGUE[name].special_names))
                if not any(int(c.get(f"{'exact' if attainable(name, i) else 'special'}:{i}", 0)) for c in cells)
            )
            unreached = any(not int(per_variant.get(v, {}).get("checks", 0)) for v in self.lowering[name])
            if special or unreached or self._missing_patterns(name):
                out[name] = special
        return out

    def _missing_patterns(self, name: str) -> tuple[str, ...]:
        """The traced/constant argument patterns of elementwise op ``name`` that no check
        has differentiated (``hessdiff.harness.exact.pattern_of``)."""
        cells = list(self.coverage[name].values()) if name in self.coverage else []
        return tuple(p for p in argument_patterns(name) if not any(int(c.get(f"pattern:{p}", 0)) for c in cells))

    def patterns_wanted(self) -> dict[str, tuple[str, ...]]:
        """Per elementwise op, the argument patterns steering asks the generator for: the
        ones no check has differentiated, else the ones below ``PATTERN_SHARE`` of their
        fair share of the op's checks. One check of a pattern is not enough: a rule wrong
        only for a constant argument shows only where that argument's path is curved, so
        a pattern the generator rarely draws (a constant divisor) stays rare all campaign
        long unless steering keeps it at a share of the op's checks."""
        out = {}
        for name in self.ops:
            if self.lowering[name]:
                wanted = self._missing_patterns(name) or self._scarce_patterns(name)
                if wanted:
                    out[name] = wanted
        return out

    def unswept(self) -> list[tuple[str, str, dict[str, object]]]:
        """What coverage lacks that a probe case of one op can reach by construction, as
        (key, op, ``probe_case`` arguments): each attainable special value no check hit
        exactly, then each traced/constant argument pattern and each constant argument
        kind no check differentiated (``Campaign._sweep_wanted``)."""
        specials: list[tuple[str, str, dict[str, object]]] = []
        for name, indices in self.missing().items():
            specials += [(f"{name}@{index}", name, {"aims": (index,)}) for index in indices if attainable(name, index)]
        patterns: list[tuple[str, str, dict[str, object]]] = []
        kinds: list[tuple[str, str, dict[str, object]]] = []
        for name in self.ops:
            if not self.lowering[name]:
                continue
            cells = list(self.coverage[name].values()) if name in self.coverage else []
            patterns += [(f"{name}/{pattern}", name, {"pattern": pattern}) for pattern in self._missing_patterns(name)]
            kinds += [(f"{name}:{kind}", name, {"kind": kind}) for kind in argument_kinds(name)
                      if not any(int(c.get(f"kind:{kind}", 0)) for c in cells)]
        # Interleaved, so that each round's few probes serve every axis: in that order
        # (specials, then patterns, then kinds) a 5-minute campaign (seed 1) of 17 rounds
        # never got to 11 of 55 argument kinds (pow's and div's Python numbers, ldexp's
        # integer arrays) once arctan2's cut and the new kinds lengthened the list.
        lists = (specials, patterns, kinds)
        return [want for group in itertools.zip_longest(*lists) for want in group if want is not None]

    def _scarce_patterns(self, name: str) -> tuple[str, ...]:
        patterns = argument_patterns(name)
        cells = list(self.coverage[name].values()) if name in self.coverage else []
        counts = {p: sum(int(c.get(f"pattern:{p}", 0)) for c in cells) for p in patterns}
        total = sum(counts.values())
        return tuple(p for p in patterns if counts[p] < PATTERN_SHARE * total / len(patterns))
