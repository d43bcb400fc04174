"""PyTorch probes (see ``hessdiff.backends.scenarios``): torch.func and torch.autograd HVPs, the
PINN Laplacian on the tape, vmap, torch.compile, torch.autograd.Function, functional_call (in
a flat vector, and in a parameter dict), a fixed-step Neural-ODE loss."""

from __future__ import annotations

from hessdiff.backends.base import Variant
from hessdiff.backends.scenarios.ode_problem import ODE_STEPS

__all__ = ["PROBES"]


def func_hessian_by_jvp_of_grad(f):
    """H[:, j] = torch.func.jvp(torch.func.grad(f), (x,), (e_j,)): HVP columns."""
    import torch

    def hessian(x):
        grad = torch.func.grad(f)
        basis = torch.eye(x.shape[0], dtype=x.dtype)
        return torch.stack([torch.func.jvp(grad, (x,), (v,))[1] for v in basis], dim=1)

    return hessian


def func_hessian_by_vjp_of_grad(f):
    """H[i, :] = torch.func.vjp(torch.func.grad(f), x) pulled back along e_i: HVP rows."""
    import torch

    def hessian(x):
        _, pullback = torch.func.vjp(torch.func.grad(f), x)
        basis = torch.eye(x.shape[0], dtype=x.dtype)
        return torch.stack([pullback(v)[0] for v in basis], dim=0)

    return hessian


def autograd_hessian_by_hvp(f):
    """H[:, j] = torch.autograd.functional.hvp(f, x, e_j)[1]."""
    import torch

    def hessian(x):
        basis = torch.eye(x.shape[0], dtype=x.dtype)
        return torch.stack([torch.autograd.functional.hvp(f, x, v)[1] for v in basis], dim=1)

    return hessian


def autograd_hessian_by_vhp(f):
    """H[i, :] = torch.autograd.functional.vhp(f, x, e_i)[1]."""
    import torch

    def hessian(x):
        basis = torch.eye(x.shape[0], dtype=x.dtype)
        return torch.stack([torch.autograd.functional.vhp(f, x, v)[1] for v in basis], dim=0)

    return hessian


def autograd_laplacian_terms(f):
    """The PINN Laplacian as PINN code writes it: torch.autograd.grad with create_graph on a
    batch of points (f mapped with torch.func.vmap), then once more per axis."""
    import torch

    def diagonal(x):
        batch = torch.stack([x, x]).detach().requires_grad_(True)
        u = torch.func.vmap(f)(batch)
        zeros = torch.zeros((x.shape[0], x.shape[0]), dtype=x.dtype)
        if not u.requires_grad:
            return zeros  # u does not depend on the input: autograd.grad would raise
        (grad,) = torch.autograd.grad(u.sum(), batch, create_graph=True)
        if not grad.requires_grad:
            # The gradient does not depend on the input (an affine u): autograd.grad would
            # raise "does not require grad"; PINN code special-cases it the same way.
            return zeros
        terms = [
            torch.autograd.grad(grad[:, i].sum(), batch, create_graph=True, allow_unused=True,
                                materialize_grads=True)[0][:, i]
            for i in range(x.shape[0])
        ]
        return torch.diag(torch.stack(terms, dim=1)[0]).detach()

    return diagonal


def func_laplacian_terms(f):
    """PINN Laplacian terms by nested torch.func.grad per axis, torch.func.vmap over points."""
    import torch

    def terms(x):
        def second(i):
            return torch.func.grad(lambda y: torch.func.grad(f)(y)[i])(x)[i]

        return torch.stack([second(i) for i in range(x.shape[0])])

    return lambda x: torch.diag(torch.func.vmap(terms)(torch.stack([x, x]))[0])


def func_hessian_vmapped(f):
    """torch.func.vmap(torch.func.hessian(f)) over a batch of points; the first one's."""
    import torch

    return lambda x: torch.func.vmap(torch.func.hessian(f))(torch.stack([x, x]))[0]


def compiled_hessian(f):
    """torch.compile(torch.func.hessian(f)) with the "aot_eager" backend: the compiler's
    graph capture and functionalisation, without needing a C++ toolchain.

    Dynamo's caches are reset first: every program hessdiff lowers runs the same code
    object with other closure contents, so in one long process Dynamo would recompile
    until its recompile limit fails the call (FailOnRecompileLimitHit), a fault of the
    harness's reuse that no standalone script shows."""
    import torch

    torch._dynamo.reset()
    return torch.compile(torch.func.hessian(f), backend="aot_eager", fullgraph=True)


def autograd_function_of(f):
    """``g(x, scale) = f(x) * scale`` as a torch.autograd.Function with backward and jvp.

    ``scale`` is not differentiated (its tangent is None). ``generate_vmap_rule`` lets the
    torch.func transforms through; backward and jvp are torch.func transforms of ``f``.
    """
    import torch

    class Scaled(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x, scale):
            return f(x) * scale

        @staticmethod
        def setup_context(ctx, inputs, output):
            x, scale = inputs
            ctx.save_for_backward(x, scale)
            ctx.save_for_forward(x, scale)

        @staticmethod
        def backward(ctx, cotangent):
            x, scale = ctx.saved_tensors
            return cotangent * scale * torch.func.grad(f)(x), None

        @staticmethod
        def jvp(ctx, tx, tscale):
            x, scale = ctx.saved_tensors
            y, ty = torch.func.jvp(f, (x,), (tx,))
            return ty * scale if tscale is None else ty * scale + y * tscale

    return Scaled.apply


def func_hessian_autograd_function(f):
    """torch.func.hessian through the torch.autograd.Function (forward over reverse)."""
    import torch

    g = autograd_function_of(f)
    return torch.func.hessian(lambda x: g(x, torch.ones((), dtype=x.dtype)))


def autograd_hessian_autograd_function_loop(f):
    """torch.autograd.functional.hessian (double backward) of the Function called twice in
    a loop with scale 1/2 each."""
    import torch

    g = autograd_function_of(f)

    def looped(x):
        total = torch.zeros((), dtype=x.dtype)
        for _ in range(2):
            total = total + g(x, torch.full((), 0.5, dtype=x.dtype))
        return total

    return lambda x: torch.autograd.functional.hessian(looped, x)


def func_hessian_autograd_function_argnums(f):
    """torch.func.hessian(argnums=(0, 1)) through the Function on ``x`` split in two."""
    import torch

    g = autograd_function_of(f)

    def hessian(x):
        k = (x.shape[0] + 1) // 2
        blocks = torch.func.hessian(
            lambda a, b: g(torch.cat([a, b]), torch.ones((), dtype=x.dtype)), argnums=(0, 1)
        )(x[:k], x[k:])
        return torch.cat([torch.cat([blocks[0][0], blocks[0][1]], dim=1),
                          torch.cat([blocks[1][0], blocks[1][1]], dim=1)], dim=0)

    return hessian


def functional_call_parameter_hessian(f):
    """The Hessian of a torch.nn.Module's loss in its flat parameters, the torch.func way:
    the parameters as a dict passed to torch.func.functional_call."""
    import torch

    class Model(torch.nn.Module):
        def __init__(self, first, second):
            super().__init__()
            self.first = torch.nn.Parameter(first)
            self.second = torch.nn.Parameter(second)

        def forward(self):
            return f(torch.cat([self.first, self.second]))

    def hessian(x):
        k = (x.shape[0] + 1) // 2
        model = Model(x[:k].clone(), x[k:].clone())

        def loss(flat):
            params = {"first": flat[:k], "second": flat[k:]}
            return torch.func.functional_call(model, params, ())

        return torch.func.hessian(loss)(x)

    return hessian


def parameter_dict_hessian(f):
    """torch.func.hessian over a parameter dict through torch.func.functional_call.

    The model is an ``nn.Module`` holding an ``nn.Linear(n - 1, 1)`` (weight (1, n - 1)
    and bias; for n = 1, ``nn.Linear(1, 1, bias=False)``), a parameterless submodule
    (``nn.Tanh``) and an int attribute. ``params`` is the dict
    ``{"layer.weight": ..., "layer.bias": ...}`` in ``named_parameters()`` order, filled
    from ``x``; its forward reads ``self.layer.weight`` and ``self.layer.bias`` and returns
    f of them raveled and concatenated in that order. torch.func.hessian returns a dict of
    dicts of blocks (d2L / dp_a dp_b of shape p_a.shape + p_b.shape), assembled in the
    same order. This exercises functional_call's parameter swapping and torch.func's
    dict-of-tensors handling at second order, which a flat vector split by hand does not.
    """
    import math

    import torch

    class Model(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.layer = torch.nn.Linear(max(n - 1, 1), 1, bias=n > 1)
            self.activation = torch.nn.Tanh()
            self.sign = 1

        def forward(self):
            parts = [self.layer.weight.reshape(-1)]
            if self.layer.bias is not None:
                parts.append(self.layer.bias.reshape(-1))
            return self.sign * f(torch.cat(parts))

    def hessian(x):
        model = Model(x.shape[0])
        shapes = {name: p.shape for name, p in model.named_parameters()}
        params, start = {}, 0
        for name, shape in shapes.items():
            params[name] = x[start:start + math.prod(shape)].reshape(shape)
            start += math.prod(shape)
        blocks = torch.func.hessian(lambda p: torch.func.functional_call(model, p, ()))(params)
        sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        return torch.cat([torch.cat([blocks[a][b].reshape(sizes[a], sizes[b]) for b in shapes], dim=1)
                          for a in shapes], dim=0)

    return hessian


def func_hessian_ode_euler(f):
    """A Neural-ODE loss: dy/dt = -f(theta) y, y(0) = 1, ODE_STEPS Euler steps (Python
    loop) on [0, 1]; torch.func.hessian of y(1) in theta."""
    import torch

    def loss(theta):
        h = 1.0 / ODE_STEPS
        y = torch.ones((), dtype=theta.dtype)
        for _ in range(ODE_STEPS):
            y = y + h * (-f(theta) * y)
        return y

    return torch.func.hessian(loss)


PROBES = {
    "hvp-jvp-grad": Variant.calling("torch.func.jvp(torch.func.grad(f)) along each basis vector",
                                    func_hessian_by_jvp_of_grad, relation="hvp"),
    "vhp-vjp-grad": Variant.calling("torch.func.vjp(torch.func.grad(f)) along each basis vector",
                                    func_hessian_by_vjp_of_grad, relation="hvp"),
    "hvp-autograd": Variant.calling("torch.autograd.functional.hvp(f, x, v) for each basis v",
                                    autograd_hessian_by_hvp, relation="hvp"),
    "vhp-autograd": Variant.calling("torch.autograd.functional.vhp(f, x, v) for each basis v",
                                    autograd_hessian_by_vhp, relation="hvp"),
    "laplacian-autograd": Variant.calling("PINN Laplacian terms: torch.autograd.grad(create_graph=True)",
                                          autograd_laplacian_terms, relation="laplacian"),
    "laplacian-vmap": Variant.calling("PINN Laplacian terms: nested torch.func.grad, torch.func.vmap",
                                      func_laplacian_terms, relation="laplacian"),
    "vmap-hessian": Variant.calling("torch.func.vmap(torch.func.hessian(f)) over a batch of points",
                                    func_hessian_vmapped, relation="vmap"),
    "jit-compile": Variant.calling("torch.compile(torch.func.hessian(f), backend='aot_eager')",
                                   compiled_hessian, relation="compiled", compiled=True),
    "custom-function": Variant.calling("torch.func.hessian through torch.autograd.Function (jvp, vmap)",
                                       func_hessian_autograd_function, autograd_function_of,
                                       relation="custom_rules"),
    "custom-function-loop": Variant.calling("autograd.functional.hessian, the Function in a loop",
                                            autograd_hessian_autograd_function_loop, autograd_function_of,
                                            relation="custom_rules"),
    "custom-function-argnums": Variant.calling("torch.func.hessian(argnums=(0, 1)) through the Function",
                                               func_hessian_autograd_function_argnums, autograd_function_of,
                                               relation="custom_rules"),
    "params-functional-call": Variant.calling("torch.func.functional_call parameters, torch.func.hessian",
                                              functional_call_parameter_hessian, relation="parameters"),
    "params-dict": Variant.calling("torch.func.hessian over a functional_call parameter dict of nn.Linear",
                                   parameter_dict_hessian, relation="parameters", batchable=True,
                                   campaign=True, modes="fwd-over-rev"),
    "ode-euler": Variant.calling(f"torch.func.hessian of a {ODE_STEPS}-step Euler Neural-ODE loss (Python loop)",
                                 func_hessian_ode_euler, relation="neural_ode"),
}
