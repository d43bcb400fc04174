"""The executable parts of a ``repro.py``: the rule it compares by, the prelude that turns
an exception (or a hang, or the process dying) into its exit status, and the tail that
compares the framework's Hessian with the oracle's exact literal and exits 1
(REPRODUCED), 0 (NOT REPRODUCED) or 2 (INCONCLUSIVE) (see ``hessdiff.harness.repro``).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping

import numpy as np

from hessdiff.harness.findings import Finding, Kind

# The repro is for humans: one relative tolerance per dtype, against the Hessian's scale.
RTOL: dict[str, float] = {"float64": 1e-6, "float32": 1e-3}

# A timeout finding reproduces when the computation is still running after this long.
TIMEOUT_SECONDS = 60.0


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


_PRELUDE = string.Template('''\
# hessdiff's exit status when the script raises (see "To reproduce"); not part of the bug.
import os
import sys

# The framework APIs the program's ops call (an older or newer release may lack one).
OPS_BY_API = $OPS_BY_API


def _absent_api(kind, value):
    """"mlx 0.21.1 has no mlx.core.flip (op flip)" if the script met an API this release
    lacks: the release cannot run the finding's program, which says nothing of the fault."""
    text = str(value)
    if not issubclass(kind, AttributeError) or not text.startswith("module '") \\
            or "' has no attribute '" not in text:
        return ""
    module, _, attribute = text[len("module '"):].partition("' has no attribute '")
    api, root = f"{module}.{attribute.split(chr(39))[0]}", module.split(".")[0]
    version = getattr(sys.modules.get(root), "__version__", "") \\
        or getattr(sys.modules.get(module), "__version__", "")
    release = f"{root} {version}".strip()
    op = OPS_BY_API.get(api)
    return f"{release} has no {api}" + (f" (op {op})" if op else "")


def _on_exception(kind, value, tb):
    sys.__excepthook__(kind, value, tb)
    absent = _absent_api(kind, value)
    if absent:
        print(f"ABSENT: {absent}; this release cannot run the program, so the finding is not judged")
        sys.stdout.flush()
        os._exit(2)
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


def prelude(finding: Finding, ops_by_api: Mapping[str, str] | None = None) -> str:
    """The script's head: an exception hook giving the exit status, and for a worker
    death a supervisor, for a timeout a watchdog. ``ops_by_api`` (``mlx.core.flip`` ->
    ``flip``, ``api_probe.apis_of_ops``) lets a release that lacks an API say which op."""
    ops_by_api = dict(sorted((ops_by_api or {}).items()))
    if finding.kind is Kind.CRASH:
        body = _ON_CRASH.substitute(RECORDED=repr(exception_name(finding.error)))
    else:
        body = _ON_OTHER.substitute(KIND=finding.kind.value)
    text = _PRELUDE.substitute(BODY=body, OPS_BY_API=repr(ops_by_api))
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


def exception_name(error: str) -> str:
    """``RuntimeError`` from ``"RuntimeError: ..."`` or ``"jax.errors.Foo: ..."``; "" if none."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    for line in reversed(lines):  # a traceback ends with the exception line
        match = re.match(r"^([A-Za-z_][\w.]*)(:|$)", line.strip())
        name = match.group(1).split(".")[-1] if match else ""
        if name.endswith(("Error", "Exception", "Failure", "Interrupt", "Exit")):
            return name
    return ""


def check_tail(finding: Finding, to_numpy: str) -> str:
    """The script's tail: ``to_numpy`` (the framework's H as NumPy) against the oracle's."""
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
