"""Plots for the HTML report as inline SVG (no files, no CDN), byte-stable for the same data."""

from __future__ import annotations

import io
import textwrap
from typing import Sequence

import numpy as np

OUTCOME_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "REVIEW": "#8250df", "FAIL": "#cf222e"}


def _svg(fig) -> str:
    """Serialise a matplotlib figure to an inline `<svg>` element with fixed ids and no date."""
    import matplotlib  # deferred: matplotlib takes ~0.5 s to import; only HTML reports draw plots
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "modelprov", "svg.fonttype": "none"}):
        FigureCanvasSVG(fig).print_svg(buffer, metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def heatmap_svg(matrix: Sequence[Sequence[float | None]], *, title: str, xlabel: str, ylabel: str,
                vmin: float = -1.0, vmax: float = 1.0, path: Sequence[tuple[int, int]] = ()) -> str:
    """A layer x layer similarity heatmap; a diverging scale centred on 0 so 'no relation' looks white.
    `path`: the (row, column) cells the layer alignment chose, outlined."""
    from matplotlib.figure import Figure  # deferred: see _svg

    values = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    fig = Figure(figsize=(4.6, 3.9), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdBu_r", vmin=vmin, vmax=vmax, origin="lower", interpolation="nearest",
                      aspect="auto")
    if path:
        rows, cols = zip(*path)
        ax.scatter(cols, rows, s=22, marker="s", facecolors="none", edgecolors="#1f2328", linewidths=0.7,
                   label="alignment")
        ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    ax.set_title(textwrap.fill(title, 60), fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.13, right=0.9, bottom=0.13, top=0.88)
    return _svg(fig)


NULL_BAND_SD = 3.0  # the shaded band: ±3 null sd around 0


def evidence_ylim(values: Sequence[float | None], band: Sequence[float]) -> tuple[float, float]:
    """A y-range that spans the plotted values and the null band (±`band` around 0), padded by 5%: a copy
    at 1.0 then shows its distance from the band, an independent model its place inside it."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    half = max((float(b) for b in band if np.isfinite(b)), default=0.0)
    lo, hi = min(finite + [-half]), max(finite + [half])
    pad = max(0.05 * (hi - lo), 1e-3)
    return lo - pad, hi + pad


def layer_evidence_svg(centred: Sequence[float | None], raw: Sequence[float | None] | None,
                       null_sd: Sequence[float], *, labels: Sequence[str], title: str,
                       xlabel: str = "matched subject layer") -> str:
    """Per-layer centred similarity over its null band (±3 sd for that layer's n, shaded; a NaN sd leaves a
    layer without band), with raw cosine drawn lighter underneath for comparison only, on a y-axis scaled to
    the data (`evidence_ylim`)."""
    from matplotlib.figure import Figure  # deferred: see _svg

    x = np.arange(len(centred))
    ys = np.array([np.nan if v is None else float(v) for v in centred], dtype=float)
    band = NULL_BAND_SD * np.asarray(null_sd, dtype=float)
    fig = Figure(figsize=(4.6, 2.7), dpi=100)
    ax = fig.add_subplot()
    ax.fill_between(x, -band, band, color="#8c959f", alpha=0.35, linewidth=0, step="mid",
                    label=f"null: ±{NULL_BAND_SD:g} sd", zorder=1)
    ax.axhline(0.0, color="#8c959f", linewidth=0.6, zorder=1)
    plotted = list(ys)
    if raw is not None:
        rs = np.array([np.nan if v is None else float(v) for v in raw], dtype=float)
        ax.plot(x, rs, color="#d0a35c", linewidth=2.4, alpha=0.55, label="raw cosine (comparison only)", zorder=2)
        plotted += list(rs)
    ax.plot(x, ys, color="#0550ae", marker="o", markersize=3, linewidth=1.2, label="centred similarity", zorder=3)
    ax.set_ylim(*evidence_ylim(plotted, band))
    ax.set_xlim(-0.5, len(x) - 0.5)
    step = max(1, int(np.ceil(len(x) / 12)))
    ax.set_xticks(x[::step], [str(labels[i]) for i in range(0, len(x), step)])
    ax.set_title(textwrap.fill(title, 60), fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="center right", framealpha=0.9)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.17, top=0.9)
    return _svg(fig)
