from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hessdiff.harness.ir import Node, Program, ProgramError, const, op, program_from_json


def sin_sum(n: int = 3) -> Program:
    return Program(n, (op("input"), op("sin", 0), op("sum", 1)))


def mixed() -> Program:
    """Uses a const, a bilinear op, float attrs and an int-tuple attr."""
    return Program(
        2,
        (
            op("input"),
            const([[1.0, 2.0], [3.0, 4.0]]),
            op("matmul", 1, 0),
            op("clip", 2, lo=-1, hi=1),
            op("gather", 3, idx=[1, 0, 1]),
            op("sum", 4),
        ),
    )


# --- construction ------------------------------------------------------------------


def test_shapes_op_names_size_output() -> None:
    p = mixed()
    assert p.shapes == ((2,), (2, 2), (2,), (2,), (3,), ())
    assert p.op_names == {"matmul", "clip", "gather", "sum"}
    assert p.size == 4
    assert p.output == 5


def test_attrs_are_normalised_to_their_kind() -> None:
    p = mixed()
    assert p.nodes[3].attr_dict == {"lo": -1.0, "hi": 1.0}
    assert all(isinstance(v, float) for v in p.nodes[3].attr_dict.values())
    assert p.nodes[4].attr_dict == {"idx": (1, 0, 1)}


def test_constant_is_a_float64_array() -> None:
    c = mixed().constant(1)
    assert c.dtype == np.float64
    np.testing.assert_array_equal(c, [[1.0, 2.0], [3.0, 4.0]])


def test_programs_are_values() -> None:
    assert sin_sum() == sin_sum()
    assert hash(sin_sum()) == hash(sin_sum())
    assert sin_sum(3) != sin_sum(4)


def test_broadcasting_scalar_const() -> None:
    p = Program(2, (op("input"), const(2.0), op("mul", 0, 1), op("sum", 2)))
    assert p.shapes[1:] == ((), (2,), ())


# --- validation errors name the node and the problem --------------------------------


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        pytest.param(
            (op("input"), op("frobnicate", 0), op("sum", 1)),
            r"node 1: unknown op 'frobnicate'; known ops: .*sin",
            id="unknown-op",
        ),
        pytest.param(
            (op("input"), op("sin", 5), op("sum", 1)),
            r"node 1: arg 5 must refer to an earlier node \(0\.\.0\)",
            id="forward-reference",
        ),
        pytest.param(
            (op("input"), op("sin", 0), op("sin", 2), op("sum", 2)),
            r"node 2: arg 2 must refer to an earlier node \(0\.\.1\)",
            id="self-reference",
        ),
        pytest.param(
            (op("input"), op("sin", -1), op("sum", 1)),
            r"node 1: arg -1 must refer to an earlier node",
            id="negative-reference",
        ),
        pytest.param(
            (op("input"), op("sin", 0, 0), op("sum", 1)),
            r"node 1: sin takes 1 args, got 2",
            id="arity-too-many",
        ),
        pytest.param(
            (op("input"), op("add", 0), op("sum", 1)),
            r"node 1: add takes 2 args, got 1",
            id="arity-too-few",
        ),
        pytest.param(
            (op("input"), op("powi", 0), op("sum", 1)),
            r"node 1: powi: missing attrs \['p'\]",
            id="missing-attr",
        ),
        pytest.param(
            (op("input"), op("sin", 0, p=2), op("sum", 1)),
            r"node 1: sin: unexpected attrs \['p'\]",
            id="unexpected-attr",
        ),
        pytest.param(
            (op("input"), op("powi", 0, p=2.5), op("sum", 1)),
            r"node 1: powi: attr p=2\.5, but it must be an integer",
            id="attr-wrong-kind",
        ),
        pytest.param(
            (op("input"), op("powi", 0, p=True), op("sum", 1)),
            r"node 1: powi: attr p=True, but it must be an integer",
            id="attr-bool-is-not-int",
        ),
        pytest.param(
            (op("input"), op("clip", 0, lo="a", hi=1.0), op("sum", 1)),
            r"node 1: clip: attr lo='a', but it must be a finite number",
            id="attr-not-a-number",
        ),
        pytest.param(
            (op("input"), op("gather", 0, idx=[0, 1.5]), op("sum", 1)),
            r"node 1: gather: attr idx=.*must be a list of integers",
            id="attr-not-int-tuple",
        ),
        pytest.param(
            (op("input"), op("gather", 0, idx=[5]), op("sum", 1)),
            r"node 1: gather index 5 out of range for length 3",
            id="gather-out-of-range",
        ),
        pytest.param(
            (op("input"), const([1.0, 2.0]), op("add", 0, 1), op("sum", 2)),
            r"node 2: shapes \[\(3,\), \(2,\)\] do not broadcast",
            id="shapes-clash",
        ),
        pytest.param(
            (op("input"), const(float("inf")), op("add", 0, 1), op("sum", 2)),
            r"node 1: const values must be finite",
            id="const-not-finite",
        ),
        pytest.param(
            (op("input"), op("sin", 0)),
            r"the output \(last node\) must be a scalar, got shape \(3,\)",
            id="non-scalar-output",
        ),
        pytest.param(
            (op("input"), op("input"), op("sum", 1)),
            r"node 1: only node 0 may be the input",
            id="second-input",
        ),
        pytest.param(
            (op("input"), const(2.0, "float"), op("sin", 1), op("mul", 0, 2), op("sum", 3)),
            r"node 2: sin cannot take a Python number here",
            id="python-number-into-a-function",
        ),
        pytest.param(
            (op("input"), const(2.0, "float"), op("add", 1, 1), op("mul", 0, 2), op("sum", 3)),
            r"node 2: add cannot take a Python number here: only add, div, mul, pow, sub can, beside",
            id="python-numbers-on-both-sides",
        ),
        pytest.param(
            (op("input"), const([1.0, 2.0, 3.0], "float"), op("mul", 0, 1), op("sum", 2)),
            r"node 1: a Python-number const must be a scalar",
            id="python-number-not-scalar",
        ),
        pytest.param(
            (op("input"), const(2.5, "int"), op("mul", 0, 1), op("sum", 2)),
            r"node 1: const literal='int' needs an integer value, not 2.5",
            id="python-int-not-integer",
        ),
        pytest.param(
            (op("input"), const(2.0, "complex"), op("mul", 0, 1), op("sum", 2)),
            r"node 1: const literal='complex', but it must be one of",
            id="python-number-unknown-kind",
        ),
        pytest.param(
            (op("input"), op("sum", 0), const(2.0, "float")),
            r"the output \(last node\) must be a framework value, not a Python number",
            id="python-number-output",
        ),
        pytest.param((op("sin", 0),), r"node 0 must be the input node", id="no-input"),
        pytest.param((), r"node 0 must be the input node", id="empty"),
    ],
)
def test_malformed_program_is_a_program_error(nodes: tuple[Node, ...], message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        Program(3, nodes)


@pytest.mark.parametrize("n", [0, -1, 65])
def test_input_size_out_of_range(n: int) -> None:
    with pytest.raises(ProgramError, match=rf"program n={n}, but it must be between 1 and 64"):
        Program(n, (op("input"), op("sum", 0)))


def test_program_error_is_a_value_error() -> None:
    assert issubclass(ProgramError, ValueError)


# --- JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [sin_sum, mixed])
def test_json_round_trip(make: Callable[[], Program]) -> None:
    p = make()
    assert program_from_json(p.to_json()) == p
    assert program_from_json(p.dumps()) == p
    assert json.loads(p.dumps()) == p.to_json()


def test_python_number_constants_round_trip_and_print() -> None:
    p = Program(2, (op("input"), const(0.5, "float"), op("mul", 0, 1), const(3, "int"), op("pow", 2, 3),
                    op("sum", 4)))
    assert program_from_json(p.dumps()) == p
    assert p.to_json()["nodes"][3] == {"op": "const", "attrs": {"literal": "int"}, "value": 3.0}
    assert "v1 = const 0.5 (a Python float)" in p.pretty()
    assert p != Program(2, (op("input"), const(0.5), op("mul", 0, 1), const(3, "int"), op("pow", 2, 3),
                            op("sum", 4)))


def test_integer_array_constants_round_trip_print_and_go_only_where_an_op_takes_them() -> None:
    p = Program(2, (op("input"), const([2.0, -1.0], integer=True), op("pow", 0, 1), op("sum", 2)))
    assert program_from_json(p.dumps()) == p
    assert p.to_json()["nodes"][1] == {"op": "const", "attrs": {"integer": "int32"}, "value": [2.0, -1.0]}
    assert "(a framework int32 array)" in p.pretty()
    assert p != Program(2, (op("input"), const([2.0, -1.0]), op("pow", 0, 1), op("sum", 2)))
    wide = Program(2, (op("input"), const([2.0, -1.0], integer="int64"), op("pow", 0, 1), op("sum", 2)))
    assert program_from_json(wide.dumps()) == wide != p
    assert "(a framework int64 array)" in wide.pretty()
    with pytest.raises(ProgramError, match="must be one of"):
        Program(2, (op("input"), const([2.0], integer="int8"), op("pow", 0, 1), op("sum", 2)))
    with pytest.raises(ProgramError, match="cannot take an int32 array as argument 1"):
        Program(2, (op("input"), const([2.0, -1.0], integer=True), op("mul", 0, 1), op("sum", 2)))
    with pytest.raises(ProgramError, match="cannot take an int32 array as argument 0"):
        Program(2, (op("input"), const([2.0, -1.0], integer=True), op("pow", 1, 0), op("sum", 2)))
    with pytest.raises(ProgramError, match="needs integer values"):
        Program(2, (op("input"), const([2.5, -1.0], integer=True), op("pow", 0, 1), op("sum", 2)))


def test_ldexp_takes_its_shift_as_a_constant_integer_of_an_integer_type() -> None:
    """A Python int or a framework int32/int64 array (a float or traced shift is no
    program: the frameworks refuse it); a program written before the shift was an
    argument (``ldexp(a, k=-1)``, in older findings and baselines) loads as the same
    computation with the shift a Python int."""
    for shift in (const(-1, "int"), const([1.0, -2.0], integer="int32"), const(3.0, integer="int64")):
        p = Program(2, (op("input"), shift, op("ldexp", 0, 1), op("sum", 2)))
        assert program_from_json(p.dumps()) == p
    for bad, what in ((const(1.0), "node 1 (const)"), (const(1.0, "float"), "node 1 (const)"),
                      (op("sin", 0), "node 1 (sin)")):
        with pytest.raises(ProgramError, match=rf"ldexp's argument 1 must be a constant Python int or framework "
                                               rf"int32/int64 array .* not {re.escape(what)}"):
            Program(2, (op("input"), bad, op("ldexp", 0, 1), op("sum", 2)))
    old = {"n": 1, "nodes": [{"op": "input"}, {"op": "mul", "args": [0, 0]},
                             {"op": "ldexp", "args": [1], "attrs": {"k": -1}}, {"op": "sum", "args": [2]}]}
    assert program_from_json(old) == Program(1, (op("input"), op("mul", 0, 0), const(-1, "int"), op("ldexp", 1, 2),
                                                 op("sum", 3)))


def test_a_bool_mask_is_where_s_condition_alone_and_holds_plus_or_minus_one() -> None:
    """A framework bool array, True where the value given is positive, stored as 1/-1 so
    that where's c > 0 reads it the same way; it round-trips and prints as what it is."""
    mask = const([True, False, 0.5, 0.0], boolean=True)
    assert mask.value == (1.0, -1.0, 1.0, -1.0)
    p = Program(4, (op("input"), mask, op("sin", 0), op("where", 1, 2, 0), op("sum", 3)))
    assert program_from_json(p.dumps()) == p
    assert p.to_json()["nodes"][1] == {"op": "const", "attrs": {"boolean": True}, "value": [1.0, -1.0, 1.0, -1.0]}
    assert "v1 = const [1.0, -1.0, 1.0, -1.0] (a framework bool array)" in p.pretty()
    with pytest.raises(ProgramError, match="where cannot take a framework bool array as argument 1"):
        Program(4, (op("input"), mask, op("where", 0, 1, 0), op("sum", 2)))
    with pytest.raises(ProgramError, match="mul cannot take a framework bool array as argument 0"):
        Program(4, (op("input"), mask, op("mul", 1, 0), op("sum", 2)))
    with pytest.raises(ProgramError, match=r"a bool const holds 1.0 \(True\) or -1.0 \(False\), not \[1.0, 0.0\]"):
        program_from_json({"n": 2, "nodes": [{"op": "input"}, {"op": "const", "attrs": {"boolean": True},
                                                                 "value": [1.0, 0.0]},
                                             {"op": "where", "args": [1, 0, 0]}, {"op": "sum", "args": [2]}]})
    with pytest.raises(ProgramError, match="without a literal or an integer dtype"):
        Program(1, (op("input"), Node("const", attrs=(("boolean", True), ("integer", "int32")), value=1.0),
                    op("where", 1, 0, 0), op("sum", 2)))


def test_json_layout() -> None:
    assert mixed().to_json()["nodes"][3] == {"op": "clip", "args": [2], "attrs": {"hi": 1.0, "lo": -1.0}}
    assert mixed().to_json()["nodes"][1] == {"op": "const", "value": [[1.0, 2.0], [3.0, 4.0]]}
    assert sin_sum().to_json() == {
        "n": 3,
        "nodes": [{"op": "input"}, {"op": "sin", "args": [0]}, {"op": "sum", "args": [1]}],
    }


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=4), st.floats(-10, 10), st.floats(0, 10))
def test_json_round_trip_is_exact_for_any_floats(c: list[float], lo: float, width: float) -> None:
    hi = lo + width
    assume(lo < hi)  # clip needs lo < hi (a tiny width can round away)
    p = Program(
        len(c),
        (op("input"), const(c), op("mul", 0, 1), op("clip", 2, lo=lo, hi=hi), op("sum", 3)),
    )
    q = program_from_json(p.dumps())
    assert q == p
    np.testing.assert_array_equal(q.constant(1), np.array(c))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param("{not json", r"program is not valid JSON: ", id="not-json"),
        pytest.param("[1, 2]", r"program must be an object with keys 'n' and 'nodes'", id="list"),
        pytest.param({"n": 2}, r"program must be an object with keys 'n' and 'nodes'", id="no-nodes"),
        pytest.param({"n": 2, "nodes": "input"}, r"program 'nodes' must be a list", id="nodes-str"),
        pytest.param({"n": 2, "nodes": [{"args": []}]}, r"node 0 must be an object with a string 'op'", id="no-op"),
        pytest.param({"n": 2, "nodes": [["input"]]}, r"node 0 must be an object with a string 'op'", id="node-list"),
        pytest.param(
            {"n": 2, "nodes": [{"op": "input"}, {"op": "sum", "args": ["0"]}]},
            r"node 1 \(sum\): 'args' must be a list of node indices",
            id="args-str",
        ),
        pytest.param(
            {"n": 2, "nodes": [{"op": "input"}, {"op": "powi", "args": [0], "attrs": [2]}]},
            r"node 1 \(powi\): 'attrs' must be an object",
            id="attrs-list",
        ),
        pytest.param(
            {"n": 2, "nodes": [{"op": "input"}, {"op": "const", "value": "abc"}]},
            r"node 1: const 'value' must be numbers",
            id="const-str",
        ),
        pytest.param(
            {"n": "2", "nodes": [{"op": "input"}, {"op": "sum", "args": [0]}]},
            r"program n='2', but it must be an integer",
            id="n-str",
        ),
        pytest.param(
            {"n": 2, "nodes": [{"op": "input"}, {"op": "nope", "args": [0]}]},
            r"node 1: unknown op 'nope'",
            id="unknown-op",
        ),
    ],
)
def test_malformed_json_is_a_program_error(data: object, message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        program_from_json(data)  # type: ignore[arg-type]


# --- pretty() ---------------------------------------------------------------------------


def test_pretty() -> None:
    assert mixed().pretty() == "\n".join(
        [
            "v0 = x  # shape (2,)",
            "v1 = const [[1.0, 2.0], [3.0, 4.0]]",
            "v2 = matmul(v1, v0)",
            "v3 = clip(v2, hi=1.0, lo=-1.0)",
            "v4 = gather(v3, idx=(1, 0, 1))",
            "v5 = sum(v4)",
        ]
    )


def test_pretty_has_one_line_per_node() -> None:
    p = sin_sum()
    assert len(p.pretty().splitlines()) == len(p.nodes)


def test_clip_bounds_must_be_ordered() -> None:
    with pytest.raises(ProgramError, match="clip needs lo < hi"):
        Program(1, (op("input"), op("clip", 0, lo=1.0, hi=0.0), op("sum", 1)))


def test_boolean_n_is_rejected() -> None:
    with pytest.raises(ProgramError, match="must be an integer"):
        Program(True, (op("input"), op("sum", 0)))
