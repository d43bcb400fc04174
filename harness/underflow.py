"""The error bound's floors where intermediates underflow, shared by the judge off the
kinks (``hessdiff.harness.engine``) and at them (``hessdiff.harness.kink_judge``).

Where a product passes below the dtype's smallest normal, a framework that flushes
subnormals loses digits the per-op error floor does not follow: these floors say which
entries cannot be told from 0 there, and where NaN or inf is the dtype's honest outcome.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hessdiff.harness.oracle import OracleResult

__all__ = ["floored", "underflow_floors", "underflow_rows"]


def underflow_floors(size: np.ndarray, oracle: OracleResult, tol: Any) -> tuple[np.ndarray, np.ndarray]:
    """(flushed, rows): the nonzero entries of magnitude ``size`` held only to tiny/eps,
    and to tiny/eps**2, where intermediates underflow.

    A framework that flushes subnormals to zero (XLA on CPU does) loses every digit of
    a product that passes below the smallest normal, and the chain rule multiplies that
    loss by factors the per-op error floor does not follow: an entry below tiny/eps
    there cannot be told from 0 (measured: JAX's H of var(x**2) at x = (731, 2.2e-308)
    is 0 where the truth is 2.7e-306; of square(mean(x**2)) at 1.2e-38 in float32, 0
    where it is 5.5e-36). In the rows of the inputs behind the underflow, a framework's
    own tangents pass below tiny too and are flushed where the chain rule then
    multiplies them by up to 1/eps: JAX's forward-mode H[2, 1] of square(std(square(x)))
    at x1 = -1e-30 in float32 (x1**2 underflows; the tangent of 1 / (2 std) is 5.5e-43,
    flushed) is 2.5e-28 where the truth is 1.2e-28 (reverse mode, PyTorch and float64
    agree)."""
    nonzero = size != 0
    flushed = oracle.underflow & nonzero & (size < tol.tiny / tol.eps)
    rows = underflow_rows(oracle) & nonzero & (size < tol.tiny / tol.eps**2)
    return flushed, rows


def floored(bound: np.ndarray, flushed: np.ndarray, rows: np.ndarray, tol: Any) -> np.ndarray:
    """``bound`` raised to the floors ``underflow_floors`` names."""
    bound = np.where(flushed, np.maximum(bound, tol.tiny / tol.eps), bound)
    return np.where(rows, np.maximum(bound, tol.tiny / tol.eps**2), bound)


def underflow_rows(oracle: OracleResult) -> np.ndarray:
    """The entries where NaN or inf is the dtype's honest outcome: the rows and columns of
    the inputs behind an intermediate that underflows (``OracleResult.underflow_vars``),
    where the frameworks' formulas divide 0 by 0 and forward mode spreads the NaN along
    the row through 0 * NaN (JAX's Hessian of mean(hypot(x, x)) in float32 at
    x1 = -6.9e-22 is NaN at H[1, 0], where the truth is 0)."""
    n = oracle.hessian.shape[0]
    rows = np.zeros(n, dtype=bool)
    rows[list(oracle.underflow_vars)] = True
    return rows[:, None] | rows[None, :]

