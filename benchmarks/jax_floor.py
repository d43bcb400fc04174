"""What one new program costs JAX and Equinox, at best: the floor under issue 17's target.

``run.py`` measures hessdiff end to end; this script measures only the frameworks, on the
same workload (``run.workload``: the campaign's generator, 32 points a program, float64),
to say how fast any harness could check new programs with them on this machine:

* **compiled**: ``jit(vmap(H))`` of each program, split into tracing, lowering, XLA
  compilation and running (``jit(...).trace(X).lower().compile()``), for ``jax.hessian``
  and ``eqx.filter_hessian``: with XLA's default options (a user's ``jit``), at the
  screens' optimisation level 0 (``SCREEN_COMPILER_OPTIONS``), and ``--group`` programs
  traced into one ``jit`` compiled once at that level, each program's share;
* **eager**: ``vmap(H)(X)`` op by op, as a user who never calls ``jit`` runs it, in one
  process that keeps every per-primitive cache: the first call of each program, how many
  XLA compilations it caused and how long they took, and a second call of the same
  program through a freshly lowered function (what a warm cache costs).

Every figure is a mean over the programs (throughput is programs over total time). The
last line is ``floor_ms_per_program=<f> ceiling_programs_per_s=<c>``: the least any way
measured here costs JAX plus Equinox for one new program, and the throughput that allows
on this machine's cores if nothing else (torch, MLX, the oracle, the harness) took any time.

    PYTHONPATH=. python benchmarks/jax_floor.py                  # 60 programs, about 4 minutes
    PYTHONPATH=. python benchmarks/jax_floor.py --programs 20 --skip-eager
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import SEED, workload  # noqa: E402  (the benchmark beside this one)

from hessdiff.backends import get_variant  # noqa: E402
from hessdiff.backends.jax_backend import SCREEN_COMPILER_OPTIONS  # noqa: E402


def _hessians(name: str) -> Callable[[Any], Any]:
    """``vmap`` of the variant's Hessian, as its batched screen composes it (no ``jit``)."""
    import equinox as eqx
    import jax

    if name == "jax":
        return lambda f: jax.vmap(jax.hessian(f))
    return lambda f: eqx.filter_vmap(eqx.filter_hessian(f))


def compiled(load: list, name: str, group: int, options: dict[str, Any] | None = None) -> dict[str, float]:
    """Mean milliseconds per program of each stage of ``jit(vmap(H))``, ``group``
    programs to one ``jit`` (the mean, not the median: throughput is programs over total
    time, and a few large programs take most of it)."""
    import jax
    import jax.numpy as jnp

    backend = get_variant("jax:fwdrev").backend
    batched = _hessians(name)
    stages: dict[str, list[float]] = {"trace": [], "lower": [], "compile": [], "run": []}
    for k in range(0, len(load) - group + 1, group):
        part = load[k:k + group]
        fns = [batched(backend.lower(program, "float64")) for program, _ in part]
        xs = [jnp.asarray(np.stack(points)) for _, points in part]

        def every(*args: Any, fns: list = fns) -> tuple:
            return tuple(h(x) for h, x in zip(fns, args))

        t0 = time.perf_counter()
        traced = jax.jit(every).trace(*xs)
        t1 = time.perf_counter()
        lowered = traced.lower()
        t2 = time.perf_counter()
        executable = lowered.compile(compiler_options=options) if options else lowered.compile()
        t3 = time.perf_counter()
        for out in executable(*xs):
            np.asarray(out)
        t4 = time.perf_counter()
        for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[stage].append(seconds * 1e3 / len(part))
    return {stage: statistics.mean(ms) for stage, ms in stages.items()}


def eager(load: list, name: str) -> dict[str, float]:
    """Mean milliseconds per program of the first eager call (and its median), XLA
    compilations per program, and a second call through a freshly lowered function."""
    import jax.numpy as jnp
    from jax._src import compiler

    backend = get_variant("jax:fwdrev").backend
    batched = _hessians(name)
    compiles = [0, 0.0]
    original = compiler.backend_compile_and_load

    def counted(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            compiles[0] += 1
            compiles[1] += time.perf_counter() - start

    compiler.backend_compile_and_load = counted
    first, second, count, compile_ms = [], [], [], []
    try:
        for program, points in load:
            x = jnp.asarray(np.stack(points))
            before = list(compiles)
            start = time.perf_counter()
            np.asarray(batched(backend.lower(program, "float64"))(x))
            first.append((time.perf_counter() - start) * 1e3)
            count.append(compiles[0] - before[0])
            compile_ms.append((compiles[1] - before[1]) * 1e3)
            start = time.perf_counter()
            np.asarray(batched(backend.lower(program, "float64"))(x))
            second.append((time.perf_counter() - start) * 1e3)
    finally:
        compiler.backend_compile_and_load = original
    half = len(load) // 2
    return {"first": statistics.mean(first), "first_median": statistics.median(first),
            "first_later_half": statistics.mean(first[half:]),
            "compiles": statistics.mean(count), "compiles_later_half": statistics.mean(count[half:]),
            "compile_ms": statistics.mean(compile_ms), "second": statistics.mean(second)}


def measure(name: str, way: str, programs: int, seed: int, group: int) -> dict[str, float]:
    """One measurement in a process of its own (``main`` spawns it): JAX's caches
    (traces, per-primitive executables) are shared by every transform in a process, so
    Equinox measured after JAX, or eager after compiled, would read the other's work."""
    import jax

    jax.config.update("jax_enable_x64", True)
    load = workload(programs, 32, seed=seed)
    if way == "eager":
        return eager(load, name)
    options = SCREEN_COMPILER_OPTIONS if way.endswith("screen") else None
    return compiled(load, name, 1 if way.startswith("jit") else group, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--group", type=int, default=10, help="programs to one jit in the grouped measurement")
    parser.add_argument("--skip-eager", action="store_true")
    args = parser.parse_args()

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import jax

    print(f"cpus: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}; jax {jax.__version__}; "
          f"{args.programs} programs x 32 points, float64, seed {args.seed}; each line a fresh process", flush=True)
    floor: dict[str, float] = {}
    ways = ("jit", "jit screen", "group screen") + (() if args.skip_eager else ("eager",))
    for name in ("jax", "equinox"):
        totals: dict[str, float] = {}
        for way in ways:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                ms = pool.submit(measure, name, way, args.programs, args.seed, args.group).result()
            if way == "eager":
                totals["eager, first call"] = ms["first"]
                print(f"{name} eager: first call {ms['first']:.1f} ms/program (median {ms['first_median']:.1f}; later half "
                      f"{ms['first_later_half']:.1f}), {ms['compiles']:.1f} XLA compilations/program (later half "
                      f"{ms['compiles_later_half']:.1f}) taking {ms['compile_ms']:.1f} ms; the same program "
                      f"again, freshly lowered, {ms['second']:.1f} ms", flush=True)
                continue
            size = 1 if way.startswith("jit") else args.group
            how = ", XLA optimisation level 0 (the screens')" if way.endswith("screen") else ""
            totals[f"jit, {size} a compile{how}"] = sum(ms.values())
            print(f"{name} compiled, {size} program(s) a jit{how}: " + ", ".join(
                f"{stage} {value:.1f}" for stage, value in ms.items())
                + f" ms/program; total {sum(ms.values()):.1f}", flush=True)
        floor[name] = min(totals.values())
        print(f"{name}: the cheapest way for a new program: {min(totals, key=totals.__getitem__)}, "
              f"{floor[name]:.1f} ms", flush=True)
    both = sum(floor.values())
    ceiling = (os.cpu_count() or 1) * 1e3 / both
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"floor_ms_per_program={both:.1f} ceiling_programs_per_s={ceiling:.2f}")


if __name__ == "__main__":
    main()
