"""Hypothesis settings profiles, registered in one place.

``register_profiles()`` is called by the root ``conftest.py``, which then loads
``default_profile()``; ``pytest --hypothesis-profile=NAME`` overrides that (tox always
passes it). No test sets its own ``deadline``: JIT compilation takes longer than
Hypothesis' default 200 ms, so every profile turns the deadline off here, once.

- ``dev``: few examples, for a quick local loop (the default outside CI).
- ``ci``: derandomized, so a CI run tests the same examples every time, and no example
  database, so a fresh clone and a developer's checkout behave alike.
- ``nightly``: random and many examples, keeping the database so failures replay.
"""

from __future__ import annotations

import os

from hypothesis import settings

__all__ = ["PROFILES", "default_profile", "register_profiles"]

PROFILES = ("dev", "ci", "nightly")


def register_profiles() -> None:
    """Register the ``dev``, ``ci`` and ``nightly`` Hypothesis profiles.

    Idempotent: calling it again re-registers the same settings. It loads none of them.
    """
    settings.register_profile("dev", max_examples=10, deadline=None)
    settings.register_profile(
        "ci", max_examples=50, deadline=None, derandomize=True, database=None, print_blob=True
    )
    settings.register_profile(
        "nightly", max_examples=1000, deadline=None, derandomize=False, print_blob=True
    )


def default_profile() -> str:
    """``HYPOTHESIS_PROFILE`` if set, else ``ci`` when ``CI`` is set, else ``dev``.

    Raises:
        ValueError: ``HYPOTHESIS_PROFILE`` names no profile.
    """
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    if name not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE={name!r}, but it must be one of {PROFILES}.")
    return name
