"""The evaluator: a program's nodes in order, each through its op kind's handler
(``kinds.KINDS``), and the oracle's entry points.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import mpmath
import numpy as np

from hessdiff.harness.ir import Program
from hessdiff.harness.oracle import state
from hessdiff.harness.oracle.elementwise import SPECIAL_ULPS
from hessdiff.harness.oracle.jets import (_ZERO, LESS_ACCURATE, _abs_float, _absolutes, _depends, _Jet, _nonzero,
                                          _zeros_obj, second_order_unit)
from hessdiff.harness.oracle.kinds import kind_of
from hessdiff.harness.oracle.resolutions import Resolution, resolutions
from hessdiff.harness.oracle.result import (DIGITS, ORACLE_SECONDS, Kink, OracleResult, OutOfDomain, _time_limit,
                                            _to_float)
from hessdiff.harness.oracle.rules import FLUSHES_SUBNORMALS
from hessdiff.harness.ops import get_op

__all__ = ["conventions", "evaluate", "node_values", "piecewise_linear"]


def _round(values: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(dtype).astype(np.float64)


def _mpf_array(values: np.ndarray) -> np.ndarray:
    flat = [mpmath.mpf(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()]
    return np.array(flat + [None], dtype=object)[:-1].reshape(np.shape(values))


class _Evaluator:
    """One evaluation of a program at a point: the nodes in order, each through its
    kind's handler (``kinds.KINDS``), which notes kinks, specials and underflow here."""

    def __init__(self, program: Program, x: np.ndarray, dtype: str, kink_fuzz: float = 0.0,
                 resolution: Resolution | None = None, framework: str | None = None,
                 range_tiny: float = 0.0) -> None:
        self.program = program
        self.range_tiny = range_tiny
        finfo = np.finfo(dtype)
        # A switch's error unit beyond its error scale: the smallest normal the framework
        # keeps (the dtype's, or a wider one: ``evaluate``'s ``range_tiny``), over eps.
        self.switch_floor = max(float(finfo.tiny), range_tiny) / float(finfo.eps)
        self.limits = (float(finfo.eps) / 2, float(finfo.tiny))  # unit roundoff, smallest normal
        self.second_order = second_order_unit(dtype, framework)  # a derivative's own error per scale unit
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
        self.switch_specials = False
        self.underflow = False
        self.underflow_vars = np.zeros(self.n, dtype=bool)

    # Each op kind builds its result jet from its argument jets.

    def run(self) -> OracleResult:
        columns = self._column_gradients()
        with state.evaluation():
            result = self._run(columns)
            factor = max(self.max_value, self.max_derivative, state.LOCAL_PEAK[0])
            with np.errstate(over="ignore"):
                product = float(np.float64(self.max_derivative) * np.float64(factor))
            return dataclasses.replace(result, max_magnitude=max(result.max_magnitude, state.LOCAL_PEAK[0]),
                                       product_peak=product, flushed_products=state.FLUSHED_PRODUCTS[0])

    def _column_gradients(self) -> list[np.ndarray | None] | None:
        """Every node's gradient under the forward-mode rules' convention
        (``Resolution.columns``), for a Hessian whose columns follow them; None where the
        two modes resolve the kinks alike."""
        if self.resolution is None or self.resolution.columns is None:
            return None
        forward = self.resolution.forward()
        known = state.MEMO.get(self._gradients_key(forward)) if state.MEMO is not None else None
        if known is not None:  # that convention was evaluated already (``_keep_gradients``)
            return known
        evaluator = _Evaluator(self.program, self.x, self.dtype, self.kink_fuzz, forward, self.framework,
                               self.range_tiny)
        with state.evaluation():
            return [jet.g for jet in evaluator._walk()]

    def _gradients_key(self, resolution: Resolution) -> tuple[int, tuple[Any, ...]]:
        """Where ``state.MEMO`` keeps every node's gradient under ``resolution`` (node -1:
        the whole program), for the mixed-mode conventions that take their columns from it."""
        return -1, ("gradients", resolution, self.kink_fuzz, self.range_tiny, mpmath.mp.dps)

    def _keep_gradients(self, jets: list[_Jet]) -> None:
        """Keep every node's gradient under this evaluation's convention for the
        mixed-mode conventions evaluated after it (``_column_gradients``): one
        evaluation each instead of two."""
        if self.resolution is not None and self.resolution.columns is None and state.MEMO is not None:
            state.MEMO[self._gradients_key(self.resolution)] = [jet.g for jet in jets]

    def _walk(self, columns: list[np.ndarray | None] | None = None) -> list[_Jet]:
        """Every node's jet, in order; with ``columns``, each jet's column gradient
        (``_Jet.gc``) is that node's from the forward-mode convention."""
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
            jet = kind_of(spec).jet(self, i, spec, attrs, args, shape)
            if state.UNDERFLOWS and state.UNDERFLOWS[-1] == i:  # its formula underflowed: every input it reads
                self.underflow_vars |= np.any([_depends(a) for a in args if a.g is not None] or [False], axis=0)
            self._track(jet)
            if columns is not None and jet.g is not None:
                jet.gc = columns[i]
            jets.append(jet)
        return jets

    def _run(self, columns: list[np.ndarray | None] | None = None) -> OracleResult:
        n = self.n
        jets = self._walk(columns)
        self._keep_gradients(jets)
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
            underflow=self.underflow or bool(state.UNDERFLOWS),
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

    def note_switch(self, op_name: str, k: int, distance: float, counts_as_special: bool, gap: float) -> None:
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
    with state.clocked(), mpmath.workdps(digits), np.errstate(over="ignore", invalid="ignore"), \
            _time_limit(ORACLE_SECONDS, "the Hessian"):
        try:
            result = _with_framework_scales(program, x, dtype, kink_fuzz, resolution, range_tiny)
            return _residues_zeroed(result, program, x, dtype, kink_fuzz, resolution, range_tiny)
        except OverflowError as exc:  # an exact value with more digits than Python allows
            raise OutOfDomain(f"the program's exact values outgrow exact arithmetic here ({exc})") from None


def _specific_frameworks(program: Program, dtype: str) -> list[str]:
    """The frameworks some op of ``program`` has a rule scale of its own for, and those
    less accurate in ``dtype`` than the dtype itself (``jets.LESS_ACCURATE``: their
    derivatives' own errors, and so the products of two, are larger)."""
    names: set[str] = {framework for framework, less in LESS_ACCURATE if less == dtype}
    for node in program.nodes:
        if node.kind not in ("input", "const"):
            spec = get_op(node.kind)
            names.update(spec.rule_scale.frameworks if spec.rule_scale is not None else ())
            names.update(kind_of(spec).frameworks(spec))
    return sorted(names)


def _with_framework_scales(program: Program, x: np.ndarray, dtype: str, kink_fuzz: float,
                           resolution: Resolution | None, range_tiny: float = 0.0) -> OracleResult:
    # The memo under way (the conventions' evaluations share one), kept for the rescale.
    memo: dict[tuple[int, tuple[Any, ...]], Any] = {} if state.MEMO is None else state.MEMO
    with state.memo(memo):
        result = _Evaluator(program, x, dtype, kink_fuzz, resolution, range_tiny=range_tiny).run()
    names = tuple(sorted({*_specific_frameworks(program, dtype),
                          *(FLUSHES_SUBNORMALS if result.flushed_products else ())}))
    if not names:
        return result

    return dataclasses.replace(result, framework_scales=names,
                               _rescale=_Rescale(program, x, dtype, kink_fuzz, resolution, range_tiny, memo))


@dataclasses.dataclass
class _Rescale:
    """A framework's error scales of one evaluation, computed when first asked
    (``OracleResult.scale_for``). A plain object, not a closure, so that an
    ``OracleResult`` judged in another process (``judge_pool``) travels back with it;
    the memo of rule values stays behind (it only saves time)."""

    program: Program
    x: np.ndarray
    dtype: str
    kink_fuzz: float
    resolution: Resolution | None
    range_tiny: float
    memo: dict[tuple[int, tuple[Any, ...]], Any]

    def __call__(self, framework: str) -> np.ndarray:
        with state.clocked(), mpmath.workdps(DIGITS), np.errstate(over="ignore", invalid="ignore"), \
                _time_limit(ORACLE_SECONDS, "an error scale"), state.memo(self.memo):
            return _Evaluator(self.program, self.x, self.dtype, self.kink_fuzz, self.resolution, framework,
                              self.range_tiny).run().hessian_scale

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "memo": {}}


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
    with state.clocked(), mpmath.workdps(DIGITS), np.errstate(over="ignore", invalid="ignore"), \
            _time_limit(ORACLE_SECONDS, "the one-sided Hessians"), state.memo(memo):
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
                values.append(kind_of(spec).value(spec, spec.full_attrs(node.attr_dict), [values[a] for a in node.args],
                                                   dtype))
    return [_to_float(np.asarray(v, dtype=object)) for v in values]


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
        if traced[i] and kind_of(spec).curved(spec, spec.full_attrs(node.attr_dict), args_traced):
            return False
    return True



# An entry below 10**-(dps - RESIDUE_DIGITS) times its error scale may be what is left of
# terms that cancelled at the working precision; RESIDUE_CHECK_DIGITS more tell.
RESIDUE_DIGITS = 10
RESIDUE_CHECK_DIGITS = 20


def _residues_zeroed(result: OracleResult, program: Program, x: np.ndarray, dtype: str, kink_fuzz: float,
                     resolution: Resolution | None, range_tiny: float) -> OracleResult:
    """``result`` with every gradient and Hessian entry that is only the rounding residue
    of terms cancelling at the working precision set to an exact 0.

    mean(softmax(x)) is 1/5 whatever x is, its Hessian exactly 0, but the chain rule's
    sums at 50 digits leave entries of 1e-53 where the terms are of size 1: held to its
    own size, such an entry was ill-conditioned (the frameworks' 1e-9 lie within their
    bound, far above 1e-53), and 17 of a program's 25 entries were unjudged (a 5-minute
    campaign). The elementwise rules are exact whatever they cancel (``rules._stable``:
    softplus'' at 200 is 1.4e-87 where the terms are near 1), so a small entry is not a
    residue by its size: an entry that small against its error scale is evaluated again
    with ``RESIDUE_CHECK_DIGITS`` more digits, and it is a residue (0) where the two do
    not agree to ``RESIDUE_DIGITS`` digits. Most programs have no such entry and cost
    nothing more."""
    digits = mpmath.mp.dps
    cutoff = float(mpmath.mpf(10) ** (RESIDUE_DIGITS - digits))

    def suspects(entries: np.ndarray, scale: np.ndarray) -> np.ndarray:
        flat = entries.reshape(-1)
        scales = np.broadcast_to(np.asarray(scale, dtype=np.float64), entries.shape).reshape(-1)
        return np.array([bool(v) and not mpmath.isnan(v) and bool(np.isfinite(s)) and abs(v) <= cutoff * s
                         for v, s in zip(flat, scales)], dtype=bool).reshape(entries.shape)

    in_h, in_g = suspects(result.hessian, result.hessian_scale), suspects(result.gradient, result.gradient_scale)
    if not (in_h.any() or in_g.any()):
        return result
    with mpmath.workdps(digits + RESIDUE_CHECK_DIGITS):
        finer = _Evaluator(program, x, dtype, kink_fuzz, resolution, range_tiny=range_tiny).run()
    tolerance = mpmath.mpf(10) ** -RESIDUE_DIGITS

    def zeroed(entries: np.ndarray, check: np.ndarray, again: np.ndarray) -> np.ndarray:
        out = np.array(entries, dtype=object, copy=True)
        for idx in zip(*np.nonzero(check)):
            if abs(again[idx] - entries[idx]) > tolerance * abs(entries[idx]):
                out[idx] = _ZERO
        return out

    return dataclasses.replace(result, hessian=zeroed(result.hessian, in_h, finer.hessian),
                               gradient=zeroed(result.gradient, in_g, finer.gradient))
