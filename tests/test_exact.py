"""What a check differentiated: ``hessdiff.harness.exact`` (coverage and steering count by it)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from hessdiff.harness.exact import curved_after, exercised, traced_nodes
from hessdiff.harness.ir import Node, Program, const, op
from hessdiff.harness.strategies import cases


def _program(n: int, *nodes: Node) -> Program:
    return Program(n, (Node("input"), *nodes))


def test_an_op_on_constants_alone_is_not_differentiated() -> None:
    """ldexp(const, k) beside a traced sin: only sin (and the sum) count."""
    program = _program(2, const(np.array([0.5, 2.0])), const(3, "int"), op("ldexp", 1, 2), op("sin", 0),
                       op("add", 3, 4), op("sum", 5))
    assert traced_nodes(program) == (True, False, False, False, True, True, True)
    did = exercised(program, np.array([0.1, 0.2]), "float64")
    assert "ldexp" not in did.ops and {"sin", "add", "sum"} <= did.ops
    assert did.patterns == {("add", "CT")}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exact_hits_are_exact_in_the_dtype(dtype: str) -> None:
    """log10 of an input exactly 1 hits its special value 1; 1 + 1 ulp does not (though
    the oracle calls both "at the special value", within rounding distance)."""
    program = _program(2, op("log10", 0), op("sum", 1))
    one_ulp = float(np.nextafter(np.asarray(1.0, dtype), np.asarray(2.0, dtype)))
    assert exercised(program, np.array([1.0, 3.0]), dtype).exact == {("log10", 1)}
    assert exercised(program, np.array([one_ulp, 3.0]), dtype).exact == set()


def test_an_intermediate_lands_exactly_when_its_rounded_value_does() -> None:
    """(x**2 + c) - round(x**2 + c) is exactly 0 in float32 arithmetic, though not in exact
    arithmetic: relu sits on its kink exactly, as a framework computes it."""
    x = np.array([0.3], dtype=np.float32).astype(np.float64)
    c = 0.7
    rounded = float(np.float32(np.float32(x[0]) ** 2 + np.float32(c)))
    program = _program(1, op("square", 0), const(c), op("add", 1, 2), const(rounded), op("sub", 3, 4),
                       op("relu", 5), op("sum", 6))
    assert exercised(program, x, "float32").exact == {("relu", 0)}


def test_ties_and_switches() -> None:
    """A tie of the maximum, maximum(a, b) at a == b, clip at its upper bound."""
    x = np.array([1.5, 1.5, 0.25])
    tie = _program(3, op("max", 0, axis=None, keepdims=False), op("square", 1))
    assert exercised(tie, x, "float64").exact == {("max", 0)}
    assert exercised(tie, np.array([1.5, 1.25, 0.25]), "float64").exact == set()
    pair = _program(3, const(np.array([1.5, 0.0, 0.0])), op("maximum", 0, 1), op("sum", 2))
    assert exercised(pair, x, "float64").exact == {("maximum", 0)}
    clip = _program(3, op("clip", 0, lo=-1.0, hi=0.25), op("sum", 1))
    assert exercised(clip, x, "float32").exact == {("clip", 1)}


def test_a_special_value_of_a_constant_argument_is_not_a_hit() -> None:
    program = _program(2, const(np.array([0.0, 1.0])), op("relu", 1), op("sin", 0), op("add", 2, 3), op("sum", 4))
    assert exercised(program, np.array([0.0, 0.0]), "float64").exact == set()


@settings(max_examples=150, database=None, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(cases(dtypes=("float64", "float32"), ops=("log10", "maximum", "max", "relu", "div"), max_ops=3, mlps=False))
def test_generation_reaches_exact_special_values(case) -> None:
    """Over many generated cases, every one of these ops' special values is hit exactly at
    some point (collected in a module-level tally, checked below)."""
    _TALLY.update(exercised(case.program, case.point, case.dtype).exact)


_TALLY: set[tuple[str, int]] = set()


def test_generation_reaches_every_exact_special_value_of_the_sample() -> None:
    """Drawn without Hypothesis' local constants (``seed_only``, as a campaign draws): they
    come from the source of every module imported so far, so the sample, and whether it
    reached log10's 1, depended on which tests ran before (a campaign run in the same
    process, test_blame's, cleared their cache and changed the draws)."""
    from hessdiff.harness.seeding import seed_only

    _TALLY.clear()
    with seed_only():
        test_generation_reaches_exact_special_values()
    assert {("log10", 0), ("log10", 1), ("maximum", 0), ("max", 0), ("relu", 0)} - _TALLY <= {("log10", 0)}


def test_a_constant_argument_counts_by_how_the_framework_receives_it() -> None:
    """pow's exponent as a framework array, a Python float or int, or an int32 array is
    four code paths; coverage tells them apart, and the summary names the kinds no check
    differentiated."""
    from hessdiff.harness.coverage_md import special_coverage
    from hessdiff.harness.exact import argument_kinds, argument_patterns

    assert argument_kinds("pow") == ("0:array", "0:float", "0:int", "1:array", "1:float", "1:int", "1:int32",
                                     "1:int64")
    assert argument_kinds("sin") == ()
    # ldexp's shift only as the integer types the frameworks take; its base, never
    # constant beside a traced shift, has no kinds
    assert argument_kinds("ldexp") == ("1:int", "1:int32", "1:int64")
    assert argument_patterns("ldexp") == ("TC",)
    # where's condition as a framework bool mask too
    assert argument_kinds("where") == ("0:array", "0:bool", "1:array", "2:array")
    masked = Program(2, (Node("input"), const([True, False], boolean=True), op("where", 1, 0, 0), op("sum", 2)))
    assert exercised(masked, np.array([0.5, 2.0]), "float64").kinds == {("where", "0:bool")}
    x = np.array([0.5, 2.0])
    seen = set()
    for exponent in (const(3.0), const(3.0, "float"), const(3, "int"), const(3.0, integer=True),
                     const(3.0, integer="int64")):
        program = Program(2, (Node("input"), exponent, op("pow", 0, 1), op("sum", 2)))
        seen |= exercised(program, x, "float64").kinds
    assert seen == {("pow", "1:array"), ("pow", "1:float"), ("pow", "1:int"), ("pow", "1:int32"), ("pow", "1:int64")}
    traced_only = Program(2, (Node("input"), op("pow", 0, 0), op("sum", 1)))
    assert exercised(traced_only, x, "float64").kinds == frozenset()
    coverage = {"pow": {"jax:fwdrev": {"checks": 4, **{f"kind:{k}": 1 for _, k in seen}}}}
    line = next(ln for ln in special_coverage(coverage) if ln.startswith("**Argument kinds"))
    never = line.split("never: ")[1]
    assert "pow(arg 1 as int32)" not in never and "pow(arg 0 as float)" in never


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_rule_is_exercised_in_the_region_its_traced_arguments_sit_in(dtype: str) -> None:
    """log10 at exactly 1 is "at" its special value; a traced 0, a magnitude below eps,
    one at or above 1/eps, and the rest are regions of their own. The constant argument
    of mul (1e-30) decides nothing: only what is differentiated."""
    eps = float(np.finfo(dtype).eps)
    program = _program(2, op("log10", 0), op("sum", 1))
    assert ("log10", "T", "at 1") in exercised(program, np.array([1.0, 3.0]), dtype).rules
    sin = _program(2, op("sin", 0), const(1e-30), op("mul", 1, 2), op("sum", 3))
    for x, region, of_mul in [((0.0, 3.0), "zero", "zero"), ((eps / 4, 3.0), "tiny", "tiny"),
                              ((2 / eps, 3.0), "huge", "ordinary"), ((0.5, 3.0), "ordinary", "ordinary")]:
        rules = exercised(sin, np.array(x), dtype).rules
        assert ("sin", "T", region) in rules and ("mul", "TC", of_mul) in rules, (x, rules)


def test_the_special_values_no_argument_can_sit_on_are_the_domain_edges() -> None:
    """Exact hits are asked for (steering, the sweep) and counted (summary.md) only where
    the op is finite and twice differentiable exactly at the value."""
    from hessdiff.harness.exact import attainable
    from hessdiff.harness.ops import CATALOGUE

    def index(name: str, label: str) -> int:
        return CATALOGUE[name].special_names.index(label)

    for name, label in (("log", "0"), ("sqrt", "0"), ("arcsin", "1"), ("log1p", "-1"), ("lgamma", "-1")):
        assert not attainable(name, index(name, label)), (name, label)
    for name, label in (("relu", "0"), ("relu6", "6"), ("log10", "1"), ("arcsin", "0"), ("lgamma", "1"),
                        ("pow", "0"), ("max", "tie"), ("clip", "lo")):  # pow's base 0 beside b = 2
        assert attainable(name, index(name, label)), (name, label)
    # Beyond float32's range, inside float64's.
    assert not attainable("exp2", index("exp2", "1023"), ("float32",))
    assert attainable("exp2", index("exp2", "1023"), ("float64",))


def test_a_probe_aimed_exactly_sits_on_every_special_value_an_argument_can() -> None:
    """The campaign's sweep of special values (``probe_case``'s ``aims``) reaches each
    attainable one exactly within a few seeds, as the framework computes the argument."""
    from hessdiff.harness.exact import attainable
    from hessdiff.harness.ops import CATALOGUE
    from hessdiff.harness.strategies import probe_case

    missed = []
    for name, spec in CATALOGUE.items():
        for k, label in enumerate(spec.special_names):
            if attainable(name, k) and not any(
                    (case := probe_case((name,), seed, aims=(k,))) is not None
                    and (name, k) in exercised(case.program, case.point, case.dtype).exact for seed in range(4)):
                missed.append(f"{name} at {label}")
    assert not missed


def test_a_probe_asked_for_an_argument_kind_or_pattern_differentiates_it() -> None:
    """The campaign's sweep of argument kinds and patterns (``probe_case``'s ``kind`` and
    ``pattern``) reaches every one the catalogue lists within a few seeds."""
    from hessdiff.harness.exact import argument_kinds, argument_patterns
    from hessdiff.harness.ops import CATALOGUE
    from hessdiff.harness.strategies import probe_case

    missed = []
    for name in CATALOGUE:
        for kind in argument_kinds(name):
            if not any((case := probe_case((name,), seed, kind=kind)) is not None
                       and (name, kind) in exercised(case.program, case.point, case.dtype).kinds
                       for seed in range(4)):
                missed.append(f"{name} {kind}")
        for pattern in argument_patterns(name):
            if not any((case := probe_case((name,), seed, pattern=pattern)) is not None
                       and (name, pattern) in exercised(case.program, case.point, case.dtype).patterns
                       for seed in range(4)):
                missed.append(f"{name}({pattern})")
    assert not missed


def test_a_special_value_read_out_linearly_is_hit_but_not_curved() -> None:
    # sum(maximum(x, x)) at an exact tie: H = 0 whatever maximum's tie rule says, so
    # coverage leaves the tie to the sweep's curved probe; under f + f**2 the rule shows
    # (2 g g^T), and under x * maximum(x, x) through the bilinear cross term.
    x = np.zeros(1)

    def program(*nodes: Node) -> Program:
        return Program(1, (Node("input"), op("maximum", 0, 0)) + nodes)

    linear = program(op("relu", 1), op("sum", 2))
    scaled = program(const(2.0), op("mul", 1, 2), op("sum", 3))  # a constant factor is linear
    curved = program(op("square", 1), op("add", 1, 2), op("sum", 3))
    crossed = program(op("mul", 1, 0), op("sum", 2))
    assert curved_after(linear) == (False,) * 4
    for flat in (linear, scaled):
        did = exercised(flat, x, "float64")
        assert ("maximum", 0) in did.exact and did.exact_curved == frozenset()
    for seen in (curved, crossed):
        assert exercised(seen, x, "float64").exact_curved == {("maximum", 0)}


def test_a_constant_integer_shift_of_a_large_value_has_a_value() -> None:
    """ldexp(x**2, k) with x = 573.8 and an int64 k = -7: the op's value alone (what
    blame reads every node's arguments from) took 2**k for an exponential of an
    argument beyond 1e5 and was NaN, so blame gave up on the program and called
    PyTorch's and JAX's known ldexp faults compositions (a 5-minute campaign)."""
    from hessdiff.harness.exact import op_value, rounded_values

    program = Program(2, (Node("input"), op("square", 0), const([-7.0, 3.0], None, "int64"), op("ldexp", 1, 2),
                          op("sum", 3)))
    values = rounded_values(program, np.array([573.7924220829186, 2.0]), "float64")
    assert values is not None
    np.testing.assert_allclose(values[3], [573.7924220829186**2 / 128, 32.0], rtol=1e-15)
    assert op_value(program.nodes[3], [np.array([1e300]), np.array([-7.0])], "float64", 20)[0] == 1e300 / 128
