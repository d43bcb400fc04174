"""The crash-safe findings log, ``findings.jsonl``: one finding per line, appended as it is made.

``hessdiff run`` (``hessdiff.harness.run``) hands every finding of its campaign to
``append_finding`` the moment it is made (flushed and fsynced), so a run killed mid-round
loses at most the example in flight; ``read_jsonl`` reads the log back for ``--resume``
and for the report of a run that stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hessdiff.harness.findings import Finding, FindingError, finding_from_json
from hessdiff.harness.json_safe import json_safe

__all__ = ["append_finding", "read_jsonl"]


def append_finding(out_dir: str | Path, finding: Finding) -> Path:
    """Append ``finding`` as one JSON line to ``out_dir/findings.jsonl``, flushed and fsynced.

    A line left half-written by a crash is dropped first, so the log stays readable.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "findings.jsonl"
    line = (json.dumps(json_safe(finding.to_json()), allow_nan=False) + "\n").encode("utf-8")
    with open(path, "a+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                fh.truncate(_last_newline_end(fh, size))
                fh.seek(0, os.SEEK_END)
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_jsonl(out_dir: str | Path) -> list[Finding]:
    """The findings logged by ``append_finding``; a truncated last line is ignored.

    Raises ``FindingError`` for a malformed line anywhere else (that is not a crash).
    """
    path = Path(out_dir) / "findings.jsonl"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise FindingError(f"cannot read {path}: {exc.strerror}") from None
    lines = data.split(b"\n")
    complete, last = lines[:-1], lines[-1]
    findings: list[Finding] = []
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FindingError(f"{path}:{number} is not valid JSON: {exc}") from None
        findings.append(finding_from_json(record))
    if last.strip():  # no newline after it: complete only if it parses
        try:
            findings.append(finding_from_json(json.loads(last)))
        except (json.JSONDecodeError, UnicodeDecodeError, FindingError):
            pass
    return findings


def _last_newline_end(fh: Any, size: int) -> int:
    """The offset just after the last newline of an open binary file (0 if none)."""
    block = 65536
    end = size
    while end > 0:
        start = max(0, end - block)
        fh.seek(start)
        chunk = fh.read(end - start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        end = start
    return 0
