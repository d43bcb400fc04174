"""The campaign: generate cases with Hypothesis, judge them, shrink each new fault.

Hypothesis drives generation in rounds of a few dozen examples (each round its own seed
derived from the campaign seed, so a rerun with the same seed finds the same faults).
The test function judges every case; every verdict is counted, and a *new* fault (one
not explained by a finding already made) raises an exception of its own class, so that
Hypothesis shrinks each fault separately (``report_multiple_bugs``) down to the smallest
program that still shows it. What a maintainer gets is that minimal program.

A raw hit explained by an existing finding (same variant, kind and dtype, on a program
that contains all the finding's ops) only bumps that finding's count: the same fault
found a thousand times is one finding.

This module runs the search; a round's records of faults are ``hessdiff.harness.campaign_records``,
its counters ``hessdiff.harness.campaign_stats``, and which ops a round draws from
``hessdiff.harness.steering``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import signal
import sys
import threading
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from hessdiff.backends import BackendVariant
from hessdiff.harness.baseline import Baseline
from hessdiff.harness.batch import check_program
from hessdiff.harness.blame import blame, local_faults
from hessdiff.harness.campaign_records import (Key, NewFinding, Record, RecordKey, blamed_rule, exception_for,
                                               explaining, same_rule)
from hessdiff.harness.campaign_stats import CampaignStats
from hessdiff.harness.case import Case
from hessdiff.harness.engine import check_case
from hessdiff.harness.exact import exercised
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.judge_pool import JudgePool
from hessdiff.harness.minimize import minimize
from hessdiff.harness.outcomes import HarnessError, Runner
from hessdiff.harness.remembered import SavedCases
from hessdiff.harness.seeding import seed_only
from hessdiff.harness.steering import Steering, lowered_by
from hessdiff.harness.strategies import DEFAULT_OPS, cases, probe_case
from hessdiff.harness.verdicts import CaseResult, Verdict

__all__ = ["Campaign", "CampaignConfig"]


@dataclass(frozen=True)
class CampaignConfig:
    """What to search: which dtypes and ops, for how long, from which seed."""

    budget_seconds: float = 60.0
    seed: int = 0
    dtypes: tuple[str, ...] = ("float64", "float32")
    ops: tuple[str, ...] = DEFAULT_OPS
    max_ops: int = 6
    max_n: int = 8
    round_examples: int = 25
    mlps: bool = True
    max_rounds: int | None = None
    # Points checked per generated program: the generated one (aimed at kinks) plus
    # seeded perturbations of it, in one batched call per backend (``hessdiff.harness.batch``).
    points_per_case: int = 1
    # Processes that judge a program's points in parallel (``hessdiff.harness.judge_pool``);
    # 1: judged in this process. Verdicts do not depend on it.
    judges: int = 1
    # Ops per round: each round draws its programs from a window of this many ops, the
    # windows a seeded shuffle of ``ops`` that changes every cycle, so a short campaign
    # still reaches every op and its special values (Hypothesis, left to choose among a
    # hundred ops, keeps returning to a few), and later cycles compose other mixes.
    # None: every round draws from every op.
    focus: int | None = 27
    # Coverage steering: from the second cycle of windows on, each round also draws from
    # up to this many ops that no check has reached yet or that have a special value none
    # has reached, and aims them at those values (0: no steering).
    steer: int = 9
    # The sweep: before round 0 and after each round, every op no check has reached yet
    # is checked in probe cases (``strategies.probe_case``, ``SWEEP_OPS`` ops a case), up
    # to this many per op and campaign (0: none). Only in a time-budgeted campaign: one of
    # fixed rounds checks what its rounds draw.
    sweep: int = 2


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# An input element beyond this magnitude saturates tanh, sigmoid, erf and softmax in
# float32 (1 - tanh(9)**2 < eps): every derivative through it is ~0 and unjudgeable.
ORDINARY_MAGNITUDE = 8.0
# How many perturbations of a point keep its elements beyond ``ORDINARY_MAGNITUDE``.
HUGE_COPIES = 1


def _points(case: Case, count: int) -> list[np.ndarray]:
    """The case's point and ``count - 1`` perturbations of it, seeded by the case itself
    (so the same case always gets the same points: a rerun finds the same faults).

    A perturbation is relative (x (1 + N/10) + N/10), so an element the generator drew
    huge (488, -654: an aim at saturation or overflow) stays huge in every one of them:
    in a 4-minute campaign (seed 1, one variant per backend) 46% of the ill-conditioned
    entries came from MLPs whose tanh units all saturated at all 16 points, the program's
    ordinary region never checked. So only the point and its first ``HUGE_COPIES``
    perturbation keep the huge region (a fault there shows at one of them, and the copy
    says whether it holds 10% away); the others redraw the elements beyond
    ``ORDINARY_MAGNITUDE`` from [-2, 2] (their own seeded stream: the other elements, and
    every point of a program without such elements, are as before). Measured on a
    10-minute campaign (seed 1, every judged point of jax:jit logged) with four copies
    kept: 605 of its 607 ill-conditioned entries were at points with a huge element
    (saturated softmax, tanh, gelu), whose near copies repeat the same unjudgeable
    regime, 3.7% of all entries unjudged."""
    x = np.asarray(case.point, dtype=np.float64)
    seed = zlib.crc32(x.tobytes() + case.program.dumps().encode("utf-8") + case.dtype.encode("ascii"))
    rng = np.random.default_rng(seed)
    extra = [x * (1 + 0.1 * rng.standard_normal(x.shape)) + 0.1 * rng.standard_normal(x.shape)
             for _ in range(count - 1)]
    huge = np.abs(x) > ORDINARY_MAGNITUDE
    if huge.any():
        ordinary = np.random.default_rng(seed + 1)
        for k in range(len(extra)):
            redrawn = np.where(huge, ordinary.uniform(-2.0, 2.0, x.shape), extra[k])
            if k >= HUGE_COPIES:
                extra[k] = redrawn
    return [x, *extra]


def _size(case: Case) -> tuple[int, int, int]:
    return (case.program.size, len(case.program.nodes), case.program.n)


class Campaign:
    """One search over the given backend variants.

    Arguments:
        variants: the backend variants to compare (all must be available).
        config: what and how long to search.
        on_finding: called with every finding when it is made (and again when its
            count grows at the end of a round), so a caller can write it to disk at once.
            A fault's first hit is handed over at once as a *provisional* finding (not yet
            minimised); the minimal one made at the end of the round supersedes it. So a
            kill -9 mid-round loses at most the example in flight.
        on_progress: called after every example with the stats and findings so far.
        on_round: called with the number of rounds completed after each round's findings
            are made (and handed to ``on_finding``): a resume point.
        start_round: the first round to run (a resumed campaign continues where the
            last one stopped; round k has the same seed in both).
        known: findings already reported (by the campaign being resumed): a hit they
            explain bumps their count instead of being reported again.
        baseline: the known-issues baseline. A fault it already covers (a pattern entry
            such as ``mlx|*|nonfinite|float32|*|tanh(T) @ *`` matching the hit's blame) is
            recorded but not shrunk: shrinking re-runs every variant dozens of times, and
            spent on known faults it starves the search of new programs.
        saved: failing cases earlier runs saved (``hessdiff.harness.remembered``), checked
            before round 0; the case of every failing finding made is saved there.

    ``variants`` may be ``hessdiff.harness.outcomes.Runner`` objects (``hessdiff.harness.worker``): a variant
    run in a worker process whose death or hang is a finding, not the campaign's end.
    """

    def __init__(
        self,
        variants: Sequence[BackendVariant | Runner],
        config: CampaignConfig,
        on_finding: Callable[[Finding], None] | None = None,
        on_progress: Callable[[CampaignStats, list[Finding]], None] | None = None,
        on_round: Callable[[int], None] | None = None,
        start_round: int = 0,
        known: Sequence[Finding] = (),
        baseline: Baseline | None = None,
        coverage: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
        saved: SavedCases | None = None,
    ) -> None:
        if not variants:
            raise ValueError("a campaign needs at least one backend variant.")
        self.variants = list(variants)
        self.config = config
        self.on_finding = on_finding or (lambda f: None)
        self.on_progress = on_progress or (lambda s, f: None)
        self.stats = CampaignStats()
        self.findings: dict[str, Finding] = {}
        self._records: dict[RecordKey, Record] = {}
        self._unmasked: dict[tuple[str, str], set[tuple[str, str, str]]] = {}  # rules checked alone
        self._interrupted = False  # a Ctrl-C came (``_sticky_interrupt``)
        self._raised: set[RecordKey] = set()
        self._swept: dict[str, int] = {}  # probes the sweep made, per op and per want (Steering.unswept)
        self._versions = {v.backend.name: v.backend.version() for v in self.variants}
        self._deadline = 0.0
        self._judges: JudgePool | None = None  # while ``run`` runs, with ``config.judges`` > 1
        self.on_round = on_round or (lambda rounds: None)
        self.stats.rounds = start_round
        self.baseline = baseline or Baseline()
        self.saved = saved
        for finding in known:
            self.findings[finding.signature] = finding
        for op_name, cells in (coverage or {}).items():  # a resumed campaign's coverage so far
            for variant, cell in cells.items():
                self.stats.coverage[op_name][variant].update(cell)
        self.steering = Steering(tuple(config.ops), config.seed, config.focus, config.steer,
                                 self.stats.coverage, lowered_by(self.variants, config.ops))

    # --- the search -------------------------------------------------------------------

    def run(self) -> list[Finding]:
        """Search until the budget is spent; return the findings (minimal, deduplicated).

        A KeyboardInterrupt stops the search after turning what was found into findings,
        then propagates, so the caller can write the partial report.
        """
        self._deadline = time.monotonic() + self.config.budget_seconds
        restore = self._sticky_interrupt()
        if self.config.judges > 1 and self.config.points_per_case > 1:
            self._judges = JudgePool(self.config.judges)
        try:
            if self.saved is not None and self.stats.rounds == 0:  # first, unless resumed
                # Hypothesis draws nothing here: the rounds draw what the seed decides.
                self.stats.replayed = len(saved_cases := self.saved.take(self.config.dtypes))
                self.replay(saved_cases)
            if self.stats.rounds == 0:  # a fresh campaign sweeps first: every op, a few a case
                self._sweep()
            while time.monotonic() < self._deadline:
                if self.config.max_rounds is not None and self.stats.rounds >= self.config.max_rounds:
                    break
                self._round(self.config.seed * 100_003 + self.stats.rounds,
                            self.steering.round_ops(self.stats.rounds))
                self.stats.rounds += 1
                self.on_round(self.stats.rounds)
                self._sweep()
        except KeyboardInterrupt:
            self._collect(reduce=False)  # no shrinking after a Ctrl-C: report and go
            raise
        finally:
            restore()
            try:
                self._collect()
            finally:
                if self._judges is not None:
                    self._judges.close()
                    self._judges = None
        return self.result()

    def _sticky_interrupt(self) -> Callable[[], None]:
        """Remember a Ctrl-C even where the KeyboardInterrupt it raises is swallowed (a
        framework's C code that turns it into its own error, which a check then records
        as an outcome or an internal error and goes on): ``_check`` raises it again.
        Returns what puts the previous handler back (nothing off the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def interrupted(signum: int, frame: Any) -> None:
            self._interrupted = True
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, interrupted)
        return lambda: signal.signal(signal.SIGINT, previous)

    def replay(self, replayed: Sequence[Case]) -> list[Finding]:
        """Check ``replayed`` cases as if the search had drawn them, then make the
        findings (shrunk, blamed): a saved failing example, or a hand-made program that
        carries two faults, is judged by exactly the campaign's rules."""
        self._deadline = time.monotonic() + self.config.budget_seconds
        for case in replayed:
            try:
                self._check(case)
            except NewFinding:
                pass
            except HarnessError as exc:  # hessdiff's own failure on one case: counted, next case
                self._harness_error(exc)
            self._raised.clear()
        self._collect()
        return self.result()

    def _sweep(self) -> None:
        """Check probe cases (``probe_case``) of every op that no check has reached: first
        before round 0 (every op, ``SWEEP_OPS`` a case), then after each round.

        A round draws from a window of the ops, and one that meets a fault early stops
        drawing and shrinks: a 5-minute campaign on JAX 0.4.26 ran 3 rounds and left 45
        of 106 ops unreached, so whatever faults they hold could not be found; sweeping
        only after rounds, one on MLX 0.21 ran out of time with 10 left. The sweep
        reaches each such op by construction, in a program of its own around a point of
        the generator's magnitudes, judged like any other; an op it cannot reach (no
        variant can differentiate it here) is tried ``CampaignConfig.sweep`` times in all.
        """
        if not self.config.sweep or not self.config.steer or self.config.max_rounds is not None:
            return
        start = time.perf_counter()
        checked = 0
        due = [name for name in self.steering.unreached(self.config.ops)
               if self._swept.get(name, 0) < self.config.sweep]
        chunks = deque(tuple(due[i:i + SWEEP_OPS]) for i in range(0, len(due), SWEEP_OPS))
        while chunks and time.monotonic() < self._deadline:
            names = chunks.popleft()
            for name in names:
                self._swept[name] = self._swept.get(name, 0) + 1
            key = "+".join(names).encode("utf-8")
            seed = (self.config.seed * 1_000_003 + zlib.crc32(key)) * 8 + self._swept[names[0]]
            case = probe_case(names, seed, self.config.dtypes, self.config.max_n)
            if case is None:
                continue
            checked += 1
            self._check_probe(case)
            # An op may not have been reached: skipped where its drawn arguments did not fit
            # (pow's base <= 0), applied to constants only, or out of its domain. From a
            # shared case it gets a case of its own, where it comes first; alone, another
            # seed while it has tries left.
            for name in self.steering.unreached(names):
                if len(names) > 1:
                    self._swept[name] -= 1
                if self._swept[name] < self.config.sweep:
                    chunks.append((name,))
        if self.stats.rounds:  # after a round: the special values, patterns and kinds it left
            checked += self._sweep_wanted()
        self.stats.sweep_seconds += time.perf_counter() - start
        if checked:
            self.stats.swept += checked
            self._collect()

    def _sweep_wanted(self) -> int:
        """Check probe cases of what coverage lacks and one op's probe reaches by
        construction (``Steering.unswept``): a special value hit *exactly*, a
        traced/constant argument pattern, a constant argument kind. One want a case,
        ``SWEEP_OPS`` cases after each round and more while these cases have taken less
        than ``WANTED_SHARE`` of the campaign's time so far, each want tried
        ``CampaignConfig.sweep`` times in all; return how many were checked.

        A derivative rule's special case tests an exact value (``x == 0``), and the
        rounds reach one only where a random program's aim lands there with nothing
        around it out of range: a 5-minute campaign on all four backends hit 18-27% of
        them exactly, and a mutant wrong only at relu6's 6 survived its five near hits,
        each unjudged or excused by another op of its program. A probe case puts the op
        first, in a small program of its own, exactly on the value: several aimed ops
        in one program mask each other (torch's log10 at 1 beside log2 near its edge,
        H[0, 0] = 5e16, where log10''(1) changes it by 0.04). Likewise argument kinds: a
        5-minute campaign differentiated 30 of the 50 (no Python int beside add, sub,
        mul, div or pow), each of which takes its own path in the frameworks' rules."""
        checked = 0
        for key, name, wanted in [w for w in self.steering.unswept() if self._swept.get(w[0], 0) < self.config.sweep]:
            now = time.monotonic()
            if now >= self._deadline or checked >= SWEEP_OPS and \
                    self.stats.wanted_seconds >= WANTED_SHARE * (now - self.stats.started):
                break
            self._swept[key] = self._swept.get(key, 0) + 1
            seed = (self.config.seed * 1_000_003 + zlib.crc32(key.encode("utf-8"))) * 8 + self._swept[key]
            case = probe_case((name,), seed, self.config.dtypes, self.config.max_n, **wanted)  # type: ignore[arg-type]
            if case is None:
                continue
            checked += 1
            start = time.perf_counter()
            self._check_probe(case)
            self.stats.wanted_seconds += time.perf_counter() - start
        return checked

    def _check_probe(self, case: Case) -> None:
        """Check one probe case of a sweep: a finding is kept and the sweep goes on, and
        so does hessdiff's own failure on it, counted (one ended a 5-minute campaign on
        MLX 0.21.1 at 211 s)."""
        try:
            self._check(case)
        except NewFinding:
            pass
        except HarnessError as exc:
            self._harness_error(exc)
        self._raised.clear()

    def result(self) -> list[Finding]:
        return sorted(self.findings.values(), key=lambda f: (-_SEVERITY_ORDER[f.severity], f.signature))

    def _round(self, seed: int, ops: tuple[str, ...]) -> None:
        steer = self.config.steer
        strategy = cases(
            dtypes=self.config.dtypes, max_n=self.config.max_n, ops=ops,
            max_ops=self.config.max_ops, mlps=self.config.mlps,
            aims={name: aim for name, aim in self.steering.missing().items() if aim} if steer else None,
            patterns=self.steering.patterns_wanted() if steer else None,
            require=self.steering.unreached(ops) if steer else (),
        )

        @settings(
            max_examples=self.config.round_examples,
            deadline=None,
            database=None,
            derandomize=False,
            report_multiple_bugs=True,
            phases=(Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            print_blob=False,
        )
        @hypothesis_seed(seed)
        @given(strategy)
        def search(case: Case) -> None:
            self._check(case)

        self._raised.clear()
        try:
            with seed_only():
                search()
        except NewFinding:
            pass
        except BaseExceptionGroup as group:  # several faults shrunk in one round
            # A group matches its own condition first: keep groups out of it so the
            # split looks at the leaves (else every multi-fault round is an error).
            rest = group.subgroup(lambda e: not isinstance(e, (NewFinding, BaseExceptionGroup)))
            if rest is not None:
                self._harness_error(rest)
        except (HarnessError, Exception) as exc:  # noqa: BLE001 - hessdiff's own failure
            self._harness_error(exc)
        self._collect()

    def _harness_error(self, exc: BaseException) -> None:
        """Keep one line per distinct internal error, with where it was raised (the
        innermost frame): the campaign goes on, so there is no traceback to read after
        it, and "TypeError: '>=' not supported" alone named no line to fix.
        ``HESSDIFF_DEBUG=1`` prints the whole traceback to stderr as well."""
        if isinstance(exc, BaseExceptionGroup):  # name the leaves, not the group
            for leaf in exc.exceptions:
                self._harness_error(leaf)
            return
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
        if os.environ.get("HESSDIFF_DEBUG"):
            traceback.print_exception(exc, file=sys.stderr)
        if text not in self.stats.harness_errors:
            self.stats.harness_errors.append(text)

    def _check(self, case: Case) -> None:
        if self._interrupted:  # a Ctrl-C something swallowed (``_sticky_interrupt``)
            raise KeyboardInterrupt
        shrinking = bool(self._raised)
        grace = min(SHRINK_GRACE, SHRINK_SHARE * self.config.budget_seconds) if shrinking else 0.0
        if time.monotonic() > self._deadline + grace:
            # Out of budget: a round's remaining examples pass unchecked (a 6-second run
            # took 12-23 s checking them); a fault already raised may still shrink a while.
            return
        if shrinking and self._shrink_spent():
            return  # the smallest case so far stands; the rest of the budget searches
        start = time.perf_counter()
        try:
            self._check_case(case)
        finally:
            if shrinking:
                self.stats.shrink_seconds += time.perf_counter() - start

    def _shrink_spent(self) -> bool:
        """Whether shrinking has had its share of a time-budgeted campaign
        (``SHRINK_SHARE`` of the time so far).

        Hypothesis shrinks a fault until no smaller case fails, and while it does only the
        failing variants run and no new program is drawn: on a slow fault (a float32 one
        of one variant, every point of which goes to the oracle) one round's shrinking
        took most of a 10-minute campaign on a loaded machine, 96 examples in all. Past the share, every shrink
        step passes at once, Hypothesis ends the round with the smallest failing case it
        has, and the op-by-op reduction (``_reduce``) still runs on it. A campaign of a
        fixed number of rounds (``max_rounds``: the regression checks, the tests) shrinks
        to the end, so its result does not depend on the machine's speed."""
        if self.config.max_rounds is not None:
            return False
        return self.stats.shrink_seconds > SHRINK_SHARE * (time.monotonic() - self.stats.started)

    def _check_case(self, case: Case) -> None:
        # Once a fault is raised, Hypothesis stops generating and shrinks: every example
        # after that is a shrink step, and only the faulty variants decide it (the rest
        # are run once more on the minimal case, in ``_collect``).
        variants = self.variants if not self._raised else [
            v for v in self.variants if v.name in {key[0] for key in self._raised}]
        if self.config.points_per_case > 1:
            batch = check_program(case.program, _points(case, self.config.points_per_case), case.dtype,
                                  variants, self._judges)
            results = batch.judged
            self.stats.checked += batch.checked
            self.stats.screened += batch.screened
        else:
            results = [check_case(case, variants)]
            self.stats.checked += int(results[0].status == "judged")
        self.stats.examples += 1
        raise_key: RecordKey | None = None
        did = exercised(case.program, case.point, case.dtype)
        for result in results:
            self.stats.count(result, did, exact=result is results[0])
            # The rules this point exercised, computed once, when a blamed finding or
            # baselined record asks.
            rules_here = functools.cache(
                lambda result=result: did.rules if result is results[0]
                else exercised(case.program, result.case.point, case.dtype).rules)
            for verdict in result.verdicts:
                key = (verdict.variant, verdict.kind, case.dtype)
                self.stats.kinds[verdict.variant, verdict.kind.value] += 1
                rules = rules_here() if any(f.blame for f in self.findings.values()) else frozenset()
                known = explaining(self.findings.values(), key, result.case, rules)
                if known is not None:
                    known.count += 1
                    known.last_seen = _now()
                    rule = blamed_rule(known.blame)
                    if verdict.kind.is_failure and rule is not None:
                        self._unmask(verdict.variant, result.case, rule)
                    continue
                record_key = self._record_key(key, result, verdict, rules_here)
                record = self._remember(record_key, result.case, result, verdict)
                # A hang is not shrunk: every shrink step would wait out the timeout; nor is
                # a fault the baseline already knows (but its other nodes are checked alone).
                if record.baselined:
                    if verdict.kind.is_failure and verdict.kind is not Kind.TIMEOUT:
                        self._unmask(verdict.variant, result.case, blamed_rule(record.blame))
                    continue
                # While shrinking, a fault met for the first time is recorded (and minimised
                # with the round's findings) but not raised: Hypothesis would shrink it as
                # one more bug, and a round's shrinking would grow with every fault met.
                shrinking_another = bool(self._raised) and record_key not in self._raised
                if verdict.kind.is_failure and verdict.kind is not Kind.TIMEOUT and raise_key is None \
                        and not shrinking_another:
                    raise_key = record_key
        self.on_progress(self.stats, self.result())
        if raise_key is not None:
            self._raised.add(raise_key)
            raise exception_for(raise_key)(self._records[raise_key].verdict.explanation)

    def _unmask(self, variant_name: str, case: Case, known: tuple[str, str, str] | None) -> None:
        """Check alone each node of a hit put down to a known fault (the ``known`` rule,
        or a baseline entry's): a node that fails is a fault of its own, recorded with
        its one-op case, already minimal. Each (variant, dtype, rule) is checked once a
        campaign, and the checks take at most ``UNMASK_SHARE`` of the time so far: the
        known faults' hits are many, and the search must not become their replay."""
        elapsed = time.monotonic() - self.stats.started
        if self.stats.unmask_seconds > UNMASK_SHARE * elapsed:
            return
        variant = next(v for v in self.variants if v.name == variant_name)
        seen = self._unmasked.setdefault((variant_name, case.dtype), set())
        start = time.perf_counter()
        try:
            faults, held = local_faults(case, variant, lambda rule: rule in seen or (
                known is not None and same_rule(rule, known)))
        except HarnessError as exc:
            self._harness_error(exc)
            return
        finally:
            self.stats.unmask_seconds += time.perf_counter() - start
        seen.update(held)
        self.stats.unmask_checks += len(held) + len(faults)
        for fault in faults:
            seen.add(fault.rule)
            key = (variant_name, fault.verdict.kind, case.dtype)
            if explaining(self.findings.values(), key, fault.case, frozenset({fault.rule})) is not None:
                continue
            self.stats.unmasked += 1
            blamed = fault.blame.to_json()
            record = self._remember((*key, fault.case.program.op_names), fault.case, fault.result, fault.verdict,
                                    blamed)
            if record.case is fault.case:
                record.blame = blamed

    def _record_key(self, key: Key, result: CaseResult, verdict: Verdict,
                    rules_here: Callable[[], frozenset[tuple[str, str, str]]]) -> RecordKey:
        """The record of this round a failing hit of ``key`` belongs to: one whose first
        case's ops include the hit's (the one being shrunk first); else another hit of a
        fault the baseline knows, counted with that one; else a record of its own (a
        shrink step that meets another fault is that fault's first hit, not a smaller
        case of the fault being shrunk; it is minimised with the round's findings). A
        round used to keep one record per key, so a first hit the baseline knew absorbed
        every later one, and the shrinker slipped from one fault to another: a new fault
        of the same variant, kind and dtype was never reported."""
        case = result.case
        same = [k for k in self._records if k[:3] == key]
        own: RecordKey = (*key, case.program.op_names)
        if not same:
            return own
        admitting = [k for k in same if self._records[k].admits(case)]
        if admitting:
            return next((k for k in admitting if k in self._raised), admitting[0])
        if not key[1].is_failure:  # a convention or noise: one record a round, counting the rest
            return same[0]
        known = [k for k in same if self._records[k].baselined]
        covering = self._covering(case, result, verdict, known, rules_here) if known else None
        return own if covering is None else covering

    def _covering(self, case: Case, result: CaseResult, verdict: Verdict, known: list[RecordKey],
                  rules_here: Callable[[], frozenset[tuple[str, str, str]]]) -> RecordKey | None:
        """The record of a baselined fault this hit is another hit of: the baseline covers
        it as it stands (unshrunk), or the hit exercised (``rules_here()``) the rule a
        baselined record was blamed on (an entry naming a rule is matched by blame, which
        a hit is not given again for every program that carries the rule)."""
        hit = Record(case, result, verdict, case.program.size)
        if self.baseline.entry_for(hit.finding(self._versions, provisional=True)) is not None:
            return known[0]
        blamed = [(k, blamed_rule(self._records[k].blame)) for k in known]
        blamed = [(k, rule) for k, rule in blamed if rule is not None]
        for k, known_rule in blamed:
            if any(same_rule(rule, known_rule) for rule in rules_here()):
                return k
        return None

    def _remember(self, key: RecordKey, case: Case, result: CaseResult, verdict: Verdict,
                  blamed: dict[str, Any] | None = None) -> Record:
        """The record ``key`` counts this hit in, made at its first hit (``blamed``: its
        blame when already known, as for a node checked alone)."""
        record = self._records.get(key)
        now = _now()
        if record is None:
            record = Record(case, result, verdict, case.program.size, first_seen=now, last_seen=now, blame=blamed)
            self._records[key] = record
            early = record.finding(self._versions, provisional=True)
            early.blame = blamed
            record.baselined = self.baseline.entry_for(early) is not None
            failing = verdict.kind.is_failure and verdict.kind is not Kind.TIMEOUT
            if not record.baselined and blamed is None and failing \
                    and self.baseline.names_rules(verdict.variant, verdict.kind.value, case.dtype):
                # An entry names the rule a known fault breaks (``...|tanh(T) @ *``), never
                # the ops around it: the hit is blamed as it stands to be looked up.
                record.blame = early.blame = self._blame(key, record)
                record.baselined = self.baseline.entry_for(early) is not None
            record.provisional.add(early.signature)
            self.on_finding(early)
            return record
        record.count += 1
        record.last_seen = now
        if _size(case) < _size(record.case) and record.admits(case):
            record.case, record.result, record.verdict = case, result, verdict
        return record

    def _reduce(self, key: RecordKey, record: Record) -> None:
        """Remove every op the fault survives without (after Hypothesis' shrink)."""
        variant_name, kind = key[:2]
        variant = next(v for v in self.variants if v.name == variant_name)

        def still_fails(case: Case) -> bool:
            try:
                result = check_case(case, [variant])
            except HarnessError:
                return False
            return any(v.variant == variant_name and v.kind is kind for v in result.verdicts)

        smaller, attempts = minimize(record.case, still_fails)
        record.reduce_attempts = attempts
        if smaller.program.size == record.case.program.size:
            return
        result = check_case(smaller, self.variants)
        for verdict in result.verdicts:
            if verdict.variant == variant_name and verdict.kind is kind:
                record.case, record.result, record.verdict = smaller, result, verdict
                return

    def _complete(self, key: RecordKey, record: Record) -> None:
        """Every variant's Hessian on a case judged by a few (a shrink step), for the
        finding's comparison with the others; kept only if the fault still shows."""
        try:
            result = check_case(record.case, self.variants)
        except HarnessError:
            return
        for verdict in result.verdicts:
            if (verdict.variant, verdict.kind) == key[:2]:
                record.result, record.verdict = result, verdict
                return

    def _collect(self, reduce: bool = True) -> None:
        """Turn this round's records into findings (merging by signature), timed into
        ``stats.finish_seconds``."""
        start = time.perf_counter()
        try:
            self._collect_records(reduce)
        finally:
            self.stats.finish_seconds += time.perf_counter() - start

    def _collect_records(self, reduce: bool) -> None:
        for key, record in list(self._records.items()):
            if reduce and key[1].is_failure and key[1] is not Kind.TIMEOUT and not record.baselined:
                self._reduce(key, record)
            if reduce and len(record.result.outcomes) < len(self.variants):
                self._complete(key, record)
            finding = record.finding(self._versions)
            if reduce and key[1].is_failure and not record.baselined:
                finding.blame = self._blame(key, record)
            else:
                finding.blame = record.blame  # a baselined node found alone still names its rule
            existing = self.findings.get(finding.signature)
            if existing is not None and finding.program.size < existing.program.size:
                # One root cause in a smaller program (blamed on the same rule): it shows
                # the fault with less around it, and keeps the older one's count.
                finding.count += existing.count
                finding.first_seen = existing.first_seen or finding.first_seen
                finding.supersedes = _union(existing.supersedes, record.provisional - {finding.signature})
                self.findings[finding.signature] = finding
                self.on_finding(finding)
            elif existing is not None:
                existing.count += record.count
                existing.last_seen = record.last_seen
                existing.supersedes = _union(existing.supersedes, record.provisional - {existing.signature})
                self.on_finding(existing)
            else:
                finding.supersedes = _union((), record.provisional - {finding.signature})
                self.findings[finding.signature] = finding
                self.on_finding(finding)
                if self.saved is not None and finding.kind.is_failure:
                    self.saved.save(Case(finding.program, finding.point, finding.dtype))
                for op_name in finding.program.op_names:
                    self.stats.coverage[op_name][finding.variant]["findings"] += 1
        self._records.clear()

    def _blame(self, key: RecordKey, record: Record) -> dict[str, Any] | None:
        """The rule a new failing finding is blamed on (``hessdiff.harness.blame``), timed into the
        stats; None if blaming itself fails (it never stops the campaign)."""
        variant = next(v for v in self.variants if v.name == key[0])
        start = time.perf_counter()
        try:
            return blame(record.case, variant).to_json()
        except HarnessError as exc:
            self._harness_error(exc)
            return None
        finally:
            self.stats.blame_seconds += time.perf_counter() - start

def _union(old: tuple[str, ...], new: set[str]) -> tuple[str, ...]:
    return tuple(sorted(set(old) | new))


_SEVERITY_ORDER = {"high": 3, "medium": 2, "low": 1, "info": 0}

# The most of a campaign's time so far that checking alone the nodes of hits put down to
# known faults may take (``Campaign._unmask``).
UNMASK_SHARE = 0.1
# Ops per probe case of the sweep (``Campaign._sweep``): a check of all nine JAX and
# Equinox variants costs 3-5 s on the pinned old releases. In 5-minute campaigns, one op
# a case reached 46 of the ops left (JAX 0.4.26) and three a case left 12 unreached
# (JAX 0.7.1, 27 cases after 2 rounds).
SWEEP_OPS = 5
# The most of a campaign's time so far that probe cases of what coverage lacks may take
# beyond ``SWEEP_OPS`` a round (``Campaign._sweep_wanted``). Five a round left 36 of 83
# special values unhit exactly in a 5-minute campaign, and two argument kinds undrawn
# (12 rounds, 60 wants of about 185).
WANTED_SHARE = 0.25

# The most of a time-budgeted campaign's time so far that shrinking may take
# (``Campaign._shrink_spent``): at least half goes to drawing new programs.
SHRINK_SHARE = 0.5
# How long past the budget (at most ``SHRINK_SHARE`` of it) Hypothesis may go on shrinking
# a fault raised before it ran out (``Campaign._check``); drawing new programs stops at the
# budget itself.
SHRINK_GRACE = 30.0
