"""Reproducers: a finding as a standalone ``repro.py`` and an ``env.txt`` for a bug report.

``repro.py`` uses only the failing framework and NumPy. Its body is exactly the code
hessdiff ran (``BackendVariant.source``); its docstring is the issue text (title,
observed, expected, why the expected value is right, the other frameworks' answers);
its tail compares the framework's Hessian with the oracle's, embedded as an exact
literal. Its exit status is what a bisect across framework versions reads:

* 0: NOT REPRODUCED, the framework now gives the expected answer;
* 1: REPRODUCED, the fault of the finding is there;
* 2: INCONCLUSIVE, the script failed some other way (the framework does not import, or it
  raised where the finding is about a wrong value, or returned another shape).

This module assembles the two files; the script's executable parts (its comparison rule,
prelude and check) are ``repro_check``'s, its docstring ``repro_issue``'s.
"""

from __future__ import annotations

import functools
import platform
import sys
from typing import Any

import numpy as np

from hessdiff.backends.api_probe import apis_of_ops
from hessdiff.backends.base import Backend
from hessdiff.backends.registry import get_backend, get_variant
from hessdiff.harness.findings import Finding
from hessdiff.harness.repro_check import check_tail, prelude
from hessdiff.harness.repro_issue import docstring_escape, issue_text

__all__ = ["EXIT_INCONCLUSIVE", "EXIT_NOT_REPRODUCED", "EXIT_REPRODUCED", "render_env", "render_repro"]

EXIT_NOT_REPRODUCED = 0
EXIT_REPRODUCED = 1
EXIT_INCONCLUSIVE = 2


def render_repro(finding: Finding) -> str:
    """A standalone ``repro.py`` for ``finding``: the failing framework plus NumPy only.

    Arguments:
        finding: the finding; its variant must be registered (``hessdiff.backends.registry``).

    Returns:
        The script's source. Running it prints the framework's Hessian and the expected
        one and exits 1 (REPRODUCED), 0 (NOT REPRODUCED) or 2 (INCONCLUSIVE).

    Raises ``KeyError`` for an unknown variant and ``hessdiff.backends.base.Unsupported`` if the
    variant cannot lower the program.
    """
    variant = get_variant(finding.variant)
    point = np.asarray(finding.point, dtype=np.float64).astype(finding.dtype)
    body = variant.source(finding.program, point)
    to_numpy = variant.backend.source_to_numpy("H")
    future, _, body = body.partition("\n") if body.startswith("from __future__") else ("", "", body)
    parts = [
        '"""' + docstring_escape(issue_text(finding, variant)) + '"""',
        *([future] if future else []),
        prelude(finding, apis_of_ops(variant.backend, finding.program.op_names)),
        body.strip("\n"),
        "",
        check_tail(finding, to_numpy),
    ]
    return "\n".join(parts)


def render_env(finding: Finding) -> str:
    """``env.txt``: Python, platform, NumPy, every framework of the finding, and the failing
    backend's own environment report. Never raises."""
    lines = ["# Environment of the hessdiff run that rendered this report", ""]
    lines += _guarded(lambda: [f"python: {sys.version.splitlines()[0]}",
                               f"implementation: {platform.python_implementation()}",
                               f"platform: {platform.platform()}",
                               f"machine: {platform.machine()}",
                               f"numpy: {np.__version__}"])
    lines += ["", "# Framework versions recorded in the finding"]
    lines += [f"{name}: {version}" for name, version in sorted(finding.versions.items())] or ["(none)"]
    lines += ["", f"# {finding.backend}'s own environment report", ""]
    lines += _guarded(lambda: _backend_report(get_backend(finding.backend)).splitlines())
    return "\n".join(str(line) for line in lines) + "\n"


@functools.lru_cache(maxsize=None)
def _backend_report(backend: Backend) -> str:
    """One report per backend object per process: slow (JAX asks the devices), constant.

    Keyed by the registered object, not its name, so a backend registered later under a
    name another one had (as tests do) gets its own report.
    """
    return backend.environment_report()


def _guarded(produce: Any) -> list[str]:
    try:
        return list(produce())
    except BaseException as exc:  # noqa: BLE001 - env.txt must render whatever happens
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return [f"(unavailable: {type(exc).__name__}: {exc})"]
