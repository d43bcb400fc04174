"""Smooth elementwise ops: the unary functions of a real argument, arithmetic, and the
smooth binary functions. Each is a SymPy expression the oracle differentiates.
"""

from __future__ import annotations

from typing import Any

from hessdiff.harness.ops.kinds import Elementwise, Piecewise, RuleScale
from hessdiff.harness.ops.shapes import Attrs, Shape, broadcast_shape
from hessdiff.harness.ops.spec import AttrSpec, OpSpec, register_op, smooth_op, unary_op

__all__ = ["EXP_EDGES"]

# Overflow edges: exp(a) overflows float32 past 88.72 and float64 past 709.78.
EXP_EDGES = (88.0, 709.0)

smooth_op("neg", lambda sp, a: -a, "negation")
smooth_op("square", lambda sp, a: a**2, "a**2")
smooth_op("sin", lambda sp, a: sp.sin(a), "sine")
smooth_op("cos", lambda sp, a: sp.cos(a), "cosine")
smooth_op("exp", lambda sp, a: sp.exp(a), "exponential")
smooth_op("log", lambda sp, a: sp.log(a), "natural log (domain a > 0)", arg_domains=("pos",),
          special=lambda attrs: (0.0,))


def _powi_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    if not 1 <= attrs["p"] <= 8:
        raise ValueError(f"powi takes a small positive integer power 1..8, got p={attrs['p']}.")
    return broadcast_shape(shapes, attrs)


register_op(
    OpSpec(
        "powi", 1, "unary", Elementwise(lambda sp, a, p: a**p), attrs=(AttrSpec("p", "int"),),
        shape=_powi_shape, doc="a**p for a small integer p (1..8)",
    )
)

register_op(OpSpec("add", 2, "binary", Elementwise(lambda sp, a, b: a + b), doc="a + b"))
register_op(OpSpec("sub", 2, "binary", Elementwise(lambda sp, a, b: a - b), doc="a - b"))
register_op(OpSpec("mul", 2, "binary", Elementwise(lambda sp, a, b: a * b), doc="a * b"))
register_op(
    OpSpec(
        "div", 2, "binary", Elementwise(lambda sp, a, b: a / b), arg_domains=(None, "nonzero"),
        special=lambda attrs: (0.0,), special_arg=1,
        doc="a / b (domain b != 0)",
    )
)

unary_op("sqrt", lambda sp, a: sp.sqrt(a), "square root (domain a > 0)", (0.0,), arg_domains=("pos",))
unary_op("rsqrt", lambda sp, a: 1 / sp.sqrt(a), "1 / sqrt(a) (domain a > 0)", (0.0,), arg_domains=("pos",))
unary_op("reciprocal", lambda sp, a: 1 / a, "1 / a (domain a != 0)", (0.0,), arg_domains=("nonzero",))
unary_op("exp2", lambda sp, a: 2**a, "2**a", (0.0, 127.0, 1023.0))
# PyTorch differentiates expm1 through its output (derivatives.yaml: grad * (result + 1)),
# which near result = -1 cancels terms of size 1 + |result| at every order.
unary_op("expm1", lambda sp, a: sp.exp(a) - 1, "exp(a) - 1", (0.0,) + EXP_EDGES,
         rule_scale=RuleScale(lambda sp, a: (1 + abs(sp.exp(a) - 1),) * 3,
                              "PyTorch derivatives.yaml expm1: grad * (result + 1); JAX lax.expm1_p jvp "
                              "g * (ans + 1)", ("jax", "torch")))
unary_op("log2", lambda sp, a: sp.log(a) / sp.log(2), "log base 2 (domain a > 0)", (0.0, 1.0), arg_domains=("pos",))
unary_op("log10", lambda sp, a: sp.log(a) / sp.log(10), "log base 10 (domain a > 0)", (0.0, 1.0),
         arg_domains=("pos",))
unary_op("log1p", lambda sp, a: sp.log(1 + a), "log(1 + a) (domain a > -1)", (-1.0, 0.0), arg_domains=("gt_neg1",))
unary_op("tan", lambda sp, a: sp.tan(a), "tangent", (0.0, 1.5707963267948966))
unary_op("arcsin", lambda sp, a: sp.asin(a), "inverse sine (domain -1 < a < 1)", (-1.0, 0.0, 1.0),
         arg_domains=("unit",))
unary_op("arccos", lambda sp, a: sp.acos(a), "inverse cosine (domain -1 < a < 1)", (-1.0, 0.0, 1.0),
         arg_domains=("unit",))
unary_op("arctan", lambda sp, a: sp.atan(a), "inverse tangent", (0.0,))
unary_op("sinh", lambda sp, a: sp.sinh(a), "hyperbolic sine", (0.0, 89.0, 710.0))
unary_op("cosh", lambda sp, a: sp.cosh(a), "hyperbolic cosine", (0.0, 89.0, 710.0))
unary_op("arcsinh", lambda sp, a: sp.asinh(a), "inverse hyperbolic sine", (0.0,))
unary_op("arccosh", lambda sp, a: sp.acosh(a), "inverse hyperbolic cosine (domain a > 1)", (1.0,),
         arg_domains=("gt1",))


def _arctanh_scale(sp: Any, a: Any) -> tuple[Any, Any, Any]:
    """JAX's arctanh rule 1/(1 + a) * g/(1 - a), differentiated again, adds two terms of
    size 1 near 0 that cancel to the true 2a/(1 - a**2)**2 (jax.hessian(jnp.arctanh)(1e-30)
    is 0, true 2e-30); their magnitudes, and the next order's."""
    p, m = abs(1 + a), abs(1 - a)
    return 1 / (p * m), 1 / (p**2 * m) + 1 / (p * m**2), 2 / (p**3 * m) + 2 / (p**2 * m**2) + 2 / (p * m**3)


unary_op("arctanh", lambda sp, a: sp.atanh(a), "inverse hyperbolic tangent (domain -1 < a < 1)", (-1.0, 0.0, 1.0),
         rule_scale=RuleScale(_arctanh_scale, "JAX jax/_src/lax/lax.py: ad.defjvp(atanh_p, lambda g, x: "
                              "mul(reciprocal(_one(x) + x), div(g, (_one(x) - x))))", ("jax",)),
         arg_domains=("unit",))
unary_op("erf", lambda sp, a: sp.erf(a), "error function", (0.0, 4.0))
unary_op("erfc", lambda sp, a: sp.erfc(a), "complementary error function", (0.0, 10.0, 27.0))
unary_op("erfinv", lambda sp, a: sp.erfinv(a), "inverse error function (domain -1 < a < 1)", (-1.0, 0.0, 1.0),
         arg_domains=("unit",))
# log |Gamma(a)|: the real part of the complex log-gamma (which adds i pi k for a < 0); its
# derivatives are the polygammas, real on the whole domain.
unary_op("lgamma", lambda sp, a: sp.re(sp.loggamma(a)), "log |Gamma(a)| (domain: a not 0, -1, -2, ...)",
         (0.0, 1.0, 2.0, -1.0), arg_domains=("off_poles",))
unary_op("digamma", lambda sp, a: sp.polygamma(0, a), "digamma (domain: a not 0, -1, -2, ...)", (0.0, 1.0, -1.0),
         arg_domains=("off_poles",))
# JAX's i0 and i1 are exp(|x|) * i0e(x) and exp(|x|) * i1e(x) (jax.scipy.special); PyTorch's
# CPU kernels (calc_i0, calc_i1) multiply exp(x) by a Chebyshev series too.
_BESSEL_PEAK = lambda sp, a: sp.exp(abs(a))  # noqa: E731
unary_op("i0", lambda sp, a: sp.besseli(0, a), "modified Bessel function I0", (0.0,), formula_peak=_BESSEL_PEAK)


def _i1_scale(sp: Any, a: Any) -> tuple[Any, Any, Any]:
    """The terms of i1's derivative formula i0(a) - i1(a) / a, differentiated again:
    i1 / a**2 and i0 / a, of size 1 / |a| near 0 where they cancel to the true
    i1''(a) ~ 3a/8 (PyTorch's H of i1 at a = -0.0034 errs by 1.8e-13 in float64)."""
    i0, i1 = abs(sp.besseli(0, a)), abs(sp.besseli(1, a))
    r = 1 / sp.Max(abs(a), sp.Float("1e-300"))
    both = i0 + i1
    return both + i1 * r, both * (1 + 2 * r) + 2 * i1 * r**2, both * (1 + 3 * r + 3 * r**2) + 6 * i1 * r**3


unary_op("i1", lambda sp, a: sp.besseli(1, a), "modified Bessel function I1", (0.0,),
         rule_scale=RuleScale(_i1_scale, "PyTorch derivatives.yaml special_i1: i1_backward(grad, self, result) = "
                              "grad * (i0(self) - result / self); JAX lax.bessel_i1e_p jvp "
                              "i0e(x) - y * (sign(x) + 1 / x), both 0.5 where |x| <= eps", ("jax", "torch"),
                              above_eps=True), formula_peak=_BESSEL_PEAK)


# a**b: for a traced (or computed) exponent a > 0 (its derivative is a**b log a); for a
# constant integer exponent every real a (a != 0 if b < 0), which the frameworks
# differentiate with their own select(b == 0, ...) and integer-power paths.
register_op(OpSpec("pow", 2, "binary", Elementwise(lambda sp, a, b: a**b), arg_domains=("pos", None),
                   integer_args=(1,), special=lambda attrs: (0.0, 1.0),
                   doc="a**b: a > 0, or any a for a constant integer b (a != 0 if b < 0); special: a at 0 and 1"))
# atan2(a, b) on every (a, b) but the origin. Off the branch cut {a = 0, b < 0} it is
# smooth; on the cut its value jumps from pi (a = +0) to -pi (a = -0) while every
# derivative (b / (a**2 + b**2), -a / (a**2 + b**2), ...) is continuous. One switch, a
# where b < 0 and 1 elsewhere, is 0 on the cut alone. Each piece is the value continued
# smoothly across the cut from its side, so that a point a rounding puts on the other
# side gets its own side's value: pi/2 - atan2(b, a) from a > 0 (atan2 itself wherever
# a > 0 or b >= 0: the piece every point off the cut takes) and atan2(b, -a) - pi/2 from
# a < 0 (atan2 where a < 0). On the cut (a within rounding of 0: a framework's +0 or -0
# decides) the pieces differ by 2 pi: the value is undefined there, and with it what is
# differentiated across the cut, as at floor's jumps.
register_op(OpSpec("arctan2", 2, "binary",
                   Piecewise(lambda sp, a, b: [sp.Piecewise((a, b < 0), (1, True))],
                             lambda sp, s, a, b: (sp.pi / 2 - sp.atan2(b, a) if s[0] > 0
                                                  else sp.atan2(b, -a) - sp.pi / 2)),
                   domain=lambda args: args[0] != 0 or args[1] != 0, special=lambda attrs: (0.0,),
                   doc="atan2(a, b) away from a = b = 0 (special: a = 0, on the branch cut where b < 0)"))
# PyTorch differentiates hypot through its output, a / result: differentiated again,
# 1/h - a**2/h**3 cancels terms of size 1/h to b**2/h**3 (3e-11 relative at (-287, 0.4)).
register_op(OpSpec("hypot", 2, "binary", Elementwise(lambda sp, a, b: sp.sqrt(a**2 + b**2)),
                   domain=lambda args: args[0] != 0 or args[1] != 0, special=lambda attrs: (0.0,),
                   doc="sqrt(a**2 + b**2) away from a = b = 0 (a cone there)",
                   rule_scale=RuleScale(lambda sp, a, b: (1, 1 / sp.sqrt(a**2 + b**2), 3 / (a**2 + b**2)),
                                        "PyTorch derivatives.yaml hypot: self: grad * self / result, "
                                        "other: grad * other / result", ("torch",))))
# JAX and PyTorch differentiate logaddexp through its output, exp(a - y) and exp(b - y):
# y carries a rounding error of eps |y|, so every derivative errs by eps (|a| + |b|) times
# its own size (logaddexp(x, x)'' = 0 comes out as 1e-13 at x = -600 in float64).
register_op(OpSpec("logaddexp", 2, "binary", Elementwise(lambda sp, a, b: sp.log(sp.exp(a) + sp.exp(b))),
                   special=lambda attrs: (0.0, EXP_EDGES[1]), doc="log(exp(a) + exp(b))",
                   rule_scale=RuleScale(lambda sp, a, b: (1 + abs(a) + abs(b),) * 3,
                                        "JAX jnp.logaddexp custom_jvp: exp(x1 - out), exp(x2 - out); PyTorch "
                                        "derivatives.yaml logaddexp: grad / (1 + exp(other - self)): a "
                                        "difference of the arguments exponentiated", ("jax", "torch"))))
register_op(OpSpec("xlogy", 2, "binary", Elementwise(lambda sp, a, b: a * sp.log(b)), arg_domains=(None, "pos"),
                   special=lambda attrs: (0.0,), doc="a log(b), b > 0"))


# a * 2**k: the shift k is an integer as the frameworks take it, a Python int or an int32
# or int64 array (elementwise, broadcast like any binary op's); never traced, never a float.
register_op(OpSpec("ldexp", 2, "binary", Elementwise(lambda sp, a, k: a * sp.Integer(2) ** k),
                   integer_args=(1,), integer_typed_args=(1,),
                   doc="a * 2**k for a constant integer k (a Python int or an int32/int64 array)"))
