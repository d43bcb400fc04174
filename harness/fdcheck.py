"""A finite-difference check of a gradient: the Hessian as central differences of it.

For programs the oracle cannot handle (an op with no symbolic definition, a custom rule
inside a framework), the framework's own gradient is the next best reference: its
central differences in float64 must match the framework's Hessian. Two step sizes give
an error estimate, so the check says how far it can be trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["FiniteDifference", "fd_hessian"]


@dataclass(frozen=True)
class FiniteDifference:
    """A finite-difference Hessian and an estimate of its error, entry by entry."""

    hessian: np.ndarray
    error: np.ndarray

    def agrees(self, other: np.ndarray, factor: float = 10.0) -> bool:
        """Whether ``other`` lies within ``factor`` error estimates of this Hessian."""
        other = np.asarray(other, dtype=np.float64)
        tol = factor * self.error + 1e-12 * np.maximum(1.0, np.abs(self.hessian))
        return bool(np.all(np.abs(other - self.hessian) <= tol))


def fd_hessian(gradient: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> FiniteDifference:
    """Central differences of ``gradient`` at ``x`` (float64), symmetrised.

    The step is ``eps**(1/3)`` scaled by ``|x_j|``, the optimum for central differences;
    the error estimate is the difference from the estimate at twice the step (Richardson),
    which bounds truncation error, plus the rounding error of the gradient itself.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]

    def columns(scale: float) -> np.ndarray:
        cols = []
        for j in range(n):
            h = scale * max(1.0, abs(float(x[j])))
            e = np.zeros(n)
            e[j] = h
            g_plus = np.asarray(gradient(x + e), dtype=np.float64)
            g_minus = np.asarray(gradient(x - e), dtype=np.float64)
            cols.append((g_plus - g_minus) / (2 * h))
        return np.stack(cols, axis=1)

    step = float(np.finfo(np.float64).eps) ** (1 / 3)
    fine = columns(step)
    coarse = columns(2 * step)
    # Richardson extrapolation: central differences err as h**2.
    best = fine + (fine - coarse) / 3
    best = (best + best.T) / 2
    grad_scale = np.max(np.abs(np.asarray(gradient(x), dtype=np.float64)), initial=1.0)
    rounding = np.finfo(np.float64).eps * grad_scale / step
    error = np.abs(fine - coarse) + rounding
    return FiniteDifference(best, (error + error.T) / 2)
