"""The mutation score: how many deliberately broken frameworks hessdiff catches.

Each mutant (``benchmarks/mutant_backends.py``) is one real framework with one op's
derivative rule wrong in one narrow region. For each, one seeded campaign of a fixed
budget (``hessdiff.harness.campaign.Campaign``; float64 and float32) checks the mutant beside one
honest variant of each other framework (``jax:jit``, ``equinox:filter_jit``,
``torch:func``, ``mlx:fwdrev``), on the mutated op plus a seeded sample of 8 other ops
its framework lowers. Every variant runs in a worker process (``hessdiff.harness.worker``): one
per framework, shared by the honest variant, the mutants and their twins, so a mutant's
exception is a crash outcome and the frameworks are imported once.

A mutant is **killed** when the campaign reports a failing finding (``Kind.is_failure``:
not noise, not convention) against it that the baseline does not cover, on a program
that contains the mutated op, at a case where the mutant's Hessian differs from its
twin's (the same rule with the mutation off). A failing finding the twin shares is the
framework's own (or the wrapper's), not the mutation's, and kills nothing.

**false_alarms** counts failing findings against the honest variants that the baseline
does not cover. **unjudged_frac** is the fraction of checked Hessian entries the judge
left unjudged as ill-conditioned, summed over the campaigns (0 where the judge does not
report it).

    python benchmarks/mutants.py                        # every mutant, 60 s each: ~45 minutes
    python benchmarks/mutants.py --only mut-div-const,mut-relu-nan --budget 20
    python benchmarks/mutants.py --jobs 2 --json reports/mutants.json

One line per mutant, then, as the last line,
``mutation_score=<killed>/<total> false_alarms=<n> unjudged_frac=<f>``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import random
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (str(ROOT), str(ROOT / "benchmarks")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402

from hessdiff.backends import Absent, BackendVariant, get_variant  # noqa: E402
from hessdiff.harness.baseline import Baseline, load_baseline  # noqa: E402
from hessdiff.harness.campaign import Campaign, CampaignConfig  # noqa: E402
from hessdiff.harness.campaign_stats import CampaignStats  # noqa: E402
from hessdiff.harness.engine import check_case  # noqa: E402
from hessdiff.harness.findings import Finding, Kind  # noqa: E402
from hessdiff.harness.ir import Node, Program, op  # noqa: E402
from hessdiff.harness.ops import CATALOGUE  # noqa: E402
from hessdiff.harness.outcomes import HarnessError, Outcome, Runner  # noqa: E402
from hessdiff.harness.strategies import Case  # noqa: E402
from hessdiff.harness.worker import IsolatedVariant, isolate  # noqa: E402
from mutant_backends import FRAMEWORKS, MUTANTS, Mutant, get_mutant, honest_variant, region_hits  # noqa: E402

BASELINE = ROOT / "reports" / "baseline.json"
OTHER_OPS = 8
SAMPLE = 20  # checks of a survivor's op re-run with the mutant and its twin
KEEP = 400  # checks of the op kept per campaign
FAILING = frozenset(k.value for k in Kind if k.is_failure)
DTYPES = ("float64", "float32")


def campaign_ops(mutant: Mutant, seed: int) -> tuple[str, ...]:
    """The mutated op, then a seeded sample of ``OTHER_OPS`` other ops its framework
    lowers (the same sample whether the mutant runs alone or with the others)."""
    lowerings = mutant.variant_of().backend.lowerings
    pool = sorted(name for name in CATALOGUE
                  if name != mutant.op and not isinstance(lowerings.get(name), Absent))
    rng = random.Random(zlib.crc32(f"{seed}:{mutant.variant}".encode()))
    return (mutant.op, *rng.sample(pool, OTHER_OPS))


class _Recording(Runner):
    """The mutant's runner: counts its checks and keeps those whose programs contain its
    op (up to ``KEEP``), for the region count and a survivor's diagnosis after the
    campaign, off its clock."""

    def __init__(self, inner: IsolatedVariant, mutant: Mutant) -> None:
        self.inner = inner
        self.mutant = mutant
        self.name = inner.name
        self.variant = inner.variant
        self.runs = 0
        self.cases: dict[tuple[str, bytes, str], Case] = {}

    def run(self, case: Case) -> Outcome:
        self._keep(case)
        return self.inner.run(case)

    def submit(self, case: Case) -> None:
        self._keep(case)
        self.inner.submit(case)

    def collect(self) -> Outcome:
        return self.inner.collect()

    def _keep(self, case: Case) -> None:
        self.runs += 1
        if self.mutant.op in case.program.op_names and len(self.cases) < KEEP:
            key = (case.program.dumps(), np.asarray(case.point, dtype=np.float64).tobytes(), case.dtype)
            self.cases.setdefault(key, case)

    def in_region(self) -> list[Case]:
        """The kept checks that reach the mutant's region."""
        return [case for case in self.cases.values()
                if region_hits(self.mutant, case.program, case.point, case.dtype)]


def _differs(a: Outcome, b: Outcome) -> bool:
    if a.status != b.status:
        return True
    if a.status != "ok":
        return False
    assert a.hessian is not None and b.hessian is not None
    return a.hessian.shape != b.hessian.shape or not np.array_equal(a.hessian, b.hessian, equal_nan=True)


def _change(mutant: Runner, twin: Runner, case: Case) -> tuple[float, float] | None:
    """How much the mutation changes the Hessian at ``case``: the largest |mutant - twin|,
    and that over the largest |twin| entry (inf, inf for a crash, a NaN or a shape the
    twin has not); None where it changes nothing, or where hessdiff itself fails."""
    try:
        a, b = mutant.run(case), twin.run(case)
    except HarnessError:
        return None
    if not _differs(a, b):
        return None
    inf = float("inf")
    if a.status != "ok" or b.status != "ok" or a.hessian.shape != b.hessian.shape:  # type: ignore[union-attr]
        return inf, inf
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a.hessian - b.hessian)  # type: ignore[operator]
        size = float(np.nanmax(np.abs(b.hessian), initial=0.0))  # type: ignore[arg-type]
    if np.isnan(diff).any():
        return inf, inf
    largest = float(diff.max())
    return largest, largest / max(size, float(np.finfo(np.float64).tiny))


def _changed(mutant: Runner, twin: Runner, case: Case) -> bool:
    return _change(mutant, twin, case) is not None


def _unjudged(stats: CampaignStats) -> tuple[int, int]:
    """(unjudged entries, checked entries) if the judge reports them, else (0, 0)."""

    def count(value: Any) -> int:
        if isinstance(value, Mapping):
            return int(sum(value.values()))
        return int(value or 0)

    for numerator, denominator in (("ill_conditioned", "entries"), ("unjudged", "entries"),
                                   ("unjudged_entries", "checked_entries")):
        if hasattr(stats, numerator):
            return count(getattr(stats, numerator, 0)), count(getattr(stats, denominator, 0))
    return 0, 0


def _brief(finding: Finding, baseline: Baseline) -> dict[str, Any]:
    return {
        "variant": finding.variant,
        "kind": finding.kind.value,
        "baselined": baseline.entry_for(finding) is not None,
        "dtype": finding.dtype,
        "signature": finding.signature,
        "program": finding.program.pretty(),
        "point": [float(v) for v in np.asarray(finding.point).ravel()],
        "explanation": finding.explanation,
    }


def _short(text: str, width: int = 150) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


class Bench:
    """The honest workers (one per framework), started once, shared by every campaign."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.honest = dict(zip(FRAMEWORKS, isolate([get_variant(honest_variant(f)) for f in FRAMEWORKS],
                                                   timeout=timeout)))
        warm = Case(Program(2, (Node("input"), op("square", 0), op("sum", 1))), np.array([0.5, -1.0]), "float64")
        for runner in self.honest.values():  # import every framework before any clock starts
            runner.run(warm)

    def close(self) -> None:
        for runner in self.honest.values():
            runner.close()

    def runner(self, variant: BackendVariant) -> IsolatedVariant:
        """``variant`` in the worker of its framework."""
        framework = variant.name.split(":", 1)[0]
        return IsolatedVariant(variant, timeout=self.timeout, worker=self.honest[framework].worker)

    def run(self, mutant: Mutant, budget: float, seed: int, baseline: Baseline) -> dict[str, Any]:
        recording = _Recording(self.runner(mutant.variant_of()), mutant)
        twin = self.runner(mutant.variant_of(twin=True))
        others = [self.honest[f] for f in FRAMEWORKS if f != mutant.framework]
        ops = campaign_ops(mutant, seed)
        config = CampaignConfig(budget_seconds=budget, seed=seed, dtypes=DTYPES, ops=ops)
        campaign = Campaign([recording, *others], config, baseline=baseline)
        start = time.monotonic()
        campaign.run()
        seconds = time.monotonic() - start
        findings = campaign.result()
        mine = [f for f in findings if f.variant == mutant.name]
        failing = [f for f in mine if f.kind.is_failure and baseline.entry_for(f) is None]
        killer: Finding | None = None
        unconfirmed: list[Finding] = []
        for finding in sorted(failing, key=lambda f: f.program.size):
            if mutant.op not in finding.program.op_names:
                unconfirmed.append(finding)
                continue
            case = Case(finding.program, np.asarray(finding.point, dtype=np.float64), finding.dtype)
            if _changed(recording.inner, twin, case):
                killer = finding
                break
            unconfirmed.append(finding)
        region = recording.in_region()
        # A survivor: in how many checks of its region did the mutation change the Hessian
        # at all, and what did the judge say there?
        sample = (region or list(recording.cases.values()))[:SAMPLE] if killer is None else []
        changes = [(case, _change(recording.inner, twin, case)) for case in sample]
        changed = [(case, change) for case, change in changes if change is not None]
        verdicts, details = _verdicts_at(changed, recording.inner, others)
        largest = max((change for _, change in changed), default=(0.0, 0.0))
        reason = _reason(mutant, killer, unconfirmed, mine, recording, len(region), len(sample), verdicts, largest,
                         details)
        false_alarms = [f for f in findings
                        if f.variant != mutant.name and f.kind.is_failure and baseline.entry_for(f) is None]
        unjudged, entries = _unjudged(campaign.stats)
        return {
            "name": mutant.name,
            "class": mutant.kind,
            "framework": mutant.framework,
            "op": mutant.op,
            "region": mutant.region,
            "description": mutant.description,
            "killed": killer is not None,
            "kind": killer.kind.value if killer is not None else _survivor_kind(mutant.op, unconfirmed, mine),
            "reason": reason,
            "seconds": round(seconds, 1),
            "ops": list(ops),
            "examples": campaign.stats.examples,
            "backend_seconds": {k: round(v, 1) for k, v in campaign.stats.seconds.items()},
            "mutant_runs": recording.runs,
            "op_checks": len(recording.cases),
            "region_checks": len(region),
            "sampled_checks": len(sample),
            "changed_checks": len(changed),
            "judged_there": verdicts,
            "changed_cases": details[:6],
            # A survivor's first checks in its region, for a diagnosis by hand.
            "region_cases": [{"dtype": c.dtype, "point": np.asarray(c.point).tolist(), "program": str(c.program)}
                             for c in (region[:4] if killer is None else [])],
            "killer": _brief(killer, baseline) if killer is not None else None,
            "unconfirmed": [_brief(f, baseline) for f in unconfirmed],
            "mutant_findings": [_brief(f, baseline) for f in mine],
            "false_alarms": [_brief(f, baseline) for f in false_alarms],
            "harness_errors": list(campaign.stats.harness_errors),
            "unjudged": unjudged,
            "entries": entries,
        }


def _survivor_kind(op: str, unconfirmed: Sequence[Finding], mine: Sequence[Finding]) -> str:
    """The kind a survivor's line shows: of the failing finding not credited to the
    mutation (marked ``?``), else of the dismissed one, else ``-``."""
    if unconfirmed:
        return unconfirmed[0].kind.value + "?"
    dismissed = sorted((f for f in mine if not f.kind.is_failure), key=lambda f: op not in f.program.op_names)
    return dismissed[0].kind.value if dismissed else "-"


def _verdicts_at(cases: Sequence[tuple[Case, tuple[float, float]]], mutant: Runner,
                 others: Sequence[Runner]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """What the judge says of the mutant at each case (beside the same honest variants
    as in its campaign): a verdict kind, "passed", or "ill-conditioned" (every entry's
    honest bound larger than the entry: unjudged). Also the cases, for the report."""
    verdicts: Counter[str] = Counter()
    details = []
    for case, change in cases:
        try:
            result = check_case(case, [mutant, *others])
        except HarnessError as exc:
            verdict, explanation = "hessdiff error", str(exc)
        else:
            mine = [v for v in result.verdicts if v.variant == mutant.name]
            judged, ill = getattr(result, "entries", {}).get(mutant.name, (0, 0))
            verdict = ("out of domain" if result.oracle is None else
                       "+".join(sorted({v.kind.value for v in mine})) if mine else
                       "not judged" if not judged else  # e.g. intermediates near the dtype's overflow
                       "ill-conditioned" if ill == judged else "passed")
            explanation = mine[0].explanation if mine else ""
        verdicts[verdict] += 1
        details.append({"dtype": case.dtype, "point": [float(v) for v in case.point], "program": case.program.pretty(),
                        "program_json": case.program.dumps(), "change": change[0], "relative_change": change[1],
                        "verdict": verdict, "explanation": explanation})
    return dict(verdicts), details


def _reason(mutant: Mutant, killer: Finding | None, unconfirmed: Sequence[Finding], mine: Sequence[Finding],
            recording: _Recording, region: int, sampled: int, verdicts: Mapping[str, int],
            largest: tuple[float, float], details: Sequence[Mapping[str, Any]]) -> str:
    if killer is not None:
        return f"{killer.dtype}, {killer.program.size} ops: {killer.explanation}"
    changed = sum(verdicts.values())
    where = (f"ran on {recording.runs} cases, {len(recording.cases)} with {mutant.op}, {region} in its region; "
             f"the Hessian changed in {changed} of {sampled} re-run")
    if changed:
        where += (f" (by up to {largest[0]:.2g}, {largest[1]:.2g}x its largest entry; judged there: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) + ")")
    if unconfirmed:
        f = unconfirmed[0]
        return (f"{where}; {len(unconfirmed)} failing finding(s), none the mutation's (its twin fails alike or the "
                f"op is absent): {f.kind.value} {f.dtype}: {f.explanation}")
    if not region:
        return f"{where}: generation never reached the region"
    if not changed:
        return f"{where}: no case where the mutation shows"
    failing = [d for d in details if FAILING & set(d["verdict"].split("+"))]
    masks = [f for f in mine if f.kind.is_failure and any(  # the failing ones left are baselined
        f.kind.value in d["verdict"].split("+") and f.dtype == d["dtype"] for d in failing)]
    if masks:
        return (f"{where}; masked: those hits share variant, kind and dtype with the baselined finding "
                f"{masks[0].signature}, and a campaign round keeps one record per (variant, kind, dtype): a "
                "round's first hit, baselined, absorbs the later ones")
    if failing:
        return f"{where}; the campaign reported none of those failing verdicts"
    dismissed = sorted((f for f in mine if not f.kind.is_failure), key=lambda f: mutant.op not in f.program.op_names)
    if dismissed and mutant.op in dismissed[0].program.op_names:
        return f"{where}; finding judged {dismissed[0].kind.value}: {dismissed[0].explanation}"
    return f"{where}; no finding"


def _line(result: Mapping[str, Any]) -> str:
    status = "killed" if result["killed"] else "SURVIVED"
    return (f"{result['name']:36} {result['class']:14} {result['framework']:8} {result['op']:10} {status:8} "
            f"{result['kind']:12} {_short(result['reason'])}  {result['seconds']:.0f}s")


def _summary(results: Sequence[Mapping[str, Any]]) -> str:
    killed = sum(1 for r in results if r["killed"])
    false_alarms = sum(len(r["false_alarms"]) for r in results)
    unjudged = sum(r["unjudged"] for r in results)
    entries = sum(r["entries"] for r in results)
    frac = unjudged / entries if entries else 0.0
    return f"mutation_score={killed}/{len(results)} false_alarms={false_alarms} unjudged_frac={frac:.4f}"


def _select(only: str | None) -> list[Mutant]:
    if not only:
        return list(MUTANTS)
    try:
        return [get_mutant(name.strip()) for name in only.split(",") if name.strip()]
    except KeyError as exc:
        raise SystemExit(f"mutants.py: {exc.args[0]}") from None


def _run_in_process(mutants: Sequence[Mutant], args: argparse.Namespace) -> list[dict[str, Any]]:
    baseline = load_baseline(BASELINE)
    bench = Bench(timeout=max(30.0, args.budget))
    results = []
    try:
        for mutant in mutants:
            result = bench.run(mutant, args.budget, args.seed, baseline)
            results.append(result)
            print(_line(result), flush=True)
    finally:
        bench.close()
    return results


def _run_in_subprocesses(mutants: Sequence[Mutant], args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--jobs N``: each mutant in a process of its own (``--only``), N at a time."""

    def one(mutant: Mutant) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="hessdiff-mutant-") as tmp:
            out = Path(tmp) / "result.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--only", mutant.variant,
                       "--budget", str(args.budget), "--seed", str(args.seed), "--json", str(out), "--jobs", "1"]
            proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0 or not out.is_file():
                raise RuntimeError(f"{mutant.name}: exit {proc.returncode}: {proc.stderr[-2000:]}")
            return json.loads(out.read_text(encoding="utf-8"))["mutants"][0]

    results: dict[str, dict[str, Any]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(one, m): m for m in mutants}
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            results[result["name"]] = result
            print(_line(result), flush=True)
    return [results[m.name] for m in mutants]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of campaign per mutant (default 60)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="these mutants only (mut-div-const or jax:mut-div-const)")
    parser.add_argument("--seed", type=int, default=0, help="the campaigns' seed (and the op samples')")
    parser.add_argument("--json", metavar="PATH", help="write the per-mutant results here")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once, each in its own process")
    args = parser.parse_args(argv)
    if args.budget <= 0 or args.jobs < 1:
        parser.error(f"--budget={args.budget} and --jobs={args.jobs}, but both must be positive.")
    mutants = _select(args.only)
    started = time.monotonic()
    if args.jobs > 1 and len(mutants) > 1:
        results = _run_in_subprocesses(mutants, args)
    else:
        results = _run_in_process(mutants, args)
    for result in results:
        for alarm in result["false_alarms"]:
            print(f"false alarm beside {result['name']}: {alarm['variant']} {alarm['kind']} {alarm['dtype']} "
                  f"{alarm['signature']}: {_short(alarm['explanation'], 200)}")
        for error in result["harness_errors"]:
            print(f"hessdiff error beside {result['name']}: {_short(error, 200)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "budget_seconds": args.budget, "seed": args.seed, "dtypes": list(DTYPES),
            "wall_seconds": round(time.monotonic() - started, 1), "summary": _summary(results),
            "mutants": results}, indent=2), encoding="utf-8")
    print(_summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
