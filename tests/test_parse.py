from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from hessdiff.harness.ir import Program, ProgramError, const, op
from hessdiff.harness.ops import CATALOGUE
from hessdiff.harness.parse import parse_program
from hessdiff.harness.strategies import Case, cases

# --- round trip -----------------------------------------------------------------------------


@settings(max_examples=200, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(cases())
def test_the_text_a_finding_prints_parses_back_to_its_program(case: Case) -> None:
    program = case.program
    assert parse_program(program.pretty(), program.n) == program


def test_every_attr_kind_and_constant_kind_round_trips() -> None:
    program = Program(3, (
        op("input"),
        op("clip", 0, lo=-1.5, hi=2e-300),                      # float attrs
        op("powi", 1, p=3),                                     # an int attr
        op("gather", 2, idx=[2]),                               # a one-element int tuple
        const([[1.0, -0.0], [3.0, 4.5]]),                        # a matrix constant
        op("reshape", 0, shape=[1, 3]),
        op("norm", 0, axis=None, keepdims=False, ord="inf"),    # None, a bool, the string 'inf'
        const(2.0, literal="int"),
        const(0.5, literal="float"),
        const([3.0, 1.0, 2.0], integer=True),
        op("pow", 0, 9),
        op("mul", 10, 8),
        op("pow", 11, 7),
        op("sum", 12),
        op("matmul", 4, 4),
        op("sum", 14),
        op("add", 15, 13),
        op("add", 16, 6),
        op("sum", 3),
        op("add", 17, 18),
    ))
    assert parse_program(program.pretty(), 3) == program


def test_ldexp_s_shift_reads_as_each_integer_kind() -> None:
    """The shift as pretty prints it and as a person writes it: a Python int or a
    framework int32/int64 array; a float shift is a one-line error."""
    for text, shift in (("const 3 (a Python int)", const(3, "int")),
                        ("const [1, -2, 0] (a framework int32 array)", const([1.0, -2.0, 0.0], integer="int32")),
                        ("const -1 (a framework int64 array)", const(-1.0, integer="int64"))):
        program = parse_program(f"sum(ldexp(x, {text}))", 3)
        assert program == Program(3, (op("input"), shift, op("ldexp", 0, 1), op("sum", 2)))
        assert parse_program(program.pretty(), 3) == program
    with pytest.raises(ProgramError, match=r"^ldexp at column 5: ldexp's argument 1 must be a constant Python int"):
        parse_program("sum(ldexp(x, 2.0))", 3)


def test_where_s_bool_mask_reads_as_pretty_prints_it() -> None:
    program = parse_program("sum(where(const [1, -1, 1] (a framework bool array), sin(x), x))", 3)
    assert program == Program(3, (op("input"), const([True, False, True], boolean=True), op("sin", 0),
                                  op("where", 1, 2, 0), op("sum", 3)))
    assert parse_program(program.pretty(), 3) == program


# --- the forms a person writes -----------------------------------------------------------


def test_nested_statements_and_newlines_are_the_same_program() -> None:
    nested = parse_program("sum(tanh(x))", 2)
    assert nested == Program(2, (op("input"), op("tanh", 0), op("sum", 1)))
    assert parse_program("v1 = tanh(x); v2 = sum(v1)", 2) == nested
    assert parse_program("h = tanh(x)\n\n# the output\nsum(h)  # a comment\n", 2) == nested


def test_numbers_are_framework_array_constants_and_attrs_are_keywords() -> None:
    program = parse_program("sum(mul(clip(x, lo=-1, hi=1), [2, 0.5e1]))", 2)
    assert program.nodes[1] == op("clip", 0, lo=-1.0, hi=1.0)
    assert program.nodes[2] == const([2.0, 5.0])
    assert program.nodes[3] == op("mul", 1, 2)


def test_a_python_number_is_written_as_pretty_prints_it() -> None:
    program = parse_program("sum(mul(x, const 3 (a Python int)))", 1)
    assert program.nodes[1] == const(3.0, literal="int")


# --- errors name the position -------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("sum(tanhh(x))", "unknown op 'tanhh' at column 5 (did you mean 'tanh'?)"),
    ("sum(tanh(x)", "expected ',' or ')', found the end of the text at column 12"),
    ("sum(tanh(x) x)", "expected ',' or ')', found 'x' at column 13"),
    ("sum(tanh(y))", "unknown name 'y' at column 10 (defined so far: x)"),
    ("v1 = tanh(x)\nv2 = sum(v3)", "unknown name 'v3' at line 2, column 10 (defined so far: x, v1)"),
    ("sum(x * 2)", "unexpected character '*' at column 7"),
    ("sum(x) sum(x)", "expected ';' or a new line after the statement, found 'sum' at column 8"),
    ("", "expected a program such as sum(tanh(x)), found the end of the text at column 1"),
    ("x = sin(x)", "'x' is the input and cannot be assigned at column 1"),
    ("a = sin(x); a = cos(x)", "name 'a' is already defined at column 13"),
    ("sum(x, axis=0, axis=1)", "sum: attr 'axis' is given twice at column 16"),
    ("sum(x, axis=)", "expected an attr value"),
    ("clip(x, lo=1, x)", "clip: an argument after its attrs (attrs go last, as keywords) at column 15"),
    ("sum(mul(x, [[1, 2], [3]]))", "a constant's rows must all have the same length at column 12"),
    ("sum(x); v1 = x",
     "the last statement must compute the program's value, not name an earlier node at column 9"),
    ("sum(tanh)", "op 'tanh' needs its arguments: tanh(...) at column 5"),
    ("sum(-x)", "expected a number, found 'x' at column 6 (write neg(a) to negate a value)"),
    ("const 2 (a Python integer)",
     "expected one of (a Python float), (a Python int), (a framework int32 array), (a framework int64 array), "
     "(a framework bool array) at column 9"),
    ("tanh(x)", "the output (last node) must be a scalar, got shape (2,) at column 1 (end with a reduction"),
])
def test_malformed_text_is_one_line_naming_the_position(text: str, message: str) -> None:
    with pytest.raises(ProgramError) as caught:
        parse_program(text, 2)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["tanh", "mul", "where"])
def test_wrong_arity_names_the_catalogue_arity(name: str) -> None:
    arity = CATALOGUE[name].arity
    args = ", ".join(["x"] * (arity + 1))
    text = f"sum({name}({args}))"
    with pytest.raises(ProgramError, match=rf"^{name} takes {arity} arguments?, got {arity + 1} at column 5$"):
        parse_program(text, 2)


def test_the_ir_s_own_checks_point_at_the_node_s_text() -> None:
    with pytest.raises(ProgramError, match=r"^clip at column 5: missing attrs \['hi', 'lo'\]"):
        parse_program("sum(clip(x))", 2)
    with pytest.raises(ProgramError, match=r"^gather at line 2, column 6: attr idx=\(0, 'a'\)"):
        parse_program("v1 = sin(x)\nv2 = gather(v1, idx=(0, 'a'))\nsum(v2)", 2)
    with pytest.raises(ProgramError, match=r"^matmul at column 5: matmul inner sizes differ"):
        parse_program("sum(matmul(x, [1, 2, 3]))", 2)


def test_text_must_be_a_string() -> None:
    with pytest.raises(ProgramError, match="must be a string"):
        parse_program(Program(1, (op("input"), op("sum", 0))), 1)  # type: ignore[arg-type]
