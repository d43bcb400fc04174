"""The front door: ``hessian(f, x)`` with any registered variant, and ``check(f, x)``, every
variant's Hessian beside the oracle's with the judge's verdicts.

This is the uniform call of the design made public: a program (a ``Program``, or text
``parse_program`` reads: ``"sum(tanh(x))"``), a point, a dtype, a variant name. ``check``
is what a maintainer runs when investigating one function: the same oracle and judge the
campaign uses (``hessdiff.harness.engine.check_case``), on one case, with every variant run
in this process (no worker isolation: a framework that segfaults takes the caller with it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hessdiff.backends import DTYPES, BackendVariant, all_variants, get_variant
from hessdiff.harness.case import Case
from hessdiff.harness.engine import check_case
from hessdiff.harness.ir import Program, ProgramError
from hessdiff.harness.outcomes import Outcome
from hessdiff.harness.parse import parse_program
from hessdiff.harness.tolerance import tolerance_for
from hessdiff.harness.verdicts import CaseResult, Verdict
from hessdiff.harness.worker import isolate

__all__ = ["CheckResult", "InputError", "case_of", "check", "hessian"]

DEFAULT_VARIANT = "jax:fwdrev"
# Up to this many inputs a Hessian fits in a table cell; larger ones are listed below it.
INLINE_N = 3


class InputError(ValueError):
    """A bad point, dtype or variant name given to ``hessian`` or ``check``."""


def hessian(program: Program | str, x: Any, variant: str = DEFAULT_VARIANT,
            dtype: str = "float64") -> np.ndarray:
    """The Hessian of ``program`` at ``x`` as one framework variant computes it.

    Arguments:
        program: a ``Program``, or its text (``"sum(tanh(x))"``, ``"v1 = tanh(x); v2 =
            sum(v1)"``; see ``parse_program``), whose input ``x`` takes the point's length.
        x: the point, a vector of numbers (a single number is a vector of one).
        variant: a registered variant (``"jax:fwdrev"``, ``"torch:func"``; ``"jax"`` is the
            backend's first); ``hessdiff backends`` lists them.
        dtype: ``"float64"`` or ``"float32"``: the precision the framework computes in
            (``x`` is rounded to it first).

    Returns:
        The framework's Hessian as a NumPy array of ``dtype``, shape ``(n, n)`` unless the
        framework gets the shape wrong.

    Raises:
        ProgramError: ``program`` is malformed text.
        InputError: ``x``, ``dtype`` or ``variant`` is not one hessdiff knows.
        BackendUnavailable: the variant's framework is not installed (the message says
            what to install).
        Unsupported: the variant documents that it cannot run this program.
        Exception: whatever the framework raises on the way.
    """
    point = _point(x, dtype)
    program = _program(program, point)
    try:
        chosen = get_variant(variant)
    except KeyError as exc:
        raise InputError(f"{exc.args[0]} See 'hessdiff backends'.") from None
    return np.asarray(chosen.hessian(program, point.astype(dtype)))


@dataclass(frozen=True)
class CheckResult:
    """Every variant's Hessian on one program at one point, beside the oracle's.

    Attributes:
        program: the program checked.
        point: the point, as float64 values exactly representable in ``dtype``.
        dtype: the precision every variant computed in.
        oracle: the true Hessian in float64 (50-digit multi-precision, independent of every
            framework), NaN where it has no single value (at a kink); None where the
            program is undefined at the point (``note`` says why).
        outcomes: per variant run, what it did (``Outcome``: status, Hessian, error).
        verdicts: the judge's verdicts (``Verdict``: variant, kind, explanation); a
            variant with an outcome and no verdict agrees with the oracle.
        unavailable: per variant whose framework is not installed, the reason.
        unjudged: the variants not held to the oracle because the true values overflow
            their dtype (where NaN or inf is their honest answer).
        note: what the oracle said about the program (out of its domain, piecewise linear).
        variants: every variant asked for, in the registry's order.
        case: the engine's ``CaseResult``, for anything else it learned.
    """

    program: Program
    point: np.ndarray
    dtype: str
    oracle: np.ndarray | None
    outcomes: dict[str, Outcome]
    verdicts: tuple[Verdict, ...]
    unavailable: dict[str, str]
    unjudged: frozenset[str]
    note: str
    variants: tuple[str, ...]
    case: CaseResult = field(repr=False)

    @property
    def wrong(self) -> tuple[str, ...]:
        """The variants judged wrong: a wrong value or shape, a NaN or inf, a crash."""
        return tuple(v.variant for v in self.verdicts if v.kind.is_failure)

    @property
    def agree(self) -> bool:
        """Whether the oracle could judge and no variant was judged wrong (a convention at
        a kink, or noise that cancellation explains, is not wrong)."""
        return self.oracle is not None and not self.wrong

    def status(self, variant: str) -> str:
        """One word for what ``variant`` did: "agrees", a verdict kind ("wrong_value",
        "nonfinite", "crash", "convention", "noise", ...), "unsupported", "unjudged",
        "unavailable" or "not run" (the program is undefined at the point)."""
        if variant in self.unavailable:
            return "unavailable"
        verdict = next((v for v in self.verdicts if v.variant == variant), None)
        if verdict is not None:
            return verdict.kind.value
        outcome = self.outcomes.get(variant)
        if outcome is None:
            return "not run"
        if outcome.status == "unsupported":
            return "unsupported"
        return "unjudged" if variant in self.unjudged else "agrees"

    def summary(self) -> dict[str, str]:
        """``status`` of every variant asked for."""
        return {name: self.status(name) for name in self.variants}

    def table(self) -> str:
        """The maintainer's table: the program and point, the oracle's row, one row per
        variant (its status, its largest error against the oracle, its Hessian), then
        the judge's explanations and any unavailable framework's install hint."""
        return _render(self)

    def __str__(self) -> str:
        return self.table().rstrip("\n")


def check(program: Program | str, x: Any, dtype: str = "float64",
          variants: Sequence[str] | None = None, isolated: bool = False) -> CheckResult:
    """Every variant's Hessian of ``program`` at ``x`` judged against the oracle's.

    Arguments:
        program: a ``Program`` or its text (see ``hessian``).
        x: the point; rounded to ``dtype``, which the oracle takes as exact.
        dtype: ``"float64"`` or ``"float32"``.
        variants: variant or backend names (``["jax:fwdrev", "torch"]``); default every
            registered variant. One whose framework is not installed is listed in
            ``unavailable``, not run.
        isolated: run each framework in a worker process of its own (one per framework,
            all at once, as a campaign does), so a framework that crashes, hangs or runs
            out of memory is that variant's outcome, not the caller's end. Off by default:
            in-process calls are what a debugger or a profiler wants to step into.

    Returns:
        A ``CheckResult``; ``print`` it for the table.

    Raises:
        ProgramError: ``program`` is malformed text.
        InputError: ``x``, ``dtype`` or a variant name is not one hessdiff knows.
    """
    case = case_of(program, x, dtype)
    program, point = case.program, case.point
    chosen = _variants(variants)
    status = {v.backend.name: v.backend.availability() for v in chosen}
    unavailable = {v.name: status[v.backend.name].reason for v in chosen
                   if not status[v.backend.name].available}
    runnable = [v for v in chosen if v.name not in unavailable]
    if isolated:
        runners = isolate(runnable)
        try:
            result = check_case(case, runners)
        finally:
            for runner in runners:
                runner.close()
    else:
        result = check_case(case, runnable)
    oracle = None if result.oracle is None else result.oracle.hessian_float()
    unjudged = frozenset() if result.oracle is None else frozenset(
        v.name for v in runnable
        if result.oracle.max_magnitude > tolerance_for(v.name, dtype).max_magnitude / 4
    )
    return CheckResult(program, point, dtype, oracle, dict(result.outcomes), tuple(result.verdicts),
                       unavailable, unjudged, result.note, tuple(v.name for v in chosen), result)


def case_of(program: Program | str, x: Any, dtype: str = "float64") -> Case:
    """The case ``check`` judges: ``program`` (or its text) at ``x`` rounded to ``dtype``.
    Public so that a command judging one case its own way (``hessdiff baseline record
    --entry``) reads a program and a point exactly as ``check`` does.

    Raises:
        ProgramError: ``program`` is malformed text.
        InputError: ``x`` or ``dtype`` is not one hessdiff knows.
    """
    point = _point(x, dtype)
    return Case(_program(program, point), point, dtype)


def _point(x: Any, dtype: str) -> np.ndarray:
    """``x`` as a float64 vector of values exactly representable in ``dtype``."""
    if dtype not in DTYPES:
        raise InputError(f"dtype={dtype!r}, but it must be one of {', '.join(DTYPES)}.")
    try:
        point = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"x={x!r}, but it must be a vector of numbers.") from None
    point = point.reshape(1) if point.ndim == 0 else point
    if point.ndim != 1 or not point.size:
        raise InputError(f"x has shape {point.shape}, but it must be a non-empty vector.")
    with np.errstate(over="ignore"):
        rounded = point.astype(dtype).astype(np.float64)
    if not np.all(np.isfinite(rounded)):
        raise InputError(f"x={point.tolist()}, but every entry must be a finite {dtype}.")
    return rounded


def _program(program: Program | str, point: np.ndarray) -> Program:
    if isinstance(program, str):
        return parse_program(program, len(point))
    if not isinstance(program, Program):
        raise ProgramError(f"program must be a Program or its text, not {type(program).__name__}.")
    if program.n != len(point):
        raise InputError(f"x has {len(point)} entries, but the program takes {program.n}.")
    return program


def _variants(names: Sequence[str] | None) -> list[BackendVariant]:
    if isinstance(names, str):
        raise InputError(f"variants={names!r}, but it must be a list of names, like [{names!r}].")
    if names is not None and not names:
        raise InputError("variants=[] names no variant; leave it out for every variant.")
    try:
        return all_variants(None if names is None else list(names))
    except KeyError as exc:
        raise InputError(f"{exc.args[0]} See 'hessdiff backends'.") from None


# --- the table ------------------------------------------------------------------------------


def _render(result: CheckResult) -> str:
    n = result.program.n
    point = ", ".join(repr(float(v)) for v in result.point)
    lines = [f"f(x) at x = [{point}] in {result.dtype}:", result.program.pretty(), ""]
    if result.oracle is None:
        return "\n".join(lines + [f"not checked: the program is undefined here: {result.note}"]) + "\n"
    below: list[str] = []
    rows = [["oracle", "truth", "-", "-", _cell("oracle", result.oracle, n, below)]]
    for name in result.variants:
        status = result.status(name)
        outcome = result.outcomes.get(name)
        if name in result.unavailable:
            rows.append([name, status, "-", "-", result.unavailable[name]])
        elif outcome is None or outcome.hessian is None:
            rows.append([name, status, "-", "-", _first_line(outcome.error if outcome else "")])
        else:
            abs_err, rel_err = _errors(outcome.hessian, result.oracle)
            rows.append([name, status, abs_err, rel_err, _cell(name, outcome.hessian, n, below)])
    lines.append(_table(["variant", "verdict", "max abs err", "max rel err", "hessian"], rows).rstrip("\n"))
    if below:
        lines += [""] + below[:-1]
    notes = [f"{v.variant}: {v.kind.value}: {v.explanation}" for v in result.verdicts]
    if result.unjudged:
        overflowing = ", ".join(sorted(result.unjudged))
        notes.append(f"unjudged: the true values overflow {result.dtype} for {overflowing}.")
    if np.isnan(result.oracle).any():
        notes.append("undef: the true entry has no single value (the point is on a kink); either side's is "
                     "right.")
    if result.note:
        notes.append(result.note)
    if notes:
        lines += [""] + notes
    counts = Counter(result.summary().values())
    lines += ["", "verdicts: " + ", ".join(f"{k} {status}" for status, k in counts.items())
              + (f"; judged wrong: {', '.join(result.wrong)}" if result.wrong else "")]
    return "\n".join(lines) + "\n"


def _errors(h: np.ndarray, truth: np.ndarray) -> tuple[str, str]:
    """The largest |h - truth| over the oracle's defined entries, absolute and relative
    to the largest true entry."""
    if h.shape != truth.shape:
        return "-", "-"
    defined = ~np.isnan(truth)
    if not defined.any():
        return "-", "-"
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(h[defined] - truth[defined])
    worst = float(np.nan if np.isnan(diff).any() else diff.max())
    size = float(np.abs(truth[defined]).max())
    relative = worst / size if size else (0.0 if worst == 0 else float("inf"))
    return f"{worst:.3g}", f"{relative:.3g}"


def _cell(name: str, h: np.ndarray, n: int, below: list[str]) -> str:
    """The Hessian inline when it is small, else a pointer to its listing ``below``."""
    h = np.asarray(h, dtype=np.float64)
    undefined = "undef" if name == "oracle" else "nan"
    texts = [undefined if np.isnan(v) else f"{v:.7g}" for v in h.ravel()]
    entries = np.array(texts, dtype=object).reshape(h.shape)
    if h.ndim == 2 and h.shape == (n, n) and n > INLINE_N:
        width = max(len(e) for e in entries.ravel())
        below += [f"{name}:"] + ["  " + "  ".join(e.rjust(width) for e in row) for row in entries] + [""]
        return "(below)"
    return _nested(entries)


def _nested(entries: Any) -> str:
    if isinstance(entries, np.ndarray) and entries.ndim:
        return "[" + ", ".join(_nested(e) for e in entries) + "]"
    return str(entries)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths]] + rows
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines) + "\n"


def _first_line(text: str, limit: int = 200) -> str:
    lines = text.strip().splitlines()
    return lines[0][:limit] if lines else ""
