"""A finding's page: the context ``finding.html.j2`` renders.

The page shows the program, the point, the oracle's and the variant's Hessians (and
|error| / bound) as heatmaps with a hover text per entry, a table of the worst entries,
every other variant at the same point, the baseline entry, repro.py and env.txt.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from hessdiff.harness.baseline import Baseline
from hessdiff.harness.bounds import bound_for, judged_bound
from hessdiff.harness.findings import Finding
from hessdiff.harness.highlight import highlight
from hessdiff.harness.html_folder import Item

__all__ = ["finding_context"]

TABLE_ENTRIES = 12  # entries in a finding's value table (the rest are on hover)
OTHER_PANELS = 2  # other variants' Hessians drawn (the distinct ones that disagree most)


def finding_context(out: Path, item: Item, painter: Any, baseline: Baseline | None,
                    neighbours: tuple[Item | None, Item | None]) -> dict[str, Any]:
    from hessdiff.harness.plots import fmt, hessian_limit

    f = item.finding
    n = f.program.n
    folder = out / item.folder
    expected = f.expected if f.expected is not None and f.expected.shape == (n, n) else None
    observed = f.observed
    square = observed is not None and expected is not None and observed.shape == (n, n)
    undefined = np.isnan(expected) if expected is not None else np.zeros((n, n), bool)
    bound = judged_bound(f) if expected is not None else None
    if bound is not None and np.shape(bound) != (n, n):
        bound = None
    prefix = f"f{item.number}"
    limit = hessian_limit(expected, observed if square else None)
    panels = []
    tips: dict[str, list[list[str]]] = {}  # hover text per heatmap, per entry (the page's script)
    entries: list[dict[str, Any]] = []
    if square:
        assert observed is not None and expected is not None
        ratio = _ratio(observed, expected, bound)
        item.worst = _worst(ratio, undefined)
        tips["main"] = _tips(f.variant, observed, expected, ratio, bound)
        over = _outlined(ratio, undefined)
        panels.append(("oracle", "main", painter.hessian(expected, title="oracle (true Hessian)", limit=limit,
                                                         prefix=f"{prefix}o", undefined=undefined)))
        panels.append(("observed", "main", painter.hessian(observed, title=f.variant, limit=limit,
                                                           prefix=f"{prefix}v", undefined=undefined,
                                                           outlined=over)))
        if ratio is not None:
            panels.append(("ratio", "main", painter.ratio(np.where(undefined, 0.0, ratio), title="|error| / bound",
                                                          prefix=f"{prefix}r", undefined=undefined,
                                                          values=observed)))
        entries = _entries(observed, expected, ratio, bound, undefined)
    else:
        if expected is not None:
            tips["oracle"] = _value_tips("oracle", expected)
            panels.append(("oracle", "oracle", painter.hessian(expected, title="oracle (true Hessian)", limit=limit,
                                                               prefix=f"{prefix}o", undefined=undefined)))
        if observed is not None and observed.ndim <= 2 and 0 < observed.size <= 4096:
            tips["observed"] = _value_tips(f.variant, np.atleast_2d(observed))
            panels.append(("observed", "observed", painter.hessian(
                observed, title=f"{f.variant}: shape {tuple(observed.shape)}", limit=hessian_limit(observed),
                prefix=f"{prefix}v")))
    others = _others(f, expected, observed if square else None, bound, undefined, painter, limit, prefix, tips)
    entry = baseline.entry_for(f) if baseline is not None else None
    repro = _read_text(folder / "repro.py")
    env_txt = _read_text(folder / "env.txt")
    bisect = None
    if (folder / "bisect.json").is_file():
        try:
            bisect = json.loads((folder / "bisect.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            bisect = None
    point = [(i, fmt(v), float(v).hex() if math.isfinite(float(v)) else fmt(v))
             for i, v in enumerate(np.asarray(f.point, dtype=np.float64))]
    return {
        "title": f"#{item.number} {f.kind.value} {f.variant}",
        "root": "../../",
        "item": item,
        "f": f,
        "n": n,
        "program": highlight(f.program.pretty()),
        "point": point,
        "panels": panels,
        "tips": _packed(json.dumps(tips, separators=(",", ":"))),
        "entries": entries,
        "entries_shown": TABLE_ENTRIES,
        "has_bound": bound is not None,
        "others": others,
        "entry": entry,
        "repro": _packed(str(highlight(repro))) if repro is not None else None,
        "env": env_txt,
        "bisect": bisect,
        "files": [name for name in ("repro.py", "env.txt", "finding.json", "bisect.json")
                  if (folder / name).is_file()],
        "prev": neighbours[0],
        "next": neighbours[1],
        "observed_shape": tuple(observed.shape) if observed is not None else None,
    }


def _ratio(observed: np.ndarray, expected: np.ndarray, bound: np.ndarray | None) -> np.ndarray | None:
    """|observed - expected| / bound per entry: 0 exact, inf where observed is not finite;
    undefined entries (NaN expected) are 0. None without a bound."""
    if bound is None:
        return None
    defined = ~np.isnan(expected)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.abs(observed - np.where(defined, expected, 0.0))
        ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err > 0, np.inf, 0.0))
    ratio = np.where(np.isfinite(observed), ratio, np.inf)
    return np.where(defined, ratio, 0.0)


def _outlined(ratio: np.ndarray | None, undefined: np.ndarray) -> np.ndarray:
    """The entries to outline as over their bound (a few; see ``hessdiff.harness.plots.few``)."""
    from hessdiff.harness.plots import few

    if ratio is None:
        return np.zeros(undefined.shape, bool)
    return few(~undefined & (ratio > 1.0))


def _worst(ratio: np.ndarray | None, undefined: np.ndarray) -> float | None:
    if ratio is None or not (~undefined).any():
        return None
    return float(np.max(ratio[~undefined]))


def _tips(variant: str, observed: np.ndarray, expected: np.ndarray, ratio: np.ndarray | None,
          bound: np.ndarray | None) -> list[list[str]]:
    from hessdiff.harness.plots import fmt

    n = expected.shape[0]
    tips = []
    for i in range(n):
        row = []
        for j in range(n):
            undefined = math.isnan(expected[i, j])
            text = (f"H[{i},{j}]\noracle: {'undefined (a kink)' if undefined else fmt(expected[i, j])}"
                    f"\n{variant}: {fmt(observed[i, j])}")
            if ratio is not None and bound is not None and not undefined:
                text += f"\n|error|/bound: {fmt(ratio[i, j])} (bound {fmt(bound[i, j])})"
            row.append(text)
        tips.append(row)
    return tips


def _value_tips(name: str, values: np.ndarray) -> list[list[str]]:
    from hessdiff.harness.plots import fmt

    return [[f"[{i},{j}]\n{name}: {fmt(v)}" for j, v in enumerate(row)] for i, row in enumerate(values)]


def _entries(observed: np.ndarray, expected: np.ndarray, ratio: np.ndarray | None, bound: np.ndarray | None,
             undefined: np.ndarray) -> list[dict[str, Any]]:
    """Every entry, the worst first (NaN/inf, then by |error| / bound, undefined last)."""
    rows = []
    n = expected.shape[0]
    for i in range(n):
        for j in range(i, n) if _symmetric(observed, expected) else range(n):
            undef = bool(undefined[i, j])
            obs = float(observed[i, j])
            r = None if ratio is None or undef else float(ratio[i, j])
            err = None if undef or not math.isfinite(obs) else abs(obs - float(expected[i, j]))
            flag = ("undefined" if undef else "NaN/inf" if not math.isfinite(obs)
                    else "over" if r is not None and r > 1 else "")
            rows.append({"i": i, "j": j, "expected": None if undef else float(expected[i, j]), "observed": obs,
                         "error": err, "bound": None if bound is None or undef else float(bound[i, j]),
                         "ratio": r, "flag": flag})

    def key(row: dict[str, Any]) -> tuple[int, float]:
        if row["flag"] == "undefined":
            return (2, 0.0)
        if row["flag"] == "NaN/inf":
            return (0, 0.0)
        return (1, -(row["ratio"] if row["ratio"] is not None else row["error"] or 0.0))

    return sorted(rows, key=key)


def _symmetric(observed: np.ndarray, expected: np.ndarray) -> bool:
    """Whether the lower triangle repeats the upper one (then the table lists i <= j only)."""
    same = lambda a: bool(np.array_equal(a, a.T, equal_nan=True))  # noqa: E731
    return same(observed) and same(expected)


def _others(f: Finding, expected: np.ndarray | None, observed: np.ndarray | None, bound: np.ndarray | None,
            undefined: np.ndarray, painter: Any, limit: float, prefix: str,
            tips: dict[str, list[list[str]]]) -> dict[str, Any]:
    """Every other variant at the same point: does it agree with the oracle? The few that
    disagree most are drawn too, each distinct Hessian once (one returning the finding's
    own Hessian is not drawn again)."""
    n = f.program.n
    rows = []
    for name, h in sorted(f.others.items()):
        row: dict[str, Any] = {"variant": name, "worst": None, "state": "", "svg": None, "tips": ""}
        if h is None:
            row["state"] = "no Hessian (crashed, timed out or unsupported)"
        elif expected is None or h.shape != (n, n):
            row["state"] = f"shape {tuple(h.shape)}"
        else:
            other_bound = bound_for(bound, f.variant, name, f.dtype) if bound is not None else None
            ratio = _ratio(h, expected, other_bound)
            worst = _worst(ratio, undefined)
            bad = int(np.sum(~np.isfinite(h) & ~undefined))
            row.update(worst=worst, ratio=ratio, values=h)
            row["state"] = (f"{bad} NaN/inf entr{'y' if bad == 1 else 'ies'}" if bad else
                            "within its bound" if worst is not None and worst <= 1 else
                            "over its bound" if worst is not None else "no bound recorded")
            if observed is not None and np.array_equal(h, observed, equal_nan=True):
                row["state"] += f", the same Hessian as {f.variant}"
        rows.append(row)
    disagreeing = sorted((r for r in rows if r.get("values") is not None and (r["worst"] is None or r["worst"] > 1)),
                         key=lambda r: -(r["worst"] if r["worst"] is not None else 0.0))
    drawn: list[dict[str, Any]] = []
    for row in disagreeing:
        if observed is not None and np.array_equal(row["values"], observed, equal_nan=True):
            continue
        twin = next((d for d in drawn if np.array_equal(d["values"], row["values"], equal_nan=True)), None)
        if twin is not None:
            twin["same"].append(row["variant"])
            continue
        if len(drawn) < OTHER_PANELS:
            row["same"] = []
            drawn.append(row)
    for k, row in enumerate(drawn):
        key = f"x{k}"
        tips[key] = _tips(row["variant"], row["values"], expected, row["ratio"], None)
        over = _outlined(row["ratio"], undefined)
        title = row["variant"] + (f" (+{len(row['same'])} alike)" if row["same"] else "")
        row["svg"] = painter.hessian(row["values"], title=title, limit=limit, prefix=f"{prefix}x{k}",
                                     undefined=undefined, outlined=over)
        row["tips"] = key
    for row in rows:
        row.pop("values", None)
        row.pop("ratio", None)
    return {"rows": rows, "drawn": drawn,
            "agree": sum(1 for r in rows if r["state"].startswith("within its bound"))}


def _packed(text: str) -> str:
    """``text`` deflated and base64-encoded, for the page's script to unpack
    (``DecompressionStream("deflate")``): a repro.py that lists every variant's Hessian is
    tens of kilobytes of digits, a few once compressed, and a report has hundreds."""
    return base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
