"""Test-only backends with deliberately wrong second derivatives (planted faults).

Each is JAX with one fault, registered by the tests that need it. A campaign that
cannot find these from random generation cannot find real ones either.
"""

from __future__ import annotations

from typing import final

from hessdiff.backends import Variant
from hessdiff.backends.jax_backend import JAX_LOWERINGS, JaxBackend
from hessdiff.backends.scenarios.jax_probes import fill_leaves, ravel_leaves


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
        "pl_gradient": Variant.calling("returns the gradient for piecewise-linear programs",
                                       hessian_or_gradient),
        "no_cross": Variant.calling("drops cross terms", hessian_without_cross_terms),
        "row0": Variant.calling("doubles the first row", hessian_transposed_wrong),
    }


@final
class KinkConventionBackend(JaxBackend):
    """JAX whose relu has derivative 1 at 0 (where jax's has 0): differs only at kinks."""

    name = "kinkconv"
    variants = {"fwdrev": Variant("jax.hessian", lambda m, f: m.jax.hessian(f), batchable=True)}
    lowerings = {**JAX_LOWERINGS, "relu": lambda m, a: m.jnp.where(a >= 0, a, 0.0)}


# --- planted faults for the metamorphic relations (harness.relations) -------------------


def hessian_by_diagonal_hvp(f):
    """A broken HVP: the jvp of grad along e_j, multiplied by e_j (keeps only H[j, j])."""
    import jax
    import jax.numpy as jnp

    def hessian(x):
        grad = jax.grad(f)
        basis = jnp.eye(x.shape[0], dtype=x.dtype)
        return jnp.stack([jax.jvp(grad, (x,), (v,))[1] * v for v in basis], axis=1)

    return hessian


def laplacian_of_first_derivatives(f):
    """A broken PINN Laplacian: sums first derivatives (one grad, not two)."""
    import jax
    import jax.numpy as jnp

    return lambda x: jnp.diag(jax.vmap(jax.grad(f))(jnp.stack([x, x]))[0])


def jit_hessian_in_float32(f):
    """A broken jit path: the compiled Hessian silently computes in float32."""
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda x: jax.hessian(f)(x.astype(jnp.float32)).astype(x.dtype))


def hessian_scaled_in_float32(f):
    """A float32-only fault: the float32 Hessian is 1% off, float64 is right."""
    import jax
    import jax.numpy as jnp

    return lambda x: jax.hessian(f)(x) * (1.01 if x.dtype == jnp.float32 else 1.0)


def vmap_hessian_of_wrong_point(f):
    """A broken batch: vmap over [x, x / 2] and return the second point's Hessian."""
    import jax
    import jax.numpy as jnp

    return lambda x: jax.vmap(jax.hessian(f))(jnp.stack([x, x / 2]))[1]


def custom_jvp_first_order_only(f):
    """A custom_jvp rule that is right to first order only: it differentiates f at
    ``stop_gradient(x)``, so nothing differentiates through the rule (a zero Hessian)."""
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def g(x):
        return f(x)

    @g.defjvp
    def g_jvp(primals, tangents):
        (x,), (tx,) = primals, tangents
        return jax.jvp(f, (jax.lax.stop_gradient(x),), (tx,))

    return jax.hessian(lambda x: g(x) * jnp.ones((), x.dtype))


def module_parameter_hessian_combine_swapped(f):
    """The eqx.combine pitfall: ``eqx.combine(model, unravel(flat))`` keeps the model's own
    leaves (combine takes the first non-None), so the loss ignores ``flat``: H = 0."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    class Model(eqx.Module):
        first: jax.Array
        second: jax.Array

        def __call__(self):
            return f(jnp.concatenate([self.first, self.second]))

    def hessian(x):
        k = (x.shape[0] + 1) // 2
        model = Model(x[:k], x[k:])
        params, _ = eqx.partition(model, eqx.is_inexact_array)
        flat, unravel = ravel_pytree(params)
        return jax.hessian(lambda flat: eqx.combine(model, unravel(flat))())(flat)

    return hessian


def pytree_hessian_in_insertion_order(f):
    """The block-assembly pitfall of a structured input: jax.hessian in ``{"w", "b"}``
    (as jax_probes.pytree_parameter_hessian) with the blocks laid out in the dict's
    insertion order (w, b), while the loss reads the leaves in the tree's order (b, w:
    keys sorted). The result is P H P^T for a permutation P, right only where H is
    invariant under it. For n >= 2."""
    import jax
    import jax.numpy as jnp

    def hessian(x):
        n = x.shape[0]
        params = fill_leaves({"w": jnp.zeros((1, n - 1), x.dtype), "b": (jnp.zeros((), x.dtype),)}, x)
        blocks = jax.hessian(lambda p: f(ravel_leaves(p)))(params)
        w, b = blocks["w"], blocks["b"][0]
        return jnp.block([[w["w"].reshape(n - 1, n - 1), w["b"][0].reshape(n - 1, 1)],
                          [b["w"].reshape(1, n - 1), b["b"][0].reshape(1, 1)]])

    return hessian


def ode_euler_frozen_field(f):
    """A broken Neural-ODE solve: the vector field sees ``stop_gradient(theta)`` after the
    first step, so only one step is differentiated."""
    import jax
    import jax.numpy as jnp

    def loss(theta):
        y = jnp.ones((), theta.dtype)
        for k in range(4):
            t = theta if k == 0 else jax.lax.stop_gradient(theta)
            y = y + 0.25 * (-f(t) * y)
        return y

    return jax.hessian(loss)


RELATION_PROBES = {
    "hvp-diagonal": Variant.calling("an HVP that keeps only H[j, j]", hessian_by_diagonal_hvp,
                                    relation="hvp"),
    "laplacian-first": Variant.calling("a Laplacian of first derivatives", laplacian_of_first_derivatives,
                                       relation="laplacian"),
    "vmap-wrong-point": Variant.calling("vmap returning another point's Hessian",
                                        vmap_hessian_of_wrong_point, relation="vmap"),
    "custom-first-order": Variant.calling("a custom_jvp rule right to first order only",
                                          custom_jvp_first_order_only, relation="custom_rules"),
    "params-combine-swapped": Variant.calling("eqx.combine(model, params): the parameters are ignored",
                                              module_parameter_hessian_combine_swapped,
                                              relation="parameters"),
    "params-pytree-insertion-order": Variant.calling("jax.hessian in a dict, blocks in insertion order",
                                                     pytree_hessian_in_insertion_order, ravel_leaves,
                                                     fill_leaves, relation="parameters"),
    "ode-frozen-field": Variant.calling("an Euler solve differentiated through its first step only",
                                        ode_euler_frozen_field, relation="neural_ode"),
}


@final
class PlantedRelationsBackend(JaxBackend):
    """JAX with one planted fault per metamorphic relation (plus an honest reference)."""

    name = "plantedrel"
    variants = {
        "honest": Variant("jax.hessian, unchanged", lambda m, f: m.jax.hessian(f)),
        "row0": Variant.calling("doubles the first row (asymmetric)", hessian_transposed_wrong),
        "no_cross": Variant.calling("drops cross terms", hessian_without_cross_terms),
        "jit": Variant.calling("a jit path computing in float32", jit_hessian_in_float32, compiled=True,
                               batchable=True),
        "f32scaled": Variant.calling("float32 Hessian 1% off", hessian_scaled_in_float32),
    }

    def probes(self):
        return RELATION_PROBES


# --- planted faults for blame (harness.blame) -------------------------------------------


def _exp_wrong_second_order(m, a):
    """exp with its value and first derivative right and its second derivative off by
    2% of exp(a): exp(a) * (1 + 0.01 (a - a0)**2) with a0 = stop_gradient(a)."""
    d = a - m.jax.lax.stop_gradient(a)
    return m.jnp.exp(a) * (1 + 0.01 * d * d)


@final
class WrongExpBackend(JaxBackend):
    """JAX whose exp rule alone is wrong (at second order)."""

    name = "wrongexp"
    variants = {"fwdrev": Variant("jax.hessian", lambda m, f: m.jax.hessian(f), batchable=True)}
    lowerings = {**JAX_LOWERINGS, "exp": _exp_wrong_second_order}


def _cos_first_derivative_halved_when_tiny(m, a):
    """cos with its value and second derivative right and its first derivative halved
    where |a| < 1e-20 (-sin(a) / 2, itself ~a): cos(a) + sin(a0) (a - a0) / 2 there."""
    a0 = m.jax.lax.stop_gradient(a)
    return m.jnp.cos(a) + m.jnp.where(m.jnp.abs(a0) < 1e-20, 0.5 * m.jnp.sin(a0), 0.0) * (a - a0)


@final
class TinyCosBackend(JaxBackend):
    """JAX whose cos' is wrong only at tiny arguments, where cos'' ~ -1 dwarfs it (as
    JAX's i0' = i1(e) ~ e / 2 beside i0'' ~ 1/2)."""

    name = "tinycos"
    variants = {"fwdrev": Variant("jax.hessian", lambda m, f: m.jax.hessian(f), batchable=True)}
    lowerings = {**JAX_LOWERINGS, "cos": _cos_first_derivative_halved_when_tiny}


def hessian_wrong_where_sin_meets_exp(f):
    """Doubles the Hessian of a program whose trace holds both sin and exp: every rule is
    right alone, the fault is in their composition."""
    import jax

    def h(x):
        hess = jax.hessian(f)(x)
        primitives = {eqn.primitive.name for eqn in jax.make_jaxpr(f)(x).jaxpr.eqns}
        return hess * 2.0 if {"sin", "exp"} <= primitives else hess

    return h


@final
class CompositionBackend(JaxBackend):
    """JAX wrong only where sin and exp meet in one program."""

    name = "composition"
    variants = {"fwdrev": Variant.calling("doubles the Hessian where sin and exp meet",
                                          hessian_wrong_where_sin_meets_exp, batchable=True)}


def _sin_wrong_second_order(m, a):
    """sin with its value and first derivative right and its second derivative off by
    2% (of 1): sin(a) + 0.01 (a - a0)**2 with a0 = stop_gradient(a)."""
    d = a - m.jax.lax.stop_gradient(a)
    return m.jnp.sin(a) + 0.01 * d * d


@final
class TwoFaultsBackend(JaxBackend):
    """JAX whose exp and sin rules are both wrong at second order: two faults of one
    framework, kind and dtype, in different ops."""

    name = "twofaults"
    variants = {"fwdrev": Variant("jax.hessian", lambda m, f: m.jax.hessian(f), batchable=True)}
    lowerings = {**JAX_LOWERINGS, "exp": _exp_wrong_second_order, "sin": _sin_wrong_second_order}


@final
class OldJaxBackend(JaxBackend):
    """JAX as an older release without one op's API: its sin lowering calls an
    activation the release lacks (as ``jax.nn.mish`` is missing from jax 0.4.26)."""

    name = "oldjax"
    variants = {"fwdrev": Variant("jax.hessian", lambda m, f: m.jax.hessian(f), batchable=True)}
    lowerings = {**JAX_LOWERINGS, "sin": lambda m, a: m.jax.nn.no_such_activation(a)}


@final
class CancellingEluBackend(JaxBackend):
    """JAX whose elu is computed as ``exp(x) - 1`` for x <= 0 (MLX's formula), not with
    expm1: its derivative rules are right, its value is 0 for tiny negative x, so a kink
    downstream (``abs``, ``norm``) is met at another point. No single rule is wrong."""

    name = "cancellingelu"
    variants = {"fwdrev": Variant("jax.hessian", lambda m, f: m.jax.hessian(f), batchable=True)}
    lowerings = {**JAX_LOWERINGS,
                 "elu": lambda m, a, alpha: m.jnp.where(a > 0, a, alpha * (m.jnp.exp(a) - 1))}


def _sin_wrong_beyond_ten(m, a):
    """sin whose second derivative is off by 2% (of 1) where |a| > 10 only."""
    a0 = m.jax.lax.stop_gradient(a)
    d = a - a0
    return m.jnp.sin(a) + m.jnp.where(m.jnp.abs(a0) > 10, 0.01, 0.0) * d * d


@final
class FarSinBackend(JaxBackend):
    """JAX whose sin rule is wrong for |x| > 10 only: a fault of one region."""

    name = "farsin"
    variants = {"fwdrev": Variant("jax.hessian", lambda m, f: m.jax.hessian(f), batchable=True)}
    lowerings = {**JAX_LOWERINGS, "sin": _sin_wrong_beyond_ten}
