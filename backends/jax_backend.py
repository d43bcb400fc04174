"""JAX: ``jax.hessian`` (forward-over-reverse) and the other compositions of jacfwd/jacrev.

float64 is enabled only inside each call, with JAX's own context manager, never by
flipping the global flag at import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, final

import numpy as np

from hessdiff.backends.base import Backend, Variant
from hessdiff.backends.lowering import Absent, Lowering, Namespace, flags
from hessdiff.backends.registry import register

__all__ = ["JAX_LOWERINGS", "JaxBackend", "jax_precision"]


JAX_LOWERINGS: dict[str, Lowering | Absent] = {
    "const": lambda m, value, integer=False: m.jnp.asarray(
        value, dtype=(m.jnp.int64 if integer == "int64" else m.jnp.int32) if integer else m.dtype),
    # a bool mask from the Python bools a user writes: jnp.asarray([True, False])
    "mask": lambda m, flags: m.jnp.asarray(flags),
    "neg": lambda m, a: -a,
    "square": lambda m, a: m.jnp.square(a),
    "powi": lambda m, a, p: a**p,
    "sin": lambda m, a: m.jnp.sin(a),
    "cos": lambda m, a: m.jnp.cos(a),
    "tanh": lambda m, a: m.jnp.tanh(a),
    "exp": lambda m, a: m.jnp.exp(a),
    "log": lambda m, a: m.jnp.log(a),
    "sigmoid": lambda m, a: m.jax.nn.sigmoid(a),
    "softplus": lambda m, a: m.jax.nn.softplus(a),
    "add": lambda m, a, b: a + b,
    "sub": lambda m, a, b: a - b,
    "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b,
    "relu": lambda m, a: m.jax.nn.relu(a),
    "abs": lambda m, a: m.jnp.abs(a),
    "leaky_relu": lambda m, a, alpha: m.jax.nn.leaky_relu(a, negative_slope=alpha),
    "clip": lambda m, a, lo, hi: m.jnp.clip(a, lo, hi),
    "maximum": lambda m, a, b: m.jnp.maximum(a, b),
    "minimum": lambda m, a, b: m.jnp.minimum(a, b),
    # a float condition is c > 0; a bool mask (``mask``: a framework bool array) as it is
    "where": lambda m, c, a, b, mask=False: m.jnp.where(c if mask else c > 0, a, b),
    # sum and mean print as before unless given an axis or keepdims.
    "sum": lambda m, a, axis=None, keepdims=False: (
        m.jnp.sum(a) if axis is None and not keepdims else m.jnp.sum(a, axis=axis, keepdims=keepdims)
    ),
    "mean": lambda m, a, axis=None, keepdims=False: (
        m.jnp.mean(a) if axis is None and not keepdims else m.jnp.mean(a, axis=axis, keepdims=keepdims)
    ),
    "gather": lambda m, a, idx: a[m.jnp.asarray(idx)],
    "matmul": lambda m, a, b: m.jnp.matmul(a, b),
    # Unary and special functions.
    "sqrt": lambda m, a: m.jnp.sqrt(a),
    "rsqrt": lambda m, a: m.jax.lax.rsqrt(a),
    "reciprocal": lambda m, a: m.jnp.reciprocal(a),
    "exp2": lambda m, a: m.jnp.exp2(a),
    "expm1": lambda m, a: m.jnp.expm1(a),
    "log2": lambda m, a: m.jnp.log2(a),
    "log10": lambda m, a: m.jnp.log10(a),
    "log1p": lambda m, a: m.jnp.log1p(a),
    "tan": lambda m, a: m.jnp.tan(a),
    "arcsin": lambda m, a: m.jnp.arcsin(a),
    "arccos": lambda m, a: m.jnp.arccos(a),
    "arctan": lambda m, a: m.jnp.arctan(a),
    "sinh": lambda m, a: m.jnp.sinh(a),
    "cosh": lambda m, a: m.jnp.cosh(a),
    "arcsinh": lambda m, a: m.jnp.arcsinh(a),
    "arccosh": lambda m, a: m.jnp.arccosh(a),
    "arctanh": lambda m, a: m.jnp.arctanh(a),
    "erf": lambda m, a: m.jax.scipy.special.erf(a),
    "erfc": lambda m, a: m.jax.scipy.special.erfc(a),
    "erfinv": lambda m, a: m.jax.scipy.special.erfinv(a),
    "lgamma": lambda m, a: m.jax.scipy.special.gammaln(a),
    "digamma": lambda m, a: m.jax.scipy.special.digamma(a),
    "i0": lambda m, a: m.jax.scipy.special.i0(a),
    "i1": lambda m, a: m.jax.scipy.special.i1(a),
    "sign": lambda m, a: m.jnp.sign(a),
    "floor": lambda m, a: m.jnp.floor(a),
    "ceil": lambda m, a: m.jnp.ceil(a),
    "round": lambda m, a: m.jnp.round(a),
    # Activations.
    "relu6": lambda m, a: m.jax.nn.relu6(a),
    "elu": lambda m, a, alpha: m.jax.nn.elu(a, alpha=alpha),
    "selu": lambda m, a: m.jax.nn.selu(a),
    "celu": lambda m, a, alpha: m.jax.nn.celu(a, alpha=alpha),
    "gelu": lambda m, a: m.jax.nn.gelu(a, approximate=False),
    "gelu_tanh": lambda m, a: m.jax.nn.gelu(a, approximate=True),
    "silu": lambda m, a: m.jax.nn.silu(a),
    "mish": lambda m, a: m.jax.nn.mish(a),
    "softsign": lambda m, a: m.jax.nn.soft_sign(a),
    "log_sigmoid": lambda m, a: m.jax.nn.log_sigmoid(a),
    "hard_tanh": lambda m, a: m.jax.nn.hard_tanh(a),
    "hard_sigmoid": lambda m, a: m.jax.nn.hard_sigmoid(a),
    # Binary.
    "pow": lambda m, a, b: m.jnp.power(a, b),
    "arctan2": lambda m, a, b: m.jnp.arctan2(a, b),
    "hypot": lambda m, a, b: m.jnp.hypot(a, b),
    "logaddexp": lambda m, a, b: m.jnp.logaddexp(a, b),
    "xlogy": lambda m, a, b: m.jax.scipy.special.xlogy(a, b),
    "remainder": lambda m, a, b: m.jnp.remainder(a, b),
    "copysign": lambda m, a, b: m.jnp.copysign(a, b),
    "ldexp": lambda m, a, k: m.jnp.ldexp(a, k),
    # Reductions.
    "prod": lambda m, a, axis, keepdims: m.jnp.prod(a, axis=axis, keepdims=keepdims),
    "logsumexp": lambda m, a, axis, keepdims: m.jax.scipy.special.logsumexp(a, axis=axis, keepdims=keepdims),
    "var": lambda m, a, axis, keepdims: m.jnp.var(a, axis=axis, keepdims=keepdims),
    "std": lambda m, a, axis, keepdims: m.jnp.std(a, axis=axis, keepdims=keepdims),
    "norm": lambda m, a, axis, keepdims, ord=2: (
        m.jnp.linalg.norm(a, axis=axis, keepdims=keepdims) if ord == 2
        else m.jnp.linalg.vector_norm(a, ord=float("inf") if ord == "inf" else ord, axis=axis, keepdims=keepdims)
    ),
    "max": lambda m, a, axis, keepdims: m.jnp.max(a, axis=axis, keepdims=keepdims),
    "min": lambda m, a, axis, keepdims: m.jnp.min(a, axis=axis, keepdims=keepdims),
    "sort": lambda m, a: m.jnp.sort(a, axis=-1),
    "sum_where": lambda m, a, mask, axis=None, keepdims=False: m.jnp.sum(
        a, axis=axis, keepdims=keepdims, where=m.jnp.asarray(flags(mask)).reshape(a.shape)
    ),
    "mean_where": lambda m, a, mask, axis=None, keepdims=False: m.jnp.mean(
        a, axis=axis, keepdims=keepdims, where=m.jnp.asarray(flags(mask)).reshape(a.shape)
    ),
    "cumsum": lambda m, a, axis: m.jnp.cumsum(a, axis=axis),
    "cumprod": lambda m, a, axis: m.jnp.cumprod(a, axis=axis),
    "softmax": lambda m, a, axis: m.jax.nn.softmax(a, axis=axis),
    "log_softmax": lambda m, a, axis: m.jax.nn.log_softmax(a, axis=axis),
    # Linear algebra.
    "dot": lambda m, a, b: m.jnp.dot(a, b),
    "outer": lambda m, a, b: m.jnp.outer(a, b),
    "trace": lambda m, a: m.jnp.trace(a),
    "diagonal": lambda m, a: m.jnp.diagonal(a),
    "det": lambda m, a: m.jnp.linalg.det(a),
    "inv": lambda m, a: m.jnp.linalg.inv(a),
    "solve": lambda m, a, b: m.jnp.linalg.solve(a, b),
    "cholesky": lambda m, a: m.jnp.linalg.cholesky(a),
    # Shape and data movement.
    "reshape": lambda m, a, shape: m.jnp.reshape(a, shape),
    "transpose": lambda m, a: m.jnp.transpose(a),
    "flip": lambda m, a, axis: m.jnp.flip(a, axis=axis),
    "slice": lambda m, a, start, stop, step: a[start:stop:step],
    "roll": lambda m, a, shift, axis: m.jnp.roll(a, shift, axis=axis),
    "tile": lambda m, a, reps: m.jnp.tile(a, reps),
    "repeat": lambda m, a, repeats: m.jnp.repeat(a, repeats),
    "pad": lambda m, a, before, after: m.jnp.pad(a, (before, after)),
    "broadcast_to": lambda m, a, shape: m.jnp.broadcast_to(a, shape),
    "concatenate": lambda m, a, b: m.jnp.concatenate([a, b]),
    "stack": lambda m, a, b: m.jnp.stack([a, b]),
}


def jax_precision(dtype: str) -> contextlib.AbstractContextManager[Any]:
    """Enable float64 for the duration of one call, with whichever API this JAX has."""
    import jax

    enable = dtype == "float64"
    if hasattr(jax, "enable_x64"):  # jax >= 0.6
        return jax.enable_x64(enable)
    from jax.experimental import disable_x64, enable_x64  # jax 0.4.x

    return enable_x64() if enable else disable_x64()


# The screens of the eager variants (``Backend.batched_eager``) compile with LLVM's
# optimisations off: XLA's HLO passes (fusion, simplification) still run, so the derivative
# rules and the fused graph are the same; what is skipped is vectorisation and the like,
# which an op-by-op (eager) run never gets across ops either. Measured on benchmarks/run.py's
# seed 5, 25 programs, jit(vmap(jax.hessian(f))) at 32 points: 11.7 s -> 8.6 s and 17.2 s ->
# 12.1 s of compiling, the Hessians equal to 4.6e-12 relative (rounding). What an eager
# variant reports is confirmed eagerly (``hessdiff.harness.batch``), and the compiled variants
# compile as a user's jit does.
SCREEN_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
_screen_options_work = True  # False once this JAX or XLA has refused them


def screen_jit(jax: Any, fn: Any) -> Any:
    """``jax.jit(fn)`` compiled with ``SCREEN_COMPILER_OPTIONS`` where this JAX takes them
    (an older ``jit`` has no ``compiler_options``; an XLA may not know the option), else
    the plain ``jax.jit(fn)``."""

    def target(*args: Any) -> Any:  # a plain function: jit hashes it (an Equinox wrapper may not hash)
        return fn(*args)

    plain = jax.jit(target)
    if not _screen_options_work:
        return plain
    try:
        fast = jax.jit(target, compiler_options=SCREEN_COMPILER_OPTIONS)
    except TypeError:  # an older jit without compiler_options
        return plain

    def call(*args: Any) -> Any:
        global _screen_options_work
        if not _screen_options_work:
            return plain(*args)
        try:
            return fast(*args)
        except Exception as exc:
            if not any(name in str(exc) for name in SCREEN_COMPILER_OPTIONS):
                raise
            _screen_options_work = False  # this XLA has no such option: compile as the default
            return plain(*args)

    return call


def jax_namespace(dtype: str) -> Namespace:
    import jax
    import jax.numpy as jnp

    return Namespace(jax=jax, jnp=jnp, dtype=getattr(jnp, dtype))


def jax_source_names(dtype: str) -> Mapping[str, str]:
    return {"jax": "jax", "jnp": "jnp", "dtype": f"jnp.{dtype}"}


def jax_source_setup(dtype: str) -> str:
    return 'jax.config.update("jax_enable_x64", True)' if dtype == "float64" else ""


# What a variant without ``jit`` in its composition does with a batch of points (see
# ``JaxBackend.variants``).
SCREENED = "screened under jit(vmap), a failure re-run eagerly"


@final
class JaxBackend(Backend):
    name = "jax"
    framework = "jax"
    distribution = "jax"
    extra = "jax"
    modules = ("jax", "jax.numpy")
    # All batchable: a batch of points is one compiled call (``batched``); eager JAX
    # compiles every primitive for every new shape anyway, which costs several times one
    # jit of the whole program (benchmarks/jax_floor.py, 100 programs, quiet machine: 14.7
    # XLA compilations of one primitive each for a new program, 651 ms on average, against
    # 135 ms for its jit at the screens' options). So the
    # variants without ``jit`` in their composition are screened compiled at XLA's
    # optimisation level 0 (``batched_eager``) and only a failing point runs op by op, as
    # their descriptions say: none of them checks every program eagerly.
    variants = {
        "fwdrev": Variant(f"jax.hessian(f): jacfwd(jacrev(f)), {SCREENED}",
                          lambda m, f: m.jax.hessian(f),
                          batchable=True, modes="fwd-over-rev"),
        "revrev": Variant(f"jacrev(jacrev(f)), {SCREENED}",
                          lambda m, f: m.jax.jacrev(m.jax.jacrev(f)),
                          batchable=True, modes="rev-over-rev"),
        "fwdfwd": Variant(f"jacfwd(jacfwd(f)), {SCREENED}",
                          lambda m, f: m.jax.jacfwd(m.jax.jacfwd(f)),
                          batchable=True, modes="fwd-over-fwd"),
        "revfwd": Variant(f"jacrev(jacfwd(f)), {SCREENED}",
                          lambda m, f: m.jax.jacrev(m.jax.jacfwd(f)),
                          batchable=True, modes="rev-over-fwd"),
        "jit": Variant("jax.jit(jax.hessian(f)), compiled", lambda m, f: m.jax.jit(m.jax.hessian(f)),
                       compiled=True, batchable=True, modes="fwd-over-rev"),
    }
    gradient = staticmethod(lambda m, f: m.jax.grad(f))
    lowerings = JAX_LOWERINGS
    source_imports = "import jax\nimport jax.numpy as jnp"

    def namespace(self, dtype: str) -> Namespace:
        return jax_namespace(dtype)

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return jax_source_names(dtype)

    def precision(self, dtype: str) -> contextlib.AbstractContextManager[Any]:
        return jax_precision(dtype)

    def source_setup(self, dtype: str) -> str:
        return jax_source_setup(dtype)

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def environment_report(self) -> str:
        import jax

        return str(jax.print_environment_info(return_string=True))

    def batched(self, m: Any, hessian: Any) -> Any:
        return m.jax.jit(m.jax.vmap(hessian))

    def batched_eager(self, m: Any, hessian: Any) -> Any:
        return screen_jit(m.jax, m.jax.vmap(hessian))

    def probes(self) -> Mapping[str, Variant]:
        """The relations' probes: ``hessdiff.backends.scenarios.jax_probes``."""
        from hessdiff.backends.scenarios.jax_probes import PROBES

        return PROBES


register(JaxBackend())
