"""Each backend variant in a worker process that may die: the campaign survives it.

A framework can take the whole process down: a segfault or abort in native code, an
allocation that the kernel answers with SIGKILL, a computation that never returns. Run in
the campaign's own process, any of these ends the search. ``IsolatedVariant`` runs one
variant in a child process (``python -m harness.worker``) and talks to it over a pipe:

* the child dies (a signal, a nonzero exit): the case becomes a ``crash`` outcome whose
  error names the signal and carries the tail of the child's stderr (Python's
  faulthandler prints where it died);
* the child exceeds the memory limit (resident set, polled): it is killed, a ``crash``
  outcome ("out of memory");
* the call outlives the per-call timeout: the child is killed, a ``timeout`` outcome.

Memory stays bounded: frameworks cache compiled code per program without limit, so a
worker whose resident size passes ``RECYCLE_MIB`` is replaced, between two calls, by a
fresh process (one per backend, shared by its variants: ``isolate``).

Either way the next call starts a fresh child, so the campaign goes on with every
backend. A ``HarnessError`` in the child (hessdiff's own bug) is raised again in the
parent, never reported as the framework's fault.

The child writes its replies to a private copy of its stdout and points fd 1 at stderr,
so a framework printing to stdout cannot corrupt the protocol.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, BinaryIO, final

import numpy as np

from hessdiff.backends import BackendVariant
from hessdiff.harness.case import Case
from hessdiff.harness.ir import Program
from hessdiff.harness.outcomes import HarnessError, Outcome, Runner, run_variant

__all__ = ["DEFAULT_MEMORY_MIB", "DEFAULT_TIMEOUT", "IsolatedVariant", "isolate", "peak_rss_mib"]

DEFAULT_TIMEOUT = 120.0
STARTUP_TIMEOUT = 300.0
DEFAULT_MEMORY_MIB = 4096
RECYCLE_MIB = 768
_POLL = 0.05
_HEADER = struct.Struct("!Q")


def peak_rss_mib(pid: int) -> float:
    """Process ``pid``'s peak resident memory (VmHWM), 0 where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class _Gone(Exception):
    """The child is gone (killed or dead); ``status`` is "crash" or "timeout"."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@final
class IsolatedVariant(Runner):
    """A backend variant run in a worker process that is restarted whenever it dies.

    Arguments:
        variant: the variant to run (its backend must be importable by the child, i.e.
            its class lives in a module on ``sys.path``).
        timeout: seconds one Hessian call may take before the child is killed (a
            ``timeout`` outcome). The child's start (importing the framework) has its own,
            longer allowance.
        memory_mib: the child's resident memory limit; above it, it is killed and the
            call is a ``crash`` outcome (out of memory).
        worker: a worker to share with the other variants of the same backend (what
            ``isolate`` does: one process per framework, not per variant).

    Use it as a context manager, or call ``close()``: the child lives until then.
    """

    def __init__(self, variant: BackendVariant, *, timeout: float = DEFAULT_TIMEOUT,
                 memory_mib: int = DEFAULT_MEMORY_MIB, worker: _Worker | None = None) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout={timeout!r}, but it must be a positive number of seconds.")
        if memory_mib <= 0:
            raise ValueError(f"memory_mib={memory_mib!r}, but it must be a positive number of MiB.")
        self.variant = variant
        self.name = variant.name
        self.timeout = float(timeout)
        self.worker = worker if worker is not None else _Worker(variant.backend, memory_mib)
        self._pending: tuple[float, int, Any] | None = None

    @property
    def restarts(self) -> int:
        """How many times this variant's worker died or was killed."""
        return self.worker.restarts

    # --- what the engine calls --------------------------------------------------------

    def run(self, case: Case) -> Outcome:
        """What the variant did on ``case``, with death and hangs as outcomes."""
        self.submit(case)
        return self.collect()

    def run_points(self, program: Program, points: Sequence[np.ndarray], dtype: str) -> list[Outcome]:
        """One outcome per point, from one batched call (``BackendVariant.hessians``).

        If the batched call dies or hangs, every point gets that outcome: the batch is one
        call of the framework.
        """
        self.submit_points(program, points, dtype)
        return self.collect_points()

    def submit_points(self, program: Program, points: Sequence[np.ndarray], dtype: str) -> None:
        """Start ``run_points`` in the child and return at once (``collect_points`` waits).

        Variants of different backends submitted before any is collected compute at the
        same time. A worker runs one call at a time: if it is busy with another variant,
        this call is sent when collected (so a death is never blamed on the wrong call).
        """
        self._submit(("points", (self.variant, program, [np.asarray(p) for p in points], dtype)), len(points))

    def collect_points(self) -> list[Outcome]:
        """The outcomes of the last ``submit_points``."""
        return self._collect()

    def submit(self, case: Case) -> None:
        """Start ``run(case)`` in the child and return at once (``collect`` waits), as
        ``submit_points`` does."""
        self._submit(("check", (self.variant, case)), 0)

    def collect(self) -> Outcome:
        """The outcome of the last ``submit``."""
        return self._collect()

    def node_values(self, program: Program, point: np.ndarray, dtype: str) -> list[np.ndarray] | None:
        """``run_node_values`` in the child; None if it dies or hangs there (blame goes
        without the values; the next call restarts the worker)."""
        if self._pending is not None:
            raise HarnessError(f"{self.name}: node values asked for before a submitted call was collected")
        try:
            return self.worker.request(("values", (self.variant, program, np.asarray(point), dtype)), self.timeout)
        except _Gone:
            return None

    def _submit(self, message: tuple[str, Any], count: int) -> None:
        """Send ``message`` (a call of ``count`` points, 0 for one case) unless the shared
        worker is busy, in which case it is sent when collected."""
        if self._pending is not None:
            raise HarnessError(f"{self.name}: a second submit before the first was collected")
        started = time.perf_counter()
        if self.worker.busy:
            self._pending = (started, count, message)
            return
        try:
            self.worker.send(message)
            self._pending = (started, count, None)
        except _Gone as gone:
            self._pending = (started, count, gone)

    def _collect(self) -> Any:
        if self._pending is None:
            raise HarnessError(f"{self.name}: collect without submit")
        start, count, state = self._pending
        self._pending = None
        try:
            if isinstance(state, _Gone):
                raise state
            if state is not None:  # deferred: the worker was busy at submit time
                return self.worker.request(state, self.timeout)
            return self.worker.receive(self.timeout)
        except _Gone as gone:
            seconds = (time.perf_counter() - start) / max(count, 1)
            outcomes = [Outcome(self.name, gone.status, error=gone.text, seconds=seconds) for _ in range(max(count, 1))]
            return outcomes if count else outcomes[0]

    def peak_rss_mib(self) -> float:
        """The worker's peak resident memory so far (0 if it is not running)."""
        return self.worker.peak_rss_mib()

    def close(self) -> None:
        """Stop the worker (shared with other variants of the backend: it stops for all)."""
        self.worker.close()

    def __enter__(self) -> IsolatedVariant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@final
class _Worker:
    """One child process running one backend's variants, one call at a time."""

    def __init__(self, backend: Any, memory_mib: int) -> None:
        self.backend = backend
        self.memory_mib = int(memory_mib)
        # Frameworks cache compiled code per program (XLA executables, traces) without a
        # bound; between calls, a worker over this resident size is replaced by a fresh one.
        self.recycle_mib = min(RECYCLE_MIB, self.memory_mib / 2)
        self.recycled = 0
        self.restarts = 0
        self.busy = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        self._buffer = b""
        self._serial = 0  # of the last request sent: a reply to an earlier one is stale

    def request(self, message: tuple[str, Any], timeout: float) -> Any:
        self.send(message)
        return self.receive(timeout)

    def send(self, message: tuple[str, Any]) -> None:
        self._ensure()
        self._send(message)
        self.busy = True

    def receive(self, timeout: float) -> Any:
        try:
            return self._receive(timeout)
        finally:
            self.busy = False

    def close(self) -> None:
        """Stop the child (if any)."""
        proc, self._proc = self._proc, None
        self.busy = False
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        self._close_files(proc)

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    # --- the child --------------------------------------------------------------------

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        self._stderr = tempfile.TemporaryFile(prefix="hessdiff-worker-")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hessdiff.harness.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            start_new_session=True,  # a Ctrl-C in the terminal goes to the campaign, not here
        )
        self._buffer = b""
        self._exchange(("load", self.backend), STARTUP_TIMEOUT)

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None and _rss_mib(self._proc.pid) > self.recycle_mib:
            self.close()  # the framework's caches grew past the soft limit: a fresh process
            self.recycled += 1
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:
                self._reap()
            self._start()

    def _exchange(self, message: tuple[str, Any], timeout: float) -> Any:
        self._send(message)
        return self._receive(timeout)

    def _send(self, message: tuple[str, Any]) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._serial += 1
        try:
            _write(proc.stdin, (self._serial, *message))
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def _receive(self, timeout: float) -> Any:
        """The reply to the last request sent. A reply to an earlier request is skipped: a
        call abandoned when hessdiff's own error interrupted its collection (its reply was
        never read) must not be taken for the next call's (a list of outcomes where one
        was expected, or the other way round)."""
        while True:
            serial, status, payload = self._read(timeout)
            if serial == self._serial:
                break
        if status == "harness_error":
            raise HarnessError(payload)
        return payload

    def peak_rss_mib(self) -> float:
        """The child's peak resident memory so far (0 if it is not running)."""
        return 0.0 if self._proc is None else peak_rss_mib(self._proc.pid)

    def _read(self, timeout: float) -> tuple[int, str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= _HEADER.size + size:
                    body = self._buffer[_HEADER.size:_HEADER.size + size]
                    self._buffer = self._buffer[_HEADER.size + size:]
                    return pickle.loads(body)
            now = time.monotonic()
            if now >= deadline:
                self._kill()
                raise _Gone("timeout", f"did not finish within {timeout:g} s (killed; the worker restarts)")
            ready, _, _ = select.select([fd], [], [], min(_POLL, deadline - now))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise self._died()
                self._buffer += chunk
                continue
            rss = _rss_mib(proc.pid)
            if rss > self.memory_mib:
                self._kill()
                raise _Gone("crash", f"ran out of memory: the worker's resident memory reached {rss:.0f} MiB, "
                                     f"over the {self.memory_mib} MiB limit (killed; the worker restarts)")

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None:
            proc.kill()
            proc.wait()
            self._reap()

    def _died(self) -> _Gone:
        proc = self._proc
        assert proc is not None
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        tail = self._stderr_tail()
        self._reap()
        if code < 0:
            try:
                what = f"{signal.Signals(-code).name} (signal {-code})"
            except ValueError:
                what = f"signal {-code}"
            text = f"WorkerDied: the process was killed by {what}"
        else:
            text = f"WorkerDied: the process exited with status {code}"
        if tail:
            text += f"; its last words: {tail}"
        return _Gone("crash", text[:2000])

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            data = self._stderr.read()[-1500:]
        except (OSError, ValueError):
            return ""
        return " | ".join(line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip())

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            self.restarts += 1
            self._close_files(proc)

    def _close_files(self, proc: subprocess.Popen[bytes]) -> None:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def isolate(variants: Sequence[BackendVariant], *, timeout: float = DEFAULT_TIMEOUT,
            memory_mib: int = DEFAULT_MEMORY_MIB) -> list[IsolatedVariant]:
    """The variants in worker processes, one per backend (started lazily, on first use).

    One process per framework, not per variant: sixteen variants would otherwise hold
    sixteen copies of four runtimes in memory.
    """
    workers: dict[str, _Worker] = {}
    out = []
    for v in variants:
        worker = workers.setdefault(v.backend.name, _Worker(v.backend, memory_mib))
        out.append(IsolatedVariant(v, timeout=timeout, memory_mib=memory_mib, worker=worker))
    return out


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _write(stream: BinaryIO, message: Any) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the campaign dies (a kill -9 leaves no orphan)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


def _serve() -> None:
    """The child's loop: one request in, one reply out, until stdin closes."""
    import faulthandler

    faulthandler.enable()
    _die_with_parent()
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    while True:
        header = _read_exact(requests, _HEADER.size)
        if header is None:
            return
        body = _read_exact(requests, _HEADER.unpack(header)[0])
        if body is None:
            return
        serial, kind, payload = pickle.loads(body)
        try:
            if kind == "load":
                payload.require()
                reply: Any = None
            elif kind == "check":
                variant, case = payload
                reply = run_variant(variant, case)
            elif kind == "points":
                from hessdiff.harness.outcomes import run_points

                variant, program, points, dtype = payload
                reply = run_points(variant, program, points, dtype)
            elif kind == "values":
                from hessdiff.harness.outcomes import run_node_values

                variant, program, point, dtype = payload
                reply = run_node_values(variant, program, point, dtype)
            else:
                raise HarnessError(f"worker request {kind!r} is not one of load, check, points, values.")
        except HarnessError as exc:
            _write(replies, (serial, "harness_error", str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - anything else is also ours: say so
            _write(replies, (serial, "harness_error", f"worker: {type(exc).__name__}: {exc}"))
            continue
        _write(replies, (serial, "ok", reply))


if __name__ == "__main__":
    _serve()
