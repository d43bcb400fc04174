"""hessdiff: differential testing of second derivatives across autodiff frameworks.

Everything hessdiff installs lives under this one name: ``hessdiff.harness`` (program IR,
op catalogue, oracle, generation, judging, reports, command line) and ``hessdiff.backends``
(one adapter per framework). The repository keeps the two as the top-level folders
``harness/`` and ``backends/``; ``pyproject.toml`` maps them here when installed, and in a
source checkout run without installing (``PYTHONPATH=<checkout>``) this package's search
path is extended to the checkout, so ``hessdiff.harness`` is the same files either way.

The public API is the names in ``__all__``; each is imported on first use, so importing
``hessdiff`` (which every ``hessdiff.*`` import does first) stays cheap and imports no
framework.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_CHECKOUT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "harness").is_dir() and (_CHECKOUT / "harness" / "__init__.py").is_file():
    # A source checkout: harness/ and backends/ sit beside this folder, not inside it.
    __path__.append(str(_CHECKOUT))  # noqa: F821 - the package's own __path__

# Public name -> the module that defines it.
_PUBLIC = {
    "Backend": "hessdiff.backends",
    "BackendUnavailable": "hessdiff.backends",
    "BackendVariant": "hessdiff.backends",
    "CheckResult": "hessdiff.harness.api",
    "InputError": "hessdiff.harness.api",
    "Program": "hessdiff.harness.ir",
    "ProgramError": "hessdiff.harness.ir",
    "Unsupported": "hessdiff.backends",
    "Variant": "hessdiff.backends",
    "all_variants": "hessdiff.backends",
    "check": "hessdiff.harness.api",
    "hessian": "hessdiff.harness.api",
    "parse_program": "hessdiff.harness.parse",
    "register": "hessdiff.backends",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'hessdiff' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public API and nothing else: not this module's own imports, nor the subpackages
    # (``hessdiff.harness``, ``hessdiff.backends``), which are reached by name.
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})
