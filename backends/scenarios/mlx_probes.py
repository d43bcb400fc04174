"""MLX probes (see ``hessdiff.backends.scenarios``): the PINN Laplacian, vmap, mx.custom_function,
an mlx.nn.Module's parameter Hessian (in a flat vector, and in its parameter tree), a
fixed-step Neural-ODE loss.

MLX's HVPs (``mx.jvp``/``mx.vjp`` of ``mx.grad``) are its campaign variants already.
"""

from __future__ import annotations

from hessdiff.backends.base import Variant
from hessdiff.backends.mlx_hessians import hessian_fwdrev, hessian_revrev
from hessdiff.backends.scenarios.ode_problem import ODE_STEPS

__all__ = ["PROBES"]


def mlx_laplacian_terms(f):
    """PINN Laplacian terms: nested mx.grad per axis, mx.vmap over a batch of points."""
    import mlx.core as mx

    def terms(x):
        def second(i):
            return mx.grad(lambda y: mx.grad(f)(y)[i])(x)[i]

        return mx.stack([second(i) for i in range(x.shape[0])])

    return lambda x: mx.diag(mx.vmap(terms)(mx.stack([x, x]))[0])


def mlx_hessian_vmapped(f):
    """mx.vmap of the reverse-over-reverse Hessian over a batch of points; the first one's."""
    import mlx.core as mx

    return lambda x: mx.vmap(hessian_revrev(f))(mx.stack([x, x]))[0]


def custom_function_of(f):
    """``g(x, scale) = f(x) * scale`` as an mx.custom_function with a vjp and a jvp rule,
    both transforms of ``f`` itself."""
    import mlx.core as mx

    @mx.custom_function
    def g(x, scale):
        return f(x) * scale

    @g.vjp
    def g_vjp(primals, cotangent, output):
        x, scale = primals
        return mx.grad(f)(x) * cotangent * scale, mx.zeros_like(scale)

    @g.jvp
    def g_jvp(primals, tangents):
        x, scale = primals
        tx, tscale = tangents
        y, ty = f(x), mx.jvp(f, [x], [tx])[1][0]
        return ty * scale + y * tscale

    return g


def hessian_custom_function(f):
    """The reverse-over-reverse Hessian through the mx.custom_function."""
    import mlx.core as mx

    g = custom_function_of(f)
    return hessian_revrev(lambda x: g(x, mx.array(1.0, dtype=x.dtype)))


def hessian_custom_function_loop(f):
    """The custom function called twice in a loop (scale 1/2 each), mx.compile'd Hessian."""
    import mlx.core as mx

    g = custom_function_of(f)

    def looped(x):
        total = mx.zeros((), dtype=x.dtype)
        for _ in range(2):
            total = total + g(x, mx.array(0.5, dtype=x.dtype))
        return total

    return mx.compile(hessian_revrev(looped))


def module_parameter_hessian(f):
    """The Hessian of an mlx.nn.Module's loss in its flat parameters: the parameters put
    back with ``model.update`` inside the differentiated loss."""
    import mlx.core as mx
    import mlx.nn as nn

    class Model(nn.Module):
        def __init__(self, first, second):
            super().__init__()
            self.first = first
            self.second = second

        def __call__(self):
            return f(mx.concatenate([self.first, self.second]))

    def hessian(x):
        k = (x.shape[0] + 1) // 2
        model = Model(x[:k], x[k:])

        def loss(flat):
            model.update({"first": flat[:k], "second": flat[k:]})
            return model()

        return hessian_revrev(loss)(x)

    return hessian


def module_tree_hessian(f):
    """The Hessian of an mlx.nn.Module's loss in its parameter tree, the MLX way.

    The model holds an ``nn.Linear(n - 1, 1)`` (weight (1, n - 1) and bias; for n = 1,
    ``nn.Linear(1, 1, bias=False)``), beside non-parameter attributes (an activation
    function, an int). Its parameters are the nested dict ``model.parameters()``
    (``{"layer": {"weight": ..., "bias": ...}}``), filled from ``x`` in
    ``mlx.utils.tree_flatten`` order; the loss is f of them raveled and concatenated in
    that order. The gradient is ``nn.value_and_grad(model, loss)``, as MLX training code
    takes it (it differentiates ``model.trainable_parameters()`` after ``model.update``);
    column j of H is ``mx.grad`` over the parameter tree of <gradient, e_j>, with e_j a
    tree of the same structure: reverse over reverse, both through MLX's tree handling.
    """
    import math

    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten, tree_unflatten

    class Model(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.layer = nn.Linear(max(n - 1, 1), 1, bias=n > 1)
            self.activation = nn.tanh
            self.sign = 1

        def __call__(self):
            leaves = [p.reshape(-1) for _, p in tree_flatten(self.parameters())]
            return self.sign * f(mx.concatenate(leaves))

    def tree_of(vector, shapes):
        """The flat ``vector`` as a parameter tree with the leaves ``shapes`` (name -> shape)."""
        leaves, start = [], 0
        for name, shape in shapes.items():
            leaves.append((name, vector[start:start + math.prod(shape)].reshape(shape)))
            start += math.prod(shape)
        return tree_unflatten(leaves)

    def hessian(x):
        model = Model(x.shape[0])
        shapes = {name: p.shape for name, p in tree_flatten(model.parameters())}
        params = tree_of(x, shapes)

        def directional(params, direction):
            model.update(params)
            _, grads = nn.value_and_grad(model, model)()
            return sum((g * d).sum() for (_, g), (_, d) in zip(tree_flatten(grads), tree_flatten(direction)))

        basis = mx.eye(x.shape[0], dtype=x.dtype)
        columns = []
        for j in range(x.shape[0]):
            column = mx.grad(directional)(params, tree_of(basis[j], shapes))
            columns.append(mx.concatenate([c.reshape(-1) for _, c in tree_flatten(column)]))
        return mx.stack(columns, axis=1)

    return hessian


def hessian_ode_euler(f):
    """A Neural-ODE loss: dy/dt = -f(theta) y, y(0) = 1, ODE_STEPS Euler steps (Python
    loop) on [0, 1]; the reverse-over-reverse Hessian of y(1) in theta."""
    import mlx.core as mx

    def loss(theta):
        h = 1.0 / ODE_STEPS
        y = mx.ones((), dtype=theta.dtype)
        for _ in range(ODE_STEPS):
            y = y + h * (-f(theta) * y)
        return y

    return hessian_revrev(loss)


PROBES = {
    "hvp-jvp-grad": Variant.calling("mx.jvp(mx.grad(f)) along each basis vector", hessian_fwdrev,
                                    relation="hvp"),
    "vhp-vjp-grad": Variant.calling("mx.vjp(mx.grad(f)) along each basis vector", hessian_revrev,
                                    relation="hvp"),
    "laplacian-vmap": Variant.calling("PINN Laplacian terms: nested mx.grad per axis, mx.vmap",
                                      mlx_laplacian_terms, relation="laplacian"),
    "vmap-hessian": Variant.calling("mx.vmap of the VJP-of-grad Hessian over a batch of points",
                                    mlx_hessian_vmapped, hessian_revrev, relation="vmap"),
    "custom-function": Variant.calling("reverse-over-reverse Hessian through mx.custom_function",
                                       hessian_custom_function, hessian_revrev, custom_function_of,
                                       relation="custom_rules"),
    "custom-function-loop": Variant.calling("mx.compile'd Hessian, mx.custom_function in a loop",
                                            hessian_custom_function_loop, hessian_revrev, custom_function_of,
                                            relation="custom_rules", compiled=True),
    "params-module": Variant.calling("mlx.nn.Module parameters via model.update, reverse-over-reverse",
                                     module_parameter_hessian, hessian_revrev, relation="parameters"),
    "params-tree": Variant.calling("mlx.nn.Module parameter tree: mx.grad over nn.value_and_grad",
                                   module_tree_hessian, relation="parameters", batchable=True, campaign=True,
                                   modes="rev-over-rev"),
    "ode-euler": Variant.calling(f"reverse-over-reverse Hessian of a {ODE_STEPS}-step Euler Neural-ODE loss",
                                 hessian_ode_euler, hessian_revrev, relation="neural_ode"),
}
