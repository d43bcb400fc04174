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
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from hessdiff.harness.ir import Program
from hessdiff.harness.ops import Bilinear, Elementwise, OpSpec, Piecewise, Selection, Structural, Vector, fixed_integer, get_op

__all__ = ["DIGITS", "Kink", "OracleResult", "OutOfDomain", "Resolution", "all_resolved", "conventions", "evaluate",
           "resolutions"]

DIGITS = 50

_NAN = mpmath.mpf("nan")
_ZERO = mpmath.mpf(0)


class OutOfDomain(ValueError):
    """The program is undefined at this point (log of a negative, division by zero)."""


class OracleTimeout(OutOfDomain):
    """The oracle could not evaluate the program here in its time limit.

    Exact arithmetic has no overflow: exp of an integer-valued 1e300 (the dtype's edge,
    where the generator aims) is computed by repeated squaring of ever longer integers,
    and takes hours. No float format holds such a value; the point is left unjudged.
    """


ORACLE_SECONDS = 20.0


@contextlib.contextmanager
def _time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise ``OracleTimeout`` in the main thread after ``seconds`` (a no-op elsewhere:
    signals reach only the main thread)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise OracleTimeout(f"the oracle did not finish {what} within {seconds:g} s (exact arithmetic "
                            "on values far beyond the dtype's range)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Kink:
    """A piecewise op whose switch is exactly zero at the point."""

    node: int
    op: str
    element: tuple[int, ...]


@dataclass(frozen=True)
class OracleResult:
    """The oracle's verdict on a program at a point.

    Arguments:
        value: f(x), multi-precision.
        gradient: (n,) object array of mpf, NaN where undefined.
        hessian: (n, n) object array of mpf, NaN where undefined.
        hessian_scale: (n, n) float64; the sum of absolute values of every term the chain
            rule adds into each entry (a floating-point evaluation errs by about
            ``eps * hessian_scale``).
        gradient_scale: (n,) float64, the same for the gradient.
        value_scale: float, the same for the value.
        kinks: every piecewise op exactly at a kink.
        kink_distance: the smallest relative distance |switch| / scale of any piecewise
            op from its kink (``inf`` for a smooth program); the scale is the switch's
            error scale plus ``tiny / eps`` of the dtype, so a switch that underflows to
            zero counts as within rounding distance.
        kink_ops: the ops whose kink that distance belongs to.
        kink_gap: the smallest absolute |switch| of any piecewise op (``inf`` for a smooth
            program): a framework whose arithmetic keeps a narrower range than the dtype
            (MLX's float64 transcendentals flush below float32's smallest normal) rounds a
            switch that small onto its kink (``Tolerance.near_kink``).
        max_magnitude: the largest magnitude of any value or derivative carried along, so
            the judge can tell when the true result overflows the dtype.
        product_peak: the largest product of a derivative carried along (a gradient or
            Hessian entry of any node) and a value, another such derivative, or an op's
            own local derivative. The chain rule multiplies such pairs in an order the
            mathematics does not fix, and reverse mode multiplies an adjoint by the next
            factor before dividing by another (JAX's jacrev(jacrev) of
            square(std(expm1(x))) at x1 = 341 in float64 multiplies an adjoint of 3.7e296
            by a tangent of 1.9e148 before dividing by std**2): past the dtype's range, a
            NaN or inf is the dtype's honest outcome, though every true value is finite.
        dtype: the dtype whose rounding of inputs and constants was applied.
        specials: ``(op, i)`` for every op whose argument came within rounding distance
            of its ``i``-th special value (``OpSpec.special``) somewhere in the program.
        underflow: whether a node's value, or an intermediate of a whole-array op's
            formula, lies below the dtype's smallest normal (where the frameworks' own
            formulas may divide 0 by 0).
        underflow_vars: the inputs such an intermediate depends on, and those of a traced
            argument whose square underflows (``_Evaluator._squares_underflow``): a NaN
            made of 0/0 there reaches every entry of their rows and columns (0 * NaN).
        framework_scales: every framework with a rule scale of its own in this program,
            whose ``scale_for`` differs from ``hessian_scale``.
        sides: ``(key, choices)`` for every choice a kink leaves open (``Resolution``):
            a piecewise op's ``k``-th switch at 0, key ``(op, k)`` (within the fuzz of
            one, ``(op, k, node, element)``), with 2 choices, its two sides; or a
            selection op's ties, key ``(op, -1)``, with the ways to break them.
    """

    value: Any
    gradient: np.ndarray
    hessian: np.ndarray
    hessian_scale: np.ndarray
    gradient_scale: np.ndarray
    value_scale: float
    kinks: tuple[Kink, ...]
    kink_distance: float
    kink_ops: frozenset[str]
    max_magnitude: float
    dtype: str
    specials: frozenset[tuple[str, int]] = frozenset()
    sides: tuple[tuple[tuple[Any, ...], int], ...] = ()
    framework_scales: tuple[str, ...] = ()
    kink_gap: float = float("inf")
    underflow: bool = False
    underflow_vars: tuple[int, ...] = ()
    product_peak: float = 0.0
    # Evaluates a framework's scale when first asked (``scale_for``), and keeps it.
    _rescale: Callable[[str], np.ndarray] | None = dataclasses.field(default=None, compare=False, repr=False)
    _scales: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def scale_for(self, framework: str | None) -> np.ndarray:
        """``hessian_scale`` with the rule scales of ``framework``'s own derivative formulas
        (``hessdiff.harness.ops.RuleScale``): another framework's formula never widens its bound.
        Never smaller than ``hessian_scale``, and computed (by evaluating the program's
        error scales again) only when asked: a judge asks only where the tighter
        ``hessian_scale`` fails."""
        if not framework or framework not in self.framework_scales or self._rescale is None:
            return self.hessian_scale
        if framework not in self._scales:  # a replaced (widened) hessian_scale stays in
            self._scales[framework] = np.maximum(self.hessian_scale, self._rescale(framework))
        return self._scales[framework]

    @property
    def undefined(self) -> np.ndarray:
        """Boolean (n, n): entries with no single value (a kink makes them one-sided)."""
        return np.vectorize(mpmath.isnan, otypes=[bool])(self.hessian)

    def hessian_float(self) -> np.ndarray:
        """The Hessian in float64, NaN where undefined."""
        return _to_float(self.hessian)

    def gradient_float(self) -> np.ndarray:
        return _to_float(self.gradient)


def _to_float(a: np.ndarray) -> np.ndarray:
    return np.array([float(v) for v in a.ravel()], dtype=np.float64).reshape(a.shape)


# --- jets -----------------------------------------------------------------------------


@dataclass
class _Jet:
    """Value, gradient and Hessian of one node, plus their error scales (float64).

    ``g`` and ``h`` are None for a constant (all derivatives exactly zero).
    """

    v: np.ndarray
    g: np.ndarray | None
    h: np.ndarray | None
    vm: np.ndarray
    gm: np.ndarray | None
    hm: np.ndarray | None
    peak: float = 0.0  # the largest intermediate of its formula that frameworks form too (``Vector.formula_range``)
    # |g| and |h| as float64 (``_abs_float``), once the jet is an argument (``_absolutes``):
    # the chain rule's error scales read them for every element of every node it feeds.
    ga: np.ndarray | None = None
    ha: np.ndarray | None = None


def _absolutes(jet: _Jet) -> tuple[np.ndarray | None, np.ndarray | None]:
    """|g| and |h| of a finished jet as float64, computed once."""
    if jet.ga is None and jet.g is not None:
        jet.ga, jet.ha = _abs_float(jet.g), _abs_float(jet.h)
    return jet.ga, jet.ha


def _mul0_scalar(a: Any, b: Any) -> Any:
    # Truthiness, not ``== 0``: an mpf compared with the int 0 converts it first, and this
    # runs tens of millions of times a campaign.
    if not a or not b:
        return _ZERO
    return a * b


_mul0 = np.frompyfunc(_mul0_scalar, 2, 1)


def _support(a: np.ndarray) -> np.ndarray:
    """The flat indices of the entries of an object array that are not exactly 0 (NaN
    and inf count): the only entries a product with ``_mul0`` semantics can move."""
    return np.flatnonzero(np.asarray(a, dtype=object).astype(bool))


def _add_scaled(out: np.ndarray, d: Any, v: np.ndarray, support: np.ndarray | None = None) -> None:
    """out += d * v, in place, with 0 * anything = 0 (``_mul0``), touching only the
    entries of ``v`` that are not 0.

    The chain rule's terms are sparse (an element of an elementwise op depends on one or
    two inputs, so its gradient has one or two entries and its Hessian one to four of
    n**2): summing them entry by entry over the whole array was most of the oracle's time.
    """
    if not d:
        return
    flat_out, flat_v = out.reshape(-1), v.reshape(-1)
    idx = _support(flat_v) if support is None else support
    if idx.size:
        flat_out[idx] = flat_out[idx] + flat_v[idx] * d  # array first: mpf * array reprs the array


def _add_outer(out: np.ndarray, d: Any, a: np.ndarray, b: np.ndarray,
               sa: np.ndarray, sb: np.ndarray) -> None:
    """out += d * outer(a, b), in place, over the supports ``sa`` of a and ``sb`` of b
    (``_mul0`` semantics: an entry outside them gets 0)."""
    if not d or not sa.size or not sb.size:
        return
    block = np.ix_(sa, sb)
    out[block] = out[block] + np.outer(a[sa], b[sb]) * d


def _obj(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=object)


_nonzero = np.frompyfunc(lambda v: bool(v != 0) and not mpmath.isnan(v), 1, 1)


def _depends(jet: _Jet, where: Any = Ellipsis) -> np.ndarray:
    """Which inputs the elements ``where`` of a node depend on (a nonzero derivative or
    derivative error scale), as a boolean vector over the inputs."""
    g, gm = jet.g[where], jet.gm[where]
    n = g.shape[-1]
    used = np.asarray(_nonzero(g), dtype=bool) | (np.asarray(gm) > 0)
    return used.reshape(-1, n).any(axis=0)


_FLOAT_MAX = float(np.finfo(np.float64).max)


def _abs_float(a: np.ndarray) -> np.ndarray:
    """|a| as float64, with NaN (undefined) counted as 0 magnitude and a magnitude beyond
    float64's range as its largest value (as ``_fabs``)."""
    out = np.abs(np.asarray(a, dtype=np.float64))
    # fmax drops NaN for 0; the whole oracle's hot loop goes through here, and
    # np.nan_to_num costs ten times these two ufuncs.
    return np.minimum(np.fmax(out, 0.0), _FLOAT_MAX)


# --- symbolic derivative rules, compiled once per op ----------------------------------


@dataclass(frozen=True)
class _Rule:
    """Lambdified f and its partials up to third order, for one smooth expression."""

    f: Callable[..., Any]
    d1: tuple[Callable[..., Any], ...]
    d2: tuple[tuple[Callable[..., Any], ...], ...]
    d3: tuple[tuple[tuple[Callable[..., Any], ...], ...], ...]
    # For a unary op whose frameworks compute derivatives from its output (tanh' as
    # 1 - y*y): the magnitude of the terms those formulas add, orders 1..3.
    rule_scale: tuple[Callable[..., Any], ...] | None = None
    rule_frameworks: tuple[str, ...] = ()  # whose formula it is (``RuleScale.frameworks``)
    value_terms: Callable[..., Any] | None = None  # ``RuleScale.value``: the value formula's terms
    scale_above_eps: bool = False  # ``RuleScale.above_eps``: no formula terms where |a| <= eps
    # Per argument, whether f's first or second derivative divides by a function of it
    # that vanishes where the arguments do (1/a**2, a/sqrt(a**2 + b**2)): only there does
    # an argument multiplied by itself underflow into a 0 that the frameworks' formulas
    # divide by (``_squares_underflow``). exp(-a**2) in erf' or 1 - tanh(a)**2 underflow
    # harmlessly, to a term of 1 or 0.
    divides: tuple[bool, ...] = ()
    # Whether the expression exponentiates an argument (exp, sinh, a**b with b traced):
    # in exact arithmetic exp of an integer-valued 1e300 is a multiplication of numbers
    # with millions of digits that no signal interrupts.
    exponential: bool = False


# An exponential of an argument past this is beyond every float format (e**1e5 has 43430
# digits in its exponent's place): the oracle declines it rather than compute it exactly.
EXPONENT_LIMIT = 1e5


def _sympy() -> Any:
    import sympy

    return sympy


def _compile(expr_builder: Callable[..., Any], arity: int, int_attrs: dict[str, int],
             float_attrs: Sequence[str]) -> tuple[Any, ...]:
    sp = _sympy()
    args = sp.symbols(f"a0:{arity}", real=True)
    fattrs = {name: sp.Symbol(f"attr_{name}", real=True) for name in float_attrs}
    return sp, args, fattrs, expr_builder(sp, *args, **int_attrs, **fattrs)


def _lambdify(sp: Any, params: Sequence[Any], expr: Any) -> Callable[..., Any]:
    return sp.lambdify(params, expr, modules="mpmath")


def _rule_from_expr(sp: Any, args: Sequence[Any], params: Sequence[Any], expr: Any) -> _Rule:
    n = len(args)
    d1 = [sp.diff(expr, a) for a in args]
    d2 = [[sp.diff(d1[i], args[j]) for j in range(n)] for i in range(n)]
    d3 = [[[sp.diff(d2[i][j], args[k]) for k in range(n)] for j in range(n)] for i in range(n)]
    lam = functools.partial(_lambdify, sp, params)
    exponential = bool(expr.atoms(sp.exp, sp.sinh, sp.cosh, sp.tanh)) or any(
        p.exp.free_symbols & set(args) for p in expr.atoms(sp.Pow))
    return _Rule(
        lam(expr),
        tuple(lam(e) for e in d1),
        tuple(tuple(lam(e) for e in row) for row in d2),
        tuple(tuple(tuple(lam(e) for e in col) for col in row) for row in d3),
        exponential=exponential,
        divides=tuple(_divides_by_vanishing(sp, (d1[i], d2[i][i]), args[i], args) for i in range(n)),
    )


def _divides_by_vanishing(sp: Any, derivatives: Sequence[Any], arg: Any, args: Sequence[Any]) -> bool:
    """Whether one of ``derivatives`` has a denominator in ``arg`` that is 0 (or
    undefined) where every argument is 0 (``_Rule.divides``)."""
    at_zero = {a: 0 for a in args}
    for expr in derivatives:
        _, den = sp.fraction(sp.together(expr), exact=True)
        if arg in den.free_symbols:
            value = den.subs(at_zero)
            if value == 0 or value.has(sp.zoo, sp.nan, sp.oo):
                return True
    return False


def _split_attrs(spec: OpSpec, attrs: dict[str, Any]) -> tuple[dict[str, int], tuple[str, ...]]:
    ints = {a.name: attrs[a.name] for a in spec.attrs if a.kind != "float"}
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    return ints, floats


def _fixed_integers(spec: OpSpec, vals: Sequence[Any], varying: Sequence[bool]) -> tuple[tuple[int, int], ...]:
    """The ``integer_args`` that are constant integers here, as (position, value): the
    rule is differentiated with them substituted, so a**3 is the polynomial it is at
    a <= 0, not a**b with its log a."""
    fixed = []
    for p in spec.integer_args:
        v = vals[p]
        if not varying[p] and fixed_integer(v):
            fixed.append((p, int(v)))
    return tuple(fixed)


@functools.lru_cache(maxsize=None)
def _smooth_rule(op: str, int_attrs: tuple[tuple[str, Any], ...], fixed: tuple[tuple[int, int], ...] = ()) -> _Rule:
    """The rule of elementwise ``op``; ``fixed`` substitutes constant integer arguments
    (see ``_fixed_integers``)."""
    spec = get_op(op)
    assert isinstance(spec.math, Elementwise)
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    sp, args, fattrs, expr = _compile(spec.math.expr, spec.arity, dict(int_attrs), floats)
    if fixed:
        expr = expr.subs({args[p]: sp.Integer(v) for p, v in fixed})
    params = [*args, *fattrs.values()]
    rule = _rule_from_expr(sp, args, params, expr)
    if spec.rule_scale is not None:
        scales = spec.rule_scale.scale(sp, *args, **dict(int_attrs), **fattrs)
        rule = dataclasses.replace(rule, rule_scale=tuple(_lambdify(sp, params, e) for e in scales),
                                   rule_frameworks=spec.rule_scale.frameworks,
                                   scale_above_eps=spec.rule_scale.above_eps)
        if spec.rule_scale.value is not None:
            terms = spec.rule_scale.value(sp, *args, **dict(int_attrs), **fattrs)
            rule = dataclasses.replace(rule, value_terms=_lambdify(sp, params, sp.sympify(terms)))
    return rule


@functools.lru_cache(maxsize=None)
def _switch_rules(op: str, int_attrs: tuple[tuple[str, Any], ...]) -> tuple[Callable[..., Any], ...]:
    spec = get_op(op)
    assert isinstance(spec.math, Piecewise)
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    sp = _sympy()
    args = sp.symbols(f"a0:{spec.arity}", real=True)
    fattrs = {name: sp.Symbol(f"attr_{name}", real=True) for name in floats}
    switches = spec.math.switches(sp, *args, **dict(int_attrs), **fattrs)
    return tuple(_lambdify(sp, [*args, *fattrs.values()], s) for s in switches)


@functools.lru_cache(maxsize=None)
def _piece_rule(op: str, int_attrs: tuple[tuple[str, Any], ...], signs: tuple[int, ...]) -> _Rule:
    spec = get_op(op)
    assert isinstance(spec.math, Piecewise)
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    sp = _sympy()
    args = sp.symbols(f"a0:{spec.arity}", real=True)
    fattrs = {name: sp.Symbol(f"attr_{name}", real=True) for name in floats}
    expr = sp.sympify(spec.math.piece(sp, signs, *args, **dict(int_attrs), **fattrs))
    params = [*args, *fattrs.values()]
    rule = _rule_from_expr(sp, args, params, expr)
    if spec.rule_scale is not None:  # a piece's formula scale depends on the piece
        scales = spec.rule_scale.scale(sp, signs, *args, **dict(int_attrs), **fattrs)
        rule = dataclasses.replace(rule, rule_scale=tuple(_lambdify(sp, params, sp.sympify(e)) for e in scales),
                                   rule_frameworks=spec.rule_scale.frameworks)
    return rule


# --- the evaluator --------------------------------------------------------------------


def _round(values: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(dtype).astype(np.float64)


def _mpf_array(values: np.ndarray) -> np.ndarray:
    flat = [mpmath.mpf(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()]
    return np.array(flat + [None], dtype=object)[:-1].reshape(np.shape(values))


# One kink's resolution: a side (-1/+1) or a tie-breaking rotation, or a tuple of those
# to average.
Choice = int | tuple[int, ...]


@dataclass(frozen=True)
class Resolution:
    """How to evaluate at a kink instead of marking the entries undefined: what a
    framework computes there with one convention. ``choices[(op, k)]`` picks a side of
    every kink of op's ``k``-th switch (-1 or +1) or a way to break a selection's ties
    (k = -1: an index into its rotations); ``mid`` instead averages the one-sided local
    derivatives (abs'(0) = 0, a tie's gradient split equally: the frameworks' documented
    tie rules). A framework applies one rule per op, so a choice at a kink is per op
    (key ``(op, k)``); near a kink the framework's rounding puts each element on a side
    of its own, so a choice there is per element (key ``(op, k, node, element)``).
    """

    choices: tuple[tuple[tuple[Any, ...], Choice], ...] = ()
    mid: bool = False

    def choice(self, key: tuple[Any, ...], default: int) -> Choice:
        """The side (or tie-breaking rotation) chosen at ``key``, or the tuple of those
        whose results are averaged."""
        return dict(self.choices).get(key, default)


class _Evaluator:
    def __init__(self, program: Program, x: np.ndarray, dtype: str, kink_fuzz: float = 0.0,
                 resolution: Resolution | None = None, framework: str | None = None,
                 range_tiny: float = 0.0) -> None:
        self.program = program
        finfo = np.finfo(dtype)
        # A switch's error unit beyond its error scale: the smallest normal the framework
        # keeps (the dtype's, or a wider one: ``evaluate``'s ``range_tiny``), over eps.
        self.switch_floor = max(float(finfo.tiny), range_tiny) / float(finfo.eps)
        self._limits = (float(finfo.eps) / 2, float(finfo.tiny))  # unit roundoff, smallest normal
        self.kink_gap = float("inf")
        self.framework = framework
        self.resolution = resolution
        self.sides: dict[tuple[Any, ...], int] = {}
        self.kink_fuzz = kink_fuzz
        self.n = program.n
        self.dtype = dtype
        self.x = _round(x, dtype)
        self.kinks: list[Kink] = []
        self.kink_distance = float("inf")
        self.kink_ops: set[str] = set()
        self.max_magnitude = 0.0
        self.max_value = 0.0  # the largest |value| of any node (``product_peak``)
        self.max_derivative = 0.0  # the largest |gradient| or |Hessian| entry of any node
        self.specials: set[tuple[str, int]] = set()
        self._switch_specials = False
        self.underflow = False
        self.underflow_vars = np.zeros(self.n, dtype=bool)

    # Each op kind builds its result jet from its argument jets.

    def run(self) -> OracleResult:
        global _UNDERFLOWS
        outer, _UNDERFLOWS = _UNDERFLOWS, []
        outer_peak = _LOCAL_PEAK[0]
        _LOCAL_PEAK[0] = 0.0
        try:
            result = self._run()
            factor = max(self.max_value, self.max_derivative, _LOCAL_PEAK[0])
            with np.errstate(over="ignore"):
                product = float(np.float64(self.max_derivative) * np.float64(factor))
            return dataclasses.replace(result, max_magnitude=max(result.max_magnitude, _LOCAL_PEAK[0]),
                                       product_peak=product)
        finally:
            _UNDERFLOWS = outer
            _LOCAL_PEAK[0] = outer_peak

    def _run(self) -> OracleResult:
        n = self.n
        eye = np.empty((n, n), dtype=object)
        for i, j in itertools.product(range(n), repeat=2):
            eye[i, j] = mpmath.mpf(int(i == j))
        x = self.x
        jets: list[_Jet] = [
            _Jet(_mpf_array(x), eye, _zeros_obj((n, n, n)), np.abs(x), np.zeros((n, n)),
                 np.zeros((n, n, n)))
        ]
        for i, node in enumerate(self.program.nodes[1:], start=1):
            if node.kind == "const":
                c = _round(self.program.constant(i), self.dtype)
                jets.append(_Jet(_mpf_array(c), None, None, np.abs(c), None, None))
                continue
            spec = get_op(node.kind)
            attrs = spec.full_attrs(node.attr_dict)
            args = [jets[a] for a in node.args]
            shape = self.program.shapes[i]
            if isinstance(spec.math, (Elementwise, Piecewise)):
                jet = self._elementwise(i, spec, attrs, args, shape)
            elif isinstance(spec.math, Structural):
                jet = _structural(spec.math.apply, args, attrs, n)
            elif isinstance(spec.math, Vector):
                jet = _vector(i, spec, attrs, args, n, dtype=self.dtype, framework=self.framework)
            elif isinstance(spec.math, Selection):
                jet = self._selection(i, spec, attrs, args)
            elif isinstance(spec.math, Bilinear):
                jet = _bilinear(spec.math.apply, args[0], args[1], n)
            else:  # pragma: no cover - the catalogue only has these kinds
                raise TypeError(f"unknown op math {spec.math!r}")
            if _UNDERFLOWS and _UNDERFLOWS[-1] == i:  # its formula underflowed: every input it reads
                self.underflow_vars |= np.any([_depends(a) for a in args if a.g is not None] or [False], axis=0)
            self._track(jet)
            jets.append(jet)
        out = jets[-1]
        g = out.g if out.g is not None else _zeros_obj((n,))
        h = out.h if out.h is not None else _zeros_obj((n, n))
        return OracleResult(
            value=out.v[()],
            gradient=g,
            hessian=h,
            hessian_scale=out.hm if out.hm is not None else np.zeros((n, n)),
            gradient_scale=out.gm if out.gm is not None else np.zeros(n),
            value_scale=float(out.vm),
            kinks=tuple(self.kinks),
            kink_distance=self.kink_distance,
            kink_gap=self.kink_gap,
            kink_ops=frozenset(self.kink_ops),
            max_magnitude=self.max_magnitude,
            dtype=self.dtype,
            specials=frozenset(self.specials),
            sides=tuple(sorted(self.sides.items(), key=repr)),
            underflow=self.underflow or bool(_UNDERFLOWS),
            underflow_vars=tuple(int(k) for k in np.flatnonzero(self.underflow_vars)),
        )

    def _track(self, jet: _Jet) -> None:
        self.max_magnitude = max(self.max_magnitude, jet.peak)
        ga, ha = _absolutes(jet)
        for part, magnitude in ((jet.v, None), (jet.g, ga), (jet.h, ha)):
            if part is not None and part.size:
                magnitude = _abs_float(part) if magnitude is None else magnitude
                largest = float(np.max(magnitude))
                self.max_magnitude = max(self.max_magnitude, largest)
                if part is jet.v:
                    self.max_value = max(self.max_value, largest)
                else:
                    self.max_derivative = max(self.max_derivative, largest)
                if part is jet.v:  # a derivative below tiny is merely flushed; a value is divided by
                    small = magnitude < float(np.finfo(self.dtype).tiny)
                    if small.any():  # the exact zeros among them did not underflow
                        small = small & np.asarray(_nonzero(part), dtype=bool)
                    if small.any():
                        self.underflow = True
                        if jet.g is not None:
                            self.underflow_vars |= _depends(jet, small)

    def _elementwise(self, node: int, spec: OpSpec, attrs: dict[str, Any], args: list[_Jet],
                     shape: tuple[int, ...]) -> _Jet:
        n = self.n
        ints, floats = _split_attrs(spec, attrs)
        int_key = tuple(sorted(ints.items()))
        fvals = [mpmath.mpf(float(np.float64(attrs[name]).astype(self.dtype))) for name in floats]
        bargs = [_broadcast(a, shape, n) for a in args]
        derivs = [a.g is not None for a in args]
        any_deriv = any(derivs)
        out = _Jet(
            _zeros_obj(shape), _zeros_obj(shape + (n,)) if any_deriv else None,
            _zeros_obj(shape + (n, n)) if any_deriv else None,
            np.zeros(shape), np.zeros(shape + (n,)) if any_deriv else None,
            np.zeros(shape + (n, n)) if any_deriv else None,
        )
        specials = spec.special(attrs)
        switch_specials = isinstance(spec.math, Piecewise) and len(specials) == len(
            _switch_rules(spec.name, int_key))
        self._switch_specials = switch_specials
        # An argument a framework may see at another value than the exact one: traced, or
        # a constant computed (and rounded) from other constants.
        varying = tuple(d or self.program.nodes[a].kind != "const"
                        for d, a in zip(derivs, self.program.nodes[node].args))
        for idx in np.ndindex(*shape):
            vals = [a.v[idx] for a in bargs]
            point = [*vals, *fvals]
            if not spec.in_domain(tuple(vals), varying):
                raise OutOfDomain(
                    f"node {node} ({spec.name}) is outside its domain at "
                    f"{[mpmath.nstr(v, 8) for v in vals]}"
                )
            if specials and not switch_specials:
                self._special_hits(spec, specials, vals[spec.special_arg], bargs[spec.special_arg].vm[idx])
            if spec.formula_peak is not None:
                _LOCAL_PEAK[0] = max(_LOCAL_PEAK[0], _fabs(spec.formula_peak(mpmath, *vals)))
            edge = bool(spec.arg_domains and self._near_edge(spec.domains_at(tuple(vals), varying), vals, bargs, idx)) \
                or (spec.domain is not None and self._near_excluded_point(spec, vals, bargs, idx))
            if isinstance(spec.math, Elementwise):
                rule = _smooth_rule(spec.name, int_key, _fixed_integers(spec, vals, varying))
                # At an edge the derivatives are undefined: only the value is computed (the
                # derivatives there can cost minutes: lgamma's third, psi(2, a), at a =
                # -3e38, within rounding of a pole, held the oracle to its 20 s timeout).
                results = [_apply_rule(rule, point, bargs, idx, [False] * len(derivs) if edge else derivs,
                                       self.framework, float(np.finfo(self.dtype).eps), self._limits, node)]
                self._squares_underflow(rule, vals, bargs, idx)
                undefined_switch = False
            else:
                results, undefined_switch = self._pieces(node, spec, int_key, point, bargs, idx, derivs)
            if len(results) > 1 and self.resolution is not None and not undefined_switch:
                results = [_average(results)]
            if edge:
                results = [_undefined_derivatives(results[0], bargs, idx, derivs, n)]
            _merge_into(out, idx, results)
        return out

    def _squares_underflow(self, rule: _Rule, vals: list[Any], bargs: list[_Jet], idx: tuple[int, ...]) -> None:
        """Note the inputs behind a traced argument whose square underflows the dtype.

        The frameworks' derivative formulas multiply an argument by itself where the
        mathematics does not (hypot's and arctan2's a*a + b*b, reciprocal's 1/(x*x)), so
        below sqrt(tiny) they divide 0 by 0 (JAX's Hessian of hypot(x, x) at x = 1e-30 in
        float32 is NaN where the truth is 0), and forward mode carries that NaN along
        every row of the input through 0 * NaN. Only an argument the op's derivatives
        divide by a function of, vanishing where it does, is marked (``_Rule.divides``):
        erf' = exp(-a*a) or tanh' = 1 - tanh(a)**2 only round to 1 or 0. A constant
        argument is squared too: hypot(a, c) at a = 0 and |c| = 1e-170 has the Hessian
        1/|c| = 1e170 in float64, but JAX's formula divides by c*c, which underflows, and
        returns NaN: the inputs behind every traced argument are marked. (Forward over
        forward also multiplies that NaN partial by the zero tangents of the other inputs,
        NaN at entries of inputs the node never reads:
        JAX's jacfwd(jacfwd) H[1, 1] of mean(hypot(x - c0, c)) with c[0] = 1e-170. That
        0 * NaN is reported, not excused.)
        """
        root = math.sqrt(float(np.finfo(self.dtype).tiny))
        for value, arg, divides in zip(vals, bargs, rule.divides):
            if not (divides and value != 0 and abs(value) < root):
                continue
            for marked in ([arg] if arg.g is not None else [a for a in bargs if a.g is not None]):
                self.underflow_vars |= _depends(marked, idx)

    def _pieces(self, node: int, spec: OpSpec, int_key: tuple[tuple[str, Any], ...],
                point: list[Any], bargs: list[_Jet], idx: tuple[int, ...],
                derivs: list[bool]) -> tuple[list[tuple[Any, ...]], bool]:
        """Each piece the element may take, and whether a switch is undefined.

        A switch computed from a value a kink upstream left undefined (where's jump: the
        value is the constant on one side, the input on the other) is NaN, and lies on
        neither side: both pieces, merged, so what they disagree on stays undefined
        (NaN > 0 would pick one piece, a value no convention gives). It is no kink of
        its own: each convention of the kink upstream defines it."""
        switches = [s(*point) for s in _switch_rules(spec.name, int_key)]
        undefined = [bool(mpmath.isnan(s)) for s in switches]
        # A computed switch errs by about eps * scale, and by the dtype's smallest normal
        # where it underflows (x*x of a tiny x is 0 in float32): distances are relative
        # to that error unit, so "within k ulps" covers both.
        scale = max(float(bargs[k].vm[idx]) for k in range(len(bargs))) + self.switch_floor
        for k, s in enumerate(switches):
            self._note_switch(spec.name, k, 0.0 if s == 0 else float(abs(s)) / scale, self._switch_specials,
                              0.0 if undefined[k] else float(abs(s)))
        on_kink = [not nan and bool(s == 0 or (self.kink_fuzz and float(abs(s)) <= self.kink_fuzz * scale))
                   for s, nan in zip(switches, undefined)]
        choices: list[tuple[int, ...]] = []
        res = self.resolution
        for k, s in enumerate(switches):
            if undefined[k]:
                choices.append((-1, 1))
            elif on_kink[k]:
                key = (spec.name, k) if s == 0 else (spec.name, k, node, idx)
                self.sides[key] = 2
                choice = (-1, 1) if res is None or res.mid else res.choice(key, 1)
                choices.append(choice if isinstance(choice, tuple) else (choice,))
            else:
                choices.append((1,) if s > 0 else (-1,))
        if any(on_kink):
            self.kinks.append(Kink(node, spec.name, idx))
        combos = list(itertools.product(*choices))
        results = [_apply_rule(_piece_rule(spec.name, int_key, signs), point, bargs, idx, derivs, self.framework,
                               0.0, self._limits, node)
                   for signs in combos]
        own = tuple(1 if s > 0 else -1 for s in switches)
        if len(results) > 1 and all(s != 0 for s in switches) and not any(undefined) and own in combos:
            # Only near kinks (the fuzz), no switch on one: the point lies on a side of each,
            # and its value is that side's. The sides' values differ by rounding (leaky_relu
            # of -1.2e-39 is -1.2e-40 or -1.2e-39), and a NaN value would leave every node
            # after it undefined (erfinv of NaN), where only the derivatives are in doubt.
            value = results[combos.index(own)][0]
            results = [(value, *r[1:]) for r in results]
        return results, any(undefined)


    def _note_switch(self, op_name: str, k: int, distance: float, counts_as_special: bool, gap: float) -> None:
        """Record one switch's relative distance from its kink: the program's nearest kink
        (and the ops at it), and the op's ``k``-th special value if the switch is on it;
        and its absolute ``gap``, the smallest so far (``kink_gap``)."""
        self.kink_gap = min(self.kink_gap, gap)
        if counts_as_special and distance <= SPECIAL_ULPS * float(np.finfo(self.dtype).eps):
            self.specials.add((op_name, k))
        if distance < self.kink_distance:
            self.kink_distance = distance
            self.kink_ops = {op_name}
        elif distance == self.kink_distance:
            self.kink_ops.add(op_name)

    def _selection(self, node: int, spec: OpSpec, attrs: dict[str, Any], args: list[_Jet]) -> _Jet:
        """A ``Selection`` op: one ``Vector`` evaluation per way of making its tied choices.

        The first evaluation records every choice's gap (a switch: its distance from the
        kink and the special value it is) and how many alternatives the tied ones have;
        the others rotate the order of tied entries and flip the sign of one zero at a
        time, so every entry a tie could select appears at every output it could reach.
        Where the evaluations differ the entry is undefined, as at a piecewise op's kink.
        """
        floor = self.switch_floor
        vm = np.concatenate([np.ravel(a.vm) for a in args])
        first = _Ties(0, vm, floor, self.kink_fuzz)
        jets = [_vector(node, spec, attrs, args, self.n, first, dtype=self.dtype)]
        for k, gap, scale in first.switches:
            self._note_switch(spec.name, k, 0.0 if gap == 0 else float(abs(gap)) / scale, True, float(abs(gap)))
        if first.runs == 1:
            return jets[0]
        self.kinks.append(Kink(node, spec.name, ()))
        self.sides[spec.name, -1] = max(self.sides.get((spec.name, -1), 1), first.runs)  # ties: per op
        jets += [_vector(node, spec, attrs, args, self.n, _Ties(r, vm, floor, self.kink_fuzz), dtype=self.dtype)
                 for r in range(1, first.runs)]
        res = self.resolution
        if res is not None and not res.mid:
            choice = res.choice((spec.name, -1), 0)
            if not isinstance(choice, tuple):
                return jets[choice % len(jets)]
            jets = [jets[r % len(jets)] for r in dict.fromkeys(choice)]  # split among these only
        out = jets[0]
        if out.g is None:
            return out
        if res is not None:  # mid: the tie's derivatives split equally among the ways to break it
            return _Jet(out.v.copy(), *(_mean_obj([getattr(j, part) for j in jets]) for part in ("g", "h")),
                        out.vm.copy(), *(np.max([getattr(j, part) for j in jets], axis=0) for part in ("gm", "hm")))
        out = _Jet(out.v.copy(), out.g.copy(), out.h.copy(), out.vm.copy(), out.gm.copy(), out.hm.copy())
        for idx in np.ndindex(*out.v.shape):
            _merge_into(out, idx, [(j.v[idx], j.g[idx], j.h[idx], j.vm[idx], j.gm[idx], j.hm[idx]) for j in jets])
        return out

    def _near_edge(self, domains: tuple[str | None, ...], vals: list[Any], bargs: list[_Jet],
                   idx: tuple[int, ...]) -> bool:
        """Whether an argument lies within rounding distance of its domain's edge.

        There a framework's own rounding decides whether the argument is inside (sqrt of
        a difference that is exactly 0 in floating point and 1e-17 in exact arithmetic),
        so the derivatives have no single value it could be held to.
        """
        for k, domain in enumerate(domains):
            if domain is None:
                continue
            for edge in _domain_edges(domain, vals[k]):
                if self._within_rounding(vals[k] - edge, max(float(bargs[k].vm[idx]), float(abs(edge)))):
                    return True
        return False

    def _within_rounding(self, distance: Any, scale: float) -> bool:
        """Whether ``distance`` is within ``SPECIAL_ULPS`` roundings of a value of size
        ``scale`` (an edge, a special value, an argument's own error scale) in the dtype:
        a framework computing that value may land on either side of, or exactly on, what
        it is compared with. The tiny/eps floor keeps subnormal scales from shrinking it
        below the dtype's spacing at 0."""
        finfo = np.finfo(self.dtype)
        floor = float(finfo.tiny / finfo.eps)
        return float(abs(distance)) <= SPECIAL_ULPS * float(finfo.eps) * (scale + floor)

    def _near_excluded_point(self, spec: OpSpec, vals: list[Any], bargs: list[_Jet], idx: tuple[int, ...]) -> bool:
        """For an op whose domain excludes a point rather than a range of one argument
        (hypot at a = b = 0, its cone): whether the arguments are within rounding distance
        of it, i.e. each is 0 or as close to 0 as its own error. There the framework may
        compute every argument as exactly 0, so the derivatives have no value it could be
        held to."""
        snapped = [mpmath.mpf(0) if self._within_rounding(value, float(arg.vm[idx])) else value
                   for value, arg in zip(vals, bargs)]
        return not spec.in_domain(tuple(snapped))

    def _special_hits(self, spec: OpSpec, specials: tuple[float, ...], value: Any, error: float) -> None:
        """Record every special value that ``value`` lies within rounding distance of."""
        for k, target in enumerate(specials):
            if self._within_rounding(value - target, max(abs(target), float(error))):
                self.specials.add((spec.name, k))


SPECIAL_ULPS = 64.0
_DOMAIN_EDGES = {"pos": (0,), "nonzero": (0,), "gt1": (1,), "gt_neg1": (-1,), "unit": (-1, 1), "off_poles": (0,)}


def _domain_edges(domain: str, value: Any) -> tuple[Any, ...]:
    """The edges of ``domain`` that ``value`` may be near: the fixed ones, and for
    Gamma's poles the non-positive integer nearest to it."""
    if domain == "off_poles" and value < 0:
        return (min(0, int(mpmath.nint(value))),)
    return _DOMAIN_EDGES[domain]


def _undefined_derivatives(result: tuple[Any, ...], args: list[_Jet], idx: tuple[int, ...],
                           derivs: list[bool], n: int) -> tuple[Any, ...]:
    """``result`` with every derivative entry undefined (NaN).

    A framework whose rounding put the argument outside the domain computes a NaN value
    there, and NaN reaches every entry of its derivatives (NaN times 0 is NaN), so no
    entry has a value it could be held to; the frameworks are still compared with each
    other there.
    """
    value, grad, hess, vm, gm, hm = result
    if not any(derivs):
        return result
    if grad is None:  # only the value was computed: the derivatives' scales do not matter
        return value, _full_nan((n,)), _full_nan((n, n)), vm, np.zeros(n), np.zeros((n, n))
    return value, _full_nan(grad.shape), _full_nan(hess.shape), vm, gm, hm


def _zeros_obj(shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(_ZERO)
    return out


def _broadcast(jet: _Jet, shape: tuple[int, ...], n: int) -> _Jet:
    def b(a: np.ndarray | None, extra: tuple[int, ...]) -> np.ndarray | None:
        if a is None:
            return None
        lead = a.shape[: a.ndim - len(extra)]
        a = a.reshape((1,) * (len(shape) - len(lead)) + a.shape)
        return np.broadcast_to(a, shape + extra)

    ga, ha = _absolutes(jet)
    return _Jet(b(jet.v, ()), b(jet.g, (n,)), b(jet.h, (n, n)), b(jet.vm, ()), b(jet.gm, (n,)),
                b(jet.hm, (n, n)), ga=b(ga, (n,)), ha=b(ha, (n, n)))


_GUARD_DIGITS = 40
_MAX_DIGITS = 4000


def _stable(fn: Callable[..., Any], point: list[Any]) -> Any:
    """``fn(*point)`` to the working precision, whatever cancellation is inside ``fn``.

    A rule as written can cancel (``log(1 + exp(a))`` is 0 at 50 digits for a = -270;
    softplus'' is a difference of two numbers near 1 for a = 200), so it is evaluated
    again with more digits, and with more still until two evaluations agree to the
    working precision: the oracle's digits are guaranteed, not hoped for.
    """
    if _MEMO is not None:
        key = (id(fn), mpmath.mp.dps, tuple(point))
        if key not in _MEMO:
            _MEMO[key] = _stable_uncached(fn, point)
        return _MEMO[key]
    return _stable_uncached(fn, point)


def _stable_uncached(fn: Callable[..., Any], point: list[Any]) -> Any:
    working = mpmath.mp.dps
    value = fn(*point)
    # An exact 0 may be total cancellation (log(1 + 1e-117) at 90 digits is 0 too):
    # confirm a zero with many more digits.
    digits = working + _GUARD_DIGITS if value != 0 else _MAX_DIGITS // 4
    while True:
        with mpmath.workdps(digits):
            better = fn(*point)
        if _agrees_to(value, better, working - 10):
            return +better  # rounded back to the working precision
        if digits >= _MAX_DIGITS:
            return +better
        value, digits = better, min(2 * digits, _MAX_DIGITS)


def _agrees_to(a: Any, b: Any, digits: int) -> bool:
    if mpmath.isnan(a) or mpmath.isnan(b) or mpmath.isinf(a) or mpmath.isinf(b):
        return (mpmath.isnan(a) and mpmath.isnan(b)) or a == b
    if a == b:
        return True
    return abs(a - b) <= abs(b) * mpmath.mpf(10) ** (-digits)


def _apply_rule(rule: _Rule, point: list[Any], args: list[_Jet], idx: tuple[int, ...],
                derivs: list[bool], framework: str | None = None, eps: float = 0.0,
                limits: tuple[float, float] = (0.0, 0.0), node: int | None = None) -> tuple[Any, ...]:
    """One element of y = f(args): value, gradient, Hessian and their error scales.

    ``eps``: below it, a rule scale ``above_eps`` does not apply. ``limits``: the dtype's
    unit roundoff and smallest normal, where the framework's formula may leave its range
    (0: not modelled); ``node``: the node, noted in ``_UNDERFLOWS`` where it does."""
    k = len(args)
    if rule.exponential and any(abs(v) > EXPONENT_LIMIT for v in point):
        raise OutOfDomain("an exponential of an argument beyond every float format's range "
                          f"(|argument| > {EXPONENT_LIMIT:g}): the oracle declines to compute it exactly")
    value = _stable(rule.f, point)
    vm = [float(args[i].vm[idx]) for i in range(k)]
    d1 = [_stable(rule.d1[i], point) if derivs[i] else _ZERO for i in range(k)]
    active = [i for i in range(k) if derivs[i]]
    inactive = [i for i in range(k) if not derivs[i]]
    # A constant argument is exact in derivatives but not in value: the framework rounded
    # the constant subexpression that made it (exp(c)**2 + c2 - c3 cancels to a few ulps
    # of 6), so its error moves this value and, through the next derivative, the
    # derivatives. Plain-precision magnitudes suffice for a scale.
    value_scale = _fabs(value) + sum(_fabs(d1[i]) * vm[i] for i in active) + sum(
        _magnitude(rule.d1[i], point) * vm[i] for i in inactive)
    if rule.value_terms is not None and (not rule.rule_frameworks or framework in rule.rule_frameworks):
        value_scale = value_scale + _fabs(rule.value_terms(*point))
    if not active:
        return value, None, None, value_scale, None, None
    d2 = {(i, j): _stable(rule.d2[i][j], point) for i in active for j in active}
    _LOCAL_PEAK[0] = max(_LOCAL_PEAK[0], *(_fabs(d1[i]) for i in active), *(_fabs(d) for d in d2.values()))
    d3 = {(i, j, m): rule.d3[i][j][m](*point) for i in active for j in active for m in range(k)}
    g = {i: args[i].g[idx] for i in active}
    h = {i: args[i].h[idx] for i in active}
    gm = {i: args[i].gm[idx] for i in active}
    hm = {i: args[i].hm[idx] for i in active}
    gabs = {i: args[i].ga[idx] for i in active}  # every argument jet is ``_broadcast``, which sets them
    habs = {i: args[i].ha[idx] for i in active}
    grad = _zeros_obj(g[active[0]].shape)
    hess = _zeros_obj(h[active[0]].shape)
    support = {i: _support(g[i]) for i in active}
    for i in active:
        _add_scaled(grad, d1[i], g[i], support[i])
        _add_scaled(hess, d1[i], h[i])
    for i in active:
        for j in active:
            _add_outer(hess, d2[i, j], g[i], g[j], support[i], support[j])
    # Error scales: |d| grows by the second derivative times the argument's own error.
    # The error of a derivative rule: its own rounding (or, for rules computed from the
    # op's output, the terms that formula adds) plus the argument's error times the next
    # derivative.
    if rule.rule_scale is not None and (not rule.rule_frameworks or framework in rule.rule_frameworks) \
            and not (rule.scale_above_eps and abs(point[0]) <= eps):
        s1, s2, s3, flushed = _flushed_terms([r(*point) for r in rule.rule_scale], *limits)
        if flushed and node is not None and _UNDERFLOWS is not None:
            _UNDERFLOWS.append(node)
    else:
        s1 = s2 = s3 = 0.0
    d1m = {
        i: max(_fabs(d1[i]), s1) + sum(_fabs(d2.get((i, j), _ZERO)) * vm[j] for j in active)
        + sum(_magnitude(rule.d2[i][j], point) * vm[j] for j in inactive)
        for i in active
    }
    d2m = {
        (i, j): max(_fabs(d2[i, j]), s2) + sum(_fabs(d3[i, j, m]) * vm[m] for m in range(k))
        for i in active for j in active
    }
    x = _times
    grad_scale = sum(x(d1m[i], gabs[i]) + x(_fabs(d1[i]), gm[i]) for i in active)
    hess_scale = sum(x(d1m[i], habs[i]) + x(_fabs(d1[i]), hm[i]) for i in active)
    for i in active:
        for j in active:
            hess_scale = hess_scale + x(d2m[i, j], np.outer(gabs[i], gabs[j])) + x(_fabs(d2[i, j]), (
                x(gm[i][:, None], gabs[j][None, :]) + x(gabs[i][:, None], gm[j][None, :])))
    return value, grad, hess, value_scale, grad_scale, hess_scale


def _flushed_terms(terms: list[Any], eps: float, tiny: float) -> tuple[float, float, float, bool]:
    """The rule scales of orders 1, 2, 3 (float, in units of eps; ``terms``: their exact
    values) where the framework's formula may leave the dtype's range, and whether it does.

    A rule scale's order-k terms are of the size 1/(1 + |a|)**k where the formula is a
    quotient, computed from (1 + |a|)**k itself: where that term lies below the smallest
    normal, the power overflowed (or the term flushed), and the terms of the order below,
    which it cancels, lose their partner: that order is then accurate only to its terms'
    full size, not eps times it. (JAX's revrev H[0, 0] of softsign(expm1(x0)) at x0 =
    300 is -2.0 in float64 where the truth is -5.1e-131: a / (1 + |a|) at a = 1.9e130,
    whose third power overflows, differentiated twice.)"""
    s1, s2, s3 = (_err_abs(t) for t in terms)  # exact: a float would flush them itself
    flushed = False
    if tiny > 0 and eps > 0:
        if 0 < s3 < tiny or 0 < s2 < tiny:
            s2, flushed = s2 / eps, True
        if 0 < s2 * eps < tiny or 0 < s1 < tiny:
            s1, flushed = s1 / eps, True
    return _fabs(s1), _fabs(s2), _fabs(s3), flushed


def _times(a: Any, b: Any) -> Any:
    """a * b of error magnitudes with 0 * inf = 0 (an unbounded term that feeds nothing;
    NumPy's NaN there would make the bound NaN, which no comparison fails)."""
    out = np.multiply(a, b)  # under the evaluation's errstate (over, invalid: ignored)
    if not np.isnan(out).any():  # 0 * inf is the only NaN: magnitudes are never NaN
        return out
    return np.where((np.asarray(a) == 0) | (np.asarray(b) == 0), 0.0, out)


def _magnitude(fn: Any, point: list[Any]) -> float:
    """|fn(point)| at working precision, for an error scale (never raises)."""
    try:
        return _fabs(fn(*point))
    except (ZeroDivisionError, ValueError, OverflowError, TypeError):
        return float(np.finfo(np.float64).max)


def _fabs(v: Any) -> float:
    if mpmath.isnan(v):
        return 0.0
    out = float(abs(v))
    return out if np.isfinite(out) else float(np.finfo(np.float64).max)


def _merge_into(out: _Jet, idx: tuple[int, ...], results: list[tuple[Any, ...]]) -> None:
    """Write one element; where one-sided pieces disagree, the entry is undefined (NaN)."""
    value, grad, hess, vm, gm, hm = results[0]
    for other in results[1:]:
        value = _agree(value, other[0])
        if out.g is not None:
            grad = _agree_array(_or_zero(grad, out.g.shape[-1:]), _or_zero(other[1], out.g.shape[-1:]))
            hess = _agree_array(_or_zero(hess, out.h.shape[-2:]), _or_zero(other[2], out.h.shape[-2:]))
            gm = np.maximum(_or_fzero(gm, out.gm.shape[-1:]), _or_fzero(other[4], out.gm.shape[-1:]))
            hm = np.maximum(_or_fzero(hm, out.hm.shape[-2:]), _or_fzero(other[5], out.hm.shape[-2:]))
        vm = max(vm, other[3])
    if out.g is not None and len(results) > 1:
        if mpmath.isnan(value):
            grad = _full_nan(out.g.shape[-1:])
        # A gradient entry that jumps across the kink has no derivative along the
        # directions that cross it, even where both one-sided Hessians agree (|x| has
        # H = 0 on both sides, yet none at 0). The entries that jump are the directions
        # that cross, so H[i, j] is undefined when both g[i] and g[j] jump.
        jumped = np.array([mpmath.isnan(v) for v in grad], dtype=bool)
        if jumped.any():
            hess = hess.copy()
            hess[np.outer(jumped, jumped)] = _NAN
    out.v[idx] = value
    out.vm[idx] = vm
    if out.g is not None:
        out.g[idx] = _or_zero(grad, out.g.shape[-1:])
        out.h[idx] = _or_zero(hess, out.h.shape[-2:])
        out.gm[idx] = _or_fzero(gm, out.gm.shape[-1:])
        out.hm[idx] = _or_fzero(hm, out.hm.shape[-2:])


def _mean_obj(parts: list[Any]) -> Any:
    """The mean of equally shaped multi-precision values or object arrays (None: none)."""
    if parts[0] is None:
        return None
    return sum(parts[1:], parts[0]) / len(parts)


def _average(results: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """One element's one-sided results averaged (``Resolution.mid``): derivatives and
    value the mean, error scales the largest."""
    fields = list(zip(*results))
    mean = [_mean_obj(list(f)) for f in fields[:3]]
    scales = [None if f[0] is None else np.max(np.stack([np.asarray(x, dtype=np.float64) for x in f]), axis=0)
              for f in fields[3:]]
    scales[0] = float(scales[0])
    return (*mean, *scales)


def _or_zero(a: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return _zeros_obj(shape) if a is None else a


def _or_fzero(a: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape) if a is None else a


def _full_nan(shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(_NAN)
    return out


def _close(a: Any, b: Any) -> bool:
    if mpmath.isnan(a) or mpmath.isnan(b):
        return False
    scale = max(abs(a), abs(b), mpmath.mpf(1))
    return abs(a - b) <= scale * mpmath.mpf(10) ** (-(DIGITS - 10))


def _agree(a: Any, b: Any) -> Any:
    return a if _close(a, b) else _NAN


def _agree_array(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(*a.shape):
        out[idx] = _agree(a[idx], b[idx])
    return out


def _per_slice(apply: Callable[[np.ndarray], Any], a: np.ndarray, extra: int, dtype: Any) -> np.ndarray:
    """Apply a linear map of the leading axes to every derivative slice of ``a``."""
    trailing = a.shape[a.ndim - extra:]
    slices = [np.asarray(apply(a[(...,) + k]), dtype=dtype) for k in np.ndindex(*trailing)]
    stacked = np.stack(slices, axis=-1)
    return stacked.reshape(stacked.shape[:-1] + trailing)


def _structural(apply: Callable[..., Any], args: list[_Jet], attrs: dict[str, Any], n: int) -> _Jet:
    """A linear op of one or more arrays: applied to values and derivative slices alike."""
    fn = functools.partial(apply, np, **attrs)
    v = np.asarray(fn(*(a.v for a in args)), dtype=object)
    vm = np.asarray(fn(*(a.vm for a in args)), dtype=np.float64)
    if all(a.g is None for a in args):
        return _Jet(v, None, None, vm, None, None)

    def part(name: str, extra: tuple[int, ...], dtype: Any) -> list[np.ndarray]:
        out = []
        for a in args:
            p = getattr(a, name)
            if p is None:
                p = _zeros_obj(a.v.shape + extra) if dtype is object else np.zeros(a.v.shape + extra)
            out.append(p)
        return out

    def sliced(parts: list[np.ndarray], extra: int, dtype: Any) -> np.ndarray:
        if len(parts) == 1:
            return _per_slice(fn, parts[0], extra, dtype)
        trailing = parts[0].shape[parts[0].ndim - extra:]
        slices = [np.asarray(fn(*(p[(...,) + k] for p in parts)), dtype=dtype) for k in np.ndindex(*trailing)]
        stacked = np.stack(slices, axis=-1)
        return stacked.reshape(stacked.shape[:-1] + trailing)

    return _Jet(
        v, sliced(part("g", (n,), object), 1, object), sliced(part("h", (n, n), object), 2, object), vm,
        sliced(part("gm", (n,), np.float64), 1, np.float64), sliced(part("hm", (n, n), np.float64), 2, np.float64),
    )


class _LocalJet:
    """A multi-precision number with its first and second partial derivatives with respect
    to the ``m`` entries of one op's argument: how the oracle differentiates ``Vector`` ops
    exactly without a symbolic step.

    Each part carries a running error bound (``ev``, ``eg``, ``eh``; absolute): what
    evaluating the same formula in the dtype errs by, from the argument's own error
    (seeded in ``ev`` of the entries) and from every intermediate rounded to ``eps``
    relative and to ``tiny`` absolute (a product that underflows: the Hessian of norm(x)
    at x = (0, 2.3e-275) goes through |x|**2 = 5e-550, which float64 holds as 0). So
    intermediate underflow is modelled; overflow is not (frameworks shift by the max
    before exp, and a true overflow is the judge's ``max_magnitude``).

    The bounds are kept as float64 arrays of their base-2 logarithms (-inf for 0): a
    bound's intermediates may lie far beyond float64's range when its result does not
    ((sum |t|**3)**(1/3) of entries 1e-110; |H| times 1/(4 v**1.5) at norm's |x|**2 =
    5e-220), which the logarithm holds, and NumPy adds and multiplies them an array at
    a time where multi-precision scalars went entry by entry (43% of the oracle's time
    on a generated workload, issue 17).
    """

    __slots__ = ("v", "g", "h", "ev", "eg", "eh", "_ga", "_ha")

    # The dtype's unit roundoff and smallest normal, set per evaluation (``_rounding``),
    # and their base-2 logarithms.
    eps = mpmath.mpf(2) ** -53
    tiny = mpmath.mpf(float(np.finfo(np.float64).tiny))
    log_eps = -53.0
    log_tiny = math.log2(float(np.finfo(np.float64).tiny))
    # Whether an intermediate fell below ``tiny`` since ``_rounding`` began.
    underflow = False
    peak: Any = _ZERO  # the largest |value| formed (``Vector.formula_range``)

    def __init__(self, v: Any, g: np.ndarray, h: np.ndarray, ev: float = -math.inf,
                 eg: np.ndarray | None = None, eh: np.ndarray | None = None) -> None:
        self.v, self.g, self.h = v, g, h
        self.ev = ev
        self.eg = np.full(len(g), -math.inf) if eg is None else eg
        self.eh = np.full(h.shape, -math.inf) if eh is None else eh
        self._ga: np.ndarray | None = None
        self._ha: np.ndarray | None = None

    @property
    def ga(self) -> np.ndarray:
        """log2 |g|, computed once."""
        if self._ga is None:
            self._ga = _log2_abs_array(self.g)
        return self._ga

    @property
    def ha(self) -> np.ndarray:
        if self._ha is None:
            self._ha = _log2_abs_array(self.h)
        return self._ha

    @staticmethod
    def lift(other: Any, like: _LocalJet) -> _LocalJet:
        if isinstance(other, _LocalJet):
            return other
        return _LocalJet(mpmath.mpf(other), like.g * 0, like.h * 0)

    def _rounded(self) -> _LocalJet:
        """Each part rounded once more (the operation that made it)."""
        e, t = _LocalJet.log_eps, _LocalJet.log_tiny
        if self.v != 0 and abs(self.v) < _LocalJet.tiny:
            _LocalJet.underflow = True
        size = _err_abs(self.v)
        if size > _LocalJet.peak:
            _LocalJet.peak = size
        self.ev = _log_sum(self.ev, e + _log2_abs(size), t)
        self.eg = _log_sum(self.eg, self.ga + e, t)
        self.eh = _log_sum(self.eh, self.ha + e, t)
        return self

    def chain(self, f: Any, d1: Any, d2: Any, d3: Any = 0) -> _LocalJet:
        a1, a2, a3 = _log2_abs(d1), _log2_abs(d2), _log2_abs(d3)
        ga, ev = self.ga, self.ev
        return _LocalJet(
            f, self.g * d1, self.h * d1 + np.outer(self.g, self.g) * d2,
            _log_mul(a1, ev), _log_sum(_log_mul(self.eg, a1), _log_mul(ga, a2 + ev)),
            _log_sum(_log_mul(self.eh, a1), _log_mul(_log_outer_sym(self.eg, ga), a2),
                     _log_mul(self.ha, a2 + ev), _log_mul(np.add.outer(ga, ga), a3 + ev)),
        )._rounded()

    def __add__(self, o: Any) -> _LocalJet:
        o = _LocalJet.lift(o, self)
        return _LocalJet(self.v + o.v, self.g + o.g, self.h + o.h, _log_sum(self.ev, o.ev),
                         _log_sum(self.eg, o.eg), _log_sum(self.eh, o.eh))._rounded()

    __radd__ = __add__

    def __neg__(self) -> _LocalJet:
        out = _LocalJet(-self.v, -self.g, -self.h, self.ev, self.eg, self.eh)
        out._ga, out._ha = self._ga, self._ha
        return out

    def __sub__(self, o: Any) -> _LocalJet:
        return self + (-_LocalJet.lift(o, self))

    def __rsub__(self, o: Any) -> _LocalJet:
        return _LocalJet.lift(o, self) - self

    def __mul__(self, o: Any) -> _LocalJet:
        o = _LocalJet.lift(o, self)
        av, bv = _log2_abs(self.v), _log2_abs(o.v)
        ag, bg = self.ga, o.ga
        return _LocalJet(
            self.v * o.v, self.g * o.v + o.g * self.v,
            self.h * o.v + o.h * self.v + np.outer(self.g, o.g) + np.outer(o.g, self.g),
            _log_sum(_log_mul(av, o.ev), _log_mul(bv, self.ev)),
            _log_sum(_log_mul(ag, o.ev), _log_mul(self.eg, bv), _log_mul(bg, self.ev), _log_mul(o.eg, av)),
            _log_sum(_log_mul(self.ha, o.ev), _log_mul(self.eh, bv), _log_mul(o.ha, self.ev),
                     _log_mul(o.eh, av), _log_outer_sym(self.eg, bg), _log_outer_sym(ag, o.eg)),
        )._rounded()

    __rmul__ = __mul__

    def reciprocal(self) -> _LocalJet:
        r = 1 / self.v
        return self.chain(r, -r * r, 2 * r * r * r, -6 * r * r * r * r)

    def __truediv__(self, o: Any) -> _LocalJet:
        return self * (_LocalJet.lift(o, self).reciprocal())

    def __rtruediv__(self, o: Any) -> _LocalJet:
        return _LocalJet.lift(o, self) * self.reciprocal()

    def __pow__(self, p: int) -> _LocalJet:
        if p == 2:
            return self * self
        v = self.v
        return self.chain(v**p, p * v ** (p - 1), p * (p - 1) * v ** (p - 2), p * (p - 1) * (p - 2) * v ** (p - 3))


def _log2_abs(v: Any) -> float:
    """log2 |v| of an mpf (or a number) at float64 precision, for an error bound: -inf
    for 0 and for NaN (undefined, as ``_err_abs``), inf for an infinity. Read off the
    mantissa and exponent, so no magnitude is out of range."""
    if not isinstance(v, mpmath.mpf):
        v = mpmath.mpf(v)
    _, man, exp, bc = v._mpf_
    if not man:
        return math.inf if v._mpf_ in (mpmath.libmp.finf, mpmath.libmp.fninf) else -math.inf
    shift = bc - 60 if bc > 60 else 0
    return math.log2(int(man >> shift)) + shift + exp


_LOG2_ABS = np.frompyfunc(_log2_abs, 1, 1)


def _log2_abs_array(a: np.ndarray) -> np.ndarray:
    """``_log2_abs`` of every entry, as float64."""
    return _LOG2_ABS(a).astype(np.float64) if a.size else np.zeros(a.shape)


def _log_sum(*terms: Any) -> Any:
    """log2 of the sum of the bounds whose base-2 logarithms are ``terms``."""
    out = terms[0]
    for t in terms[1:]:
        out = np.logaddexp2(out, t)
    return out


def _log_mul(a: Any, b: Any) -> Any:
    """log2 of a product of bounds, with 0 * inf = 0 (an unbounded term that feeds
    nothing; -inf + inf would be NaN)."""
    out = np.add(a, b)
    if np.isnan(out).any():
        return np.where(np.isnan(out), -math.inf, out)
    return out


def _log_outer_sym(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log2 of outer(A, B) + outer(B, A) for the bounds whose logarithms are a, b."""
    ab = _log_mul(a[:, None], b[None, :])
    return np.logaddexp2(ab, ab.T)


def _err_abs(v: Any) -> Any:
    """|v| for an error bound (multi-precision: no range to leave), NaN (undefined) as 0."""
    return _ZERO if mpmath.isnan(v) else abs(mpmath.mpf(v))


def _einsum_up(subscripts: str, *operands: np.ndarray) -> np.ndarray:
    """``np.einsum`` of nonnegative error magnitudes with inf * 0 = 0 (an unbounded error
    that feeds nothing) and any other product with an inf factor inf."""
    finite = [np.where(np.isinf(x), 0.0, x) for x in operands]
    out = np.einsum(subscripts, *finite)
    if not any(np.isinf(x).any() for x in operands):
        return out
    nonzero = np.einsum(subscripts, *[(x != 0).astype(np.float64) for x in operands])
    bounded = np.einsum(subscripts, *[((x != 0) & np.isfinite(x)).astype(np.float64) for x in operands])
    return np.where(nonzero > bounded, np.inf, out)


@contextlib.contextmanager
def _rounding(dtype: str) -> Iterator[None]:
    """Local jets' running error bounds in ``dtype``'s unit roundoff and smallest normal."""
    finfo = np.finfo(dtype)
    saved = _LocalJet.eps, _LocalJet.tiny, _LocalJet.log_eps, _LocalJet.log_tiny
    _LocalJet.eps, _LocalJet.tiny = mpmath.mpf(float(finfo.eps)) / 2, mpmath.mpf(float(finfo.tiny))
    _LocalJet.log_eps, _LocalJet.log_tiny = math.log2(float(finfo.eps) / 2), math.log2(float(finfo.tiny))
    _LocalJet.underflow = False
    _LocalJet.peak = _ZERO
    try:
        yield
    finally:
        _LocalJet.eps, _LocalJet.tiny, _LocalJet.log_eps, _LocalJet.log_tiny = saved


class _JetFunctions:
    """``exp``/``log``/``sqrt`` for ``Vector`` expressions, on jets or on plain mpf."""

    @staticmethod
    def exp(a: Any) -> Any:
        if isinstance(a, _LocalJet):
            e = mpmath.exp(a.v)
            return a.chain(e, e, e, e)
        return mpmath.exp(a)

    @staticmethod
    def log(a: Any) -> Any:
        if isinstance(a, _LocalJet):
            return a.chain(mpmath.log(a.v), 1 / a.v, -1 / (a.v * a.v), 2 / (a.v * a.v * a.v))
        return mpmath.log(a)

    @staticmethod
    def sqrt(a: Any) -> Any:
        if isinstance(a, _LocalJet):
            r = mpmath.sqrt(a.v)
            return a.chain(r, 1 / (2 * r), -1 / (4 * r * a.v), 3 / (8 * r * a.v * a.v))
        return mpmath.sqrt(a)


class _Ties:
    """The choices of one evaluation of a ``Selection`` expression.

    Evaluation ``rotation`` = r takes each group of tied keys in its index order rotated
    by r and, for r >= 1, flips the sign chosen for the (r-1)-th zero. The first (r = 0)
    records every choice's switch ``(special, gap, scale)`` and ``runs``, the number of
    evaluations that cover every alternative. ``vm`` is the error scale of each entry of
    the argument, so a gap is measured against the error of the keys it separates.
    """

    def __init__(self, rotation: int, vm: np.ndarray | None, floor: float, fuzz: float) -> None:
        self.rotation = rotation
        self.vm = vm
        self.floor = floor
        self.fuzz = fuzz
        self.switches: list[tuple[int, Any, float]] = []
        self.runs = 1
        self._zeros = 0

    @staticmethod
    def value(v: Any) -> Any:
        return v.v if isinstance(v, _LocalJet) else v

    def _error(self, v: Any) -> float:
        if not isinstance(v, _LocalJet) or self.vm is None:
            return 0.0
        return float(np.dot(_abs_float(v.g), self.vm))

    def _tied(self, gap: Any, scale: float) -> bool:
        return gap == 0 or (self.fuzz > 0 and float(abs(gap)) <= self.fuzz * scale)

    def _record(self, special: int, gap: Any, scale: float) -> None:
        if self.rotation == 0:
            self.switches.append((special, gap, scale))

    def abs(self, v: Any) -> Any:
        """|v| (the sign of a zero does not matter for a magnitude)."""
        return -v if self.value(v) < 0 else v

    def sign(self, v: Any, special: int) -> int:
        """+1 or -1 as v is positive or negative; a zero's sign is this evaluation's choice."""
        val = self.value(v)
        scale = self._error(v) + self.floor
        self._record(special, val, scale)
        if self._tied(val, scale):
            zero = self._zeros
            self._zeros += 1
            if self.rotation == 0:
                self.runs = max(self.runs, self._zeros + 1)
            return -1 if zero == self.rotation - 1 else 1
        return 1 if val > 0 else -1

    def _groups(self, keys: list[Any], special: int, top_only: bool) -> list[list[int]]:
        """Indices sorted by key ascending, in groups of tied keys (each in index order,
        rotated); records the gaps (only the top one with ``top_only``)."""
        vals = [self.value(k) for k in keys]
        order = sorted(range(len(keys)), key=lambda i: (vals[i], i))
        groups: list[list[int]] = [[order[0]]] if order else []
        for p in range(1, len(order)):
            lo, hi = order[p - 1], order[p]
            gap = vals[hi] - vals[lo]
            scale = max(self._error(keys[lo]), self._error(keys[hi])) + self.floor
            if not top_only or p == len(order) - 1:
                self._record(special, gap, scale)
            if self._tied(gap, scale):
                groups[-1].append(hi)
            else:
                groups.append([hi])
        if self.rotation == 0:
            self.runs = max([self.runs] + [len(g) for g in (groups[-1:] if top_only else groups)])
        out = []
        for g in groups:
            g = sorted(g)
            r = self.rotation % len(g)
            out.append(g[r:] + g[:r])
        return out

    def argmax(self, keys: list[Any], special: int) -> int:
        """The index of the largest key; among tied largest keys, this evaluation's choice."""
        return self._groups(keys, special, top_only=True)[-1][0]

    def order(self, keys: list[Any], special: int) -> list[int]:
        """The permutation sorting the keys ascending; tied keys in this evaluation's order."""
        return [i for g in self._groups(keys, special, top_only=False) for i in g]


def _vector_local(spec: OpSpec, attrs: dict[str, Any], values: list[np.ndarray],
                  ties: _Ties | None = None, errors: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """f (p,), J (p, m), K (p, m, m) of a ``Vector`` (or ``Selection``) op at the argument
    values, and the running error bounds of J and K (absolute, float64; ``_LocalJet``)
    when the entries err by ``errors`` (absolute); the m local variables are every
    argument's entries, one argument after another."""
    m = sum(v.size for v in values)
    flat = np.concatenate([np.reshape(v, -1) for v in values]) if values else np.empty(0, dtype=object)
    eye = np.empty((m, m), dtype=object)
    for i, j in itertools.product(range(m), repeat=2):
        eye[i, j] = mpmath.mpf(int(i == j))
    A = np.empty(m, dtype=object)
    for k in range(m):
        A[k] = _LocalJet(flat[k], eye[k].copy(), _zeros_obj((m, m)),
                         -math.inf if errors is None else _log2_abs(float(errors[k])))
    arrays, start = [], 0
    for v in values:
        arrays.append(A[start:start + v.size].reshape(v.shape))
        start += v.size
    if ties is None:
        out = spec.math.expr(_JetFunctions, *arrays, **attrs)
    else:
        out = spec.math.expr(_JetFunctions, arrays[0], ties, **attrs)
    out = np.asarray(out, dtype=object)
    jets = [o if isinstance(o, _LocalJet) else _LocalJet.lift(o, A[0]) for o in out.reshape(-1)]
    f = np.array([j.v for j in jets] + [None], dtype=object)[:-1]
    J = np.array([list(j.g) for j in jets], dtype=object).reshape(len(jets), m)
    K = np.array([j.h for j in jets], dtype=object).reshape(len(jets), m, m)
    with np.errstate(over="ignore", under="ignore"):  # inf beyond float64's range, 0 below it
        eJ = np.exp2(np.array([j.eg for j in jets], dtype=np.float64).reshape(len(jets), m))
        eK = np.exp2(np.array([j.eh for j in jets], dtype=np.float64).reshape(len(jets), m, m))
    return f, J, K, out.shape, eJ, eK


def _factors(entries: np.ndarray, axis: int | None, outputs: int) -> list[tuple[int, list[int]]]:
    """(output, the flat indices of the entries it multiplies) of a product reduction:
    the entries along ``axis`` go together, one output per such group (prod), or one per
    entry, the product of the group's entries up to it (cumprod, whose output has the
    argument's shape)."""
    index = np.arange(entries.size).reshape(entries.shape)
    groups = index.reshape(1, -1) if axis is None else np.moveaxis(index, axis, -1).reshape(-1, entries.shape[axis])
    if outputs == len(groups):
        return [(p, list(group)) for p, group in enumerate(groups)]
    return [(int(group[t]), list(group[:t + 1])) for group in groups for t in range(len(group))]


def _subnormal_products(Ja: np.ndarray, Ka: np.ndarray, entries: np.ndarray, axis: int | None,
                        finfo: Any) -> tuple[np.ndarray, np.ndarray]:
    """``Ja``, ``Ka`` (error scales, in units of eps) of a product reduction widened for
    its partial products' underflow (``Vector.products``).

    A partial product below ``tiny`` errs by up to ``tiny`` (flushed to zero), and a
    derivative built on it by that times the remaining factors (each counted as at least
    1, since which partial products a framework forms is its own business); a subnormal
    product divided by entries (p / x_i, PyTorch's prod backward) errs by its spacing,
    ``tiny * eps``, times the factors multiplied in after it, over them (measured:
    torch.func's H[0, 1] of prod(207, 1e-30, 1.2e-38, 4.5e-247) errs by 32 spacings over
    x0 x1, the partial product 1e-30 * 1.2e-38 * 4.5e-247 being subnormal).
    The entries along ``axis`` go together (``_factors``).
    """
    tiny, eps = float(finfo.tiny), float(finfo.eps)
    products = _factors(entries, axis, Ja.shape[0])
    flat = entries.reshape(-1)
    big = np.maximum(flat, 1.0)
    Ja, Ka = Ja.copy(), Ka.copy()
    with np.errstate(over="ignore", divide="ignore"):
        for p, factors in products:
            after = float(np.prod(big[factors]))
            for i in factors:
                rest = [k for k in factors if k != i]
                Ja[p, i] += tiny * float(np.prod(big[rest])) / eps + tiny * after / max(flat[i], tiny)
                for j in rest:
                    others = [k for k in rest if k != j]
                    Ka[p, i, j] += tiny * float(np.prod(big[others])) / eps \
                        + tiny * after / max(flat[i] * flat[j], tiny)
    return Ja, Ka


def _divided_output(Ja: np.ndarray, Ka: np.ndarray, outputs: np.ndarray, entries: np.ndarray,
                    axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``Ja``, ``Ka`` (error scales, in units of eps) of a product reduction whose
    framework differentiates it by dividing its output by the entries
    (``Vector.divides_output``): y / x_i, differentiated again, cancels terms of size
    |y| / |x_i x_j| (to 0 on the diagonal: the truth), so each derivative errs by eps
    times those (measured: PyTorch's and MLX's reverse-over-reverse H[0, 0] of
    sum(cumprod(x)) at x = (0.083, 493, -2.5, 1e-3) in float32 is -9.8e-4, where the truth
    is 0 and x1 / x0 = 5936)."""
    Ja, Ka = Ja.copy(), Ka.copy()
    flat = entries.reshape(-1)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for p, factors in _factors(entries, axis, Ja.shape[0]):
            y = float(outputs[p])
            if y == 0:
                continue  # an entry is 0: the frameworks take another formula
            for i in factors:
                Ja[p, i] += y / flat[i]
                for j in factors:
                    Ka[p, i, j] += y / (flat[i] * flat[j])
    big = float(np.finfo(np.float64).max)
    return np.nan_to_num(Ja, nan=0.0, posinf=big), np.nan_to_num(Ka, nan=0.0, posinf=big)


def _vector(node: int, spec: OpSpec, attrs: dict[str, Any], args: list[_Jet], n: int,
            ties: _Ties | None = None, dtype: str = "float64", framework: str | None = None) -> _Jet:
    """y = F(args) for a smooth map of whole arrays: chain rule with its Jacobian and Hessians."""
    values = [a.v for a in args]
    if spec.domain is not None and not spec.domain(tuple(values)):
        raise OutOfDomain(f"node {node} ({spec.name}) is outside its domain at {_to_float(values[0]).tolist()}")
    vm_in = np.concatenate([np.reshape(a.vm, -1) for a in args])
    # The argument's own error (eps * vm, per entry): frameworks compute such ops by
    # algorithms that mix the entries (LU with pivoting, a shift by the max, a mean
    # subtracted), so each entry errs by the largest entry's error (normwise); products
    # (prod, cumprod) are computed entry by entry, so theirs is entrywise.
    eps = float(np.finfo(dtype).eps) / 2
    linear = isinstance(spec.math, Selection) and spec.math.linear
    normwise = not (isinstance(spec.math, Vector) and spec.math.products)
    delta = np.full(vm_in.shape, float(np.max(vm_in, initial=0.0))) if normwise else vm_in
    try:
        with _rounding(dtype):
            f, J, K, out_shape, eJ, eK = _vector_local(spec, attrs, values, ties, None if linear else eps * delta)
            if _LocalJet.underflow and _UNDERFLOWS is not None:
                _UNDERFLOWS.append(node)
            peak = _fabs(_LocalJet.peak) if isinstance(spec.math, Vector) and spec.math.formula_range else 0.0
    except (ZeroDivisionError, ValueError, OverflowError) as exc:
        raise OutOfDomain(f"node {node} ({spec.name}) is undefined at {_to_float(values[0]).tolist()}: {exc}") from None
    Ja, Ka = _abs_float(J), _abs_float(K)
    vm_flat = _abs_float(f) + Ja @ vm_in
    vm = vm_flat.reshape(out_shape)
    # The error of the op's own derivatives, in units of eps (error ~ eps * scale), never
    # from dividing by an entry's size, so a tiny argument cannot inflate it:
    # * the running error bound of its formula evaluated in the dtype (``_LocalJet``),
    #   from the argument's error and every intermediate's rounding, underflow included;
    # * where the algorithm mixes the entries, a derivative that is exactly 0 in exact
    #   arithmetic (det is multilinear: d2 det / dA_ij**2 = 0) comes out as eps times the
    #   op's other derivatives of that order (normwise over the local Jacobian and
    #   Hessian); a product's zeros are structural (d2 (x0 x1) / dx0**2 is no sum).
    # A selection of entries (max, sort) is exact.
    Jerr, Kerr = Ja, Ka
    if not linear:
        Jerr, Kerr = Ja + eJ / eps, Ka + eK / eps
        if normwise:
            p = Ja.shape[0]
            Jerr = Jerr + Ja.reshape(p, -1).max(axis=1, initial=0.0)[:, None]
            Kerr = Kerr + Ka.reshape(p, -1).max(axis=1, initial=0.0)[:, None, None]
    # Frameworks differentiate some ops through their output (softmax' = p (delta - p),
    # logsumexp'' = diag(p) - p p^T computed as p - p*p near p = 1): every derivative
    # errs by eps times the output's scale, and second derivatives by eps times the
    # products of first derivatives they are assembled from.
    if isinstance(spec.math, Vector) and spec.math.output_based:
        Kerr = Kerr + vm_flat[:, None, None] + Ja[:, :, None] * Ja[:, None, :]
        Jerr = Jerr + vm_flat[:, None]
    if isinstance(spec.math, Vector) and spec.math.products:
        Jerr, Kerr = _subnormal_products(Jerr, Kerr, _abs_float(values[0]), attrs.get("axis"), np.finfo(dtype))
    if isinstance(spec.math, Vector) and framework in spec.math.divides_output:
        Jerr, Kerr = _divided_output(Jerr, Kerr, _abs_float(f), _abs_float(values[0]), attrs.get("axis"))
    v = f.reshape(out_shape)
    if all(a.g is None for a in args):
        return _Jet(v, None, None, vm, None, None, peak)

    def stacked(part: str, extra: tuple[int, ...], dtype: Any) -> np.ndarray:
        blocks = []
        for a in args:
            p = getattr(a, part)
            if p is None:
                p = _zeros_obj(a.v.shape + extra) if dtype is object else np.zeros(a.v.shape + extra)
            blocks.append(np.reshape(p, (a.v.size,) + extra))
        return np.concatenate(blocks).astype(dtype, copy=False)

    G, H = stacked("g", (n,), object), stacked("h", (n, n), object)
    gm_in, hm_in = stacked("gm", (n,), np.float64), stacked("hm", (n, n), np.float64)
    Ga, Ha = _abs_float(G), _abs_float(H)
    g, h = _vector_chain(J, K, G, H)
    # Error scales: each term of the chain rule with its own error (Jerr, Kerr) and its
    # inputs' (gm_in, hm_in).
    gm = _einsum_up("pk,kn->pn", Jerr, Ga) + _einsum_up("pk,kn->pn", Ja, gm_in)
    hm = (_einsum_up("pk,kij->pij", Jerr, Ha) + _einsum_up("pk,kij->pij", Ja, hm_in)
          + _einsum_up("pkl,ki,lj->pij", Ka + Kerr, Ga, Ga)
          + _einsum_up("pkl,ki,lj->pij", Ka, gm_in, Ga) + _einsum_up("pkl,ki,lj->pij", Ka, Ga, gm_in))
    return _Jet(v, g.reshape(out_shape + (n,)), h.reshape(out_shape + (n, n)), vm,
                gm.reshape(out_shape + (n,)), hm.reshape(out_shape + (n, n)), peak)


def _vector_chain(J: np.ndarray, K: np.ndarray, G: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The chain rule of a whole-array op, exactly: g[p] = sum_k J[p, k] G[k] and
    h[p] = sum_k J[p, k] H[k] + sum_kl K[p, k, l] outer(G[k], G[l]), over the (p, m) local
    Jacobian J, (p, m, m) local Hessian K and the (m, n) gradients G and (m, n, n) Hessians
    H of its m argument entries, with 0 * anything = 0 (``_mul0``). Only the nonzero
    terms are formed: the arguments' derivatives are mostly sparse."""
    p, m = J.shape
    n = G.shape[-1]
    g, h = _zeros_obj((p, n)), _zeros_obj((p, n, n))
    g_support = [_support(G[k]) for k in range(m)]
    h_support = [_support(H[k]) for k in range(m)]
    J_nonzero, K_nonzero = J.astype(bool), K.astype(bool)
    for q in range(p):
        for k in np.flatnonzero(J_nonzero[q]):
            _add_scaled(g[q], J[q, k], G[k], g_support[k])
            _add_scaled(h[q], J[q, k], H[k], h_support[k])
        for k, l in zip(*np.nonzero(K_nonzero[q])):
            _add_outer(h[q], K[q, k, l], G[k], G[l], g_support[k], g_support[l])
    return g, h


def _bilinear(apply: Callable[..., Any], a: _Jet, b: _Jet, n: int) -> _Jet:
    def mul(p: np.ndarray, q: np.ndarray, exact: bool = True) -> np.ndarray:
        return np.asarray(apply(np, p, q, _mul0 if exact else np.multiply),
                          dtype=object if exact else np.float64)

    a_abs, b_abs = _abs_float(a.v), _abs_float(b.v)
    v = mul(a.v, b.v)
    vm = mul(a.vm, b_abs, False) + mul(a_abs, b.vm, False)
    if a.g is None and b.g is None:
        return _Jet(v, None, None, vm, None, None)
    g_slices, h_slices, gm_slices, hm_slices = {}, {}, {}, {}
    zero_g = lambda jet, k: jet.g is None  # noqa: E731
    for k in range(n):
        terms, scales = [], []
        if not zero_g(a, k):
            terms.append(mul(a.g[..., k], b.v))
            scales.append(mul(a.gm[..., k], b_abs, False) + mul(_abs_float(a.g[..., k]), b.vm, False))
        if not zero_g(b, k):
            terms.append(mul(a.v, b.g[..., k]))
            scales.append(mul(a_abs, b.gm[..., k], False) + mul(a.vm, _abs_float(b.g[..., k]), False))
        g_slices[k] = sum(terms[1:], terms[0])
        gm_slices[k] = sum(scales[1:], scales[0])
    for k, l in itertools.product(range(n), repeat=2):
        terms, scales = [], []
        if a.h is not None:
            terms.append(mul(a.h[..., k, l], b.v))
            scales.append(mul(a.hm[..., k, l], b_abs, False) + mul(_abs_float(a.h[..., k, l]), b.vm, False))
        if b.h is not None:
            terms.append(mul(a.v, b.h[..., k, l]))
            scales.append(mul(a_abs, b.hm[..., k, l], False) + mul(a.vm, _abs_float(b.h[..., k, l]), False))
        if a.g is not None and b.g is not None:
            for p, q in ((k, l), (l, k)):
                terms.append(mul(a.g[..., p], b.g[..., q]))
                scales.append(
                    mul(a.gm[..., p], _abs_float(b.g[..., q]), False)
                    + mul(_abs_float(a.g[..., p]), b.gm[..., q], False)
                )
        h_slices[k, l] = sum(terms[1:], terms[0])
        hm_slices[k, l] = sum(scales[1:], scales[0])
    g = np.stack([g_slices[k] for k in range(n)], axis=-1)
    gm = np.stack([gm_slices[k] for k in range(n)], axis=-1)
    h = np.stack([np.stack([h_slices[k, l] for l in range(n)], axis=-1) for k in range(n)], axis=-2)
    hm = np.stack([np.stack([hm_slices[k, l] for l in range(n)], axis=-1) for k in range(n)], axis=-2)
    return _Jet(v, g, h, vm, gm, hm)


# Seconds spent in the oracle so far in this process, counted once however calls nest
# (the judge's one-sided Hessians and per-framework error scales included): a benchmark
# tells the oracle's time from the harness's by it.
_BUSY = [0.0, 0]


def busy_seconds() -> float:
    """Seconds this process has spent evaluating exact Hessians (``evaluate``,
    ``conventions`` and the per-framework error scales) so far."""
    return _BUSY[0]


@contextlib.contextmanager
def _clocked() -> Iterator[None]:
    _BUSY[1] += 1
    start = time.perf_counter()
    try:
        yield
    finally:
        _BUSY[1] -= 1
        if not _BUSY[1]:
            _BUSY[0] += time.perf_counter() - start


def evaluate(program: Program, x: np.ndarray, dtype: str = "float64", digits: int = DIGITS,
             kink_fuzz: float = 0.0, resolution: Resolution | None = None,
             range_tiny: float = 0.0) -> OracleResult:
    """The true value, gradient and Hessian of ``program`` at ``x`` (rounded to ``dtype``).

    With ``kink_fuzz`` > 0, a switch within that relative distance of its kink counts as
    on it: the undefined entries are then every entry a near-kink can affect, which is
    how the judge tells a rounding-side convention from a wrong value elsewhere.

    With a ``resolution``, every kink (and near-kink, with ``kink_fuzz``) is resolved by
    that convention instead: the Hessian a framework computes with it (``conventions``).

    ``range_tiny``: the smallest normal number of the framework judged, where its
    arithmetic keeps less range than ``dtype`` (MLX's float64 transcendentals keep
    float32's): a switch within that of its kink is within its rounding distance.

    Raises ``OutOfDomain`` where the program is undefined at ``x``.
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r}, but it must be 'float32' or 'float64'.")
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (program.n,):
        raise ValueError(f"x has shape {x.shape}, but the program takes ({program.n},).")
    with _clocked(), mpmath.workdps(digits), np.errstate(over="ignore", invalid="ignore"), \
            _time_limit(ORACLE_SECONDS, "the Hessian"):
        try:
            return _with_framework_scales(program, x, dtype, kink_fuzz, resolution, range_tiny)
        except OverflowError as exc:  # an exact value with more digits than Python allows
            raise OutOfDomain(f"the program's exact values outgrow exact arithmetic here ({exc})") from None


def _specific_frameworks(program: Program) -> list[str]:
    """The frameworks some op of ``program`` has a rule scale of its own for."""
    names: set[str] = set()
    for node in program.nodes:
        if node.kind not in ("input", "const"):
            spec = get_op(node.kind)
            names.update(spec.rule_scale.frameworks if spec.rule_scale is not None else ())
            names.update(spec.math.divides_output if isinstance(spec.math, Vector) else ())
    return sorted(names)


# The nodes whose whole-array formula underflowed an intermediate, in the evaluation under way.
_UNDERFLOWS: list[int] | None = None
# The largest local derivative of an elementwise rule in the evaluation under way: the
# frameworks form it before chaining (PyTorch's i0 backward is grad * i1(a)), so one past
# the dtype's range is inf there even where the chained entry (divided by a mean's n) is
# not (torch.func's H of mean(i0(x)) in float32 at x5 = 89.5: NaN at H[5, 0]).
_LOCAL_PEAK: list[float] = [0.0]


# The values of derivative rules at points (``_stable``), shared by the evaluations of one
# point (one per framework with rule scales of its own, one per kink convention): they
# differ only in error scales.
_MEMO: dict[tuple[int, tuple[Any, ...]], Any] | None = None


def _with_framework_scales(program: Program, x: np.ndarray, dtype: str, kink_fuzz: float,
                           resolution: Resolution | None, range_tiny: float = 0.0) -> OracleResult:
    # The memo under way (the conventions' evaluations share one), kept for the rescale.
    memo: dict[tuple[int, tuple[Any, ...]], Any] = {} if _MEMO is None else _MEMO
    with _memo(memo):
        result = _Evaluator(program, x, dtype, kink_fuzz, resolution, range_tiny=range_tiny).run()
    names = tuple(_specific_frameworks(program))
    if not names:
        return result

    def rescale(framework: str) -> np.ndarray:
        with _clocked(), mpmath.workdps(DIGITS), np.errstate(over="ignore", invalid="ignore"), \
                _time_limit(ORACLE_SECONDS, "an error scale"), _memo(memo):
            return _Evaluator(program, x, dtype, kink_fuzz, resolution, framework, range_tiny).run().hessian_scale

    return dataclasses.replace(result, framework_scales=names, _rescale=rescale)


@contextlib.contextmanager
def _memo(memo: dict[tuple[int, tuple[Any, ...]], Any] | None = None) -> Iterator[None]:
    """Share ``_stable``'s values among the evaluations inside (the outermost sets it up;
    ``memo`` carries them on to a later one)."""
    global _MEMO
    outer = _MEMO is None
    if outer:
        _MEMO = {} if memo is None else memo
    try:
        yield
    finally:
        if outer:
            _MEMO = None


# How many ways of resolving a point's kinks ``conventions`` evaluates in full: every
# combination of sides when the kinked switches are few (``MAX_RESOLUTIONS``), every
# combination of sides and averages when fewer still (``MAX_MIXED``).
MAX_RESOLUTIONS = 8
MAX_MIXED = 16
# A tie of up to this many entries also offers the average over each smaller group of
# them: rounding (or a compiler that folds constants in another order) can leave only
# some of the exactly tied entries equal, and the framework splits among those.
MAX_SPLIT_TIE = 4


def _options(key: tuple[Any, ...], count: int) -> list[Choice]:
    """What one framework may do at one kink: either side of a switch, or their average
    (abs'(0) = 0); one tied entry, or the average over all tied entries, or over a
    smaller group of them."""
    if key[1] >= 0:
        return [-1, 1, (-1, 1)]
    every = tuple(range(count))
    groups = [g for size in range(2, count) for g in itertools.combinations(every, size)] \
        if count <= MAX_SPLIT_TIE else []
    return [*every, every, *groups]


def resolutions(sides: Sequence[tuple[tuple[Any, ...], int]]) -> list[Resolution]:
    """The conventions a framework may apply at these kinks, each op by a rule of its own
    (``_options``: a side or an average, per kink; JAX at a tie of max under relu(.)**2
    averages the tie and takes relu's side): every combination when they are few
    (``MAX_MIXED``); else every combination of sides (up to ``MAX_RESOLUTIONS``), all
    kinks averaged, and every option of each kink against each uniform background (all
    first sides, all second sides, all averaged), which holds each entry's range where
    an entry depends on one kink."""
    keys = [key for key, _ in sides]
    options = [_options(key, c) for key, c in sides]
    if math.prod(len(o) for o in options) <= MAX_MIXED:
        combos = list(itertools.product(*options))
    else:
        combos = list(itertools.islice(itertools.product(*[o[:c] for o, (_, c) in zip(options, sides)]),
                                       MAX_RESOLUTIONS))
        backgrounds = [tuple(o[min(b, len(o) - 1)] for o in options) for b in (0, 1)]
        backgrounds.append(tuple(o[c] for o, (_, c) in zip(options, sides)))  # every kink averaged
        for background in backgrounds:
            combos.append(background)
            for k, opts in enumerate(options):
                combos += [background[:k] + (o,) + background[k + 1:] for o in opts]
    return [Resolution(tuple(zip(keys, combo))) for combo in dict.fromkeys(combos)]


def all_resolved(sides: Sequence[tuple[tuple[Any, ...], int]]) -> bool:
    """Whether ``resolutions`` covers every combination of these sides."""
    return math.prod(c for _, c in sides) <= MAX_RESOLUTIONS


def conventions(program: Program, x: np.ndarray, dtype: str, sides: Sequence[tuple[tuple[Any, ...], int]],
                kink_fuzz: float = 0.0, only: Sequence[Resolution] | None = None,
                memo: dict[tuple[int, tuple[Any, ...]], Any] | None = None,
                range_tiny: float = 0.0) -> list[OracleResult]:
    """The Hessians a framework computes at (or, with ``kink_fuzz``, within that relative
    distance of) the kinks ``sides`` lists, one per convention (``resolutions``): at a
    kink its value must lie in their range; near one it must match one of them (the
    framework's rounding put the point on one side, or on the kink).

    ``only``: these of the conventions (a judge that stops once every entry is
    explained evaluates them a few at a time); ``memo`` carries the derivative rules'
    values from one such call to the next."""
    x = np.asarray(x, dtype=np.float64)
    out = []
    with _clocked(), mpmath.workdps(DIGITS), np.errstate(over="ignore", invalid="ignore"), \
            _time_limit(ORACLE_SECONDS, "the one-sided Hessians"), _memo(memo):
        for resolution in (resolutions(sides) if only is None else only):
            try:
                out.append(_with_framework_scales(program, x, dtype, kink_fuzz, resolution, range_tiny))
            except OverflowError as exc:
                raise OutOfDomain(f"the program's exact values outgrow exact arithmetic here ({exc})") from None
    return out


def node_values(n: int, nodes: Sequence[Any], x: np.ndarray, dtype: str = "float64",
                digits: int = 30) -> list[np.ndarray]:
    """The value of every node of a (possibly unfinished) node list at ``x``, as float64.

    No derivatives: this is what the generator uses to aim a constant so that an
    intermediate lands on a kink. Unlike ``evaluate`` it accepts a node list whose last
    node is not a scalar, and never raises for a domain violation (the value is NaN).
    """
    values: list[np.ndarray] = []
    with mpmath.workdps(digits), _time_limit(ORACLE_SECONDS, "the values"):
        for i, node in enumerate(nodes):
            if node.kind == "input":
                values.append(_mpf_array(_round(x, dtype)))
            elif node.kind == "const":
                values.append(_mpf_array(_round(np.asarray(node.value, dtype=np.float64), dtype)))
            else:
                spec = get_op(node.kind)
                values.append(_value_of(spec, spec.full_attrs(node.attr_dict), [values[a] for a in node.args], dtype))
    return [_to_float(np.asarray(v, dtype=object)) for v in values]


def _value_of(spec: OpSpec, attrs: dict[str, Any], args: list[np.ndarray], dtype: str) -> np.ndarray:
    if isinstance(spec.math, Structural):
        return np.asarray(spec.math.apply(np, *args, **attrs), dtype=object)
    if isinstance(spec.math, (Vector, Selection)):
        arrays = [np.asarray(a, dtype=object) for a in args]
        out_shape = tuple(spec.shape(tuple(a.shape for a in arrays), attrs))
        try:
            if spec.domain is not None and not spec.domain(tuple(arrays)):
                raise ValueError("out of domain")
            if isinstance(spec.math, Selection):
                out = spec.math.expr(_JetFunctions, arrays[0], _Ties(0, None, 0.0, 0.0), **attrs)
            else:
                out = spec.math.expr(_JetFunctions, *arrays, **attrs)
            return np.asarray(out, dtype=object).reshape(out_shape)
        except (ZeroDivisionError, ValueError, OverflowError, TypeError):
            out = np.empty(out_shape, dtype=object)
            out.fill(_NAN)
            return out
    if isinstance(spec.math, Bilinear):
        return np.asarray(spec.math.apply(np, args[0], args[1], _mul0), dtype=object)
    ints, floats = _split_attrs(spec, attrs)
    int_key = tuple(sorted(ints.items()))
    fvals = [mpmath.mpf(float(np.float64(attrs[name]).astype(dtype))) for name in floats]

    def one(*vals: Any) -> Any:
        try:
            if not spec.in_domain(vals):
                return _NAN
            if isinstance(spec.math, Elementwise):
                rule = _smooth_rule(spec.name, int_key)
            else:
                switches = [s(*vals, *fvals) for s in _switch_rules(spec.name, int_key)]
                rule = _piece_rule(spec.name, int_key, tuple(1 if s >= 0 else -1 for s in switches))
            if rule.exponential and any(abs(v) > EXPONENT_LIMIT for v in vals):
                return _NAN  # beyond every float format (see EXPONENT_LIMIT)
            return rule.f(*vals, *fvals)
        except (ZeroDivisionError, ValueError, OverflowError):
            return _NAN

    return np.asarray(np.frompyfunc(one, len(args), 1)(*args), dtype=object)


def piecewise_linear(program: Program) -> bool:
    """Whether every node of ``program`` is linear or piecewise linear in the input.

    Such a program's true Hessian is 0 almost everywhere, which is what a framework
    must return off the kinks (and why "the Laplacian is zero with ReLU" is expected).
    """
    traced = [False] * len(program.nodes)
    traced[0] = True
    for i, node in enumerate(program.nodes[1:], start=1):
        if node.kind == "const":
            continue
        spec = get_op(node.kind)
        args_traced = [traced[a] for a in node.args]
        traced[i] = any(args_traced)
        if not traced[i] or isinstance(spec.math, Structural):
            continue
        if isinstance(spec.math, Selection) and spec.math.linear:
            continue
        if isinstance(spec.math, (Vector, Selection)):
            return False
        if isinstance(spec.math, Bilinear):
            if all(args_traced):
                return False
            continue
        ints, _ = _split_attrs(spec, spec.full_attrs(node.attr_dict))
        int_key = tuple(sorted(ints.items()))
        if isinstance(spec.math, Elementwise):
            rules = [_smooth_rule(spec.name, int_key)]
        else:
            k = len(_switch_rules(spec.name, int_key))
            rules = [_piece_rule(spec.name, int_key, s) for s in itertools.product((-1, 1), repeat=k)]
        for rule in rules:
            for a, row in enumerate(rule.d2):
                for b, second in enumerate(row):
                    if args_traced[a] and args_traced[b] and not _is_zero_function(second, spec.arity):
                        return False
    return True


def _is_zero_function(fn: Callable[..., Any], arity: int) -> bool:
    """Whether a lambdified derivative is identically 0 (it was simplified to a literal)."""
    probes = ([mpmath.mpf("0.37")] * arity, [mpmath.mpf("-1.3")] * arity)
    try:
        return all(fn(*p, *([mpmath.mpf("0.1")] * 4)[: fn.__code__.co_argcount - arity]) == 0 for p in probes)
    except (TypeError, ValueError, ZeroDivisionError):
        return False
