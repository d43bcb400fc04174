"""The independent oracle: the true Hessian of a program at a point, in multi-precision.

The oracle shares no code path with any framework. Each op's derivative rule comes from
SymPy differentiating the op's mathematical definition in the catalogue (once per op),
evaluated with mpmath at 50 significant digits; the chain rule is carried by second-order
forward-mode "jets" (value, gradient, Hessian) over NumPy object arrays of ``mpf``.

Besides the Hessian it reports what a judge needs:

* which entries are *undefined*: at a kink (a piecewise op's switch exactly 0) it
  evaluates the pieces on both sides and marks every entry where they differ as NaN;
  an exact zero times an undefined entry stays zero, since both one-sided values are
  finite;
* how close each piecewise op came to a kink (``kink_distance``), so a disagreement
  within a few ulps of a kink is a convention, not a bug;
* an error scale for every Hessian entry (``hessian_scale``): the chain rule evaluated
  on absolute values, so cancellation (a small entry computed as big minus big) is
  recognised as numerical noise, as running error analysis would.

The program is evaluated with its inputs, constants and float attrs rounded to the
requested dtype first: it judges the float32 program the framework actually ran.

The package, by mathematical kind: ``jets`` (a node's jet and the sparse chain rule),
``rules`` (elementwise derivative rules from SymPy), ``elementwise`` (smooth and
piecewise ops, kinks, domain edges), ``local`` and ``whole`` (whole-array ops on local
Taylor jets, selections), ``linear`` (structural and bilinear ops), ``kinds`` (the one
table from an op's kind of mathematics to its handlers), ``evaluator`` (the walk over a
program and the entry points), ``resolutions`` (conventions at kinks) and ``result``.
"""

from __future__ import annotations

from hessdiff.harness.oracle.evaluator import conventions, evaluate, node_values, piecewise_linear
from hessdiff.harness.oracle.resolutions import Resolution, all_resolved, mixed_modes, resolutions
from hessdiff.harness.oracle.result import (DIGITS, ORACLE_SECONDS, Kink, OracleResult, OracleTimeout,
                                            OutOfDomain)
from hessdiff.harness.oracle.state import busy_seconds

__all__ = ["DIGITS", "ORACLE_SECONDS", "Kink", "OracleResult", "OracleTimeout", "OutOfDomain", "Resolution",
           "all_resolved", "busy_seconds", "conventions", "evaluate", "mixed_modes", "node_values",
           "piecewise_linear", "resolutions"]
