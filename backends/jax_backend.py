"""JAX: ``jax.hessian`` (forward-over-reverse) and the other compositions of jacfwd/jacrev.

float64 is enabled only inside each call, with JAX's own context manager, never by
flipping the global flag at import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, final

import numpy as np

from backends.base import Backend, Variant
from backends.lowering import Absent, Lowering, Namespace
from backends.registry import register

__all__ = ["JAX_LOWERINGS", "JaxBackend", "jax_precision"]


JAX_LOWERINGS: dict[str, Lowering | Absent] = {
    "const": lambda m, value: m.jnp.asarray(value, dtype=m.dtype),
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
    "where": lambda m, c, a, b: m.jnp.where(c > 0, a, b),
    "sum": lambda m, a: m.jnp.sum(a),
    "mean": lambda m, a: m.jnp.mean(a),
    "gather": lambda m, a, idx: a[m.jnp.asarray(idx)],
    "matmul": lambda m, a, b: m.jnp.matmul(a, b),
}


def jax_precision(dtype: str) -> contextlib.AbstractContextManager[Any]:
    """Enable float64 for the duration of one call, with whichever API this JAX has."""
    import jax

    enable = dtype == "float64"
    if hasattr(jax, "enable_x64"):  # jax >= 0.6
        return jax.enable_x64(enable)
    from jax.experimental import disable_x64, enable_x64  # jax 0.4.x

    return enable_x64() if enable else disable_x64()


def jax_namespace(dtype: str) -> Namespace:
    import jax
    import jax.numpy as jnp

    return Namespace(jax=jax, jnp=jnp, dtype=getattr(jnp, dtype))


def jax_source_names(dtype: str) -> Mapping[str, str]:
    return {"jax": "jax", "jnp": "jnp", "dtype": f"jnp.{dtype}"}


def jax_source_setup(dtype: str) -> str:
    return 'jax.config.update("jax_enable_x64", True)' if dtype == "float64" else ""


@final
class JaxBackend(Backend):
    name = "jax"
    distribution = "jax"
    extra = "jax"
    modules = ("jax", "jax.numpy")
    variants = {
        "fwdrev": Variant("jax.hessian(f): jacfwd(jacrev(f)), eager", lambda m, f: m.jax.hessian(f)),
        "revrev": Variant("jacrev(jacrev(f)), eager", lambda m, f: m.jax.jacrev(m.jax.jacrev(f))),
        "fwdfwd": Variant("jacfwd(jacfwd(f)), eager", lambda m, f: m.jax.jacfwd(m.jax.jacfwd(f))),
        "revfwd": Variant("jacrev(jacfwd(f)), eager", lambda m, f: m.jax.jacrev(m.jax.jacfwd(f))),
        "jit": Variant("jax.jit(jax.hessian(f)), compiled", lambda m, f: m.jax.jit(m.jax.hessian(f))),
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


register(JaxBackend())
