"""Equinox: ``eqx.filter_hessian`` (screened compiled, a failure re-run eagerly) and under
``eqx.filter_jit``.

Equinox lowers to the same JAX primitives as the ``jax`` backend, so it reuses that
module's lowering table, namespace and float64 context; what it adds is its own filtered
transforms, which have had bugs of their own: with equinox 0.11.4 and jax 0.4.26,
``eqx.filter_hessian(jax.nn.relu)(jnp.ones(()))`` returned 1.0 where ``jax.hessian``
gave 0.0 (patrick-kidger/equinox#801, fixed in later releases). To catch that kind of bug,
``x`` is passed exactly as a user would (a ``jnp`` array) and results are returned
untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, final

import numpy as np

from hessdiff.backends.base import Backend, Variant
from hessdiff.backends.jax_backend import (
    JAX_LOWERINGS,
    jax_namespace,
    jax_precision,
    jax_source_names,
    jax_source_setup,
    screen_jit,
)
from hessdiff.backends.lowering import Namespace
from hessdiff.backends.registry import register

__all__ = ["EquinoxBackend"]


@final
class EquinoxBackend(Backend):
    name = "equinox"
    framework = "jax"
    distribution = "equinox"
    extra = "equinox"
    modules = ("jax", "equinox")
    variants = {
        "filter_hessian": Variant(
            "eqx.filter_hessian(f): filter_jacfwd(filter_jacrev(f)), "
            "screened under jit(filter_vmap), a failure re-run eagerly",
            lambda m, f: m.eqx.filter_hessian(f),
            batchable=True,
            modes="fwd-over-rev",
        ),
        "filter_jit": Variant(
            "eqx.filter_jit(eqx.filter_hessian(f)), compiled",
            lambda m, f: m.eqx.filter_jit(m.eqx.filter_hessian(f)),
            compiled=True,
            batchable=True,
            modes="fwd-over-rev",
        ),
    }
    gradient = staticmethod(lambda m, f: m.eqx.filter_grad(f))
    lowerings = JAX_LOWERINGS
    source_imports = "import equinox as eqx\nimport jax\nimport jax.numpy as jnp"

    def namespace(self, dtype: str) -> Namespace:
        import equinox

        return Namespace(**vars(jax_namespace(dtype)), eqx=equinox)

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return {**jax_source_names(dtype), "eqx": "eqx"}

    def precision(self, dtype: str) -> contextlib.AbstractContextManager[Any]:
        return jax_precision(dtype)

    def source_setup(self, dtype: str) -> str:
        return jax_source_setup(dtype)

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def batched(self, m: Any, hessian: Any) -> Any:
        return m.eqx.filter_jit(m.eqx.filter_vmap(hessian))

    def batched_eager(self, m: Any, hessian: Any) -> Any:
        # The screen of an eager variant (see JaxBackend.batched_eager): the point array is
        # its one argument, so jax.jit compiles what filter_jit would.
        return screen_jit(m.jax, m.eqx.filter_vmap(hessian))

    def probes(self) -> Mapping[str, Variant]:
        """The relations' probes: ``hessdiff.backends.scenarios.equinox_probes``."""
        from hessdiff.backends.scenarios.equinox_probes import PROBES

        return PROBES


register(EquinoxBackend())
