"""One lowering, two readings: run a program with a framework, or print it as source.

A backend's lowering table maps each catalogue op to a small function written against a
namespace ``m`` (``lambda m, a: m.jnp.sin(a)``). Called with the real framework modules it
computes; called with ``SourceNamespace`` and ``Src`` placeholders it records the very same
calls as text (``jnp.sin(v2)``). So the reproducer a maintainer pastes is, by
construction, the code hessdiff ran, and no string of code is ever ``exec``'d.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
import numbers

import numpy as np

__all__ = ["Absent", "Lowering", "Namespace", "SourceNamespace", "Spellings", "Src", "flags", "render"]

Lowering = Callable[..., Any]


@dataclass(frozen=True)
class Absent:
    """A catalogue op that a framework does not have, with the reason."""

    reason: str


@dataclass(frozen=True)
class Spellings:
    """One op written for several releases, newest API first: ``Spellings(flip, reversed_slice)``.

    The installed release runs the first spelling whose framework APIs it has
    (``Backend.installed_lowerings``), so an older release that spells the op differently
    still has it, and an emitted reproducer prints the spelling that ran; a release with
    none of them lacks the op (``Absent``, naming what the newest spelling needs).
    """

    spellings: tuple[Lowering, ...]

    def __init__(self, *spellings: Lowering) -> None:
        if not spellings or not all(callable(s) for s in spellings):
            raise TypeError("Spellings takes one or more lowerings, newest first")
        object.__setattr__(self, "spellings", spellings)


class Namespace:
    """The names a lowering may use (``m.jnp``, ``m.dtype``), bound to real objects."""

    def __init__(self, **names: Any) -> None:
        self.__dict__.update(names)

    def names(self) -> frozenset[str]:
        return frozenset(self.__dict__)


class Src:
    """A placeholder that turns every operation applied to it into source text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        object.__setattr__(self, "text", text)

    def __repr__(self) -> str:
        return self.text

    def __getattr__(self, name: str) -> Src:
        if name.startswith("__"):
            raise AttributeError(name)
        return Src(f"{self.text}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Src:
        parts = [render(a) for a in args] + [f"{k}={render(v)}" for k, v in kwargs.items()]
        return Src(f"{self.text}({', '.join(parts)})")

    def __getitem__(self, key: Any) -> Src:
        if isinstance(key, tuple):
            inner = ", ".join(_render_index(k) for k in key)
        else:
            inner = _render_index(key)
        return Src(f"{self.text}[{inner}]")

    def __bool__(self) -> bool:
        raise TypeError(
            f"a lowering branched on the traced value {self.text}; lowerings must be "
            "straight-line code so that they can be printed."
        )

    def _bin(self, symbol: str, other: Any, reflected: bool = False) -> Src:
        text = render(other)
        if text.startswith("-"):  # (-2.0) ** a, not -(2.0 ** a)
            text = f"({text})"
        left, right = (text, self.text) if reflected else (self.text, text)
        return Src(f"({left} {symbol} {right})")

    def __add__(self, o: Any) -> Src:
        return self._bin("+", o)

    def __radd__(self, o: Any) -> Src:
        return self._bin("+", o, True)

    def __sub__(self, o: Any) -> Src:
        return self._bin("-", o)

    def __rsub__(self, o: Any) -> Src:
        return self._bin("-", o, True)

    def __mul__(self, o: Any) -> Src:
        return self._bin("*", o)

    def __rmul__(self, o: Any) -> Src:
        return self._bin("*", o, True)

    def __truediv__(self, o: Any) -> Src:
        return self._bin("/", o)

    def __rtruediv__(self, o: Any) -> Src:
        return self._bin("/", o, True)

    def __pow__(self, o: Any) -> Src:
        return self._bin("**", o)

    def __rpow__(self, o: Any) -> Src:
        return self._bin("**", o, True)

    def __matmul__(self, o: Any) -> Src:
        return self._bin("@", o)

    def __rmatmul__(self, o: Any) -> Src:
        return self._bin("@", o, True)

    def __gt__(self, o: Any) -> Src:
        return self._bin(">", o)

    def __lt__(self, o: Any) -> Src:
        return self._bin("<", o)

    def __ge__(self, o: Any) -> Src:
        return self._bin(">=", o)

    def __le__(self, o: Any) -> Src:
        return self._bin("<=", o)

    def __neg__(self) -> Src:
        return Src(f"(-{self.text})")


class SourceNamespace:
    """The source-text reading of a ``Namespace``: ``m.jnp`` is ``Src("jnp")``."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self._names = dict(names)

    def __getattr__(self, name: str) -> Src:
        try:
            return Src(self._names[name])
        except KeyError:
            raise AttributeError(f"the source namespace has no name {name!r}") from None

    def names(self) -> frozenset[str]:
        return frozenset(self._names)


def render(value: Any) -> str:
    """Python source for a value a lowering passes to a call."""
    if isinstance(value, Src):
        return value.text
    if isinstance(value, (bool, str)) or value is None:
        return repr(value)
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, (float, np.floating)):
        return _float(float(value))
    if isinstance(value, tuple):
        inner = ", ".join(render(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, slice):
        return _render_index(value)
    raise TypeError(f"cannot render {type(value).__name__} {value!r} as source")


def _float(x: float) -> str:
    if np.isnan(x):
        return "float('nan')"
    if np.isinf(x):
        return "float('inf')" if x > 0 else "-float('inf')"
    return repr(x)


def _render_index(key: Any) -> str:
    if isinstance(key, slice):
        parts = ["" if p is None else render(p) for p in (key.start, key.stop, key.step)]
        text = f"{parts[0]}:{parts[1]}"
        return text + (f":{parts[2]}" if key.step is not None else "")
    if key is Ellipsis:
        return "..."
    return render(key)


def flags(values: Any) -> Any:
    """Positive entries as True, the rest False, as Python bools nested like ``values``:
    what a user writes in a mask literal (``jnp.asarray([True, False])``), and what a
    lowering given it prints the same way it runs."""
    return (np.asarray(values) > 0).tolist()


def array_literal(values: np.ndarray) -> str:
    """An exact ``np.array(...)`` literal (every float written so it round-trips)."""
    return f"np.array({render(_tolist(np.asarray(values, dtype=np.float64)))})"


def _tolist(a: np.ndarray) -> Any:
    if a.ndim == 0:
        return float(a)
    return [_tolist(row) for row in a]


def expression_text(value: Any) -> str:
    """The source text of what a lowering returned when called on ``Src`` placeholders."""
    if isinstance(value, Src):
        return value.text
    raise TypeError(f"a lowering returned {value!r}, not an expression of its arguments")


def unparenthesized(text: str) -> str:
    """Drop one pair of redundant outer parentheses: ``(a + b)`` -> ``a + b``."""
    if text.startswith("(") and text.endswith(")"):
        depth = 0
        for k, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and k < len(text) - 1:
                return text
        return text[1:-1]
    return text
