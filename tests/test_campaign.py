"""A campaign finds planted faults from random generation, shrinks and classifies them."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hessdiff.backends import BackendVariant, register
from hessdiff.backends.registry import unregister
from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.campaign import SHRINK_SHARE, Campaign, CampaignConfig
from hessdiff.harness.campaign_records import NewFinding
from hessdiff.harness.findings import Finding, Kind, latest_findings
from hessdiff.harness.ir import Node, Program, op
from hessdiff.harness.outcomes import Outcome, Runner
from hessdiff.harness.repro import render_repro
from hessdiff.harness.strategies import Case
from planted import KinkConventionBackend, PlantedBackend


@pytest.fixture(scope="module")
def planted():
    backend = register(PlantedBackend())
    kinkconv = register(KinkConventionBackend())
    yield backend, kinkconv
    unregister(backend.name)
    unregister(kinkconv.name)


# Smooth and piecewise ops with coupling (mul, gather, matmul), plus MLP programs: the
# honest variant (JAX itself) must come out clean on them.
OPS = ("relu", "square", "mul", "add", "sub", "abs", "maximum", "gather", "matmul", "sum", "sin")


def _campaign(variants, rounds: int, seed: int = 0, on_finding=None, **kw) -> Campaign:
    kw.setdefault("ops", OPS)
    kw.setdefault("mlps", True)
    kw.setdefault("max_n", 3)
    config = CampaignConfig(budget_seconds=600, seed=seed, max_rounds=rounds, round_examples=15,
                            dtypes=("float64",), max_ops=4, **kw)
    campaign = Campaign(variants, config, on_finding=on_finding)
    campaign.run()
    return campaign


@pytest.fixture(scope="module")
def found(planted):
    """One small campaign per planted variant (one variant each keeps every example cheap)."""
    backend, _ = planted
    logs: dict[str, list[Finding]] = {}
    found = {}
    for variant, rounds in (("pl_gradient", 2), ("no_cross", 4), ("honest", 2)):
        log = logs.setdefault(variant, [])
        found[variant] = _campaign([BackendVariant(backend, variant)], rounds=rounds, seed=1,
                                   on_finding=lambda f, log=log: log.append(copy.deepcopy(f)))
        found[variant].log = log
    return found


def _failures(campaign: Campaign) -> list:
    return [f for f in campaign.result() if f.kind.is_failure]


@pytest.mark.parametrize("variant", ["pl_gradient", "no_cross"])
def test_planted_fault_is_found_shrunk_and_classified(found, variant: str) -> None:
    failures = _failures(found[variant])
    assert failures, f"no failure found for {variant}: {[f.signature for f in found[variant].result()]}"
    smallest = min(failures, key=lambda f: f.program.size)
    assert smallest.kind is Kind.WRONG_VALUE
    assert smallest.program.size <= 3, smallest.program.pretty()


@pytest.mark.parametrize("variant", ["pl_gradient", "no_cross"])
def test_a_fault_is_logged_at_its_first_hit_and_superseded_once_minimised(found, variant: str) -> None:
    """What a kill -9 mid-round would leave on disk: the unminimised fault, at once."""
    log = found[variant].log
    first_failure = next(f for f in log if f.kind.is_failure)
    assert first_failure.provisional and "not minimised yet" in first_failure.minimised
    # Once the rounds are over, the log reads as exactly the campaign's result.
    assert sorted(f.signature for f in latest_findings(log)) == sorted(f.signature for f in found[variant].result())
    assert not any(f.provisional for f in found[variant].result())


def test_a_fault_the_baseline_covers_is_recorded_but_not_shrunk(planted) -> None:
    backend, _ = planted
    baseline = Baseline((BaselineEntry("planted|pl_gradient|wrong_value|float64|*"),))
    config = CampaignConfig(budget_seconds=600, seed=1, max_rounds=1, round_examples=15, dtypes=("float64",),
                            max_ops=4, ops=OPS, mlps=True, max_n=3)
    campaign = Campaign([BackendVariant(backend, "pl_gradient")], config, baseline=baseline)
    campaign.run()
    failures = _failures(campaign)
    assert failures and all("the baseline already covers it" in f.minimised for f in failures)
    assert campaign.stats.examples == 15  # no shrink steps: the round is its 15 examples


def test_the_honest_variant_has_no_failure(found) -> None:
    failures = _failures(found["honest"])
    assert failures == [], [(f.program.dumps(), f.point.tolist(), f.explanation) for f in failures]


def test_repro_of_a_planted_fault_runs_standalone_and_shows_it(found, tmp_path) -> None:
    finding = min(_failures(found["pl_gradient"]), key=lambda f: f.program.size)
    script = tmp_path / "repro.py"
    script.write_text(render_repro(finding))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REPRODUCED" in proc.stdout


def test_a_fault_only_at_kinks_is_a_convention(planted) -> None:
    backend, kinkconv = planted
    variants = [BackendVariant(backend, "honest"), BackendVariant(kinkconv, "fwdrev")]
    # A random point lands on relu's kink only when aimed there: seeds are tried in turn
    # until one campaign meets the kink (any change to the generator moves which one).
    for seed in range(2, 8):
        campaign = _campaign(variants, rounds=4, seed=seed, ops=("relu", "square", "mul", "sum"), mlps=False,
                             max_n=2)
        kinds = {f.kind for f in campaign.result() if f.variant == "kinkconv:fwdrev"}
        assert not any(k.is_failure for k in kinds), [f.explanation for f in campaign.result()]
        if Kind.CONVENTION in kinds:
            break
    assert Kind.CONVENTION in kinds, f"no seed in 2..7 met relu's kink: {kinds}"


def _steered(coverage, **kw) -> Campaign:
    from hessdiff.backends import get_variant

    ops = ("sin", "relu", "log10", "arctan", "square", "mul")
    config = CampaignConfig(seed=3, ops=ops, focus=2, dtypes=("float64",), **kw)
    return Campaign([get_variant("jax:fwdrev")], config, coverage=coverage)


def test_steering_names_the_ops_and_special_values_coverage_lacks() -> None:
    """``missing`` lists every op no check reached, every special value none hit exactly
    and every op with an argument pattern none differentiated; from the second cycle of
    windows on, each round also draws from those ops."""
    seen = {"checks": 5, "special": 1}
    every_pattern = {"pattern:TT": 1, "pattern:TC": 1, "pattern:CT": 1}
    coverage = {
        "sin": {"jax:fwdrev": {**seen}},  # no special values: covered
        "relu": {"jax:fwdrev": {**seen, "special:0": 1, "exact:0": 1}},  # its kink hit exactly: covered
        "log10": {"jax:fwdrev": {**seen, "special:1": 3}},  # near 1 only; its edge at 0 never reached
        "square": {"jax:fwdrev": {**seen}},
        "mul": {"jax:fwdrev": {**seen, **every_pattern}},
    }
    campaign = _steered(coverage)
    assert campaign.stats.coverage["log10"]["jax:fwdrev"]["special:1"] == 3  # restored
    assert campaign.steering.missing() == {"log10": (0, 1), "arctan": (0,)}  # arctan: never checked
    # log10's 0 is an edge of its domain: reached from inside is all it can have.
    covered = {**coverage, "log10": {"jax:fwdrev": {**seen, "special:0": 2, "special:1": 3, "exact:1": 1}}}
    assert _steered(covered).steering.missing() == {"arctan": (0,)}
    del coverage["mul"]["jax:fwdrev"]["pattern:CT"]
    assert _steered(coverage).steering.missing() == {"log10": (0, 1), "arctan": (0,), "mul": ()}
    assert _steered(coverage).steering.patterns_wanted() == {"mul": ("CT",)}
    first_cycle = [campaign.steering.round_ops(r) for r in range(3)]
    assert sorted(op for window in first_cycle for op in window) == sorted(campaign.config.ops)
    for r in range(3, 9):
        window = campaign.steering.round_ops(r)
        assert {"log10", "arctan"} <= set(window), window
    assert all(len(_steered(coverage, steer=0).steering.round_ops(r)) == 2 for r in range(9))


def test_steering_keeps_a_rare_argument_pattern_at_a_share_of_the_checks() -> None:
    """A pattern checked once but then drawn far below its share (a constant divisor:
    the generator draws traced arguments far more often) is still wanted; patterns
    near their share are not, and a scarce pattern does not make the op "missing"."""
    seen = {"checks": 30, "special": 1}
    coverage = {"mul": {"jax:fwdrev": {**seen, "pattern:TT": 20, "pattern:TC": 9, "pattern:CT": 1}}}
    campaign = _steered(coverage)
    assert campaign.steering.patterns_wanted() == {"mul": ("CT",)}
    assert "mul" not in campaign.steering.missing()
    coverage["mul"]["jax:fwdrev"]["pattern:CT"] = 6  # 6 of 35 checks: above half of a third
    assert _steered(coverage).steering.patterns_wanted() == {}


def test_a_steered_round_aims_at_the_missing_special_value() -> None:
    """A campaign that has seen log10 at 1 but never at 0 aims log10 at 0 only: its
    programs reach 0 far more often than ones aimed at 1 do, and 1 less often (1 can
    still come up by chance: Hypothesis likes constants and points of 1.0)."""
    from hypothesis import given, settings

    from hessdiff.harness.oracle import OutOfDomain, evaluate
    from hessdiff.harness.strategies import cases

    hit = {"checks": 1, "special:0": 1, "special:1": 1, "exact:0": 1, "exact:1": 1}
    coverage = {name: {"jax:fwdrev": {**hit, "pattern:TT": 1, "pattern:TC": 1, "pattern:CT": 1}}
                for name in ("sin", "relu", "arctan", "square", "mul")}
    coverage["log10"] = {"jax:fwdrev": {"checks": 1, "special:1": 1, "exact:1": 1}}
    campaign = _steered(coverage)
    aims = {name: s for name, s in campaign.steering.missing().items() if s}
    assert aims == {"log10": (0,)}

    def hits(aims) -> list[int]:
        counts = [0, 0]

        @settings(max_examples=60, database=None, deadline=None, derandomize=True)
        @given(cases(dtypes=("float64",), ops=("log10",), max_ops=2, mlps=False, aims=aims))
        def collect(case) -> None:
            try:
                result = evaluate(case.program, case.point, case.dtype)
            except OutOfDomain:
                return
            for index in {i for name, i in result.specials if name == "log10"}:
                counts[index] += 1

        collect()
        return counts

    steered, other = hits(aims), hits({"log10": (1,)})
    assert steered[0] >= 10 and steered[0] > 3 * other[0], (steered, other)
    assert other[1] > steered[1], (steered, other)


def test_steering_chases_an_op_until_every_variant_lowering_it_has_checked_it() -> None:
    """sin checked by JAX but not by MLX is still wanted; solve, which MLX lacks, is not
    wanted for MLX's sake once JAX has checked it."""
    from hessdiff.backends import get_variant

    config = CampaignConfig(seed=3, ops=("sin", "solve"), focus=None, dtypes=("float64",))
    done = {"checks": 4, "special": 0, "exact:0": 1}
    coverage = {"sin": {"jax:fwdrev": dict(done)}, "solve": {"jax:fwdrev": dict(done)}}
    campaign = Campaign([get_variant("jax:fwdrev"), get_variant("mlx:revrev")], config, coverage=coverage)
    assert campaign.steering.missing() == {"sin": ()}


class _Sevens(Runner):
    """Every Hessian 7: wrong on any program (a fault that shows everywhere)."""

    name = "jax:wrong"

    def __init__(self) -> None:
        from hessdiff.backends import get_variant

        self.variant = get_variant("jax:fwdrev")

    def run(self, case: Case) -> Outcome:
        return Outcome(self.name, "ok", np.full((case.program.n,) * 2, 7.0))


class _SlowSevens(_Sevens):
    """Wrong everywhere, and slow: every shrink step costs a call."""

    def run(self, case: Case) -> Outcome:
        time.sleep(0.15)
        return super().run(case)


@pytest.mark.parametrize("share", [0.05, 100.0])
def test_shrinking_takes_at_most_its_share_of_a_time_budgeted_campaign(share, monkeypatch) -> None:
    """With a share of 5% (the first run) shrinking stops there, give or take a step;
    with no limit (the second) it takes several times that: the test tells them apart.
    (The campaign's own ``SHRINK_SHARE`` is larger; this fault shrinks too fast for it.)"""
    assert 0 < SHRINK_SHARE < 1
    monkeypatch.setattr("hessdiff.harness.campaign.SHRINK_SHARE", share)
    # No sweep: its probe cases, every one a finding of this variant, would spend the
    # budget before the first round shrinks anything.
    config = CampaignConfig(budget_seconds=6, seed=0, round_examples=15, dtypes=("float64",), max_ops=4,
                            ops=OPS, max_n=3, mlps=False, sweep=0)
    campaign = Campaign([_SlowSevens()], config)
    # Shrinking stops at the first step past its share: the overshoot is one step, whose
    # cost is the variant's 0.15 s plus judging (a wrong value at a kink: up to ~0.9 s).
    steps: list[float] = []
    check_case = campaign._check_case

    def timed(case: Case) -> None:
        start = time.perf_counter()
        try:
            check_case(case)
        finally:
            steps.append(time.perf_counter() - start)

    monkeypatch.setattr(campaign, "_check_case", timed)
    start = time.monotonic()
    campaign.run()
    wall = time.monotonic() - start
    assert any(f.kind is Kind.WRONG_VALUE for f in campaign.result())
    limited = campaign.stats.shrink_seconds <= 0.05 * wall + max(steps) + 0.05
    assert limited is (share < 1), (campaign.stats.shrink_seconds, wall, max(steps))


def _case(*nodes: Node) -> Case:
    return Case(Program(2, (Node("input"), *nodes)), np.array([0.3, -0.4]), "float64")


def _records_of(campaign: Campaign) -> dict[frozenset[str], object]:
    return {key[3]: record for key, record in campaign._records.items()}


def test_a_shrink_step_that_brings_in_another_op_is_not_the_same_fault() -> None:
    """Once a fault is raised, a later failure of the same variant, kind and dtype shrinks
    its record only on a program within the first one's ops; one that brings in another
    op is another fault's first hit, recorded but not raised while shrinking (a round
    would shrink every fault it meets): else the shrinker slips from one fault to
    another, and one is never reported."""
    first = _case(op("arctan", 0), op("square", 1), op("sum", 2))
    smaller = _case(op("arctan", 0), op("sum", 1))
    other = _case(op("sin", 0), op("sum", 1))
    campaign = Campaign([_Sevens()], CampaignConfig(seed=1, ops=("arctan", "sin"), dtypes=("float64",)))
    campaign._deadline = time.monotonic() + 60.0
    with pytest.raises(NewFinding) as first_raised:
        campaign._check(first)
    campaign._check(other)  # recorded, not raised
    assert {ops: r.case for ops, r in _records_of(campaign).items()} == {
        first.program.op_names: first, other.program.op_names: other}
    with pytest.raises(NewFinding) as again:
        campaign._check(smaller)
    assert type(again.value) is type(first_raised.value)
    assert _records_of(campaign)[first.program.op_names].case is smaller


def test_past_the_budget_no_new_case_is_checked_but_a_raised_fault_still_shrinks() -> None:
    """A round that runs out of budget used to check its remaining examples (a 6-second
    run took 12-23 s); past the deadline only shrink steps of a fault already raised run,
    and those only within the grace (at most ``SHRINK_SHARE`` of the budget)."""
    first = _case(op("arctan", 0), op("square", 1), op("sum", 2))
    smaller = _case(op("arctan", 0), op("sum", 1))
    config = CampaignConfig(seed=1, ops=("arctan", "sin"), dtypes=("float64",), budget_seconds=60.0)
    campaign = Campaign([_Sevens()], config)
    campaign._deadline = time.monotonic() - 1.0
    campaign._check(first)  # a new case past the budget: not checked
    assert campaign.stats.examples == 0 and not campaign._records
    campaign._deadline = time.monotonic() + 60.0
    with pytest.raises(NewFinding):
        campaign._check(first)
    campaign._deadline = time.monotonic() - 1.0  # within the grace of 30 s
    with pytest.raises(NewFinding):
        campaign._check(smaller)
    campaign._deadline = time.monotonic() - 31.0  # beyond it
    campaign._check(first)
    assert campaign.stats.examples == 2


def test_a_baselined_first_hit_does_not_absorb_a_new_fault_of_the_same_key(monkeypatch) -> None:
    """The baseline knows the fault on programs with arctan; a first hit there is
    recorded, not raised. A later hit on a program without arctan is a fault the
    baseline does not cover: it gets a record of its own and is raised (it used to be
    counted with the first and never reported). A later hit the baseline covers is
    counted with the first. (Its nodes checked alone would each fail with this backend,
    wrong everywhere: that is ``tests/test_blame.py``'s, switched off here.)"""
    monkeypatch.setattr("hessdiff.harness.campaign.UNMASK_SHARE", -1.0)
    baseline = Baseline((BaselineEntry("jax|wrong|wrong_value|float64|*arctan*"),))
    known = _case(op("arctan", 0), op("square", 1), op("sum", 2))
    known_again = _case(op("arctan", 0), op("exp", 1), op("sum", 2))
    new = _case(op("sin", 0), op("sum", 1))
    campaign = Campaign([_Sevens()], CampaignConfig(seed=1, ops=("arctan", "sin"), dtypes=("float64",)),
                        baseline=baseline)
    campaign._deadline = time.monotonic() + 60.0
    campaign._check(known)
    campaign._check(known_again)
    records = _records_of(campaign)
    assert list(records) == [known.program.op_names] and records[known.program.op_names].count == 2
    with pytest.raises(NewFinding):
        campaign._check(new)
    assert set(_records_of(campaign)) == {known.program.op_names, new.program.op_names}


def test_a_seed_draws_the_same_cases_whatever_else_is_loaded(planted, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The search draws without Hypothesis' local constants (``harness.seeding``): a module
    loaded beside the campaign, full of literals Hypothesis would mine, changes nothing."""
    import sys
    import types

    backend, _ = planted

    def drawn() -> list[str]:
        seen: list[str] = []
        config = CampaignConfig(budget_seconds=600, seed=3, max_rounds=1, round_examples=25,
                                dtypes=("float64",), max_ops=3, ops=OPS, max_n=3, steer=0)
        campaign = Campaign([BackendVariant(backend, "honest")], config)
        monkeypatch.setattr(campaign, "_check", lambda case: seen.append(case.program.dumps() + repr(case.point)))
        campaign.run()
        return seen

    before = drawn()
    # A local module of literals, as a newly collected test file or a plugin would be.
    source = tmp_path / "hessdiff_seed_probe.py"
    source.write_text("CONSTANTS = (" + ", ".join(f"{v / 8}" for v in range(-400, 400, 3)) + ")\n")
    local = types.ModuleType("hessdiff_seed_probe")
    local.__file__ = str(source)
    monkeypatch.setitem(sys.modules, "hessdiff_seed_probe", local)
    assert before and drawn() == before


def test_steering_puts_the_ops_no_check_reached_first() -> None:
    """An op never checked by any variant goes before ops that only miss a special value,
    whatever the rotation; ``unreached`` names it for the round's programs to start with."""
    seen = {"checks": 5, "special": 1}
    coverage = {name: {"jax:fwdrev": {**seen}} for name in ("sin", "relu", "log10", "square", "mul")}
    config = CampaignConfig(seed=3, ops=("sin", "relu", "log10", "arctan", "square", "mul"), focus=2,
                            steer=2, dtypes=("float64",))
    from hessdiff.backends import get_variant

    campaign = Campaign([get_variant("jax:fwdrev")], config, coverage=coverage)
    assert campaign.steering.unreached(config.ops) == ("arctan",)
    for r in range(3, 12):  # from the second cycle on, arctan is in every round
        ops = campaign.steering.round_ops(r)
        assert "arctan" in ops, (r, ops)


def test_a_round_with_unreached_ops_builds_most_programs_around_them() -> None:
    from hypothesis import given, settings

    from hessdiff.harness.strategies import cases

    from hessdiff.harness.strategies import DEFAULT_OPS

    ops = tuple(sorted(DEFAULT_OPS))[:30]
    seen = []

    @settings(max_examples=40, database=None, deadline=None, derandomize=True)
    @given(cases(dtypes=("float64",), ops=ops, max_ops=4, require=("arctan2",)))
    def collect(case) -> None:
        seen.append("arctan2" in case.program.op_names)

    collect()
    assert sum(seen) >= len(seen) / 2, (sum(seen), len(seen))


def test_the_sweep_reaches_every_op_a_round_left_unreached() -> None:
    """Rounds of one example from windows of one op reach one op per round; the sweep
    before round 0 checks a probe case of all three ops, so all are reached however few
    rounds the budget allows, each op probed at most ``sweep`` times."""
    from hessdiff.backends import get_variant

    ops = ("sin", "arctan", "log10")
    config = CampaignConfig(seed=4, ops=ops, focus=1, round_examples=1, dtypes=("float64",),
                            budget_seconds=20.0, sweep=3)
    campaign = Campaign([get_variant("jax:fwdrev")], config)
    rounds_when_reached: list[int] = []

    def on_round(rounds: int) -> None:
        if all(campaign.stats.coverage[name]["jax:fwdrev"]["checks"] for name in ops):
            rounds_when_reached.append(rounds)

    campaign.on_round = on_round
    campaign.run()
    assert all(campaign.stats.coverage[name]["jax:fwdrev"]["checks"] for name in ops)
    assert campaign.stats.swept >= 1 and max(campaign._swept.values()) <= 3
    # Round 1 drew from one window of one op; on_round(1) already sees all three: the sweep
    # before it reached the ops no window had offered yet.
    assert rounds_when_reached and rounds_when_reached[0] == 1, (rounds_when_reached, campaign.stats.rounds)


def test_a_campaign_says_where_its_time_went_sweeps_and_finishing_apart(monkeypatch) -> None:
    """The sweeps' probe checks and the turning of records into findings are timed apart
    (a 10-minute all-variant campaign spent 245 s sweeping and 25 s finishing, which no
    report showed): a probe check of 0.3 s counts in ``sweep_seconds`` (with the drawing
    of the probe case, timed here), and the sweep's own collection of its findings (1 s
    here) in ``finish_seconds`` only."""
    from hessdiff.backends import get_variant
    from hessdiff.harness import campaign as campaign_module

    ops = ("sin", "arctan", "log10")
    config = CampaignConfig(seed=4, ops=ops, focus=1, round_examples=1, dtypes=("float64",),
                            budget_seconds=2.0, sweep=2, max_ops=1)
    campaign = Campaign([get_variant("jax:fwdrev")], config)
    probes: list[Case] = []
    collects: list[bool] = []
    collect = campaign._collect_records

    def slow_probe(case: Case) -> None:
        probes.append(case)
        time.sleep(0.3)

    def slow_collect(reduce: bool) -> None:
        collects.append(reduce)
        time.sleep(1.0)
        collect(reduce)

    drawing = [0.0]  # the probe cases' drawing, timed: it is the sweep's own work too
    draw = campaign_module.probe_case

    def timed_draw(*args, **kwargs):
        start = time.perf_counter()
        try:
            return draw(*args, **kwargs)
        finally:
            drawing[0] += time.perf_counter() - start

    monkeypatch.setattr(campaign_module, "probe_case", timed_draw)
    monkeypatch.setattr(campaign, "_check_probe", slow_probe)
    monkeypatch.setattr(campaign, "_collect_records", slow_collect)
    started = time.monotonic()
    campaign.run()
    wall = time.monotonic() - started
    stats = campaign.stats
    assert probes and collects
    # A collection inside the sweep (1 s) counted there too would pass the 0.5 s allowed.
    assert 0.3 * len(probes) <= stats.sweep_seconds < 0.3 * len(probes) + drawing[0] + 0.5, (
        stats.to_json(), len(probes), drawing)
    assert stats.finish_seconds >= 1.0 * len(collects)
    assert stats.sweep_seconds + stats.finish_seconds <= wall
    assert {"sweep_seconds", "finish_seconds"} <= set(stats.to_json())  # in findings.json and summary.md


def test_hessdiffs_own_error_on_a_probe_is_noted_and_the_campaign_goes_on(monkeypatch) -> None:
    """An internal error on one sweep case used to end the whole campaign (exit 70 after
    211 s of a 5-minute run on MLX 0.21.1): it is counted, and the search goes on."""
    from hessdiff.backends import get_variant
    from hessdiff.harness.outcomes import HarnessError

    ops = ("sin", "arctan", "log10")
    config = CampaignConfig(seed=4, ops=ops, focus=1, round_examples=1, dtypes=("float64",),
                            budget_seconds=10.0, sweep=1, max_ops=1)
    campaign = Campaign([get_variant("jax:fwdrev")], config)
    check, calls = campaign._check, []

    def failing_once(case: Case) -> None:
        calls.append(case)
        if len(calls) == 1:
            raise HarnessError("jax:fwdrev failed inside hessdiff (backends/x.py:1): IndexError: ours")
        check(case)

    monkeypatch.setattr(campaign, "_check", failing_once)
    campaign.run()
    [error] = campaign.stats.harness_errors
    assert error.startswith("HarnessError: jax:fwdrev failed inside hessdiff (backends/x.py:1): IndexError: ours")
    assert error.endswith(" in failing_once)") and "(at test_campaign.py:" in error  # where it was raised
    assert campaign.stats.rounds >= 1 and len(calls) > 1


def test_a_probe_case_is_a_function_of_its_seed() -> None:
    from hessdiff.harness.strategies import probe_case

    for name in ("arctan2", "matmul", "cumprod", "relu"):
        a, b = probe_case(name, 11), probe_case(name, 11)
        assert a is not None and a.program == b.program and a.dtype == b.dtype
        np.testing.assert_array_equal(a.point, b.point)
        assert name in a.program.op_names
    # Several ops in one case: the first always, the others where their arguments fit.
    reached = set()
    for seed in range(10):
        case = probe_case(("sin", "arctan", "log1p"), seed)
        assert case is not None and "sin" in case.program.op_names
        reached |= case.program.op_names
    assert {"arctan", "log1p"} <= reached


def test_the_sweep_puts_a_probe_exactly_on_each_special_value_no_round_hit() -> None:
    """After a round, each attainable special value no check has hit exactly gets a probe
    case aimed exactly at it (relu6 at 6, log10 at 1), and each argument kind no check has
    differentiated one that takes it (pow's exponent as a Python float), at most ``sweep``
    times each, ``SWEEP_OPS`` cases a round."""
    from hessdiff.backends import get_variant
    from hessdiff.harness.campaign import SWEEP_OPS
    from hessdiff.harness.ops import CATALOGUE

    ops = ("relu6", "log10", "pow")
    config = CampaignConfig(seed=2, ops=ops, dtypes=("float64",), sweep=2, max_ops=1)
    # Every op reached, no special value hit, the exponent only ever an array.
    seen = {"jax:fwdrev": {"checks": 1, "pattern:TT": 1, "pattern:TC": 1, "pattern:CT": 1, "kind:1:array": 1}}
    campaign = Campaign([get_variant("jax:fwdrev")], config, coverage={name: seen for name in ops})
    campaign._deadline = time.monotonic() + 3600  # by construction, not by the clock
    rounds = 0
    while (checked := campaign._sweep_wanted()) and rounds < 40:
        assert checked <= SWEEP_OPS
        rounds += 1
    for name, label in (("relu6", "6"), ("log10", "1")):
        k = CATALOGUE[name].special_names.index(label)
        assert campaign.stats.coverage[name]["jax:fwdrev"].get(f"exact:{k}", 0), (name, label)
        assert k not in campaign.steering.missing().get(name, ()), (name, label)
    assert campaign.stats.coverage["pow"]["jax:fwdrev"].get("kind:1:float", 0)
    assert "log10@0" not in campaign._swept  # an edge: no exact probe
    assert max(campaign._swept.values()) <= 2


def test_the_unjudged_fraction_is_reported_per_variant_as_well_as_overall() -> None:
    """Where ill-conditioned entries come from: overall and by variant (a backend of
    another accuracy, or programs that saturate, show up on their own)."""
    from hessdiff.harness.campaign_stats import CampaignStats

    stats = CampaignStats()
    stats.entries.update({"jax:fwdrev": 100, "mlx:fwdrev": 50, "torch:func": 0})
    stats.ill_conditioned.update({"jax:fwdrev": 1, "mlx:fwdrev": 14})
    data = stats.to_json()
    assert data["unjudged_frac"] == 0.1
    assert data["unjudged_frac_by_variant"] == {"jax:fwdrev": 0.01, "mlx:fwdrev": 0.28}


def test_all_perturbations_but_one_move_a_huge_element_to_an_ordinary_value() -> None:
    """An element the generator drew huge (saturating tanh) stays huge under a relative
    perturbation; every perturbation after the first ``HUGE_COPIES`` redraws it from
    [-2, 2], so the program's ordinary region is checked too. The other elements, and
    every point of a case without a huge element, are the relative perturbations as
    before."""
    from hessdiff.harness.campaign import HUGE_COPIES, ORDINARY_MAGNITUDE, _points

    program = Program(3, (Node("input"), op("tanh", 0), op("sum", 1)))
    huge = _points(Case(program, np.array([0.5, -655.0, 1e-30]), "float64"), 16)
    assert len(huge) == 16 and huge[0].tolist() == [0.5, -655.0, 1e-30]
    kept = [p for p in huge[1:] if abs(p[1]) > ORDINARY_MAGNITUDE]
    moved = [p for p in huge[1:] if abs(p[1]) <= 2.0]
    assert HUGE_COPIES == 1 and len(kept) == 1 and len(moved) == 14
    assert abs(huge[1][1] + 655.0) < 200.0  # the copy kept is a relative perturbation
    assert all(abs(p[0] - 0.5) < 1.0 and abs(p[2]) < 1.0 for p in huge[1:])  # the others: relative
    plain = _points(Case(program, np.array([0.5, -6.5, 1e-30]), "float64"), 16)
    assert all(abs(p[1]) > 2.0 for p in plain[1:])  # a relative perturbation of -6.5, never redrawn


class _SevensAgain(_Sevens):
    """The same wrong Hessian from a second variant."""

    name = "jax:wrong-again"


@pytest.mark.parametrize("one_route", [True, False])
def test_a_fault_of_two_variants_of_one_route_is_one_finding(one_route: bool, monkeypatch) -> None:
    """Findings are signed by framework and route (``Finding.signature``), not by variant:
    two variants on one code path that fail alike are one finding with their hits added,
    and a later hit of either is known; on two routes they are two findings."""
    monkeypatch.setattr("hessdiff.harness.campaign.UNMASK_SHARE", -1.0)
    routes = {"jax:wrong": "fwd-over-rev", "jax:wrong-again": "fwd-over-rev" if one_route else "rev-over-rev"}
    for module in ("campaign_records", "findings"):
        monkeypatch.setattr(f"hessdiff.harness.{module}.variant_route", routes.__getitem__)
    case = _case(op("arctan", 0), op("square", 1), op("sum", 2))
    campaign = Campaign([_Sevens(), _SevensAgain()], CampaignConfig(seed=1, ops=("arctan",), dtypes=("float64",)))
    campaign._deadline = time.monotonic() + 60.0
    with pytest.raises(NewFinding):
        campaign._check(case)
    campaign._collect(reduce=False)
    signatures = sorted(campaign.findings)
    if one_route:
        assert signatures == ["jax|fwd-over-rev|wrong_value|float64|arctan+square+sum"]
        [finding] = campaign.findings.values()
        assert finding.count == 2
        campaign._raised.clear()  # a new round: every variant runs again
        campaign._check(case)  # known now, from either variant: nothing raised
        assert finding.count == 4
    else:
        assert signatures == ["jax|fwd-over-rev|wrong_value|float64|arctan+square+sum",
                              "jax|rev-over-rev|wrong_value|float64|arctan+square+sum"]
