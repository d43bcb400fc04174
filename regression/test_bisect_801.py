"""``hessdiff bisect`` names the release that fixed equinox#801 (a short range, real wheels).

The finding is the one this environment's campaign found (not a hand-written one); each
version gets its own cached virtualenv holding equinox, jax 0.4.26 and numpy<2 only.
"""

from __future__ import annotations

import json
import sys

import pytest

from hessdiff.harness.baseline import Baseline
from hessdiff.harness.campaign import Campaign
from hessdiff.harness.cli import main
from hessdiff.harness.report import write_report
from regression_setup import EQUINOX, FAULTY, FIRST_FIXED, fault_findings

PINS = ["--with", "jax==0.4.26", "--with", "jaxlib==0.4.26", "--with", "numpy<2"]
FIRST_FIXED_TEXT = ".".join(map(str, FIRST_FIXED))


@pytest.mark.slow
@pytest.mark.skipif(not FAULTY, reason=f"equinox {EQUINOX} has the fix: no finding to bisect")
def test_bisect_names_the_first_fixed_release(campaign: Campaign, tmp_path, capsys) -> None:
    finding = min(fault_findings(campaign), key=lambda f: (f.program.size, f.signature))
    paths = write_report(tmp_path, [finding], baseline=Baseline(), run_info={"name": "bisect"})
    finding_json = paths.finding_dirs[0] / "finding.json"
    code = main(["bisect", str(finding_json), "--package", "equinox",
                 "--versions", f"0.11.4..{FIRST_FIXED_TEXT}", *PINS])
    out = capsys.readouterr().out
    sys.stdout.write(out)
    assert code == 0, out
    rows = [line.split()[:2] for line in out.splitlines()[2:] if line[:1].isdigit()]
    assert rows == [["0.11.4", "reproduces"], [FIRST_FIXED_TEXT, "fixed"]], out
    assert "first bad:  equinox 0.11.4" in out
    assert f"first good: equinox {FIRST_FIXED_TEXT}" in out
    record = json.loads((finding_json.parent / "bisect.json").read_text())
    assert (record["first_bad"], record["first_good"]) == ("0.11.4", FIRST_FIXED_TEXT)
    assert record["pins"] == ["jax==0.4.26", "jaxlib==0.4.26", "numpy<2"]
