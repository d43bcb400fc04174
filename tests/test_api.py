from __future__ import annotations

import doctest
import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hessdiff
from hessdiff.backends import BackendUnavailable, get_backend, register
from hessdiff.harness.api import CheckResult, InputError, check, hessian
from hessdiff.harness.ir import Program, ProgramError, op

ROOT = Path(__file__).resolve().parent.parent
JAX = get_backend("jax").availability()
needs_jax = pytest.mark.skipif(not JAX.available, reason=JAX.reason)


# --- the public surface ---------------------------------------------------------------------


def test_the_public_names_are_exactly_all_and_each_resolves_to_its_module_s() -> None:
    public = {name for name in dir(hessdiff) if not name.startswith("_")}
    assert public == set(hessdiff.__all__)
    assert {"hessian", "check", "parse_program", "CheckResult", "ProgramError"} <= public
    for name in hessdiff.__all__:
        module = importlib.import_module(hessdiff._PUBLIC[name])
        assert getattr(hessdiff, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="no attribute 'tanh'"):
        hessdiff.tanh  # noqa: B018


def test_parsing_a_program_imports_no_framework() -> None:
    code = ("import sys, hessdiff; hessdiff.parse_program('sum(tanh(x))', 2); hessdiff.check; "
            "print(sorted({'jax', 'torch', 'mlx', 'equinox'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT)}, check=True)
    assert done.stdout.strip() == "[]"


# --- hessian ------------------------------------------------------------------------------


@needs_jax
@pytest.mark.parametrize("variant", list(get_backend("jax").variants))
def test_hessian_is_jax_s_for_every_jax_variant(variant: str) -> None:
    import jax
    import jax.numpy as jnp

    from hessdiff.backends.jax_backend import jax_precision

    x = np.array([0.5, -1.0, 2.0])
    with jax_precision("float64"):
        expected = jax.hessian(lambda v: jnp.sum(jnp.tanh(v) * v[0]))(jnp.asarray(x))
    got = hessian("v1 = tanh(x); v2 = gather(x, idx=(0,)); v3 = mul(v1, v2); sum(v3)", x, f"jax:{variant}")
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-14, atol=1e-15)


@needs_jax
def test_hessian_computes_in_the_dtype_asked_for() -> None:
    program = Program(1, (op("input"), op("square", 0), op("sum", 1)))
    h = hessian(program, [0.1], "jax", dtype="float32")
    assert h.dtype == np.float32 and h.tolist() == [[2.0]]


def test_hessian_names_what_is_wrong_with_its_input() -> None:
    with pytest.raises(InputError, match=r"unknown variant 'jax:nope'; jax has variants: fwdrev"):
        hessian("sum(x)", [1.0], "jax:nope")
    with pytest.raises(InputError, match="unknown backend 'nope'"):
        hessian("sum(x)", [1.0], "nope")
    with pytest.raises(ProgramError, match="unknown op 'tanhh' at column 5"):
        hessian("sum(tanhh(x))", [1.0])
    with pytest.raises(InputError, match=r"x has 2 entries, but the program takes 1"):
        hessian(Program(1, (op("input"), op("sum", 0))), [1.0, 2.0])
    with pytest.raises(InputError, match="dtype='float16', but it must be one of"):
        hessian("sum(x)", [1.0], dtype="float16")
    with pytest.raises(InputError, match="must be a finite float32"):
        hessian("sum(x)", [1e39], dtype="float32")
    with pytest.raises(InputError, match="must be a non-empty vector"):
        hessian("sum(x)", [[1.0]])


def test_hessian_of_a_missing_framework_says_what_to_install(clean_registry: None, planted: type) -> None:
    class Missing(planted):  # type: ignore[misc, valid-type]
        name = "missing_fw"
        extra = "missing_fw"
        modules = ("hessdiff_no_such_module_xyz",)

    register(Missing())
    with pytest.raises(BackendUnavailable, match=r"pip install 'hessdiff\[missing_fw\]'"):
        hessian("sum(x)", [1.0], "missing_fw")
    result = check("sum(x)", [1.0], variants=["missing_fw"])
    assert result.summary() == {"missing_fw:only": "unavailable"}
    assert "pip install 'hessdiff[missing_fw]'" in result.table()


# --- check --------------------------------------------------------------------------------


@pytest.fixture
def planted_jax(clean_registry: None) -> None:
    if not JAX.available:
        pytest.skip(JAX.reason)
    sys.path.insert(0, str(ROOT / "tests"))
    from planted import PlantedBackend

    register(PlantedBackend())


def test_check_judges_each_variant_against_the_oracle(planted_jax: None) -> None:
    x = [0.5, -1.0]
    program = "sum(mul(tanh(x), gather(x, idx=(1, 0))))"
    result = check(program, x, variants=["planted:honest", "planted:no_cross"])
    assert isinstance(result, CheckResult)
    assert result.summary() == {"planted:honest": "agrees", "planted:no_cross": "wrong_value"}
    assert result.wrong == ("planted:no_cross",) and not result.agree
    honest = result.outcomes["planted:honest"].hessian
    np.testing.assert_allclose(honest, result.oracle, rtol=1e-14)
    table = result.table()
    assert re.search(r"^oracle +truth ", table, re.M)
    assert re.search(r"^planted:no_cross +wrong_value +\d", table, re.M)
    assert "planted:no_cross: wrong_value: planted:no_cross returns H[" in table
    assert table.rstrip().endswith("verdicts: 1 agrees, 1 wrong_value; judged wrong: planted:no_cross")


def test_check_lists_every_variant_asked_for_in_registry_order(planted_jax: None) -> None:
    result = check("sum(square(x))", [1.0, 2.0, 3.0, 4.0], variants=["planted"])
    assert result.variants == ("planted:honest", "planted:pl_gradient", "planted:no_cross", "planted:row0")
    assert result.summary()["planted:row0"] == "wrong_value"
    table = str(result)
    assert "oracle:\n  2  0  0  0\n" in table  # a 4x4 Hessian is listed below the table


def test_check_where_the_program_is_undefined_runs_nothing(planted_jax: None) -> None:
    result = check("sum(log(x))", [-1.0], variants=["planted:honest"])
    assert result.oracle is None and not result.agree
    assert result.summary() == {"planted:honest": "not run"}
    assert "outside its domain" in result.note and "not checked" in result.table()


def test_check_rounds_the_point_to_the_dtype(planted_jax: None) -> None:
    result = check("sum(square(x))", [0.1], dtype="float32", variants=["planted:honest"])
    assert result.point.tolist() == [float(np.float32(0.1))]


def test_isolated_check_survives_a_framework_that_kills_its_process(clean_registry: None) -> None:
    """``hessdiff check`` runs each framework in a worker (``isolated=True``): a segfault
    or an abort inside a framework is that variant's crash outcome, and the caller, with
    the other variants' verdicts, lives on."""
    sys.path.insert(0, str(ROOT / "tests"))
    from hostile import HostileBackend

    register(HostileBackend())
    result = check("sum(mul(x, x))", [1.0, 2.0], variants=["hostile:segfault", "hostile:abort"], isolated=True)
    crashes = {name: outcome for name, outcome in result.outcomes.items()}
    assert {o.status for o in crashes.values()} == {"crash"}, crashes
    assert "Segmentation fault" in crashes["hostile:segfault"].error
    assert "hostile:segfault" in result.table()


def test_check_refuses_an_empty_or_unknown_variant_list() -> None:
    with pytest.raises(InputError, match="names no variant"):
        check("sum(x)", [1.0], variants=[])
    with pytest.raises(InputError, match="must be a list of names"):
        check("sum(x)", [1.0], variants="jax")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown variant 'jax:nope'"):
        check("sum(x)", [1.0], variants=["jax:nope"])


@pytest.mark.slow
def test_check_on_sum_tanh_at_50_lists_the_oracle_and_every_variant() -> None:
    result = check("sum(tanh(x))", [50.0])
    from hessdiff.backends import all_variants

    assert result.variants == tuple(v.name for v in all_variants())
    lines = result.table().splitlines()
    rows = lines[lines.index(next(l for l in lines if l.startswith("variant "))) + 2:]
    assert rows[0].startswith("oracle ")
    for name, row in zip(result.variants, rows[1:]):
        assert row.split()[:2] == [name, result.status(name)]
    assert not result.wrong


# --- the README -------------------------------------------------------------------------------


def _python_blocks(title: str) -> str:
    """The ```python blocks of the README's section ``title``, one after another."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else None]
    return "\n".join(re.findall(r"^```python\n(.*?)^```$", section, re.M | re.S))


@needs_jax
def test_the_readme_s_python_api_section_runs_as_written() -> None:
    section = _python_blocks("Python API")
    test = doctest.DocTestParser().get_doctest(section, {}, "README.md#python-api", "README.md", 0)
    assert len(test.examples) >= 8
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=lambda text: pytest.fail(text))
    assert runner.summarize(verbose=False).failed == 0
