"""The oracle on every core: a program's points judged in parallel processes.

The oracle is exact arithmetic in Python (mpmath), and the judge near a kink evaluates a
Hessian per convention: on the fixed workload of ``benchmarks/run.py`` it is two thirds
of the busy time, run point after point in one process while the other core idles
(the frameworks' workers are done with a program by the time its points are judged).
``JudgePool`` judges the points that screening cannot vouch for in a pool of processes,
one point per task: each task evaluates the oracle and judges the frameworks' outcomes
exactly as ``engine.judge`` does in-process, so a verdict never depends on where it
was made (``tests/test_judge_pool.py`` pins that).

The children start with ``spawn`` (never ``fork``: the parent may hold a framework's
threads), import only the harness, ignore SIGINT (Ctrl-C reaches the campaign, which
saves what it found and closes the pool), and end when their parent dies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import final

from hessdiff.harness.case import Case
from hessdiff.harness.engine import judge
from hessdiff.harness.oracle import OracleResult, OutOfDomain, evaluate
from hessdiff.harness.outcomes import Outcome
from hessdiff.harness.verdicts import CaseResult
from hessdiff.harness.worker import peak_rss_mib

__all__ = ["JudgePool", "default_judges", "judge_point"]

_PARENT_POLL = 0.5  # seconds between a judge process's checks that its parent lives


def default_judges() -> int:
    """One judge process per core (the frameworks' workers wait while points are judged)."""
    return max(1, min(os.cpu_count() or 1, 4))


def judge_point(case: Case, outcomes: dict[str, Outcome],
                oracle: OracleResult | None = None) -> tuple[CaseResult, float]:
    """Evaluate the oracle at ``case`` (unless given) and judge ``outcomes`` against it;
    with the seconds it took. Outside the program's domain: an ``out_of_domain`` result."""
    start = time.perf_counter()
    if oracle is None:
        try:
            oracle = evaluate(case.program, case.point, case.dtype)
        except OutOfDomain:
            return CaseResult(case, None, "out_of_domain", {}), time.perf_counter() - start
    return judge(case, oracle, outcomes), time.perf_counter() - start


def _start_child() -> None:
    """A judge process ignores Ctrl-C (the campaign handles it and closes the pool) and
    ends when its parent does: a pool's child holds both ends of its task queue, so a
    parent killed with SIGKILL would leave it waiting forever, holding the parent's
    stdout and stderr open (``tests/test_judge_pool.py``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL)
        os._exit(1)

    threading.Thread(target=watch, name="hessdiff-parent-watch", daemon=True).start()


@final
class JudgePool:
    """``processes`` judge processes, started on first use and kept until ``close``."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"processes={processes}, but a pool needs at least one")
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None

    def submit(self, case: Case, outcomes: dict[str, Outcome]) -> Future[tuple[CaseResult, float]]:
        """Judge one point in a child (``judge_point``)."""
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_child)
        return self._executor.submit(judge_point, case, outcomes)

    def judge_all(self, tasks: Sequence[tuple[Case, dict[str, Outcome]]]) -> list[tuple[CaseResult, float]]:
        """Every task judged, in order."""
        futures = [self.submit(case, outcomes) for case, outcomes in tasks]
        return [f.result() for f in futures]

    def peak_rss_mib(self) -> float:
        """The children's peak resident memory so far, summed (0 before the first task)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sum(peak_rss_mib(pid) for pid in list(processes))

    def close(self) -> None:
        """Stop the children (pending tasks are cancelled)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> JudgePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
