"""A ``repro.py``'s docstring: the issue text of a finding (title, observed, expected, why
the expected value is right, the other frameworks' answers, the program, how to
reproduce, versions), escaped to sit inside triple quotes.
"""

from __future__ import annotations

import math
import re
import textwrap
from typing import Any

import numpy as np

from hessdiff.backends.backend_variant import BackendVariant
from hessdiff.backends.lowering import Src, SourceNamespace
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.ir import Program
from hessdiff.harness.repro_check import exception_name, tolerance

_TITLE_VERB = {
    Kind.WRONG_VALUE: "returns a wrong Hessian for",
    Kind.WRONG_SHAPE: "returns a Hessian of the wrong shape for",
    Kind.NONFINITE: "returns a non-finite (nan/inf) Hessian for",
    Kind.CRASH: "raises computing the Hessian of",
    Kind.TIMEOUT: "does not finish computing the Hessian of",
    Kind.CONVENTION: "picks a different convention at a kink for the Hessian of",
    Kind.NOISE: "differs within rounding noise from the true Hessian of",
}


def issue_text(finding: Finding, variant: BackendVariant) -> str:
    """The issue text for ``finding`` on ``variant`` (unescaped: see ``docstring_escape``)."""
    n = finding.program.n
    expected = None if finding.expected is None else np.asarray(finding.expected, dtype=np.float64)
    tol, _, _ = tolerance(finding)
    sections = [
        _title(finding, variant),
        "",
        *_wrap(f"hessdiff found this {finding.kind.value} fault ({finding.severity} severity) "
               f"in {finding.variant} ({variant.description}), {finding.dtype}."),
        "",
        "Observed",
        "--------",
        *_observed(finding),
        "",
        "Expected",
        "--------",
    ]
    if expected is None:
        sections.append(f"A Hessian of shape ({n}, {n}).")
    else:
        sections.append(f"A Hessian of shape ({n}, {n}):")
        sections.append(_indent(_matrix(expected)))
        if np.isnan(expected).any():
            sections.append("nan marks an entry that is undefined at a kink (the one-sided values")
            sections.append("differ); the check skips those entries.")
    sections += [
        "",
        "Why the expected value is right",
        "-------------------------------",
        "It comes from hessdiff's independent oracle, which shares no code with any",
        "framework: the same program evaluated at 50 significant digits with mpmath, each",
        "op's derivatives derived by SymPy from its mathematical definition and carried",
        "through the program by second-order forward-mode jets.",
    ]
    if finding.dtype != "float64":
        sections += [
            f"The point, constants and attributes are rounded to {finding.dtype} first, so it is",
            "the exact Hessian of the program that actually ran.",
        ]
    if finding.explanation:
        sections += ["", *_wrap(finding.explanation)]
    if finding.others:
        sections += ["", "Every other framework at the same point:"]
        for name, other in sorted(finding.others.items()):
            sections.append(f"  {name}: {_verdict(other, expected, tol)}")
            if other is not None:
                sections.append(_indent(_matrix(np.asarray(other, dtype=np.float64)), 4))
    sections += [
        "",
        "Program",
        "-------",
        f"f: R^{n} -> R, one line per node:",
        _indent(finding.program.pretty()),
        "",
        f"Point ({finding.dtype}, exact): {_vector(finding.point)}",
    ]
    if finding.minimised:
        sections.append(f"Minimised by hessdiff: {finding.minimised}")
    if finding.count > 1:
        sections.append(f"Seen {finding.count} times in the campaign.")
    sections += [
        "",
        "To reproduce",
        "------------",
        "    python repro.py",
        "exits 1 and prints REPRODUCED when the fault is there, 0 and NOT REPRODUCED when it",
        "is not, 2 and INCONCLUSIVE when the script fails some other way.",
        *_crash_rule(finding),
        "",
        "Versions",
        "--------",
        *(f"{name} {version}" for name, version in sorted(finding.versions.items())),
        "(full environment: env.txt)",
        "",
        f"hessdiff signature: {finding.signature}",
        "",
    ]
    return "\n".join(sections)


def _crash_rule(finding: Finding) -> list[str]:
    if finding.kind is not Kind.CRASH:
        return []
    name = exception_name(finding.error)
    if not name:
        return ["Any exception but an ImportError reproduces the crash."]
    return [f"The crash reproduces when it raises {name} (or a subclass); another exception is",
            "INCONCLUSIVE."]


def _title(finding: Finding, variant: BackendVariant) -> str:
    what = _expression(finding.program)
    return f"{_subject(variant)} {_TITLE_VERB[finding.kind]} {what} ({finding.dtype})"


def _subject(variant: BackendVariant) -> str:
    """The API a user calls: ``jax.hessian(f)``; for a hand-written helper, its description."""
    if not variant.spec.helpers:
        names = dict(variant.backend.source_names("float64"))
        return str(variant.spec.compose(SourceNamespace(names), Src("f")))
    head = _head(variant.description)
    return head if variant.backend.name in head else f"{variant.backend.name}: {head}"


def _head(description: str) -> str:
    """``torch.autograd.functional.hessian(f, x)`` from ``"...hessian(f, x): reverse ..."``."""
    depth = 0
    for i, ch in enumerate(description):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and description[i:i + 2] in (": ", ", "):
            return description[:i]
    return description


def _expression(program: Program, limit: int = 70) -> str:
    """``f(x) = sum(relu(x))`` when short enough, else ``a 12-op program using ...``."""
    texts: list[str] = []
    for i, node in enumerate(program.nodes):
        if node.kind == "input":
            texts.append("x")
        elif node.kind == "const":
            value = program.constant(i)
            texts.append(repr(float(value)) if value.ndim == 0 else f"c{i}")
        else:
            args = [texts[a] for a in node.args] + [f"{k}={v!r}" for k, v in node.attrs]
            texts.append(f"{node.kind}({', '.join(args)})")
    text = f"f(x) = {texts[-1]}"
    if len(text) <= limit:
        return text
    return f"a {program.size}-op program using {', '.join(sorted(program.op_names))}"


def _observed(finding: Finding) -> list[str]:
    observed = finding.observed
    if finding.kind in (Kind.CRASH, Kind.TIMEOUT) or observed is None:
        if finding.kind is Kind.TIMEOUT:
            head = ["The Hessian computation did not finish within hessdiff's time limit."]
        else:
            head = ["The Hessian computation raised:"]
        return head + ([_indent(finding.error)] if finding.error else [])
    observed = np.asarray(observed, dtype=np.float64)
    lines = [f"A Hessian of shape {observed.shape}:", _indent(_matrix(observed))]
    if finding.kind is Kind.WRONG_VALUE and finding.max_error:
        lines.append(f"The largest error over the defined entries is {finding.max_error!r}.")
    return lines


def _verdict(other: Any, expected: np.ndarray | None, tol: float) -> str:
    if other is None:
        return "no Hessian (it raised or does not support this program)"
    other = np.asarray(other, dtype=np.float64)
    if expected is None:
        return f"shape {other.shape}"
    if other.shape != expected.shape:
        return f"shape {other.shape}, not {expected.shape}"
    defined = ~np.isnan(expected)
    ok = bool(np.all(np.abs(other[defined] - expected[defined]) <= tol))
    return "agrees with the expected Hessian" if ok else "differs from the expected Hessian"


def _number(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(float(v))


def _vector(values: Any) -> str:
    flat = np.ravel(np.asarray(values, dtype=np.float64))
    return "[" + ", ".join(_number(float(v)) for v in flat) + "]"


def _matrix(a: np.ndarray) -> str:
    """Exact values row by row; a large array is summarised by NumPy."""
    if a.size > 100:
        return np.array2string(a, precision=8, threshold=100, max_line_width=88)
    if a.ndim != 2:
        return _vector(a) if a.ndim else _number(float(a))
    rows = [_vector(row) for row in a]
    return "[" + ",\n ".join(rows) + "]"


def _indent(text: str, by: int = 4) -> str:
    return "\n".join(" " * by + line for line in text.splitlines())


def _wrap(text: str, width: int = 88) -> list[str]:
    out: list[str] = []
    for paragraph in text.splitlines():
        out += textwrap.wrap(paragraph, width) or [""]
    return out


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def docstring_escape(text: str) -> str:
    """Text as the body of a \"\"\"docstring\"\"\": colour codes dropped, the rest escaped."""
    text = _ANSI.sub("", text).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
