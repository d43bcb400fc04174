"""MLX: Hessians composed from ``mx.grad``, ``mx.jvp``, ``mx.vjp``, ``mx.vmap`` and ``mx.compile``.

MLX has no ``hessian``; each variant builds one from the transforms, as a small helper
function that an emitted reproducer carries verbatim. Everything runs on the CPU stream,
the only device with float64, selected per call with ``mx.stream(mx.cpu)`` and never by
changing MLX's default device at import.

Known properties of MLX 0.32 on the CPU (measured by ``benchmarks/mlx_accuracy.py``):

- float64 ``exp``, ``sin``, ``cos`` (and ``erf``) are computed by rounding the argument to
  float32, evaluating in float32 and widening the result: float32 accuracy and float32
  range (``exp(89.0)`` is ``inf`` in float64), primal and derivatives alike. float64
  ``sigmoid`` and ``logaddexp`` have float32 accuracy too; ``tanh`` and ``log`` are
  accurate to float64.
- the JVP of a scatter is not implemented, and ``mx.grad`` of any program that indexes
  its input produces one, so the forward-over-reverse variants cannot differentiate
  ``gather``; those programs are ``Unsupported`` there, and the reverse-over-reverse
  variants handle them.
- ``mx.compile`` on the CPU writes C++ for each new fused kernel and builds it with
  ``g++`` (about 0.5 s a kernel, cached in ``$TMPDIR/mlx/<version>/cpu``); without ``g++``
  on ``PATH`` it silently runs the graph unfused, so the compiled variants then test less.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import re
import shutil
from collections.abc import Mapping
from typing import Any, final

import numpy as np

from backends.base import Backend, Variant
from backends.lowering import Absent, Lowering, Namespace
from backends.registry import register

__all__ = [
    "MLX_LOWERINGS",
    "MlxBackend",
    "hessian_fwdrev",
    "hessian_fwdrev_vmap",
    "hessian_revrev",
    "hessian_revrev_vmap",
]


# Core ``mx`` ops rather than ``mlx.nn`` activations: ``mlx.nn.relu/softplus/leaky_relu``
# are wrapped in ``mx.compile``, which would make every "eager" variant a compiled one,
# and ``mlx.nn.leaky_relu`` is ``maximum(alpha * a, a)``, which is the catalogue's op only
# for 0 <= alpha <= 1.
MLX_LOWERINGS: dict[str, Lowering | Absent] = {
    "const": lambda m, value: m.mx.array(value, dtype=m.dtype),
    "neg": lambda m, a: -a,
    "square": lambda m, a: m.mx.square(a),
    "powi": lambda m, a, p: a**p,
    "sin": lambda m, a: m.mx.sin(a),
    "cos": lambda m, a: m.mx.cos(a),
    "tanh": lambda m, a: m.mx.tanh(a),
    "exp": lambda m, a: m.mx.exp(a),
    "log": lambda m, a: m.mx.log(a),
    "sigmoid": lambda m, a: m.mx.sigmoid(a),
    "softplus": lambda m, a: m.mx.logaddexp(a, 0.0),
    "add": lambda m, a, b: a + b,
    "sub": lambda m, a, b: a - b,
    "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b,
    "relu": lambda m, a: m.mx.maximum(a, 0.0),
    "abs": lambda m, a: m.mx.abs(a),
    "leaky_relu": lambda m, a, alpha: m.mx.where(a > 0, a, alpha * a),
    "clip": lambda m, a, lo, hi: m.mx.clip(a, lo, hi),
    "maximum": lambda m, a, b: m.mx.maximum(a, b),
    "minimum": lambda m, a, b: m.mx.minimum(a, b),
    "where": lambda m, c, a, b: m.mx.where(c > 0, a, b),
    "sum": lambda m, a: m.mx.sum(a),
    "mean": lambda m, a: m.mx.mean(a),
    "gather": lambda m, a, idx: a[m.mx.array(list(idx))],
    "matmul": lambda m, a, b: m.mx.matmul(a, b),
}


# --- the Hessian compositions (emitted verbatim into reproducers) ----------------------


def hessian_fwdrev(f):
    """Forward-over-reverse: H[:, j] is the JVP of ``mx.grad(f)`` along e_j, one per j."""
    import mlx.core as mx

    grad = mx.grad(f)

    def hessian(x):
        basis = mx.eye(x.shape[0], dtype=x.dtype)
        columns = [mx.jvp(grad, [x], [basis[j]])[1][0] for j in range(x.shape[0])]
        return mx.stack(columns, axis=1)

    return hessian


def hessian_fwdrev_vmap(f):
    """Forward-over-reverse: the JVP of ``mx.grad(f)`` vmapped over the basis vectors."""
    import mlx.core as mx

    grad = mx.grad(f)

    def hessian(x):
        def column(v):
            return mx.jvp(grad, [x], [v])[1][0]

        return mx.vmap(column, in_axes=0, out_axes=1)(mx.eye(x.shape[0], dtype=x.dtype))

    return hessian


def hessian_revrev(f):
    """Reverse-over-reverse: H[i, :] is the VJP of ``mx.grad(f)`` with cotangent e_i."""
    import mlx.core as mx

    grad = mx.grad(f)

    def hessian(x):
        basis = mx.eye(x.shape[0], dtype=x.dtype)
        rows = [mx.vjp(grad, [x], [basis[i]])[1][0] for i in range(x.shape[0])]
        return mx.stack(rows, axis=0)

    return hessian


def hessian_revrev_vmap(f):
    """Reverse-over-reverse: the VJP of ``mx.grad(f)`` vmapped over the basis cotangents."""
    import mlx.core as mx

    grad = mx.grad(f)

    def hessian(x):
        def row(v):
            return mx.vjp(grad, [x], [v])[1][0]

        return mx.vmap(row, in_axes=0, out_axes=0)(mx.eye(x.shape[0], dtype=x.dtype))

    return hessian


# MLX says "[scatter] JVP not yet implemented", "[Primitive::jvp] Not implemented for X",
# "JVP is not implemented for cumulative prod/min/max", "[Pad::vmap] ... is not supported".
_NOT_IMPLEMENTED = re.compile(
    r"not (yet )?implemented|\b(jvp|vjp|vmap)\b.*not supported", re.IGNORECASE
)


@final
class MlxBackend(Backend):
    name = "mlx"
    distribution = "mlx"
    extra = "mlx"
    modules = ("mlx.core",)
    variants = {
        "fwdrev": Variant(
            "JVP of mx.grad(f) along each basis vector (Python loop), eager",
            lambda m, f: m.hessian_fwdrev(f),
            (hessian_fwdrev,),
        ),
        "fwdrev-vmap": Variant(
            "JVP of mx.grad(f) vmapped over the basis, eager",
            lambda m, f: m.hessian_fwdrev_vmap(f),
            (hessian_fwdrev_vmap,),
        ),
        "revrev": Variant(
            "VJP of mx.grad(f) with each basis cotangent (Python loop), eager",
            lambda m, f: m.hessian_revrev(f),
            (hessian_revrev,),
        ),
        "revrev-vmap": Variant(
            "VJP of mx.grad(f) vmapped over the basis cotangents, eager",
            lambda m, f: m.hessian_revrev_vmap(f),
            (hessian_revrev_vmap,),
        ),
        "compile": Variant(
            "mx.compile of the forward-over-reverse loop (fused CPU kernels)",
            lambda m, f: m.mx.compile(m.hessian_fwdrev(f)),
            (hessian_fwdrev,),
        ),
        "compile-revrev": Variant(
            "mx.compile of the reverse-over-reverse loop (fused CPU kernels)",
            lambda m, f: m.mx.compile(m.hessian_revrev(f)),
            (hessian_revrev,),
        ),
    }
    gradient = staticmethod(lambda m, f: m.mx.grad(f))
    lowerings = MLX_LOWERINGS
    source_imports = "import mlx.core as mx"

    def namespace(self, dtype: str) -> Namespace:
        import mlx.core as mx

        return Namespace(mx=mx, dtype=getattr(mx, dtype))

    def source_names(self, dtype: str) -> Mapping[str, str]:
        return {"mx": "mx", "dtype": f"mx.{dtype}"}

    def precision(self, dtype: str) -> contextlib.AbstractContextManager[Any]:
        # float64 exists only on the CPU; float32 runs there too, so both dtypes see
        # the same kernels and the emitted script (which sets the CPU device) matches.
        import mlx.core as mx

        return mx.stream(mx.cpu)

    def source_setup(self, dtype: str) -> str:
        return "mx.set_default_device(mx.cpu)"

    def environment_report(self) -> str:
        import mlx.core as mx

        distributions = sorted(
            f"{d.metadata['Name']}=={d.version}"
            for d in importlib.metadata.distributions()
            if (d.metadata["Name"] or "").lower() in ("mlx", "mlx-cpu", "mlx-metal", "mlx-cuda")
        )
        compiler = shutil.which("g++") or "not on PATH (mx.compile runs the graph unfused)"
        return "\n".join(
            [
                " ".join(distributions) or f"mlx=={mx.__version__}",
                f"python {platform.python_version()} on {platform.platform()}",
                f"default device: {mx.default_device()}; Metal available: {mx.metal.is_available()}",
                f"g++ for mx.compile on the CPU: {compiler}",
            ]
        )

    def to_numpy(self, value: Any) -> np.ndarray:
        import mlx.core as mx

        mx.eval(value)
        return np.array(value)

    def source_to_numpy(self, expr: str) -> str:
        return f"np.array({expr})"

    def unsupported_reason(self, exc: BaseException) -> str | None:
        message = str(exc)
        if _NOT_IMPLEMENTED.search(message):
            return f"{type(exc).__name__}: {message.splitlines()[0]}"
        return super().unsupported_reason(exc)


register(MlxBackend())
