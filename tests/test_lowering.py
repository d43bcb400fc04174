from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hessdiff.backends import Absent, BackendVariant, registry
from hessdiff.backends.lowering import Namespace, SourceNamespace, Src, array_literal, render
from hessdiff.harness.ir import Program, op
from hessdiff.harness.ops import CATALOGUE, OpSpec

a, b = Src("a"), Src("b")


# --- Src records calls, attributes, operators and indexing as text ------------------------


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        pytest.param(Src("jnp").sin(a), "jnp.sin(a)", id="call"),
        pytest.param(Src("jnp").clip(a, -1.0, 2), "jnp.clip(a, -1.0, 2)", id="call-numbers"),
        pytest.param(Src("jnp").sum(a, axis=0, keepdims=True), "jnp.sum(a, axis=0, keepdims=True)", id="kwargs"),
        pytest.param(Src("jax").nn.relu(a), "jax.nn.relu(a)", id="attribute-chain"),
        pytest.param(a.T, "a.T", id="attribute"),
        pytest.param(Src("f")(a, (1, 0), [2, 3], None), "f(a, (1, 0), [2, 3], None)", id="containers"),
        pytest.param(Src("f")((1,)), "f((1,))", id="one-tuple"),
        pytest.param(Src("f")("float64"), "f('float64')", id="string"),
        pytest.param(a + b, "(a + b)", id="add"),
        pytest.param(a - 1.5, "(a - 1.5)", id="sub"),
        pytest.param(a * b, "(a * b)", id="mul"),
        pytest.param(a / 2, "(a / 2)", id="truediv"),
        pytest.param(a**2, "(a ** 2)", id="pow"),
        pytest.param(a @ b, "(a @ b)", id="matmul"),
        pytest.param(1 + a, "(1 + a)", id="radd"),
        pytest.param(2 - a, "(2 - a)", id="rsub"),
        pytest.param(0.5 * a, "(0.5 * a)", id="rmul"),
        pytest.param(1 / a, "(1 / a)", id="rtruediv"),
        pytest.param(2**a, "(2 ** a)", id="rpow"),
        pytest.param(-a, "(-a)", id="neg"),
        pytest.param(-(a + b), "(-(a + b))", id="neg-compound"),
        pytest.param(a > 0, "(a > 0)", id="gt"),
        pytest.param(a < 0, "(a < 0)", id="lt"),
        pytest.param(a >= b, "(a >= b)", id="ge"),
        pytest.param(a <= b, "(a <= b)", id="le"),
        pytest.param(a - (-1.5), "(a - (-1.5))", id="negative-literal"),
        pytest.param((-2.0) ** a, "((-2.0) ** a)", id="negative-base"),
        pytest.param((a + b) * (a - b), "((a + b) * (a - b))", id="nested"),
        pytest.param(a[0], "a[0]", id="index"),
        pytest.param(a[-1], "a[-1]", id="negative-index"),
        pytest.param(a[1:3], "a[1:3]", id="slice"),
        pytest.param(a[::2], "a[::2]", id="step"),
        pytest.param(a[::-1], "a[::-1]", id="reverse"),
        pytest.param(a[:, None], "a[:, None]", id="newaxis"),
        pytest.param(a[..., 0], "a[..., 0]", id="ellipsis"),
        pytest.param(a[[1, 0, 1]], "a[[1, 0, 1]]", id="fancy"),
        pytest.param(a[b], "a[b]", id="index-by-src"),
    ],
)
def test_src_renders(expr: Src, text: str) -> None:
    assert isinstance(expr, Src)
    assert expr.text == text
    assert repr(expr) == text


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        (a + b * 2 - 1, (3.0 + 4.0 * 2 - 1)),
        (-(a**2) / b, -(3.0**2) / 4.0),
        (2 - a / (b - 1), 2 - 3.0 / (4.0 - 1)),
        ((a - -1.5) * -b, (3.0 + 1.5) * -4.0),
    ],
)
def test_rendered_operators_keep_python_precedence(expr: Src, value: float) -> None:
    assert eval(expr.text, {"a": 3.0, "b": 4.0}) == value  # noqa: S307 - test of our own printer


def test_bool_raises_with_the_traced_expression() -> None:
    with pytest.raises(TypeError, match=r"branched on the traced value \(a > 0\); lowerings must be straight-line"):
        if a > 0:
            pass


def test_dunder_attributes_are_not_recorded() -> None:
    with pytest.raises(AttributeError):
        a.__array__  # noqa: B018


# --- render -------------------------------------------------------------------------------


@given(st.floats(allow_nan=False))
def test_floats_round_trip_through_repr(x: float) -> None:
    y = eval(render(x))  # noqa: S307 - test of our own printer
    assert y == x and math.copysign(1.0, y) == math.copysign(1.0, x)


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_scalars_render_their_exact_value(x: float) -> None:
    assert eval(render(np.float32(x))) == float(np.float32(x))  # noqa: S307


def test_special_floats() -> None:
    assert render(float("nan")) == "float('nan')"
    assert render(float("inf")) == "float('inf')"
    assert render(float("-inf")) == "-float('inf')"
    assert math.isnan(eval(render(float("nan")))), "nan renders to nan"  # noqa: S307


def test_render_scalars_and_containers() -> None:
    assert render(None) == "None"
    assert render(True) == "True"
    assert render(3) == "3"
    assert render(0.1) == "0.1"
    assert render(()) == "()"
    assert render((1.0,)) == "(1.0,)"
    assert render([1, (2, 3)]) == "[1, (2, 3)]"
    assert render(slice(1, None, -1)) == "1::-1"


def test_render_refuses_what_it_cannot_print() -> None:
    with pytest.raises(TypeError, match=r"cannot render dict \{1: 2\} as source"):
        render({1: 2})
    with pytest.raises(TypeError, match="cannot render"):
        render(object())


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
        elements=st.floats(allow_nan=False),
    )
)
def test_array_literal_round_trips_exactly(values: np.ndarray) -> None:
    back = eval(array_literal(values), {"np": np})  # noqa: S307
    assert back.shape == values.shape
    np.testing.assert_array_equal(back, values)
    np.testing.assert_array_equal(np.signbit(back), np.signbit(values))


# --- namespaces ---------------------------------------------------------------------------


def test_source_namespace_maps_names_to_text() -> None:
    m = SourceNamespace({"jnp": "jnp", "dtype": "jnp.float64"})
    assert m.jnp.sin(a).text == "jnp.sin(a)"
    assert m.dtype.text == "jnp.float64"
    assert m.names() == {"jnp", "dtype"}
    with pytest.raises(AttributeError, match="the source namespace has no name 'torch'"):
        m.torch  # noqa: B018


def test_namespace_binds_real_objects() -> None:
    m = Namespace(np=np, dtype=np.float64)
    assert m.np is np
    assert m.names() == {"np", "dtype"}


def test_one_lowering_two_readings() -> None:
    lowering = lambda m, x, lo, hi: m.np.clip(x * 2.0, lo, hi)  # noqa: E731
    real = lowering(Namespace(np=np), np.array([-1.0, 0.25, 1.0]), -0.5, 0.75)
    np.testing.assert_array_equal(real, [-0.5, 0.5, 0.75])
    text = lowering(SourceNamespace({"np": "np"}), Src("v1"), -0.5, 0.75)
    assert text.text == "np.clip((v1 * 2.0), -0.5, 0.75)"


# --- every registered lowering prints, and every variant emits a script that compiles -----

_ATTR_VALUES = {"float": 0.5, "int": 2, "int_tuple": (1, 0)}
_SPECIAL_ATTRS = {"clip": {"lo": -0.5, "hi": 0.5}}


def _one_op_program(spec: OpSpec) -> Program:
    """``sum(op(x, x, ...))`` on a length-2 input where the op fits that shape; otherwise
    the generator's own program around the op (reductions, matrices, two vectors)."""
    try:
        attrs = _SPECIAL_ATTRS.get(spec.name) or {a.name: _ATTR_VALUES[a.kind] for a in spec.attrs}
        return Program(2, (op("input"), op(spec.name, *[0] * spec.arity, **attrs), op("sum", 1)))
    except (KeyError, ValueError):
        from hessdiff.harness.strategies import probe_program

        x = np.array([0.25, -0.5])
        for seed in range(50):
            try:
                program = probe_program(spec.name, 2, x, "float64", seed=seed)
            except ValueError:
                continue
            if spec.name in program.op_names:
                return program
        raise


def _lowered_cases() -> list[object]:
    cases = []
    for backend in registry.all_backends():
        for name, spec in CATALOGUE.items():
            if isinstance(backend.lowerings.get(name), Absent):
                continue
            for variant in backend.variants:
                cases.append(
                    pytest.param(BackendVariant(backend, variant), spec, id=f"{backend.name}:{variant}-{name}")
                )
    return cases


@pytest.mark.parametrize(("variant", "spec"), _lowered_cases())
def test_every_lowering_emits_a_script_that_compiles(variant: BackendVariant, spec: OpSpec) -> None:
    program = _one_op_program(spec)
    for dtype in ("float32", "float64"):
        source = variant.source(program, np.array([0.25, -0.5], dtype=dtype))
        compile(source, f"<{variant.name} {spec.name} {dtype}>", "exec")
        assert "object at 0x" not in source
        assert variant.backend.source_imports.strip() in source


@pytest.mark.parametrize("name", ["jax", "torch", "mlx", "equinox"])
def test_python_number_constants_are_written_into_the_source(name: str) -> None:
    """A literal const is a Python number in the code that runs and in the repro."""
    from hessdiff.harness.ir import const

    backend = registry.get_backend(name)
    if not backend.availability().available:
        pytest.skip(backend.availability().reason)
    program = Program(2, (op("input"), const(0.5, "float"), op("mul", 0, 1), const(3, "int"),
                          op("pow", 3, 2), op("sum", 4)))
    consts, body = backend.function_source(program, "float64")
    assert consts == []
    assert body[0] == "v2 = x * 0.5" and "(3, v2)" in body[1], body


@pytest.mark.parametrize(("name", "python_int", "int32_array"), [
    ("jax", "v2 = jnp.ldexp(x, 2)", "v2 = jnp.ldexp(x, c1)"),
    ("equinox", "v2 = jnp.ldexp(x, 2)", "v2 = jnp.ldexp(x, c1)"),
    ("torch", "v2 = torch.ldexp(x, torch.as_tensor(2))", "v2 = torch.ldexp(x, torch.as_tensor(c1))"),
])
def test_ldexp_s_shift_is_written_as_its_user_writes_it(name: str, python_int: str, int32_array: str) -> None:
    """A Python int shift goes into the call itself (torch takes only a tensor, which
    ``torch.as_tensor`` makes of it); an int32 array is a constant of that dtype."""
    from hessdiff.harness.ir import const

    backend = registry.get_backend(name)
    if not backend.availability().available:
        pytest.skip(backend.availability().reason)
    program = Program(2, (op("input"), const(2, "int"), op("ldexp", 0, 1), op("sum", 2)))
    consts, body = backend.function_source(program, "float64")
    assert consts == [] and body[0] == python_int, body
    program = Program(2, (op("input"), const([1.0, -2.0], integer="int32"), op("ldexp", 0, 1), op("sum", 2)))
    consts, body = backend.function_source(program, "float64")
    assert len(consts) == 1 and "int32" in consts[0] and "[1.0, -2.0]" in consts[0] and body[0] == int32_array, \
        (consts, body)


@pytest.mark.parametrize(("name", "mask"), [
    ("jax", "c1 = jnp.asarray([True, False])"), ("equinox", "c1 = jnp.asarray([True, False])"),
    ("torch", "c1 = torch.tensor([True, False])"), ("mlx", "c1 = mx.array([True, False])"),
])
def test_a_bool_mask_is_written_as_its_user_writes_it(name: str, mask: str) -> None:
    """where's bool mask is a literal of Python bools, used as it is: ``where(c1, a, b)``,
    not ``where(c1 > 0, a, b)``; a masked reduction's 0/1 mask attr is written the same way."""
    from hessdiff.harness.ir import const

    backend = registry.get_backend(name)
    if not backend.availability().available:
        pytest.skip(backend.availability().reason)
    program = Program(2, (op("input"), const([True, False], boolean=True), op("sin", 0), op("where", 1, 2, 0),
                          op("sum", 3)))
    consts, body = backend.function_source(program, "float32")
    module = mask.split(" = ")[1].split(".")[0]
    assert consts == [mask] and body[1] == f"v3 = {module}.where(c1, v2, x)", (consts, body)
    if name != "mlx":  # MLX has no masked reduction
        reduced = Program(3, (op("input"), op("sum_where", 0, mask=(1, 0, 1))))
        _, body = backend.function_source(reduced, "float32")
        assert "[True, False, True]" in body[0] and "> 0" not in body[0], body
