"""Throughput of hessdiff on a fixed workload, the fast way and the naive way, in one run.

The workload is fixed: 200 generated programs (the campaign's generator, mixed smooth and
piecewise, MLP shapes included, n <= 8) from a fixed seed, 32 points each (the generated
point, aimed at kinks, plus 31 seeded perturbations of it), float64, one variant of each
of the four backends plus the oracle.

* fast: ``hessdiff.harness.batch.check_program`` -- each backend in its worker process, one
  batched (vmap) Hessian call per program, the four running in parallel with the float
  screening and the oracle, the oracle on every point screening cannot vouch for;
* naive: ``hessdiff.harness.engine.check_case`` -- one point, one eager call per backend and the
  full oracle, in this process. It is measured on the first ``--naive-points`` points
  of every program (default 4 of 32) and scaled to 32: its cost is linear in points.

The last line is ``programs_per_s=<x> speedup_vs_naive=<y> overhead_frac=<z>
peak_rss_mib=<m>``. Overhead is the fast path's wall time not spent waiting for the
frameworks or in the oracle and screen (judging, pickling, confirming); the judge's
one-sided Hessians and per-framework error scales are the oracle's time
(``hessdiff.harness.oracle.busy_seconds``). Peak RSS is this process plus every worker's peak. Worker start-up (importing the frameworks) is done
before the clock starts and reported apart.

    PYTHONPATH=. python benchmarks/run.py [--programs 200] [--naive-points 4]

``--slowest K`` lists the K programs the fast path spent longest on, with their oracle
time: one program held to the oracle's timeout at every point shows up there first.

To compare two trees of the harness with the generator held fixed, save one tree's
workload and check it with the other (this script, the other tree's ``harness``):

    PYTHONPATH=. python benchmarks/run.py --seed 1 --skip-naive --save-workload /tmp/w1.json
    PYTHONPATH=../old python benchmarks/run.py --skip-naive --workload /tmp/w1.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from hessdiff.backends import get_variant
from hessdiff.harness.batch import check_program
from hessdiff.harness.engine import check_case
from hessdiff.harness.ir import Program, program_from_json
from hessdiff.harness.judge_pool import JudgePool, default_judges
from hessdiff.harness.strategies import DEFAULT_OPS, Case, cases
from hessdiff.harness.worker import isolate

VARIANTS = ("jax:fwdrev", "equinox:filter_hessian", "mlx:fwdrev-vmap", "torch:func")
SEED = 20261125


def workload(programs: int, points: int, seed: int = SEED,
             ops: tuple[str, ...] = DEFAULT_OPS) -> list[tuple[Program, list[np.ndarray]]]:
    """``programs`` distinct generated float64 programs with ``points`` points each, drawn
    from ``ops`` (the whole catalogue, or a narrower one to measure what ops cost)."""
    found: list[Case] = []
    seen: set[str] = set()

    @settings(max_examples=programs * 5, database=None, deadline=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(cases(dtypes=("float64",), max_n=8, mlps=True, ops=ops))
    def collect(case: Case) -> None:
        key = case.program.dumps()
        if len(found) < programs and key not in seen:
            seen.add(key)
            found.append(case)

    collect()
    if len(found) < programs:
        raise RuntimeError(f"the generator gave {len(found)} distinct programs, not {programs}")
    rng = np.random.default_rng(seed)
    out = []
    for case in found:
        x = case.point
        extra = [x * (1 + 0.1 * rng.standard_normal(x.shape)) + 0.1 * rng.standard_normal(x.shape)
                 for _ in range(points - 1)]
        out.append((case.program, [x, *extra]))
    return out


def fast(load: list[tuple[Program, list[np.ndarray]]], variants: list, judges: int) -> dict:
    workers = isolate(variants, timeout=300)
    pool = JudgePool(judges) if judges > 1 else None
    start = time.perf_counter()
    for w in workers:  # start every worker (imports the framework) before the clock
        w.run_points(load[0][0], load[0][1][:2], "float64")
    if pool is not None:  # and the judge processes (importing the harness)
        pool.judge_all([(Case(load[0][0], load[0][1][0], "float64"), {})] * judges)
    startup = time.perf_counter() - start
    totals: Counter[str] = Counter()
    backend: Counter[str] = Counter()
    verdicts: Counter[tuple[str, str]] = Counter()
    failing: set[tuple[int, str, str]] = set()
    per_program: list[tuple[float, float, int]] = []  # (wall, oracle, index)
    wall = time.perf_counter()
    for index, (program, points) in enumerate(load):
        started = time.perf_counter()
        result = check_program(program, points, "float64", workers, pool)
        per_program.append((time.perf_counter() - started, result.oracle_seconds, index))
        totals["checked"] += result.checked
        totals["screened"] += result.screened
        totals["judged"] += len(result.judged) - result.out_of_domain
        totals["out_of_domain"] += result.out_of_domain
        totals["oracle_s"] += result.oracle_seconds
        totals["wait_s"] += result.wait_seconds
        totals["pool_s"] += result.pool_seconds
        backend.update(result.backend_seconds)
        for r in result.judged:
            for v in r.verdicts:
                verdicts[v.variant, v.kind.value] += 1
                if v.kind.is_failure:
                    failing.add((index, v.variant, v.kind.value))
    wall = time.perf_counter() - wall
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + sum(w.peak_rss_mib() for w in workers) \
        + (pool.peak_rss_mib() if pool is not None else 0.0)
    for w in workers:
        w.close()
    if pool is not None:
        pool.close()
    return {"wall": wall, "startup": startup, "totals": totals, "backend": backend, "verdicts": verdicts,
            "failing": failing, "rss": rss, "per_program": sorted(per_program, reverse=True)}


def naive(load: list[tuple[Program, list[np.ndarray]]], variants: list, points: int) -> dict:
    backend: Counter[str] = Counter()
    failing: set[tuple[int, str, str]] = set()
    oracle = 0.0
    wall = time.perf_counter()
    for index, (program, pts) in enumerate(load):
        for x in pts[:points]:
            result = check_case(Case(program, x, "float64"), variants)
            for name, outcome in result.outcomes.items():
                backend[name] += outcome.seconds
            for v in result.verdicts:
                if v.kind.is_failure:
                    failing.add((index, v.variant, v.kind.value))
    wall = time.perf_counter() - wall
    oracle = wall - sum(backend.values())
    return {"wall": wall, "backend": backend, "oracle": oracle, "failing": failing}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--naive-points", type=int, default=4,
                        help="points per program for the naive run (scaled to --points)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--seed", type=int, default=SEED, help="the workload's seed (another draw of programs)")
    parser.add_argument("--save-workload", metavar="FILE", help="write the drawn workload (programs, points) as JSON")
    parser.add_argument("--workload", metavar="FILE",
                        help="check this saved workload instead of drawing one (--programs, --points, --seed, "
                             "--without are then ignored)")
    parser.add_argument("--judges", type=int, default=default_judges(), metavar="N",
                        help="judge processes (harness.judge_pool); 1: judge in this process, as before")
    parser.add_argument("--slowest", type=int, default=0, metavar="K",
                        help="list the K programs the fast path spent longest on, with their oracle time "
                             "(one program stuck at the oracle's timeout shows up here first)")
    parser.add_argument("--without", default="", metavar="OP,OP",
                        help="draw programs from the catalogue minus these ops (the same harness on a "
                             "narrower catalogue: what the wider one costs)")
    args = parser.parse_args()
    if args.slowest < 0:
        parser.error(f"--slowest must be 0 or more, not {args.slowest}")
    without = {name for name in args.without.split(",") if name}
    unknown = without - set(DEFAULT_OPS)
    if unknown:
        parser.error(f"unknown op(s) in --without: {', '.join(sorted(unknown))}")
    ops = tuple(name for name in DEFAULT_OPS if name not in without)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus: {os.cpu_count()}")
    t = time.perf_counter()
    if args.workload:
        try:
            with open(args.workload) as f:
                load = [(program_from_json(p), [np.asarray(x, dtype=np.float64) for x in pts]) for p, pts in json.load(f)]
        except (OSError, ValueError, TypeError) as exc:
            parser.error(f"cannot read the workload {args.workload}: {exc}")
        args.points = len(load[0][1]) if load else args.points
    else:
        load = workload(args.programs, args.points, args.seed, ops=ops)
    if args.save_workload:
        with open(args.save_workload, "w") as f:
            json.dump([[p.dumps(), [x.tolist() for x in pts]] for p, pts in load], f)
    kinds = Counter("mlp" if "matmul" in p.op_names else "piecewise" if any(
        o in p.op_names for o in ("relu", "abs", "leaky_relu", "clip", "maximum", "minimum", "where"))
        else "smooth" for p, _ in load)
    print(f"workload: {len(load)} programs x {args.points} points, float64, {len(ops)} ops, seed {args.seed} ({dict(kinds)}); "
          f"generated in {time.perf_counter() - t:.1f} s")
    variants = [get_variant(name) for name in VARIANTS]

    f = fast(load, variants, args.judges)
    tot = f["totals"]
    pairs = len(load) * args.points
    programs_per_s = len(load) / f["wall"]
    print(f"fast: {f['wall']:.1f} s for {pairs} pairs ({tot['checked']} checked, {tot['out_of_domain']} "
          f"out of domain): {programs_per_s:.2f} programs/s, {pairs / f['wall']:.0f} pairs/s; "
          f"worker start-up {f['startup']:.1f} s (not timed)")
    print(f"  oracle judged {tot['judged']} points, screening vouched for {tot['screened']}")
    oracle_busy = tot["oracle_s"] + tot["pool_s"]  # this process's (its wait for the pool included) + the pool's
    busy = sum(f["backend"].values()) + oracle_busy
    share = ", ".join(f"{k} {v:.1f} s ({v / busy:.0%})" for k, v in sorted(f["backend"].items()))
    print(f"  time: {share}, oracle+screen {oracle_busy:.1f} s ({oracle_busy / busy:.0%}) "
          "[shares of busy time; backends run in parallel]")
    if args.judges > 1:
        print(f"  judge pool ({args.judges} processes) busy {tot['pool_s']:.1f} s; this process in the oracle "
              f"or waiting for the pool {tot['oracle_s']:.1f} s")
    overhead = max(f["wall"] - tot["oracle_s"] - tot["wait_s"], 0.0) / f["wall"]
    print(f"  waiting for frameworks {tot['wait_s']:.1f} s; harness overhead {overhead:.1%} of wall")
    print(f"  verdicts: {dict(f['verdicts'])}")
    print(f"  peak RSS (this process + workers + judges): {f['rss']:.0f} MiB")
    for seconds, oracle_seconds, index in f["per_program"][:args.slowest]:
        print(f"  slow: program {index}, {seconds:.1f} s ({oracle_seconds:.1f} s oracle): "
              f"{' '.join(load[index][0].pretty().splitlines()[1:])[:300]}")

    speedup = float("nan")
    if not args.skip_naive:
        n = naive(load, variants, args.naive_points)
        scale = args.points / args.naive_points
        naive_wall = n["wall"] * scale
        speedup = naive_wall / f["wall"]
        share = ", ".join(f"{k} {v * scale:.1f} s" for k, v in sorted(n["backend"].items()))
        print(f"naive: {n['wall']:.1f} s for {args.naive_points} points/program, {naive_wall:.1f} s scaled "
              f"to {args.points}: {len(load) / naive_wall:.3f} programs/s; {share}, oracle and rest "
              f"{n['oracle'] * scale:.1f} s")
        sampled = {(i, v, k) for (i, v, k) in n["failing"]}
        missed = sampled - f["failing"]
        print(f"  failing (program, variant, kind) on the naive points: {len(sampled)}; "
              f"not found by the fast path: {len(missed)} {sorted(missed)[:5]}")
        rss_naive = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS of this process after both runs: {rss_naive:.0f} MiB")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"programs_per_s={programs_per_s:.2f} speedup_vs_naive={speedup:.1f} overhead_frac={overhead:.3f} "
          f"peak_rss_mib={f['rss']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
