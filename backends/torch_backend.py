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

from backends.base import Backend, Variant
from backends.lowering import Absent, Lowering, Namespace
from backends.registry import register

if TYPE_CHECKING:
    import torch

__all__ = ["TORCH_LOWERINGS", "TorchBackend", "autograd_hessian"]


TORCH_LOWERINGS: dict[str, Lowering | Absent] = {
    "const": lambda m, value: m.torch.as_tensor(value, dtype=m.dtype),
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
    "where": lambda m, c, a, b: m.torch.where(c > 0, a, b),
    "sum": lambda m, a: m.torch.sum(a),
    "mean": lambda m, a: m.torch.mean(a),
    # An explicit integer dtype: ``torch.tensor(())`` would be a float tensor.
    "gather": lambda m, a, idx: a[m.torch.tensor(idx, dtype=m.torch.int64)],
    "matmul": lambda m, a, b: m.torch.matmul(a, b),
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
    distribution = "torch"
    extra = "torch"
    modules = ("torch", "torch.func", "torch.nn.functional")
    variants = {
        "func": Variant(
            "torch.func.hessian(f): jacfwd(jacrev(f)), functorch transforms",
            lambda m, f: m.torch.func.hessian(f),
        ),
        "func-revrev": Variant(
            "torch.func.jacrev(torch.func.jacrev(f))",
            lambda m, f: m.torch.func.jacrev(m.torch.func.jacrev(f)),
        ),
        "func-fwdfwd": Variant(
            "torch.func.jacfwd(torch.func.jacfwd(f))",
            lambda m, f: m.torch.func.jacfwd(m.torch.func.jacfwd(f)),
        ),
        "autograd": Variant(
            "torch.autograd.functional.hessian(f, x): reverse-over-reverse on the tape",
            lambda m, f: m.autograd_hessian(f),
            helpers=(autograd_hessian,),
        ),
        "autograd-vec": Variant(
            "torch.autograd.functional.hessian(f, x, vectorize=True): rows batched by vmap",
            lambda m, f: m.autograd_hessian(f, vectorize=True),
            helpers=(autograd_hessian,),
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


register(TorchBackend())
