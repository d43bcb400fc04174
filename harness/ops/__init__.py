"""The op catalogue: one entry per op, read by the IR, the generator, the oracle and
every backend's lowering table.

An entry says what an op *is* mathematically (so the oracle can differentiate it without
any framework), which arguments it takes, what shape it returns, where it is defined and
which argument values are special (kinks, ties, domain bounds). It says nothing about any
framework: each backend module holds its own lowering table keyed by these names, so
adding an op is one entry here plus one lowering per backend, and adding a backend is one
new module.

The mathematical definitions are SymPy expressions built lazily from a namespace argument
(``sp``), so importing the catalogue never imports SymPy or a framework.

The entries live in one module per group (``elementwise``, ``activations``,
``piecewise``, ``reductions``, ``selections``, ``linalg``, ``movement``); what an entry
is, in ``spec`` (``OpSpec``, the registry), ``kinds`` (how the oracle differentiates
it), ``domains`` (where an argument may lie) and ``shapes`` (shared shape rules). This package is the bottom layer with the IR:
it imports nothing of the harness above it.
"""

from __future__ import annotations

# The group modules register their ops when imported.
from hessdiff.harness.ops import (activations, elementwise, linalg, movement, piecewise,  # noqa: F401
                                  reductions, selections)
from hessdiff.harness.ops.domains import DOMAINS, Domain
from hessdiff.harness.ops.kinds import Bilinear, Elementwise, Piecewise, RuleScale, Selection, Structural, Vector
from hessdiff.harness.ops.selections import NORM_ORDS
from hessdiff.harness.ops.shapes import Shape
from hessdiff.harness.ops.spec import (CATALOGUE, FIXED_INTEGER_LIMIT, AttrSpec, CatalogueError, OpSpec, arrange,
                                       fixed_integer, get_op, in_arg_domain, register_op)

__all__ = [
    "AttrSpec",
    "Bilinear",
    "CATALOGUE",
    "CatalogueError",
    "DOMAINS",
    "Domain",
    "FIXED_INTEGER_LIMIT",
    "NORM_ORDS",
    "Elementwise",
    "OpSpec",
    "Piecewise",
    "RuleScale",
    "Selection",
    "Shape",
    "Structural",
    "Vector",
    "fixed_integer",
    "get_op",
    "in_arg_domain",
    "register_op",
]

# The order programs are drawn in (``strategies.DEFAULT_OPS`` after its first few): the
# order the ops were added in, kept when the catalogue was split into modules so that a
# seed draws the programs it always drew (``tests/test_program_pins.py``). A new op goes
# at the end by itself (``arrange``).
DRAW_ORDER = (
    "neg", "square", "sin", "cos", "tanh", "exp", "log", "sigmoid", "softplus", "powi", "add", "sub", "mul", "div",
    "relu", "abs", "leaky_relu", "clip", "maximum", "minimum", "where", "sum", "mean", "gather", "matmul", "sqrt",
    "rsqrt", "reciprocal", "exp2", "expm1", "log2", "log10", "log1p", "tan", "arcsin", "arccos", "arctan", "sinh",
    "cosh", "arcsinh", "arccosh", "arctanh", "erf", "erfc", "erfinv", "lgamma", "digamma", "i0", "i1", "sign",
    "floor", "ceil", "round", "relu6", "elu", "selu", "celu", "gelu", "gelu_tanh", "silu", "mish", "softsign",
    "log_sigmoid", "hard_tanh", "hard_sigmoid", "pow", "arctan2", "hypot", "logaddexp", "xlogy", "remainder",
    "copysign", "ldexp", "prod", "logsumexp", "var", "std", "norm", "cumprod", "softmax", "log_softmax", "det",
    "inv", "solve", "cholesky", "max", "min", "sort", "sum_where", "mean_where", "reshape", "transpose", "flip",
    "slice", "roll", "tile", "repeat", "pad", "broadcast_to", "diagonal", "trace", "cumsum", "concatenate",
    "stack", "dot", "outer",
)
arrange(DRAW_ORDER)

