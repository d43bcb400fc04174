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
saves what it found and closes the pool), and end when their parent dies. A child that
dies (killed, out of memory) costs nothing found: the points it held are judged in the
campaign's own process and the next point starts a fresh pool (``Judgement.result``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import final

from hessdiff.harness.case import Case
from hessdiff.harness.engine import judge
from hessdiff.harness.oracle import OracleResult, OutOfDomain, evaluate
from hessdiff.harness.outcomes import Outcome
from hessdiff.harness.verdicts import CaseResult
from hessdiff.harness.worker import peak_rss_mib

__all__ = ["JudgePool", "Judgement", "default_judges", "judge_point"]

_log = logging.getLogger(__name__)

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
class Judgement:
    """One point handed to a ``JudgePool``: its verdict when ``result`` is called."""

    def __init__(self, pool: JudgePool, executor: ProcessPoolExecutor, future: Future[tuple[CaseResult, float]],
                 case: Case, outcomes: dict[str, Outcome]) -> None:
        self._pool = pool
        self._executor = executor
        self._future = future
        self._case = case
        self._outcomes = outcomes

    def result(self) -> tuple[CaseResult, float]:
        """The verdict (``judge_point``'s). If the pool broke (a child killed, out of
        memory) the point is judged here instead and the pool restarts at its next
        point: a dead judge is hessdiff's own trouble, and must neither end the campaign
        nor lose a verdict."""
        try:
            return self._future.result()
        except BrokenProcessPool as exc:
            self._pool.discard(self._executor, exc)
            return judge_point(self._case, self._outcomes)

    def cancel(self) -> bool:
        return self._future.cancel()


@final
class JudgePool:
    """``processes`` judge processes, started on first use and kept until ``close``."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"processes={processes}, but a pool needs at least one")
        self.processes = processes
        self.restarts = 0  # pools discarded because a child died
        self._executor: ProcessPoolExecutor | None = None

    def submit(self, case: Case, outcomes: dict[str, Outcome]) -> Judgement:
        """Judge one point in a child (``judge_point``)."""
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_child)
        executor = self._executor
        try:
            future = executor.submit(judge_point, case, outcomes)
        except BrokenProcessPool as exc:  # broken since the last point: a fresh pool
            self.discard(executor, exc)
            return self.submit(case, outcomes)
        return Judgement(self, executor, future, case, outcomes)

    def discard(self, executor: ProcessPoolExecutor, cause: BaseException) -> None:
        """Drop ``executor`` if it is still the pool's (a broken pool: its surviving
        children are stopped); the next ``submit`` starts a new one."""
        if executor is not self._executor:
            return  # already replaced: another of its points saw it break first
        self._executor = None
        self.restarts += 1
        _log.warning("hessdiff: a judge process died (%s); its points are judged in this process and the "
                     "judge pool restarts", cause)
        executor.shutdown(wait=False, cancel_futures=True)

    def judge_all(self, tasks: Sequence[tuple[Case, dict[str, Outcome]]]) -> list[tuple[CaseResult, float]]:
        """Every task judged, in order."""
        judgements = [self.submit(case, outcomes) for case, outcomes in tasks]
        return [j.result() for j in judgements]

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
