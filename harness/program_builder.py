"""The state of a program being generated, and where generation gets its choices.

A ``Builder`` grows a node list knowing every node's value at the point (so that an op
can be aimed at a special value there); a ``Chooser`` makes every choice, from Hypothesis
draws (the campaign: shrinkable) or from a seeded RNG (per-op probes: any seed). The
same building code serves both because it only ever asks a ``Chooser``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from hessdiff.harness.ir import Node, Program, boolean_array, const, integer_array, literal_of, op
from hessdiff.harness.oracle import node_values
from hessdiff.harness.ops import CATALOGUE


def dtype_floats(dtype: str, lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats in ``[lo, hi]`` exactly representable in ``dtype`` (bounds rounded inward)."""
    if dtype == "float32":
        lo32, hi32 = np.float32(lo), np.float32(hi)
        lo = float(lo32 if lo32 >= lo else np.nextafter(lo32, np.float32(np.inf)))
        hi = float(hi32 if hi32 <= hi else np.nextafter(hi32, np.float32(-np.inf)))
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32)
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


class Builder:
    """Grows a node list, knowing every node's value at the point (for aiming)."""

    def __init__(self, n: int, x: np.ndarray, dtype: str) -> None:
        self.n = n
        self.x = x
        self.dtype = dtype
        self.nodes: list[Node] = [Node("input")]
        self.shapes: list[tuple[int, ...]] = [(n,)]
        self.values: list[np.ndarray] = [x]
        self.used: set[int] = set()
        self.attrs: dict[str, Any] = {}
        # Per op, argument patterns (harness.exact.pattern_of) steering asks for.
        self.patterns: Mapping[str, Sequence[str]] = {}
        self.read_out = False  # the next node gets y + y**2 (``op_args._read_out``)
        # Aims land exactly on the special value, never a few ulps off (the campaign's
        # sweep of special values no check has hit exactly: ``probe_case``'s ``aims``).
        self.exact_aims = False
        # A constant argument kind the next elementwise op must take, "p:kind" as
        # ``harness.exact.argument_kinds`` names it (the sweep of kinds no check has had).
        self.kind: str | None = None
        # Every sink read out as f + f**2, never sum(f) alone (``finish``): a probe's one
        # op must show a wrong first derivative too.
        self.curved_readout = False

    def add(self, node: Node) -> int:
        if node.kind != "const":  # the IR's own check, now rather than at the end
            spec = CATALOGUE[node.kind]
            spec.shape(tuple(self.shapes[a] for a in node.args), spec.check_attrs(node.attr_dict))
        self.nodes.append(node)
        self.used.update(node.args)
        value = node_values(self.n, self.nodes, self.x, self.dtype)[-1]
        self.values.append(value)
        self.shapes.append(np.shape(value))
        return len(self.nodes) - 1

    def constant(self, value: Any, literal: str | None = None, integer: bool | str = False,
                 boolean: bool = False) -> int:
        """A constant of the dtype (``integer``: a framework integer array, "int32" or
        "int64"; ``boolean``: a framework bool array, True where positive); an entry
        beyond the dtype's range is 0 (an aiming offset of a value near float64's overflow
        has no float32 counterpart)."""
        with np.errstate(over="ignore"):
            rounded = np.asarray(value, dtype=self.dtype).astype(np.float64)
        return self.add(const(np.where(np.isfinite(rounded), rounded, 0.0), literal, integer, boolean))

    def pick(self, ch: Chooser, shapes: Sequence[tuple[int, ...]] | None = None) -> int:
        """An existing node (recent ones first), optionally of one of ``shapes``; never a
        Python-number constant (only the op it was made for may take it)."""
        candidates = [
            i for i in range(len(self.nodes))
            if (shapes is None or self.shapes[i] in shapes) and not literal_of(self.nodes[i])
            and not integer_array(self.nodes[i]) and not boolean_array(self.nodes[i])
        ]
        if not candidates:
            return -1
        return candidates[len(candidates) - 1 - ch.integer(0, len(candidates) - 1)]

    def rollback(self, length: int) -> None:
        """Forget every node from ``length`` on (an op whose arguments did not fit)."""
        del self.nodes[length:], self.shapes[length:], self.values[length:]
        self.used = {a for node in self.nodes for a in node.args}
        self.read_out = False

    def pick_op(self, ch: Chooser, shape: tuple[int, ...] | None) -> int:
        """An intermediate (an op node) of ``shape`` or scalar; the input if there is none."""
        candidates = [
            i for i in range(1, len(self.nodes)) if self.nodes[i].kind != "const"
            and (shape is None or self.shapes[i] in (shape, ()))
        ]
        if not candidates:
            return 0
        return candidates[len(candidates) - 1 - ch.integer(0, len(candidates) - 1)]

    def aimed_offset(self, ch: Chooser, target: int) -> int:
        """A constant equal to ``target``'s value at one element, a few ulps off or not."""
        value = np.array(self.values[target], dtype=np.float64, ndmin=1).reshape(self.shapes[target])
        offsets = np.zeros(self.shapes[target])
        flat = offsets.reshape(-1)
        element = ch.integer(0, max(flat.size - 1, 0))
        if flat.size:
            v = np.asarray(value.reshape(-1)[element], dtype=self.dtype)
            ulps = ch.choice((0, 1, -1, 2, -2))
            direction = np.asarray(np.inf if ulps > 0 else -np.inf, dtype=self.dtype)
            for _ in range(abs(ulps)):
                v = np.nextafter(v, direction)
            flat[element] = float(v) if np.isfinite(v) else 0.0
        return self.constant(offsets)

    def _squares_in_range(self, i: int) -> bool:
        """Whether node ``i``'s square stays within the dtype's range: an aim at an
        overflow threshold (exp2 at 127 in float32) must not be read out as inf."""
        with np.errstate(over="ignore", invalid="ignore"):
            largest = np.max(np.abs(np.asarray(self.values[i], dtype=np.float64)), initial=0.0)
            return bool(largest * largest < np.finfo(self.dtype).max)

    def finish(self, ch: Chooser) -> Program:
        """Reduce every unused node to a scalar and add them: every op feeds the output."""
        sinks = [i for i in range(1, len(self.nodes)) if i not in self.used]
        sinks = [i for i in sinks if self.nodes[i].kind != "const"] or [len(self.nodes) - 1]
        scalars = []
        for i in sinks:
            # Sometimes read it out as f + f**2: a Hessian of a linear readout of an op is
            # blind to the op's first derivative (d2/dx2 of sum(f) is sum(f'')); of
            # sum(f + f**2) it is 2 J^T J + sum((1 + 2 f) f''), so a wrong gradient (a wrong
            # forward-mode rule, a wrong rule for a constant argument) shows as well, and
            # f'' still shows where f = 0 (under f**2 alone it would vanish there).
            if self._squares_in_range(i) if self.curved_readout else ch.boolean():
                i = self.add(op("add", i, self.add(op("square", i))))
            if self.shapes[i] != ():
                reduce = ch.choice(("sum", "mean"))
                i = self.add(op(reduce, i))
            scalars.append(i)
        out = scalars[0]
        for other in scalars[1:]:
            out = self.add(op("add", out, other))
        if self.shapes[out] != ():  # only the input node: reduce it
            out = self.add(op("sum", out))
        return Program(self.n, tuple(self.nodes))


class Chooser:
    """Where generation gets its choices: Hypothesis draws, or a seeded RNG for probes.

    Every choice goes through these four methods, so the same builder serves the
    campaign (shrinkable draws) and the per-op tests (deterministic, any seed).
    """

    def __init__(self, draw: st.DrawFn | None = None, rng: Any = None) -> None:
        self.draw = draw
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        if self.draw is not None:
            return self.draw(st.integers(lo, hi))
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.integer(0, len(options) - 1)]

    def boolean(self) -> bool:
        return bool(self.integer(0, 1))

    def real(self, dtype: str, lo: float, hi: float) -> float:
        if self.draw is not None:
            return self.draw(dtype_floats(dtype, lo, hi))
        return float(np.asarray(self.rng.uniform(lo, hi), dtype=dtype))

    def reals(self, dtype: str, lo: float, hi: float, size: int) -> list[float]:
        return [self.real(dtype, lo, hi) for _ in range(size)]
