"""JAX probes (see ``hessdiff.backends.scenarios``): HVPs, the PINN Laplacian, vmap, custom_jvp,
a fixed-step Neural-ODE loss, the Hessian in a dict/tuple pytree of parameters."""

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


def ravel_leaves(tree):
    """The leaves of ``tree`` raveled and concatenated in ``jax.tree_util`` order: dict keys
    sorted, tuple items and ``eqx.Module`` fields in order, ``None`` no leaf. A structured
    loss evaluates the program on this vector, and its Hessian's blocks are assembled in
    the same order (``matrix_of_blocks``), so it is the Hessian of f at that vector."""
    import jax
    import jax.numpy as jnp

    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(tree)])


def fill_leaves(tree, x):
    """``tree`` with its leaves replaced by consecutive slices of the flat ``x``, each shaped
    like the leaf it replaces: the inverse of ``ravel_leaves``."""
    import math

    import jax

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    filled, start = [], 0
    for leaf in leaves:
        size = math.prod(leaf.shape)
        filled.append(x[start:start + size].reshape(leaf.shape))
        start += size
    return jax.tree_util.tree_unflatten(treedef, filled)


def matrix_of_blocks(blocks, params):
    """The (n, n) matrix of a Hessian returned as a pytree of pytrees.

    ``jax.hessian`` (and ``eqx.filter_hessian``) of a loss in the pytree ``params`` returns
    ``params``' structure whose leaf i holds ``params``' structure again, whose leaf j is
    the block d2L / dp_i dp_j of shape p_i.shape + p_j.shape. The blocks are laid out in
    ``params``' leaf order, the order of ``ravel_leaves``. Where ``params`` has ``None``
    (an Equinox Module's non-array fields, filtered out) the Hessian has ``None`` too; a
    ``None`` row or block of an array leaf (a symbolic zero) is a zero block.
    """
    import math

    import jax
    import jax.numpy as jnp

    leaves, treedef = jax.tree_util.tree_flatten(params)
    sizes = [math.prod(leaf.shape) for leaf in leaves]
    dtype = leaves[0].dtype
    rows = []
    for row, rows_i in zip(treedef.flatten_up_to(blocks), sizes):
        cells = [None] * len(leaves) if row is None else treedef.flatten_up_to(row)
        rows.append(jnp.concatenate([
            jnp.zeros((rows_i, cols_j), dtype) if cell is None else jnp.reshape(cell, (rows_i, cols_j))
            for cell, cols_j in zip(cells, sizes)
        ], axis=1))
    return jnp.concatenate(rows, axis=0)


def pytree_parameter_hessian(f):
    """jax.hessian of a loss in a dict/tuple pytree of parameters, not a flat vector.

    The parameters are ``{"w": (1, n - 1) matrix, "b": (scalar,)}`` (for n = 1,
    ``{"w": (1, 1), "b": ()}``: an empty tuple, a node without leaves); the loss is f
    of ``ravel_leaves(params)``, whose order is the tree's (``"b"`` before ``"w"``: dict
    keys are sorted). jax.hessian returns a dict of dicts of blocks, with tuples inside,
    assembled by ``matrix_of_blocks``. This exercises jax.hessian's own pytree handling
    (flattening, the per-leaf basis, unflattening into nested trees), which a Hessian
    in a flat vector (``ravel_pytree`` first) never reaches.
    """
    import jax
    import jax.numpy as jnp

    def loss(params):
        return f(ravel_leaves(params))

    def hessian(x):
        n = x.shape[0]
        layout = {"w": jnp.zeros((1, max(n - 1, 1)), x.dtype),
                  "b": (jnp.zeros((), x.dtype),) if n > 1 else ()}
        params = fill_leaves(layout, x)
        return matrix_of_blocks(jax.hessian(loss)(params), params)

    return hessian


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
    "params-pytree": Variant.calling("jax.hessian in a dict/tuple pytree of parameters, blocks assembled",
                                     pytree_parameter_hessian, ravel_leaves, fill_leaves,
                                     matrix_of_blocks, relation="parameters", batchable=True,
                                     campaign=True, modes="fwd-over-rev"),
}
