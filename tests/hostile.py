"""Test-only backends that take their process down: abort, segfault, hang, eat memory.

Each is a tiny NumPy "framework" that computes the right Hessian of ``sum(x * x)``
(2 I) at a point with ``x[0] <= 0`` and misbehaves at a point with ``x[0] > 0``, so one
test can show both the failure becoming a finding and the restarted worker answering
correctly afterwards. Run in the campaign's own process, any of them would end it; that
is what ``hessdiff.harness.worker`` is for.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Mapping
from typing import Any, final

import numpy as np

from hessdiff.backends import Absent, Backend, Namespace, Variant
from hessdiff.harness.ir import Program, op
from hessdiff.harness.ops import CATALOGUE

__all__ = ["HOSTILE", "HostileBackend", "hostile_variant", "squares"]

def _honest(x: Any) -> np.ndarray:
    return 2.0 * np.eye(len(x), dtype=np.asarray(x).dtype)


def abort_hessian(f: Any) -> Any:
    """os.abort() (SIGABRT), as a failed assertion in native code does."""

    def hessian(x: Any) -> Any:
        if x[0] > 0:
            os.abort()
        return _honest(x)

    return hessian


def segfault_hessian(f: Any) -> Any:
    """Read address 0 (SIGSEGV), as a bad pointer in native code does."""

    def hessian(x: Any) -> Any:
        if x[0] > 0:
            ctypes.string_at(0)
        return _honest(x)

    return hessian


def hang_hessian(f: Any) -> Any:
    """Never return, as a deadlock or an endless loop does."""

    def hessian(x: Any) -> Any:
        if x[0] > 0:
            while True:
                time.sleep(3600)
        return _honest(x)

    return hessian


def hog_hessian(f: Any) -> Any:
    """Allocate (and touch) memory until something kills the process."""

    def hessian(x: Any) -> Any:
        if x[0] > 0:
            hoard = []
            while True:
                hoard.append(np.ones(16 << 20))  # 128 MiB, written, so it is resident
                time.sleep(0.01)
        return _honest(x)

    return hessian


HOSTILE = {"abort": abort_hessian, "segfault": segfault_hessian, "hang": hang_hessian, "oom": hog_hessian}


@final
class HostileBackend(Backend):
    """NumPy evaluation of a few ops; each variant a different way to die."""

    name = "hostile"
    distribution = "numpy"
    extra = "hostile"
    modules = ("numpy",)
    variants = {
        name: Variant(helper.__doc__ or name, lambda m, f, _n=helper.__name__: getattr(m, _n)(f),
                      (helper, _honest))
        for name, helper in HOSTILE.items()
    }
    gradient = staticmethod(lambda m, f: (lambda x: 2.0 * x))
    lowerings = {
        "const": lambda m, value: m.np.asarray(value),
        **{name: Absent("the hostile test backend lowers only mul and sum") for name in CATALOGUE},
        "mul": lambda m, a, b: a * b,
        "sum": lambda m, a: m.np.sum(a),
    }
    # What the helpers use, so that a finding's repro.py runs standalone.
    source_imports = "import ctypes\nimport os\nimport time\n\nimport numpy as np"

    def namespace(self, dtype: str) -> Namespace:
        return Namespace(np=np, dtype=getattr(np, dtype))

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return {"np": "np", "dtype": f"np.{dtype}"}

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)


def squares(n: int = 2) -> Program:
    """``sum(x * x)``: Hessian 2 I everywhere."""
    return Program(n, (op("input"), op("mul", 0, 0), op("sum", 1)))


def hostile_variant(kind: str) -> Any:
    """The ``hostile:<kind>`` variant (not registered: the worker does not need it)."""
    from hessdiff.backends import BackendVariant

    return BackendVariant(HostileBackend(), kind)
