"""Screening many points of one program cheaply, to spend the oracle where it matters.

The oracle (``hessdiff.harness.oracle``) is exact and slow: 50-digit jets over object arrays, about
10-20 ms per point. Most points of most programs are boring: every framework agrees to
the last few ulps, and no piecewise op is anywhere near a kink. ``screen`` finds those
with float64 NumPy, vectorised over the points:

* a forward pass of the program (each op's catalogue definition, lambdified by SymPy
  for NumPy once per op) gives, per point, the relative distance of every piecewise
  op's switch from its kink, and whether every value is finite and in its domain;
* ``agree`` tells whether every backend's Hessian is within its own tolerance of a
  reference backend's *without* the error scale (``Tolerance.naive_bound``), which is
  stricter than what the judge allows: if the reference is right, so is everyone.

A point that is near a kink or an op's special value (relative distance under ``NEAR``,
10^10 ulps of float64), outside the domain, overflowing, or where the backends disagree
(or only one framework's variants ran), goes to the oracle. So
does the first point of every program, which anchors the consensus to the truth: what
screening can miss is a fault every framework shares at one point of a program but not
at its first, which no differential test sees anyway without the oracle at every point.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hessdiff.backends.registry import framework_of
from hessdiff.harness.ir import Program
from hessdiff.harness.ops import Bilinear, Elementwise, Piecewise, Selection, Structural, Vector, get_op
from hessdiff.harness.tolerance import tolerance_for

__all__ = ["NEAR", "agree", "screen"]

NEAR = 1e-6


def _split(spec: Any, attrs: Mapping[str, Any]) -> tuple[tuple[tuple[str, Any], ...], tuple[str, ...]]:
    ints = tuple(sorted((a.name, attrs[a.name]) for a in spec.attrs if a.kind != "float"))
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    return ints, floats


@functools.lru_cache(maxsize=None)
def _numpy_rules(op: str, int_attrs: tuple[tuple[str, Any], ...]) -> tuple[Any, tuple[Any, ...], dict[Any, Any]]:
    """(f, switches, pieces by signs) of one op as NumPy functions (f is None if piecewise)."""
    import sympy as sp

    modules = _modules()
    spec = get_op(op)
    floats = tuple(a.name for a in spec.attrs if a.kind == "float")
    args = sp.symbols(f"a0:{spec.arity}", real=True)
    fattrs = {name: sp.Symbol(f"attr_{name}", real=True) for name in floats}
    params = [*args, *fattrs.values()]
    kw = {**dict(int_attrs), **fattrs}
    if spec.smooth:
        return sp.lambdify(params, spec.math.expr(sp, *args, **kw), modules=modules, use_imps=False), (), {}
    switches = spec.math.switches(sp, *args, **kw)
    pieces = {
        signs: sp.lambdify(params, sp.sympify(spec.math.piece(sp, signs, *args, **kw)), modules=modules, use_imps=False)
        for signs in itertools.product((-1, 1), repeat=len(switches))
    }
    return None, tuple(sp.lambdify(params, s, modules=modules, use_imps=False) for s in switches), pieces


# The catalogue's step functions (``hessdiff.harness.ops.piecewise._step``) carry mpmath implementations;
# in floats they are NumPy's (rint rounds half to even, as the frameworks do).
_STEP_FUNCTIONS = {"floor_": np.floor, "ceil_": np.ceil, "round_": np.rint}


@functools.lru_cache(maxsize=1)
def _modules() -> list[Any]:
    """SciPy (erf, erfinv, gammaln, ...; installed with JAX) where it is, else NumPy only."""
    try:
        import scipy.special  # noqa: F401
    except ImportError:
        return [_STEP_FUNCTIONS, "numpy"]
    return [_STEP_FUNCTIONS, "scipy", "numpy"]


def screen(program: Program, points: np.ndarray, dtype: str) -> np.ndarray:
    """Per point, the smallest relative distance of any piecewise op from its kink.

    ``inf`` for a point of a smooth program; ``nan`` where the float pass cannot vouch
    for the point (a value not finite, outside an op's domain, or an op kind it does not
    evaluate): such a point needs the oracle. Never raises for a program the oracle
    takes: what the float pass cannot evaluate is ``nan``, i.e. left to the oracle.
    """
    try:
        return _screen(program, points, dtype)
    except Exception:  # noqa: BLE001 - e.g. a function NumPy lacks (erfinv): the oracle decides
        return np.full(len(points), np.nan)


def _screen(program: Program, points: np.ndarray, dtype: str) -> np.ndarray:
    """Per point, the smallest relative distance of any piecewise op from its kink.

    ``inf`` for a point of a smooth program; ``nan`` where the float pass cannot vouch
    for the point (a value not finite, outside an op's domain, or an op kind it does not
    evaluate): such a point needs the oracle.
    """
    xs = np.asarray(points, dtype=np.float64).astype(dtype).astype(np.float64)
    k = xs.shape[0]
    finfo = np.finfo(dtype)
    floor = float(finfo.tiny / finfo.eps)
    distance = np.full(k, np.inf)
    values: list[np.ndarray] = [xs]
    with np.errstate(all="ignore"):
        for i, node in enumerate(program.nodes[1:], start=1):
            shape = program.shapes[i]
            if node.kind == "const":
                c = program.constant(i).astype(dtype).astype(np.float64)
                values.append(np.broadcast_to(c, (k, *c.shape)))
                continue
            spec = get_op(node.kind)
            attrs = node.attr_dict
            args = [values[a] for a in node.args]
            if args and spec.smooth:  # a piecewise op's specials are its kinks
                np.minimum(distance, _special_distance(spec, attrs, args, k), out=distance)
            float_pass = _FLOAT_PASSES.get(type(spec.math))
            if float_pass is None:
                return np.full(k, np.nan)
            value = float_pass(spec, attrs, args, shape, k, distance, floor, dtype)
            values.append(value)
            bad = ~np.isfinite(value.reshape(k, -1)).all(axis=1)
            distance[bad] = np.nan
    return distance


def _elementwise(spec: Any, attrs: Mapping[str, Any], args: list[np.ndarray], shape: tuple[int, ...], k: int,
                 distance: np.ndarray, floor: float, dtype: str) -> np.ndarray:
    """An elementwise op by its NumPy rule; a piecewise op's switches lower ``distance``."""
    ints, floats = _split(spec, attrs)
    fvals = [float(np.float64(attrs[name]).astype(dtype)) for name in floats]
    bargs = [_align(a, shape, k) for a in args]
    f, switches, pieces = _numpy_rules(spec.name, ints)
    if spec.domain is not None or any(spec.arg_domains):
        distance[~_in_domain(spec, bargs, k)] = np.nan
    if f is not None:
        return np.broadcast_to(f(*bargs, *fvals), (k, *shape)).astype(np.float64)
    s = [np.broadcast_to(fn(*bargs, *fvals), (k, *shape)) for fn in switches]
    scale = np.max([np.abs(a) for a in bargs], axis=0) + floor if bargs else floor
    for sw in s:
        d = np.abs(sw) / scale
        np.minimum(distance, d.reshape(k, -1).min(axis=1, initial=np.inf), out=distance)
    value = np.zeros((k, *shape))
    for signs, piece in pieces.items():
        chosen = np.ones((k, *shape), dtype=bool)
        for sw, sign in zip(s, signs):
            chosen &= (sw >= 0) if sign > 0 else (sw < 0)
        value = np.where(chosen, np.broadcast_to(piece(*bargs, *fvals), (k, *shape)), value)
    return value


def _structural(spec: Any, attrs: Mapping[str, Any], args: list[np.ndarray], shape: tuple[int, ...], k: int,
                distance: np.ndarray, floor: float, dtype: str) -> np.ndarray:
    return np.stack([np.asarray(spec.math.apply(np, *row, **attrs), dtype=np.float64) for row in zip(*args)])


def _bilinear(spec: Any, attrs: Mapping[str, Any], args: list[np.ndarray], shape: tuple[int, ...], k: int,
              distance: np.ndarray, floor: float, dtype: str) -> np.ndarray:
    return np.stack([np.asarray(spec.math.apply(np, a, b, np.multiply), dtype=np.float64)
                     for a, b in zip(args[0], args[1])])


class _FloatNamespace:
    """What a ``Vector`` expression calls (``ns.exp``, ``ns.log``, ``ns.sqrt``,
    ``ns.largest``), on floats."""

    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)
    largest = staticmethod(max)

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


_FLOATS = _FloatNamespace()


class _FloatTies:
    """The choices of a ``Selection`` expression in floats, measuring how close each is
    to a tie: ``gap`` is the smallest relative gap between the keys of a choice, or of a
    zero whose sign is chosen (relative to the largest entry of the argument)."""

    def __init__(self, scale: float, floor: float) -> None:
        self.scale = scale
        self.floor = floor
        self.gap = np.inf

    def _note(self, gap: float, scale: float) -> None:
        self.gap = min(self.gap, abs(float(gap)) / scale)

    @staticmethod
    def abs(v: Any) -> Any:
        return -v if v < 0 else v

    def sign(self, v: Any, special: int) -> int:
        self._note(v, self.scale)
        return 1 if v >= 0 else -1

    def order(self, keys: list[Any], special: int) -> list[int]:
        order = self._sorted(keys)
        for lo, hi in zip(order, order[1:]):
            self._gap(keys, lo, hi)
        return order

    def argmax(self, keys: list[Any], special: int) -> int:
        order = self._sorted(keys)
        if len(order) > 1:
            self._gap(keys, order[-2], order[-1])
        return order[-1]

    @staticmethod
    def _sorted(keys: list[Any]) -> list[int]:
        return sorted(range(len(keys)), key=lambda i: (float(keys[i]), i))

    def _gap(self, keys: list[Any], lo: int, hi: int) -> None:
        a, b = float(keys[lo]), float(keys[hi])
        self._note(b - a, max(abs(a), abs(b)) + self.floor)


def _whole_array(spec: Any, attrs: Mapping[str, Any], args: list[np.ndarray], shape: tuple[int, ...], k: int,
                 distance: np.ndarray, floor: float, dtype: str, choosing: bool = False) -> np.ndarray:
    """A whole-array op (``Vector``, or ``Selection`` with the point's relative distance
    from a tie among its choices), one point at a time: its expression is per array. A
    point outside its domain, or where the expression fails in floats, is left to the
    oracle."""
    value = np.full((k, *shape), np.nan)
    for j, row in enumerate(zip(*args)):
        try:
            if spec.in_domain(tuple(row)):
                ties = _FloatTies(float(np.max(np.abs(row[0]), initial=0.0)) + floor, floor) if choosing else None
                extra = (ties,) if ties is not None else ()
                value[j] = np.asarray(spec.math.expr(_FLOATS, *row, *extra, **attrs), dtype=np.float64)
                if ties is not None:
                    distance[j] = min(distance[j], ties.gap)
                continue
        except (TypeError, ValueError, ArithmeticError, IndexError, np.linalg.LinAlgError):
            pass
        distance[j] = np.nan
    return value


# The float pass of each kind of op mathematics, which lowers the points' distances from
# kinks and ties in place and returns the node's values at every point.
_FLOAT_PASSES: dict[type, Callable[..., np.ndarray]] = {
    Elementwise: _elementwise, Piecewise: _elementwise, Structural: _structural, Bilinear: _bilinear,
    Vector: _whole_array, Selection: functools.partial(_whole_array, choosing=True),
}


def _special_distance(spec: Any, attrs: Mapping[str, Any], args: list[np.ndarray], k: int) -> np.ndarray:
    """Per point, how close the op's special argument comes to any of its special values
    (``OpSpec.special``: where derivative rules take their special branches), relative to
    the value's size and at least 1: a point at or near one always goes to the oracle,
    whatever the frameworks agree on."""
    specials = spec.special(spec.full_attrs(dict(attrs)))
    if not specials or spec.special_arg >= len(args):
        return np.full(k, np.inf)
    a = args[spec.special_arg].reshape(k, -1)
    out = np.full(k, np.inf)
    for target in specials:
        gap = np.abs(a - target) / max(abs(float(target)), 1.0)
        out = np.minimum(out, np.nan_to_num(gap, nan=0.0).min(axis=1, initial=np.inf))
    return out


def _align(a: np.ndarray, shape: tuple[int, ...], k: int) -> np.ndarray:
    """(k, *arg_shape) broadcast to (k, *shape), trailing dimensions aligned."""
    lead = a.shape[1:]
    a = a.reshape((k,) + (1,) * (len(shape) - len(lead)) + lead)
    return np.broadcast_to(a, (k, *shape))


def _in_domain(spec: Any, args: list[np.ndarray], k: int) -> np.ndarray:
    """Per point, whether every entry is in the op's domain (its ``domain`` or its
    ``arg_domains``): a point outside is the oracle's to judge, not screening's to vouch for."""
    check = np.frompyfunc(lambda *vals: spec.in_domain(tuple(vals)), len(args), 1)
    try:
        inside = np.asarray(check(*args), dtype=bool)
    except (TypeError, ValueError, ArithmeticError):
        return np.zeros(k, dtype=bool)
    return inside.reshape(k, -1).all(axis=1)


def agree(hessians: Mapping[str, np.ndarray | None], n: int, dtype: str) -> bool:
    """Whether every Hessian is finite, (n, n), and within its backend's error-scale-free
    tolerance (``Tolerance.naive_bound``) of the most accurate backend's, and they come
    from at least two independent frameworks (``hessdiff.backends.registry.framework_of``: the
    variants of one framework, and JAX with Equinox, share derivative rules, and so their
    faults: their agreement vouches for nothing)."""
    if not hessians or any(h is None for h in hessians.values()):
        return False
    if len({framework_of(name) for name in hessians}) < 2:
        return False
    arrays = {name: np.asarray(h) for name, h in hessians.items()}
    if any(h.shape != (n, n) or not np.all(np.isfinite(h)) for h in arrays.values()):
        return False
    reference_name = min(arrays, key=lambda name: tolerance_for(name, dtype).eps)
    reference = arrays[reference_name]
    if np.max(np.abs(reference), initial=0.0) > 1e30:
        return False
    return all(
        bool(np.all(np.abs(h - reference) <= tolerance_for(name, dtype).naive_bound(reference)))
        for name, h in arrays.items()
    )
