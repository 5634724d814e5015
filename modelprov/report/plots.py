"""Plots for the HTML report as inline SVG (no files, no CDN), byte-stable for the same data."""

from __future__ import annotations

import io
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
                vmin: float = -1.0, vmax: float = 1.0) -> str:
    """A layer x layer similarity heatmap; a diverging scale centred on 0 so 'no relation' looks white."""
    from matplotlib.figure import Figure  # deferred: see _svg

    values = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    fig = Figure(figsize=(4.6, 3.9), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdBu_r", vmin=vmin, vmax=vmax, origin="lower", interpolation="nearest",
                      aspect="auto")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.13, right=0.9, bottom=0.13, top=0.92)
    return _svg(fig)


def layer_curve_svg(series: dict[str, Sequence[float | None]], *, title: str, xlabel: str = "layer") -> str:
    """Per-layer curves (e.g. centred similarity beside raw cosine) on a shared -1..1 axis."""
    from matplotlib.figure import Figure  # deferred: see _svg

    fig = Figure(figsize=(4.6, 2.6), dpi=100)
    ax = fig.add_subplot()
    for label, values in series.items():
        ys = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
        ax.plot(np.arange(len(ys)), ys, marker="o", markersize=2.5, linewidth=1.2, label=label)
    ax.axhline(0.0, color="#888", linewidth=0.6)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.17, top=0.9)
    return _svg(fig)
