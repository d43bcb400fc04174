"""The op catalogue: its size and groups, a lowering or a reason for every (op, backend),
agreement of every op with the oracle on every backend variant, and adding an op.

The full per-op sweep (every op x every variant x random points and each special value)
runs every framework hundreds of times and is marked slow; the fast set checks one op of
each math kind on one variant per backend.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from hessdiff.backends import Absent, all_backends, all_variants
from hessdiff.backends.lowering import Spellings
from hessdiff.backends.jax_backend import JAX_LOWERINGS
from hessdiff.backends.mlx_backend import MLX_LOWERINGS
from hessdiff.backends.torch_backend import TORCH_LOWERINGS
from hessdiff.harness.engine import check_case
from hessdiff.harness.ir import Node, Program, const, op
from hessdiff.harness.ops import CATALOGUE, FIXED_INTEGER_LIMIT, Elementwise, OpSpec, get_op, register_op
from hessdiff.harness.oracle import evaluate
from hessdiff.harness.outcomes import run_variant
from hessdiff.harness.strategies import Case, probe_program

GROUPS = ("unary", "activation", "binary", "select", "reduction", "linalg", "shape")

# (op, variant prefix) -> the upstream fault a sweep found there (strict: when the
# framework fixes it, the xfail fails and the entry goes).
KNOWN_FAULTS: dict[tuple[str, str], str] = {
    ("lgamma", "torch"): "torch's trigamma (lgamma'') errs by ~1e-10 relative in float64 (pytorch/pytorch#4399)",
    ("digamma", "torch"): "torch's trigamma (digamma') errs by ~1e-10 relative in float64 (pytorch/pytorch#4399)",
    ("logaddexp", "torch"): "torch.logaddexp's second derivative is NaN in float32 once |a - b| > ~100",
    ("ldexp", "torch"): "torch.ldexp's backward computes 2**other in integer arithmetic: a negative shift's "
                        "factor is 0 (pytorch/pytorch#187460; the sweep's shift array holds one)",
}


def test_catalogue_has_at_least_80_ops_in_every_group() -> None:
    assert len(CATALOGUE) >= 80, len(CATALOGUE)
    assert {spec.group for spec in CATALOGUE.values()} == set(GROUPS)
    for spec in CATALOGUE.values():
        assert spec.doc, spec.name


def test_every_op_is_lowered_or_absent_with_a_reason_on_every_backend() -> None:
    for backend in all_backends():
        for name in CATALOGUE:
            lowering = backend.lowerings.get(name)
            assert lowering is not None, (backend.name, name)
            if isinstance(lowering, Absent):
                assert lowering.reason.strip(), (backend.name, name)
            elif isinstance(lowering, Spellings):  # the newest spelling first, then older releases'
                assert lowering.spellings and all(callable(s) for s in lowering.spellings), (backend.name, name)
            else:
                assert callable(lowering), (backend.name, name)


def test_special_values_are_named() -> None:
    for spec in CATALOGUE.values():
        if not spec.attrs:
            assert len(spec.special_names) == len(spec.special({})), spec.name


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_op_builds_a_program_and_prints_on_every_backend(name: str) -> None:
    """The generator reaches the op, the oracle evaluates it, every lowering prints."""
    x = np.array([0.75, -1.25, 0.5])
    program = next(
        p for p in (_probe(name, x, "float64", seed) for seed in range(20)) if p is not None
    )
    assert name in program.op_names
    evaluate(program, x, "float64")
    for backend in all_backends():
        if not isinstance(backend.lowerings[name], Absent):
            consts, body = backend.function_source(program, "float64")
            assert any(line for line in body), (backend.name, name)


def _probe(name: str, x: np.ndarray, dtype: str, seed: int, aim: int | None = None) -> Program | None:
    try:
        program = probe_program(name, len(x), x, dtype, seed=seed, aim=aim)
    except ValueError:
        return None
    return program if name in program.op_names else None


def _failures(case: Case, variants: list, entry_points: bool = False) -> list[tuple[str, str]]:
    """(variant, text) per failing verdict; with ``entry_points`` also per backend none of
    whose variants can run a program of ops it all lowers: an op a backend cannot
    differentiate in any way is ``Absent`` there, with the reason, not lowered. (One
    variant may lack it: torch.func.hessian has no forward AD for hardsigmoid's backward,
    reverse over reverse has.)"""
    result = check_case(case, variants)
    out = [(v.variant, f"{v.kind.value}: {v.explanation}") for v in result.verdicts if v.kind.is_failure]
    if entry_points:
        for variant in variants:
            lowered = all(not isinstance(variant.backend.lowerings[o], Absent) for o in case.program.op_names)
            outcome = result.outcomes.get(variant.name)
            if not lowered or outcome is None or outcome.status != "unsupported":
                continue
            others = [v for v in all_variants() if v.backend is variant.backend and v.name != variant.name]
            if not any(run_variant(v, case).status == "ok" for v in others):
                out.append((variant.name, f"lowered, but no {variant.backend.name} variant runs it: {outcome.error}"))
    return out


def _sweep(name: str, variants: list, seeds: int, dtypes: tuple[str, ...],
           entry_points: bool = False) -> list[tuple[str, str]]:
    """(variant, failure) for ``name`` at random points and at each of its special values.

    Random points run in every dtype; the special values take the dtypes in turn (the
    first in the first dtype, the next in the second, ...), which halves the cost of a
    sweep and still reaches each dtype's edges across the catalogue.
    """
    spec = CATALOGUE[name]
    runs = [(k, None, dtype) for k in range(seeds) for dtype in dtypes]
    runs += [(seeds + i, i, dtypes[i % len(dtypes)]) for i in range(len(spec.special_names))]
    failures = []
    for k, aim, dtype in runs:
        rng = np.random.default_rng(k)
        x = np.asarray(rng.uniform(-2, 2, 3), dtype=dtype).astype(np.float64)
        program = _probe(name, x, dtype, k, aim)
        if program is None:
            continue
        failures += [(v, f"{dtype} aim={aim}: {text}")
                     for v, text in _failures(Case(program, x, dtype), variants, entry_points)]
    return failures


def _known(name: str, variant: str) -> str | None:
    for (op_name, pattern), reason in KNOWN_FAULTS.items():
        if op_name == name and (variant == pattern or variant.startswith(pattern + ":")):
            return reason
    return None


def _default_variants() -> list:
    """One variant per backend: each framework's own Hessian entry point."""
    wanted = {"jax:fwdrev", "equinox:filter_hessian", "torch:func", "mlx:revrev"}
    return [v for v in all_variants() if v.name in wanted]


FAST_OPS = ("erfinv", "gelu", "remainder", "softsign", "logsumexp", "slice", "outer", "floor", "max")


@pytest.mark.parametrize("name", FAST_OPS)
def test_op_agrees_with_the_oracle_on_each_backend(name: str) -> None:
    failures = _sweep(name, _default_variants(), seeds=1, dtypes=("float64",), entry_points=True)
    assert not failures, "\n".join(f"{v}: {text}" for v, text in failures)


def _check_sweep(name: str, variants: list, entry_points: bool = False) -> None:
    """No failure but the known ones, and every known one still there (strict)."""
    failures = _sweep(name, variants, seeds=1, dtypes=("float64", "float32"), entry_points=entry_points)
    unexpected = [f"{v}: {text}" for v, text in failures if _known(name, v) is None]
    assert not unexpected, "\n".join(unexpected)
    failed = {v for v, _ in failures}
    for (op_name, pattern), reason in KNOWN_FAULTS.items():
        if op_name == name:
            assert any(v == pattern or v.startswith(pattern + ":") for v in failed), (
                f"the known fault {op_name} on {pattern} ({reason}) no longer reproduces: "
                "remove it from KNOWN_FAULTS."
            )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_op_on_each_backend_at_random_and_special_points(name: str) -> None:
    """Each backend's own Hessian entry point (an Absent op is Unsupported there, not a
    failure; a lowered op it cannot differentiate is one), float64 and float32, at a
    random point and at each special value."""
    _check_sweep(name, _default_variants(), entry_points=True)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HESSDIFF_OP_SWEEP") != "1",
                    reason="every op on all 19 variants takes about an hour: HESSDIFF_OP_SWEEP=1 runs it")
@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_op_on_every_variant_at_random_and_special_points(name: str) -> None:
    """The same sweep on every variant (compiled, vmapped, every AD composition)."""
    _check_sweep(name, list(all_variants()))


@pytest.mark.parametrize("width", ["int32", "int64"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_integer_exponent_array_lowers_and_differentiates_on_every_backend(dtype: str, width: str) -> None:
    """pow's exponent as a framework int32 or int64 array (``x ** jnp.array(3)``): each
    backend promotes it inside the op, and its Hessian at a negative base matches the
    oracle's polynomial (JAX takes an integer exponent through its own pow rule; a JAX
    user in float32 mode who asks for int64 gets int32, as hessdiff's repro does too)."""
    program = Program(1, (Node("input"), const([3.0], integer=width), op("pow", 0, 1), op("sum", 2)))
    result = check_case(Case(program, np.array([-1.5]), dtype), _default_variants())
    assert {name for name, o in result.outcomes.items() if o.status == "ok"} == {v.name for v in _default_variants()}
    assert not [v for v in result.verdicts if v.kind.is_failure], result.verdicts


@pytest.mark.parametrize("shift", [const(2, "int"), const([1.0, 3.0], integer="int32"),
                                   const([3.0, 0.0], integer="int64"), const(1.0, integer="int64")],
                         ids=["python-int", "int32-array", "int64-array", "int64-scalar"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ldexp_takes_its_shift_as_every_integer_kind_on_every_backend(dtype: str, shift: Node) -> None:
    """ldexp's shift as a user passes it: a Python int (``jnp.ldexp(x, 2)``; torch takes
    only a tensor, ``torch.as_tensor(2)``) or a framework int32/int64 array, one shift per
    entry or one for all. Every backend with an ldexp lowers it and agrees with the oracle
    (MLX has none: unsupported, not a failure). Non-negative shifts: a negative one meets
    torch's integer-power backward (the baselined pytorch#187460)."""
    program = Program(2, (Node("input"), op("mul", 0, 0), shift, op("ldexp", 1, 2), op("sum", 3)))
    result = check_case(Case(program, np.array([1.5, -0.75]), dtype), _default_variants())
    lowered = {v.name for v in _default_variants() if not v.name.startswith("mlx:")}
    assert {name for name, o in result.outcomes.items() if o.status == "ok"} == lowered
    assert not [v for v in result.verdicts if v.kind.is_failure], result.verdicts
    assert result.oracle is not None and np.isfinite(result.oracle.hessian.astype(float)).all()


@pytest.mark.parametrize("mask", [[True, False], [False], True], ids=["per-entry", "one-entry", "scalar"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_where_takes_a_bool_mask_on_every_backend(dtype: str, mask: object) -> None:
    """where's condition as a framework bool array (``where(jnp.asarray([True, False]),
    a, b)``): every backend selects by it, and the derivative flows through the selected
    branch alone, as the oracle's constant condition says."""
    program = Program(2, (Node("input"), const(mask, boolean=True), op("sin", 0), op("square", 0),
                          op("where", 1, 2, 3), op("sum", 4)))
    result = check_case(Case(program, np.array([0.5, -1.25]), dtype), _default_variants())
    assert {name for name, o in result.outcomes.items() if o.status == "ok"} == {v.name for v in _default_variants()}
    assert not [v for v in result.verdicts if v.kind.is_failure], result.verdicts
    chosen = np.broadcast_to(np.asarray(mask), (2,))
    expected = np.diag(np.where(chosen, -np.sin([0.5, -1.25]), 2.0))
    np.testing.assert_allclose(result.oracle.hessian.astype(float), expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_arctan2_agrees_on_every_backend_beside_a_negative_b_and_across_quadrants(dtype: str) -> None:
    """arctan2 where b < 0 (generated since the branch cut is modelled as a jump): every
    backend agrees with the oracle in each quadrant, a value near the cut included, the
    result read out curved (so the value, pi or -pi near the cut, reaches the Hessian)."""
    program = Program(4, (Node("input"), const([-1.0, -0.5, 2.0, -3.0]), op("arctan2", 0, 1), op("square", 2),
                          op("arctan2", 1, 0), op("mul", 3, 4), op("sum", 5)))
    x = np.array([0.7, -1e-3, -2.5, 1.5])
    result = check_case(Case(program, x, dtype), _default_variants())
    assert {name for name, o in result.outcomes.items() if o.status == "ok"} == {v.name for v in _default_variants()}
    assert not [v for v in result.verdicts if v.kind.is_failure], result.verdicts
    assert np.isfinite(result.oracle.hessian.astype(float)).all()


@pytest.fixture()
def cube_op():
    """A new op added the documented way: one catalogue entry, one lowering per backend."""
    spec = register_op(OpSpec("cube_test", 1, "unary", Elementwise(lambda sp, a: a**3),
                              special=lambda attrs: (0.0,), doc="a**3 (test op)"))
    tables = (JAX_LOWERINGS, TORCH_LOWERINGS, MLX_LOWERINGS)
    JAX_LOWERINGS["cube_test"] = lambda m, a: a * a * a
    TORCH_LOWERINGS["cube_test"] = lambda m, a: m.torch.pow(a, 3)
    MLX_LOWERINGS["cube_test"] = lambda m, a: m.mx.power(a, 3)
    try:
        yield spec
    finally:
        for table in tables:
            table.pop("cube_test", None)
        del CATALOGUE["cube_test"]


def test_adding_an_op_is_one_entry_and_one_lowering_per_backend(cube_op: OpSpec) -> None:
    x = np.array([0.5, -1.5, 2.0])
    program = probe_program("cube_test", 3, x, "float64", seed=0)
    assert "cube_test" in program.op_names
    handmade = Program(3, (Node("input"), op("cube_test", 0), op("sum", 1)))
    expected = np.diag(6 * x)
    np.testing.assert_allclose(evaluate(handmade, x).hessian_float(), expected)
    for case in (Case(handmade, x, "float64"), Case(program, x, "float64")):
        result = check_case(case, _default_variants())
        assert {name for name, o in result.outcomes.items() if o.status == "ok"} == {
            v.name for v in _default_variants()
        }
        assert not [v for v in result.verdicts if v.kind.is_failure], result.verdicts
    aimed = probe_program("cube_test", 3, x, "float64", seed=0, aim=0)
    assert ("cube_test", 0) in evaluate(aimed, x).specials


def _variant(name: str):
    return next(v for v in all_variants() if v.name == name)


# Upstream faults the sweep found, each pinned to its smallest program. Strict: when the
# framework is fixed the test passes, fails as XPASS, and the entry goes.
_DET_X = np.array([0.5478467492858172, -0.9208531449445188, -1.8361059042552212])
def _pow_at_0(exponent: float, literal: str | None) -> Program:
    return Program(2, (Node("input"), const(exponent, literal), op("pow", 0, 1), op("sum", 2)))


FAULT_CASES = {
    # d^2 det / dx2^2 = 0 (det is affine in each entry; x2 fills one entry) but nested
    # forward mode returns -0.879: linalg_det_jvp solves with the primal's LU, which is
    # not differentiated again (pytorch/pytorch#192540, #196696).
    "torch-det-fwdfwd": (
        "torch:func-fwdfwd",
        Program(3, (Node("input"), op("gather", 0, idx=(1, 0, 0, 0, 0, 0, 0, 2, 1)),
                    op("reshape", 1, shape=(3, 3)), op("det", 2))),
        _DET_X, "float64",
    ),
    # jnp.hypot differentiates through maximum/minimum, whose JVP splits a tie: at
    # |a| == |b| its Hessian is 0 (truth b**2 / hypot**3 = 2.83 at a = b = 0.125).
    "jax-hypot-tie": ("jax:fwdrev", Program(1, (Node("input"), const(0.125), op("hypot", 0, 1), op("sum", 2))),
                      np.array([0.125]), "float64"),
    # i1''(0) = 0 and i0''(0) = 1/2, but JAX returns 1.0 and 1.5 at exactly 0.
    "jax-i1-at-0": ("jax:fwdrev", Program(3, (Node("input"), op("i1", 0), op("sum", 1))),
                    np.array([0.0, 0.5, -1.0]), "float64"),
    "jax-i0-at-0": ("jax:fwdrev", Program(3, (Node("input"), op("i0", 0), op("sum", 1))),
                    np.array([0.0, 0.5, -1.0]), "float64"),
    # lgamma'' is trigamma, which torch computes to about 1e-10 relative in float64
    # (a short series, "accurate to at least 5 digits" since pytorch/pytorch#4399).
    # The true H of logaddexp(a, 0.5) at a = 100 is sigmoid'(99.5) ~ 6e-44 (finite); torch
    # returns NaN in float32 (torch.func and torch.autograd alike): the derivative of the
    # underflowed exp(b - logaddexp(a, b)) is 0 * inf.
    "torch-logaddexp-float32": (
        "torch:func",
        Program(2, (Node("input"), const([100.0, 0.0]), op("add", 0, 1), op("gather", 2, idx=(0,)),
                    op("gather", 2, idx=(1,)), op("logaddexp", 3, 4), op("sum", 5))),
        np.array([0.0, 0.5]), "float32",
    ),
    # sum(cumprod(x)) at x = (0, 2, 3): the true H is [[0, 4, 2], [4, 0, 0], [2, 0, 0]];
    # nested forward mode returns rows 1 and 2 as zeros (not even symmetric): cumprod's
    # forward-mode rule at a zero entry loses the terms through that zero.
    "torch-cumprod-fwdfwd-at-zero": (
        "torch:func-fwdfwd",
        Program(3, (Node("input"), op("cumprod", 0, axis=0), op("sum", 1))),
        np.array([0.0, 2.0, 3.0]), "float64",
    ),
    # f = x1 / (x0 + 2) as the 1x1 system (x0 + 2) y = x1: the true H is
    # [[2 x1 / (x0 + 2)^3, -1 / (x0 + 2)^2], [-1 / (x0 + 2)^2, 0]]; nested forward mode
    # through torch.linalg.solve returns H[0, 0] halved and H[1, 0] = 0 (not symmetric),
    # for any traced matrix (the reverse-mode and mixed variants are right).
    "torch-solve-fwdfwd": (
        "torch:func-fwdfwd",
        Program(2, (Node("input"), op("gather", 0, idx=(0,)), const([2.0]), op("add", 1, 2),
                    op("reshape", 3, shape=(1, 1)), op("gather", 0, idx=(1,)), op("solve", 4, 5), op("sum", 6))),
        np.array([0.3, -0.7]), "float64",
    ),
    "torch-lgamma-float64": ("torch:func", Program(3, (Node("input"), op("lgamma", 0), op("sum", 1))),
                             np.array([1.7, 0.3, 5.5]), "float64"),
    # x**1.0 and x**0.0 are linear and constant, so H = 0 at x = 0; a float exponent
    # (array or Python float) gives NaN in JAX (jax#20574), any exponent in MLX, and a
    # tensor exponent 0 in PyTorch's reverse-over-reverse (pow_backward's where).
    "jax-pow-float-exponent-at-0": ("jax:fwdrev", _pow_at_0(1.0, "float"), np.array([0.0, 0.5]), "float64"),
    "mlx-pow-at-0": ("mlx:fwdrev", _pow_at_0(1.0, "int"), np.array([0.0, 0.5]), "float32"),
    "torch-pow-zero-tensor-exponent-at-0": ("torch:autograd", _pow_at_0(0.0, None), np.array([0.0, 0.5]), "float64"),
}


@pytest.mark.parametrize("key", sorted(FAULT_CASES))
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="an upstream fault found by the op sweep (see FAULT_CASES)")
def test_known_upstream_fault(key: str) -> None:
    variant_name, program, x, dtype = FAULT_CASES[key]
    failures = _failures(Case(program, x, dtype), [_variant(variant_name)])
    assert not failures, failures


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_i1_a_few_ulps_above_eps_is_rounding(dtype: str) -> None:
    """i1's derivative formula i0 - i1/x cancels terms of size 1/x near 0 (a rule scale of
    JAX's and PyTorch's, above |x| = eps where both use it), so both pass at 4 eps. (At
    and below eps JAX's i1'' is 1.0 where the truth is ~0: FAULT_CASES["jax-i1-at-0"].)"""
    program = Program(1, (Node("input"), op("i1", 0), op("sum", 1)))
    names = [v for v in all_variants() if v.name in ("jax:fwdrev", "torch:func", "torch:autograd")]
    x = np.array([4 * float(np.finfo(dtype).eps)])
    near = check_case(Case(program, x, dtype), names)
    assert not [v for v in near.verdicts if v.kind.is_failure], near.verdicts


def test_a_constant_integer_exponent_lifts_the_base_domain_only_up_to_the_oracles_limit() -> None:
    pow_ = get_op("pow")
    assert pow_.domains_at((-2.0, 3.0), (True, False)) == (None, None)  # (-2)**3: a polynomial
    assert pow_.domains_at((-2.0, -1.0), (True, False)) == ("nonzero", None)  # a pole at 0
    assert pow_.domains_at((-2.0, 3.0), (True, True)) == ("pos", None)  # a traced exponent
    assert pow_.domains_at((-2.0, 2.5), (True, False)) == ("pos", None)
    # Beyond the limit the oracle takes the generic a**b (a > 0): so does the domain.
    assert pow_.domains_at((-2.0, float(FIXED_INTEGER_LIMIT + 2)), (True, False)) == ("pos", None)
    assert not pow_.in_domain((-2.0, float(FIXED_INTEGER_LIMIT + 2)), (True, False))
