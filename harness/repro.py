"""Reproducers: a finding as a standalone ``repro.py`` and an ``env.txt`` for a bug report.

``repro.py`` uses only the failing framework and NumPy. Its body is exactly the code
hessdiff ran (``BackendVariant.source``); its docstring is the issue text (title,
observed, expected, why the expected value is right, the other frameworks' answers);
its tail compares the framework's Hessian with the oracle's, embedded as an exact
literal. Its exit status is what a bisect across framework versions reads:

* 0: NOT REPRODUCED, the framework now gives the expected answer;
* 1: REPRODUCED, the fault of the finding is there;
* 2: INCONCLUSIVE, the script failed some other way (the framework does not import, or it
  raised where the finding is about a wrong value, or returned another shape).
"""

from __future__ import annotations

import functools
import math
import platform
import re
import string
import sys
import textwrap
from typing import Any

import numpy as np

from hessdiff.backends.base import Backend, BackendVariant
from hessdiff.backends.lowering import Src, SourceNamespace
from hessdiff.backends.registry import get_backend, get_variant
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.ir import Program

__all__ = ["EXIT_INCONCLUSIVE", "EXIT_NOT_REPRODUCED", "EXIT_REPRODUCED", "RTOL", "TIMEOUT_SECONDS",
           "render_env", "render_repro", "tolerance"]

EXIT_NOT_REPRODUCED = 0
EXIT_REPRODUCED = 1
EXIT_INCONCLUSIVE = 2

# The repro is for humans: one relative tolerance per dtype, against the Hessian's scale.
RTOL: dict[str, float] = {"float64": 1e-6, "float32": 1e-3}

# A timeout finding reproduces when the computation is still running after this long.
TIMEOUT_SECONDS = 60.0

_TITLE_VERB = {
    Kind.WRONG_VALUE: "returns a wrong Hessian for",
    Kind.WRONG_SHAPE: "returns a Hessian of the wrong shape for",
    Kind.NONFINITE: "returns a non-finite (nan/inf) Hessian for",
    Kind.CRASH: "raises computing the Hessian of",
    Kind.TIMEOUT: "does not finish computing the Hessian of",
    Kind.CONVENTION: "picks a different convention at a kink for the Hessian of",
    Kind.NOISE: "differs within rounding noise from the true Hessian of",
}


def tolerance(finding: Finding) -> tuple[float, float, str]:
    """The repro's comparison rule for ``finding``.

    Returns:
        ``(tol, scale, rule)``: an entry matches when ``|H - EXPECTED| <= tol``;
        ``tol = RTOL[dtype] * scale`` with ``scale`` the largest defined ``|EXPECTED|``
        entry (1 if all are zero), lowered to half the finding's recorded error when that
        error is smaller (so a small but real error still reproduces). ``rule`` says which
        applied, as a comment for the script.
    """
    rtol = RTOL.get(finding.dtype, RTOL["float32"])
    scale = 1.0
    if finding.expected is not None:
        expected = np.asarray(finding.expected, dtype=np.float64)
        defined = expected[np.isfinite(expected)]
        if defined.size and float(np.max(np.abs(defined))) > 0:
            scale = float(np.max(np.abs(defined)))
    tol = rtol * scale
    rule = f"RTOL * SCALE, RTOL = {rtol!r} for {finding.dtype}, SCALE = the largest |EXPECTED| entry"
    error = finding.max_error
    if finding.kind is Kind.WRONG_VALUE and math.isfinite(error) and 0 < error <= tol:
        tol = error / 2
        rule = f"half the error hessdiff recorded ({error!r}), which is below {rtol!r} * SCALE"
    return tol, scale, rule


def render_repro(finding: Finding) -> str:
    """A standalone ``repro.py`` for ``finding``: the failing framework plus NumPy only.

    Arguments:
        finding: the finding; its variant must be registered (``hessdiff.backends.registry``).

    Returns:
        The script's source. Running it prints the framework's Hessian and the expected
        one and exits 1 (REPRODUCED), 0 (NOT REPRODUCED) or 2 (INCONCLUSIVE).

    Raises ``KeyError`` for an unknown variant and ``hessdiff.backends.base.Unsupported`` if the
    variant cannot lower the program.
    """
    variant = get_variant(finding.variant)
    point = np.asarray(finding.point, dtype=np.float64).astype(finding.dtype)
    body = variant.source(finding.program, point)
    to_numpy = variant.backend.source_to_numpy("H")
    future, _, body = body.partition("\n") if body.startswith("from __future__") else ("", "", body)
    parts = [
        '"""' + _docstring_escape(_docstring(finding, variant)) + '"""',
        *([future] if future else []),
        _prelude(finding),
        body.strip("\n"),
        "",
        _check(finding, to_numpy),
    ]
    return "\n".join(parts)


def render_env(finding: Finding) -> str:
    """``env.txt``: Python, platform, NumPy, every framework of the finding, and the failing
    backend's own environment report. Never raises."""
    lines = ["# Environment of the hessdiff run that rendered this report", ""]
    lines += _guarded(lambda: [f"python: {sys.version.splitlines()[0]}",
                               f"implementation: {platform.python_implementation()}",
                               f"platform: {platform.platform()}",
                               f"machine: {platform.machine()}",
                               f"numpy: {np.__version__}"])
    lines += ["", "# Framework versions recorded in the finding"]
    lines += [f"{name}: {version}" for name, version in sorted(finding.versions.items())] or ["(none)"]
    lines += ["", f"# {finding.backend}'s own environment report", ""]
    lines += _guarded(lambda: _backend_report(get_backend(finding.backend)).splitlines())
    return "\n".join(str(line) for line in lines) + "\n"


@functools.lru_cache(maxsize=None)
def _backend_report(backend: Backend) -> str:
    """One report per backend object per process: slow (JAX asks the devices), constant.

    Keyed by the registered object, not its name, so a backend registered later under a
    name another one had (as tests do) gets its own report.
    """
    return backend.environment_report()


def _guarded(produce: Any) -> list[str]:
    try:
        return list(produce())
    except BaseException as exc:  # noqa: BLE001 - env.txt must render whatever happens
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return [f"(unavailable: {type(exc).__name__}: {exc})"]


# --- the docstring: the issue text ------------------------------------------------------


def _docstring(finding: Finding, variant: BackendVariant) -> str:
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
    name = _exception_name(finding.error)
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


def _docstring_escape(text: str) -> str:
    """Text as the body of a \"\"\"docstring\"\"\": colour codes dropped, the rest escaped."""
    text = _ANSI.sub("", text).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# --- the executable parts ---------------------------------------------------------------

_PRELUDE = string.Template('''\
# hessdiff's exit status when the script raises (see "To reproduce"); not part of the bug.
import os
import sys


def _on_exception(kind, value, tb):
    sys.__excepthook__(kind, value, tb)
$BODY
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


sys.excepthook = _on_exception
''')

_ON_CRASH = string.Template('''\
    recorded, raised = $RECORDED, [k.__name__ for k in kind.__mro__]
    if issubclass(kind, ImportError):
        print(f"INCONCLUSIVE: the script raised {kind.__name__}: {value}; "
              "the framework does not import")
        code = 2
    elif recorded and recorded not in raised:
        print(f"INCONCLUSIVE: the script raised {kind.__name__}: {value}; the finding recorded "
              f"a {recorded}, so this is another fault")
        code = 2
    else:
        print(f"REPRODUCED: the Hessian computation raised {kind.__name__}: {value}")
        code = 1''')

_ON_OTHER = string.Template('''\
    print(f"INCONCLUSIVE: the script raised {kind.__name__}: {value}; this finding is a $KIND, "
          "not an exception")
    code = 2''')

_WATCHDOG = string.Template('''
import threading


def _timed_out():
    print("REPRODUCED: the Hessian computation is still running after $SECONDS s", flush=True)
    os._exit(1)


_watchdog = threading.Timer($SECONDS, _timed_out)
_watchdog.daemon = True
_watchdog.start()
''')


_SUPERVISOR = string.Template('''
# The finding is the process dying ($DEATH), which no Python code can catch: the
# script runs itself again in a child process and judges by how the child ends.
if os.environ.get("HESSDIFF_REPRO_CHILD") != "1":
    import signal
    import subprocess

    _child = subprocess.run([sys.executable, os.path.abspath(__file__)],
                            env={**os.environ, "HESSDIFF_REPRO_CHILD": "1"})
    if _child.returncode < 0:
        try:
            _how = signal.Signals(-_child.returncode).name
        except ValueError:
            _how = f"signal {-_child.returncode}"
        print(f"REPRODUCED: the Hessian computation killed the process with {_how}", flush=True)
        sys.exit(1)
    if _child.returncode not in (0, 1, 2):
        print(f"REPRODUCED: the process exited with status {_child.returncode}", flush=True)
        sys.exit(1)
    sys.exit(_child.returncode)  # the child's own verdict (printed above)
''')


def _worker_death(error: str) -> str:
    """"SIGSEGV (signal 11)" if the finding is a worker process dying, else ""."""
    match = re.match(r"WorkerDied: the process (?:was killed by|exited with) (.+?)(?:;|$)", error)
    return match.group(1) if match else ""


def _prelude(finding: Finding) -> str:
    if finding.kind is Kind.CRASH:
        body = _ON_CRASH.substitute(RECORDED=repr(_exception_name(finding.error)))
    else:
        body = _ON_OTHER.substitute(KIND=finding.kind.value)
    text = _PRELUDE.substitute(BODY=body)
    death = _worker_death(finding.error) if finding.kind is Kind.CRASH else ""
    if death:
        text += _SUPERVISOR.substitute(DEATH=death)
    if finding.kind is Kind.TIMEOUT:
        text += _WATCHDOG.substitute(SECONDS=repr(TIMEOUT_SECONDS))
    return text


_CHECK_HEAD = string.Template('''\
# --- hessdiff's check ------------------------------------------------------------------
# EXPECTED is the oracle's Hessian (float64, exact); nan marks an entry undefined at a
# kink, which is not compared. An entry matches when |H - EXPECTED| <= TOL, where
# TOL = $RULE.
EXPECTED = $EXPECTED
TOL = $TOL
observed = np.asarray($TO_NUMPY, dtype=np.float64)
print("expected hessian:", EXPECTED.tolist())
defined = ~np.isnan(EXPECTED)
''')

_CHECK_SHAPE_FIRST = '''\
if observed.shape != EXPECTED.shape:
    print(f"INCONCLUSIVE: the Hessian has shape {observed.shape}, not {EXPECTED.shape}; "
          "that is another fault than this finding's")
    sys.exit(2)
'''

_CHECK_VALUE = '''\
bad = defined & ~(np.abs(observed - EXPECTED) <= TOL)
if bad.any():
    i, j = (int(k) for k in np.argwhere(bad)[0])
    got, want = float(observed[i, j]), float(EXPECTED[i, j])
    print(f"REPRODUCED: {int(bad.sum())} of {int(defined.sum())} defined entries differ by "
          f"more than {TOL!r}; H[{i}, {j}] = {got!r}, expected {want!r}")
    sys.exit(1)
print(f"NOT REPRODUCED: every defined entry is within {TOL!r} of the expected Hessian")
sys.exit(0)
'''

_CHECK_NONFINITE = '''\
bad = defined & np.isfinite(EXPECTED) & ~np.isfinite(observed)
if bad.any():
    i, j = (int(k) for k in np.argwhere(bad)[0])
    got, want = float(observed[i, j]), float(EXPECTED[i, j])
    print(f"REPRODUCED: {int(bad.sum())} entries are not finite where the true Hessian is; "
          f"H[{i}, {j}] = {got!r}, expected {want!r}")
    sys.exit(1)
print("NOT REPRODUCED: every entry is finite where the true Hessian is")
sys.exit(0)
'''

_CHECK_SHAPE = '''\
if observed.shape != EXPECTED.shape:
    print(f"REPRODUCED: the Hessian has shape {observed.shape}, not {EXPECTED.shape}")
    sys.exit(1)
print(f"NOT REPRODUCED: the Hessian has the expected shape {EXPECTED.shape}")
sys.exit(0)
'''

_CHECK_NO_FAULT = string.Template('''\
note = ""
if observed.shape != EXPECTED.shape:
    note = f" (but its shape is {observed.shape}, not {EXPECTED.shape})"
elif (defined & ~(np.abs(observed - EXPECTED) <= TOL)).any():
    note = " (but it differs from the expected Hessian)"
print(f"NOT REPRODUCED: the Hessian computation $WHAT{note}")
sys.exit(0)
''')


def _exception_name(error: str) -> str:
    """``RuntimeError`` from ``"RuntimeError: ..."`` or ``"jax.errors.Foo: ..."``; "" if none."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    for line in reversed(lines):  # a traceback ends with the exception line
        match = re.match(r"^([A-Za-z_][\w.]*)(:|$)", line.strip())
        name = match.group(1).split(".")[-1] if match else ""
        if name.endswith(("Error", "Exception", "Failure", "Interrupt", "Exit")):
            return name
    return ""


def _check(finding: Finding, to_numpy: str) -> str:
    n = finding.program.n
    if finding.expected is None:
        expected = np.full((n, n), np.nan)
    else:
        expected = np.asarray(finding.expected, dtype=np.float64)
    tol, _, rule = tolerance(finding)
    text = _CHECK_HEAD.substitute(
        RULE=rule, EXPECTED=_array_source(expected), TOL=repr(tol), TO_NUMPY=to_numpy
    )
    kind = finding.kind
    if kind is Kind.WRONG_SHAPE:
        return text + _CHECK_SHAPE
    if kind is Kind.CRASH:
        return text + _CHECK_NO_FAULT.substitute(WHAT="finished without raising")
    if kind is Kind.TIMEOUT:
        return text + "_watchdog.cancel()\n" + _CHECK_NO_FAULT.substitute(
            WHAT=f"finished within {TIMEOUT_SECONDS!r} s")
    if kind is Kind.NONFINITE:
        return text + _CHECK_SHAPE_FIRST + _CHECK_NONFINITE
    return text + _CHECK_SHAPE_FIRST + _CHECK_VALUE


def _array_source(a: np.ndarray) -> str:
    """An exact ``np.array`` literal, one row per line."""
    if a.ndim == 2:
        rows = "".join("    [" + ", ".join(_float_source(v) for v in row) + "],\n" for row in a)
        return f"np.array([\n{rows}])"
    return f"np.array({_nested_source(a)})"


def _nested_source(a: np.ndarray) -> str:
    if a.ndim == 0:
        return _float_source(float(a))
    return "[" + ", ".join(_nested_source(row) for row in a) + "]"


def _float_source(v: float) -> str:
    if math.isnan(v):
        return "float('nan')"
    if math.isinf(v):
        return "float('inf')" if v > 0 else "-float('inf')"
    return repr(float(v))
