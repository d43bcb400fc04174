"""Equinox probes (see ``hessdiff.backends.scenarios``): filtered HVPs, the PINN Laplacian with
filter_vmap, filter_custom_jvp, the parameter Hessian of an ``eqx.Module`` (flattened first,
and eqx.filter_hessian of the Module itself), and Neural-ODE losses solved by diffrax.

diffrax is an Equinox library (its solvers, terms and controllers are ``eqx.Module``s,
its loops Equinox's), so its solves are probed here, through the equinox backend. It is
an optional dependency (``pip install 'hessdiff[diffrax]'``; it needs jax >= 0.4.38, so
the equinox 0.11.4 / jax 0.4.26 environments have none): without it its probes are
``Unsupported``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from hessdiff.backends.base import Unsupported, Variant
from hessdiff.backends.scenarios.jax_probes import fill_leaves, matrix_of_blocks, ravel_leaves
from hessdiff.backends.scenarios.ode_problem import ADAPTIVE_ODE_MAX_STEPS, ADAPTIVE_ODE_TOLERANCE, ODE_STEPS

__all__ = ["PROBES"]


def filter_hessian_by_jvp_of_grad(f):
    """H[:, j] = eqx.filter_jvp(eqx.filter_grad(f), (x,), (e_j,)): HVP columns."""
    import equinox as eqx
    import jax.numpy as jnp

    def hessian(x):
        grad = eqx.filter_grad(f)
        basis = jnp.eye(x.shape[0], dtype=x.dtype)
        # filter_jvp returns None for a tangent that is a symbolic zero (documented).
        columns = [eqx.filter_jvp(grad, (x,), (v,))[1] for v in basis]
        return jnp.stack([jnp.zeros_like(x) if c is None else c for c in columns], axis=1)

    return hessian


def filter_hessian_by_vjp_of_grad(f):
    """H[i, :] = eqx.filter_vjp(eqx.filter_grad(f), x) pulled back along e_i: HVP rows."""
    import equinox as eqx
    import jax.numpy as jnp

    def hessian(x):
        _, pullback = eqx.filter_vjp(eqx.filter_grad(f), x)
        basis = jnp.eye(x.shape[0], dtype=x.dtype)
        return jnp.stack([pullback(v)[0] for v in basis], axis=0)

    return hessian


def filter_laplacian_terms(f):
    """PINN Laplacian terms: nested eqx.filter_grad per axis, eqx.filter_vmap over points."""
    import equinox as eqx
    import jax.numpy as jnp

    def terms(x):
        def second(i):
            return eqx.filter_grad(lambda y: eqx.filter_grad(f)(y)[i])(x)[i]

        return jnp.stack([second(i) for i in range(x.shape[0])])

    def diagonal(x):
        return jnp.diag(eqx.filter_vmap(terms)(jnp.stack([x, x]))[0])

    return diagonal


def filter_custom_jvp_of(f):
    """``g(x, scale) = f(x) * scale`` under eqx.filter_custom_jvp.

    ``scale`` is not differentiated, so its tangent is ``None`` (Equinox's symbolic zero),
    which the rule must skip. The rule is eqx.filter_jvp of ``f``.
    """
    import equinox as eqx
    import jax.numpy as jnp

    @eqx.filter_custom_jvp
    def g(x, scale):
        return f(x) * scale

    @g.def_jvp
    def g_jvp(primals, tangents):
        x, scale = primals
        tx, tscale = tangents
        y, ty = eqx.filter_jvp(f, (x,), (tx,))
        ty = jnp.zeros_like(y) if ty is None else ty  # a symbolic-zero tangent is None
        out = ty * scale if tscale is None else ty * scale + y * tscale
        return y * scale, out

    return g


def filter_hessian_custom_jvp(f):
    """eqx.filter_hessian of ``f`` through eqx.filter_custom_jvp."""
    import equinox as eqx
    import jax.numpy as jnp

    g = filter_custom_jvp_of(f)
    return eqx.filter_hessian(lambda x: g(x, jnp.ones((), x.dtype)))


def filter_hessian_custom_jvp_loop(f):
    """The custom rule called twice in a Python loop (scale 1/2 each), eqx.filter_hessian."""
    import equinox as eqx
    import jax.numpy as jnp

    g = filter_custom_jvp_of(f)

    def looped(x):
        total = jnp.zeros((), x.dtype)
        for _ in range(2):
            total = total + g(x, jnp.full((), 0.5, x.dtype))
        return total

    return eqx.filter_hessian(looped)


def filter_hessian_custom_jvp_jit(f):
    """eqx.filter_jit(eqx.filter_hessian(...)) through the custom rule."""
    import equinox as eqx

    return eqx.filter_jit(filter_hessian_custom_jvp(f))


def module_parameter_hessian(f):
    """The Hessian of a model's loss in its flat parameters, the Equinox way.

    The model is an ``eqx.Module`` holding ``x`` as two parameter arrays; its parameters
    are split off with ``eqx.partition(model, eqx.is_inexact_array)``, flattened with
    ``jax.flatten_util.ravel_pytree``, and put back with ``eqx.combine(params, static)``
    inside the loss that jax.hessian differentiates.
    """
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
        params, static = eqx.partition(model, eqx.is_inexact_array)
        flat, unravel = ravel_pytree(params)

        def loss(flat):
            return eqx.combine(unravel(flat), static)()

        return jax.hessian(loss)(flat)

    return hessian


def module_filter_hessian(f):
    """eqx.filter_hessian applied to an ``eqx.Module`` itself: a pytree of pytrees back.

    The model holds an ``eqx.nn.MLP`` (in_size n - 3, width 1, depth 1, "scalar" out: its
    two Linear layers' weights and biases, n parameters) for n >= 4, else an
    ``eqx.nn.Linear`` to a "scalar" (weight (1, n - 1) and bias, or a (1, 1) weight without
    bias for n = 1), beside non-array fields: an activation function and an int (and the
    layers' own: activations, sizes, flags). The layer is built as a user builds it
    (random init), then its arrays are set to ``x`` with eqx.partition / eqx.combine. The
    loss is f of ``ravel_leaves`` of the model's arrays, in the Module's field order
    (for the MLP: layers[0].weight, layers[0].bias, layers[1].weight, layers[1].bias).

    filter_hessian must differentiate the floating arrays only, treat the functions and
    ints as static, and return the model's structure of model-shaped blocks with ``None``
    at the non-array fields; ``matrix_of_blocks`` assembles it. Equinox 0.11.4 cannot:
    its filter_jacfwd combines the Jacobian with a ``None`` static output and raises
    "Custom node type mismatch" for any pytree input (equinox#741; PR #734 fixed it).
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    class Model(eqx.Module):
        layer: eqx.Module
        activation: object
        sign: int

        def __call__(self):
            return self.sign * f(ravel_leaves(eqx.filter(self, eqx.is_inexact_array)))

    def hessian(x):
        n = x.shape[0]
        key = jax.random.PRNGKey(0)
        if n >= 4:
            layer = eqx.nn.MLP(n - 3, "scalar", 1, 1, activation=jnp.tanh, key=key)
        else:
            layer = eqx.nn.Linear(max(n - 1, 1), "scalar", use_bias=n > 1, key=key)
        params, static = eqx.partition(Model(layer, jax.nn.relu, 1), eqx.is_inexact_array)
        params = fill_leaves(params, x)
        model = eqx.combine(params, static)
        return matrix_of_blocks(eqx.filter_hessian(lambda m: m())(model), params)

    return hessian


def diffrax_euler_hessian(f):
    """The Euler Neural-ODE loss of ``jax_probes.hessian_ode_euler`` through diffrax:
    dy/dt = -f(theta) y, y(0) = 1, diffrax.Euler with ConstantStepSize dt0 = 1/ODE_STEPS on
    [0, 1] (the same steps); jax.hessian of y(1) in theta.

    diffeqsolve's default adjoint (RecursiveCheckpointAdjoint) is kept, as users keep it:
    with a constant step size jax.hessian (forward over reverse) differentiates it.
    """
    import diffrax
    import jax
    import jax.numpy as jnp

    def loss(theta):
        term = diffrax.ODETerm(lambda t, y, args: -f(args) * y)
        solution = diffrax.diffeqsolve(
            term, diffrax.Euler(), t0=0.0, t1=1.0, dt0=1.0 / ODE_STEPS, y0=jnp.ones((), theta.dtype),
            args=theta, stepsize_controller=diffrax.ConstantStepSize(),
        )
        return solution.ys[-1]

    return jax.hessian(loss)


def diffrax_adaptive_hessian(f):
    """The same ODE solved adaptively: diffrax.Tsit5 with PIDController(rtol, atol=0), rtol
    ADAPTIVE_ODE_TOLERANCE[dtype]; jax.hessian of y(1) in theta.

    adjoint=diffrax.DirectAdjoint(): jax.hessian is forward over reverse, and the default
    RecursiveCheckpointAdjoint is a custom_vjp under an adaptive controller ("can't apply
    forward-mode autodiff (jvp) to a custom_vjp function"); DirectAdjoint supports both
    modes. atol = 0 makes the tolerance relative: y(1) = exp(-f) may be tiny. diffrax takes
    the step sizes under stop_gradient, so this is the Hessian of a fixed Runge-Kutta
    scheme, symmetric up to rounding, and within the tolerance of the exact solution's.
    """
    import diffrax
    import jax
    import jax.numpy as jnp

    def loss(theta):
        rtol = ADAPTIVE_ODE_TOLERANCE[theta.dtype.name]
        term = diffrax.ODETerm(lambda t, y, args: -f(args) * y)
        solution = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), t0=0.0, t1=1.0, dt0=None, y0=jnp.ones((), theta.dtype),
            args=theta, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=0.0),
            adjoint=diffrax.DirectAdjoint(), max_steps=ADAPTIVE_ODE_MAX_STEPS,
        )
        return solution.ys[-1]

    return jax.hessian(loss)


def _needs_diffrax(compose: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``compose``, raising ``Unsupported`` with the install hint when diffrax does not
    import (not installed, or too new for the installed jax)."""

    def checked(m: Any, f: Any) -> Any:
        try:
            importlib.import_module("diffrax")
        except ImportError as exc:
            raise Unsupported(f"diffrax is not importable ({exc}); install it with: "
                              "pip install 'hessdiff[diffrax]'") from exc
        return compose(m, f)

    return checked


PROBES = {
    "hvp-jvp-grad": Variant.calling("eqx.filter_jvp(eqx.filter_grad(f)) along each basis vector",
                                    filter_hessian_by_jvp_of_grad, relation="hvp"),
    "vhp-vjp-grad": Variant.calling("eqx.filter_vjp(eqx.filter_grad(f)) along each basis vector",
                                    filter_hessian_by_vjp_of_grad, relation="hvp"),
    "laplacian-vmap": Variant.calling("PINN Laplacian terms: nested eqx.filter_grad, eqx.filter_vmap",
                                      filter_laplacian_terms, relation="laplacian"),
    "custom-jvp": Variant.calling("eqx.filter_hessian through eqx.filter_custom_jvp (None tangents)",
                                  filter_hessian_custom_jvp, filter_custom_jvp_of, relation="custom_rules"),
    "custom-jvp-loop": Variant.calling("eqx.filter_hessian through eqx.filter_custom_jvp in a loop",
                                       filter_hessian_custom_jvp_loop, filter_custom_jvp_of,
                                       relation="custom_rules"),
    "custom-jvp-jit": Variant.calling("eqx.filter_jit(eqx.filter_hessian) through eqx.filter_custom_jvp",
                                      filter_hessian_custom_jvp_jit, filter_custom_jvp_of,
                                      filter_hessian_custom_jvp, relation="custom_rules", compiled=True),
    "params-module": Variant.calling("eqx.Module parameters: eqx.partition, ravel_pytree, jax.hessian",
                                     module_parameter_hessian, relation="parameters"),
    "params-filter-hessian": Variant.calling("eqx.filter_hessian of an eqx.Module (nn.MLP / nn.Linear)",
                                             module_filter_hessian, ravel_leaves, fill_leaves,
                                             matrix_of_blocks, relation="parameters", batchable=True,
                                             campaign=True, modes="fwd-over-rev"),
    "ode-diffrax-euler": Variant("jax.hessian of diffrax.diffeqsolve: Euler, ConstantStepSize, "
                                 f"{ODE_STEPS} steps",
                                 _needs_diffrax(lambda m, f: m.diffrax_euler_hessian(f)),
                                 (diffrax_euler_hessian,), relation="neural_ode"),
    "adaptive-ode-tsit5": Variant("jax.hessian of diffrax.diffeqsolve: Tsit5, PIDController, DirectAdjoint",
                                  _needs_diffrax(lambda m, f: m.diffrax_adaptive_hessian(f)),
                                  (diffrax_adaptive_hessian,), relation="neural_ode_adaptive"),
}
