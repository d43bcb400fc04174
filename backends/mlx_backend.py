"""MLX: Hessians composed from ``mx.grad``, ``mx.jvp``, ``mx.vjp``, ``mx.vmap`` and ``mx.compile``.

MLX has no ``hessian``; each variant builds one from the transforms, with a small helper
function (``hessdiff.backends.mlx_hessians``) that an emitted reproducer carries verbatim.
Everything runs on the CPU stream, the only device with float64, selected per call with
``mx.stream(mx.cpu)`` and never by changing MLX's default device at import.

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

from hessdiff.backends.base import Backend, Variant
from hessdiff.backends.lowering import Absent, Lowering, Namespace, Spellings
from hessdiff.backends.mlx_hessians import (hessian_fwdrev, hessian_fwdrev_vmap, hessian_revrev,
                                            hessian_revrev_vmap)
from hessdiff.backends.registry import register

__all__ = ["MLX_LOWERINGS", "MlxBackend"]


def _reversed_along(axis: int) -> tuple[slice | type[Ellipsis], ...]:
    """The index that reverses an array along ``axis`` (``a[:, ::-1]`` for axis 1, ``a[..., ::-1]``
    for -1): flip for a release without ``mx.flip``."""
    if axis >= 0:
        return (*(slice(None),) * axis, slice(None, None, -1))
    return (Ellipsis, slice(None, None, -1), *(slice(None),) * (-1 - axis))


# Core ``mx`` ops rather than ``mlx.nn`` activations: ``mlx.nn.relu/softplus/leaky_relu``
# are wrapped in ``mx.compile``, which would make every "eager" variant a compiled one,
# and ``mlx.nn.leaky_relu`` is ``maximum(alpha * a, a)``, which is the catalogue's op only
# for 0 <= alpha <= 1.
MLX_LOWERINGS: dict[str, Lowering | Spellings | Absent] = {
    "const": lambda m, value, integer=False: m.mx.array(
        value, dtype=(m.mx.int64 if integer == "int64" else m.mx.int32) if integer else m.dtype),
    # a bool mask from the Python bools a user writes: mx.array([True, False])
    "mask": lambda m, flags: m.mx.array(flags),
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
    # a float condition is c > 0; a bool mask (``mask``: a framework bool array) as it is
    "where": lambda m, c, a, b, mask=False: m.mx.where(c if mask else c > 0, a, b),
    # sum and mean print as before unless given an axis or keepdims.
    "sum": lambda m, a, axis=None, keepdims=False: (
        m.mx.sum(a) if axis is None and not keepdims else m.mx.sum(a, axis=axis, keepdims=keepdims)
    ),
    "mean": lambda m, a, axis=None, keepdims=False: (
        m.mx.mean(a) if axis is None and not keepdims else m.mx.mean(a, axis=axis, keepdims=keepdims)
    ),
    "gather": lambda m, a, idx: a[m.mx.array(list(idx))],
    "matmul": lambda m, a, b: m.mx.matmul(a, b),
    # Unary and special functions.
    "sqrt": lambda m, a: m.mx.sqrt(a),
    "rsqrt": lambda m, a: m.mx.rsqrt(a),
    "reciprocal": lambda m, a: m.mx.reciprocal(a),
    "exp2": Absent("mlx.core has no exp2"),
    "expm1": lambda m, a: m.mx.expm1(a),
    "log2": lambda m, a: m.mx.log2(a),
    "log10": lambda m, a: m.mx.log10(a),
    "log1p": lambda m, a: m.mx.log1p(a),
    "tan": lambda m, a: m.mx.tan(a),
    "arcsin": lambda m, a: m.mx.arcsin(a),
    "arccos": lambda m, a: m.mx.arccos(a),
    "arctan": lambda m, a: m.mx.arctan(a),
    "sinh": lambda m, a: m.mx.sinh(a),
    "cosh": lambda m, a: m.mx.cosh(a),
    "arcsinh": lambda m, a: m.mx.arcsinh(a),
    "arccosh": lambda m, a: m.mx.arccosh(a),
    "arctanh": lambda m, a: m.mx.arctanh(a),
    "erf": lambda m, a: m.mx.erf(a),
    "erfc": Absent("mlx.core has no erfc"),
    "erfinv": lambda m, a: m.mx.erfinv(a),
    "lgamma": Absent("mlx.core has no lgamma"),
    "digamma": Absent("mlx.core has no digamma"),
    "i0": Absent("mlx.core has no Bessel functions"),
    "i1": Absent("mlx.core has no Bessel functions"),
    "sign": lambda m, a: m.mx.sign(a),
    "floor": lambda m, a: m.mx.floor(a),
    "ceil": lambda m, a: m.mx.ceil(a),
    "round": lambda m, a: m.mx.round(a),
    # Activations: mlx.nn's definitions written with core ops (mlx.nn wraps them in
    # mx.compile, which would make every eager variant a compiled one).
    "relu6": lambda m, a: m.mx.minimum(m.mx.maximum(a, 0.0), 6.0),
    "elu": lambda m, a, alpha: m.mx.where(a > 0, a, alpha * (m.mx.exp(a) - 1)),
    "selu": lambda m, a: 1.0507009873554805 * m.mx.where(a > 0, a, 1.6732632423543772 * (m.mx.exp(a) - 1)),
    "celu": lambda m, a, alpha: m.mx.maximum(a, 0.0) + alpha * (m.mx.exp(m.mx.minimum(a, 0.0) / alpha) - 1),
    "gelu": lambda m, a: a * (1 + m.mx.erf(a / 1.4142135623730951)) / 2,
    "gelu_tanh": lambda m, a: 0.5 * a * (1 + m.mx.tanh(0.7978845608028654 * (a + 0.044715 * a**3))),
    "silu": lambda m, a: a * m.mx.sigmoid(a),
    "mish": lambda m, a: a * m.mx.tanh(m.mx.logaddexp(a, 0.0)),
    "softsign": lambda m, a: a / (1 + m.mx.abs(a)),
    "log_sigmoid": lambda m, a: -m.mx.logaddexp(-a, 0.0),
    "hard_tanh": lambda m, a: m.mx.minimum(m.mx.maximum(a, -1.0), 1.0),
    "hard_sigmoid": Absent("neither mlx.core nor mlx.nn has hard_sigmoid"),
    # Binary.
    "pow": lambda m, a, b: m.mx.power(a, b),
    "arctan2": lambda m, a, b: m.mx.arctan2(a, b),
    "hypot": Absent("mlx.core has no hypot"),
    "logaddexp": lambda m, a, b: m.mx.logaddexp(a, b),
    "xlogy": Absent("mlx.core has no xlogy"),
    "remainder": lambda m, a, b: m.mx.remainder(a, b),
    "copysign": Absent("mlx.core has no copysign"),
    "ldexp": Absent("mlx.core has no ldexp"),
    # Reductions.
    "prod": lambda m, a, axis, keepdims: m.mx.prod(a, axis=axis, keepdims=keepdims),
    "logsumexp": lambda m, a, axis, keepdims: m.mx.logsumexp(a, axis=axis, keepdims=keepdims),
    "var": lambda m, a, axis, keepdims: m.mx.var(a, axis=axis, keepdims=keepdims),
    "std": lambda m, a, axis, keepdims: m.mx.std(a, axis=axis, keepdims=keepdims),
    # With an ord and no axis mx.linalg.norm takes a matrix norm of a 2-D array: a whole
    # array's vector norm is the norm of it flattened.
    "norm": lambda m, a, axis, keepdims, ord=2: (
        m.mx.linalg.norm(a, axis=axis, keepdims=keepdims) if ord == 2
        else m.mx.linalg.norm(a, float("inf") if ord == "inf" else ord, axis=axis, keepdims=keepdims)
        if axis is not None
        else m.mx.reshape(m.mx.linalg.norm(m.mx.reshape(a, (-1,)), float("inf") if ord == "inf" else ord, axis=0),
                          [1] * a.ndim if keepdims else [])
    ),
    "max": lambda m, a, axis, keepdims: m.mx.max(a, axis=axis, keepdims=keepdims),
    "min": lambda m, a, axis, keepdims: m.mx.min(a, axis=axis, keepdims=keepdims),
    "sort": lambda m, a: m.mx.sort(a, axis=-1),
    "sum_where": Absent("mlx.core reductions take no mask (mx.sum has no where= argument)"),
    "mean_where": Absent("mlx.core reductions take no mask (mx.mean has no where= argument)"),
    "cumsum": lambda m, a, axis: m.mx.cumsum(a, axis=axis),
    "cumprod": lambda m, a, axis: m.mx.cumprod(a, axis=axis),
    "softmax": lambda m, a, axis: m.mx.softmax(a, axis=axis),
    "log_softmax": lambda m, a, axis: a - m.mx.logsumexp(a, axis=axis, keepdims=True),
    # Linear algebra (mx.linalg runs on the CPU stream, where everything here runs).
    "dot": lambda m, a, b: m.mx.inner(a, b),
    "outer": lambda m, a, b: m.mx.outer(a, b),
    "trace": lambda m, a: m.mx.trace(a),
    "diagonal": lambda m, a: m.mx.diagonal(a),
    "det": lambda m, a: m.mx.linalg.det(a),
    "inv": Absent("mx.linalg.inv has no VJP (mlx 0.32.4: [Primitive::vjp] Not implemented for Inverse), so "
                  "no MLX variant can take its Hessian"),
    # Both exist on the CPU stream, but (mlx 0.32.4) neither differentiates with respect to
    # the matrix: mx.grad through solve(A, b) with A traced raises "[gather_axis] Cannot
    # calculate VJP with respect to indices" (its LU pivots are not stop_gradient'ed), and
    # cholesky raises "[Primitive::vjp] Not implemented for Cholesky".
    "solve": Absent("mx.linalg.solve is not differentiable with respect to the matrix (mlx 0.32.4: "
                    "ValueError [gather_axis] Cannot calculate VJP with respect to indices)"),
    "cholesky": Absent("mx.linalg.cholesky has no VJP or JVP (mlx 0.32.4: "
                       "[Primitive::vjp] Not implemented for Cholesky)"),
    # Shape and data movement.
    "reshape": lambda m, a, shape: m.mx.reshape(a, shape),
    "transpose": lambda m, a: m.mx.transpose(a),
    # mx.flip is new in mlx 0.32; older releases reverse with a negative-step slice.
    "flip": Spellings(lambda m, a, axis: m.mx.flip(a, axis=axis), lambda m, a, axis: a[_reversed_along(axis)]),
    "slice": lambda m, a, start, stop, step: a[start:stop:step],
    "roll": lambda m, a, shift, axis: m.mx.roll(a, shift, axis),
    "tile": lambda m, a, reps: m.mx.tile(a, reps),
    "repeat": lambda m, a, repeats: m.mx.repeat(a, repeats),
    "pad": lambda m, a, before, after: m.mx.pad(a, [(before, after)]),
    "broadcast_to": lambda m, a, shape: m.mx.broadcast_to(a, shape),
    "concatenate": lambda m, a, b: m.mx.concatenate([a, b]),
    "stack": lambda m, a, b: m.mx.stack([a, b]),
}


# MLX says "[scatter] JVP not yet implemented", "[Primitive::jvp] Not implemented for X",
# "JVP is not implemented for cumulative prod/min/max", "[Pad::vmap] ... is not supported";
# mx.compile before float64 support (mlx 0.25.2): "Unsupported compilation type float64",
# "Unsupported constant type".
_NOT_IMPLEMENTED = re.compile(
    r"not (yet )?implemented|\bNYI\b|\b(jvp|vjp|vmap)\b.*not supported|cannot calculate (jvp|vjp)"
    r"|unsupported (compilation|constant) type", re.IGNORECASE
)


@final
class MlxBackend(Backend):
    name = "mlx"
    framework = "mlx"
    distribution = "mlx"
    extra = "mlx"
    modules = ("mlx.core",)
    variants = {
        "fwdrev": Variant.calling("JVP of mx.grad(f) along each basis vector (Python loop), eager",
                                  hessian_fwdrev, modes="fwd-over-rev"),
        "fwdrev-vmap": Variant.calling("JVP of mx.grad(f) vmapped over the basis, eager",
                                       hessian_fwdrev_vmap, batchable=True, modes="fwd-over-rev",
                                       machinery=("vmap",)),
        "revrev": Variant.calling("VJP of mx.grad(f) with each basis cotangent (Python loop), eager",
                                  hessian_revrev, modes="rev-over-rev"),
        "revrev-vmap": Variant.calling("VJP of mx.grad(f) vmapped over the basis cotangents, eager",
                                       hessian_revrev_vmap, batchable=True, modes="rev-over-rev",
                                       machinery=("vmap",)),
        "compile": Variant(
            "mx.compile of the forward-over-reverse loop (fused CPU kernels)",
            lambda m, f: m.mx.compile(m.hessian_fwdrev(f)),
            (hessian_fwdrev,),
            compiled=True,
            batchable=True,
            modes="fwd-over-rev",
        ),
        "compile-revrev": Variant(
            "mx.compile of the reverse-over-reverse loop (fused CPU kernels)",
            lambda m, f: m.mx.compile(m.hessian_revrev(f)),
            (hessian_revrev,),
            compiled=True,
            batchable=True,
            modes="rev-over-rev",
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

    def batched(self, m: Any, hessian: Any) -> Any:
        return m.mx.vmap(hessian)

    def probes(self) -> Mapping[str, Variant]:
        """The relations' probes: ``hessdiff.backends.scenarios.mlx_probes``."""
        from hessdiff.backends.scenarios.mlx_probes import PROBES

        return PROBES


register(MlxBackend())
