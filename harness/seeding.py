"""A seed decides the draws: Hypothesis without the literals of loaded modules.

Hypothesis (6.131 and later) sometimes draws a number that appears as a literal in a
loaded module of the running project: its "local constants", mined from ``sys.modules``.
A seeded campaign then draws other programs as other modules are loaded (a test file
collected beside it, a plugin, the command line against the Python API) or as a literal
is added anywhere in hessdiff. A nightly run, a bisect or a colleague re-running
``--seed 1`` must see the cases that seed decides, so the search draws without them.

The hook is private to Hypothesis; where it is missing (an older or newer release) the
draws are already free of local constants or the feature works another way, and the
context manager does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["seed_only"]


@contextlib.contextmanager
def seed_only() -> Iterator[None]:
    """Within the block, Hypothesis draws without local constants."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # a Hypothesis without local constants
        yield
        return
    saved = getattr(providers, "_get_local_constants", None)
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    if saved is None:
        yield
        return
    providers._get_local_constants = Constants
    if cache is not None:
        cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = saved
        if cache is not None:
            cache.clear()
