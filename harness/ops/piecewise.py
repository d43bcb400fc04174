"""Piecewise elementwise ops with kinks or jumps: abs, clip, sign, the step functions,
maximum, minimum, where, remainder and copysign.
"""

from __future__ import annotations

from typing import Any

from hessdiff.harness.ops.kinds import Piecewise, RuleScale
from hessdiff.harness.ops.shapes import Attrs, Shape, broadcast_shape
from hessdiff.harness.ops.spec import AttrSpec, OpSpec, piecewise_op, register_op


register_op(
    OpSpec(
        "abs", 1, "unary",
        Piecewise(lambda sp, a: [a], lambda sp, s, a: a if s[0] > 0 else -a),
        special=lambda attrs: (0.0,), doc="|a|",
    )
)


def _clip_shape(shapes: tuple[Shape, ...], attrs: Attrs) -> Shape:
    if not attrs["lo"] < attrs["hi"]:
        raise ValueError(f"clip needs lo < hi, got lo={attrs['lo']!r}, hi={attrs['hi']!r}.")
    return broadcast_shape(shapes, attrs)


register_op(
    OpSpec(
        "clip", 1, "unary",
        Piecewise(
            lambda sp, a, lo, hi: [a - lo, a - hi],
            lambda sp, s, a, lo, hi: lo if s[0] < 0 else (a if s[1] < 0 else hi),
        ),
        attrs=(AttrSpec("lo", "float"), AttrSpec("hi", "float")), shape=_clip_shape,
        special=lambda attrs: (attrs["lo"], attrs["hi"]), special_names=("lo", "hi"),
        doc="min(max(a, lo), hi), lo < hi",
    )
)
register_op(
    OpSpec(
        "maximum", 2, "binary",
        Piecewise(lambda sp, a, b: [a - b], lambda sp, s, a, b: a if s[0] > 0 else b),
        special=lambda attrs: (0.0,), doc="elementwise max (special: a tie)",
    )
)
register_op(
    OpSpec(
        "minimum", 2, "binary",
        Piecewise(lambda sp, a, b: [a - b], lambda sp, s, a, b: b if s[0] > 0 else a),
        special=lambda attrs: (0.0,), doc="elementwise min (special: a tie)",
    )
)
register_op(
    OpSpec(
        "where", 3, "select",
        Piecewise(lambda sp, c, a, b: [c], lambda sp, s, c, a, b: a if s[0] > 0 else b),
        special=lambda attrs: (0.0,), doc="a where c > 0 else b (c a float, or a constant bool mask)",
        mask_args=(0,),
    )
)


# Step functions (floor, ceil, round, remainder) are written with SymPy functions whose
# derivative is 0 and whose multi-precision value comes from mpmath: the oracle then sees
# the derivative every framework uses (0 almost everywhere), and a switch that is 0 at
# the jumps reports how close the point is to one.

_STEPS: dict[str, Any] = {}


def _step(sp: Any, name: str) -> Any:
    """A SymPy function ``floor_``/``ceil_``/``round_`` with derivative 0 and mpmath value."""
    if name not in _STEPS:
        import mpmath

        impl = {
            "floor_": mpmath.floor,
            "ceil_": mpmath.ceil,
            # Round half to even, as every framework does.
            "round_": lambda v: mpmath.mpf(round(v)) if abs(v) < mpmath.mpf(2) ** 60 else v,
        }[name]
        _STEPS[name] = type(
            name, (sp.Function,),
            {"fdiff": lambda self, argindex=1: sp.Integer(0), "_imp_": staticmethod(impl), "is_real": True},
        )
    return _STEPS[name]


piecewise_op("sign", 1, lambda sp, a: [a], lambda sp, s, a: sp.Integer(s[0]), (0.0,), "sign of a (jumps at 0)")
# Each piece says which side of the jump it is: with n = round(a), floor(a) is n on the
# right of n (switch a - n > 0) and n - 1 on the left, so at an integer the two pieces
# differ and the oracle marks the value (and what depends on it) undefined there: a
# framework's rounding decides the side, as for any kink.
piecewise_op("floor", 1, lambda sp, a: [a - _step(sp, "round_")(a)],
             lambda sp, s, a: _step(sp, "round_")(a) - (0 if s[0] > 0 else 1),
             (0.0, 1.0, -1.0), "floor (jumps at integers; derivative 0)")
piecewise_op("ceil", 1, lambda sp, a: [a - _step(sp, "round_")(a)],
             lambda sp, s, a: _step(sp, "round_")(a) + (1 if s[0] > 0 else 0),
             (0.0, 1.0, -1.0), "ceil (jumps at integers; derivative 0)")
piecewise_op("round", 1, lambda sp, a: [a - _step(sp, "floor_")(a) - sp.Rational(1, 2)],
             lambda sp, s, a: _step(sp, "floor_")(a) + (1 if s[0] > 0 else 0), (0.5, -0.5, 1.5, 2.5),
             "round half to even (jumps at half-integers; derivative 0)")
register_op(OpSpec(
    "remainder", 2, "binary",
    Piecewise(lambda sp, a, b: [a / b - _step(sp, "round_")(a / b)],
              lambda sp, s, a, b: a - b * (_step(sp, "round_")(a / b) - (0 if s[0] > 0 else 1))),
    arg_domains=(None, "nonzero"), special=lambda attrs: (0.0,),
    doc="a - b floor(a / b) (Python's %: the sign of b; jumps where a / b is an integer)",
))
register_op(OpSpec(
    "copysign", 2, "binary",
    Piecewise(lambda sp, a, b: [a, b], lambda sp, s, a, b: (a if s[0] > 0 else -a) * s[1]),
    special=lambda attrs: (0.0, 0.0), special_names=("a=0", "b=0"), doc="|a| with the sign of b",
    # PyTorch's gradient is grad * result / a (derivatives.yaml): differentiated again
    # (reverse over reverse), 1/a - result/a**2 cancels terms of size 1/|a| to 0.
    rule_scale=RuleScale(lambda sp, s, a, b: (2, 2 / sp.Max(abs(a), sp.Float("1e-300")),
                                              4 / sp.Max(a**2, sp.Float("1e-300"))),
                         "PyTorch derivatives.yaml copysign: copysign_tensor_self_backward(grad, self, "
                         "result) = grad * result / self", ("torch",)),
))
