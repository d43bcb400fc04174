"""The one dispatch table of the oracle: from the kind of an op's mathematics
(``hessdiff.harness.ops.kinds``) to what the oracle does with it.

The evaluator, ``node_values``, ``piecewise_linear`` and the per-framework error scales
all read an op's handlers here; adding a kind of op mathematics is one row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hessdiff.harness.oracle.elementwise import elementwise, elementwise_curved, elementwise_value
from hessdiff.harness.oracle.linear import bilinear_jet, bilinear_value, structural_jet, structural_value
from hessdiff.harness.oracle.whole import selection_jet, vector_jet, whole_value
from hessdiff.harness.ops import Bilinear, Elementwise, OpSpec, Piecewise, Selection, Structural, Vector

if TYPE_CHECKING:
    from hessdiff.harness.oracle.evaluator import _Evaluator
    from hessdiff.harness.oracle.jets import _Jet

__all__ = ["KINDS", "Kind", "kind_of"]


@dataclass(frozen=True)
class Kind:
    """What the oracle does with one kind of op mathematics.

    Arguments:
        jet: ``jet(evaluator, node, spec, attrs, args, shape)``, the node's jet from its
            arguments' jets (the chain rule, with error scales, kinks and specials noted
            on the evaluator).
        value: ``value(spec, attrs, args, dtype)``, the node's multi-precision value from
            its arguments' values, NaN where undefined (``node_values``).
        curved: ``curved(spec, attrs, traced)``, whether the op's Hessian may be nonzero
            off its kinks with these arguments traced (``piecewise_linear``).
        frameworks: the frameworks whose derivative formula for the op widens its error
            scale beyond its ``rule_scale`` (``Vector.divides_output``).
    """

    jet: Callable[[_Evaluator, int, OpSpec, dict[str, Any], list[_Jet], tuple[int, ...]], _Jet]
    value: Callable[[OpSpec, dict[str, Any], list[np.ndarray], str], np.ndarray]
    curved: Callable[[OpSpec, dict[str, Any], list[bool]], bool]
    frameworks: Callable[[OpSpec], tuple[str, ...]] = lambda spec: ()


KINDS: dict[type, Kind] = {
    Elementwise: Kind(elementwise, elementwise_value, elementwise_curved),
    Piecewise: Kind(functools.partial(elementwise, piecewise=True),
                    functools.partial(elementwise_value, piecewise=True),
                    functools.partial(elementwise_curved, piecewise=True)),
    Structural: Kind(structural_jet, structural_value, lambda spec, attrs, traced: False),
    Bilinear: Kind(bilinear_jet, bilinear_value, lambda spec, attrs, traced: all(traced)),
    Vector: Kind(vector_jet, whole_value, lambda spec, attrs, traced: True,
                 frameworks=lambda spec: spec.math.divides_output),
    Selection: Kind(selection_jet, functools.partial(whole_value, choosing=True),
                    lambda spec, attrs, traced: not spec.math.linear),
}


def kind_of(spec: OpSpec) -> Kind:
    """The handlers of ``spec``'s kind of mathematics; raises ``TypeError`` for a kind the
    oracle does not know."""
    try:
        return KINDS[type(spec.math)]
    except KeyError:
        raise TypeError(f"op {spec.name!r}: unknown op math {spec.math!r}; the oracle knows "
                        f"{sorted(k.__name__ for k in KINDS)}.") from None
