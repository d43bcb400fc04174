"""JAX probes (see ``hessdiff.backends.scenarios``): HVPs, the PINN Laplacian, vmap, custom_jvp,
a fixed-step Neural-ODE loss."""

from __future__ import annotations

from hessdiff.backends.base import Variant
from hessdiff.backends.scenarios.ode_problem import ODE_STEPS

__all__ = ["PROBES"]


def hessian_by_jvp_of_grad(f):
    """H[:, j] = jax.jvp(jax.grad(f), (x,), (e_j,)): the forward-over-reverse HVP."""
    import jax
    import jax.numpy as jnp

    def hessian(x):
        grad = jax.grad(f)
        basis = jnp.eye(x.shape[0], dtype=x.dtype)
        return jnp.stack([jax.jvp(grad, (x,), (v,))[1] for v in basis], axis=1)

    return hessian


def hessian_by_vjp_of_grad(f):
    """H[i, :] = the VJP of jax.grad(f) with cotangent e_i: the reverse-over-reverse HVP."""
    import jax
    import jax.numpy as jnp

    def hessian(x):
        _, pullback = jax.vjp(jax.grad(f), x)
        basis = jnp.eye(x.shape[0], dtype=x.dtype)
        return jnp.stack([pullback(v)[0] for v in basis], axis=0)

    return hessian


def laplacian_terms(f):
    """The PINN Laplacian: d2f/dx_i2 by nested jax.grad, jax.vmap'ed over a batch of points.

    Returns the per-axis second derivatives on a diagonal; the Laplacian is their sum.
    """
    import jax
    import jax.numpy as jnp

    def terms(x):
        def second(i):
            return jax.grad(lambda y: jax.grad(f)(y)[i])(x)[i]

        return jnp.stack([second(i) for i in range(x.shape[0])])

    def diagonal(x):
        batch = jnp.stack([x, x])  # a batch of collocation points, as a PINN has
        return jnp.diag(jax.vmap(terms)(batch)[0])

    return diagonal


def hessian_vmapped(f):
    """jax.vmap(jax.hessian(f)) over a batch of points; the first point's Hessian."""
    import jax
    import jax.numpy as jnp

    return lambda x: jax.vmap(jax.hessian(f))(jnp.stack([x, x]))[0]


def custom_jvp_of(f):
    """``g(x, scale) = f(x) * scale`` under jax.custom_jvp with symbolic zeros.

    ``scale`` is never differentiated: its tangent arrives as a ``SymbolicZero``, which the
    rule must skip. The rule itself is jax.jvp of ``f``, so the Hessian of ``g(., 1)`` must
    equal the Hessian of ``f``.
    """
    import jax

    @jax.custom_jvp
    def g(x, scale):
        return f(x) * scale

    def g_jvp(primals, tangents):
        x, scale = primals
        tx, tscale = tangents
        y, ty = jax.jvp(f, (x,), (tx,))
        out = ty * scale
        if not isinstance(tscale, jax.custom_derivatives.SymbolicZero):
            out = out + y * tscale
        return y * scale, out

    g.defjvp(g_jvp, symbolic_zeros=True)
    return g


def hessian_custom_jvp(f):
    """jax.hessian of ``f`` wrapped in a custom_jvp rule (``custom_jvp_of``)."""
    import jax
    import jax.numpy as jnp

    g = custom_jvp_of(f)
    return jax.hessian(lambda x: g(x, jnp.ones((), x.dtype)))


def hessian_custom_jvp_scan(f):
    """The custom rule called twice inside jax.lax.scan (scale 1/2 each), under jax.hessian."""
    import jax
    import jax.numpy as jnp

    g = custom_jvp_of(f)

    def looped(x):
        def step(total, scale):
            return total + g(x, scale), None

        total, _ = jax.lax.scan(step, jnp.zeros((), x.dtype), jnp.full((2,), 0.5, x.dtype))
        return total

    return jax.hessian(looped)


def hessian_custom_jvp_jit(f):
    """jax.jit(jax.hessian(...)) through the custom rule."""
    import jax

    return jax.jit(hessian_custom_jvp(f))


def hessian_custom_jvp_argnums(f):
    """The custom rule on ``x`` split in two arguments, jax.hessian(argnums=(0, 1)), blocks
    reassembled: differentiating with respect to a tuple of arguments."""
    import jax
    import jax.numpy as jnp

    g = custom_jvp_of(f)

    def hessian(x):
        k = (x.shape[0] + 1) // 2
        blocks = jax.hessian(
            lambda a, b: g(jnp.concatenate([a, b]), jnp.ones((), x.dtype)), argnums=(0, 1)
        )(x[:k], x[k:])
        return jnp.block([[blocks[0][0], blocks[0][1]], [blocks[1][0], blocks[1][1]]])

    return hessian


def hessian_ode_euler(f):
    """A Neural-ODE loss: dy/dt = -f(theta) y, y(0) = 1, ODE_STEPS Euler steps of
    jax.lax.fori_loop on [0, 1]; jax.hessian of y(1) in theta."""
    import jax
    import jax.numpy as jnp

    def loss(theta):
        h = 1.0 / ODE_STEPS

        def step(_, y):
            return y + h * (-f(theta) * y)

        return jax.lax.fori_loop(0, ODE_STEPS, step, jnp.ones((), theta.dtype))

    return jax.hessian(loss)


PROBES = {
    "hvp-jvp-grad": Variant.calling("jax.jvp(jax.grad(f), (x,), (v,)) for each basis v: HVP columns",
                                    hessian_by_jvp_of_grad, relation="hvp"),
    "vhp-vjp-grad": Variant.calling("jax.vjp(jax.grad(f), x) pulled back along each basis v: HVP rows",
                                    hessian_by_vjp_of_grad, relation="hvp"),
    "laplacian-vmap": Variant.calling("PINN Laplacian terms: nested jax.grad per axis, jax.vmap over points",
                                      laplacian_terms, relation="laplacian"),
    "vmap-hessian": Variant.calling("jax.vmap(jax.hessian(f)) over a batch of points", hessian_vmapped,
                                    relation="vmap"),
    "custom-jvp": Variant.calling("jax.hessian through jax.custom_jvp (symbolic zeros)",
                                  hessian_custom_jvp, custom_jvp_of, relation="custom_rules"),
    "custom-jvp-scan": Variant.calling("jax.hessian through jax.custom_jvp called in jax.lax.scan",
                                       hessian_custom_jvp_scan, custom_jvp_of, relation="custom_rules"),
    "custom-jvp-jit": Variant.calling("jax.jit(jax.hessian) through jax.custom_jvp",
                                      hessian_custom_jvp_jit, custom_jvp_of, hessian_custom_jvp,
                                      relation="custom_rules", compiled=True),
    "custom-jvp-argnums": Variant.calling("jax.hessian(argnums=(0, 1)) through jax.custom_jvp",
                                          hessian_custom_jvp_argnums, custom_jvp_of, relation="custom_rules"),
    "ode-euler": Variant.calling(f"jax.hessian of a {ODE_STEPS}-step Euler Neural-ODE loss (jax.lax.fori_loop)",
                                 hessian_ode_euler, relation="neural_ode"),
}
