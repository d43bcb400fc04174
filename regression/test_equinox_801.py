"""equinox#801 found from random generation in equinox 0.11.4, and not in the latest release.

``eqx.filter_hessian`` of a piecewise-linear function returned the gradient (for a vector
input: the wrong shape) in equinox 0.11.4 with jax 0.4.26. This module runs the same
campaign, from the same fixed example budget, wherever it is run: ``tox -e regression``
(the old pins) must find that fault, shrink it and render a repro.py that shows it;
``tox -e regression-latest`` (the newest release) must find nothing of that class. So a
harness that reports everything, or nothing, fails one of the two. Nothing here names a
function or a seed chosen to hit the fault: generation starts from seed 0 with the
default ops.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hessdiff.harness.baseline import Baseline
from hessdiff.harness.campaign import Campaign
from hessdiff.harness.findings import Kind
from hessdiff.harness.oracle import piecewise_linear
from hessdiff.harness.report import write_report
from hessdiff.harness.repro import EXIT_REPRODUCED
from regression_setup import EQUINOX, EXAMPLES, FAULTY, ROUNDS
from regression_setup import fault_findings as _fault_findings


def test_the_campaign_ran_its_budget_without_errors_of_its_own(campaign: Campaign) -> None:
    assert campaign.stats.harness_errors == []
    assert campaign.stats.rounds == ROUNDS
    checks = campaign.stats.checks_per_variant()
    assert checks.get("equinox:filter_hessian", 0) >= 10, checks
    assert checks.get("jax:fwdrev", 0) >= 10, checks


@pytest.mark.skipif(not FAULTY, reason=f"equinox {EQUINOX} has the fix; the test below covers it")
def test_filter_hessian_fault_is_found_shrunk_and_classified(campaign: Campaign) -> None:
    findings = _fault_findings(campaign)
    assert findings, f"equinox {EQUINOX}: not found in {ROUNDS}x{EXAMPLES} examples: " + str(
        [f.signature for f in campaign.result()])
    # The fault is shown by a program of at most two ops. Findings are still told apart by
    # their op sets (#16), so the same fault also comes back under other signatures, and
    # one of those may be shrunk less: a chain of matmuls with constants down to a scalar
    # (seed 0, 4 x 25) keeps three ops, because removing any one changes the shape the
    # next needs. The shrinker's limit is not equinox's fault; the smallest one is held.
    smallest = min(findings, key=lambda f: f.program.size)
    assert smallest.program.size <= 2, smallest.program.pretty()
    for finding in findings:
        # The class of equinox#801: a program whose true Hessian is zero (piecewise linear,
        # or linear only at its shapes: det of a 1x1 matrix is its one entry).
        expected = np.asarray(finding.expected, dtype=np.float64)
        assert piecewise_linear(finding.program) or not np.any(expected), finding.program.pretty()
        jax_hessian = np.asarray(finding.others["jax:fwdrev"], dtype=np.float64)
        n = finding.program.n
        # jax.hessian agrees with the oracle (zero Hessian), equinox does not: it returns
        # the gradient, of shape (n,) where the Hessian is (n, n).
        assert expected.shape == jax_hessian.shape == (n, n)
        np.testing.assert_allclose(jax_hessian, expected, atol=1e-12)
        observed = np.asarray(finding.observed, dtype=np.float64)
        assert observed.shape != (n, n) or not np.allclose(observed, expected)
        if finding.kind is Kind.WRONG_SHAPE:
            assert observed.shape == (n,)


@pytest.mark.skipif(not FAULTY, reason=f"equinox {EQUINOX} has the fix")
def test_repro_shows_the_fault_in_this_environment(campaign: Campaign, tmp_path: Path) -> None:
    paths = write_report(tmp_path, _fault_findings(campaign), baseline=Baseline(),
                         run_info={"name": "regression"})
    assert paths.finding_dirs
    for folder in paths.finding_dirs:
        proc = subprocess.run([sys.executable, str(folder / "repro.py")], capture_output=True, text=True,
                              timeout=300, cwd=folder)
        assert proc.returncode == EXIT_REPRODUCED, proc.stdout + proc.stderr
        assert "REPRODUCED" in proc.stdout


@pytest.mark.skipif(FAULTY, reason=f"equinox {EQUINOX} has the fault; the tests above cover it")
def test_latest_release_shows_nothing_of_that_class(campaign: Campaign) -> None:
    assert _fault_findings(campaign) == [], [f.signature for f in _fault_findings(campaign)]
