"""A backend that aborts, segfaults, hangs or eats memory is a finding, not the end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hessdiff.backends import register
from hessdiff.backends.registry import unregister

from hessdiff.harness.engine import check_case
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.outcomes import HarnessError
from hessdiff.harness.repro import render_repro
from hessdiff.harness.strategies import Case
from hessdiff.harness.worker import IsolatedVariant
from hostile import HOSTILE, HostileBackend, hostile_variant, squares

GOOD = np.array([-1.0, 0.5])
BAD = np.array([1.0, 0.5])
EXPECTED_KIND = {"abort": Kind.CRASH, "segfault": Kind.CRASH, "hang": Kind.TIMEOUT, "oom": Kind.CRASH}
EXPECTED_TEXT = {"abort": "SIGABRT", "segfault": "SIGSEGV", "hang": "did not finish within",
                 "oom": "ran out of memory"}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_dying_backend_becomes_a_finding_and_its_worker_restarts(kind: str) -> None:
    with IsolatedVariant(hostile_variant(kind), timeout=3.0, memory_mib=400) as worker:
        before = check_case(Case(squares(), GOOD, "float64"), [worker])
        assert before.verdicts == [] and np.array_equal(before.outcomes[worker.name].hessian, 2 * np.eye(2))

        result = check_case(Case(squares(), BAD, "float64"), [worker])
        (verdict,) = result.verdicts
        assert verdict.kind is EXPECTED_KIND[kind]
        assert EXPECTED_TEXT[kind] in verdict.explanation, verdict.explanation
        assert worker.restarts == 1

        after = check_case(Case(squares(), GOOD, "float64"), [worker])
        assert after.verdicts == []
        assert np.array_equal(after.outcomes[worker.name].hessian, 2 * np.eye(2))


def test_the_segfault_carries_where_it_died() -> None:
    with IsolatedVariant(hostile_variant("segfault"), timeout=10.0) as worker:
        outcome = worker.run(Case(squares(), BAD, "float64"))
    assert outcome.status == "crash"
    assert "Segmentation fault" in outcome.error and "hostile.py" in outcome.error, outcome.error


@pytest.mark.parametrize("kind", ["abort", "segfault"])
def test_the_repro_of_a_dying_backend_exits_1_instead_of_dying(kind: str, tmp_path) -> None:
    """The script runs itself in a child and reads the signal: REPRODUCED, exit 1."""
    with IsolatedVariant(hostile_variant(kind), timeout=10.0) as worker:
        case = Case(squares(), BAD, "float64")
        outcome = worker.run(case)
    backend = register(HostileBackend())
    try:
        for point, code, word in ((BAD, 1, f"REPRODUCED: the Hessian computation killed the process with "
                                            f"{EXPECTED_TEXT[kind]}"),
                                  (GOOD, 0, "NOT REPRODUCED")):
            finding = Finding(kind=Kind.CRASH, variant=f"hostile:{kind}", versions={}, dtype="float64",
                              program=squares(), point=point, observed=None, expected=2 * np.eye(2),
                              error=outcome.error)
            script = tmp_path / f"repro_{code}.py"
            script.write_text(render_repro(finding))
            proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                                  cwd=tmp_path)
            assert proc.returncode == code, proc.stdout + proc.stderr
            assert word in proc.stdout, proc.stdout
    finally:
        unregister(backend.name)


def test_a_batched_call_that_dies_is_one_outcome_per_point() -> None:
    with IsolatedVariant(hostile_variant("abort"), timeout=10.0) as worker:
        outcomes = worker.run_points(squares(), [GOOD, BAD, GOOD], "float64")
        assert [o.status for o in outcomes] == ["crash"] * 3
        assert [o.status for o in worker.run_points(squares(), [GOOD, GOOD], "float64")] == ["ok", "ok"]


def test_our_own_error_in_the_worker_is_a_harness_error() -> None:
    with IsolatedVariant(hostile_variant("abort"), timeout=10.0) as worker:
        with pytest.raises(HarnessError, match="dtype int64"):
            worker.run(Case(squares(), np.array([1, 2]), "int64"))


def test_bad_limits_are_rejected_with_the_value() -> None:
    with pytest.raises(ValueError, match="timeout=0"):
        IsolatedVariant(hostile_variant("abort"), timeout=0)
    with pytest.raises(ValueError, match="memory_mib=-1"):
        IsolatedVariant(hostile_variant("abort"), memory_mib=-1)


def test_variants_of_one_backend_share_a_worker_and_keep_their_own_faults() -> None:
    from hessdiff.harness.worker import isolate

    abort, hang = isolate([hostile_variant("abort"), hostile_variant("hang")], timeout=3.0)
    try:
        assert abort.worker is hang.worker
        abort.submit_points(squares(), [GOOD, BAD], "float64")
        hang.submit_points(squares(), [GOOD, BAD], "float64")  # waits: the worker is busy
        assert {o.status for o in abort.collect_points()} == {"crash"}
        assert {o.status for o in hang.collect_points()} == {"timeout"}
        assert abort.run(Case(squares(), GOOD, "float64")).status == "ok"
    finally:
        abort.close()
