"""Running one backend variant on a case, and what it did: an ``Outcome``.

A framework's exception is data (a crash outcome); an exception of hessdiff's own (a bug
in a lowering or a helper) raises ``HarnessError`` instead, so it is never reported as the
framework's fault. ``Runner`` is the seam for a variant run in another process
(``hessdiff.harness.worker``), which can turn a dead or hung framework into an outcome too.
"""

from __future__ import annotations

import dis
import os
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from hessdiff.backends import BackendVariant, Unsupported
from hessdiff.harness.ir import Program
from hessdiff.harness.case import Case

__all__ = ["HarnessError", "Outcome", "Runner", "collect_all", "run_points", "run_variant"]

_BACKENDS_DIR = os.path.dirname(os.path.abspath(__import__("hessdiff.backends", fromlist=["_"]).__file__))
_OWN_DIRS = tuple(
    os.path.dirname(os.path.abspath(p))
    for p in (__file__, __import__("hessdiff.backends", fromlist=["_"]).__file__)
)


R = TypeVar("R", bound="Runner")
T = TypeVar("T")


class HarnessError(RuntimeError):
    """hessdiff itself failed (not the framework): a bug to fix here, never a finding."""


@dataclass(frozen=True)
class Outcome:
    """What one variant did on one case: a Hessian, "unsupported", a crash or a timeout.

    ``status`` is one of "ok", "unsupported", "crash", "timeout" (the last only from a
    variant run in a worker process, ``hessdiff.harness.worker``, which can kill a hung call).
    """

    variant: str
    status: str
    hessian: np.ndarray | None = None
    error: str = ""
    seconds: float = 0.0



class Runner(ABC):
    """A variant run somewhere else than in this process (``hessdiff.harness.worker``).

    The engine calls ``run(case)`` instead of the variant's ``hessian``: a runner may turn
    a dead or hung framework into a crash or timeout outcome instead of dying with it.
    """

    name: str
    variant: BackendVariant
    _submitted: Case | None = None

    @property
    def backend(self) -> Any:
        return self.variant.backend

    @abstractmethod
    def run(self, case: Case) -> Outcome:
        """What the variant did on ``case``; raises ``HarnessError`` for our own bug."""

    def submit(self, case: Case) -> None:
        """Start ``run(case)`` and return at once where the runner can (a worker process
        computes while the oracle does); ``collect`` waits for it. Here: run at collect."""
        self._submitted = case

    def collect(self) -> Outcome:
        """The outcome of the last ``submit``."""
        case, self._submitted = self._submitted, None
        if case is None:
            raise HarnessError("collect() without submit()")
        return self.run(case)

    def node_values(self, program: Program, point: np.ndarray, dtype: str) -> list[np.ndarray] | None:
        """``run_node_values`` where the runner runs its variant (here: in this process)."""
        return run_node_values(self.variant, program, point, dtype)


def collect_all(runners: Sequence[R], collect: Callable[[R], T]) -> dict[str, T]:
    """``collect(runner)`` for every runner, by name, even when one raises ``HarnessError``
    (the first is raised once all are collected): a runner left with a submitted call
    refuses its next submit, and its worker would hand the unread reply to another call."""
    collected: dict[str, T] = {}
    failure: HarnessError | None = None
    for runner in runners:
        try:
            collected[runner.name] = collect(runner)
        except HarnessError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return collected


def _ours(filename: str) -> bool:
    path = os.path.abspath(filename)
    return any(path.startswith(d + os.sep) for d in _OWN_DIRS)


def _framework_class(exc: BaseException) -> bool:
    """Whether ``exc``'s class comes from a framework (``torch._C._LinAlgError``), not
    from Python itself or from hessdiff."""
    root = type(exc).__module__.split(".")[0]
    return root not in ("builtins", "hessdiff", "numpy", "__main__")


def _from_c_extension(exc: BaseException) -> bool:
    """Whether ``exc``, a ValueError or RuntimeError (or, raised in a call, one of
    ``_CALL_ONLY``) whose last Python frame is a line of ``backends`` (a lowering, or a
    Hessian helper that calls the framework), was raised by
    a framework function written in C called on that line: MLX's "[gather_axis] Cannot
    calculate JVP with respect to indices" or a shape error from ``mx.vjp``,
    ``torch.linalg.inv`` on a singular matrix. Such a call leaves no frame of its own;
    what tells it from hessdiff's own ``raise`` there is the instruction the frame
    stopped at: a call or an operator, not a raise (see ``run_variant``)."""
    if not isinstance(exc, (RuntimeError, ValueError, *_CALL_ONLY)) or isinstance(exc, HarnessError):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if not os.path.abspath(code.co_filename).startswith(_BACKENDS_DIR + os.sep):
        return False
    stopped = next((i.opname for i in dis.get_instructions(code) if i.offset == tb.tb_lasti), "")
    if isinstance(exc, _CALL_ONLY):  # only from inside a call: x[5] on a short tuple is ours
        return stopped.startswith("CALL") or stopped == "PRECALL"
    return stopped not in ("RAISE_VARARGS", "RERAISE")


# The exceptions a C++ framework's bindings turn std::out_of_range, std::overflow_error
# and std::bad_alloc into (nanobind, pybind11): MLX 0.21.1's vmap of a JVP raised
# "IndexError: vector::_M_range_check: __n (which is 22059) >= this->size() (which is 2)"
# from the call on a helper's line. Unlike a ValueError they are also what hessdiff's own
# subscripts and arithmetic raise, so they count only when the line stopped in a call.
_CALL_ONLY = (IndexError, OverflowError, MemoryError)


def run_variant(variant: BackendVariant, case: Case) -> Outcome:
    """Run one variant; a framework exception is a crash outcome, ours a HarnessError."""
    x = case.point.astype(case.dtype)
    start = time.perf_counter()
    try:
        hessian = variant.hessian(case.program, x)
    except Unsupported as exc:
        return Outcome(variant.name, "unsupported", error=str(exc), seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - every framework error is data
        frames = traceback.extract_tb(exc.__traceback__)
        # Our own frame last means our bug, unless the exception is a framework's own
        # class, or a ValueError or RuntimeError that a framework function written in C
        # raised from a backend's line (torch.linalg.inv on a singular matrix, MLX's
        # vmap: "Pad vmap is NYI"): such a call has no Python frame of its own.
        if frames and _ours(frames[-1].filename) and not _framework_class(exc) and not _from_c_extension(exc):
            raise HarnessError(
                f"{variant.name} failed inside hessdiff ({frames[-1].filename}:{frames[-1].lineno}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        text = f"{type(exc).__name__}: {exc}".strip()
        return Outcome(variant.name, "crash", error=text[:2000], seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    try:
        hessian = np.asarray(hessian, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"{variant.name} returned something that is not an array: {exc}") from exc
    return Outcome(variant.name, "ok", hessian, seconds=seconds)


def run_node_values(variant: BackendVariant, program: Program, point: np.ndarray,
                    dtype: str) -> list[np.ndarray] | None:
    """Every node's value as ``variant``'s framework computes ``program`` at ``point``
    (``BackendVariant.node_values``), or None where the framework cannot (an exception,
    an unsupported op): blame then goes without them."""
    try:
        return variant.node_values(program, np.asarray(point).astype(dtype))
    except Exception:  # noqa: BLE001 - a framework that cannot run the program has no values to give
        return None


def run_points(variant: BackendVariant, program: Program, points: Sequence[np.ndarray],
               dtype: str) -> list[Outcome]:
    """One outcome per point, from one batched call (``BackendVariant.hessians``).

    If the batched call fails in any way (the framework cannot vectorise this program),
    every point is run on its own, so the outcomes are the ones ``run_variant`` gives.
    """
    xs = np.stack([np.asarray(p, dtype=np.float64) for p in points]).astype(dtype)
    start = time.perf_counter()
    try:
        batch = np.asarray(variant.hessians(program, xs), dtype=np.float64)
    except Exception:  # noqa: BLE001 - fall back to the one-point path, which classifies
        batch = None
    seconds = (time.perf_counter() - start) / max(len(xs), 1)
    if batch is None or batch.shape[:1] != (len(xs),):
        return [run_variant(variant, Case(program, np.asarray(p, dtype=np.float64), dtype)) for p in points]
    return [Outcome(variant.name, "ok", batch[k], seconds=seconds) for k in range(len(xs))]

