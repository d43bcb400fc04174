"""Checking many points of one program at once: the fast path of the diff engine.

``check_case`` (``hessdiff.harness.engine``) checks one point with one call per framework and the
full oracle. Per-call overhead (tracing, dispatch, the oracle's object arrays) dwarfs
the arithmetic of a small program, so ``check_program`` instead:

1. starts every worker (``hessdiff.harness.worker``) on all the points at once, one batched
   Hessian call each (``BackendVariant.hessians``: vmap where the framework has it), so
   the frameworks compute in parallel with step 2;
2. screens the points in float64 (``hessdiff.harness.screen``) and runs the oracle on the first;
3. judges with the oracle every point that screening cannot vouch for: the first point,
   a point near a kink or outside the domain, a crash or timeout, or backends that do
   not agree within their own tolerances. The rest are counted as ``screened``;
4. confirms a failing verdict on a batched result by running that variant on that
   point alone (as the standalone repro will): a fault that exists only under vmap is
   not reported as the variant's.

Every judged point is an ordinary ``CaseResult``, so findings are made exactly as in
the one-point path.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hessdiff.backends import BackendVariant
from hessdiff.harness.case import Case
from hessdiff.harness.engine import judge
from hessdiff.harness.ir import Program
from hessdiff.harness.judge_pool import JudgePool, Judgement, judge_point
from hessdiff.harness.oracle import OracleResult, OutOfDomain, busy_seconds, evaluate
from hessdiff.harness.outcomes import Outcome, Runner, collect_all, run_points, run_variant
from hessdiff.harness.screen import NEAR, agree, screen
from hessdiff.harness.verdicts import CaseResult
from hessdiff.harness.worker import IsolatedVariant

__all__ = ["BatchResult", "check_program"]


@dataclass
class BatchResult:
    """What ``check_program`` learned, with where its time went."""

    judged: list[CaseResult] = field(default_factory=list)
    screened: int = 0
    out_of_domain: int = 0
    backend_seconds: Counter[str] = field(default_factory=Counter)
    oracle_seconds: float = 0.0  # the screen and the oracle, the judge's evaluations included
    # (with a judge pool: this process's own, and its wait for the pool's)
    pool_seconds: float = 0.0  # the judge pool's processes busy on this program's points
    wait_seconds: float = 0.0  # blocked on the frameworks (batches and confirmations)

    @property
    def checked(self) -> int:
        """(program, point) pairs checked: judged by the oracle or vouched for by screening."""
        return self.screened + sum(1 for r in self.judged if r.status == "judged")


def check_program(program: Program, points: Sequence[np.ndarray], dtype: str,
                  variants: Sequence[BackendVariant | Runner], judges: JudgePool | None = None) -> BatchResult:
    """Check ``program`` at every point with every variant; judge what needs judging
    (with ``judges``, the points after the first in its processes, in parallel)."""
    points = [np.asarray(p, dtype=np.float64) for p in points]
    result = BatchResult()
    isolated = [v for v in variants if isinstance(v, IsolatedVariant)]
    for v in isolated:
        v.submit_points(program, points, dtype)
    start = time.perf_counter()
    try:
        distance = screen(program, points, dtype)
        result.oracle_seconds += time.perf_counter() - start
        oracle_clock = busy_seconds()  # the judge's one-sided Hessians are the oracle's time too
        try:
            first = evaluate(program, points[0], dtype)
        except OutOfDomain:
            first = None
        outcomes: dict[str, list[Outcome]] = {v.name: run_points(v, program, points, dtype)
                                              for v in variants if not isinstance(v, IsolatedVariant)}
    finally:  # collected whatever happens: a worker left with a result would hand it to the next call
        start = time.perf_counter()
        collected = collect_all(isolated, lambda v: v.collect_points())
        result.wait_seconds += time.perf_counter() - start
    outcomes.update(collected)
    for v in variants:
        result.backend_seconds[v.name] += sum(o.seconds for o in outcomes[v.name])
    by_name = {v.name: v for v in variants}
    at_each = [{name: outs[j] for name, outs in outcomes.items()} for j in range(len(points))]
    wanted = [j for j in range(len(points))
              if j == 0 or not _vouched(at_each[j], program.n, dtype, distance[j])]
    result.screened = len(points) - len(wanted)
    # Points after the first go to the judge pool while this process judges the first.
    pooled = {j: judges.submit(Case(program, points[j], dtype), at_each[j])
              for j in wanted if j > 0} if judges is not None else {}
    try:
        _judge_wanted(program, points, dtype, wanted, at_each, first, pooled, by_name, result)
    finally:  # a raise (the oracle's timeout, hessdiff's own error) leaves no task behind
        for future in pooled.values():
            future.cancel()
    result.oracle_seconds += busy_seconds() - oracle_clock
    return result


def _judge_wanted(program: Program, points: Sequence[np.ndarray], dtype: str, wanted: list[int],
                  at_each: list[dict[str, Outcome]], first: OracleResult | None,
                  pooled: dict[int, Judgement],
                  by_name: dict[str, BackendVariant | Runner], result: BatchResult) -> None:
    """Judge the ``wanted`` points in order (those in ``pooled`` judged by the pool; the
    first with ``first``, its oracle, None outside the domain); confirm a failing verdict
    on a batched result by that variant alone."""
    for j in wanted:
        case = Case(program, points[j], dtype)
        at = dict(at_each[j])
        if j in pooled:
            start = time.perf_counter()
            judged, seconds = pooled[j].result()
            result.oracle_seconds += time.perf_counter() - start
            result.pool_seconds += seconds
        elif j == 0 and first is None:
            judged = CaseResult(case, None, "out_of_domain", {})
        else:
            judged, _ = judge_point(case, at, first if j == 0 else None)
        if judged.oracle is None:
            result.out_of_domain += 1
            result.judged.append(judged)
            continue
        failing = {v.variant for v in judged.verdicts if v.kind.is_failure and at[v.variant].status == "ok"}
        if failing:  # confirm a batched result one point at a time
            for name in failing:
                runner = by_name[name]
                start = time.perf_counter()
                at[name] = runner.run(case) if isinstance(runner, Runner) else run_variant(runner, case)
                result.wait_seconds += time.perf_counter() - start
                result.backend_seconds[name] += at[name].seconds
            judged = judge(case, judged.oracle, at)
        result.judged.append(judged)


def _vouched(at: dict[str, Outcome], n: int, dtype: str, distance: float) -> bool:
    if not np.isfinite(distance) and not distance == np.inf:
        return False  # nan: the float pass cannot vouch for this point
    if distance <= NEAR or any(o.status not in ("ok", "unsupported") for o in at.values()):
        return False
    ok = {name: o.hessian for name, o in at.items() if o.status == "ok"}
    return len(ok) >= 2 and agree(ok, n, dtype)
