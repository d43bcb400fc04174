"""The judge pool: a program's points judged in other processes, with the same verdicts."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hessdiff.backends import BackendVariant, get_variant, register
from hessdiff.backends.registry import unregister
from hessdiff.harness.batch import check_program
from hessdiff.harness.ir import Node, Program, op
from hessdiff.harness.judge_pool import JudgePool, judge_point
from hessdiff.harness.oracle import evaluate
from hessdiff.harness.strategies import Case
from planted import PlantedBackend

# A kink at every fourth point (relu(0)), a point outside the domain (log of -0.5), and
# a framework-specific rule scale (copysign) that makes scale_for evaluate again.
# Cross terms (x0 * x1) for the planted fault that drops them.
KINKED = Program(2, (Node("input"), op("gather", 0, idx=(1, 0)), op("mul", 0, 1), op("relu", 0), op("square", 3),
                     op("copysign", 0, 1), op("add", 4, 5), op("add", 6, 2), op("sum", 7)))
LOG = Program(2, (Node("input"), op("log", 0), op("sum", 1)))
POINTS = [np.array(p) for p in ([0.3, -0.7], [0.0, 0.5], [1.1, 0.4], [-0.2, 0.9], [0.0, 0.0], [-0.5, 2.0])]


@pytest.fixture(scope="module")
def planted():
    backend = register(PlantedBackend())
    yield backend
    unregister(backend.name)


@pytest.fixture(scope="module")
def pool():
    with JudgePool(2) as judges:
        yield judges


def _verdicts(batch) -> list[tuple[tuple[float, ...], str, list[tuple[str, str, str]]]]:
    return [(tuple(r.case.point), r.status, sorted((v.variant, v.kind.value, v.explanation) for v in r.verdicts))
            for r in batch.judged]


@pytest.mark.parametrize("program", [KINKED, LOG], ids=["kinked", "log"])
def test_the_pool_gives_the_verdicts_of_one_process(planted, pool, program: Program) -> None:
    variants = [BackendVariant(planted, "no_cross"), get_variant("torch:func")]
    alone = check_program(program, POINTS, "float64", variants)
    pooled = check_program(program, POINTS, "float64", variants, pool)
    assert _verdicts(pooled) == _verdicts(alone)
    assert (pooled.checked, pooled.screened, pooled.out_of_domain) == (alone.checked, alone.screened,
                                                                      alone.out_of_domain)
    assert pooled.pool_seconds > 0 and alone.pool_seconds == 0
    if program is KINKED:  # no_cross drops x0 * x1's cross term, and the pool catches it
        assert any(v.kind.is_failure for r in pooled.judged[1:] for v in r.verdicts)


def test_an_oracle_result_travels_with_its_lazy_framework_scales() -> None:
    x = np.array([1e-6, 1.0])
    oracle = evaluate(KINKED, x, "float32")
    assert oracle.framework_scales  # copysign's rule scale is some framework's own
    framework = oracle.framework_scales[0]
    copy = pickle.loads(pickle.dumps(oracle))
    np.testing.assert_array_equal(copy.scale_for(framework), oracle.scale_for(framework))
    assert not np.array_equal(oracle.scale_for(framework), oracle.hessian_scale)


def test_a_point_outside_the_domain_is_out_of_domain_in_the_pool(pool) -> None:
    result, seconds = pool.submit(Case(LOG, np.array([-0.5, 2.0]), "float64"), {}).result()
    assert result.status == "out_of_domain" and result.oracle is None and seconds >= 0
    assert judge_point(Case(LOG, np.array([0.5, 2.0]), "float64"), {})[0].status == "judged"


def test_a_pool_needs_a_process() -> None:
    with pytest.raises(ValueError, match="at least one"):
        JudgePool(0)


def test_judge_processes_end_when_their_parent_is_killed(tmp_path) -> None:
    """A campaign killed with SIGKILL leaves no judge process behind (holding its stdout
    open, which made a caller reading that pipe wait forever)."""
    script = (
        "import os, sys, numpy as np; from hessdiff.harness.judge_pool import JudgePool; "
        "from hessdiff.harness.strategies import Case; from test_judge_pool import LOG; "
        "pool = JudgePool(2); pool.judge_all([(Case(LOG, np.array([0.5, 2.0]), 'float64'), {})] * 2); "
        "print(*pool._executor._processes, flush=True); os.kill(os.getpid(), 9)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == -9, proc.stderr
    children = [int(pid) for pid in proc.stdout.split()]
    assert children
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            return not any(line.startswith("State:") and "Z" in line for line in fh)
    except OSError:
        return False


def test_a_judge_process_that_dies_loses_no_verdict_and_the_pool_restarts(planted, caplog) -> None:
    """A child killed while it holds a point (out of memory, a stray signal) leaves that
    point to be judged in this process, with the verdict it would have had, and the next
    points go to a fresh pool: never an internal error that ends the campaign."""
    variants = [BackendVariant(planted, "no_cross"), get_variant("torch:func")]
    alone = check_program(KINKED, POINTS, "float64", variants)
    with JudgePool(2) as judges:
        case = Case(KINKED, POINTS[1], "float64")
        judges.judge_all([(case, {})])  # the children started
        for pid in list(judges._executor._processes):
            os.kill(pid, 9)
        time.sleep(0.5)
        with caplog.at_level("WARNING", logger="hessdiff.harness.judge_pool"):
            pooled = check_program(KINKED, POINTS, "float64", variants, judges)
        assert judges.restarts == 1 and "judge process died" in caplog.text
        assert _verdicts(pooled) == _verdicts(alone)
        again = check_program(KINKED, POINTS, "float64", variants, judges)
        assert _verdicts(again) == _verdicts(alone) and judges.restarts == 1 and again.pool_seconds > 0
