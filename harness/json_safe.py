"""JSON-ready values: what a finding or a run's info holds, as strict JSON can carry it.

NaN and inf become strings, tuples and sets lists, NumPy scalars Python numbers and
anything else its ``str``, so ``json.dumps(..., allow_nan=False)`` never fails on a
report's content (the crash-safe findings log and the report's JSON files both rely on it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["json_safe"]


def json_safe(value: Any) -> Any:
    """JSON-ready: NaN/inf as strings, tuples and sets as lists, anything else as str."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        try:
            return json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)
