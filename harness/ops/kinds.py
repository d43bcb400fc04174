"""How the oracle differentiates an op: the kinds of op mathematics, and the rule scales of
the frameworks' derivative formulas.

Every op entry holds one of these; the oracle, the screen and coverage dispatch on its
class (``hessdiff.harness.oracle`` keeps one table from kind to handler).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Bilinear", "Elementwise", "Math", "Piecewise", "RuleScale", "Selection", "Structural", "Vector"]


@dataclass(frozen=True)
class Elementwise:
    """A smooth elementwise op; ``expr(sp, *arg_symbols, **attrs)`` is its definition.

    The oracle differentiates the expression symbolically once and evaluates the partial
    derivatives in multi-precision; arguments broadcast like NumPy's.
    """

    expr: Callable[..., Any]


@dataclass(frozen=True)
class Piecewise:
    """An elementwise op made of smooth pieces chosen by the signs of switch expressions.

    ``switches(sp, *args, **attrs)`` returns the switch expressions; ``piece(sp, signs,
    *args, **attrs)`` the smooth piece for a tuple of signs (each -1 or +1). Where a switch
    is exactly 0 the op is at a kink: the oracle evaluates the pieces on both sides and
    marks every derivative entry where they differ as undefined.
    """

    switches: Callable[..., list[Any]]
    piece: Callable[..., Any]


@dataclass(frozen=True)
class Structural:
    """An op that is linear in its single array argument (sum, indexing, reshape, ...).

    ``apply(xp, a, **attrs)`` computes it with NumPy (``xp``) on an array of any dtype
    (the oracle passes object arrays of multi-precision numbers), so the same function
    carries values, gradients and Hessians.
    """

    apply: Callable[..., Any]


@dataclass(frozen=True)
class Bilinear:
    """An op linear in each of its two array arguments (matmul, dot, outer).

    ``apply(xp, a, b, mul)`` computes it with NumPy; ``mul`` is the elementwise product the
    oracle uses (it treats an exact zero times an undefined entry as zero).
    """

    apply: Callable[..., Any]


@dataclass(frozen=True)
class Vector:
    """A smooth op of a whole array (prod, logsumexp, softmax, det, inv).

    ``expr(ns, A, **attrs)`` takes a NumPy object array ``A`` shaped like the argument and
    returns an object array shaped like the output, using only arithmetic and ``ns.exp``,
    ``ns.log``, ``ns.sqrt`` (and ``ns.largest``, a constant shift, where ``ns`` has it:
    ``reductions._shift``). The oracle runs it on multi-precision second-order jets (so
    it gets every first and second partial derivative exactly, with no symbolic step) and
    on plain multi-precision numbers for values. ``domain`` receives the whole argument.

    ``output_based``: frameworks differentiate the op through its output (softmax' = p
    (delta - p), logsumexp' = exp(a - y)), so every derivative errs by eps times the
    output's own scale, not the derivative's (sum(softmax(x))'' = 0 comes out as 2 eps).

    ``products``: computed from partial products of its entries (prod, cumprod; the
    ``axis`` attr says which entries go together), so a partial product below the dtype's smallest
    normal number is flushed to zero (XLA on CPU) or kept with a subnormal's few bits
    (PyTorch, which then divides: prod' = p / x_i), and a derivative errs by up to that
    tiny number times the remaining factors, or by a subnormal's spacing over the
    entries it is divided by.

    ``divides_output``: the frameworks whose derivative rule divides the output by the
    entries (y / x_i), which the op's entry names the source of; only their bounds widen
    by the terms that formula cancels (``hessdiff.harness.oracle.whole._divided_output``).

    ``formula_range``: every framework computes the op by ``expr``'s formula, unscaled,
    so an intermediate of it beyond the dtype's range overflows there too (std's squared
    deviations: JAX's Hessian of std(expm1(x)) at x = (355, 0.7) in float64 is NaN, where
    the truth's H[0, 0] is 7.5e153): the point is unjudged, as where a node's own value
    overflows. Not for ops the frameworks rescale (logsumexp and softmax shift by the
    max).

    ``symmetric``: defined on symmetric matrices only (cholesky), so an argument that
    varies off them, whose derivatives are not symmetric, leaves the domain: a derivative
    in a direction that breaks the symmetry has no value the frameworks agree on
    (measured on cholesky(reshape(x)) at a symmetric point: JAX symmetrizes the input,
    PyTorch's reverse rule symmetrizes the cotangent, its forward rule neither, and the
    lower triangle LAPACK reads gives a fourth).
    """

    expr: Callable[..., Any]
    output_based: bool = False
    products: bool = False
    divides_output: tuple[str, ...] = ()
    formula_range: bool = False
    symmetric: bool = False


@dataclass(frozen=True)
class Selection:
    """A whole-array op that is smooth once its discrete choices are made: which entry is
    the largest (max, min, the inf-norm), the order of equal entries (sort), the sign of
    a zero entry (the 1-norm).

    ``expr(ns, A, ties, **attrs)`` is a ``Vector`` expression that makes every choice
    through ``ties``: ``ties.argmax(keys, k)`` (the index of the largest key),
    ``ties.order(keys, k)`` (the permutation sorting the keys ascending), ``ties.sign(v,
    k)`` (+1 or -1) and ``ties.abs(v)`` (|v|, not a choice the op's derivative depends
    on). Where a choice is not unique (equal keys, a zero) the oracle evaluates the
    expression once for every way of making it and marks every derivative entry where
    they differ as undefined; the gap of each choice (the difference of the two largest
    keys, the zero) is a switch whose zero is the op's ``k``-th special value.

    ``linear``: every piece is linear in the argument (max, sort), so the Hessian is 0
    off the kinks.
    """

    expr: Callable[..., Any]
    linear: bool = False


Math = Elementwise | Piecewise | Structural | Bilinear | Vector | Selection


@dataclass(frozen=True)
class RuleScale:
    """The magnitude of the terms a framework's derivative formula for an op adds up, at
    orders 1, 2, 3, where the formula is not the derivative itself (tanh' = 1 - y*y from
    the output y; copysign's gradient grad * result / a): it is accurate to eps times
    these, not to eps times the (possibly tiny) derivative, and the judge allows for it.

    ``scale(sp, *args, **attrs)`` (a ``Piecewise`` op's also gets the piece's signs first)
    returns the three magnitudes. ``source`` names the framework code it models, and
    ``frameworks`` the frameworks whose rules compute it so (empty: every framework, as
    for a composite all lowerings share): only their bounds are widened. ``value``
    (optional, same arguments) is the magnitude of the terms the op's *value* formula adds
    where they cancel (gelu_tanh's a (1 + tanh(u)) / 2 for a << 0): the value is accurate
    to eps times it, which decides whether two such values may tie in the framework.
    ``above_eps``: the formula is used only where |a| > eps of the dtype; below, the
    frameworks return its limit (PyTorch's and JAX's i1 gradient is 0.5 there), which
    adds no terms.
    """

    scale: Callable[..., tuple[Any, Any, Any]]
    source: str
    frameworks: tuple[str, ...] = ()
    value: Callable[..., Any] | None = None
    above_eps: bool = False

    def applies_to(self, framework: str | None) -> bool:
        return not self.frameworks or (framework is not None and framework in self.frameworks)
