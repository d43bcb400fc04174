"""``hessdiff bisect``: which release of a framework broke a finding, and which fixed it.

Every version of the range gets a virtualenv of its own, holding only that version, its
companion pins (``--with jax==0.4.26``) and what pip resolves for them: a finding's
``repro.py`` needs nothing else (it imports the framework and NumPy, never hessdiff).
The finding is replayed by running that script there; its exit status is the verdict
(1 reproduces, 0 fixed, 2 inconclusive, see ``hessdiff.harness.repro``). Environments are cached
under ``~/.cache/hessdiff/bisect`` (or ``--cache``), keyed by package, version, pins and
Python, so a second bisect of the same range installs nothing; pip's own download cache
is shared by all of them.

Every version of the range is tried (no halving): the table is the answer a maintainer
wants ("0.11.0-0.11.4 reproduce, 0.11.5 on are fixed"), and with the cache the second
bisect of another finding costs one script run per version.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
import venv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hessdiff.harness.findings import Finding
from hessdiff.harness.repro import EXIT_INCONCLUSIVE, EXIT_NOT_REPRODUCED, EXIT_REPRODUCED, render_repro

__all__ = [
    "BisectError",
    "BisectResult",
    "Outcome",
    "VersionRow",
    "bisect",
    "default_cache",
    "ensure_env",
    "parse_range",
    "pypi_versions",
    "render_table",
    "replay_script",
    "select_versions",
]

REPRODUCES, FIXED, INCONCLUSIVE, INSTALL_FAILED = "reproduces", "fixed", "inconclusive", "install-failed"
# The release lacks an API the repro calls ("ABSENT: mlx 0.21.1 has no mlx.core.flip (op flip)"):
# it cannot run the program, which says nothing of the fault.
ABSENT = "absent"
Outcome = str  # one of the five above

REPLAY_TIMEOUT = 600.0
INSTALL_TIMEOUT = 1800.0
_READY = ".hessdiff-ready"
_RELEASE = re.compile(r"^\d+(\.\d+)*$")


class BisectError(ValueError):
    """Bad input to a bisect (range, package, finding); the message names the fix."""


@dataclass(frozen=True)
class VersionRow:
    """One version of the range and what the finding's repro.py did there.

    Arguments:
        detail: the repro's last output line, or why the install failed (log path).
    """

    version: str
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class BisectResult:
    """The table of a bisect and its reading.

    Arguments:
        first_bad: the oldest version where the finding reproduces (None if none does).
        first_good: the oldest version after ``first_bad`` where it is fixed, i.e. the
            release that fixed it (None if it still reproduces at the end of the range).
    """

    package: str
    rows: tuple[VersionRow, ...]
    first_bad: str | None
    first_good: str | None


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/hessdiff/bisect`` (``~/.cache/hessdiff/bisect`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hessdiff" / "bisect"


def version_key(version: str) -> tuple[int, ...]:
    """The numeric release tuple of a plain release (``"0.11.10"`` -> ``(0, 11, 10)``)."""
    return tuple(int(part) for part in version.split("."))


def parse_range(text: str) -> tuple[str, str]:
    """``"0.11.0..0.11.6"`` -> ``("0.11.0", "0.11.6")`` (both ends included)."""
    low, sep, high = text.partition("..")
    low, high = low.strip(), high.strip()
    if not sep or not _RELEASE.match(low) or not _RELEASE.match(high):
        raise BisectError(f"--versions={text!r}, but it must be a range of releases like 0.11.0..0.11.6.")
    if version_key(low) > version_key(high):
        raise BisectError(f"--versions={text!r}: {low} comes after {high}; write the older release first.")
    return low, high


def pypi_versions(package: str, *, python: str = sys.executable) -> list[str]:
    """The releases of ``package`` on the package index, oldest first (pre-releases left out).

    Asks pip itself (``pip index versions``), so the machine's index settings apply. The
    package may name extras (``mlx[cpu]``: MLX's CPU build on Linux from 0.27 on); the
    releases are the package's own.
    """
    found = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?", package)
    if found is None:
        raise BisectError(f"--package={package!r} is not a package name.")
    package = found.group(1)
    proc = subprocess.run(
        [python, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=300,
    )
    match = re.search(r"^Available versions:\s*(.+)$", proc.stdout, flags=re.M)
    if proc.returncode != 0 or not match:
        why = (proc.stderr.strip().splitlines() or ["no versions listed"])[-1]
        raise BisectError(f"cannot list the versions of {package!r} on the package index: {why}")
    versions = [v.strip() for v in match.group(1).split(",")]
    return sorted((v for v in versions if _RELEASE.match(v)), key=version_key)


def select_versions(available: Sequence[str], low: str, high: str) -> list[str]:
    """The releases of ``available`` between ``low`` and ``high``, both included, oldest first."""
    chosen = [v for v in available if version_key(low) <= version_key(v) <= version_key(high)]
    if not chosen:
        raise BisectError(f"no release between {low} and {high}; the index has {', '.join(available[-10:])} ...")
    return sorted(chosen, key=version_key)


def _env_dir(cache: Path, package: str, version: str, pins: Sequence[str]) -> Path:
    key = "\n".join([package, version, *sorted(pins), platform.python_version(), sys.platform])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache / f"{package}-{version}-{digest}"


def ensure_env(cache: Path, package: str, version: str, pins: Sequence[str]) -> tuple[Path | None, str]:
    """A virtualenv holding ``package==version`` and ``pins``, made once and then reused.

    Returns:
        ``(python, "")`` with the environment's interpreter, or ``(None, why)`` when pip
        cannot install that combination (the log stays in the environment's folder).
    """
    folder = _env_dir(cache, package, version, pins)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    log = folder / "install.log"
    if (folder / _READY).exists() and python.exists():
        return python, ""
    if (folder / "install-failed").exists():
        return None, f"pip could not install it (cached; see {log})"
    folder.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
               f"{package}=={version}", *pins]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        output, ok = proc.stdout + proc.stderr, proc.returncode == 0
    except subprocess.TimeoutExpired:
        output, ok = f"timed out after {INSTALL_TIMEOUT:.0f}s", False
    log.write_text(" ".join(command) + "\n" + output)
    if not ok:
        (folder / "install-failed").write_text(output[-2000:])
        last = [line for line in output.splitlines() if "ERROR" in line] or output.splitlines()[-1:]
        return None, f"{last[0].strip() if last else 'pip failed'} (see {log})"
    (folder / _READY).write_text(" ".join(command) + "\n")
    return python, ""


def replay_script(python: Path, script: Path, *, timeout: float = REPLAY_TIMEOUT) -> tuple[Outcome, str]:
    """Run a finding's ``repro.py`` with ``python``; its exit status is the outcome."""
    try:
        proc = subprocess.run([str(python), str(script)], capture_output=True, text=True, timeout=timeout,
                              cwd=script.parent)
    except subprocess.TimeoutExpired:
        return INCONCLUSIVE, f"repro.py ran longer than {timeout:.0f}s"
    lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    last = lines[-1][:200] if lines else ""
    outcome = {EXIT_REPRODUCED: REPRODUCES, EXIT_NOT_REPRODUCED: FIXED}.get(proc.returncode, INCONCLUSIVE)
    if outcome == INCONCLUSIVE and proc.returncode == EXIT_INCONCLUSIVE and last.startswith("ABSENT:"):
        return ABSENT, last.removeprefix("ABSENT:").split(";")[0].strip()
    if outcome == INCONCLUSIVE and proc.returncode != EXIT_INCONCLUSIVE:
        last = f"exit {proc.returncode}: {last}"
    return outcome, last


def bisect(
    finding: Finding,
    script_dir: Path,
    *,
    package: str,
    versions: Sequence[str],
    pins: Sequence[str] = (),
    cache: Path | None = None,
    on_row: Callable[[VersionRow], None] = lambda row: None,
) -> BisectResult:
    """Replay ``finding`` in one environment per version of ``package``.

    Arguments:
        finding: the finding; its repro.py is rendered into ``script_dir``.
        versions: the versions to try, oldest first (``select_versions``).
        pins: companion requirements installed beside it (``jax==0.4.26``, ``numpy<2``).
        cache: where the environments live (``default_cache()`` if None).
        on_row: called with each row as soon as it is known (progress).
    """
    script = script_dir / "repro.py"
    script_dir.mkdir(parents=True, exist_ok=True)
    script.write_text(render_repro(finding))
    cache = cache or default_cache()
    rows = []
    for version in versions:
        python, why = ensure_env(cache, package, version, pins)
        if python is None:
            row = VersionRow(version, INSTALL_FAILED, why)
        else:
            row = VersionRow(version, *replay_script(python, script))
        rows.append(row)
        on_row(row)
    return _read(package, rows)


def _read(package: str, rows: list[VersionRow]) -> BisectResult:
    first_bad = next((i for i, r in enumerate(rows) if r.outcome == REPRODUCES), None)
    first_good = None
    if first_bad is not None:
        first_good = next((rows[i].version for i in range(first_bad + 1, len(rows))
                           if rows[i].outcome == FIXED), None)
    return BisectResult(package, tuple(rows), rows[first_bad].version if first_bad is not None else None,
                        first_good)


def render_table(result: BisectResult) -> str:
    """The table a maintainer reads, with the first bad and first good release under it."""
    width = max([len("version")] + [len(r.version) for r in result.rows])
    lines = [f"{'version'.ljust(width)}  outcome         detail", f"{'-' * width}  --------------  ------"]
    for row in result.rows:
        lines.append(f"{row.version.ljust(width)}  {row.outcome.ljust(14)}  {row.detail}".rstrip())
    bad = result.first_bad or "none in the range (it never reproduces)"
    if result.first_bad is None:
        good = "-"
    else:
        good = result.first_good or "none in the range (it still reproduces at the end)"
    lines += ["", f"first bad:  {result.package} {bad}", f"first good: {result.package} {good}"]
    absent = [row for row in result.rows if row.outcome == ABSENT]
    if absent:
        lines.append(f"lacking:    {'; '.join(row.detail for row in absent)}")
    return "\n".join(lines) + "\n"


def result_json(result: BisectResult, pins: Sequence[str]) -> dict[str, object]:
    """``bisect.json``: what ``hessdiff triage`` puts in the bug-report draft."""
    return {
        "package": result.package,
        "pins": list(pins),
        "rows": [{"version": r.version, "outcome": r.outcome, "detail": r.detail} for r in result.rows],
        "first_bad": result.first_bad,
        "first_good": result.first_good,
    }


__all__ += ["result_json"]
