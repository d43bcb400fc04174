"""The HTML report's pictures: matplotlib figures returned as inline SVG.

Every figure is a ``matplotlib.figure.Figure`` of its own (no pyplot, no global backend),
saved as SVG with text kept as text, only the ids something refers to kept (prefixed, so
that many figures can share a page), coordinates rounded to 0.1 pt, and its size given
in CSS pixels so that the page knows how large each picture is.

Colour conventions, shared by every heatmap of a finding:

- a Hessian is on a symmetric-log diverging scale (blue negative, red positive), the
  same scale for the oracle's and every variant's Hessian of one finding;
- |error| / bound is on a log scale centred on 1: green is within the bound, red over,
  pale green an exact match;
- an undefined entry (the truth has no single value at a kink) is hatched grey;
- a NaN or inf entry is black, labelled ``NaN``, ``+inf`` or ``-inf``;
- an entry over its bound is outlined in black.

Heatmap cells are marked with their entry (``data-c="i j"``), so that the page can give
each a hover title from one table of values shared by a finding's panels.

A finding's heatmap panels are drawn by a ``Painter``, which keeps one figure per shape
and only recolours it: setting up a figure and its axes costs matplotlib several times
what drawing it does, and a report has hundreds of findings of a few shapes.
matplotlib is imported inside the functions: ``hessdiff.harness.html_report`` checks that it is
installed before drawing anything.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np

__all__ = ["Painter", "Svg", "coverage_matrix", "few", "fmt", "hessian_limit", "trend_chart"]

PX_PER_INCH = 96  # CSS: 1in = 96px = 72pt
UNDEFINED_FACE = "#d9d9d9"
NONFINITE_FACE = "#111111"
UNREACHED_FACE = "#f6b3b3"
ZERO_ERROR_FACE = "#e3f1e3"
HESSIAN_CMAP = "RdBu_r"
RATIO_CMAP = "RdYlGn_r"
HESSIAN_LINTHRESH = 1e-3  # of the largest magnitude: three decades on a log scale, then linear

_RC = {
    "svg.fonttype": "none",  # text as <text>: small, selectable, drawn by the browser's fonts
    "svg.hashsalt": "hessdiff",  # deterministic ids
    "font.size": 9.0,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial"],  # written into every <text>: keep it short
    "hatch.linewidth": 0.8,
    "axes.titlesize": 10.0,
    "axes.titleweight": "bold",
}


@dataclass(frozen=True)
class Svg:
    """One figure as SVG markup for an HTML page.

    Arguments:
        markup: ``<svg ...>...</svg>`` (no XML prolog).
        width / height: its size in CSS pixels (also its width and height attributes).
    """

    markup: str
    width: int
    height: int


def fmt(value: float | None) -> str:
    """A number as a person reads it in a tooltip or table: ``NaN``, ``+inf``, ``1.2345e-07``."""
    if value is None:
        return "—"
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:.6g}"
    return f"{v:.4e}"


# --- SVG plumbing -----------------------------------------------------------------------------


def _figure(width_in: float, height_in: float, layout: str | None = None) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout=layout)


_NUMBER = re.compile(r"(\d+\.\d)\d+")


def _rounded(match: re.Match[str]) -> str:
    return match.group(1) + '="' + _NUMBER.sub(r"\1", match.group(2)) + '"'


def _to_svg(fig: Any, prefix: str, label: str = "", dpi: int = 72) -> Svg:
    """Save ``fig`` as inline SVG: px size, cells marked by entry, few and unique ids."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        # dpi only sets the resolution of the rasterized parts (colour bars, coverage cells).
        fig.savefig(buf, format="svg", dpi=dpi, metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.S)
    width = round(fig.get_figwidth() * PX_PER_INCH)
    height = round(fig.get_figheight() * PX_PER_INCH)
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"',
                  lambda m: f'<svg{m.group(1)} width="{width}px" height="{height}px"', text, count=1)
    aria = f' role="img" aria-label="{escape(label)}"' if label else ""
    text = text.replace("<svg", f'<svg class="plot"{aria}', 1)
    # Heatmap cells: their group says which entry they are; the page's script gives each
    # its hover title from one table of values (three panels share it).
    text = re.sub(r'<g id="c(\d+)_(\d+)">', r'<g data-c="\1 \2">', text)
    # Only the ids something refers to stay (clip paths, hatch patterns, tick markers),
    # prefixed to be unique on the page.
    used = {a or b for a, b in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', text)}
    text = re.sub(r'\s+id="([^"]+)"', lambda m: f' id="{prefix}-{m.group(1)}"' if m.group(1) in used else "",
                  text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', text)
    # A tenth of a point is plenty for coordinates; whitespace between tags is noise.
    text = re.sub(r'\b(d|transform|x|y)="([^"]*)"', _rounded, text)
    text = re.sub(r"\s*\n\s*", " ", text).replace("> <", "><")
    text = _RECT.sub(_as_rect, text)
    text = re.sub(r'<g data-c="(\d+ \d+)"><rect ([^>]*)/></g>', r'<rect data-c="\1" \2/>', text)
    # Every text has the same font: say it once, on the <svg> (inherited).
    text = re.sub(r"font-family: [^;\"]*;? ?", "", text)
    text = text.replace("<svg", '<svg font-family="DejaVu Sans, Arial, sans-serif"', 1)
    text = re.sub(r' transform="rotate\(-?0 [^"]*\)"', "", text)
    text = re.sub(r'style="fill: (#[0-9a-f]{6})"', r'fill="\1"', text)
    # A tick mark's <use> repeats the style its marker already has; empty groups draw nothing.
    text = re.sub(r'(<use [^>]*?) style="[^"]*"', r"\1", text)
    while True:
        shorter = re.sub(r"<g></g>|<g/>", "", text)
        if shorter == text:
            break
        text = shorter
    return Svg(text, width, height)


# A rectangle as matplotlib writes it (a closed path of four corners), and as SVG's <rect>.
_RECT = re.compile(r'<path d="M ([\d.]+) ([\d.]+) L ([\d.]+) \2 L \3 ([\d.]+) L \1 \4 (?:L \1 \2 )?z ?"')


def _as_rect(match: re.Match[str]) -> str:
    x0, y0, x1, y1 = (float(v) for v in match.groups())
    return (f'<rect x="{min(x0, x1):.1f}" y="{min(y0, y1):.1f}" width="{abs(x1 - x0):.1f}" '
            f'height="{abs(y1 - y0):.1f}"')


def _tick(value: float) -> str:
    """A colour-bar tick without mathtext (slow to lay out): ``1e-06``, ``-0.5``, ``0``."""
    if value == 0:
        return "0"
    if 1e-2 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.1e}".replace(".0e", "e").replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


# --- colours ----------------------------------------------------------------------------------


def hessian_limit(*arrays: np.ndarray | None) -> float:
    """The colour limit shared by a finding's Hessian panels: the largest finite magnitude."""
    top = 0.0
    for a in arrays:
        if a is None:
            continue
        a = np.asarray(a, dtype=np.float64)
        finite = np.abs(a[np.isfinite(a)])
        if finite.size:
            top = max(top, float(finite.max()))
    return top if top > 0 else 1.0


def _hessian_position(values: np.ndarray, limit: float) -> np.ndarray:
    """Where each value sits on the Hessian colour bar, 0..1 (symmetric log of value/limit)."""
    x = np.clip(np.nan_to_num(values / limit, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    lin = HESSIAN_LINTHRESH
    decades = -math.log10(lin)
    half = 0.5 / (1.0 + decades)  # the linear part takes as much room as one decade
    mag = np.abs(x)
    with np.errstate(divide="ignore"):
        pos = np.where(mag <= lin, mag / lin * half, half + (np.log10(np.maximum(mag, lin)) + decades)
                       / decades * (1.0 - half))
    return 0.5 + 0.5 * np.sign(x) * pos


def _hessian_ticks(limit: float) -> tuple[list[float], list[str]]:
    values = np.array([-limit, -limit * 1e-2, 0.0, limit * 1e-2, limit])
    return list(_hessian_position(values, limit)), [_tick(v) for v in values]


def ratio_decades(ratio: np.ndarray) -> int:
    """Decades either side of 1 for the |error| / bound scale: at least 1, at most 16."""
    ratio = np.asarray(ratio, dtype=np.float64)
    finite = ratio[np.isfinite(ratio) & (ratio > 0)]
    if not finite.size:
        return 1
    top = max(abs(math.log10(float(finite.max()))), abs(math.log10(float(finite.min()))), 1.0)
    return int(min(math.ceil(top), 16))


def _ratio_position(ratio: np.ndarray, decades: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(0.5 + 0.5 * np.log10(ratio) / decades, 0.0, 1.0)


def _ratio_ticks(decades: int) -> tuple[list[float], list[str]]:
    step = max(1, math.ceil(decades / 3))
    exps = sorted({*range(0, decades + 1, step), *range(0, -decades - 1, -step)})
    return [0.5 + 0.5 * e / decades for e in exps], [_tick(10.0 ** e) for e in exps]


# --- a finding's heatmaps ---------------------------------------------------------------------


class _Panel:
    """One heatmap figure of a given shape and colour map, kept and recoloured."""

    AXES = (0.14, 0.15, 0.6, 0.72)
    CBAR = (0.785, 0.17, 0.035, 0.68)
    SIZE = (3.2, 2.9)

    def __init__(self, rows: int, cols: int, cmap_name: str, extend: str) -> None:
        import matplotlib
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        from matplotlib.patches import Rectangle

        self.rows, self.cols = rows, cols
        self.cmap = matplotlib.colormaps[cmap_name].with_extremes(under=ZERO_ERROR_FACE)
        with matplotlib.rc_context(_RC):
            self.fig = _figure(*self.SIZE)
            ax = self.ax = self.fig.add_axes(self.AXES)
            big = max(rows, cols)
            self.cells, self.outlines = {}, {}
            self.labels: list[Any] = []  # NaN/inf labels of the last draw
            self.fontsize = 8 if big <= 6 else 6
            for i in range(rows):
                for j in range(cols):
                    cell = Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, linewidth=0.0, clip_on=False)
                    cell.set_gid(f"c{i}_{j}")
                    ax.add_patch(cell)
                    self.cells[i, j] = cell
                    line = Rectangle((j - 0.44, i - 0.44), 0.88, 0.88, fill=False, edgecolor="black",
                                     linewidth=1.8, visible=False, clip_on=False)
                    ax.add_patch(line)
                    self.outlines[i, j] = line
            ax.set_xlim(-0.5, cols - 0.5)
            ax.set_ylim(rows - 0.5, -0.5)
            ax.set_aspect("equal")
            step = max(1, math.ceil(big / 10))
            ax.set_xticks(range(0, cols, step))
            ax.set_yticks(range(0, rows, step))
            ax.tick_params(length=0, pad=3)  # the labels sit at the cells' centres: no marks needed
            for side in ax.spines.values():
                side.set_visible(False)
            ax.set_xlabel("j (input index)")
            ax.set_ylabel("i (input index)")
            # Fixed places for the axis labels and title: matplotlib would otherwise measure
            # every tick label on every draw to place them.
            ax.xaxis.set_label_coords(0.5, -0.115)
            ax.yaxis.set_label_coords(-0.13, 0.5)
            self.bar = self.fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=self.cmap),
                                         cax=self.fig.add_axes(self.CBAR), extend=extend)
            self.bar.ax.tick_params(labelsize=7, length=2, pad=1)
            self.bar.outline.set_linewidth(0.5)
            if self.bar.solids is not None:
                self.bar.solids.set_rasterized(True)  # one small image, not 256 SVG paths

    def draw(self, *, faces: np.ndarray, undefined: np.ndarray, outlined: np.ndarray, labels: np.ndarray,
             title: str, ticks: tuple[list[float], list[str]], prefix: str) -> Svg:
        for (i, j), cell in self.cells.items():
            if undefined[i, j]:
                cell.set(facecolor=UNDEFINED_FACE, edgecolor="#808080", hatch="///")
            else:
                cell.set(facecolor=faces[i, j], edgecolor="none", hatch=None)
            self.outlines[i, j].set_visible(bool(outlined[i, j]))
        if self.rows * self.cols > 25:  # black says NaN/inf; the hover title says which
            labels = np.full(labels.shape, "", dtype=object)
        for text in self.labels:  # only the few NaN/inf cells get a text (laying out text is slow)
            text.remove()
        self.labels = [self.ax.text(j, i, str(labels[i, j]), ha="center", va="center", color="white",
                                    fontsize=self.fontsize, fontweight="bold")
                       for (i, j) in zip(*np.nonzero(labels != ""))]
        self.ax.set_title(title, fontweight="bold", y=1.015)
        self.bar.set_ticks(ticks[0], labels=ticks[1])
        self.bar.ax.yaxis.set_minor_locator(_no_ticks())
        return _to_svg(self.fig, prefix, label=title)


def few(over: np.ndarray) -> np.ndarray:
    """``over``, when it marks only a few entries (at most 3, or a quarter); else nothing:
    when most entries are over their bound, outlines only clutter the picture."""
    over = np.asarray(over, dtype=bool)
    return over if over.sum() <= max(3, over.size // 4) else np.zeros(over.shape, bool)


def _no_ticks() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _nonfinite_labels(values: np.ndarray, undefined: np.ndarray) -> np.ndarray:
    labels = np.full(values.shape, "", dtype=object)
    labels[np.isnan(values) & ~undefined] = "NaN"
    labels[np.isposinf(values) & ~undefined] = "+inf"
    labels[np.isneginf(values) & ~undefined] = "-inf"
    return labels


def _faces(cmap: Any, positions: np.ndarray) -> np.ndarray:
    from matplotlib.colors import to_hex

    out = np.empty(positions.shape, dtype=object)
    for index, p in np.ndenumerate(positions):
        out[index] = to_hex(cmap(float(p)))
    return out


class Painter:
    """Draws the heatmaps of a report's findings, one kept figure per shape and scale."""

    def __init__(self) -> None:
        self._panels: dict[tuple[int, int, str], _Panel] = {}

    def _panel(self, rows: int, cols: int, kind: str) -> _Panel:
        key = (rows, cols, kind)
        if key not in self._panels:
            if len(self._panels) >= 24:  # a report has a few shapes; keep memory bounded anyway
                self._panels.pop(next(iter(self._panels)))
            cmap, extend = (RATIO_CMAP, "min") if kind == "ratio" else (HESSIAN_CMAP, "neither")
            self._panels[key] = _Panel(rows, cols, cmap, extend)
        return self._panels[key]

    def hessian(self, values: np.ndarray, *, title: str, limit: float, prefix: str,
                undefined: np.ndarray | None = None, outlined: np.ndarray | None = None) -> Svg:
        """One Hessian (any matrix; a vector is drawn as one row) on the shared symlog scale.

        Arguments:
            limit: the colour scale runs from -limit to +limit.
            prefix: unique on the page (the SVG's ids).
            undefined: entries to hatch; outlined: entries to outline (over the bound).
        """
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        shape = values.shape
        undefined = np.zeros(shape, bool) if undefined is None else np.asarray(undefined, bool)
        outlined = np.zeros(shape, bool) if outlined is None else np.asarray(outlined, bool)
        panel = self._panel(shape[0], shape[1], "hessian")
        faces = _faces(panel.cmap, _hessian_position(values, limit))
        faces[~np.isfinite(values)] = NONFINITE_FACE
        return panel.draw(faces=faces, undefined=undefined, outlined=outlined & np.isfinite(values) & ~undefined,
                          labels=_nonfinite_labels(values, undefined), title=title,
                          ticks=_hessian_ticks(limit), prefix=prefix)

    def ratio(self, ratio: np.ndarray, *, title: str, prefix: str, undefined: np.ndarray,
              values: np.ndarray) -> Svg:
        """|error| / bound per entry on a log scale centred on 1 (over 1: wrong).

        Arguments:
            ratio: the ratio per entry (0 where exact).
            undefined: entries to hatch (no true value).
            values: the variant's own values: its NaN/inf entries are drawn as such.
        """
        ratio = np.asarray(ratio, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        decades = ratio_decades(np.where(np.isfinite(values), ratio, np.nan))
        panel = self._panel(ratio.shape[0], ratio.shape[1], "ratio")
        faces = _faces(panel.cmap, _ratio_position(np.where(ratio > 0, ratio, 1.0), decades))
        faces[ratio <= 0] = ZERO_ERROR_FACE
        faces[~np.isfinite(values)] = NONFINITE_FACE
        over = few(np.isfinite(ratio) & (ratio > 1.0) & np.isfinite(values) & ~undefined)
        return panel.draw(faces=faces, undefined=undefined, outlined=over,
                          labels=_nonfinite_labels(values, undefined), title=title,
                          ticks=_ratio_ticks(decades), prefix=prefix)


# --- the coverage matrix ----------------------------------------------------------------------


def coverage_matrix(counts: np.ndarray, *, rows: Sequence[str], columns: Sequence[str], absent: np.ndarray,
                    findings: np.ndarray, prefix: str, title: str, what: str) -> Svg:
    """Rows × columns of check counts on a log scale.

    Arguments:
        counts: how many checks reached each cell (0: never: pale red).
        absent: cells that cannot be reached (the framework lacks the op): hatched.
        findings: cells with a finding get a red dot.
        what: the colour bar's label.
    """
    import matplotlib
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FixedLocator, FuncFormatter

    counts = np.asarray(counts, dtype=np.float64)
    absent = np.asarray(absent, dtype=bool)
    top = max(float(counts.max(initial=0.0)), 10.0)
    norm = LogNorm(vmin=1.0, vmax=top)
    cmap = matplotlib.colormaps["Blues"].with_extremes(under=UNREACHED_FACE)
    n_rows, n_cols = counts.shape
    with matplotlib.rc_context(_RC):
        height = 1.9 + 0.16 * n_rows
        fig = _figure(2.0 + 0.34 * n_cols + 1.0, height, layout="constrained")
        ax = fig.add_subplot()
        shown = np.where(absent, np.nan, np.where(counts > 0, counts, 0.5))
        mesh = ax.pcolormesh(np.ma.masked_invalid(shown), norm=norm, cmap=cmap, edgecolors="white",
                             linewidth=0.3)
        mesh.set_rasterized(True)
        for i, j in zip(*np.nonzero(absent)):
            patch = Rectangle((j, i), 1, 1, facecolor=UNDEFINED_FACE, edgecolor="#888888", hatch="////",
                              linewidth=0.0)
            patch.set_rasterized(True)
            ax.add_patch(patch)
        dots = np.argwhere(np.asarray(findings, dtype=bool) & ~absent)
        if dots.size:
            ax.scatter(dots[:, 1] + 0.5, dots[:, 0] + 0.5, s=7, c="#d62728", marker="o", linewidths=0)
        ax.set_xlim(0, n_cols)
        ax.set_ylim(n_rows, 0)
        ax.set_xticks(np.arange(n_cols) + 0.5, labels=list(columns), rotation=90, fontsize=7)
        ax.set_yticks(np.arange(n_rows) + 0.5, labels=list(rows), fontsize=6.5)
        ax.xaxis.tick_top()
        ax.tick_params(length=0, pad=2)
        ax.set_title(title, loc="left")
        bar = fig.colorbar(mesh, ax=ax, extend="min", shrink=min(1.0, 4.0 / height), pad=0.01,
                           location="right", anchor=(0.0, 1.0))
        bar.set_label(what, fontsize=8)
        bar.ax.yaxis.set_major_locator(FixedLocator([10.0 ** e for e in range(0, int(math.log10(top)) + 1)]))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v)))
        bar.ax.yaxis.set_minor_locator(FixedLocator([]))
        bar.ax.tick_params(labelsize=7)
        if bar.solids is not None:
            bar.solids.set_rasterized(True)
        return _to_svg(fig, prefix, label=title, dpi=144)


# --- the trend across runs --------------------------------------------------------------------


def trend_chart(labels: Sequence[str], series: Mapping[str, Sequence[int]], *, title: str, prefix: str) -> Svg:
    """One line per series (a framework, a kind) over the runs, in the order given."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(max(4.5, 0.55 * len(labels) + 2.5), 3.2, layout="constrained")
        ax = fig.add_subplot()
        x = np.arange(len(labels))
        markers = "osD^vP*Xh"
        for k, (name, values) in enumerate(sorted(series.items())):
            ax.plot(x, list(values), marker=markers[k % len(markers)], markersize=4, linewidth=1.5, label=name)
        ax.set_xticks(x, labels=list(labels), rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("distinct findings")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", linewidth=0.4, alpha=0.6)
        ax.set_title(title, loc="left")
        if series:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _to_svg(fig, prefix, label=title)
