"""How a framework may resolve a kink: a side, a tie-breaking choice, or an average
(``Resolution``), and the combinations of them the judge evaluates.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ['MAX_MIXED', 'MAX_MIXED_MODES', 'MAX_RESOLUTIONS', 'MAX_SPLIT_TIE', 'Choice', 'Resolution',
           'all_resolved', 'mixed_modes', 'resolutions']


# One kink's resolution: a side (-1/+1) or a tie-breaking rotation, or a tuple of those
# to average.
Choice = int | tuple[int, ...]


@dataclass(frozen=True)
class Resolution:
    """How to evaluate at a kink instead of marking the entries undefined: what a
    framework computes there with one convention. ``choices[(op, k)]`` picks a side of
    every kink of op's ``k``-th switch (-1 or +1) or a way to break a selection's ties
    (k = -1: an index into its rotations); ``mid`` instead averages the one-sided local
    derivatives (abs'(0) = 0, a tie's gradient split equally: the frameworks' documented
    tie rules). A framework applies one rule per op, so a choice at a kink is per op
    (key ``(op, k)``); near a kink the framework's rounding puts each element on a side
    of its own, so a choice there is per element (key ``(op, k, node, element)``).

    ``columns``: where not None, the choices of a framework's *forward-mode* rules, when
    they differ from its reverse-mode rules' (``choices``). A Hessian composed of both
    modes (jacfwd of jacrev) differentiates the reverse gradient g_R in forward mode, so
    its rows follow ``choices`` and its columns ``columns``: H[i, j] = d(g_R)_i / dx_j,
    with dx_j carried through the forward rules (MLX's min at a tie: the JVP picks the
    first tied entry, the VJP splits, so H of min(x)**2 is 2 w_R w_F^T, not symmetric).
    """

    choices: tuple[tuple[tuple[Any, ...], Choice], ...] = ()
    mid: bool = False
    columns: tuple[tuple[tuple[Any, ...], Choice], ...] | None = None

    def forward(self) -> Resolution:
        """The convention the forward-mode rules apply (``columns``), as a resolution of its own."""
        return Resolution(self.choices if self.columns is None else self.columns, self.mid)

    def choice(self, key: tuple[Any, ...], default: int) -> Choice:
        """The side (or tie-breaking rotation) chosen at ``key``, or the tuple of those
        whose results are averaged."""
        return dict(self.choices).get(key, default)



# combination of sides when the kinked switches are few (``MAX_RESOLUTIONS``), every
# combination of sides and averages when fewer still (``MAX_MIXED``).
MAX_RESOLUTIONS = 8
MAX_MIXED = 16
# At most this many conventions whose forward and reverse rules differ (``mixed_modes``):
# each costs an evaluation, and a wrong value is only called wrong after all of them.
MAX_MIXED_MODES = 32
# A tie of up to this many entries also offers the average over each smaller group of
# them: rounding (or a compiler that folds constants in another order) can leave only
# some of the exactly tied entries equal, and the framework splits among those.
MAX_SPLIT_TIE = 4


def _options(key: tuple[Any, ...], count: int) -> list[Choice]:
    """What one framework may do at one kink: either side of a switch, or their average
    (abs'(0) = 0); one tied entry, or the average over all tied entries, or over a
    smaller group of them."""
    if key[1] >= 0:
        return [-1, 1, (-1, 1)]
    every = tuple(range(count))
    groups = [g for size in range(2, count) for g in itertools.combinations(every, size)] \
        if count <= MAX_SPLIT_TIE else []
    return [*every, every, *groups]


def resolutions(sides: Sequence[tuple[tuple[Any, ...], int]]) -> list[Resolution]:
    """The conventions a framework may apply at these kinks, each op by a rule of its own
    (``_options``: a side or an average, per kink; JAX at a tie of max under relu(.)**2
    averages the tie and takes relu's side): every combination when they are few
    (``MAX_MIXED``); else every combination of sides (up to ``MAX_RESOLUTIONS``), all
    kinks averaged, and every option of each kink against each uniform background (all
    first sides, all second sides, all averaged), which holds each entry's range where
    an entry depends on one kink."""
    keys = [key for key, _ in sides]
    options = [_options(key, c) for key, c in sides]
    if math.prod(len(o) for o in options) <= MAX_MIXED:
        combos = list(itertools.product(*options))
    else:
        combos = list(itertools.islice(itertools.product(*[o[:c] for o, (_, c) in zip(options, sides)]),
                                       MAX_RESOLUTIONS))
        backgrounds = [tuple(o[min(b, len(o) - 1)] for o in options) for b in (0, 1)]
        backgrounds.append(tuple(o[c] for o, (_, c) in zip(options, sides)))  # every kink averaged
        for background in backgrounds:
            combos.append(background)
            for k, opts in enumerate(options):
                combos += [background[:k] + (o,) + background[k + 1:] for o in opts]
    return [Resolution(tuple(zip(keys, combo))) for combo in dict.fromkeys(combos)]


def mixed_modes(sides: Sequence[tuple[tuple[Any, ...], int]],
                conventions: Sequence[Resolution]) -> list[Resolution]:
    """The conventions of a framework whose forward-mode and reverse-mode rules resolve
    the kinks differently (``Resolution.columns``), from pairs of ``conventions``: at
    every kink either the two modes agree, or one of them averages (splits a tie
    equally, abs'(0) = 0) and the other picks a side or a tied entry, as a framework
    whose JVP rule selects one entry and whose VJP rule splits (MLX's max and min) does.
    Two modes picking two different single entries is no documented rule and would
    excuse any off-diagonal value, so it is not offered. Both orders: rows may follow
    either mode's rule (jacfwd(jacrev) or jacrev(jacfwd))."""
    averages = {key: _options(key, count)[count if key[1] < 0 else 2] for key, count in sides}
    out: list[Resolution] = []
    for rows, cols in itertools.permutations(conventions, 2):
        if len(out) == MAX_MIXED_MODES:
            break
        if rows.mid or cols.mid:
            continue
        r, c = dict(rows.choices), dict(cols.choices)
        if all(r.get(k) == c.get(k) or averages.get(k) in (r.get(k), c.get(k)) for k in r.keys() | c.keys()):
            out.append(Resolution(rows.choices, columns=cols.choices))
    return out


def all_resolved(sides: Sequence[tuple[tuple[Any, ...], int]]) -> bool:
    """Whether ``resolutions`` covers every combination of these sides."""
    return math.prod(c for _, c in sides) <= MAX_RESOLUTIONS

