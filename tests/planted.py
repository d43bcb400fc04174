"""Test-only backends with deliberately wrong second derivatives (planted faults).

Each is JAX with one fault, registered by the tests that need it. A campaign that
cannot find these from random generation cannot find real ones either.
"""

from __future__ import annotations

from typing import final

from backends import Variant
from backends.jax_backend import JAX_LOWERINGS, JaxBackend


def hessian_or_gradient(f):
    """The fault of equinox#801: for a piecewise-linear f (zero Hessian), return the gradient."""
    import jax
    import jax.numpy as jnp

    def h(x):
        hess = jax.hessian(f)(x)
        return jnp.where(jnp.all(hess == 0), jnp.diag(jax.grad(f)(x)), hess)

    return h


def hessian_without_cross_terms(f):
    """Drops every off-diagonal entry."""
    import jax
    import jax.numpy as jnp

    return lambda x: jnp.diag(jnp.diag(jax.hessian(f)(x)))


def hessian_transposed_wrong(f):
    """Returns the Hessian with its first row doubled: asymmetric, wrong value."""
    import jax

    def h(x):
        hess = jax.hessian(f)(x)
        return hess.at[0].multiply(2.0)

    return h


@final
class PlantedBackend(JaxBackend):
    """JAX with planted Hessian faults, one variant each (plus an honest one)."""

    name = "planted"
    variants = {
        "honest": Variant("jax.hessian, unchanged", lambda m, f: m.jax.hessian(f)),
        "pl_gradient": Variant(
            "returns the gradient for piecewise-linear programs",
            lambda m, f: m.hessian_or_gradient(f), (hessian_or_gradient,),
        ),
        "no_cross": Variant(
            "drops cross terms", lambda m, f: m.hessian_without_cross_terms(f),
            (hessian_without_cross_terms,),
        ),
        "row0": Variant(
            "doubles the first row", lambda m, f: m.hessian_transposed_wrong(f),
            (hessian_transposed_wrong,),
        ),
    }


@final
class KinkConventionBackend(JaxBackend):
    """JAX whose relu has derivative 1 at 0 (where jax's has 0): differs only at kinks."""

    name = "kinkconv"
    variants = {"fwdrev": Variant("jax.hessian", lambda m, f: m.jax.hessian(f))}
    lowerings = {**JAX_LOWERINGS, "relu": lambda m, a: m.jnp.where(a >= 0, a, 0.0)}
