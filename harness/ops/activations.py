"""Activation functions, smooth and piecewise; most frameworks differentiate them through
their output, which the rule scales model.
"""

from __future__ import annotations

from typing import Any

from hessdiff.harness.ops.elementwise import EXP_EDGES
from hessdiff.harness.ops.kinds import Piecewise, RuleScale
from hessdiff.harness.ops.spec import AttrSpec, OpSpec, piecewise_op, register_op, smooth_op, unary_op

# tanh' = (1 - y)(1 + y) and its derivatives are computed from y = tanh(a) by every
# framework: terms of magnitude about 1 whatever the (tiny) result.
smooth_op(
    "tanh", lambda sp, a: sp.tanh(a), "hyperbolic tangent", group="activation",
    rule_scale=RuleScale(
        lambda sp, a: (1 + sp.tanh(a) ** 2, 2 * (1 + sp.tanh(a) ** 2), 2 + 6 * sp.tanh(a) ** 2),
        "JAX lax.tanh_p jvp g * (1 + ans) * (1 - ans); PyTorch derivatives.yaml tanh: "
        "tanh_backward(grad, result); MLX Tanh::vjp 1 - square(output)"),
)
# sigmoid' = y (1 - y), from y = sigmoid(a): terms of magnitude y, y**2 (the difference
# 1 - y has an absolute error of eps where y saturates at 1).
_sigmoid = lambda sp, a: 1 / (1 + sp.exp(-a))  # noqa: E731
smooth_op(
    "sigmoid", _sigmoid, "logistic sigmoid", group="activation",
    rule_scale=RuleScale(
        lambda sp, a: (2 * _sigmoid(sp, a), 6 * _sigmoid(sp, a), 26 * _sigmoid(sp, a)),
        "JAX lax.logistic_p jvp g * ans * (1 - ans); PyTorch derivatives.yaml sigmoid: "
        "sigmoid_backward(grad, result); MLX Sigmoid::vjp s * (1 - s)"),
)
# softplus' = sigmoid(a), so its second and third derivatives are sigmoid's first two.
smooth_op(
    "softplus", lambda sp, a: sp.log(1 + sp.exp(a)), "log(1 + exp(a))", group="activation",
    rule_scale=RuleScale(
        lambda sp, a: (_sigmoid(sp, a), 2 * _sigmoid(sp, a), 6 * _sigmoid(sp, a)),
        "softplus' is sigmoid(a) in every framework (JAX jax.nn.softplus = logaddexp(a, 0), "
        "PyTorch softplus_backward, MLX log1p(exp)); its derivatives are sigmoid's, from its output"),
)
register_op(
    OpSpec(
        "relu", 1, "activation",
        Piecewise(lambda sp, a: [a], lambda sp, s, a: a if s[0] > 0 else sp.Integer(0)),
        special=lambda attrs: (0.0,), doc="max(a, 0)",
    )
)
register_op(
    OpSpec(
        "leaky_relu", 1, "activation",
        Piecewise(lambda sp, a, alpha: [a], lambda sp, s, a, alpha: a if s[0] > 0 else alpha * a),
        attrs=(AttrSpec("alpha", "float"),), special=lambda attrs: (0.0,), special_names=("0",),
        doc="a if a > 0 else alpha * a",
    )
)


def _expm1_scale(sp: Any, signs: tuple[int, ...], a: Any, alpha: Any, width: Any) -> tuple[Any, Any, Any]:
    """The terms of the ELU family's derivatives on the negative piece alpha expm1(a /
    width): JAX and PyTorch differentiate it through the output (expm1' = y + 1, torch's
    elu_backward uses output + alpha), which cancels terms of size |alpha| (1 + |y|)
    where y = expm1(a / width) is near -1, at every order (divided by width each time)."""
    if signs[0] > 0:
        return (0, 0, 0)
    y = sp.exp(a / width) - 1
    base = abs(alpha) * (1 + abs(y))
    return (base / width, base / width**2, base / width**3)


_ELU_SOURCE = ("the negative piece through expm1's output: PyTorch derivatives.yaml elu: elu_backward(grad, "
               "alpha, scale, input_scale, is_result, result); JAX jax.nn.elu/selu/celu call expm1, whose "
               "jvp is g * (ans + 1)")
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
piecewise_op("relu6", 1, lambda sp, a: [a, a - 6],
             lambda sp, s, a: sp.Integer(0) if s[0] < 0 else (a if s[1] < 0 else sp.Integer(6)), (0.0, 6.0), "min(max(a, 0), 6)", group="activation")
register_op(OpSpec(
    "elu", 1, "activation",
    Piecewise(lambda sp, a, alpha: [a], lambda sp, s, a, alpha: a if s[0] > 0 else alpha * (sp.exp(a) - 1)),
    attrs=(AttrSpec("alpha", "float"),), special=lambda attrs: (0.0,), special_names=("0",),
    doc="a if a > 0 else alpha (exp(a) - 1)",
    rule_scale=RuleScale(lambda sp, s, a, alpha: _expm1_scale(sp, s, a, alpha, 1), _ELU_SOURCE, ("jax", "torch")),
))
piecewise_op("selu", 1, lambda sp, a: [a],
             lambda sp, s, a: _SELU_SCALE * (a if s[0] > 0 else _SELU_ALPHA * (sp.exp(a) - 1)),
             (0.0,), "scale * elu(a, alpha) with the SELU constants", group="activation",
             rule_scale=RuleScale(lambda sp, s, a: _expm1_scale(sp, s, a, _SELU_SCALE * _SELU_ALPHA, 1),
                                  _ELU_SOURCE, ("jax", "torch")))
register_op(OpSpec(
    "celu", 1, "activation",
    Piecewise(lambda sp, a, alpha: [a],
              lambda sp, s, a, alpha: a if s[0] > 0 else alpha * (sp.exp(a / alpha) - 1)),
    attrs=(AttrSpec("alpha", "float"),), special=lambda attrs: (0.0,), special_names=("0",),
    doc="a if a > 0 else alpha (exp(a / alpha) - 1), alpha > 0",
    rule_scale=RuleScale(lambda sp, s, a, alpha: _expm1_scale(sp, s, a, alpha, alpha), _ELU_SOURCE,
                         ("jax", "torch")),
))
unary_op("gelu", lambda sp, a: a * (1 + sp.erf(a / sp.sqrt(2))) / 2, "exact GELU a Phi(a)", (0.0,), group="activation")


def _gelu_tanh_scale(sp: Any, a: Any) -> tuple[Any, Any, Any]:
    """Terms of gelu_tanh's derivatives as frameworks compute them: through tanh's output
    (tanh' = 1 - t**2, which cancels where the inner tanh saturates), times the inner
    polynomial's derivatives."""
    c, k = sp.sqrt(2 / sp.pi), sp.Rational(44715, 1000000)
    t = sp.tanh(c * (a + k * a**3))
    inner = 1 + c * (1 + 3 * k * a**2) + 6 * c * k * abs(a) + 6 * c * k
    base = (1 + abs(a)) * (1 + t**2) * inner
    return (base, 2 * base * inner, 6 * base * inner**2)


unary_op("gelu_tanh", lambda sp, a: a * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (a + sp.Rational(44715, 1000000) * a**3))) / 2,
         "GELU, tanh approximation", (0.0,), group="activation",
         rule_scale=RuleScale(_gelu_tanh_scale, "a composite through tanh in every framework (jax.nn.gelu(approximate="
                              "True), torch gelu(approximate='tanh') backward, mlx.nn.gelu_approx): tanh's rule",
                              value=lambda sp, a: abs(a)))
unary_op("silu", lambda sp, a: a * _sigmoid(sp, a), "a sigmoid(a)", (0.0,), group="activation",
         rule_scale=RuleScale(lambda sp, a: (2 + 2 * abs(a), 6 + 6 * abs(a), 26 + 26 * abs(a)),
                              "a * sigmoid(a) in every framework: sigmoid's rule from its output, times a"))
unary_op("mish", lambda sp, a: a * sp.tanh(sp.log(1 + sp.exp(a))), "a tanh(softplus(a))", (0.0,), group="activation",
         rule_scale=RuleScale(lambda sp, a: (2 + 2 * abs(a), 6 + 6 * abs(a), 26 + 26 * abs(a)),
                              "a * tanh(softplus(a)) in every framework: tanh's and sigmoid's rules from "
                              "their outputs, times a"))
# Frameworks compute softsign as the quotient a / (1 + |a|) and differentiate that: the
# quotient rule's terms (of size 1/(1 + |a|)^k at order k) cancel to the true derivative,
# |a| times smaller for large |a| (at a = -632, to 7.9e-9 from terms of 5e-6).
piecewise_op("softsign", 1, lambda sp, a: [a], lambda sp, s, a: a / (1 + s[0] * a), (0.0,),
             "a / (1 + |a|) (third derivative jumps at 0)", group="activation",
             rule_scale=RuleScale(
                 lambda sp, s, a: (2 / (1 + s[0] * a), 4 / (1 + s[0] * a) ** 2, 12 / (1 + s[0] * a) ** 3),
                 "the quotient a / (1 + |a|) in every framework (jax.nn.soft_sign, torch "
                 "F.softsign, mlx.nn.softsign): the quotient rule's terms"))
unary_op("log_sigmoid", lambda sp, a: -sp.log(1 + sp.exp(-a)), "log(sigmoid(a))", (0.0, -EXP_EDGES[0]),
         group="activation", rule_scale=RuleScale(lambda sp, a: (2, 6, 26),
                                                  "-softplus(-a) in every framework: sigmoid's rule from its output"))
piecewise_op("hard_tanh", 1, lambda sp, a: [a + 1, a - 1],
             lambda sp, s, a: sp.Integer(-1) if s[0] < 0 else (a if s[1] < 0 else sp.Integer(1)),
             (-1.0, 1.0), "clip(a, -1, 1)", group="activation")
piecewise_op("hard_sigmoid", 1, lambda sp, a: [a + 3, a - 3],
             lambda sp, s, a: sp.Integer(0) if s[0] < 0 else (a / 6 + sp.Rational(1, 2) if s[1] < 0 else sp.Integer(1)),
             (-3.0, 3.0), "relu6(a + 3) / 6", group="activation")

