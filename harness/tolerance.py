"""Tolerances as data: how accurately each backend computes, per dtype, as measured.

A backend's Hessian entry is judged against ``factor * eps * (scale + |expected|)``,
where ``scale`` is the oracle's error scale for that entry (the sum of the absolute
values of every term the chain rule adds up) and ``eps`` the backend's *effective* unit
roundoff in that dtype. Most backends compute at their dtype's own precision; MLX's
float64 evaluates transcendental functions only to float32 accuracy and range, so its
float64 row carries float32's eps and range. The numbers come from
``benchmarks/mlx_accuracy.py`` (see benchmarks/README.md), not from tuning until green.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Tolerance", "tolerance_for"]


@dataclass(frozen=True)
class Tolerance:
    """The accuracy model of one backend in one dtype.

    Arguments:
        eps: the effective unit roundoff of the backend's elementary functions.
        factor: how many error-scale units a correct result may be off (headroom for the
            error of the framework's own elementary functions, a few ulps each).
        max_magnitude: the largest magnitude the backend represents in this dtype; a
            program whose true intermediates exceed it cannot be judged (overflow).
        kink_ulps: how close (in units of eps, relative to the switch's scale) a point
            may be to a kink for a disagreement to be the framework rounding the point
            onto the other side of the kink, i.e. a convention rather than a bug.
    """

    eps: float
    factor: float
    max_magnitude: float
    tiny: float
    kink_ulps: float = 64.0

    def bound(self, scale: np.ndarray, expected: np.ndarray) -> np.ndarray:
        """The largest correct |observed - expected| per entry.

        Relative to the entry's error scale, plus an absolute floor at the dtype's
        smallest normal number: CPUs flush subnormal intermediates to zero (XLA does).
        """
        scale = np.asarray(scale) + np.abs(expected)
        return self.factor * (self.eps * scale + self.tiny * (1.0 + scale))

    def naive_bound(self, expected: np.ndarray) -> np.ndarray:
        """The bound without the error scale: failing only this one is cancellation noise."""
        return self.factor * (self.eps * np.abs(expected) + self.tiny * (1.0 + np.abs(expected)))

    def near_kink(self, kink_distance: float, kink_gap: float = float("inf")) -> bool:
        """Whether a switch lies within this backend's rounding distance of its kink:
        ``kink_distance`` (relative to the switch's error scale in the dtype) within
        ``kink_ulps`` ulps, or its absolute ``kink_gap`` within ``kink_ulps`` of this
        backend's smallest normal (wider than the dtype's for MLX's float64, whose
        transcendentals flush what float32 cannot hold: sin(-5e-274) is 0 there, so
        |sin(x)| sits on abs's kink)."""
        return kink_distance <= self.kink_ulps * self.eps or kink_gap <= self.kink_ulps * self.tiny


_F32 = float(np.finfo(np.float32).eps) / 2
_F64 = float(np.finfo(np.float64).eps) / 2
_F32_MAX = float(np.finfo(np.float32).max)
_F64_MAX = float(np.finfo(np.float64).max)
_F32_TINY = float(np.finfo(np.float32).tiny)
_F64_TINY = float(np.finfo(np.float64).tiny)

# Defaults by dtype; backends whose measured accuracy differs get their own rows.
_DEFAULT = {
    "float32": Tolerance(eps=_F32, factor=64.0, max_magnitude=_F32_MAX, tiny=_F32_TINY),
    "float64": Tolerance(eps=_F64, factor=64.0, max_magnitude=_F64_MAX, tiny=_F64_TINY),
}
_BY_BACKEND: dict[tuple[str, str], Tolerance] = {
    # MLX on CPU, measured by benchmarks/mlx_accuracy.py against 50-digit mpmath: float64
    # exp/sin/cos/erf are bit-identical to float32 evaluation widened (error about
    # 2**-24 * (|f| + |x f'|)), sigmoid and logaddexp float32-accurate, exp(89.0) is inf;
    # tanh and log are float64-accurate. So the row carries float32's eps and range.
    ("mlx", "float64"): Tolerance(eps=_F32, factor=64.0, max_magnitude=_F32_MAX, tiny=_F32_TINY),
}


def tolerance_for(backend: str, dtype: str) -> Tolerance:
    """The tolerance of ``backend`` (a backend or variant name) in ``dtype``: its
    framework's (``hessdiff.backends.registry.framework_of``), so a test backend built on MLX is
    held to MLX's accuracy."""
    from hessdiff.backends.registry import framework_of

    name = framework_of(backend)
    if dtype not in _DEFAULT:
        raise ValueError(f"dtype={dtype!r}, but it must be one of {sorted(_DEFAULT)}.")
    return _BY_BACKEND.get((name, dtype), _DEFAULT[dtype])
