"""A failing finding is blamed on the one derivative rule that is wrong, or on the
composition when every rule is right alone (``hessdiff.harness.blame``)."""

from __future__ import annotations

import numpy as np
import pytest

from hessdiff.backends import BackendVariant, get_variant
from hessdiff.backends.registry import register, unregister
from hessdiff.harness.blame import blame, local_case, local_faults, value_fault
from hessdiff.harness.engine import check_case
from hessdiff.harness.exact import rounded_values
from hessdiff.harness.ir import Node, Program, const, op
from hessdiff.harness.strategies import Case
from planted import (CancellingEluBackend, CompositionBackend, FarSinBackend, TinyCosBackend, TwoFaultsBackend,
                     WrongExpBackend)

X = np.array([0.3, -0.7])
# sum(sin(x) * exp(x) + x ** 2.0): six differentiated nodes, one Python-float constant.
PROGRAM = Program(2, (Node("input"), op("sin", 0), op("exp", 0), op("mul", 1, 2), const(2.0, "float"),
                      op("pow", 0, 4), op("add", 3, 5), op("sum", 6)))


@pytest.fixture(scope="module")
def planted():
    backends = [register(WrongExpBackend()), register(CompositionBackend()), register(CancellingEluBackend()),
                register(FarSinBackend()), register(TinyCosBackend())]
    yield {b.name: BackendVariant(b, "fwdrev") for b in backends}
    for b in backends:
        unregister(b.name)


def test_a_node_alone_reads_its_arguments_as_the_framework_saw_them() -> None:
    values = rounded_values(PROGRAM, X, "float64")
    mul = local_case(PROGRAM, 3, values, "float64")
    assert mul.program.pretty().splitlines()[1:4] == [
        "v1 = slice(v0, start=0, step=1, stop=2)", "v2 = slice(v0, start=2, step=1, stop=4)", "v3 = mul(v1, v2)"]
    assert mul.point.tolist() == [*np.sin(X), *np.exp(X)]
    power = local_case(PROGRAM, 5, values, "float64")
    assert "const 2.0 (a Python float)" in power.program.pretty()  # the constant keeps its kind
    assert power.point.tolist() == X.tolist()
    assert local_case(PROGRAM, 4, values, "float64") is None  # a constant: nothing to differentiate


GRAM_CHOLESKY = Program(4, (Node("input"), op("reshape", 0, shape=(2, 2)), op("transpose", 1), op("matmul", 1, 2),
                           const(np.eye(2)), op("add", 3, 4), op("cholesky", 5), op("sum", 6)))


def test_an_op_on_symmetric_matrices_is_checked_alone_along_them() -> None:
    """cholesky alone reads its matrix as (X + X^T) / 2, which is X at the point: a
    reshape alone would vary it off the symmetric matrices, out of its domain, and leave
    a cholesky fault blamed on the composition. Every framework's variant that has
    cholesky passes it there (PyTorch's forward-over-forward included)."""
    x = np.array([0.6, -1.3, 0.4, 0.9])
    values = rounded_values(GRAM_CHOLESKY, x, "float64")
    local = local_case(GRAM_CHOLESKY, 6, values, "float64")
    assert "transpose" in local.program.op_names and local.point.tolist() == values[5].reshape(-1).tolist()
    variants = [get_variant(name) for name in ("jax:jit", "torch:func", "torch:func-fwdfwd")]
    result = check_case(local, [v for v in variants if v.backend.availability().available])
    assert result.status == "judged", result
    assert not [v for v in result.verdicts if v.kind.is_failure], result.verdicts


def test_the_one_wrong_rule_is_blamed_with_its_pattern(planted) -> None:
    case = Case(PROGRAM, X, "float64")
    variant = planted["wrongexp"]
    assert any(v.kind.is_failure for v in check_case(case, [variant]).verdicts)
    found = blame(case, variant)
    assert (found.node, found.rule) == (2, "exp(T)")
    assert found.local is not None and found.local.op_names == {"exp", "mul", "add", "sum"}
    # a real upstream fault inside a bigger program: JAX's x ** 1.0 at 0 (jax#20574)
    at_zero = Program(2, (Node("input"), op("sin", 0), const(1.0, "float"), op("pow", 1, 2), op("exp", 0),
                          op("mul", 3, 4), op("sum", 5)))
    found = blame(Case(at_zero, np.array([0.0, 0.5]), "float64"), get_variant("jax:fwdrev"))
    assert (found.rule, found.kind) == ("pow(T, C)", "nonfinite")


def test_a_wrong_first_derivative_dwarfed_by_the_second_is_blamed_on_its_rule(planted) -> None:
    """cos(erfc(x + 10)): cos sits at e ~ 1e-46, where its first derivative (~e, planted
    halved) is invisible in y + y*y beside cos'' ~ -1, but not in the program, whose H
    is cos'' e'**2 + cos' e'' with both terms ~e**2. The first-derivative readout
    sum(a * cos(a)) (a cos'' + 2 cos') shows it: blamed on cos, not the composition
    (JAX's i0 at a tiny erfc was blamed as four compositions in one campaign)."""
    program = Program(1, (Node("input"), const([10.0]), op("add", 0, 1), op("erfc", 2), op("cos", 3),
                          op("sum", 4)))
    case = Case(program, np.array([0.12]), "float64")
    variant = planted["tinycos"]
    assert any(v.kind.is_failure for v in check_case(case, [variant]).verdicts)
    found = blame(case, variant)
    assert (found.rule, found.region) == ("cos(T)", "tiny"), found.explanation
    assert "mul" in found.local.op_names and "add" not in found.local.op_names  # sum(a * cos(a))
    faults, _ = local_faults(case, variant, lambda rule: False)
    assert [f.rule for f in faults] == [("cos", "T", "tiny")]
    assert faults[0].blame.node == 1 and faults[0].case.program.nodes[1].kind == "cos"


def test_a_fault_no_rule_shows_alone_is_blamed_on_the_composition(planted) -> None:
    case = Case(PROGRAM, X, "float64")
    variant = planted["composition"]
    assert any(v.kind.is_failure for v in check_case(case, [variant]).verdicts)
    found = blame(case, variant)
    assert found.node is None and found.rule == "composition"
    assert "each of the 6 differentiated node(s)" in found.explanation


# sum(|elu(x)|) at a tiny negative x: |.| turns at elu(x) = 0, which a cancelling elu
# (exp(x) - 1) reaches while the truth, -1e-300, does not.
ELU_ABS = Program(2, (Node("input"), op("elu", 0, alpha=1.0), op("abs", 1), op("sum", 2)))
TINY = np.array([0.5, -1e-300])


def test_a_wrong_value_with_every_rule_right_is_blamed_on_the_nodes_value(planted) -> None:
    """Each node's Hessian alone is right, so the Hessian checks call it a composition;
    the framework's value of elu is 0 where the truth is -1e-300, and that is what is
    blamed: ``elu(T) value``, apart from any fault of elu's derivative rule."""
    from hessdiff.harness.campaign_records import blamed_rule

    case = Case(ELU_ABS, TINY, "float64")
    variant = planted["cancellingelu"]
    assert [v.kind.value for v in check_case(case, [variant]).verdicts] == ["wrong_value"]
    found = blame(case, variant)
    assert (found.node, found.rule, found.aspect, found.kind) == (1, "elu(T) value", "value", "wrong_value")
    assert found.root_cause.startswith("elu(T) value @ ")
    assert "is 0 where the correctly rounded value is -1e-300" in found.explanation
    assert blamed_rule(found.to_json()) is None  # known by its ops, not by elu's rule
    # the honest framework passes there, and its values hold node by node
    assert not [v for v in check_case(case, [get_variant("jax:fwdrev")]).verdicts if v.kind.is_failure]
    assert value_fault(case, get_variant("jax:fwdrev"), rounded_values(ELU_ABS, TINY, "float64")) is None


def test_a_blame_names_the_region_of_the_elements_that_fail_not_the_whole_nodes(planted) -> None:
    """sum(sin(x)) at (0, 20) with sin wrong beyond |x| = 10: the node sits at 0 as well
    as at 20, and the fault is 20's ("ordinary")."""

    program = Program(2, (Node("input"), op("sin", 0), op("sum", 1)))
    point = np.array([0.0, 20.0])
    found = blame(Case(program, point, "float64"), planted["farsin"])
    assert (found.rule, found.region) == ("sin(T)", "ordinary")
    faults, _ = local_faults(Case(program, point, "float64"), planted["farsin"], lambda rule: False)
    assert [f.rule for f in faults] == [("sin", "T", "ordinary")]


def test_a_value_fault_is_found_in_the_worker_too(planted) -> None:
    from hessdiff.harness.worker import isolate

    runner = isolate([planted["cancellingelu"]])[0]
    try:
        values = runner.node_values(ELU_ABS, TINY, "float64")
        assert values is not None and values[1].tolist() == [0.5, 0.0]
        assert blame(Case(ELU_ABS, TINY, "float64"), runner).rule == "elu(T) value"
    finally:
        runner.close()


def test_a_campaigns_new_failure_carries_its_blame_into_the_report(planted, tmp_path) -> None:
    from hessdiff.harness.baseline import Baseline
    from hessdiff.harness.campaign import Campaign, CampaignConfig
    from hessdiff.harness.findings import load_findings
    from hessdiff.harness.report import write_report

    config = CampaignConfig(budget_seconds=600, seed=0, max_rounds=2, round_examples=10, dtypes=("float64",),
                            max_ops=3, ops=("exp", "sin", "mul", "add", "sum"), max_n=2)
    campaign = Campaign([planted["wrongexp"]], config)
    campaign.run()
    failures = [f for f in campaign.result() if f.kind.is_failure]
    assert failures and all(f.blame is not None and f.blame["rule"] == "exp(T)" for f in failures), [
        (f.signature, f.blame) for f in failures]
    assert campaign.stats.blame_seconds > 0
    write_report(tmp_path, campaign.result(), baseline=Baseline(), run_info={})
    summary = (tmp_path / "summary.md").read_text()
    assert "blamed rule: `exp(T) @ " in summary
    causes = {f.root_cause for f in failures}
    assert f"## Root causes\n\n{len(causes)} root cause(s) blamed among {len(failures)} failing finding(s)." in summary
    for cause in causes:
        _, rule, kind, _ = cause.split("|")
        assert f"| **new** | wrongexp | `{rule}` | {kind} | float64 | `fwdrev` |" in summary, (cause, summary)
    assert load_findings(str(tmp_path / "findings.json"))[0].blame["rule"] == "exp(T)"


def test_a_root_cause_row_names_the_modes_of_the_variants_it_shows_in(tmp_path) -> None:
    """torch's forward-over-forward cholesky and its reverse-mode cumprod at underflow are
    told apart at a glance: the row lists the modes its variants compose."""
    from dataclasses import replace

    from hessdiff.harness.baseline import Baseline
    from hessdiff.harness.findings import Finding, Kind
    from hessdiff.harness.report import write_report

    program = Program(2, (Node("input"), op("sin", 0), op("sum", 1)))
    blamed = {"node": 1, "op": "sin", "pattern": "T", "rule": "sin(T)", "region": "ordinary",
              "root_cause": "sin(T) @ ordinary"}
    base = Finding(kind=Kind.WRONG_VALUE, variant="torch:func-fwdfwd", versions={}, dtype="float64",
                   program=program, point=X, observed=np.zeros((2, 2)), expected=np.ones((2, 2)), blame=blamed)
    findings = [base, replace(base, variant="torch:autograd", dtype="float32"),
                replace(base, variant="torch:autograd-vec", dtype="float32")]
    write_report(tmp_path, findings, baseline=Baseline(), run_info={})
    rows = [ln for ln in (tmp_path / "summary.md").read_text().splitlines() if ln.startswith("| **new** | torch |")]
    assert len(rows) == 1, rows
    assert "| `autograd`, `autograd-vec`, `func-fwdfwd` | fwd-over-fwd, rev-over-rev | 3 |" in rows[0], rows[0]


@pytest.fixture(scope="module")
def twofaults():
    backend = register(TwoFaultsBackend())
    yield BackendVariant(backend, "fwdrev")
    unregister(backend.name)


def _config(**kw):
    from hessdiff.harness.campaign import CampaignConfig

    return CampaignConfig(**{"budget_seconds": 600, "seed": 0, "max_rounds": 2, "round_examples": 10,
                             "dtypes": ("float64",), "max_ops": 3, "ops": ("exp", "sin", "mul", "add", "sum"),
                             "max_n": 2, **kw})


def test_each_node_checked_alone_shows_each_broken_rule(twofaults) -> None:
    case = Case(PROGRAM, X, "float64")
    faults, held = local_faults(case, twofaults, lambda rule: False)
    assert {f.rule for f in faults} == {("sin", "T", "ordinary"), ("exp", "T", "ordinary")}
    assert ("mul", "TT", "ordinary") in held and ("pow", "TC", "ordinary") in held
    sin = next(f for f in faults if f.rule[0] == "sin")
    assert sin.case.program.op_names == {"sin", "mul", "add", "sum"}  # minimal: the rule and its readout
    faults, _ = local_faults(case, twofaults, lambda rule: rule[0] == "exp")
    assert [f.rule[0] for f in faults] == ["sin"]


def test_a_new_fault_beside_a_baselined_one_is_reported_and_shrunk_to_its_own_rule(twofaults) -> None:
    from hessdiff.harness.baseline import Baseline, BaselineEntry
    from hessdiff.harness.campaign import Campaign

    baseline = Baseline((BaselineEntry("twofaults|*|wrong_value|float64|*exp*", "", "exp is known"),))
    campaign = Campaign([twofaults], _config(), baseline=baseline)
    findings = campaign.replay([Case(PROGRAM, X, "float64")])
    new = [f for f in findings if f.kind.is_failure and baseline.entry_for(f) is None]
    assert [f.blame["rule"] for f in new] == ["sin(T)"], [(f.signature, f.blame) for f in findings]
    assert "exp" not in new[0].program.op_names and new[0].program.size <= 4
    # exp alone fails too (an ops glob does not say which node it knows), and stays baselined
    assert campaign.stats.unmasked == 2 and campaign.stats.unmask_checks == 6
    known = sorted((len(f.program.op_names), f.root_cause) for f in findings if baseline.entry_for(f))
    assert known == [(4, "twofaults|exp(T) @ ordinary|wrong_value|float64"), (6, None)]  # found alone: blamed


def test_an_entry_naming_the_rule_knows_its_fault_unshrunk_and_only_it(twofaults, monkeypatch) -> None:
    """``...|*|exp(T) @ *`` names the broken rule, not ops: the first hit is blamed as it
    stands and found known (not shrunk), and the sin fault in the same program is new."""
    from hessdiff.harness import campaign as campaign_module
    from hessdiff.harness.baseline import Baseline, BaselineEntry
    from hessdiff.harness.campaign import Campaign

    # two replays of one case each: no time to speak of for the 10% share of node checks
    monkeypatch.setattr(campaign_module, "UNMASK_SHARE", 1.0)

    baseline = Baseline((BaselineEntry("twofaults|*|wrong_value|float64|*|exp(T) @ *", "", "exp is known"),))
    exp_only = Program(2, (Node("input"), op("exp", 0), op("mul", 1, 1), op("sum", 2)))
    campaign = Campaign([twofaults], _config(), baseline=baseline)
    known = campaign.replay([Case(exp_only, X, "float64")])
    assert [f.root_cause for f in known if f.kind.is_failure] == ["twofaults|exp(T) @ ordinary|wrong_value|float64"]
    assert all(baseline.entry_for(f) is not None and "baseline already covers it" in f.minimised
               for f in known if f.kind.is_failure)
    both = campaign.replay([Case(PROGRAM, X, "float64")])
    new = [f for f in both if f.kind.is_failure and baseline.entry_for(f) is None]
    assert [f.blame["rule"] for f in new] == ["sin(T)"], [(f.signature, f.blame) for f in both]


def test_a_new_fault_beside_a_found_one_is_reported_not_counted_as_it(twofaults) -> None:
    from hessdiff.harness.campaign import Campaign

    exp_only = Program(2, (Node("input"), op("exp", 0), op("mul", 1, 1), op("sum", 2)))
    campaign = Campaign([twofaults], _config())
    first = campaign.replay([Case(exp_only, X, "float64")])
    assert [f.blame["root_cause"] for f in first if f.kind.is_failure] == ["exp(T) @ ordinary"]
    both = campaign.replay([Case(PROGRAM, X, "float64")])
    causes = sorted(f.root_cause for f in both if f.kind.is_failure)
    assert causes == ["twofaults|exp(T) @ ordinary|wrong_value|float64",
                      "twofaults|sin(T) @ ordinary|wrong_value|float64"], causes
    # the same exp fault at a tiny input is another region: not put down to the first
    tiny = campaign.replay([Case(exp_only, np.array([1e-300, 0.5]), "float64")])
    assert "twofaults|exp(T) @ tiny|wrong_value|float64" in {f.root_cause for f in tiny}


def test_two_faults_of_one_framework_and_dtype_come_out_as_two_findings_each_on_its_own_op(twofaults) -> None:
    from hessdiff.harness.campaign import Campaign

    campaign = Campaign([twofaults], _config(max_rounds=3))
    campaign.run()
    failing = [f for f in campaign.result() if f.kind.is_failure]
    by_rule = {f.blame["rule"]: f for f in failing if f.blame}
    assert {"exp(T)", "sin(T)"} <= set(by_rule), [(f.signature, f.blame and f.blame["rule"]) for f in failing]
    assert "sin" not in by_rule["exp(T)"].program.op_names
    assert "exp" not in by_rule["sin(T)"].program.op_names


def test_a_node_whose_value_cancels_the_readout_is_still_blamed(twofaults) -> None:
    """The local readout y + y*y has the Hessian (1 + 2y) y'' + 2 y'y'^T: at y = -1/2 a
    wrong y'' vanishes from it (elu with alpha 1/2 far below 0, where MLX 0.21.1's float32
    exp is 2**-80, was blamed on 'composition'). There the readout is y - y*y."""
    program = Program(1, (Node("input"), op("sin", 0), op("sum", 1)))
    case = Case(program, np.array([-np.pi / 6]), "float64")  # sin = -0.5
    assert any(v.kind.is_failure for v in check_case(case, [twofaults]).verdicts)
    local = local_case(program, 1, rounded_values(program, case.point, "float64"), "float64")
    assert local.program.nodes[-2].kind == "sub"
    found = blame(case, twofaults)
    assert (found.node, found.rule) == (1, "sin(T)"), found
