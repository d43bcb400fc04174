"""The backend-neutral program: a typed, immutable SSA list of nodes computing f: R^n -> R.

A program is data. Backends lower it op by op through their own tables, the oracle
evaluates it in multi-precision, the generator builds it, Hypothesis shrinks it and the
reporter serialises it to JSON. Nothing here is ever turned into code and ``exec``'d.

Node 0 is always the input vector ``x`` of shape ``(n,)``; every other node is a constant
or an op of the catalogue applied to earlier nodes; the last node is the output and must
be a scalar.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from hessdiff.harness.ops import Shape, get_op

__all__ = ["INTEGER_DTYPES", "LITERALS", "Node", "PYTHON_NUMBER_OPS", "Program", "ProgramError", "boolean_array",
           "const", "integer_array", "integer_dtype", "literal_of", "op", "program_from_json", "python_number"]

MAX_INPUTS = 64


class ProgramError(ValueError):
    """A program is malformed: bad node, bad reference, bad shape or bad attrs."""


@dataclass(frozen=True)
class Node:
    """One SSA node.

    ``kind`` is ``"input"``, ``"const"`` or the name of a catalogue op. ``args`` are the
    indices of earlier nodes; ``attrs`` a sorted tuple of ``(name, value)`` pairs;
    ``value`` the constant's entries as a nested tuple of floats.
    """

    kind: str
    args: tuple[int, ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    value: Any = None

    @property
    def attr_dict(self) -> dict[str, Any]:
        return dict(self.attrs)


def op(kind: str, *args: int, **attrs: Any) -> Node:
    """Build an op node: ``op("sin", 3)``, ``op("clip", 2, lo=-1.0, hi=1.0)``."""
    return Node(kind, tuple(args), tuple(sorted(attrs.items())))


def const(value: Any, literal: str | None = None, integer: bool | str = False, boolean: bool = False) -> Node:
    """Build a constant node from a float or nested sequence of floats.

    By default a constant is a framework array of the program's dtype. With ``literal``
    ("float" or "int") a scalar constant is a plain Python number instead (``x * 0.5``,
    ``x ** 2``): frameworks take another code path for it (weak types, scalar overloads),
    and users write it all the time. Only ``PYTHON_NUMBER_OPS`` may take one, beside a
    framework array. With ``integer`` ("int32" or "int64"; True is "int32") it is a
    framework integer array (``x ** jnp.array(3)``), which the frameworks promote inside
    the op, and whose derivative rules branch on its dtype (JAX's pow takes an integer
    exponent as its own case); only an op's ``integer_args`` may take one. With
    ``boolean`` it is a framework bool array (``where(mask, a, b)``), True where
    ``value`` is positive; only an op's ``mask_args`` may take one. It holds 1.0 for True
    and -1.0 for False: where reads a float condition as ``c > 0``, so everything that
    computes with the values (the oracle, the screen) selects the same branch, and a
    False lies on no switch's zero.
    """
    attrs: tuple[tuple[str, Any], ...] = (("literal", literal),) if literal is not None else ()
    if integer:
        attrs += (("integer", "int32" if integer is True else integer),)
    values = np.asarray(value, dtype=np.float64)
    if boolean:
        attrs += (("boolean", True),)
        values = np.where(values > 0, 1.0, -1.0)
    return Node("const", attrs=attrs, value=_freeze(values.tolist()))


def integer_array(node: Node) -> bool:
    """Whether ``node`` is a framework integer-array constant."""
    return integer_dtype(node) is not None


def boolean_array(node: Node) -> bool:
    """Whether ``node`` is a framework bool-array constant (a mask)."""
    return node.kind == "const" and node.attr_dict.get("boolean") is True


def integer_dtype(node: Node) -> str | None:
    """"int32"/"int64" if ``node`` is a framework integer-array constant, else None."""
    return node.attr_dict.get("integer") if node.kind == "const" else None


# The ops that every backend's lowering applies with Python operators or with a function
# documented to take a Python number on either side (torch.pow, mx.power, jnp.power).
PYTHON_NUMBER_OPS = frozenset({"add", "sub", "mul", "div", "pow"})
LITERALS = ("float", "int")
# The framework integer arrays a constant may be (``const(..., integer=...)``): every
# framework takes both, and a rule may branch on the width as well as on "integer".
INTEGER_DTYPES = ("int32", "int64")


def literal_of(node: Node) -> str | None:
    """"float"/"int" if ``node`` is a Python-number constant, else None."""
    return node.attr_dict.get("literal") if node.kind == "const" else None


def python_number(node: Node) -> float | int:
    """The Python number a literal constant node stands for."""
    value = float(np.asarray(node.value, dtype=np.float64))
    return int(value) if literal_of(node) == "int" else value


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return float(value)


@dataclass(frozen=True)
class Program:
    """f: R^n -> R as a list of nodes; node 0 is the input, the last node the output.

    Construction validates everything (references, op names, attrs, shapes), so a
    ``Program`` that exists is well-formed, and a malformed one raises ``ProgramError``
    with one line naming the node.
    """

    n: int
    nodes: tuple[Node, ...]
    _shapes: tuple[Shape, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes, shapes = _validate(self.n, tuple(self.nodes))
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "_shapes", shapes)

    @property
    def shapes(self) -> tuple[Shape, ...]:
        """The shape of every node."""
        return self._shapes

    @property
    def output(self) -> int:
        return len(self.nodes) - 1

    @cached_property
    def op_names(self) -> frozenset[str]:
        """The catalogue ops this program uses."""
        return frozenset(node.kind for node in self.nodes if node.kind not in ("input", "const"))

    @property
    def size(self) -> int:
        """The number of op nodes: what shrinking minimises."""
        return sum(1 for node in self.nodes if node.kind not in ("input", "const"))

    def constant(self, index: int) -> np.ndarray:
        """The float64 array of constant node ``index``."""
        return np.asarray(self.nodes[index].value, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict that ``program_from_json`` turns back into this program."""
        out = []
        for node in self.nodes:
            entry: dict[str, Any] = {"op": node.kind}
            if node.args:
                entry["args"] = list(node.args)
            if node.attrs:
                entry["attrs"] = {k: list(v) if isinstance(v, tuple) else v for k, v in node.attrs}
            if node.kind == "const":
                entry["value"] = np.asarray(node.value, dtype=np.float64).tolist()
            out.append(entry)
        return {"n": self.n, "nodes": out}

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    def pretty(self) -> str:
        """A one-line-per-node listing for humans (``v3 = sin(v2)``)."""
        lines = []
        for i, node in enumerate(self.nodes):
            if node.kind == "input":
                rhs = f"x  # shape ({self.n},)"
            elif node.kind == "const":
                rhs = f"const {np.asarray(node.value).tolist()}"
                if literal_of(node):
                    rhs += f" (a Python {literal_of(node)})"
                elif integer_array(node):
                    rhs += f" (a framework {integer_dtype(node)} array)"
                elif boolean_array(node):
                    rhs += " (a framework bool array)"
            else:
                parts = [f"v{a}" for a in node.args] + [f"{k}={v!r}" for k, v in node.attrs]
                rhs = f"{node.kind}({', '.join(parts)})"
            lines.append(f"v{i} = {rhs}")
        return "\n".join(lines)


def program_from_json(data: Mapping[str, Any] | str) -> Program:
    """Load a program from ``Program.to_json`` output; raise ``ProgramError`` if malformed."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ProgramError(f"program is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping) or "n" not in data or "nodes" not in data:
        raise ProgramError("program must be an object with keys 'n' and 'nodes'.")
    nodes_data = data["nodes"]
    if not isinstance(nodes_data, Sequence) or isinstance(nodes_data, str):
        raise ProgramError("program 'nodes' must be a list.")
    nodes = []
    for i, entry in enumerate(nodes_data):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("op"), str):
            raise ProgramError(f"node {i} must be an object with a string 'op'.")
        kind = entry["op"]
        args = entry.get("args", [])
        attrs = entry.get("attrs", {})
        if not isinstance(args, Sequence) or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in args
        ):
            raise ProgramError(f"node {i} ({kind}): 'args' must be a list of node indices.")
        if not isinstance(attrs, Mapping):
            raise ProgramError(f"node {i} ({kind}): 'attrs' must be an object.")
        frozen_attrs = tuple(
            sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items())
        )
        if kind == "const":
            try:
                value = _freeze(np.asarray(entry.get("value"), dtype=np.float64).tolist())
            except (TypeError, ValueError):
                raise ProgramError(f"node {i}: const 'value' must be numbers.") from None
            nodes.append(Node("const", attrs=frozen_attrs, value=value))
        else:
            nodes.append(Node(kind, tuple(args), frozen_attrs))
    n = data["n"]
    if not isinstance(n, int) or isinstance(n, bool):
        raise ProgramError(f"program n={n!r}, but it must be an integer.")
    return Program(n, _upgraded(nodes))


def _upgraded(nodes: list[Node]) -> tuple[Node, ...]:
    """Nodes written before ldexp took its shift as an argument (``ldexp(a, k=-1)``, in
    findings and baselines of older runs), with the shift a Python-int constant before
    the op (``ldexp(a, c)``, c = -1): the program the old one ran, so it replays."""
    out: list[Node] = []
    index: dict[int, int] = {}
    for i, node in enumerate(nodes):
        args = tuple(index.get(a, a) if isinstance(a, int) else a for a in node.args)
        attrs = node.attr_dict
        if node.kind == "ldexp" and len(args) == 1 and isinstance(attrs.get("k"), int):
            out.append(const(float(attrs["k"]), "int"))
            args, attrs = (args[0], len(out) - 1), {k: v for k, v in attrs.items() if k != "k"}
            node = Node(node.kind, args, tuple(sorted(attrs.items())))
        elif args != node.args:
            node = Node(node.kind, args, node.attrs, node.value)
        index[i] = len(out)
        out.append(node)
    return tuple(out)


def _check_literal(i: int, node: Node, value: np.ndarray) -> None:
    literal = literal_of(node)
    kind = node.attr_dict.get("integer")
    if "boolean" in node.attr_dict:
        if node.attr_dict["boolean"] is not True or literal is not None or kind is not None:
            raise ProgramError(f"node {i}: const boolean={node.attr_dict['boolean']!r}, but it must be true, "
                               "without a literal or an integer dtype.")
        if not np.all(np.abs(value) == 1):
            raise ProgramError(f"node {i}: a bool const holds 1.0 (True) or -1.0 (False), not {value.tolist()!r}.")
    if kind is not None:
        if kind not in INTEGER_DTYPES or literal is not None:
            raise ProgramError(f"node {i}: const integer={kind!r}, but it must be one of {INTEGER_DTYPES}, "
                               "without a literal.")
        if not (np.all(value == np.round(value)) and np.all(np.abs(value) < 2.0 ** (int(kind[3:]) - 1))):
            raise ProgramError(f"node {i}: an {kind} const needs integer values, not {value.tolist()!r}.")
    if literal is None:
        return
    if literal not in LITERALS:
        raise ProgramError(f"node {i}: const literal={literal!r}, but it must be one of {LITERALS}.")
    if value.ndim != 0:
        raise ProgramError(f"node {i}: a Python-number const must be a scalar, not shape {value.shape}.")
    if literal == "int" and not (float(value).is_integer() and abs(float(value)) < 2**31):
        raise ProgramError(f"node {i}: const literal='int' needs an integer value, not {float(value)!r}.")


def _validate(n: int, nodes: tuple[Node, ...]) -> tuple[tuple[Node, ...], tuple[Shape, ...]]:
    """Check every node and return the nodes with normalised attrs, and every shape."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise ProgramError(f"program n={n!r}, but it must be an integer.")
    if not 1 <= n <= MAX_INPUTS:
        raise ProgramError(f"program n={n}, but it must be between 1 and {MAX_INPUTS}.")
    if not nodes or nodes[0] != Node("input"):
        raise ProgramError("node 0 must be the input node {'op': 'input'}.")
    shapes: list[Shape] = [(n,)]
    normalised: list[Node] = [nodes[0]]
    for i, node in enumerate(nodes[1:], start=1):
        if not isinstance(node, Node):
            raise ProgramError(f"node {i}: {node!r} is not a Node.")
        if node.kind == "input":
            raise ProgramError(f"node {i}: only node 0 may be the input.")
        if node.kind == "const":
            if node.args or any(k not in ("literal", "integer", "boolean") for k, _ in node.attrs):
                raise ProgramError(f"node {i}: a const takes no args and no attrs but 'literal', 'integer' or "
                                   "'boolean'.")
            try:
                value = np.asarray(node.value, dtype=np.float64)
            except (TypeError, ValueError):
                raise ProgramError(f"node {i}: const values must be a number or a regular nested list.") from None
            if not np.all(np.isfinite(value)):
                raise ProgramError(f"node {i}: const values must be finite.")
            _check_literal(i, node, value)
            shapes.append(value.shape)
            normalised.append(node)
            continue
        try:
            spec = get_op(node.kind)
        except KeyError as exc:
            raise ProgramError(f"node {i}: {exc.args[0]}") from None
        # (a Python number where an op takes only an integer type is checked below)
        literal_args = [a for p, a in enumerate(node.args)
                        if 0 <= a < i and literal_of(nodes[a]) and p not in spec.integer_typed_args]
        if literal_args and (node.kind not in PYTHON_NUMBER_OPS or len(literal_args) == len(node.args)):
            raise ProgramError(
                f"node {i}: {node.kind} cannot take a Python number here: only "
                f"{', '.join(sorted(PYTHON_NUMBER_OPS))} can, beside a framework array."
            )
        if len(node.args) != spec.arity:
            raise ProgramError(f"node {i}: {node.kind} takes {spec.arity} args, got {len(node.args)}.")
        for p, a in enumerate(node.args):
            if not isinstance(a, int) or isinstance(a, bool) or not 0 <= a < i:
                raise ProgramError(f"node {i}: arg {a} must refer to an earlier node (0..{i - 1}).")
            if integer_array(nodes[a]) and p not in spec.integer_args:
                raise ProgramError(f"node {i}: {node.kind} cannot take an {integer_dtype(nodes[a])} array "
                                   f"as argument {p}.")
            if boolean_array(nodes[a]) and p not in spec.mask_args:
                raise ProgramError(f"node {i}: {node.kind} cannot take a framework bool array as argument {p}.")
            if p in spec.integer_typed_args and not (integer_array(nodes[a]) or literal_of(nodes[a]) == "int"):
                raise ProgramError(f"node {i}: {node.kind}'s argument {p} must be a constant Python int or "
                                   f"framework {'/'.join(INTEGER_DTYPES)} array (the frameworks take no float "
                                   f"there), not node {a} ({nodes[a].kind}).")
        try:
            attrs = spec.check_attrs(node.attr_dict)
            shapes.append(tuple(spec.shape(tuple(shapes[a] for a in node.args), attrs)))
        except ValueError as exc:
            raise ProgramError(f"node {i}: {exc}") from None
        normalised.append(Node(node.kind, node.args, tuple(sorted(attrs.items()))))
    if shapes[-1] != ():
        raise ProgramError(f"the output (last node) must be a scalar, got shape {shapes[-1]}.")
    if literal_of(normalised[-1]):
        raise ProgramError("the output (last node) must be a framework value, not a Python number.")
    return tuple(normalised), tuple(shapes)
