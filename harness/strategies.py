"""Hypothesis strategies for programs, points and whole test cases.

A case is a program, one point and a dtype. The point is drawn first and the program is
built knowing it, so a piecewise op can be *aimed*: a constant offset is chosen so that,
at this point, its argument lands exactly on (or a few ulps beside) a kink, a tie or a
clip bound, at an intermediate and not only at an input.

Everything is drawn so that Hypothesis shrinks towards small programs with simple
constants: the op count shrinks to one, op choices to the simplest ops, arguments to the
most recent node, constants to 0 and 1.

This module holds the generator's entry points (the strategies, and ``probe_program``,
their seeded counterpart for per-op tests); a program is grown by
``program_builder.Builder``, one op at a time by ``op_args``, aimed by ``aiming``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from hessdiff.harness.case import Case
from hessdiff.harness.exact import attainable, exercised, traced_nodes
from hessdiff.harness.ir import Program, op
from hessdiff.harness.op_args import Kit, apply_op, apply_op_or_skip
from hessdiff.harness.ops import CATALOGUE
from hessdiff.harness.program_builder import Builder, Chooser, dtype_floats

# Case is the case module's: the type cases() draws, importable with it.
__all__ = ["Case", "cases", "mlp_programs", "points", "probe_case", "programs", "DEFAULT_OPS"]


# Ordered simplest first: Hypothesis shrinks a sampled_from towards the front. Every
# catalogue op is in it (the original dozen first, then the catalogue's order).
_FIRST_OPS: tuple[str, ...] = (
    "relu", "square", "mul", "add", "sin", "tanh", "abs", "maximum", "sub", "exp", "cos",
    "minimum", "neg", "sigmoid", "softplus", "leaky_relu", "clip", "where", "powi", "div",
    "log", "gather", "matmul", "sum", "mean",
)
DEFAULT_OPS: tuple[str, ...] = _FIRST_OPS + tuple(n for n in CATALOGUE if n not in _FIRST_OPS)

_SIMPLE = (0.0, 1.0, -1.0, 0.5, 2.0, -0.5, -2.0)


def _coordinate(dtype: str) -> st.SearchStrategy[float]:
    tiny = np.finfo(dtype).tiny
    return st.one_of(
        dtype_floats(dtype, -3.0, 3.0),
        st.sampled_from(_SIMPLE),
        dtype_floats(dtype, -1e3, 1e3),
        st.sampled_from((float(tiny), -float(tiny), 1e-30, -1e-30)),
    )


@st.composite
def points(draw: st.DrawFn, n: int, dtype: str) -> np.ndarray:
    """A point in R^n, exactly representable in ``dtype``; sometimes with tied coordinates."""
    coords = draw(st.lists(_coordinate(dtype), min_size=n, max_size=n))
    if n > 1 and draw(st.booleans()):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        coords[j] = coords[i]
    return np.asarray(coords, dtype=dtype).astype(np.float64)


@st.composite
def programs_at(draw: st.DrawFn, n: int, x: np.ndarray, dtype: str, ops: Sequence[str] = DEFAULT_OPS,
                max_ops: int = 6, aims: Mapping[str, Sequence[int]] | None = None,
                patterns: Mapping[str, Sequence[str]] | None = None, require: Sequence[str] = ()) -> Program:
    """A random program in ``n`` inputs built knowing the point ``x`` (for aiming).

    ``aims``: per op, the special values (indices) to aim at when it aims at all -- a
    campaign passes the ones no check has hit exactly yet; an op not in it aims at any.
    ``patterns``: per elementwise op, traced/constant argument patterns ("TC") to favour.
    ``require``: ops no check has reached yet; when given, three programs in four apply
    one of them first (its arguments drawn from the input alone, or constants), the rest
    of the program drawn as usual. Left to the uniform draw, an op of a window of 30 is missed
    by a round cut short by a fault (a round shrinks after its first failing example).
    """
    b = Builder(n, x, dtype)
    b.patterns = patterns or {}
    ch = Chooser(draw)
    count = draw(st.integers(1, max_ops))
    if require and draw(st.integers(0, 3)) < 3:  # shrinks to 0: keeps the required op
        name = draw(st.sampled_from(tuple(require)))
        apply_op_or_skip(ch, b, name, _aim(draw, name, None))
        count -= 1
    for _ in range(count):
        name = draw(st.sampled_from(tuple(ops)))
        apply_op_or_skip(ch, b, name, _aim(draw, name, aims))
    return b.finish(ch)


def _aim(draw: st.DrawFn, name: str, aims: Mapping[str, Sequence[int]] | None) -> int | None:
    """Half the time, the index of a special value of op ``name`` to aim at (one of
    ``aims[name]`` when given); None for an op without special values."""
    specials = CATALOGUE[name].special_names
    if not specials or not draw(st.booleans()):
        return None
    preferred = tuple((aims or {}).get(name, ()))
    return draw(st.sampled_from(preferred)) if preferred else draw(st.integers(0, len(specials) - 1))


def probe_program(name: str, n: int, x: np.ndarray, dtype: str, seed: int, aim: int | None = None,
                  patterns: Sequence[str] = (), more: Sequence[tuple[str, int | None]] = (),
                  exact: bool = False, kind: str | None = None) -> Program:
    """One program around op ``name`` at ``x``, chosen by a seeded RNG (for per-op tests).

    With ``aim`` = i, the op's argument lands on (or a few ulps beside; ``exact``: on) its
    i-th special value at one element; ``patterns`` are the traced/constant argument
    patterns steering asks for (see ``programs_at``). Raises ``ValueError`` when the
    seed's choices make no program. ``kind``: the op takes a constant argument of that
    kind ("1:int", ``harness.exact.argument_kinds``), the others traced.
    """
    b = Builder(n, x, dtype)
    b.exact_aims = exact
    # Read out as f + f**2 always: under sum(f) a piecewise-linear op's Hessian is 0
    # whatever its first derivative rules say (a tie rule of maximum shows in no Hessian
    # of sum(maximum(x, x)), and a probe is often the only exact tie a campaign draws).
    b.curved_readout = True
    b.patterns = {name: tuple(patterns)} if patterns else {}
    ch = Chooser(rng=np.random.default_rng(seed))
    # Exact aims take the input itself: every framework computes x - c + s to the same
    # bits (a transcendental warm-up is not correctly rounded in torch), and its derivative
    # is 1 (square(square(x)) at x = 0, aimed at log10's 1, has none: a mutant wrong only
    # there survived its two exact hits).
    warmup = None if exact else ch.choice((None, "sin", "tanh", "square"))
    if warmup is not None:  # an intermediate for the op's arguments to come from
        b.add(op(warmup, 0))
    if name in ("sum", "mean", "sum_where", "mean_where") and ch.boolean():
        Kit(ch, b).matrix()  # a matrix to reduce along either axis
    b.kind = kind
    apply_op(ch, b, name, aim)
    b.kind = None
    if len(b.nodes) == 1:
        raise ValueError(f"no program for {name} with seed {seed}")
    for other, other_aim in more:  # further ops (``probe_case``), after the first
        apply_op_or_skip(ch, b, other, other_aim)
    return b.finish(Chooser(rng=np.random.default_rng(seed)))


def probe_case(names: str | Sequence[str], seed: int, dtypes: Sequence[str] = ("float64", "float32"),
               max_n: int = 8, tries: int = 8, aims: Sequence[int] | None = None,
               kind: str | None = None, pattern: str | None = None) -> Case | None:
    """A case around the op(s) ``names`` made from ``seed`` alone, without Hypothesis: a
    point of the generator's magnitudes (simple, ordinary, up to 1e3, tiny), then
    ``probe_program`` for the first op, aimed at one of its special values half the time,
    and each further op applied after it (skipped when the drawn arguments do not fit).
    None when ``tries`` seeds make no program for the first op.

    A campaign's sweep (``Campaign._sweep``) checks these for the ops no round has
    reached: what a random draw missed is reached by construction, a few ops a case (a
    check costs seconds on an old JAX, so one op a case reached only 46 ops in 5 minutes).

    ``aims``: per op, the special value (index) it lands on *exactly* (every aim of the
    program exact), in a dtype where that value is attainable; a case whose first op sits
    on it exactly (``hessdiff.harness.exact.exercised``) is preferred to one that only
    reaches the op. The sweep of special values no check has hit exactly asks for these:
    left to the generator's few-ulps aims in random programs, a 5-minute campaign hit a
    quarter of them, and a mutant wrong only at relu6's 6 survived its five near hits.
    ``kind``: the first op takes a constant argument of that kind ("1:int"), and a case
    whose check differentiates it so is preferred (the sweep of argument kinds); likewise
    ``pattern``, a traced/constant argument pattern ("CT")."""
    names = (names,) if isinstance(names, str) else tuple(names)
    rng = np.random.default_rng(seed)
    choices = list(dtypes)
    if aims is not None:
        choices = [d for d in dtypes if attainable(names[0], aims[0], (d,))] or choices
    reached: Case | None = None
    for attempt in range(tries):
        dtype = str(rng.choice(choices))
        n = int(rng.integers(1, max_n + 1))
        x = _probe_point(rng, n, dtype, ordinary=aims is not None)
        try:
            if kind is not None or pattern is not None:
                program = probe_program(names[0], n, x, dtype, seed=seed * 31 + attempt, kind=kind,
                                        patterns=(pattern,) if pattern else ())
            elif aims is None:
                program = probe_program(names[0], n, x, dtype, seed=seed * 31 + attempt,
                                        aim=_probe_aim(rng, names[0]),
                                        more=[(name, _probe_aim(rng, name)) for name in names[1:]])
            else:
                program = probe_program(names[0], n, x, dtype, seed=seed * 31 + attempt, aim=aims[0],
                                        more=list(zip(names[1:], aims[1:])), exact=True)
        except ValueError:
            continue
        # The first op on constants alone checks nothing (probe_program draws a constant
        # argument a third of the time): a 5-minute sweep left cos and erf unreached so.
        traced = traced_nodes(program)
        if any(node.kind == names[0] and traced[i] for i, node in enumerate(program.nodes)):
            if kind is not None:
                hit = (names[0], kind) in exercised(program, x, dtype).kinds
            elif pattern is not None:
                hit = (names[0], pattern) in exercised(program, x, dtype).patterns
            else:
                hit = aims is None or (names[0], aims[0]) in exercised(program, x, dtype).exact
            if hit:
                return Case(program, x, dtype)
            reached = reached or Case(program, x, dtype)
    return reached


def _probe_aim(rng: np.random.Generator, name: str) -> int | None:
    specials = CATALOGUE[name].special_names
    return int(rng.integers(len(specials))) if specials and rng.random() < 0.5 else None


def _probe_point(rng: np.random.Generator, n: int, dtype: str, ordinary: bool = False) -> np.ndarray:
    """A point like ``points`` draws, from ``rng``: each coordinate simple, ordinary
    (|x| < 3), large (|x| < 1e3) or tiny, exactly representable in ``dtype``.

    ``ordinary``: every coordinate ordinary, for an exact aim: a large one puts the aimed
    argument at the end of a cancellation (square(377) + c - 142102.23 + 1 is exactly 1
    in float32, and ill-conditioned: unjudged), a 0 under a guard's square gives it no
    derivative."""
    tiny = float(np.finfo(dtype).tiny)
    coords = []
    for _ in range(n):
        kind = 1 if ordinary else int(rng.integers(4))
        if kind == 0:
            coords.append(float(rng.choice(_SIMPLE)))
        elif kind == 1:
            coords.append(float(rng.uniform(-3.0, 3.0)))
        elif kind == 2:
            coords.append(float(rng.uniform(-1e3, 1e3)))
        else:
            coords.append(float(rng.choice((tiny, -tiny, 1e-30, -1e-30))))
    return np.asarray(coords, dtype=dtype).astype(np.float64)


# How far from 0 a fitted MLP layer's pre-activations reach (``mlp_programs_at``).
MLP_REACH = 4.0


@st.composite
def mlp_programs_at(draw: st.DrawFn, n: int, x: np.ndarray, dtype: str) -> Program:
    """A small MLP ``w . act(W2 act(W1 x + b1) + b2)`` with random weights.

    Most of the time a layer's weights are scaled so its pre-activations stay within
    ``MLP_REACH`` (as a network trained on normalised inputs has them): at the points
    this generator draws (up to 1e3) they would otherwise saturate tanh, sigmoid and
    softplus almost always, where the Hessian is far below the rounding of the formulas
    that compute it and nothing but a NaN can be judged. A quarter of the networks keep
    the raw weights, and saturate.
    """
    b = Builder(n, x, dtype)
    h = 0
    m = n
    fit = draw(st.integers(0, 3)) > 0
    for _ in range(draw(st.integers(1, 2))):
        width = draw(st.integers(1, 8))
        w = np.reshape(draw(st.lists(dtype_floats(dtype, -1.5, 1.5), min_size=width * m, max_size=width * m)),
                       (width, m))
        bias = draw(st.lists(dtype_floats(dtype, -1.0, 1.0), min_size=width, max_size=width))
        reach = float(np.max(np.abs(w @ np.ravel(b.values[h])), initial=0.0))
        if fit and reach > MLP_REACH:
            w = w * (MLP_REACH / reach)
        z = b.add(op("matmul", b.constant(w), h))
        z = b.add(op("add", z, b.constant(bias)))
        act = draw(st.sampled_from(("tanh", "relu", "softplus", "sigmoid", "leaky_relu")))
        h = b.add(op(act, z, **({"alpha": 0.1} if act == "leaky_relu" else {})))
        m = width
    out = draw(st.lists(dtype_floats(dtype, -1.5, 1.5), min_size=m, max_size=m))
    y = b.add(op("matmul", h, b.constant(out)))
    if draw(st.booleans()):
        b.add(op("square", y))
    return Program(n, tuple(b.nodes))


@st.composite
def cases(draw: st.DrawFn, dtypes: Sequence[str] = ("float64", "float32"), max_n: int = 8,
          ops: Sequence[str] = DEFAULT_OPS, max_ops: int = 6, mlps: bool = True,
          aims: Mapping[str, Sequence[int]] | None = None,
          patterns: Mapping[str, Sequence[str]] | None = None, require: Sequence[str] = ()) -> Case:
    """A whole check: dtype, a point, and a program built around that point (``aims``,
    ``patterns``, ``require``: see ``programs_at``)."""
    dtype = draw(st.sampled_from(tuple(dtypes)))
    n = draw(st.integers(1, max_n))
    x = draw(points(n, dtype))
    if mlps and not require and draw(st.integers(0, 4)) == 4:
        program = draw(mlp_programs_at(n, x, dtype))
    else:
        program = draw(programs_at(n, x, dtype, ops, max_ops, aims, patterns, require))
    return Case(program, x, dtype)


def programs(n: int = 3, dtype: str = "float64", **kwargs: Any) -> st.SearchStrategy[Program]:
    """Programs in ``n`` inputs, aimed at a point drawn alongside and then dropped."""
    return points(n, dtype).flatmap(lambda x: programs_at(n, x, dtype, **kwargs))


def mlp_programs(n: int = 3, dtype: str = "float64") -> st.SearchStrategy[Program]:
    return points(n, dtype).flatmap(lambda x: mlp_programs_at(n, x, dtype))
