"""What one evaluation under way shares across the oracle's modules: the nodes whose
formula underflowed, the largest local derivative, the memo of rule values, and the
process's time in the oracle.

Read and set as attributes of this module (``state.UNDERFLOWS = ...``), never imported by
name: an evaluation rebinds them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["BUSY", "FLUSHED_PRODUCTS", "LOCAL_PEAK", "MEMO", "UNDERFLOWS", "busy_seconds", "clocked", "evaluation", "memo"]

# The nodes whose whole-array formula underflowed an intermediate, in the evaluation under way.
UNDERFLOWS: list[int] | None = None
# The largest local derivative of an elementwise rule in the evaluation under way: the
# frameworks form it before chaining (PyTorch's i0 backward is grad * i1(a)), so one past
# the dtype's range is inf there even where the chained entry (divided by a mean's n) is
# not (torch.func's H of mean(i0(x)) in float32 at x5 = 89.5: NaN at H[5, 0]).
LOCAL_PEAK: list[float] = [0.0]
# Whether a product of arguments in an elementwise rule's derivative formula lies below
# the dtype's smallest normal, in the evaluation under way (``rules._flushed_products``):
# a framework that flushes subnormals loses it.
FLUSHED_PRODUCTS: list[bool] = [False]


@contextlib.contextmanager
def evaluation() -> Iterator[None]:
    """A fresh ``UNDERFLOWS``, ``LOCAL_PEAK`` and ``FLUSHED_PRODUCTS`` for one evaluation,
    the outer ones back after it: an evaluation may run another inside (the forward-mode
    gradients of a mixed-mode convention), whose underflows and peaks are not the outer
    one's."""
    global UNDERFLOWS
    outer, UNDERFLOWS = UNDERFLOWS, []
    outer_peak, LOCAL_PEAK[0] = LOCAL_PEAK[0], 0.0
    outer_flushed, FLUSHED_PRODUCTS[0] = FLUSHED_PRODUCTS[0], False
    try:
        yield
    finally:
        UNDERFLOWS = outer
        LOCAL_PEAK[0] = outer_peak
        FLUSHED_PRODUCTS[0] = outer_flushed


# The values of derivative rules at points (``rules._stable``), shared by the evaluations
# of one point (one per framework with rule scales of its own, one per kink convention):
# they differ only in error scales.
MEMO: dict[tuple[int, tuple[Any, ...]], Any] | None = None


@contextlib.contextmanager
def memo(shared: dict[tuple[int, tuple[Any, ...]], Any] | None = None) -> Iterator[None]:
    """Share ``rules._stable``'s values among the evaluations inside (the outermost sets it
    up; ``shared`` carries them on to a later one)."""
    global MEMO
    outer = MEMO is None
    if outer:
        MEMO = {} if shared is None else shared
    try:
        yield
    finally:
        if outer:
            MEMO = None


# Seconds spent in the oracle so far in this process, counted once however calls nest
# (the judge's one-sided Hessians and per-framework error scales included): a benchmark
# tells the oracle's time from the harness's by it.
BUSY = [0.0, 0]


def busy_seconds() -> float:
    """Seconds this process has spent evaluating exact Hessians (``evaluate``,
    ``conventions`` and the per-framework error scales) so far."""
    return BUSY[0]


@contextlib.contextmanager
def clocked() -> Iterator[None]:
    """Count the time inside towards ``busy_seconds``, once however calls nest."""
    BUSY[1] += 1
    start = time.perf_counter()
    try:
        yield
    finally:
        BUSY[1] -= 1
        if not BUSY[1]:
            BUSY[0] += time.perf_counter() - start
