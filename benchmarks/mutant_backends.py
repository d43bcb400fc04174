"""Mutant frameworks: each one real framework with one op's derivative rule made wrong.

A mutant computes the Hessian exactly as its framework does (``jax.jit(jax.hessian(f))``,
``eqx.filter_jit(eqx.filter_hessian(f))``, ``torch.func.hessian``, MLX's forward-over-reverse
loop), except
that one catalogue op is lowered to a custom rule -- ``jax.custom_jvp``, a
``torch.autograd.Function`` with ``backward`` and ``jvp``, or ``mx.custom_function`` with
``.vjp`` and ``.jvp`` -- that is wrong in one narrow region only, the way a real
framework bug is: a constant slightly off, a small-argument shortcut, a special case at
exactly one value, a NaN at a kink, a fast path taken when an argument is not traced, a
saved output detached, a float32 kernel that rounds to bfloat16, a forward-mode rule
that disagrees with the reverse one, an exception at one input. The value of the op is
never changed: only its derivatives are.

Each mutant also has a *twin*: the same custom rule with the mutation switched off. The
twin is how ``benchmarks/mutants.py`` credits a kill to the mutation (the mutant's
Hessian must differ from the twin's where the finding was made) and how
``tests/test_mutants.py`` shows that the wrapper itself is faithful to the framework.

A mutant is a variant of a backend that keeps its framework's name (``jax:mut-div-const``),
so the judge treats it as that framework (its tolerance row, its rule scales) and the
baseline's wildcard entries for the framework (``mlx:*|...``) cover it; it is never
registered (``hessdiff.backends.registry``), only handed to ``hessdiff.harness.campaign.Campaign``.

Nothing here imports a framework at import time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

import numpy as np

from hessdiff.backends import Backend, BackendVariant, Namespace, Variant
from hessdiff.backends.equinox_backend import EquinoxBackend
from hessdiff.backends.jax_backend import JAX_LOWERINGS, JaxBackend
from hessdiff.backends.mlx_backend import MLX_LOWERINGS, MlxBackend
from hessdiff.backends.torch_backend import TORCH_LOWERINGS, TorchBackend
from hessdiff.harness.ir import Node, Program, const, op

__all__ = [
    "CLASSES",
    "FRAMEWORKS",
    "MUTANTS",
    "Mutant",
    "Probe",
    "TINY",
    "dtype_values",
    "get_mutant",
    "honest_variant",
    "region_hits",
]

# The classes of fault the set covers (issue 13, item 6), by key.
CLASSES: dict[str, str] = {
    "small-relative": "wrong everywhere by a small relative amount (1e-6 in float64, 1e-3 in float32)",
    "tiny": "wrong only for |x| < 1e-20",
    "special-value": "wrong only at exactly one special value (0, 1, an exact tie)",
    "nan-at-kink": "NaN only at a kink, where both one-sided values are finite",
    "traced-only": "wrong only when one argument is traced and the other is constant",
    "second-order": "first derivative right, second wrong",
    "float32-only": "wrong in float32 only",
    "forward-only": "wrong in forward mode only: forward-over-reverse is wrong, reverse-over-reverse right",
    "crash": "a Python exception from the rule at one input value only",
}

# Per framework: the honest variant a mutant's Hessian composition copies, and the
# reverse-over-reverse one (for the forward-only mutants' probes). JAX and Equinox are
# compiled: eagerly, each new program recompiles every primitive, 0.4-1.7 s a Hessian
# against 0.2 s, and a campaign of fixed budget would check a third as many programs.
FRAMEWORKS: dict[str, tuple[str, str]] = {
    "jax": ("jit", "revrev"),
    "equinox": ("filter_jit", "filter_jit"),
    "torch": ("func", "func-revrev"),
    "mlx": ("fwdrev", "revrev"),
}

TINY = 1e-20


def _delta(dtype: str) -> float:
    """The small-relative class's error: 1e-6 in float64, 1e-3 in float32."""
    return 1e-6 if dtype == "float64" else 1e-3


# --- the mutant record ----------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One check of a mutant: ``program`` at ``point`` in ``dtype``, by the mutant's
    variant (or by ``composition``, "rev" for the framework's reverse-over-reverse)."""

    program: Program
    point: tuple[float, ...]
    dtype: str = "float64"
    composition: str = "main"


@dataclass(frozen=True)
class Mutant:
    """One mutant framework.

    Arguments:
        variant: the variant name, ``mut-<op>-<what>``; the full name is
            ``<framework>:<variant>``.
        kind: its class, a key of ``CLASSES``.
        framework: "jax", "equinox", "torch" or "mlx".
        op: the catalogue op whose rule is wrong.
        region: where it is wrong, one line.
        story: the real-bug shape it imitates, one line.
        build: ``build(mutate, dtype)`` -> the op as a function of the lowering's
            arguments (``f(a, b)``, ``f(a, axis=..., keepdims=...)``); ``mutate=False``
            gives the twin.
        reached: whether a node of ``op`` in a checked program lies in the region:
            ``reached(args, traced, attrs, dtype)`` with the arguments' values (each node
            evaluated and rounded to the dtype in turn, as a framework computes them),
            which arguments depend on the input, and the node's attrs.
        special: where the region is one of the op's catalogue special values, its
            index in ``CATALOGUE[op].special_names`` (the one the generator aims at).
        inside, outside: probes where the mutant must differ from its framework, and a
            nearby one where it must not.
    """

    variant: str
    kind: str
    framework: str
    op: str
    region: str
    story: str
    build: Callable[[bool, str], Callable[..., Any]]
    inside: Probe
    outside: Probe
    reached: Callable[[list[np.ndarray], list[bool], dict[str, Any], str], bool]
    special: int | None = None

    @property
    def name(self) -> str:
        return f"{self.framework}:{self.variant}"

    @property
    def description(self) -> str:
        """One line: class, op, framework, region."""
        return f"[{self.kind}] {self.framework} {self.op}: {self.region} ({self.story})"

    def variant_of(self, twin: bool = False, composition: str = "main") -> BackendVariant:
        """The mutant (or its twin) as a ``BackendVariant`` with the framework's main
        composition, or its reverse-over-reverse one (``composition="rev"``)."""
        backend = _backend(self.variant, not twin)
        name = backend.main if composition == "main" else backend.rev
        return BackendVariant(backend, name)


def honest_variant(framework: str) -> str:
    """The honest variant a mutant of ``framework`` copies: ``jax:jit``, ``torch:func``, ..."""
    return f"{framework}:{FRAMEWORKS[framework][0]}"


# --- the backends ---------------------------------------------------------------------


def _call_mutant(m: Any, *args: Any, **attrs: Any) -> Any:
    return m.mutant(*args, **attrs)


class _Mutated:
    """What every mutant backend adds to its framework's backend: the mutated op in the
    lowering table and the namespace, and pickling by name (for ``hessdiff.harness.worker``)."""

    main: str
    rev: str

    def _setup(self, mutant: Mutant, mutate: bool, base_lowerings: Mapping[str, Any],
               base_variants: Mapping[str, Variant]) -> None:
        self.mutant = mutant
        self.mutate = mutate
        suffix = "" if mutate else "-twin"
        main, rev = FRAMEWORKS[mutant.framework]
        self.main = mutant.variant + suffix
        self.rev = f"{mutant.variant}{suffix}-{rev}"
        what = "mutant" if mutate else "twin (mutation off)"
        self.variants = {
            self.main: Variant(f"{base_variants[main].description}; {what}: {mutant.description}",
                               base_variants[main].compose, base_variants[main].helpers),
            self.rev: Variant(f"{base_variants[rev].description}; {what}: {mutant.description}",
                              base_variants[rev].compose, base_variants[rev].helpers),
        }
        self.lowerings = {**base_lowerings, mutant.op: _call_mutant}
        self._ops: dict[str, Callable[..., Any]] = {}

    def _with_mutant(self, ns: Namespace, dtype: str) -> Namespace:
        if dtype not in self._ops:
            self._ops[dtype] = self.mutant.build(self.mutate, dtype)
        ns.mutant = self._ops[dtype]
        return ns

    def _source_names(self, names: Mapping[str, str]) -> dict[str, str]:
        # A reproducer of a mutant prints the call; the rule itself lives here.
        return {**names, "mutant": self.mutant.variant.replace("-", "_")}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_backend, (self.mutant.variant, self.mutate))


@final
class MutantJaxBackend(_Mutated, JaxBackend):
    """JAX with one op lowered to a mutated ``jax.custom_jvp``."""

    def __init__(self, mutant: Mutant, mutate: bool) -> None:
        self._setup(mutant, mutate, JAX_LOWERINGS, JaxBackend.variants)

    def namespace(self, dtype: str) -> Namespace:
        return self._with_mutant(super().namespace(dtype), dtype)

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return self._source_names(super().source_names(dtype))


@final
class MutantEquinoxBackend(_Mutated, EquinoxBackend):
    """Equinox with one op lowered to a mutated ``jax.custom_jvp``."""

    def __init__(self, mutant: Mutant, mutate: bool) -> None:
        self._setup(mutant, mutate, JAX_LOWERINGS, EquinoxBackend.variants)

    def namespace(self, dtype: str) -> Namespace:
        return self._with_mutant(super().namespace(dtype), dtype)

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return self._source_names(super().source_names(dtype))


@final
class MutantTorchBackend(_Mutated, TorchBackend):
    """PyTorch with one op lowered to a mutated ``torch.autograd.Function``."""

    def __init__(self, mutant: Mutant, mutate: bool) -> None:
        self._setup(mutant, mutate, TORCH_LOWERINGS, TorchBackend.variants)

    def namespace(self, dtype: str) -> Namespace:
        return self._with_mutant(super().namespace(dtype), dtype)

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return self._source_names(super().source_names(dtype))


@final
class MutantMlxBackend(_Mutated, MlxBackend):
    """MLX with one op lowered to a mutated ``mx.custom_function``."""

    def __init__(self, mutant: Mutant, mutate: bool) -> None:
        self._setup(mutant, mutate, MLX_LOWERINGS, MlxBackend.variants)

    def namespace(self, dtype: str) -> Namespace:
        return self._with_mutant(super().namespace(dtype), dtype)

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return self._source_names(super().source_names(dtype))


_CLASSES: dict[str, type[Backend]] = {
    "jax": MutantJaxBackend,
    "equinox": MutantEquinoxBackend,
    "torch": MutantTorchBackend,
    "mlx": MutantMlxBackend,
}
_INSTANCES: dict[tuple[str, bool], Backend] = {}


def _backend(variant: str, mutate: bool) -> Backend:
    """The mutant (or twin) backend of the mutant named ``variant``, one instance each
    (also what a worker process unpickles a mutant into)."""
    key = (variant, mutate)
    if key not in _INSTANCES:
        mutant = get_mutant(variant)
        _INSTANCES[key] = _CLASSES[mutant.framework](mutant, mutate)  # type: ignore[call-arg]
    return _INSTANCES[key]


# --- JAX rules --------------------------------------------------------------------------


def _jax_unary(primal: Callable[[Any], Any], d1: Callable[[Any], Any], d2: Callable[[Any], Any]) -> Any:
    """``primal`` with first derivative ``d1`` and second derivative ``d2``, each a
    ``jax.custom_jvp`` rule (so a mutated ``d2`` is what every Hessian sees). The rules
    call the functions themselves for their primal outputs, as JAX's own rules do, so
    higher derivatives go through the rules too."""
    import jax

    @jax.custom_jvp
    def first(x: Any) -> Any:
        return d1(x)

    @first.defjvp
    def _first_jvp(primals: Any, tangents: Any) -> Any:
        (x,), (t,) = primals, tangents
        return first(x), t * d2(x)

    @jax.custom_jvp
    def f(x: Any) -> Any:
        return primal(x)

    @f.defjvp
    def _f_jvp(primals: Any, tangents: Any) -> Any:
        (x,), (t,) = primals, tangents
        return f(x), t * first(x)

    return f


def _jax_raise_at(value: float, what: str) -> Callable[[Any], None]:
    """A ``jax.debug.callback`` target: raise if any entry equals ``value``."""

    def check(x: Any) -> None:
        if np.any(np.asarray(x) == value):
            raise FloatingPointError(f"{what}: argument exactly {value:g}")

    return check


def _jnp() -> Any:
    import jax.numpy as jnp

    return jnp


def build_jax_logsumexp(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()
    scale = 1.0 + _delta(dtype) if mutate else 1.0

    def logsumexp(a: Any, axis: Any, keepdims: bool) -> Any:
        @jax.custom_jvp
        def f(a: Any) -> Any:
            return jax.scipy.special.logsumexp(a, axis=axis, keepdims=keepdims)

        @f.defjvp
        def _jvp(primals: Any, tangents: Any) -> Any:
            (a,), (t,) = primals, tangents
            weights = jax.nn.softmax(a, axis=axis) * scale  # the softmax weights, off by (1 + delta)
            return f(a), jnp.sum(weights * t, axis=axis, keepdims=keepdims)

        return f(a)

    return logsumexp


def build_jax_expm1(mutate: bool, dtype: str) -> Callable[..., Any]:
    jnp = _jnp()

    def d1(x: Any) -> Any:  # expm1' = expm1 + 1; the shortcut for tiny x is the constant 1
        exact = jnp.expm1(x) + 1
        return jnp.where(jnp.abs(x) < TINY, 1.0, exact) if mutate else exact

    def d2(x: Any) -> Any:  # ... so the derivative of the shortcut is 0
        exact = jnp.expm1(x) + 1
        return jnp.where(jnp.abs(x) < TINY, 0.0, exact) if mutate else exact

    return _jax_unary(jnp.expm1, d1, d2)


def build_jax_silu(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()

    def d1(x: Any) -> Any:  # silu' = s (1 + x (1 - s)); special-cased to 0.5 at exactly 0
        s = jax.nn.sigmoid(x)
        exact = s * (1 + x * (1 - s))
        return jnp.where(x == 0, 0.5, exact) if mutate else exact

    def d2(x: Any) -> Any:  # ... and the special case's derivative is 0 (true: 0.5)
        s = jax.nn.sigmoid(x)
        exact = s * (1 - s) * (2 + x * (1 - 2 * s))
        return jnp.where(x == 0, 0.0, exact) if mutate else exact

    return _jax_unary(jax.nn.silu, d1, d2)


def build_jax_max(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()

    def amax(a: Any, axis: Any, keepdims: bool) -> Any:
        @jax.custom_jvp
        def f(a: Any) -> Any:
            return jnp.max(a, axis=axis, keepdims=keepdims)

        @f.defjvp
        def _jvp(primals: Any, tangents: Any) -> Any:
            (a,), (t,) = primals, tangents
            y = f(a)
            top = jnp.max(a, axis=axis, keepdims=True)
            mask = (a == top).astype(a.dtype)
            if not mutate:  # the tie rule splits the derivative evenly; the mutant forgets to
                mask = mask / jnp.sum(mask, axis=axis, keepdims=True)
            return y, jnp.sum(mask * t, axis=axis, keepdims=keepdims)

        return f(a)

    return amax


def build_jax_relu(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()

    def d1(x: Any) -> Any:  # relu' = [x > 0]; the mutant's mask is NaN at exactly 0
        exact = jnp.where(x > 0, 1.0, 0.0).astype(x.dtype)
        return jnp.where(x == 0, jnp.nan, exact) if mutate else exact

    def d2(x: Any) -> Any:
        return jnp.where(x == 0, jnp.nan, 0.0 * x) if mutate else 0.0 * x

    return _jax_unary(jax.nn.relu, d1, d2)


def build_jax_div(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax
    from jax.custom_derivatives import SymbolicZero

    @jax.custom_jvp
    def div(a: Any, b: Any) -> Any:
        return a / b

    def _jvp(primals: Any, tangents: Any) -> Any:
        a, b = primals
        ta, tb = tangents
        y = div(a, b)
        constant_b = isinstance(tb, SymbolicZero)
        out = 0.0 * y
        if not isinstance(ta, SymbolicZero):
            # The fast path for a constant divisor multiplies where it should divide.
            out = out + (ta * b if mutate and constant_b else ta / b)
        if not constant_b:
            out = out - tb * a / (b * b)
        return y, out

    div.defjvp(_jvp, symbolic_zeros=True)
    return div


def build_jax_sigmoid(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()

    def d1(x: Any) -> Any:
        s = jax.nn.sigmoid(x)
        return s * (1 - s)

    def d2(x: Any) -> Any:  # for x > 0 the rule's y is saved detached: its derivative is lost
        s = jax.nn.sigmoid(x)
        exact = s * (1 - s) * (1 - 2 * s)
        return jnp.where(x > 0, 0.0, exact) if mutate else exact

    return _jax_unary(jax.nn.sigmoid, d1, d2)


def _jax_cofactors(jnp: Any, a: Any) -> Any:
    """The cofactor matrix of a 1x1..3x3 matrix (d det = sum(cof * dA)), exact at
    singular matrices, like JAX's own cofactor-based rule."""
    k = a.shape[0]
    if k == 1:
        return jnp.ones_like(a)
    if k == 2:
        return jnp.stack([jnp.stack([a[1, 1], -a[1, 0]]), jnp.stack([-a[0, 1], a[0, 0]])])
    return jnp.stack([jnp.cross(a[1], a[2]), jnp.cross(a[2], a[0]), jnp.cross(a[0], a[1])])


def build_jax_det(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()

    @jax.custom_jvp
    def det(a: Any) -> Any:
        return jnp.linalg.det(a)

    @det.defjvp
    def _jvp(primals: Any, tangents: Any) -> Any:
        (a,), (t,) = primals, tangents
        # det' = sum(cof(A) * dA); the mutant computes the cofactors from A detached.
        cof = _jax_cofactors(jnp, jax.lax.stop_gradient(a) if mutate else a)
        return det(a), jnp.sum(cof * t)

    return det


def build_jax_erf(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()
    c = 2 / math.sqrt(math.pi)

    def d1(x: Any) -> Any:
        return c * jnp.exp(-x * x)

    def d2(x: Any) -> Any:  # the float32 kernel of erf'' rounds through bfloat16
        exact = -2 * x * c * jnp.exp(-x * x)
        if mutate and x.dtype == jnp.float32:
            return exact.astype(jnp.bfloat16).astype(jnp.float32)
        return exact

    return _jax_unary(jax.scipy.special.erf, d1, d2)


def build_jax_arctan(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()
    check = _jax_raise_at(0.0, "arctan's derivative rule")

    def d1(x: Any) -> Any:
        if mutate:
            jax.debug.callback(check, x)
        return 1 / (1 + x * x)

    def d2(x: Any) -> Any:
        return -2 * x / (1 + x * x) ** 2

    return _jax_unary(jnp.arctan, d1, d2)


# Equinox mutants: the same custom_jvp rules under eqx.filter_hessian.


def build_jax_log(mutate: bool, dtype: str) -> Callable[..., Any]:
    jnp = _jnp()
    scale = 1.0 + _delta(dtype) if mutate else 1.0

    def d2(x: Any) -> Any:  # log'' = -1/x**2, with a constant off by (1 + delta)
        return -scale / (x * x)

    return _jax_unary(jnp.log, lambda x: 1 / x, d2)


def build_jax_cosh(mutate: bool, dtype: str) -> Callable[..., Any]:
    jnp = _jnp()

    def d1(x: Any) -> Any:  # sinh flushed to zero for tiny x (and its derivative with it)
        return jnp.where(jnp.abs(x) < TINY, 0.0, jnp.sinh(x)) if mutate else jnp.sinh(x)

    def d2(x: Any) -> Any:
        return jnp.where(jnp.abs(x) < TINY, 0.0, jnp.cosh(x)) if mutate else jnp.cosh(x)

    return _jax_unary(jnp.cosh, d1, d2)


def build_jax_relu6(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()

    def d1(x: Any) -> Any:  # relu6' = [0 < x < 6] (jax.nn.relu6's rule); NaN at exactly 6
        exact = jnp.where((x > 0) & (x < 6), 1.0, 0.0).astype(x.dtype)
        return jnp.where(x == 6, jnp.nan, exact) if mutate else exact

    def d2(x: Any) -> Any:
        return jnp.where(x == 6, jnp.nan, 0.0 * x) if mutate else 0.0 * x

    return _jax_unary(jax.nn.relu6, d1, d2)


def build_jax_logaddexp(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax
    from jax.custom_derivatives import SymbolicZero

    jnp = _jnp()

    @jax.custom_jvp
    def logaddexp(a: Any, b: Any) -> Any:
        return jnp.logaddexp(a, b)

    def _jvp(primals: Any, tangents: Any) -> Any:
        a, b = primals
        ta, tb = tangents
        y = logaddexp(a, b)
        constant_b = isinstance(tb, SymbolicZero)
        out = 0.0 * y
        if not isinstance(ta, SymbolicZero):
            # With b constant, a fast path uses sigmoid(a): it forgets to subtract b.
            out = out + ta * (jax.nn.sigmoid(a) if mutate and constant_b else jnp.exp(a - y))
        if not constant_b:
            out = out + tb * jnp.exp(b - y)
        return y, out

    logaddexp.defjvp(_jvp, symbolic_zeros=True)
    return logaddexp


def build_jax_softplus(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()

    def d2(x: Any) -> Any:  # for x > 0 (the x + log1p(exp(-x)) branch) sigmoid is detached
        s = jax.nn.sigmoid(x)
        return jnp.where(x > 0, 0.0, s * (1 - s)) if mutate else s * (1 - s)

    return _jax_unary(jax.nn.softplus, jax.nn.sigmoid, d2)


def build_jax_exp(mutate: bool, dtype: str) -> Callable[..., Any]:
    jnp = _jnp()

    def rounded(x: Any) -> Any:  # the float32 derivative kernel rounds exp through bfloat16
        y = jnp.exp(x)
        if mutate and x.dtype == jnp.float32:
            return y.astype(jnp.bfloat16).astype(jnp.float32)
        return y

    return _jax_unary(jnp.exp, rounded, rounded)


def build_jax_log1p(mutate: bool, dtype: str) -> Callable[..., Any]:
    import jax

    jnp = _jnp()
    check = _jax_raise_at(0.0, "log1p's derivative rule")

    def d1(x: Any) -> Any:
        if mutate:
            jax.debug.callback(check, x)
        return 1 / (1 + x)

    return _jax_unary(jnp.log1p, d1, lambda x: -1 / ((1 + x) * (1 + x)))


# --- PyTorch rules ----------------------------------------------------------------------


def _torch_unary(primal: Callable[[Any], Any], d1: Callable[[Any], Any], d2: Callable[[Any], Any],
                 jvp_d1: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """``primal`` as a ``torch.autograd.Function`` whose ``backward`` and ``jvp`` multiply
    by ``First.apply(x)``, itself a Function with derivative ``d2``: both derivatives are
    the rules', in every composition of torch.func and torch.autograd. ``jvp_d1``
    replaces the derivative in ``jvp`` only (a forward-mode rule of its own)."""
    import torch

    class First(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x: Any) -> Any:
            return d1(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g * d2(x)

        @staticmethod
        def jvp(ctx: Any, t: Any) -> Any:
            (x,) = ctx.saved_tensors
            return t * d2(x)

    class Op(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x: Any) -> Any:
            return primal(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g * First.apply(x)

        @staticmethod
        def jvp(ctx: Any, t: Any) -> Any:
            (x,) = ctx.saved_tensors
            return t * (First.apply(x) if jvp_d1 is None else jvp_d1(x))

    return Op.apply


def _unbroadcast(g: Any, shape: Sequence[int]) -> Any:
    """Sum ``g`` down to ``shape`` (the gradient of a broadcast argument)."""
    shape = tuple(shape)
    while g.ndim > len(shape):
        g = g.sum(0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis, keepdims=True)
    return g


def _torch_reduce_setup(torch: Any, a: Any, axis: Any) -> tuple[Any, Any]:
    """(``a`` with the reduced entries on its last axis, a function mapping a tensor of
    that layout back to ``a``'s)."""
    if axis is None:
        return a.reshape(-1), lambda g: g.reshape(a.shape)
    axis = axis % a.dim()
    moved = torch.movedim(a, axis, -1)
    return moved, lambda g: torch.movedim(g, -1, axis)


def _torch_reduced(torch: Any, y: Any, a: Any, axis: Any, keepdims: bool) -> Any:
    """A full-reduction result (reduced over the last axis of the moved layout) in the
    op's output layout."""
    if axis is None:
        return y.reshape([1] * a.dim()) if keepdims else y.reshape(())
    return y.unsqueeze(axis % a.dim()) if keepdims else y


def _torch_expand(torch: Any, g: Any, a: Any, axis: Any, keepdims: bool) -> Any:
    """The output-layout tensor ``g`` in the moved layout of ``a``, broadcast along the
    reduced (last) axis."""
    if axis is None:
        return g.reshape(()).expand(a.numel())
    axis = axis % a.dim()
    if not keepdims:
        g = g.unsqueeze(axis)
    return torch.movedim(g, axis, -1).expand(torch.movedim(a, axis, -1).shape)


def build_torch_prod(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    scale = 1.0 + _delta(dtype) if mutate else 1.0

    def others(moved: Any) -> Any:
        """The product of every other entry along the last axis (no division)."""
        n = moved.shape[-1]
        expanded = moved.unsqueeze(-2).expand(*moved.shape[:-1], n, n)
        eye = torch.eye(n, dtype=torch.bool, device=moved.device)
        return torch.where(eye, torch.ones_like(expanded), expanded).prod(-1)

    class Prod(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(a: Any, axis: Any, keepdims: bool) -> Any:
            moved, _ = _torch_reduce_setup(torch, a, axis)
            return _torch_reduced(torch, moved.prod(-1), a, axis, keepdims)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])
            ctx.axis, ctx.keepdims = inputs[1], inputs[2]

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (a,) = ctx.saved_tensors
            moved, back = _torch_reduce_setup(torch, a, ctx.axis)
            grad = _torch_expand(torch, g, a, ctx.axis, ctx.keepdims) * others(moved) * scale
            return back(grad), None, None

        @staticmethod
        def jvp(ctx: Any, t: Any, _axis: Any, _keep: Any) -> Any:
            (a,) = ctx.saved_tensors
            moved, _ = _torch_reduce_setup(torch, a, ctx.axis)
            tm, _ = _torch_reduce_setup(torch, t, ctx.axis)
            return _torch_reduced(torch, (tm * others(moved)).sum(-1) * scale, a, ctx.axis, ctx.keepdims)

    return lambda a, axis, keepdims: Prod.apply(a, axis, keepdims)


def build_torch_log1p(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    def d1(x: Any) -> Any:  # log1p'(x) ~ 1 for tiny x: a constant, so its derivative is 0
        exact = 1 / (1 + x)
        return torch.where(x.abs() < TINY, torch.ones_like(x), exact) if mutate else exact

    def d2(x: Any) -> Any:
        exact = -1 / ((1 + x) * (1 + x))
        return torch.where(x.abs() < TINY, torch.zeros_like(x), exact) if mutate else exact

    return _torch_unary(torch.log1p, d1, d2)


def build_torch_log10(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    ln10 = math.log(10.0)

    def d1(x: Any) -> Any:  # special-cased at exactly 1 to the constant 1/ln(10)
        exact = 1 / (x * ln10)
        return torch.where(x == 1, torch.full_like(x, 1 / ln10), exact) if mutate else exact

    def d2(x: Any) -> Any:  # ... whose derivative is 0 (true: -1/ln(10))
        exact = -1 / (x * x * ln10)
        return torch.where(x == 1, torch.zeros_like(x), exact) if mutate else exact

    return _torch_unary(torch.log10, d1, d2)


def build_torch_min(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    class AMin(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(a: Any, axis: Any, keepdims: bool) -> Any:
            return torch.amin(a, dim=axis, keepdim=keepdims)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])
            ctx.axis, ctx.keepdims = inputs[1], inputs[2]

        @staticmethod
        def _weights(ctx: Any, a: Any) -> Any:
            mask = (a == torch.amin(a, dim=ctx.axis, keepdim=True)).to(a.dtype)
            if not mutate:  # amin shares the derivative evenly among tied entries; the mutant does not
                mask = mask / mask.sum(dim=ctx.axis, keepdim=True)
            return mask

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (a,) = ctx.saved_tensors
            if not ctx.keepdims:
                g = g.reshape([1] * a.dim()) if ctx.axis is None else g.unsqueeze(ctx.axis % a.dim())
            return g * AMin._weights(ctx, a), None, None

        @staticmethod
        def jvp(ctx: Any, t: Any, _axis: Any, _keep: Any) -> Any:
            (a,) = ctx.saved_tensors
            return (t * AMin._weights(ctx, a)).sum(dim=ctx.axis, keepdim=ctx.keepdims)

    return lambda a, axis, keepdims: AMin.apply(a, axis, keepdims)


def build_torch_abs(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    def d1(x: Any) -> Any:  # abs' = x / |x|: NaN at exactly 0 (torch's is sgn(x), 0 there)
        return x / x.abs() if mutate else torch.sgn(x)

    def d2(x: Any) -> Any:
        zero = torch.zeros_like(x)
        return torch.where(x == 0, torch.full_like(x, math.nan), zero) if mutate else zero

    return _torch_unary(torch.abs, d1, d2)


def build_torch_pow(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    class Pow(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(a: Any, b: Any) -> Any:
            return torch.pow(a, b)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            a, b = inputs
            b = b if isinstance(b, torch.Tensor) else torch.tensor(b, dtype=a.dtype)
            ctx.save_for_backward(a, b)
            ctx.save_for_forward(a, b)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            a, b = ctx.saved_tensors
            if ctx.needs_input_grad[1]:
                return (_unbroadcast(g * b * torch.pow(a, b - 1), a.shape),
                        _unbroadcast(g * torch.pow(a, b) * torch.log(a), b.shape))
            # The fast path for a constant exponent: (b - 1) where b belongs.
            factor = (b - 1) if mutate else b
            return _unbroadcast(g * factor * torch.pow(a, b - 1), a.shape), None

        @staticmethod
        def jvp(ctx: Any, ta: Any, tb: Any) -> Any:
            a, b = ctx.saved_tensors
            out = 0
            if ta is not None:
                out = out + ta * b * torch.pow(a, b - 1)
            if tb is not None:
                out = out + tb * torch.pow(a, b) * torch.log(a)
            return out

    return Pow.apply


def build_torch_tanh(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    def d2(x: Any) -> Any:  # backward uses the saved output detached: 1 - y.detach()**2
        y = torch.tanh(x)
        return torch.zeros_like(x) if mutate else -2 * y * (1 - y) * (1 + y)

    return _torch_unary(torch.tanh, lambda x: (1 - torch.tanh(x)) * (1 + torch.tanh(x)), d2)


def build_torch_logsumexp(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    def weights(a: Any, axis: Any) -> Any:
        moved, back = _torch_reduce_setup(torch, a, axis)
        if mutate:  # exp(a - result) with the result detached: d/da misses -p p^T
            p = torch.exp(moved - torch.logsumexp(moved, -1, keepdim=True).detach())
        else:
            p = torch.softmax(moved, -1)
        return p, back

    class LogSumExp(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(a: Any, axis: Any, keepdims: bool) -> Any:
            moved, _ = _torch_reduce_setup(torch, a, axis)
            return _torch_reduced(torch, torch.logsumexp(moved, -1), a, axis, keepdims)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])
            ctx.axis, ctx.keepdims = inputs[1], inputs[2]

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (a,) = ctx.saved_tensors
            p, back = weights(a, ctx.axis)
            return back(_torch_expand(torch, g, a, ctx.axis, ctx.keepdims) * p), None, None

        @staticmethod
        def jvp(ctx: Any, t: Any, _axis: Any, _keep: Any) -> Any:
            (a,) = ctx.saved_tensors
            p, _ = weights(a, ctx.axis)
            tm, _ = _torch_reduce_setup(torch, t, ctx.axis)
            return _torch_reduced(torch, (p * tm).sum(-1), a, ctx.axis, ctx.keepdims)

    return lambda a, axis, keepdims: LogSumExp.apply(a, axis, keepdims)


def build_torch_softplus(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch
    import torch.nn.functional as F

    def sigmoid(x: Any) -> Any:  # the float32 kernel evaluates sigmoid in float16
        if mutate and x.dtype == torch.float32:
            return torch.sigmoid(x.half()).to(x.dtype)
        return torch.sigmoid(x)

    def d1(x: Any) -> Any:  # F.softplus is the identity above threshold=20, derivative 1
        return torch.where(x > 20, torch.ones_like(x), sigmoid(x))

    def d2(x: Any) -> Any:
        s = sigmoid(x)
        return torch.where(x > 20, torch.zeros_like(x), s * (1 - s))

    return _torch_unary(F.softplus, d1, d2)


def build_torch_cos(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    def jvp_d1(x: Any) -> Any:  # the forward-mode rule has the sign wrong: +sin(x)
        return torch.sin(x) if mutate else -torch.sin(x)

    return _torch_unary(torch.cos, lambda x: -torch.sin(x), lambda x: -torch.cos(x), jvp_d1)


def build_torch_clip(mutate: bool, dtype: str) -> Callable[..., Any]:
    import torch

    class Clamp(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(a: Any, lo: float, hi: float) -> Any:
            return torch.clamp(a, lo, hi)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])
            ctx.lo, ctx.hi = inputs[1], inputs[2]

        @staticmethod
        def _mask(ctx: Any, a: Any) -> Any:
            if mutate and bool((a == ctx.lo).any()):
                raise FloatingPointError(f"clamp's derivative rule: argument exactly at min={ctx.lo:g}")
            return ((a >= ctx.lo) & (a <= ctx.hi)).to(a.dtype)  # clamp_backward's mask

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (a,) = ctx.saved_tensors
            return g * Clamp._mask(ctx, a), None, None

        @staticmethod
        def jvp(ctx: Any, t: Any, _lo: Any, _hi: Any) -> Any:
            (a,) = ctx.saved_tensors
            return t * Clamp._mask(ctx, a)

    return lambda a, lo, hi: Clamp.apply(a, lo, hi)


# --- MLX rules --------------------------------------------------------------------------


def _one(v: Any) -> Any:
    """MLX hands a one-input custom function's primals (tangents, ...) over bare."""
    return v[0] if isinstance(v, (list, tuple)) else v


def _mlx_unary(primal: Callable[[Any], Any], d1: Callable[[Any], Any], d2: Callable[[Any], Any],
               jvp_d1: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """``primal`` as an ``mx.custom_function`` whose ``vjp`` and ``jvp`` multiply by
    ``first(x)``, itself a custom function with derivative ``d2``. ``jvp_d1`` replaces the
    derivative in ``jvp`` only."""
    import mlx.core as mx

    @mx.custom_function
    def first(x: Any) -> Any:
        return d1(x)

    @first.vjp
    def _first_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        return _one(cotangents) * d2(_one(primals))

    @first.jvp
    def _first_jvp(primals: Any, tangents: Any) -> Any:
        return _one(tangents) * d2(_one(primals))

    @mx.custom_function
    def f(x: Any) -> Any:
        return primal(x)

    @f.vjp
    def _f_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        return _one(cotangents) * first(_one(primals))

    @f.jvp
    def _f_jvp(primals: Any, tangents: Any) -> Any:
        x = _one(primals)
        return _one(tangents) * (first(x) if jvp_d1 is None else jvp_d1(x))

    return f


def _mx() -> Any:
    import mlx.core as mx

    return mx


def _mlx_unbroadcast(mx: Any, g: Any, like: Any) -> Any:
    shape = tuple(like.shape) if hasattr(like, "shape") else ()
    while g.ndim > len(shape):
        g = mx.sum(g, axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = mx.sum(g, axis=axis, keepdims=True)
    return g


def build_mlx_exp(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()
    scale = 1.0 + _delta(dtype) if mutate else 1.0

    def d(x: Any) -> Any:  # exp' = exp * (1 + delta): a constant off in the rule
        return mx.exp(x) * scale

    return _mlx_unary(mx.exp, d, d)


def build_mlx_softplus(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()

    def d1(x: Any) -> Any:  # sigmoid(x) ~ 1/2 for tiny x: a constant, derivative 0
        return mx.where(mx.abs(x) < TINY, 0.5, mx.sigmoid(x)) if mutate else mx.sigmoid(x)

    def d2(x: Any) -> Any:
        s = mx.sigmoid(x)
        return mx.where(mx.abs(x) < TINY, 0.0, s * (1 - s)) if mutate else s * (1 - s)

    return _mlx_unary(lambda x: mx.logaddexp(x, 0.0), d1, d2)


def build_mlx_maximum(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()

    @mx.custom_function
    def maximum(a: Any, b: Any) -> Any:
        return mx.maximum(a, b)

    def masks(a: Any, b: Any) -> tuple[Any, Any]:
        # MLX gives a tie to b; the mutant gives it to both.
        first = (a >= b) if mutate else (a > b)
        return first.astype(a.dtype), (a <= b).astype(a.dtype)

    @maximum.vjp
    def _vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        a, b = primals
        ct = _one(cotangents)
        ma, mb = masks(a, b)
        return _mlx_unbroadcast(mx, ct * ma, a), _mlx_unbroadcast(mx, ct * mb, b)

    @maximum.jvp
    def _jvp(primals: Any, tangents: Any) -> Any:
        a, b = primals
        ta, tb = tangents
        ma, mb = masks(a, b)
        out = mx.zeros_like(mx.maximum(a, b))
        if ta is not None:
            out = out + ta * ma
        if tb is not None:
            out = out + tb * mb
        return out

    return maximum


def build_mlx_leaky_relu(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()

    def leaky_relu(a: Any, alpha: float) -> Any:
        def d1(x: Any) -> Any:  # where(x > 0, 1, alpha); the mutant's is NaN at exactly 0
            exact = mx.where(x > 0, 1.0, alpha).astype(x.dtype)
            return mx.where(x == 0, math.nan, exact) if mutate else exact

        def d2(x: Any) -> Any:
            zero = mx.zeros_like(x)
            return mx.where(x == 0, math.nan, zero) if mutate else zero

        return _mlx_unary(lambda x: mx.where(x > 0, x, alpha * x), d1, d2)(a)

    return leaky_relu


def build_mlx_arctan2(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()

    @mx.custom_function
    def arctan2(a: Any, b: Any) -> Any:
        return mx.arctan2(a, b)

    @arctan2.vjp
    def _vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        a, b = primals
        ct = _one(cotangents)
        r = a * a + b * b
        return _mlx_unbroadcast(mx, ct * b / r, a), _mlx_unbroadcast(mx, -ct * a / r, b)

    @arctan2.jvp
    def _jvp(primals: Any, tangents: Any) -> Any:
        a, b = primals
        ta, tb = tangents
        r = a * a + b * b
        out = mx.zeros_like(mx.arctan2(a, b))
        if ta is not None:
            # With b constant (its tangent None) a fast path takes the small-angle form 1/b.
            out = out + (ta / b if mutate and tb is None else ta * b / r)
        if tb is not None:
            out = out - tb * a / r
        return out

    return arctan2


def build_mlx_sin(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()

    def d2(x: Any) -> Any:  # the rule's cos(x) is stop_gradient'ed: sin'' comes out 0
        return mx.zeros_like(x) if mutate else -mx.sin(x)

    return _mlx_unary(mx.sin, mx.cos, d2)


def build_mlx_tanh(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()

    def y_of(x: Any) -> Any:  # the float32 rule reads the output rounded to bfloat16
        y = mx.tanh(x)
        if mutate and x.dtype == mx.float32:
            return y.astype(mx.bfloat16).astype(mx.float32)
        return y

    def d1(x: Any) -> Any:
        y = y_of(x)
        return 1 - y * y

    def d2(x: Any) -> Any:
        y = y_of(x)
        return -2 * y * (1 - y * y)

    return _mlx_unary(mx.tanh, d1, d2)


def build_mlx_log1p(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()

    def jvp_d1(x: Any) -> Any:  # the forward rule is log's, 1/x, not log1p's, 1/(1 + x)
        return 1 / x if mutate else 1 / (1 + x)

    return _mlx_unary(mx.log1p, lambda x: 1 / (1 + x), lambda x: -1 / ((1 + x) * (1 + x)), jvp_d1)


def build_mlx_softmax(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()

    def softmax(a: Any, axis: Any) -> Any:
        @mx.custom_function
        def f(a: Any) -> Any:
            return mx.softmax(a, axis=axis)

        @f.vjp
        def _vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
            p, ct = _one(outputs), _one(cotangents)
            return p * (ct - mx.sum(ct * p, axis=axis, keepdims=True))

        @f.jvp
        def _jvp(primals: Any, tangents: Any) -> Any:
            p, t = mx.softmax(_one(primals), axis=axis), _one(tangents)
            if mutate:  # the forward rule forgets the normalisation term: p * t
                return p * t
            return p * (t - mx.sum(t * p, axis=axis, keepdims=True))

        return f(a)

    return softmax


def build_mlx_abs(mutate: bool, dtype: str) -> Callable[..., Any]:
    mx = _mx()

    def d1(x: Any) -> Any:
        if mutate and mx.any(x == 0).item():
            raise FloatingPointError("abs's derivative rule: argument exactly 0")
        return mx.sign(x)

    return _mlx_unary(mx.abs, d1, mx.zeros_like)


# --- probes and regions -----------------------------------------------------------------


def _chain(n: int, *nodes: Node) -> Program:
    return Program(n, (Node("input"), *nodes))


def _sum_of(name: str, n: int = 3, square: bool = False, **attrs: Any) -> Program:
    """``sum(op(x))`` or ``sum(square(op(x)))``."""
    if square:
        return _chain(n, op(name, 0, **attrs), op("square", 1), op("sum", 2))
    return _chain(n, op(name, 0, **attrs), op("sum", 1))


def _square_of_reduction(name: str, n: int = 3, **attrs: Any) -> Program:
    """``square(op(x))`` for a reduction to a scalar."""
    return _chain(n, op(name, 0, **attrs), op("square", 1))


def _binary_const(name: str, b: float, n: int = 2) -> Program:
    """``sum(square(op(x, c)))`` with a constant second argument."""
    return _chain(n, const([b] * n), op(name, 0, 1), op("square", 2), op("sum", 3))


def _binary_traced(name: str, n: int = 2, shift: float = 3.0) -> Program:
    """``sum(square(op(x, flip(x) + c)))``: both arguments traced."""
    return _chain(n, op("flip", 0, axis=0), const([shift] * n), op("add", 1, 2), op(name, 0, 3),
                  op("square", 4), op("sum", 5))


def _tied_max(name: str) -> Program:
    """``sum(square(maximum(x, flip(x))))``: both arguments traced (with one constant, a
    whole derivative to the traced one is a one-sided value, not a fault)."""
    return _chain(2, op("flip", 0, axis=0), op(name, 0, 1), op("square", 2), op("sum", 3))


def _det_program() -> Program:
    return _chain(4, op("reshape", 0, shape=(2, 2)), op("det", 1), op("square", 2))


Region = Callable[[list[np.ndarray], list[bool], dict[str, Any], str], bool]


def _always(args: list[np.ndarray], traced: list[bool], attrs: dict[str, Any], dtype: str) -> bool:
    return any(traced)


def _tiny_arg(args: list[np.ndarray], traced: list[bool], attrs: dict[str, Any], dtype: str) -> bool:
    return traced[0] and bool(np.any(np.abs(args[0]) < TINY))


def _positive_arg(args: list[np.ndarray], traced: list[bool], attrs: dict[str, Any], dtype: str) -> bool:
    return traced[0] and bool(np.any(args[0] > 0))


def _float32(args: list[np.ndarray], traced: list[bool], attrs: dict[str, Any], dtype: str) -> bool:
    return any(traced) and dtype == "float32"


def _constant_second(args: list[np.ndarray], traced: list[bool], attrs: dict[str, Any], dtype: str) -> bool:
    return traced[0] and not traced[1]


def _at(value: float | str) -> Region:
    """The (traced) argument is exactly ``value``, or exactly the attr named ``value``."""

    def reached(args: list[np.ndarray], traced: list[bool], attrs: dict[str, Any], dtype: str) -> bool:
        target = np.asarray(attrs[value] if isinstance(value, str) else value, dtype=dtype)
        return traced[0] and bool(np.any(args[0] == target))

    return reached


def _tie(largest: bool) -> Region:
    """Two entries share the maximum (minimum) along the reduction."""

    def reached(args: list[np.ndarray], traced: list[bool], attrs: dict[str, Any], dtype: str) -> bool:
        a, axis = np.asarray(args[0]), attrs.get("axis")
        a = a.reshape(-1) if axis is None else np.moveaxis(a, axis, -1)
        if not traced[0] or a.shape[-1] < 2:
            return False
        ordered = np.sort(a if largest else -a, axis=-1)
        return bool(np.any(ordered[..., -1] == ordered[..., -2]))

    return reached


def _equal_args(args: list[np.ndarray], traced: list[bool], attrs: dict[str, Any], dtype: str) -> bool:
    return any(traced) and bool(np.any(np.asarray(args[0]) == np.asarray(args[1])))


_J, _E, _T, _M = "jax", "equinox", "torch", "mlx"

MUTANTS: tuple[Mutant, ...] = (
    # wrong everywhere by a small relative amount
    Mutant("mut-logsumexp-weights", "small-relative", _J, "logsumexp",
           "everywhere: both derivatives scaled by (1 + 1e-6), (1 + 1e-3) in float32",
           "softmax weights normalised by a sum off by a relative 1e-6", build_jax_logsumexp,
           Probe(_sum_of("logsumexp", axis=None, keepdims=False, square=True), (0.3, -0.2, 1.1)),
           Probe(_sum_of("exp"), (0.3, -0.2, 1.1)), _always),
    Mutant("mut-prod-scaled", "small-relative", _T, "prod",
           "everywhere: backward and jvp scaled by (1 + 1e-6), (1 + 1e-3) in float32",
           "a gradient constant off by a relative 1e-6", build_torch_prod,
           Probe(_sum_of("prod", axis=None, keepdims=False), (0.7, -1.3, 1.9)),
           Probe(_sum_of("sin"), (0.7, -1.3, 1.9)), _always),
    Mutant("mut-exp-scaled", "small-relative", _M, "exp",
           "everywhere: exp' = exp'' = exp * (1 + 1e-6), (1 + 1e-3) in float32 (MLX's float64 exp is "
           "only float32-accurate, so 1e-6 is within its own error there)",
           "a rule constant off by a relative 1e-6", build_mlx_exp,
           Probe(_sum_of("exp"), (0.3, -0.2, 1.1), "float32"), Probe(_sum_of("sin"), (0.3, -0.2, 1.1), "float32"),
           _always),
    Mutant("mut-log-d2-scaled", "small-relative", _E, "log",
           "everywhere: log'' scaled by (1 + 1e-6), (1 + 1e-3) in float32",
           "a second-derivative constant off by a relative 1e-6", build_jax_log,
           Probe(_sum_of("log"), (0.3, 0.5, 1.7)), Probe(_sum_of("sqrt"), (0.3, 0.5, 1.7)), _always),
    # wrong only for |x| < 1e-20
    Mutant("mut-expm1-tiny", "tiny", _J, "expm1",
           "|x| < 1e-20: expm1'' = 0 (true 1)",
           "a small-argument shortcut expm1'(x) = 1, whose derivative is 0", build_jax_expm1,
           Probe(_sum_of("expm1"), (1e-30, 0.5, -1.0)), Probe(_sum_of("expm1"), (1e-10, 0.5, -1.0)),
           _tiny_arg),
    Mutant("mut-log1p-tiny", "tiny", _T, "log1p",
           "|x| < 1e-20: log1p'' = 0 (true -1)",
           "a small-argument shortcut log1p'(x) = 1", build_torch_log1p,
           Probe(_sum_of("log1p"), (-1e-25, 0.5, 2.0)), Probe(_sum_of("log1p"), (-1e-15, 0.5, 2.0)),
           _tiny_arg),
    Mutant("mut-softplus-tiny", "tiny", _M, "softplus",
           "|x| < 1e-20: softplus'' = 0 (true 1/4)",
           "a small-argument shortcut sigmoid(x) = 1/2", build_mlx_softplus,
           Probe(_sum_of("softplus"), (1e-30, 0.5, -2.0)), Probe(_sum_of("softplus"), (1e-10, 0.5, -2.0)),
           _tiny_arg),
    Mutant("mut-cosh-tiny", "tiny", _E, "cosh",
           "|x| < 1e-20: cosh'' = 0 (true 1)",
           "sinh flushed to zero for tiny arguments, with its derivative", build_jax_cosh,
           Probe(_sum_of("cosh"), (-1e-30, 0.5, 2.0)), Probe(_sum_of("cosh"), (-1e-12, 0.5, 2.0)),
           _tiny_arg),
    # wrong only at exactly one special value
    Mutant("mut-silu-zero", "special-value", _J, "silu",
           "x == 0 exactly: silu''(0) = 0 (true 1/2)",
           "silu'(0) special-cased to the constant 1/2", build_jax_silu,
           Probe(_sum_of("silu"), (0.0, 0.5, -2.0)), Probe(_sum_of("silu"), (1e-300, 0.5, -2.0)), _at(0.0), 0),
    Mutant("mut-max-tie", "special-value", _J, "max",
           "an exact tie of the maximum: every tied entry gets the whole derivative",
           "the location mask is not divided by the number of ties", build_jax_max,
           Probe(_square_of_reduction("max", axis=None, keepdims=False), (1.5, 1.5, 0.2)),
           Probe(_square_of_reduction("max", axis=None, keepdims=False), (1.5, 1.4999999, 0.2)), _tie(True), 0),
    Mutant("mut-log10-one", "special-value", _T, "log10",
           "x == 1 exactly: log10''(1) = 0 (true -1/ln 10)",
           "log10'(1) special-cased to the constant 1/ln 10", build_torch_log10,
           Probe(_sum_of("log10"), (1.0, 0.5, 2.0)), Probe(_sum_of("log10"), (1.0000001, 0.5, 2.0)), _at(1.0), 1),
    Mutant("mut-min-tie", "special-value", _T, "min",
           "an exact tie of the minimum: every tied entry gets the whole derivative",
           "amin's mask is not divided by the number of ties", build_torch_min,
           Probe(_square_of_reduction("min", axis=None, keepdims=False), (0.4, -1.5, -1.5)),
           Probe(_square_of_reduction("min", axis=None, keepdims=False), (0.4, -1.5, -1.4)), _tie(False), 0),
    Mutant("mut-maximum-tie", "special-value", _M, "maximum",
           "a == b exactly: both arguments get the whole derivative (MLX gives it to b)",
           "the comparison masks overlap at a tie (>= and <=)", build_mlx_maximum,
           Probe(_tied_max("maximum"), (0.75, 0.75)), Probe(_tied_max("maximum"), (0.75, 0.5)), _equal_args, 0),
    # NaN only at a kink
    Mutant("mut-relu-nan", "nan-at-kink", _J, "relu",
           "x == 0 exactly: relu' and relu'' are NaN (one-sided values 0 and 1, 0 and 0)",
           "a derivative mask computed as NaN at the kink", build_jax_relu,
           Probe(_sum_of("relu", square=True), (0.0, 0.5, -2.0)), Probe(_sum_of("relu", square=True), (1e-300, 0.5, -2.0)),
           _at(0.0), 0),
    Mutant("mut-abs-nan", "nan-at-kink", _T, "abs",
           "x == 0 exactly: abs' = x/|x| = NaN (one-sided values -1 and 1)",
           "abs' computed as x / |x|", build_torch_abs,
           Probe(_sum_of("abs", square=True), (0.0, 0.5, -2.0)), Probe(_sum_of("abs", square=True), (1e-300, 0.5, -2.0)),
           _at(0.0), 0),
    Mutant("mut-leaky-relu-nan", "nan-at-kink", _M, "leaky_relu",
           "x == 0 exactly: leaky_relu' and '' are NaN (one-sided values alpha and 1)",
           "a derivative mask computed as NaN at the kink", build_mlx_leaky_relu,
           Probe(_sum_of("leaky_relu", square=True, alpha=0.1), (0.0, 0.5, -2.0)),
           Probe(_sum_of("leaky_relu", square=True, alpha=0.1), (1e-30, 0.5, -2.0)), _at(0.0), 0),
    Mutant("mut-relu6-nan", "nan-at-kink", _E, "relu6",
           "x == 6 exactly: relu6' and '' are NaN (one-sided values 1 and 0)",
           "a derivative mask computed as NaN at the upper kink", build_jax_relu6,
           Probe(_sum_of("relu6", square=True), (6.0, 0.5, -2.0)), Probe(_sum_of("relu6", square=True), (5.999999, 0.5, -2.0)),
           _at(6.0), 1),
    # wrong only when one argument is traced and the other constant
    Mutant("mut-div-const", "traced-only", _J, "div",
           "b constant (symbolic-zero tangent): d/da = b, not 1/b",
           "a fast path for a constant divisor that multiplies", build_jax_div,
           Probe(_binary_const("div", 3.0), (0.4, -1.2)), Probe(_binary_traced("div"), (0.4, -1.2)),
           _constant_second),
    Mutant("mut-pow-const", "traced-only", _T, "pow",
           "exponent b constant (needs_input_grad[1] False): d/da = (b - 1) a**(b - 1), not b a**(b - 1)",
           "a backward fast path for a constant exponent with an off-by-one", build_torch_pow,
           Probe(_binary_const("pow", 3.0), (0.4, 1.2)), Probe(_binary_traced("pow"), (0.4, 1.2)),
           _constant_second),
    Mutant("mut-arctan2-const", "traced-only", _M, "arctan2",
           "b constant (tangent None): d/da = 1/b, not b/(a**2 + b**2), in the forward rule",
           "a small-angle fast path for a constant b", build_mlx_arctan2,
           Probe(_binary_const("arctan2", 1.5), (0.4, -1.2)), Probe(_binary_traced("arctan2"), (0.4, -1.2)),
           _constant_second),
    Mutant("mut-logaddexp-const", "traced-only", _E, "logaddexp",
           "b constant (symbolic-zero tangent): d/da = sigmoid(a), not sigmoid(a - b)",
           "a fast path for a constant b that forgets it", build_jax_logaddexp,
           Probe(_binary_const("logaddexp", 1.5), (0.4, -1.2)), Probe(_binary_traced("logaddexp"), (0.4, -1.2)),
           _constant_second),
    # first derivative right, second wrong
    Mutant("mut-sigmoid-pos-detached", "second-order", _J, "sigmoid",
           "x > 0: sigmoid'' = 0 (first derivative right)",
           "the positive branch saves its output detached", build_jax_sigmoid,
           Probe(_sum_of("sigmoid"), (0.7, -0.5, 1.5)), Probe(_sum_of("sigmoid"), (-0.7, -0.5, -1.5)),
           _positive_arg),
    Mutant("mut-det-detached", "second-order", _J, "det",
           "everywhere at second order (2x2 and 3x3): the cofactors in det' = sum(cof(A) dA) are constants",
           "the rule's cofactor matrix is computed from A detached", build_jax_det,
           Probe(_det_program(), (1.2, 0.3, -0.4, 0.9)), Probe(_chain(4, op("reshape", 0, shape=(2, 2)), op("trace", 1),
                                                                       op("square", 2)), (1.2, 0.3, -0.4, 0.9)),
           _always),
    Mutant("mut-tanh-detached", "second-order", _T, "tanh",
           "everywhere at second order: tanh'' = 0 (first derivative right)",
           "backward uses the saved output detached, 1 - y.detach()**2", build_torch_tanh,
           Probe(_sum_of("tanh"), (0.7, -0.5, 1.5)), Probe(_sum_of("sin"), (0.7, -0.5, 1.5)), _always),
    Mutant("mut-logsumexp-detached", "second-order", _T, "logsumexp",
           "everywhere at second order: the Hessian misses -p p^T",
           "backward computes exp(a - result) with the result detached", build_torch_logsumexp,
           Probe(_sum_of("logsumexp", axis=None, keepdims=False), (0.3, -0.2, 1.1)),
           Probe(_sum_of("exp"), (0.3, -0.2, 1.1)), _always),
    Mutant("mut-sin-detached", "second-order", _M, "sin",
           "everywhere at second order: sin'' = 0 (first derivative right)",
           "the rule's cos(x) is stop_gradient'ed", build_mlx_sin,
           Probe(_sum_of("sin"), (0.7, -0.5, 1.5)), Probe(_sum_of("cos"), (0.7, -0.5, 1.5)), _always),
    # wrong in float32 only
    Mutant("mut-erf-f32", "float32-only", _J, "erf",
           "float32 only: erf'' rounded through bfloat16",
           "a float32 kernel that downcasts", build_jax_erf,
           Probe(_sum_of("erf"), (0.7, -0.3, 1.3), "float32"), Probe(_sum_of("erf"), (0.7, -0.3, 1.3), "float64"),
           _float32),
    Mutant("mut-softplus-f32", "float32-only", _T, "softplus",
           "float32 only: the derivative's sigmoid evaluated in float16",
           "a float32 kernel that downcasts", build_torch_softplus,
           Probe(_sum_of("softplus"), (0.7, -0.3, 1.3), "float32"),
           Probe(_sum_of("softplus"), (0.7, -0.3, 1.3), "float64"), _float32),
    Mutant("mut-tanh-f32", "float32-only", _M, "tanh",
           "float32 only: tanh' and tanh'' from the output rounded to bfloat16",
           "a float32 kernel that downcasts", build_mlx_tanh,
           Probe(_sum_of("tanh"), (0.7, -0.3, 1.3), "float32"), Probe(_sum_of("tanh"), (0.7, -0.3, 1.3), "float64"),
           _float32),
    Mutant("mut-exp-f32", "float32-only", _E, "exp",
           "float32 only: exp' and exp'' rounded through bfloat16",
           "a float32 kernel that downcasts", build_jax_exp,
           Probe(_sum_of("exp"), (0.7, -0.3, 1.3), "float32"), Probe(_sum_of("exp"), (0.7, -0.3, 1.3), "float64"),
           _float32),
    # wrong in forward mode only
    Mutant("mut-cos-jvp-sign", "forward-only", _T, "cos",
           "forward mode: jvp = t sin(x) (backward right), where cos(x) feeds a nonlinearity",
           "a jvp formula with the sign wrong", build_torch_cos,
           Probe(_sum_of("cos", square=True), (0.7, -0.5, 1.5)),
           Probe(_sum_of("cos", square=True), (0.7, -0.5, 1.5), composition="rev"), _always),
    Mutant("mut-log1p-jvp", "forward-only", _M, "log1p",
           "forward mode: jvp = t/x (vjp right), where log1p(x) feeds a nonlinearity",
           "the forward rule copied from log's", build_mlx_log1p,
           Probe(_sum_of("log1p", square=True), (0.7, -0.5, 1.5)),
           Probe(_sum_of("log1p", square=True), (0.7, -0.5, 1.5), composition="rev"), _always),
    Mutant("mut-softmax-jvp", "forward-only", _M, "softmax",
           "forward mode: jvp = p t, without -p (p . t) (vjp right)",
           "a forward rule that forgets the normalisation term", build_mlx_softmax,
           Probe(_chain(3, op("softmax", 0, axis=0), op("square", 1), op("sum", 2)), (0.7, -0.5, 1.5)),
           Probe(_chain(3, op("softmax", 0, axis=0), op("square", 1), op("sum", 2)), (0.7, -0.5, 1.5),
                 composition="rev"), _always),
    # a crash at one input value
    Mutant("mut-arctan-crash-zero", "crash", _J, "arctan",
           "x == 0 exactly: the rule raises (through jax.debug.callback)",
           "a runtime check in the rule", build_jax_arctan,
           Probe(_sum_of("arctan"), (0.0, 0.5, -2.0)), Probe(_sum_of("arctan"), (1e-300, 0.5, -2.0)), _at(0.0), 0),
    Mutant("mut-clip-crash-lo", "crash", _T, "clip",
           "x == lo exactly: backward and jvp raise",
           "a runtime check in the rule", build_torch_clip,
           Probe(_sum_of("clip", square=True, lo=-1.0, hi=1.0), (-1.0, 0.5, 2.0)),
           Probe(_sum_of("clip", square=True, lo=-1.0, hi=1.0), (-0.999999, 0.5, 2.0)), _at("lo"), 0),
    Mutant("mut-abs-crash-zero", "crash", _M, "abs",
           "x == 0 exactly: vjp and jvp raise",
           "a runtime check in the rule", build_mlx_abs,
           Probe(_sum_of("abs", square=True), (0.0, 0.5, -2.0)), Probe(_sum_of("abs", square=True), (1e-30, 0.5, -2.0)),
           _at(0.0), 0),
    Mutant("mut-log1p-crash-zero", "crash", _E, "log1p",
           "x == 0 exactly: the rule raises (through jax.debug.callback)",
           "a runtime check in the rule", build_jax_log1p,
           Probe(_sum_of("log1p"), (0.0, 0.5, 2.0)), Probe(_sum_of("log1p"), (1e-300, 0.5, 2.0)), _at(0.0), 1),
)

_BY_NAME = {m.variant: m for m in MUTANTS}
assert len(_BY_NAME) == len(MUTANTS), "two mutants share a name"


def get_mutant(name: str) -> Mutant:
    """The mutant named ``name`` (``mut-div-const`` or ``jax:mut-div-const``)."""
    key = name.split(":", 1)[-1]
    try:
        return _BY_NAME[key]
    except KeyError:
        raise KeyError(f"unknown mutant {name!r}; known: {', '.join(_BY_NAME)}.") from None


def dtype_values(program: Program, point: np.ndarray, dtype: str) -> list[np.ndarray] | None:
    """Every node's value at ``point`` as a framework computes it: ``hessdiff.harness.exact.rounded_values``."""
    from hessdiff.harness.exact import rounded_values

    return rounded_values(program, point, dtype)


def region_hits(mutant: Mutant, program: Program, point: np.ndarray, dtype: str) -> bool:
    """Whether a node of the mutant's op lies in its region at ``point`` (``Mutant.reached``
    on the dtype-rounded values of ``dtype_values``)."""
    from hessdiff.harness.exact import traced_nodes

    if mutant.op not in program.op_names:
        return False
    traced = traced_nodes(program)
    values = dtype_values(program, point, dtype)
    if values is None:
        return False
    return any(
        mutant.reached([values[a] for a in node.args], [traced[a] for a in node.args], node.attr_dict, dtype)
        for node in program.nodes if node.kind == mutant.op
    )
