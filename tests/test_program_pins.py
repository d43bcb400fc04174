"""Pins of what the generator, the oracle, the screen and coverage compute today, so a
restructure of the op catalogue or the oracle (issue #14) can show it changes no
behaviour: seeds keep producing the same programs, and the oracle the same Hessians
and bounds, bit for bit.

Each pin is the SHA-256 of a canonical text (``TEXTS``: the oracle's values to 30 digits, every float
exactly) with a few readable literals
beside it. When a pin fails on purpose (a generation change, a new op), print the
texts with ``python tests/test_program_pins.py [name]`` on both trees, diff them, and
update the digest only once the difference is understood.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from hessdiff.harness.exact import exercised
from hessdiff.harness.ir import Node, Program, const, op
from hessdiff.harness.ops import CATALOGUE
from hessdiff.harness.oracle import OracleResult, OutOfDomain, conventions, evaluate, node_values, piecewise_linear
from hessdiff.harness.screen import screen
from hessdiff.harness.seeding import seed_only
from hessdiff.harness.strategies import Case, cases, probe_program

X = np.array([0.7, -1.3, 2.1])


def _floats(values: object) -> str:
    return " ".join(repr(float(v)) for v in np.ravel(np.asarray(values, dtype=np.float64)))


def _mpfs(values: object) -> str:
    return " ".join(mpmath.nstr(v, 30) for v in np.ravel(np.asarray(values, dtype=object)))


def _point(x: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray(x, dtype=dtype).astype(np.float64)


# --- what is pinned ------------------------------------------------------------------


def drawn_cases(seed: int, count: int) -> list[Case]:
    """The first ``count`` cases Hypothesis draws under ``seed`` (the campaign's and the
    benchmarks' way of reproducing a workload), both dtypes, MLPs included, without
    local constants (``hessdiff.harness.seeding``)."""
    found: list[Case] = []

    @settings(max_examples=count, database=None, deadline=None, derandomize=False, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(cases(dtypes=("float64", "float32"), max_n=4))
    def collect(case: Case) -> None:
        found.append(case)

    with seed_only():
        collect()
    return found


def _case_text(case: Case) -> str:
    return f"{case.dtype} [{_floats(case.point)}] {case.program.dumps()}"


def probes() -> Iterator[tuple[str, str, int, int | None, Program | str]]:
    """Every op's probe programs (``probe_program``): two seeds, both dtypes, unaimed and
    aimed at its first special value."""
    for name, spec in CATALOGUE.items():
        for seed, dtype in ((0, "float64"), (1, "float32")):
            for aim in (None, 0) if spec.special_names else (None,):
                try:
                    program: Program | str = probe_program(name, 3, _point(X, dtype), dtype, seed=seed, aim=aim)
                except ValueError as exc:
                    program = f"ValueError: {exc}"
                yield name, dtype, seed, aim, program


def oracle_text(result: OracleResult) -> str:
    """Everything a judge reads of an oracle result, exactly."""
    lines = [
        f"value {mpmath.nstr(result.value, 30)}",
        f"gradient {_mpfs(result.gradient)}",
        f"hessian {_mpfs(result.hessian)}",
        f"hessian_scale {_floats(result.hessian_scale)}",
        f"gradient_scale {_floats(result.gradient_scale)}",
        f"value_scale {result.value_scale!r}",
        f"kinks {sorted((k.node, k.op, k.element) for k in result.kinks)}",
        f"kink_distance {result.kink_distance!r} kink_gap {result.kink_gap!r} kink_ops {sorted(result.kink_ops)}",
        f"max_magnitude {result.max_magnitude!r} product_peak {result.product_peak!r}",
        f"specials {sorted(result.specials)} sides {list(result.sides)!r}",
        f"underflow {result.underflow} {result.underflow_vars}",
    ]
    for framework in result.framework_scales:
        lines.append(f"scale_for {framework} {_floats(result.scale_for(framework))}")
    return "\n".join(lines)


def _evaluated(program: Program, x: np.ndarray, dtype: str, fuzz: float = 0.0) -> str:
    try:
        result = evaluate(program, x, dtype, kink_fuzz=fuzz)
    except OutOfDomain as exc:
        return f"OutOfDomain: {exc}"
    text = oracle_text(result)
    if result.sides and len(result.sides) <= 2:
        for k, other in enumerate(conventions(program, x, dtype, result.sides, kink_fuzz=fuzz)):
            text += f"\nconvention {k}: hessian {_mpfs(other.hessian)} scale {_floats(other.hessian_scale)}"
    return text


# Hand-made programs: one of every kind of op mathematics (elementwise, piecewise at and
# near a kink, structural, bilinear, whole-array, selection at a tie), rule scales of
# one framework, integer exponents, domain edges and underflow.
def _program(n: int, *nodes: Node) -> Program:
    return Program(n, (Node("input"), *nodes))


WHOLE = {"axis": None, "keepdims": False}
FIXED: dict[str, tuple[Program, tuple[float, ...], str]] = {
    "tanh-sin-sum": (_program(2, op("sin", 0), op("tanh", 1), op("mul", 2, 0), op("sum", 3)), (0.3, -1.7), "float64"),
    "pow-integer-exponent": (_program(2, const([3.0, -2.0]), op("pow", 0, 1), op("sum", 2)), (-0.5, 1.25), "float32"),
    "relu-at-kink": (_program(3, op("relu", 0), op("square", 1), op("mean", 2)), (0.0, 1.5, -2.0), "float64"),
    "leaky-clip-maximum": (_program(2, op("leaky_relu", 0, alpha=0.1), op("clip", 1, lo=-0.5, hi=0.75),
                                    op("maximum", 2, 0), op("mul", 3, 3), op("sum", 4)), (0.75, -0.2), "float32"),
    "matmul-dot": (_program(2, const([[1.5, -0.5], [0.25, 2.0]]), op("matmul", 1, 0), op("tanh", 2), op("dot", 3, 0)),
                   (0.4, -0.9), "float64"),
    "logsumexp-softmax-det": (_program(3, op("softmax", 0, axis=0), op("mul", 1, 0), op("logsumexp", 2, **WHOLE),
                                       op("gather", 0, idx=(0, 1, 2, 0)), op("reshape", 4, shape=(2, 2)),
                                       op("det", 5), op("mul", 3, 6)), (0.5, -1.0, 2.0), "float64"),
    "prod-cumprod-torch": (_program(3, op("cumprod", 0, axis=0), op("prod", 1, **WHOLE)), (0.083, 4.93, -2.5),
                           "float32"),
    "max-tie-norm-sort": (_program(3, op("sort", 0), op("norm", 1, **WHOLE, ord=1), op("max", 0, **WHOLE),
                                   op("add", 2, 3)), (1.0, 1.0, 0.0), "float64"),
    "expm1-rule-scale": (_program(2, op("expm1", 0), op("softsign", 1), op("sum", 2)), (-30.0, 2.0), "float64"),
    "hypot-underflow": (_program(2, const([1e-170, 0.5]), op("hypot", 0, 1), op("sum", 2)), (0.0, 2.0), "float64"),
    "log-near-edge": (_program(2, op("log", 0), op("sum", 1)), (1e-30, 3.0), "float32"),
    "std-cholesky": (_program(3, op("std", 0, **WHOLE), op("gather", 0, idx=(0, 1, 1, 2)),
                              op("reshape", 2, shape=(2, 2)), op("transpose", 3), op("matmul", 3, 4),
                              const([[2.0, 0.0], [0.0, 2.0]]), op("add", 5, 6), op("cholesky", 7), op("sum", 8),
                              op("mul", 1, 9)), (0.5, -1.0, 2.0), "float64"),
    "solve-inv": (_program(3, op("gather", 0, idx=(0, 1, 2, 0)), op("reshape", 1, shape=(2, 2)),
                           const([[3.0, 0.0], [0.0, 3.0]]), op("add", 2, 3), op("inv", 4), op("sum", 5),
                           op("gather", 0, idx=(1, 2)), op("solve", 4, 7), op("sum", 8), op("mul", 6, 9)),
                  (0.5, -1.0, 2.0), "float32"),
    "floor-round-where": (_program(3, op("floor", 0), op("round", 0), op("where", 0, 1, 2), op("mul", 3, 0),
                                   op("sum", 4)), (2.0, 0.5, -1.25), "float64"),
    "lgamma-arctanh": (_program(2, op("lgamma", 0), op("sin", 0), op("arctanh", 2), op("add", 1, 3), op("sum", 4)),
                       (-2.5, 0.25), "float32"),
    "i1-gelu-tanh": (_program(2, op("i1", 0), op("gelu_tanh", 1), op("sum", 2)), (-0.0034, 3.0), "float64"),
}


def fixed_texts() -> dict[str, str]:
    """Each fixed program's oracle result, exactly and near its kinks (fuzz), its
    ``piecewise_linear``, node values, screen distances and coverage."""
    out = {}
    for name, (program, x, dtype) in FIXED.items():
        point = np.asarray(x)
        values = node_values(program.n, program.nodes, point, dtype)
        out[name] = "\n".join([
            program.dumps(), _evaluated(program, point, dtype), "fuzz " + _evaluated(program, point, dtype, 64.0),
            f"piecewise_linear {piecewise_linear(program)}", "values " + " | ".join(_floats(v) for v in values),
            "screen " + _screened(program, point, dtype), _exercised(program, point, dtype)])
    return out


def _exercised(program: Program, x: np.ndarray, dtype: str) -> str:
    seen = exercised(program, x, dtype)
    return "exercised " + " ".join(repr(sorted(getattr(seen, part))) for part in
                                   ("ops", "patterns", "exact", "kinds", "rules"))


def _screened(program: Program, x: np.ndarray, dtype: str) -> str:
    rng = np.random.default_rng(7)
    points = np.stack([x] + [x * (1 + 0.1 * rng.standard_normal(x.shape)) for _ in range(3)])
    return _floats(screen(program, points, dtype))


DRAWN_SEEDS = (5, 11)


def drawn_programs() -> dict[str, str]:
    """The drawn cases (dtype, point, program), by seed and draw."""
    return {f"seed {seed} case {k}": _case_text(case)
            for seed in DRAWN_SEEDS for k, case in enumerate(drawn_cases(seed, 40))}


def drawn_texts() -> dict[str, str]:
    """The drawn cases, each with its oracle result, screen and coverage at its point."""
    out = {}
    for seed in DRAWN_SEEDS:
        for k, case in enumerate(drawn_cases(seed, 40)):
            out[f"seed {seed} case {k}"] = "\n".join([
                _case_text(case), _evaluated(case.program, case.point, case.dtype),
                "screen " + _screened(case.program, case.point, case.dtype),
                _exercised(case.program, case.point, case.dtype)])
    return out


def probe_programs() -> dict[str, str]:
    return {f"{name} {dtype} seed={seed} aim={aim}": program if isinstance(program, str) else program.dumps()
            for name, dtype, seed, aim, program in probes()}


def probe_texts() -> dict[str, str]:
    """Every probe program with its oracle result and screen at the probe point."""
    out = {}
    for name, dtype, seed, aim, program in probes():
        key = f"{name} {dtype} seed={seed} aim={aim}"
        if isinstance(program, str):
            out[key] = program
            continue
        point = _point(X, dtype)
        out[key] = "\n".join([program.dumps(), _evaluated(program, point, dtype),
                              "screen " + _screened(program, point, dtype)])
    return out


def _digest(texts: dict[str, str]) -> str:
    joined = "\n\n".join(f"{key}\n{text}" for key, text in texts.items())
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


TEXTS: dict[str, Callable[[], dict[str, str]]] = {
    "fixed": fixed_texts, "drawn_programs": drawn_programs, "drawn": drawn_texts,
    "probe_programs": probe_programs, "probes": probe_texts,
}


# --- the pins ------------------------------------------------------------------------

# Generated from the tree before issue #14's split of the catalogue and the oracle.
PROBES = 332
DIGESTS = {
    "drawn_programs": "01a48c7bb2c19a6b217f4268ca9f5597",
    "drawn": "13ecdda4425fd022314a201fe06f2af4",
    "probe_programs": "644c40b1348f757f6fa8f77a3c543bb6",
    "probes": "246c7d937678636a4ec1163694b95bd4",
}

FIXED_DIGESTS = {
    "tanh-sin-sum": "2b8add8c0a7422ff3382b915e6bb328f",
    "pow-integer-exponent": "cdd9cd6f5859462156b464998b9f85e4",
    "relu-at-kink": "8df43d59f5d931b738f12fc638023613",
    "leaky-clip-maximum": "1f46f1690db18fe725ecfa1969fdc4eb",
    "matmul-dot": "ecab34011bb637629ae1bbbc20b0fa8c",
    "logsumexp-softmax-det": "18cd319c469575c1cf83f61c7a99d2c4",
    "prod-cumprod-torch": "452a03ad1426bf26ab6f69f8b3b17597",
    "max-tie-norm-sort": "d865349ba182882376288cbb686cf57b",
    "expm1-rule-scale": "cc49499e83b8cc694d406eeea476e0ae",
    "hypot-underflow": "ebdb0b77d89818d4d6ff93d99cf2f837",
    "log-near-edge": "3ccc47f36af93c643b359bac9d50bd0d",
    "std-cholesky": "c2f8736e4ad358b1dc1cb7e5016c2720",
    "solve-inv": "473023f1afb1477cfd80ef09668f3596",
    "floor-round-where": "a5de8bc8a3961cac2db60e2fa88f6eed",
    "lgamma-arctanh": "c0a3b1971eb9f043c1cfdf86ae2fff3a",
    "i1-gelu-tanh": "371b9ae872e5e887f3ed22ff57fe41ae",
}


def test_the_first_drawn_cases_are_these_programs() -> None:
    drawn = drawn_programs()
    assert drawn["seed 5 case 0"] == (
        'float64 [0.0] {"n": 1, "nodes": [{"op": "input"}, {"op": "relu", "args": [0]}, {"op": "sum", "args": [1]}]}')
    assert drawn["seed 5 case 8"] == (
        'float32 [1.100000023841858 -2.79561710357666 -1.0000000031710769e-30 0.15527664124965668] {"n": 4, '
        '"nodes": [{"op": "input"}, {"op": "div", "args": [0, 0]}, {"op": "square", "args": [1]}, '
        '{"op": "add", "args": [1, 2]}, {"op": "sum", "args": [3]}]}')
    assert _digest(drawn) == DIGESTS["drawn_programs"]


def test_every_ops_probe_programs_are_pinned() -> None:
    programs = probe_programs()
    assert len(programs) == PROBES
    assert _digest(programs) == DIGESTS["probe_programs"]


def test_the_oracle_on_fixed_programs_is_pinned_bit_for_bit() -> None:
    texts = fixed_texts()
    tanh = texts["tanh-sin-sum"].splitlines()
    assert tanh[3] == "hessian 1.52742018589713474122196419396 0.0 0.0 -0.844831784323369121480269999671"
    assert tanh[4] == "hessian_scale 8.186229793733723 0.0 0.0 9.199455974219429"
    power = texts["pow-integer-exponent"].splitlines()  # float32
    assert power[3] == "hessian -3.0 0.0 0.0 2.4576"
    assert power[4] == "hessian_scale 6.0 0.0 0.0 12.288"
    kink = texts["relu-at-kink"].splitlines()  # undefined at the kink, one-sided in each convention
    assert kink[3] == "hessian nan 0.0 0.0 0.0 0.666666666666666666666666666667 0.0 0.0 0.0 0.0"
    assert {name: _digest({name: text}) for name, text in texts.items()} == FIXED_DIGESTS


def test_the_oracle_screen_and_coverage_on_drawn_cases_are_pinned() -> None:
    assert _digest(drawn_texts()) == DIGESTS["drawn"]


@pytest.mark.slow
def test_the_oracle_and_screen_on_every_ops_probes_are_pinned() -> None:
    assert _digest(probe_texts()) == DIGESTS["probes"]


if __name__ == "__main__":
    for which in sys.argv[1:] or list(TEXTS):
        texts = TEXTS[which]()
        for key, text in texts.items():
            print(f"-- {key}\n{text}", end="\n\n")
        print(f"== {which} {_digest(texts)} ({len(texts)})")
        if which == "fixed":
            print({name: _digest({name: text}) for name, text in texts.items()})
