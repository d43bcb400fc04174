"""PyTorch: ``torch.func`` (functorch transforms) and ``torch.autograd.functional``.

The two APIs reach a Hessian by different machinery: ``torch.func`` composes vmap'd
jacfwd/jacrev transforms, ``torch.autograd.functional.hessian`` differentiates the tape
twice with ``create_graph=True`` (optionally vectorised with vmap). Each is a variant so
their disagreements show up as findings.

``torch`` is imported lazily, so this module imports (and reports the backend as
unavailable) without PyTorch installed.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, final

import numpy as np

from hessdiff.backends.base import Backend, Variant
from hessdiff.backends.lowering import Absent, Lowering, Namespace, flags
from hessdiff.backends.registry import register

if TYPE_CHECKING:
    import torch

__all__ = ["TORCH_LOWERINGS", "TorchBackend", "autograd_hessian"]


TORCH_LOWERINGS: dict[str, Lowering | Absent] = {
    "const": lambda m, value, integer=False: m.torch.as_tensor(
        value, dtype=(m.torch.int64 if integer == "int64" else m.torch.int32) if integer else m.dtype),
    # a bool mask from the Python bools a user writes: torch.tensor([True, False])
    "mask": lambda m, flags: m.torch.tensor(flags),
    "neg": lambda m, a: -a,
    "square": lambda m, a: m.torch.square(a),
    "powi": lambda m, a, p: a**p,
    "sin": lambda m, a: m.torch.sin(a),
    "cos": lambda m, a: m.torch.cos(a),
    "tanh": lambda m, a: m.torch.tanh(a),
    "exp": lambda m, a: m.torch.exp(a),
    "log": lambda m, a: m.torch.log(a),
    "sigmoid": lambda m, a: m.torch.sigmoid(a),
    # F.softplus switches to the identity above ``threshold=20``, as users get it.
    "softplus": lambda m, a: m.F.softplus(a),
    "add": lambda m, a, b: a + b,
    "sub": lambda m, a, b: a - b,
    "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b,
    "relu": lambda m, a: m.torch.relu(a),
    "abs": lambda m, a: m.torch.abs(a),
    "leaky_relu": lambda m, a, alpha: m.F.leaky_relu(a, negative_slope=alpha),
    "clip": lambda m, a, lo, hi: m.torch.clamp(a, lo, hi),
    "maximum": lambda m, a, b: m.torch.maximum(a, b),
    "minimum": lambda m, a, b: m.torch.minimum(a, b),
    # a float condition is c > 0; a bool mask (``mask``: a framework bool array) as it is
    "where": lambda m, c, a, b, mask=False: m.torch.where(c if mask else c > 0, a, b),
    # sum and mean print as before unless given an axis or keepdims.
    "sum": lambda m, a, axis=None, keepdims=False: (
        m.torch.sum(a) if axis is None and not keepdims else m.torch.sum(a, dim=axis, keepdim=keepdims)
    ),
    "mean": lambda m, a, axis=None, keepdims=False: (
        m.torch.mean(a) if axis is None and not keepdims else m.torch.mean(a, dim=axis, keepdim=keepdims)
    ),
    # An explicit integer dtype: ``torch.tensor(())`` would be a float tensor.
    "gather": lambda m, a, idx: a[m.torch.tensor(idx, dtype=m.torch.int64)],
    "matmul": lambda m, a, b: m.torch.matmul(a, b),
    # Unary and special functions.
    "sqrt": lambda m, a: m.torch.sqrt(a),
    "rsqrt": lambda m, a: m.torch.rsqrt(a),
    "reciprocal": lambda m, a: m.torch.reciprocal(a),
    "exp2": lambda m, a: m.torch.exp2(a),
    "expm1": lambda m, a: m.torch.expm1(a),
    "log2": lambda m, a: m.torch.log2(a),
    "log10": lambda m, a: m.torch.log10(a),
    "log1p": lambda m, a: m.torch.log1p(a),
    "tan": lambda m, a: m.torch.tan(a),
    "arcsin": lambda m, a: m.torch.asin(a),
    "arccos": lambda m, a: m.torch.acos(a),
    "arctan": lambda m, a: m.torch.atan(a),
    "sinh": lambda m, a: m.torch.sinh(a),
    "cosh": lambda m, a: m.torch.cosh(a),
    "arcsinh": lambda m, a: m.torch.asinh(a),
    "arccosh": lambda m, a: m.torch.acosh(a),
    "arctanh": lambda m, a: m.torch.atanh(a),
    "erf": lambda m, a: m.torch.erf(a),
    "erfc": lambda m, a: m.torch.erfc(a),
    "erfinv": lambda m, a: m.torch.erfinv(a),
    "lgamma": lambda m, a: m.torch.lgamma(a),
    "digamma": lambda m, a: m.torch.digamma(a),
    "i0": lambda m, a: m.torch.special.i0(a),
    "i1": lambda m, a: m.torch.special.i1(a),
    "sign": lambda m, a: m.torch.sign(a),
    "floor": lambda m, a: m.torch.floor(a),
    "ceil": lambda m, a: m.torch.ceil(a),
    "round": lambda m, a: m.torch.round(a),
    # Activations.
    "relu6": lambda m, a: m.F.relu6(a),
    "elu": lambda m, a, alpha: m.F.elu(a, alpha=alpha),
    "selu": lambda m, a: m.F.selu(a),
    "celu": lambda m, a, alpha: m.F.celu(a, alpha=alpha),
    "gelu": lambda m, a: m.F.gelu(a),
    "gelu_tanh": lambda m, a: m.F.gelu(a, approximate="tanh"),
    "silu": lambda m, a: m.F.silu(a),
    "mish": lambda m, a: m.F.mish(a),
    "softsign": lambda m, a: m.F.softsign(a),
    "log_sigmoid": lambda m, a: m.F.logsigmoid(a),
    "hard_tanh": lambda m, a: m.F.hardtanh(a),
    "hard_sigmoid": Absent("F.hardsigmoid has no second derivative in any AD mode (torch 2.13.0: derivative for "
                           "aten::hardsigmoid_backward is not implemented; forward AD of it neither)"),
    # Binary.
    "pow": lambda m, a, b: m.torch.pow(a, b),
    "arctan2": lambda m, a, b: m.torch.atan2(a, b),
    "hypot": lambda m, a, b: m.torch.hypot(a, b),
    "logaddexp": lambda m, a, b: m.torch.logaddexp(a, b),
    "xlogy": lambda m, a, b: m.torch.xlogy(a, b),
    "remainder": lambda m, a, b: m.torch.remainder(a, b),
    "copysign": lambda m, a, b: m.torch.copysign(a, b),
    # torch.ldexp takes its shift only as a tensor: a Python int becomes one as a user makes it.
    "ldexp": lambda m, a, k: m.torch.ldexp(a, m.torch.as_tensor(k)),
    # Reductions. torch.prod and torch.logsumexp take one dim: a whole-array reduction
    # flattens first (and reshapes to all-ones dims for keepdims).
    "prod": lambda m, a, axis, keepdims: (
        m.torch.prod(a, axis, keepdim=keepdims) if axis is not None
        else (m.torch.prod(a).reshape([1] * a.dim()) if keepdims else m.torch.prod(a))
    ),
    "logsumexp": lambda m, a, axis, keepdims: (
        m.torch.logsumexp(a, axis, keepdim=keepdims) if axis is not None
        else (m.torch.logsumexp(a.reshape(-1), 0).reshape([1] * a.dim()) if keepdims
              else m.torch.logsumexp(a.reshape(-1), 0))
    ),
    "var": lambda m, a, axis, keepdims: m.torch.var(a, dim=axis, correction=0, keepdim=keepdims),
    "std": lambda m, a, axis, keepdims: m.torch.std(a, dim=axis, correction=0, keepdim=keepdims),
    "norm": lambda m, a, axis, keepdims, ord=2: m.torch.linalg.vector_norm(
        a, float("inf") if ord == "inf" else ord, dim=axis, keepdim=keepdims
    ),
    # amax/amin (not max/min, which return indices along a dim): at a tie they share the
    # gradient evenly among the tied entries, like JAX.
    "max": lambda m, a, axis, keepdims: m.torch.amax(a, dim=axis, keepdim=keepdims),
    "min": lambda m, a, axis, keepdims: m.torch.amin(a, dim=axis, keepdim=keepdims),
    "sort": lambda m, a: m.torch.sort(a, dim=-1).values,
    # torch.masked's reductions take the mask (prototype API, torch >= 1.12).
    "sum_where": lambda m, a, mask, axis=None, keepdims=False: m.torch.masked.sum(
        a, axis, keepdim=keepdims, mask=m.torch.tensor(flags(mask)).reshape(a.shape)
    ),
    "mean_where": lambda m, a, mask, axis=None, keepdims=False: m.torch.masked.mean(
        a, axis, keepdim=keepdims, mask=m.torch.tensor(flags(mask)).reshape(a.shape)
    ),
    "cumsum": lambda m, a, axis: m.torch.cumsum(a, dim=axis),
    "cumprod": lambda m, a, axis: m.torch.cumprod(a, dim=axis),
    "softmax": lambda m, a, axis: m.torch.softmax(a, dim=axis),
    "log_softmax": lambda m, a, axis: m.torch.log_softmax(a, dim=axis),
    # Linear algebra.
    "dot": lambda m, a, b: m.torch.dot(a, b),
    "outer": lambda m, a, b: m.torch.outer(a, b),
    "trace": lambda m, a: m.torch.trace(a),
    "diagonal": lambda m, a: m.torch.diagonal(a),
    "det": lambda m, a: m.torch.linalg.det(a),
    "inv": lambda m, a: m.torch.linalg.inv(a),
    "solve": lambda m, a, b: m.torch.linalg.solve(a, b),
    "cholesky": lambda m, a: m.torch.linalg.cholesky(a),
    # Shape and data movement. Tensors take no negative slice step: a[s:e:-k] is the
    # flipped tensor sliced, with negative bounds mapped i -> -1 - i (the IR requires
    # negative bounds with a negative step).
    "reshape": lambda m, a, shape: m.torch.reshape(a, shape),
    "transpose": lambda m, a: m.torch.transpose(a, 0, 1),
    "flip": lambda m, a, axis: m.torch.flip(a, (axis,)),
    "slice": lambda m, a, start, stop, step: (
        a[start:stop:step] if step > 0 else m.torch.flip(a, (0,))[-1 - start:-1 - stop:-step]
    ),
    "roll": lambda m, a, shift, axis: m.torch.roll(a, shift, axis),
    "tile": lambda m, a, reps: m.torch.tile(a, (reps,)),
    "repeat": lambda m, a, repeats: m.torch.repeat_interleave(a, repeats),
    "pad": lambda m, a, before, after: m.F.pad(a, (before, after)),
    "broadcast_to": lambda m, a, shape: m.torch.broadcast_to(a, shape),
    "concatenate": lambda m, a, b: m.torch.cat([a, b]),
    "stack": lambda m, a, b: m.torch.stack([a, b]),
}


def autograd_hessian(
    f: "Callable[[torch.Tensor], torch.Tensor]", vectorize: bool = False
) -> "Callable[[torch.Tensor], torch.Tensor]":
    """The Hessian function of ``f`` by ``torch.autograd.functional.hessian``.

    That API takes ``(f, x)`` rather than returning a transform like ``torch.func``;
    wrapping it gives a function of ``x`` like ``torch.func.hessian(f)``. It
    differentiates the autograd tape twice (reverse-over-reverse with
    ``create_graph=True``); ``vectorize=True`` batches the second pass with vmap
    instead of looping over rows.
    """
    # This source is copied verbatim into reproducers: it names only ``torch``.
    import torch

    def hessian(x: torch.Tensor) -> torch.Tensor:
        return torch.autograd.functional.hessian(f, x, vectorize=vectorize)

    return hessian


@functools.cache
def _load_jvp_decompositions() -> None:
    # The first forward-mode call imports torch's JVP decompositions, which call the
    # deprecated ``torch.jit.script`` (torch 2.13). Under ``-W error`` that import fails
    # on every call and breaks every jacfwd variant, so load it once with only that
    # torch-internal warning silenced.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning
        )
        with contextlib.suppress(ImportError):
            import torch._decomp.decompositions_for_jvp  # noqa: F401


# Lower-cased fragments of torch's messages for "this transform lacks a rule for that
# op" (vmap batching rules, forward-mode formulas, derivatives), as opposed to a crash
# on an op it claims to support.
_UNSUPPORTED_MARKERS = (
    "batching rule not implemented",
    "does not yet have a batching rule",
    "trying to use forward ad with",
    "is not implemented",
)


@final
class TorchBackend(Backend):
    name = "torch"
    framework = "torch"
    distribution = "torch"
    extra = "torch"
    modules = ("torch", "torch.func", "torch.nn.functional")
    # torch.func transforms compose with vmap (batchable); autograd.functional does not.
    variants = {
        "func": Variant(
            "torch.func.hessian(f): jacfwd(jacrev(f)), functorch transforms",
            lambda m, f: m.torch.func.hessian(f),
            batchable=True,
            modes="fwd-over-rev",
        ),
        "func-revrev": Variant(
            "torch.func.jacrev(torch.func.jacrev(f))",
            lambda m, f: m.torch.func.jacrev(m.torch.func.jacrev(f)),
            batchable=True,
            modes="rev-over-rev",
        ),
        "func-fwdfwd": Variant(
            "torch.func.jacfwd(torch.func.jacfwd(f))",
            lambda m, f: m.torch.func.jacfwd(m.torch.func.jacfwd(f)),
            batchable=True,
            modes="fwd-over-fwd",
        ),
        "autograd": Variant(
            "torch.autograd.functional.hessian(f, x): reverse-over-reverse on the tape",
            lambda m, f: m.autograd_hessian(f),
            helpers=(autograd_hessian,),
            modes="rev-over-rev",
            machinery=("tape",),
        ),
        "autograd-vec": Variant(
            "torch.autograd.functional.hessian(f, x, vectorize=True): rows batched by vmap",
            lambda m, f: m.autograd_hessian(f, vectorize=True),
            helpers=(autograd_hessian,),
            modes="rev-over-rev",
            machinery=("tape", "vmap"),
        ),
    }
    gradient = staticmethod(lambda m, f: m.torch.func.grad(f))
    lowerings = TORCH_LOWERINGS
    source_imports = "import torch\nimport torch.nn.functional as F"

    def namespace(self, dtype: str) -> Namespace:
        import torch
        import torch.func  # noqa: F401 - makes ``torch.func`` an attribute on old versions
        import torch.nn.functional as F

        _load_jvp_decompositions()
        return Namespace(torch=torch, F=F, dtype=getattr(torch, dtype))

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return {"torch": "torch", "F": "F", "dtype": f"torch.{dtype}"}

    def to_numpy(self, value: Any) -> np.ndarray:
        """Copy a torch result to NumPy, materialising internal ZeroTensors.

        ``torch.func`` may return a ZeroTensor (an all-zero tensor without storage, e.g.
        ``jacrev(jacrev(abs))`` at 0). Its ``.numpy()`` raises on recent torch and, before
        pytorch/pytorch#164487, silently returned uninitialised memory (pytorch/pytorch
        #89034), so it is detected explicitly rather than trusted to convert.
        """
        import torch

        if not isinstance(value, torch.Tensor):
            return np.asarray(value)
        if value._is_zerotensor():
            value = torch.zeros(value.shape, dtype=value.dtype)
        return np.array(value.numpy(force=True), copy=True)

    def source_to_numpy(self, expr: str) -> str:
        # The same guard as ``to_numpy``, so a reproducer run on an older torch does not
        # print uninitialised memory for a ZeroTensor Hessian.
        return (
            f"(torch.zeros({expr}.shape, dtype={expr}.dtype) if {expr}._is_zerotensor() "
            f"else {expr}).numpy(force=True)"
        )

    def unsupported_reason(self, exc: BaseException) -> str | None:
        reason = super().unsupported_reason(exc)
        if reason is not None:
            return reason
        message = str(exc)
        lowered = message.lower()
        if isinstance(exc, RuntimeError) and any(m in lowered for m in _UNSUPPORTED_MARKERS):
            return f"{type(exc).__name__}: {message.splitlines()[0]}"
        return None

    def batched(self, m: Any, hessian: Any) -> Any:
        """``torch.func.vmap(hessian, randomness="same")``. No program draws random numbers,
        but a probe builds its ``nn.Module`` inside the Hessian function, and the module's
        random initialisation (replaced by the point through functional_call) is an error
        under vmap's default randomness="error"."""
        return m.torch.func.vmap(hessian, randomness="same")

    def probes(self) -> Mapping[str, Variant]:
        """The relations' probes: ``hessdiff.backends.scenarios.torch_probes``."""
        from hessdiff.backends.scenarios.torch_probes import PROBES

        return PROBES


register(TorchBackend())
