"""repro.py and env.txt: rendered from real findings, and run in fresh interpreters.

Every script runs in its own subprocess (only the framework and NumPy, as a maintainer
would run it). Importing JAX takes a second or two, so the module fixture renders every
case first and runs them all at once, and the cases that are about the script's exit
statuses rather than about JAX use a planted NumPy-only "framework".
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, final

import numpy as np
import pytest

from hessdiff.backends import registry
from hessdiff.backends.base import Backend, Variant
from hessdiff.backends.lowering import Absent, Lowering, Namespace
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.ir import Node, Program, op
from hessdiff.harness.ops import CATALOGUE
from hessdiff.harness.repro import render_env, render_repro
from hessdiff.harness.repro_check import RTOL, exception_name, tolerance

# f(x) = sum(relu(x)^2): H = diag(2 [x > 0]).
PROGRAM = Program(2, (Node("input"), op("relu", 0), op("square", 1), op("sum", 2)))
POINT = np.array([1.5, -0.25])


def hessian_that_raises(f):  # type: ignore[no-untyped-def]  # its source goes into repro.py
    raise RuntimeError("planted: cannot differentiate twice")


def hessian_of_zeros(f):  # type: ignore[no-untyped-def]
    return lambda x: np.zeros((x.shape[0], x.shape[0]))


_NUMPY_LOWERINGS: dict[str, Lowering | Absent] = {
    **{name: Absent("planted NumPy 'framework'") for name in CATALOGUE},
    "const": lambda m, value: m.np.asarray(value, dtype=m.dtype),
    "relu": lambda m, a: m.np.maximum(a, 0.0),
    "square": lambda m, a: m.np.square(a),
    "sum": lambda m, a: m.np.sum(a),
}


@final
class _PlantedBackend(Backend):
    """A NumPy-only 'framework' (its scripts start fast) whose Hessians are planted."""

    name = "planted"
    distribution = "numpy"
    extra = "test"
    modules = ("numpy",)
    variants = {
        "boom": Variant.calling("raises", hessian_that_raises),
        "zeros": Variant.calling("all zeros", hessian_of_zeros),
    }
    gradient = staticmethod(lambda m, f: f)
    lowerings = _NUMPY_LOWERINGS
    source_imports = ""

    def namespace(self, dtype: str) -> Namespace:
        return Namespace(np=np, dtype=getattr(np, dtype))

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return {"np": "np", "dtype": f"np.{dtype}"}

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def environment_report(self) -> str:
        raise RuntimeError("planted: no report")


def _finding(kind: Kind, dtype: str, expected: np.ndarray | None, *, variant: str = "jax:fwdrev",
             observed: np.ndarray | None = None, point: np.ndarray = POINT, error: str = "",
             others: dict[str, Any] | None = None) -> Finding:
    return Finding(
        kind=kind, variant=variant, versions={"jax": "test"}, dtype=dtype, program=PROGRAM,
        point=np.asarray(point, dtype=dtype).astype(np.float64), observed=observed,
        expected=expected, others=others or {}, explanation="H[0, 0] differs.", error=error,
        max_error=1.0 if kind is Kind.WRONG_VALUE else 0.0,
    )


def _true_hessian(dtype: str) -> np.ndarray:
    from hessdiff.backends.registry import get_variant

    return get_variant("jax:fwdrev").hessian(PROGRAM, POINT.astype(dtype)).astype(np.float64)


def _cases() -> dict[str, Finding]:
    cases: dict[str, Finding] = {}
    for dtype in ("float32", "float64"):
        h = _true_hessian(dtype)
        wrong = h.copy()
        wrong[0, 0] += 1.0
        cases[f"wrong-{dtype}"] = _finding(Kind.WRONG_VALUE, dtype, wrong, observed=h)
        right = h.copy()
        right[1, 1] = np.nan  # undefined entries are skipped, whatever H says there
        cases[f"right-{dtype}"] = _finding(Kind.WRONG_VALUE, dtype, right, observed=h)
    zeros = np.zeros((2, 2))
    cases["crash-fixed"] = _finding(Kind.CRASH, "float64", zeros, variant="planted:zeros",
                                    error="TypeError: old")
    cases["crash-planted"] = _finding(Kind.CRASH, "float64", None, variant="planted:boom",
                                      error="RuntimeError: planted: cannot differentiate twice")
    cases["value-but-raises"] = _finding(Kind.WRONG_VALUE, "float64", np.eye(2), variant="planted:boom")
    return cases


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, subprocess.CompletedProcess[str]]]:
    """case -> (repro.py source, its completed run), all run concurrently."""
    registry.all_backends()
    registry.register(_PlantedBackend())
    try:
        sources = {name: render_repro(f) for name, f in _cases().items()}
    finally:
        registry.unregister("planted")
    folder = tmp_path_factory.mktemp("repro")
    procs = {}
    for name, source in sources.items():
        script = folder / f"{name}.py"
        script.write_text(source, encoding="utf-8")
        procs[name] = subprocess.Popen(
            [sys.executable, str(script)], cwd=folder, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (sources[name], subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def _status(run: subprocess.CompletedProcess[str]) -> str:
    return f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr[-2000:]}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_wrong_expected_reproduces(runs: Any, dtype: str) -> None:
    _, run = runs[f"wrong-{dtype}"]
    assert run.returncode == 1, _status(run)
    assert "REPRODUCED: 1 of 4 defined entries differ" in run.stdout
    assert "jax:fwdrev hessian:" in run.stdout and "expected hessian:" in run.stdout


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matching_expected_does_not_reproduce(runs: Any, dtype: str) -> None:
    _, run = runs[f"right-{dtype}"]
    assert run.returncode == 0, _status(run)
    assert "NOT REPRODUCED" in run.stdout
    assert "REPRODUCED:" not in run.stdout.replace("NOT REPRODUCED:", "")


def test_crash_that_no_longer_crashes_is_not_reproduced(runs: Any) -> None:
    _, run = runs["crash-fixed"]
    assert run.returncode == 0, _status(run)
    assert "NOT REPRODUCED: the Hessian computation finished without raising" in run.stdout


def test_crash_reproduces_with_its_traceback(runs: Any) -> None:
    source, run = runs["crash-planted"]
    assert "try:" not in source  # the crash is the repro: nothing is caught
    assert run.returncode == 1, _status(run)
    assert "REPRODUCED: the Hessian computation raised RuntimeError" in run.stdout
    assert "Traceback" in run.stderr and "planted: cannot differentiate twice" in run.stderr


def test_exception_in_a_value_finding_is_inconclusive(runs: Any) -> None:
    _, run = runs["value-but-raises"]
    assert run.returncode == 2, _status(run)
    assert "INCONCLUSIVE" in run.stdout


def test_script_uses_only_the_framework_and_numpy(runs: Any) -> None:
    source, _ = runs["wrong-float64"]
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "jax", "numpy", "os", "sys"}, imported
    assert "harness" not in source.split('"""', 2)[2]


def test_docstring_is_an_issue() -> None:
    h = _true_hessian("float64")
    wrong = h.copy()
    wrong[0, 0] = 3.0
    others = {"torch:func": wrong, "mlx:fwdrev": None, "jax:revrev": h}
    doc = ast.get_docstring(ast.parse(render_repro(_finding(Kind.WRONG_VALUE, "float64", wrong,
                                                            observed=h, others=others))))
    assert doc is not None
    title = doc.splitlines()[0]
    assert title == "jax.hessian(f) returns a wrong Hessian for f(x) = sum(square(relu(x))) (float64)"
    for heading in ("Observed", "Expected", "Why the expected value is right", "Program", "Versions"):
        assert f"\n{heading}\n" in doc
    assert "50 significant digits" in doc and "SymPy" in doc
    assert "torch:func: agrees with the expected Hessian" in doc
    assert "jax:revrev: differs from the expected Hessian" in doc
    assert "mlx:fwdrev: no Hessian" in doc
    assert PROGRAM.pretty().splitlines()[1] in doc
    assert "jax|fwd-over-rev|wrong_value|float64|relu+square+sum" in doc


def test_point_is_exact_in_float32() -> None:
    point = np.array([0.1, -0.3], dtype=np.float32)
    finding = _finding(Kind.WRONG_VALUE, "float32", np.eye(2), point=point)
    source = render_repro(finding)
    exact = [repr(float(v)) for v in point]
    assert f"np.array([{exact[0]}, {exact[1]}])" in source
    assert "jnp.float32" in source


def test_expected_literal_is_exact_and_nan_is_spelled_out() -> None:
    expected = np.array([[1 / 3, np.nan], [np.nan, 2.0]])
    source = render_repro(_finding(Kind.WRONG_VALUE, "float64", expected))
    assert f"    [{1 / 3!r}, float('nan')]," in source
    compile(source, "repro.py", "exec")


def test_tolerance_by_dtype_and_scale() -> None:
    expected = np.array([[-40.0, 0.0], [0.0, np.nan]])
    tol64, scale, _ = tolerance(_finding(Kind.NOISE, "float64", expected))
    tol32, _, _ = tolerance(_finding(Kind.NOISE, "float32", expected))
    assert scale == 40.0
    assert tol64 == RTOL["float64"] * 40.0 and tol32 == RTOL["float32"] * 40.0
    small = _finding(Kind.WRONG_VALUE, "float32", expected)
    small.max_error = 1e-4  # below the dtype tolerance: the repro must still see it
    assert tolerance(small)[0] == 5e-5


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_renders_valid_python(kind: Kind) -> None:
    observed = None if kind in (Kind.CRASH, Kind.TIMEOUT) else np.zeros((2, 2))
    source = render_repro(_finding(kind, "float64", np.eye(2), observed=observed, error="boom"))
    compile(source, "repro.py", "exec")
    assert "sys.exit(1)" in source or kind in (Kind.CRASH, Kind.TIMEOUT)


def test_docstring_survives_quotes_and_backslashes() -> None:
    finding = _finding(Kind.CRASH, "float64", None, error='Error: """ \\n C:\\path')
    doc = ast.get_docstring(ast.parse(render_repro(finding)), clean=False)
    assert doc is not None and '""" \\n C:\\path' in doc


@pytest.mark.parametrize("error, name", [
    ("RuntimeError: planted", "RuntimeError"),
    ("Traceback (most recent call last):\n  File ...\njax.errors.TracerBoolConversionError: x",
     "TracerBoolConversionError"),
    ("something went wrong", ""),
    ("", ""),
])
def test_recorded_exception_type(error: str, name: str) -> None:
    assert exception_name(error) == name


def test_env_lists_versions_and_backend_report() -> None:
    text = render_env(_finding(Kind.WRONG_VALUE, "float64", np.eye(2)))
    assert "python: 3." in text and f"numpy: {np.__version__}" in text
    assert "jax: test" in text
    assert "jaxlib" in text  # jax.print_environment_info


def test_env_never_fails(clean_registry: None) -> None:
    registry.register(_PlantedBackend())
    text = render_env(_finding(Kind.CRASH, "float64", None, variant="planted:boom"))
    assert "unavailable: RuntimeError: planted: no report" in text
    text = render_env(_finding(Kind.CRASH, "float64", None, variant="nosuch:variant"))
    assert "unavailable: KeyError" in text
