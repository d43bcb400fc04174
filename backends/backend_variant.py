"""The uniform call: ``BackendVariant``, one named way to get a Hessian from one framework.

The harness only ever talks to a ``BackendVariant``: ``hessian(program, x)``,
``hessians``, ``gradient``, ``value`` and ``source``. It runs a program through its
backend's declarations (``hessdiff.backends.base``: the lowering table, the variant's
composition and helpers), turns a framework's "not implemented" into ``Unsupported``,
and prints the same computation as a standalone script.
"""

from __future__ import annotations

import ast
import contextlib
import dis
import inspect
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import CodeType
from typing import Any, final

import numpy as np

from hessdiff.backends.base import DTYPES, Backend, BackendUnavailable, Unsupported, Variant
from hessdiff.backends.lowering import SourceNamespace, Src, array_literal, expression_text, unparenthesized
from hessdiff.harness.ir import Program

__all__ = ["BackendVariant", "constants_read_by"]


@final
@dataclass(frozen=True)
class BackendVariant:
    """One named way to get a Hessian from one framework: ``jax:fwdrev``.

    The uniform call of hessdiff: every method takes a program and a NumPy point whose
    dtype (float32 or float64) selects the precision, and returns NumPy.
    """

    backend: Backend
    variant: str

    @property
    def name(self) -> str:
        return f"{self.backend.name}:{self.variant}"

    @property
    def spec(self) -> Variant:
        if self.variant in self.backend.variants:
            return self.backend.variants[self.variant]
        return self.backend.probe(self.variant)

    @property
    def description(self) -> str:
        return self.spec.description

    def hessian(self, program: Program, x: np.ndarray) -> np.ndarray:
        """The Hessian as the framework computes it (its shape is not forced to (n, n))."""
        return self._run(program, x, self.spec.compose)

    def hessians(self, program: Program, points: np.ndarray) -> np.ndarray:
        """The Hessians at each row of ``points`` (k, n), in one vectorised call if the
        backend has one (``Backend.batched``), else one call per point; shape (k, ...).

        The per-call overhead of a framework (tracing, dispatch) dwarfs the arithmetic of
        a small program, so a batch is much cheaper than k calls. A batched result is a
        screening result: a fault it shows is confirmed with ``hessian`` before it is
        reported (vmap has its own bugs).
        """
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != program.n:
            raise ValueError(f"points has shape {points.shape}, but it must be (k, {program.n}).")
        if len(points) < 2 or not self.spec.batchable:
            return np.stack([np.asarray(self.hessian(program, x)) for x in points])
        compose = self.spec.compose
        batch = self.backend.batched if self.spec.compiled else self.backend.batched_eager
        return self._run(program, points, lambda m, f: batch(m, compose(m, f)))

    def gradient(self, program: Program, x: np.ndarray) -> np.ndarray:
        return self._run(program, x, self.backend.gradient)

    def value(self, program: Program, x: np.ndarray) -> np.ndarray:
        return self._run(program, x, lambda m, f: f)

    def node_values(self, program: Program, x: np.ndarray) -> list[np.ndarray]:
        """The framework's value of every node of ``program`` at ``x``, in one eager call
        of the lowered program (no derivative): what blame holds against each op applied
        exactly to the framework's own arguments (``hessdiff.harness.blame``)."""
        dtype = _dtype_name(x)
        self.backend.require()
        with _warnings_shown_not_raised(), self.backend.precision(dtype), self._translate_errors():
            values = self.backend.lower(program, dtype, every_node=True)(self.backend.asarray(x, dtype))
            return [np.asarray(v if isinstance(v, (int, float)) else self.backend.to_numpy(v), dtype=np.float64)
                    for v in values]

    def _run(self, program: Program, x: np.ndarray, transform: Callable[[Any, Any], Any]) -> np.ndarray:
        dtype = _dtype_name(x)
        self.backend.require()
        gap = self.backend.variant_gap(self.variant, self.spec)
        if gap is not None:
            raise Unsupported(f"{self.name}: {gap}")
        with _warnings_shown_not_raised(), self.backend.precision(dtype), self._translate_errors():
            f = self.backend.lower(program, dtype)
            ns = self.backend.namespace(dtype)
            ns.__dict__.update({h.__name__: h for h in self.spec.helpers})
            result = transform(ns, f)(self.backend.asarray(x, dtype))
            return self.backend.to_numpy(result)

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (Unsupported, BackendUnavailable):
            raise
        except Exception as exc:
            reason = self.backend.unsupported_reason(exc)
            if reason is not None:
                raise Unsupported(f"{self.name}: {reason}") from exc
            raise

    def source(self, program: Program, x: np.ndarray) -> str:
        """A standalone script that computes and prints this variant's Hessian at ``x``."""
        dtype = _dtype_name(x)
        consts, body = self.backend.function_source(program, dtype)
        names = dict(self.backend.source_names(dtype))
        names.update({h.__name__: h.__name__ for h in self.spec.helpers})
        call = self.spec.compose(SourceNamespace(names), Src("f"))
        helpers = "\n\n\n".join(inspect.getsource(h).strip() for h in self.spec.helpers)
        constants = [f"{name} = {value!r}" for name, value in constants_read_by(self.spec.helpers).items()]
        # Helpers are copied with their annotations: postpone them, so an annotation may
        # name something the script does not import.
        lines = ["from __future__ import annotations", "", "import numpy as np",
                 self.backend.source_imports.strip()]
        setup = self.backend.source_setup(dtype).strip()
        if setup:
            lines += ["", setup]
        lines += ["", ""] + (consts + ["", ""] if consts else []) + ["def f(x):"]
        lines += [f"    {line}" for line in body]
        if constants:
            lines += ["", ""] + constants
        if helpers.strip():
            lines += ["", "", helpers.strip()]
        const_line = self.backend.installed_lowerings()["const"](
            SourceNamespace(names), Src(array_literal(np.asarray(x, dtype=np.float64)))
        )
        lines += [
            "",
            "",
            f"x = {unparenthesized(const_line.text)}",
            f"H = {expression_text(call)}(x)",
            f"print('{self.name} hessian:', {self.backend.source_to_numpy('H')}.tolist())",
        ]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _warnings_shown_not_raised() -> Iterator[None]:
    """A framework's warning during a call is shown (once per place), never raised.

    A warning is not a crash: diffrax 0.7.0 under jax 0.5.3 warns that ``jnp.shape`` of a
    ``ShapeDtypeStruct`` is deprecated on every solve, and where warnings are errors (this
    project's pytest settings, ``python -W error``) that warning became the probe's
    "crash" while the same solve computes its Hessian everywhere else.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        yield


def constants_read_by(helpers: tuple[Callable[..., Any], ...]) -> dict[str, Any]:
    """The module-level constants ``helpers`` read, name -> value (``{"ODE_STEPS": 4}``).

    An emitted script carries a helper's source, which may read a constant its module
    imports (the Neural-ODE probes read ``scenarios.ode_problem``'s); the script defines
    it from the value hessdiff ran with, so the two cannot differ. A constant is a global
    the helper (or a function nested in it) loads whose value is a Python literal: a
    number, string, or a tuple, list or dict of them. Functions and modules are not (a
    helper imports its framework inside, and the helpers it calls are carried too), nor
    the module's own dunders: a class defined in a helper loads ``__name__`` for its
    ``__module__``, and a script that set ``__name__`` to the helper's module would give
    the class a module ``sys.modules`` lacks; ``dataclasses`` (so an ``eqx.Module``) looks
    it up for a postponed annotation without a module prefix (``sign: int``) and fails.
    """
    found: dict[str, Any] = {}
    for helper in helpers:
        for name in _globals_loaded(helper.__code__):
            if name.startswith("__") and name.endswith("__"):
                continue
            if name in helper.__globals__ and _is_literal(helper.__globals__[name]):
                found[name] = helper.__globals__[name]
    return found


def _globals_loaded(code: CodeType) -> Iterator[str]:
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            yield instruction.argval
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _globals_loaded(const)


def _is_literal(value: Any) -> bool:
    """Whether ``repr(value)`` is Python source that evaluates back to ``value``."""
    if callable(value):
        return False
    try:
        return bool(ast.literal_eval(repr(value)) == value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _dtype_name(x: np.ndarray) -> str:
    name = np.asarray(x).dtype.name
    if name not in DTYPES:
        raise ValueError(f"x has dtype {name}, but it must be one of {DTYPES}.")
    return name
