"""A case: what one check judges, a program, one point and a dtype.

A plain record over the IR, so that everything taking a case (the judge
``hessdiff.harness.engine``, the relations, the worker) and everything drawing one (the
generator ``hessdiff.harness.strategies``) can import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hessdiff.harness.ir import Program

__all__ = ["Case"]


@dataclass(frozen=True)
class Case:
    """One check: a program, a point exactly representable in ``dtype``, the dtype."""

    program: Program
    point: np.ndarray
    dtype: str

    def __repr__(self) -> str:
        return (
            f"Case(dtype={self.dtype!r}, point={[float(v) for v in self.point]},\n"
            f"{self.program.pretty()})"
        )
