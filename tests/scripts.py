"""Run emitted reproducer scripts the way a maintainer would: in a fresh interpreter.

The reproducers run in one fresh interpreter (not the test process, and not able to
import hessdiff: cwd is a scratch directory and PYTHONPATH is dropped), each script as
``__main__`` in its own namespace, so a script that leans on a name it does not define
or import still fails. Importing torch and its lazily loaded torch._dynamo costs ~4
CPU-seconds per interpreter, so one interpreter per script would make this file take
minutes on a small machine; the scripts set no global torch state to leak.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_RUNNER = """
import runpy, sys, traceback
for path in sys.argv[1:]:
    print("#script", path, flush=True)
    try:
        runpy.run_path(path, run_name="__main__")
    except BaseException:
        traceback.print_exc(file=sys.stdout)
    sys.stdout.flush()
"""


def run_scripts(workdir: Path, scripts: dict[str, str]) -> dict[str, str]:
    """Run ``name -> source`` scripts in one fresh interpreter; ``name -> stdout``."""
    paths = []
    for name, source in scripts.items():
        path = workdir / f"{name}.py"
        path.write_text(source)
        paths.append(str(path))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER, *paths], cwd=workdir, env=env, capture_output=True,
        text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    sections = run.stdout.split("#script ")[1:]
    return {Path(s.split("\n", 1)[0]).stem: s.split("\n", 1)[1] for s in sections}
