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
"""

from __future__ import annotations

import datetime as _dt
import math
import random
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from hessdiff.backends import Absent, BackendVariant
from hessdiff.harness.baseline import Baseline
from hessdiff.harness.batch import check_program
from hessdiff.harness.blame import blame, local_faults
from hessdiff.harness.engine import check_case
from hessdiff.harness.exact import Exercised, argument_patterns, exercised
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.minimize import minimize
from hessdiff.harness.ops import CATALOGUE
from hessdiff.harness.outcomes import HarnessError, Runner
from hessdiff.harness.strategies import DEFAULT_OPS, Case, cases
from hessdiff.harness.verdicts import CaseResult, Verdict

__all__ = ["Campaign", "CampaignConfig", "CampaignStats"]

Key = tuple[str, Kind, str]
# A round's record of one fault: its key and the ops of its first failing case.
RecordKey = tuple[str, Kind, str, frozenset[str]]

# A traced/constant argument pattern below this fraction of its fair share of an op's
# checks is steered for (``Campaign.patterns_wanted``).
PATTERN_SHARE = 0.5


class NewFinding(Exception):
    """Raised inside the Hypothesis test for a fault not yet explained; one class per key."""


_EXCEPTION_CLASSES: dict[RecordKey, type[NewFinding]] = {}


def _exception_for(key: RecordKey) -> type[NewFinding]:
    if key not in _EXCEPTION_CLASSES:
        variant, kind, dtype, ops = key
        text = f"{variant}_{kind.value}_{dtype}_{'_'.join(sorted(ops))}"
        name = "Finding_" + "".join(ch if ch.isalnum() else "_" for ch in text)
        _EXCEPTION_CLASSES[key] = type(name, (NewFinding,), {})
    return _EXCEPTION_CLASSES[key]


def _same_rule(rule: tuple[str, str, str], known: tuple[str, str, str]) -> bool:
    """Whether a node's rule (op, argument pattern, region) is a known blamed rule: the
    same op and pattern, in its region (a blame without a region, from before regions,
    takes every region)."""
    return rule[:2] == known[:2] and (not known[2] or rule[2] == known[2])


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


@dataclass
class CampaignStats:
    """Counters for the progress display and the report."""

    examples: int = 0
    rounds: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    coverage: dict[str, dict[str, dict[str, int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: {"checks": 0, "special": 0, "findings": 0}))
    )
    harness_errors: list[str] = field(default_factory=list)
    checked: int = 0
    screened: int = 0
    # Hessian entries the oracle judged off the kinks, per variant, and how many of them
    # were ill-conditioned (an honest error bound larger than the entry: unjudged).
    entries: Counter[str] = field(default_factory=Counter)
    ill_conditioned: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    blame_seconds: float = 0.0  # blaming new failing findings' rules (harness.blame)
    # Checking alone the other nodes of hits put down to a known fault (``Campaign._unmask``):
    # the time, the checks, and the faults found that way.
    unmask_seconds: float = 0.0
    unmask_checks: int = 0
    unmasked: int = 0

    def checks_per_variant(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (variant, status), count in self.outcomes.items():
            if status == "ok":
                out[variant] += count
        return dict(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "rounds": self.rounds,
            "seconds": round(time.monotonic() - self.started, 3),
            "oracle": dict(self.statuses),
            "outcomes": {f"{v}|{s}": c for (v, s), c in sorted(self.outcomes.items())},
            "backend_seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "verdicts": {f"{v}|{k}": c for (v, k), c in sorted(self.kinds.items())},
            "checks_per_variant": self.checks_per_variant(),
            "harness_errors": self.harness_errors,
            "checked_pairs": self.checked,
            "screened_pairs": self.screened,
            "hessian_entries_judged": sum(self.entries.values()),
            "hessian_entries_ill_conditioned": sum(self.ill_conditioned.values()),
            "unjudged_frac": round(self.unjudged_fraction(), 6),
            "blame_seconds": round(self.blame_seconds, 3),
            "unmask_seconds": round(self.unmask_seconds, 3),
            "unmask_checks": self.unmask_checks,
            "unmasked": self.unmasked,
        }

    def unjudged_fraction(self) -> float:
        """The fraction of judged Hessian entries left unjudged as ill-conditioned."""
        total = sum(self.entries.values())
        return sum(self.ill_conditioned.values()) / total if total else 0.0


@dataclass
class _Record:
    """The smallest case seen so far for one key, with how big the first one was."""

    case: Case
    result: CaseResult
    verdict: Verdict
    first_size: int
    count: int = 1
    first_seen: str = ""
    last_seen: str = ""
    reduce_attempts: int = 0
    provisional: set[str] = field(default_factory=set)  # signatures logged before minimising
    baselined: bool = False  # the baseline covers its first hit: not shrunk
    first_ops: frozenset[str] = frozenset()  # the first case's: a shrink may drop them, never add one
    blame: dict[str, Any] | None = None  # known when it was made (a node checked alone: ``Campaign._unmask``)

    def __post_init__(self) -> None:
        self.first_ops = self.first_ops or self.case.program.op_names

    def admits(self, case: Case) -> bool:
        """Whether ``case`` failing the same way is the same fault, shrunk: it brings in no
        op the first case lacked. Without this, shrinking slips from the fault it started
        on to another of the same variant, kind and dtype that simpler programs show (a
        mutated arctan2 rule shrank to MLX's own fault at a tie of min, at x = 0), and one
        of the two is never reported."""
        return case.program.op_names <= self.first_ops


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _points(case: Case, count: int) -> list[np.ndarray]:
    """The case's point and ``count - 1`` perturbations of it, seeded by the case itself
    (so the same case always gets the same points: a rerun finds the same faults)."""
    x = np.asarray(case.point, dtype=np.float64)
    seed = zlib.crc32(x.tobytes() + case.program.dumps().encode("utf-8") + case.dtype.encode("ascii"))
    rng = np.random.default_rng(seed)
    extra = [x * (1 + 0.1 * rng.standard_normal(x.shape)) + 0.1 * rng.standard_normal(x.shape)
             for _ in range(count - 1)]
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
            such as ``mlx:*|nonfinite|float32|*tanh*`` matching the hit's program) is
            recorded but not shrunk: shrinking re-runs every variant dozens of times, and
            spent on known faults it starves the search of new programs.

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
    ) -> None:
        if not variants:
            raise ValueError("a campaign needs at least one backend variant.")
        self.variants = list(variants)
        self.config = config
        self.on_finding = on_finding or (lambda f: None)
        self.on_progress = on_progress or (lambda s, f: None)
        self.stats = CampaignStats()
        self.findings: dict[str, Finding] = {}
        self._records: dict[RecordKey, _Record] = {}
        self._unmasked: dict[tuple[str, str], set[tuple[str, str, str]]] = {}  # rules checked alone
        self._raised: set[RecordKey] = set()
        self._versions = {v.backend.name: v.backend.version() for v in self.variants}
        self._deadline = 0.0
        self.on_round = on_round or (lambda rounds: None)
        self.stats.rounds = start_round
        self.baseline = baseline or Baseline()
        for finding in known:
            self.findings[finding.signature] = finding
        for op_name, cells in (coverage or {}).items():  # a resumed campaign's coverage so far
            for variant, cell in cells.items():
                self.stats.coverage[op_name][variant].update(cell)
        # Per op, the variants whose backend lowers it: steering chases an op until each of
        # them has checked it, and never one every backend lacks.
        self._lowering = {
            name: [v.name for v in self.variants
                   if not isinstance(getattr(v.backend, "lowerings", {}).get(name), Absent)]
            for name in config.ops
        }

    # --- the search -------------------------------------------------------------------

    def run(self) -> list[Finding]:
        """Search until the budget is spent; return the findings (minimal, deduplicated).

        A KeyboardInterrupt stops the search after turning what was found into findings,
        then propagates, so the caller can write the partial report.
        """
        self._deadline = time.monotonic() + self.config.budget_seconds
        try:
            while time.monotonic() < self._deadline:
                if self.config.max_rounds is not None and self.stats.rounds >= self.config.max_rounds:
                    break
                self._round(self.config.seed * 100_003 + self.stats.rounds, self.round_ops(self.stats.rounds))
                self.stats.rounds += 1
                self.on_round(self.stats.rounds)
        except KeyboardInterrupt:
            self._collect(reduce=False)  # no shrinking after a Ctrl-C: report and go
            raise
        finally:
            self._collect()
        return self.result()

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
            self._raised.clear()
        self._collect()
        return self.result()

    def result(self) -> list[Finding]:
        return sorted(self.findings.values(), key=lambda f: (-_SEVERITY_ORDER[f.severity], f.signature))

    def round_ops(self, round_index: int) -> tuple[str, ...]:
        """The ops round ``round_index`` draws from: its window, plus (after the first
        cycle) ops coverage steering wants. A function of the seed, the round and the
        coverage so far, which a resumed campaign restores, so a resumed campaign's round
        k is the uninterrupted campaign's round k."""
        ops, size = tuple(self.config.ops), self.config.focus
        if not size or len(ops) <= size:
            return ops
        parts = math.ceil(len(ops) / size)
        cycle, part = divmod(round_index, parts)
        order = list(ops)
        random.Random(self.config.seed * 1_000_003 + cycle).shuffle(order)
        width = math.ceil(len(ops) / parts)
        window = tuple(order[part * width:(part + 1) * width])
        starved = [name for name in self.missing() if name not in window]
        if cycle == 0 or not starved or not self.config.steer:
            return window
        start = (round_index * self.config.steer) % len(starved)
        return window + tuple((starved[start:] + starved[:start])[:self.config.steer])

    def missing(self) -> dict[str, tuple[int, ...]]:
        """Per op some variant lowers that coverage lacks: the indices of its special
        values no check has hit *exactly* with a traced argument (a derivative rule's
        special case tests an exact value; a near hit is not enough), or empty when only
        the op itself, or one of its argument patterns, is unreached."""
        out: dict[str, tuple[int, ...]] = {}
        for name in self.config.ops:
            if not self._lowering[name]:
                continue
            per_variant = self.stats.coverage[name] if name in self.stats.coverage else {}
            cells = list(per_variant.values())
            special = tuple(
                i for i in range(len(CATALOGUE[name].special_names))
                if not any(int(c.get(f"exact:{i}", 0)) for c in cells)
            )
            unreached = any(not int(per_variant.get(v, {}).get("checks", 0)) for v in self._lowering[name])
            if special or unreached or self._missing_patterns(name):
                out[name] = special
        return out

    def _missing_patterns(self, name: str) -> tuple[str, ...]:
        """The traced/constant argument patterns of elementwise op ``name`` that no check
        has differentiated (``hessdiff.harness.exact.pattern_of``)."""
        cells = list(self.stats.coverage[name].values()) if name in self.stats.coverage else []
        return tuple(p for p in argument_patterns(name) if not any(int(c.get(f"pattern:{p}", 0)) for c in cells))

    def patterns_wanted(self) -> dict[str, tuple[str, ...]]:
        """Per elementwise op, the argument patterns steering asks the generator for: the
        ones no check has differentiated, else the ones below ``PATTERN_SHARE`` of their
        fair share of the op's checks. One check of a pattern is not enough: a rule wrong
        only for a constant argument shows only where that argument's path is curved, so
        a pattern the generator rarely draws (a constant divisor) stays rare all campaign
        long unless steering keeps it at a share of the op's checks."""
        out = {}
        for name in self.config.ops:
            if self._lowering[name]:
                wanted = self._missing_patterns(name) or self._scarce_patterns(name)
                if wanted:
                    out[name] = wanted
        return out

    def _scarce_patterns(self, name: str) -> tuple[str, ...]:
        patterns = argument_patterns(name)
        cells = list(self.stats.coverage[name].values()) if name in self.stats.coverage else []
        counts = {p: sum(int(c.get(f"pattern:{p}", 0)) for c in cells) for p in patterns}
        total = sum(counts.values())
        return tuple(p for p in patterns if counts[p] < PATTERN_SHARE * total / len(patterns))

    def _round(self, seed: int, ops: tuple[str, ...]) -> None:
        strategy = cases(
            dtypes=self.config.dtypes, max_n=self.config.max_n, ops=ops,
            max_ops=self.config.max_ops, mlps=self.config.mlps,
            aims={name: special for name, special in self.missing().items() if special} if self.config.steer else None,
            patterns=self.patterns_wanted() if self.config.steer else None,
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
        if isinstance(exc, BaseExceptionGroup):  # name the leaves, not the group
            for leaf in exc.exceptions:
                self._harness_error(leaf)
            return
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if text not in self.stats.harness_errors:
            self.stats.harness_errors.append(text)

    def _check(self, case: Case) -> None:
        if time.monotonic() > self._deadline + 30.0:
            return  # out of budget (with grace for shrinking): stop doing work
        # Once a fault is raised, Hypothesis stops generating and shrinks: every example
        # after that is a shrink step, and only the faulty variants decide it (the rest
        # are run once more on the minimal case, in ``_collect``).
        variants = self.variants if not self._raised else [
            v for v in self.variants if v.name in {key[0] for key in self._raised}]
        if self.config.points_per_case > 1:
            batch = check_program(case.program, _points(case, self.config.points_per_case), case.dtype,
                                  variants)
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
            self._count(result, did, exact=result is results[0])
            rules: frozenset[tuple[str, str, str]] | None = None  # this point's, when a blamed finding asks
            for verdict in result.verdicts:
                key = (verdict.variant, verdict.kind, case.dtype)
                self.stats.kinds[verdict.variant, verdict.kind.value] += 1
                if rules is None and any(f.blame for f in self.findings.values()):
                    rules = did.rules if result is results[0] else \
                        exercised(case.program, result.case.point, case.dtype).rules
                known = self._explaining(key, result.case, rules or frozenset())
                if known is not None:
                    known.count += 1
                    known.last_seen = _now()
                    if verdict.kind.is_failure and known.blame and known.blame.get("node") is not None:
                        b = known.blame
                        self._unmask(verdict.variant, result.case, (b["op"], b["pattern"], b.get("region", "")))
                    continue
                record_key = self._record_key(key, result, verdict)
                record = self._remember(record_key, result.case, result, verdict)
                # A hang is not shrunk: every shrink step would wait out the timeout; nor is
                # a fault the baseline already knows (but its other nodes are checked alone).
                if record.baselined:
                    if verdict.kind.is_failure and verdict.kind is not Kind.TIMEOUT:
                        self._unmask(verdict.variant, result.case, None)
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
            raise _exception_for(raise_key)(self._records[raise_key].verdict.explanation)

    def _count(self, result: CaseResult, did: Exercised, exact: bool = True) -> None:
        """Coverage of one judged point: only the ops ``did`` differentiated count (an op
        on constants alone checks nothing), with the argument patterns they had, the
        special values the oracle saw within rounding distance (``special:i``) and those
        hit exactly (``exact:i``; at the case's own point, the one generation aimed)."""
        self.stats.statuses[result.status] += 1
        near = result.oracle is not None and result.oracle.kink_distance < 1e-6
        # Which special values (OpSpec.special, by index) each op's argument reached.
        hits: dict[str, set[int]] = defaultdict(set)
        for op_name, index in (result.oracle.specials if result.oracle is not None else ()):
            hits[op_name].add(index)
        exact_hits: dict[str, set[int]] = defaultdict(set)
        for op_name, index in (did.exact if exact else ()):
            exact_hits[op_name].add(index)
            hits[op_name].add(index)
        patterns: dict[str, set[str]] = defaultdict(set)
        for op_name, pattern in did.patterns:
            patterns[op_name].add(pattern)
        kinds: dict[str, set[str]] = defaultdict(set)
        for op_name, kind in did.kinds:
            kinds[op_name].add(kind)
        for name, outcome in result.outcomes.items():
            self.stats.outcomes[name, outcome.status] += 1
            self.stats.seconds[name.split(":", 1)[0]] += outcome.seconds
            judged, ill = result.entries.get(name, (0, 0))
            self.stats.entries[name] += judged
            self.stats.ill_conditioned[name] += ill
            if outcome.status == "ok":
                for op_name in did.ops:
                    cell = self.stats.coverage[op_name][name]
                    if judged and ill == judged:  # nothing held to a bound: not a check
                        cell["ill"] = cell.get("ill", 0) + 1
                        continue
                    cell["checks"] += 1
                    cell["special"] += int((near and op_name in result.oracle.kink_ops) or bool(hits[op_name]))
                    for index in hits[op_name]:
                        cell[f"special:{index}"] = cell.get(f"special:{index}", 0) + 1
                    for index in exact_hits[op_name]:
                        cell[f"exact:{index}"] = cell.get(f"exact:{index}", 0) + 1
                    for pattern in patterns[op_name]:
                        cell[f"pattern:{pattern}"] = cell.get(f"pattern:{pattern}", 0) + 1
                    for kind in kinds[op_name]:
                        cell[f"kind:{kind}"] = cell.get(f"kind:{kind}", 0) + 1

    def _explaining(self, key: Key, case: Case, rules: frozenset[tuple[str, str, str]]) -> Finding | None:
        """The finding already made that explains this hit, if one does.

        A blamed finding explains a hit that exercised its blamed rule, with the same
        argument pattern, in the same region (``rules``: the hit's, ``Exercised.rules``);
        an unblamed one (a composition fault, a dismissed kind, a baselined or older
        finding) one whose program holds all its ops. Judged by op set alone, a finding
        on ``tanh + sum`` took every later fault of its variant, kind and dtype in a
        program with a tanh and a sum for itself, and a new fault there was never seen."""
        ops = case.program.op_names
        for finding in self.findings.values():
            if (finding.variant, finding.kind, finding.dtype) != key:
                continue
            blamed = finding.blame if finding.blame and finding.blame.get("node") is not None else None
            if blamed is not None:
                known = (blamed.get("op", ""), blamed.get("pattern", ""), blamed.get("region", ""))
                explains = any(_same_rule(rule, known) for rule in rules)
            else:
                explains = finding.program.op_names <= ops
            if explains:
                return finding
        return None

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
                known is not None and _same_rule(rule, known)))
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
            if self._explaining(key, fault.case, frozenset({fault.rule})) is not None:
                continue
            self.stats.unmasked += 1
            record = self._remember((*key, fault.case.program.op_names), fault.case, fault.result, fault.verdict)
            if record.case is fault.case:
                record.blame = fault.blame.to_json()

    def _record_key(self, key: Key, result: CaseResult, verdict: Verdict) -> RecordKey:
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
        if known and self._covered(case, result, verdict):
            return known[0]
        return own

    def _covered(self, case: Case, result: CaseResult, verdict: Verdict) -> bool:
        """Whether the baseline covers this hit as it stands (unshrunk)."""
        hit = _Record(case, result, verdict, case.program.size)
        return self.baseline.entry_for(self._finding(hit, provisional=True)) is not None

    def _remember(self, key: RecordKey, case: Case, result: CaseResult, verdict: Verdict) -> _Record:
        record = self._records.get(key)
        now = _now()
        if record is None:
            record = _Record(case, result, verdict, case.program.size, first_seen=now, last_seen=now)
            self._records[key] = record
            early = self._finding(record, provisional=True)
            record.provisional.add(early.signature)
            record.baselined = self.baseline.entry_for(early) is not None
            self.on_finding(early)
            return record
        record.count += 1
        record.last_seen = now
        if _size(case) < _size(record.case) and record.admits(case):
            record.case, record.result, record.verdict = case, result, verdict
        return record

    def _reduce(self, key: RecordKey, record: _Record) -> None:
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

    def _complete(self, key: RecordKey, record: _Record) -> None:
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
        """Turn this round's records into findings (merging by signature)."""
        for key, record in list(self._records.items()):
            if reduce and key[1].is_failure and key[1] is not Kind.TIMEOUT and not record.baselined:
                self._reduce(key, record)
            if reduce and len(record.result.outcomes) < len(self.variants):
                self._complete(key, record)
            finding = self._finding(record)
            if reduce and key[1].is_failure and not record.baselined:
                finding.blame = self._blame(key, record)
            else:
                finding.blame = record.blame  # a baselined node found alone still names its rule
            existing = self.findings.get(finding.signature)
            if existing is not None:
                existing.count += record.count
                existing.last_seen = record.last_seen
                existing.supersedes = _union(existing.supersedes, record.provisional - {existing.signature})
                self.on_finding(existing)
            else:
                finding.supersedes = _union((), record.provisional - {finding.signature})
                self.findings[finding.signature] = finding
                self.on_finding(finding)
                for op_name in finding.program.op_names:
                    self.stats.coverage[op_name][finding.variant]["findings"] += 1
        self._records.clear()

    def _blame(self, key: RecordKey, record: _Record) -> dict[str, Any] | None:
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

    def _finding(self, record: _Record, provisional: bool = False) -> Finding:
        case, result, verdict = record.case, record.result, record.verdict
        outcome = result.outcomes[verdict.variant]
        oracle = result.oracle
        explanation = verdict.explanation
        if result.note and result.note not in explanation:
            explanation += f" ({result.note}.)"
        return Finding(
            kind=verdict.kind,
            variant=verdict.variant,
            versions=dict(self._versions),
            dtype=case.dtype,
            program=case.program,
            point=case.point,
            observed=outcome.hessian,
            expected=oracle.hessian_float() if oracle is not None else None,
            others={n: o.hessian for n, o in result.outcomes.items() if n != verdict.variant},
            explanation=explanation,
            error=outcome.error,
            max_error=verdict.max_error,
            count=record.count,
            minimised=(
                f"not minimised yet: logged at its first hit ({case.program.size} ops), while its round ran"
                if provisional else
                f"not minimised: the baseline already covers it (first seen on {record.first_size} ops)"
                if record.baselined else
                f"first seen on a program of {record.first_size} ops; Hypothesis shrink, then "
                f"greedy op removal ({record.reduce_attempts} attempts): {case.program.size} ops"
            ),
            first_seen=record.first_seen,
            last_seen=record.last_seen,
            provisional=provisional,
        )


def _union(old: tuple[str, ...], new: set[str]) -> tuple[str, ...]:
    return tuple(sorted(set(old) | new))


_SEVERITY_ORDER = {"high": 3, "medium": 2, "low": 1, "info": 0}

# The most of a campaign's time so far that checking alone the nodes of hits put down to
# known faults may take (``Campaign._unmask``).
UNMASK_SHARE = 0.1
