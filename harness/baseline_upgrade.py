"""Rewrite a baseline file's entries from the older signature form to the current one.

Findings used to be signed by variant (``torch:autograd*|nonfinite|float32|*|pow(T, C) @ at 0``);
they are signed by framework and route now (``torch|rev-over-rev+tape,rev-over-rev+tape+vmap|
nonfinite|float32|*|pow(T, C) @ at 0``, ``Finding.signature``). An older entry's variant
pattern becomes the routes of the variants it matches in this installation's registry, so
the rewritten entry covers exactly the variants the old one did: ``*`` stays ``*`` (every
variant of the framework, a later one too); ``torch:autograd*`` becomes the routes of
``autograd`` and ``autograd-vec``. Each recorded repro gets its route and its new signature.

The file is read as JSON, not through ``load_baseline`` (which refuses the older form), and
written back in the same layout; ``extends`` is kept, and the extended file is a file of
its own to upgrade.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hessdiff.backends.registry import get_backend, variant_route
from hessdiff.harness.baseline import BaselineError
from hessdiff.harness.findings import FindingError, finding_from_json

__all__ = ["upgrade_baseline_file", "upgraded_signature"]


def upgraded_signature(signature: str) -> str:
    """``signature`` in the current form; unchanged if it is in it already.

    Raises ``BaselineError`` when its variant pattern names a framework this installation
    does not register, or matches none of its variants (nothing to take the routes of)."""
    parts = signature.split("|")
    if len(parts) not in (4, 5) or ":" not in parts[0]:
        return signature
    backend_name, _, pattern = parts[0].partition(":")
    try:
        backend = get_backend(backend_name)
    except (KeyError, ValueError) as exc:
        raise BaselineError(f"cannot upgrade {signature!r}: {exc}") from None
    names = [*backend.variants, *(p for p in backend.probes() if p not in backend.variants)]
    covered = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if not covered:
        raise BaselineError(f"cannot upgrade {signature!r}: {parts[0]} matches none of {backend_name}'s variants")
    if pattern == "*":
        route = "*"
    else:
        route = ",".join(dict.fromkeys(variant_route(f"{backend_name}:{n}") for n in covered))
    return "|".join([backend_name, route, *parts[1:]])


def _upgraded_repro(repro: Mapping[str, Any], where: str) -> dict[str, Any]:
    try:
        finding = finding_from_json(repro)
    except FindingError as exc:
        raise BaselineError(f"{where}: its repro is not a finding hessdiff can read: {exc}") from None
    old = repro.get("signature")
    # The repro's own signature names its variant exactly, so it upgrades to one route; it
    # keeps the blamed rule the repro was recorded with (a repro holds no blame to re-sign).
    signature = upgraded_signature(old) if isinstance(old, str) else finding.signature
    return {**repro, "route": finding.route, "signature": signature}


def upgrade_baseline_file(path: str | Path) -> int:
    """Rewrite the baseline at ``path`` in the current form; the number of entries changed.

    Raises ``BaselineError`` (one line) if the file cannot be read or an entry cannot be
    rewritten; the file is left as it was."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("entries"), list):
        raise BaselineError(f'baseline {path} must be an object {{"entries": [...]}}.')
    changed = 0
    entries = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["entries"]):
        where = f"baseline {path}: entry {i}"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("signature"), str):
            raise BaselineError(f"{where} must be an object with a 'signature' string.")
        entry = dict(raw)
        entry["signature"] = upgraded_signature(raw["signature"])
        if isinstance(raw.get("repro"), Mapping):
            entry["repro"] = _upgraded_repro(raw["repro"], where)
        if entry["signature"] in seen:
            raise BaselineError(f"{where} becomes {entry['signature']!r}, as entry {seen[entry['signature']]} does; "
                                "merge the two by hand first.")
        seen[entry["signature"]] = i
        changed += entry != dict(raw)
        entries.append(entry)
    out = {**data, "entries": entries}
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed
