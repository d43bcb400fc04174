"""Program text -> ``Program``: what a finding prints, or what a person types.

A maintainer investigating one function writes it in the text ``Program.pretty()`` prints
(``v1 = tanh(x); v2 = sum(v1)``), or nested (``sum(tanh(x))``), and gets the same
``Program`` the generator would have built: ``parse_program(p.pretty(), p.n) == p`` for
every program. The grammar, statements separated by ``;`` or new lines, ``#`` starting a
comment::

    statement  := NAME '=' expression | expression
    expression := OP '(' [expression, ...] [NAME '=' attr, ...] ')'   # attrs as keywords
                | NAME                                              # x, or an earlier statement
                | value                                             # a framework array constant
                | 'const' value ['(a Python float)' | '(a Python int)' | '(a framework int32 array)'
                                | '(a framework int64 array)' | '(a framework bool array)']
    value      := number | '[' value, ... ']'
    attr       := number | 'inf' | None | True | False | '(' attr, ... ')' | '[' attr, ... ']'

A bool array holds 1 for True and -1 for False, as ``pretty`` prints it (where's
condition is read as c > 0). ``x`` is the input (its length is the point's); the
program's value is the last statement's, which must be the last node computed. Bad text
raises ``ProgramError`` with one line naming the position (``unknown op 'tanhh' at
column 5``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from hessdiff.harness.ir import Node, Program, ProgramError, const, op
from hessdiff.harness.ops import CATALOGUE

__all__ = ["parse_program"]

_TOKEN = re.compile(
    r"(?P<space>[ \t\r\f\v]+)|(?P<comment>\#[^\n]*)|(?P<newline>\n)"
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<string>'[^'\n]*'|\"[^\"\n]*\")"
    r"|(?P<punct>[()\[\],=;+-])"
)
_OPERATORS = ("**", "*", "/", "@")
_ANNOTATIONS = {
    "a Python float": {"literal": "float"},
    "a Python int": {"literal": "int"},
    "a framework int32 array": {"integer": "int32"},
    "a framework int64 array": {"integer": "int64"},
    "a framework bool array": {"boolean": True},
}
_ATTR_NAMES = {"None": None, "True": True, "False": False, "inf": "inf"}


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "name", "string", "punct", "newline" or "end"
    text: str
    offset: int


def parse_program(text: str, n: int) -> Program:
    """The program ``text`` spells, taking an input ``x`` of shape ``(n,)``.

    Arguments:
        text: statements (``v1 = tanh(x); v2 = sum(v1)``, or ``Program.pretty()``'s
            listing) or one nested expression (``sum(tanh(x))``).
        n: the length of the input vector ``x``.

    Returns:
        The ``Program``, validated like any other.

    Raises:
        ProgramError: the text is malformed, names an unknown op or name, gives an op the
            wrong number of arguments or bad attrs, or computes no scalar; the one-line
            message names the position.
    """
    if not isinstance(text, str):
        raise ProgramError(f"program text must be a string, not {type(text).__name__}.")
    return _Parser(text, n).program()


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    offset = 0
    while offset < len(text):
        match = _TOKEN.match(text, offset)
        if match is None:
            operator = next((o for o in _OPERATORS if text.startswith(o, offset)), None)
            hint = " (write ops as calls: mul(a, b), div(a, b), pow(a, b), matmul(a, b))" if operator else ""
            raise ProgramError(
                f"unexpected character {(operator or text[offset])!r} at {_position(text, offset)}{hint}"
            )
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("space", "comment"):
            out.append(_Token(kind, match.group(), offset))
        offset = match.end()
    out.append(_Token("end", "", len(text)))
    return out


def _position(text: str, offset: int) -> str:
    """``column C`` (1-based) on one-line text, ``line L, column C`` on longer text."""
    line_start = text.rfind("\n", 0, offset) + 1
    column = offset - line_start + 1
    if "\n" not in text.rstrip("\n"):
        return f"column {column}"
    return f"line {text.count(chr(10), 0, offset) + 1}, column {column}"


def _shown(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the text"
    if token.kind == "newline":
        return "a new line"
    return repr(token.text)


class _Parser:
    """A recursive-descent parser that appends nodes as it reads them, so nodes come in
    the order the text computes them (arguments before the op), as ``pretty`` lists them."""

    def __init__(self, text: str, n: int) -> None:
        self.text = text
        self.n = n
        self.tokens = _tokens(text)
        self.i = 0
        self.nodes: list[Node] = [Node("input")]
        self.offsets: list[int] = [0]  # where each node's text starts
        self.names: dict[str, int] = {"x": 0}

    # --- tokens -------------------------------------------------------------------------

    @property
    def token(self) -> _Token:
        return self.tokens[self.i]

    def ahead(self, k: int = 1) -> _Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def at(self, text: str) -> bool:
        return self.token.kind in ("punct", "name") and self.token.text == text

    def advance(self) -> _Token:
        token = self.token
        self.i += 1
        return token

    def expect(self, text: str, what: str = "") -> _Token:
        if not self.at(text):
            self.fail(f"expected {what or repr(text)}, found {_shown(self.token)}")
        return self.advance()

    def fail(self, message: str, offset: int | None = None, hint: str = "") -> Any:
        where = _position(self.text, self.token.offset if offset is None else offset)
        raise ProgramError(f"{message} at {where}{f' ({hint})' if hint else ''}")

    # --- statements ---------------------------------------------------------------------

    def program(self) -> Program:
        output, start = None, 0
        while True:
            while self.token.kind == "newline" or self.at(";"):
                self.advance()
            if self.token.kind == "end":
                break
            start = self.token.offset
            output = self.statement()
            if self.token.kind not in ("newline", "end") and not self.at(";"):
                self.fail(f"expected ';' or a new line after the statement, found {_shown(self.token)}")
        if output is None:
            self.fail("expected a program such as sum(tanh(x)), found the end of the text")
        if output != len(self.nodes) - 1:
            self.fail("the last statement must compute the program's value, not name an earlier node", start)
        return self.validated()

    def statement(self) -> int:
        if self.token.kind == "name" and self.ahead().kind == "punct" and self.ahead().text == "=":
            name = self.advance()
            self.advance()
            if name.text == "x":
                self.fail("'x' is the input and cannot be assigned", name.offset)
            if name.text in self.names:
                self.fail(f"name {name.text!r} is already defined", name.offset)
            index = self.expression()
            self.names[name.text] = index
            return index
        return self.expression()

    def validated(self) -> Program:
        """``Program(n, nodes)``, its errors pointed at the text that made the node."""
        try:
            return Program(self.n, tuple(self.nodes))
        except ProgramError as exc:
            message = str(exc)
        if message.startswith("program n="):  # the point's length, not the text
            raise ProgramError(message)
        found = re.match(r"node (\d+): (.*)", message, re.DOTALL)
        if found is None:  # the output: not a scalar, or a Python number
            hint = "end with a reduction such as sum(...)" if "must be a scalar" in message else ""
            return self.fail(message.rstrip("."), self.offsets[-1], hint)
        index, detail = int(found.group(1)), found.group(2)
        kind = self.nodes[index].kind
        detail = detail.removeprefix(f"{kind}: ")
        raise ProgramError(f"{kind} at {_position(self.text, self.offsets[index])}: {detail}")

    # --- expressions --------------------------------------------------------------------

    def add(self, node: Node, offset: int) -> int:
        self.nodes.append(node)
        self.offsets.append(offset)
        return len(self.nodes) - 1

    def expression(self) -> int:
        token = self.token
        if token.kind == "name":
            if token.text == "const" and self.starts_value(self.ahead()):
                return self.constant()
            if self.ahead().kind == "punct" and self.ahead().text == "(":
                return self.call()
            self.advance()
            if token.text in self.names:
                return self.names[token.text]
            if token.text in CATALOGUE:
                self.fail(f"op {token.text!r} needs its arguments: {token.text}(...)", token.offset)
            defined = ", ".join(self.names)
            self.fail(f"unknown name {token.text!r}", token.offset, f"defined so far: {defined}")
        if self.starts_value(token):
            return self.add(self.array(self.value(), {}, token), token.offset)
        return self.fail(f"expected an op call, a name or a number, found {_shown(token)}")

    def call(self) -> int:
        name = self.advance()
        spec = CATALOGUE.get(name.text)
        if spec is None:
            close = difflib.get_close_matches(name.text, CATALOGUE, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see 'hessdiff ops'"
            self.fail(f"unknown op {name.text!r}", name.offset, hint)
        assert spec is not None
        self.expect("(")
        args: list[int] = []
        attrs: dict[str, Any] = {}
        while not self.at(")"):
            if self.token.kind == "name" and self.ahead().kind == "punct" and self.ahead().text == "=":
                key = self.advance()
                self.advance()
                if key.text in attrs:
                    self.fail(f"{name.text}: attr {key.text!r} is given twice", key.offset)
                attrs[key.text] = self.attr()
            elif attrs:
                self.fail(f"{name.text}: an argument after its attrs (attrs go last, as keywords)")
            else:
                args.append(self.expression())
            if not self.at(","):
                break
            self.advance()
        self.expect(")", "',' or ')'")
        if len(args) != spec.arity:
            plural = "argument" if spec.arity == 1 else "arguments"
            self.fail(f"{name.text} takes {spec.arity} {plural}, got {len(args)}", name.offset)
        return self.add(op(name.text, *args, **attrs), name.offset)

    def constant(self) -> int:
        start = self.advance()
        value = self.value()
        kind: dict[str, Any] = {}
        if self.at("("):
            opening = self.advance()
            words = []
            while self.token.kind == "name" or (self.token.kind == "number" and words):
                words.append(self.advance().text)
            kind = _ANNOTATIONS.get(" ".join(words), {})
            if not kind or not self.at(")"):
                choices = ", ".join(f"({a})" for a in _ANNOTATIONS)
                self.fail(f"expected one of {choices}", opening.offset)
            self.advance()
        return self.add(self.array(value, kind, start), start.offset)

    def array(self, value: Any, kind: dict[str, Any], start: _Token) -> Node:
        try:
            return const(value, **kind)
        except ValueError:  # NumPy refuses a ragged list
            return self.fail("a constant's rows must all have the same length", start.offset)

    # --- values -------------------------------------------------------------------------

    @staticmethod
    def starts_value(token: _Token) -> bool:
        return token.kind == "number" or (token.kind == "punct" and token.text in "[+-")

    def number(self) -> tuple[str, float | int]:
        """A signed number: its text (without the sign) and its value."""
        sign = -1 if self.at("-") else 1
        if self.at("-") or self.at("+"):
            self.advance()
        if self.token.kind != "number":
            hint = "write neg(a) to negate a value" if sign < 0 and self.token.kind == "name" else ""
            self.fail(f"expected a number, found {_shown(self.token)}", hint=hint)
        text = self.advance().text
        value: float | int = int(text) if text.isdigit() else float(text)
        return text, sign * value

    def value(self) -> Any:
        """A number or a nested list of numbers (a constant's entries, as floats)."""
        if not self.at("["):
            return float(self.number()[1])
        return [self.value() for _ in self.items("]")]

    def attr(self) -> Any:
        token = self.token
        if token.kind == "string":
            self.advance()
            return token.text[1:-1]
        if token.kind == "name" and token.text in _ATTR_NAMES:
            self.advance()
            return _ATTR_NAMES[token.text]
        if self.at("(") or self.at("["):
            closing = ")" if self.at("(") else "]"
            return tuple(self.attr() for _ in self.items(closing))
        if token.kind == "number" or self.at("-") or self.at("+"):
            return self.number()[1]
        return self.fail("expected an attr value (a number, a tuple of integers, None, True, False or "
                         f"'inf'), found {_shown(token)}")

    def items(self, closing: str) -> Any:
        """Yield once per item of a bracketed, comma-separated sequence; the caller reads
        the item. Consumes the brackets and commas (a trailing comma is allowed)."""
        self.advance()
        while not self.at(closing):
            yield
            if not self.at(","):
                break
            self.advance()
        self.expect(closing, f"',' or {closing!r}")
