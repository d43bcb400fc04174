"""Hypothesis settings profiles, registered in one place.

``register_profiles()`` is called by the root ``conftest.py``, which then loads
``default_profile()``; ``pytest --hypothesis-profile=NAME`` overrides that (tox always
passes it). No test sets its own ``deadline``: JIT compilation takes longer than
Hypothesis' default 200 ms, so every profile turns the deadline off here, once.

- ``dev``: few examples, for a quick local loop (the default outside CI).
- ``ci``: derandomized, so a CI run tests the same examples every time, and no example
  database, so a fresh clone and a developer's checkout behave alike.
- ``nightly``: random and many examples, keeping the database so failures replay. With
  ``HESSDIFF_DATABASE`` set (a nightly leg), the database is that folder multiplexed with
  earlier nights' uploads of it, read-only (``hessdiff.harness.remembered``): a failing
  example a previous night saved is replayed first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hypothesis import settings

from hessdiff.harness.remembered import database_from_env

__all__ = ["PROFILES", "default_profile", "register_profiles"]

PROFILES = ("dev", "ci", "nightly")


def register_profiles(environ: Mapping[str, str] | None = None) -> list[str]:
    """Register the ``dev``, ``ci`` and ``nightly`` Hypothesis profiles.

    Idempotent: calling it again re-registers the same settings. It loads none of them.

    Arguments:
        environ: where ``HESSDIFF_DATABASE`` and the artifacts to read are configured
            (``os.environ`` by default).

    Returns:
        Notes on the earlier nights' artifacts read for ``nightly`` (none on a first night).

    Raises:
        hessdiff.harness.remembered.DatabaseError: the database configured cannot be made.
    """
    database, notes = database_from_env(environ)
    remembering = {} if database is None else {"database": database}
    settings.register_profile("dev", max_examples=10, deadline=None)
    settings.register_profile(
        "ci", max_examples=50, deadline=None, derandomize=True, database=None, print_blob=True
    )
    settings.register_profile(
        "nightly", max_examples=1000, deadline=None, derandomize=False, print_blob=True, **remembering
    )
    return notes


def default_profile() -> str:
    """``HYPOTHESIS_PROFILE`` if set, else ``ci`` when ``CI`` is set, else ``dev``.

    Raises:
        ValueError: ``HYPOTHESIS_PROFILE`` names no profile.
    """
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    if name not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE={name!r}, but it must be one of {PROFILES}.")
    return name
