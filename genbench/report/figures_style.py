"""How every report figure looks and is written: a colour-blind-safe palette paired with markers
and line styles (so a series survives grey-scale printing), one rc context, the Agg canvas, and
tight bounding boxes (nothing clipped). Figures are built as ``matplotlib.figure.Figure`` objects,
never through pyplot's global figure list."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Literal

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ImageFormat = Literal["svg", "png"]

#: Okabe & Ito's colour-blind-safe palette (black first), then a dark brown.
COLOURS = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C6D31")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))

#: The rc settings of every report figure.
RC = MappingProxyType({
    "font.size": 9,
    "axes.titlesize": 7.5,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.4,
    "lines.markersize": 5,
    "legend.frameon": False,
    "svg.fonttype": "path",
    "figure.dpi": 100,
})
PNG_DPI = 110


@dataclass(frozen=True)
class SeriesStyle:
    """Colour, marker and line style of one series."""

    colour: str
    marker: str
    linestyle: Any

    def line(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of ``Axes.plot``."""
        return {"color": self.colour, "marker": self.marker, "linestyle": self.linestyle, **extra}

    def points(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of ``Axes.plot`` for markers without a line."""
        return {"color": self.colour, "marker": self.marker, "linestyle": "none", **extra}


def style(index: int) -> SeriesStyle:
    """The ``index``-th series style; past the palette, markers and line styles shift so that the
    triples stay distinct."""
    shift = index // len(COLOURS)
    return SeriesStyle(
        COLOURS[index % len(COLOURS)],
        MARKERS[(index + shift) % len(MARKERS)],
        LINESTYLES[(index + 2 * shift) % len(LINESTYLES)],
    )


def styles(keys: list[Any]) -> dict[Any, SeriesStyle]:
    """One style per key, in the keys' order (the same key gets the same style in every panel)."""
    return {key: style(index) for index, key in enumerate(keys)}


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas with constrained layout."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


@dataclass(frozen=True)
class WrittenFigure:
    """A figure written to disk: the file and, for SVG, its text (to inline in a page)."""

    path: Path
    svg: str | None = None


def write_figure(
    build: Callable[..., Figure], folder: Path, stem: str, fmt: ImageFormat, *args: Any, **kwargs: Any
) -> WrittenFigure:
    """Build a figure inside the report's rc context and write it as ``folder/stem.fmt``
    (``bbox_inches="tight"``, no date or software stamp, SVG ids salted with ``stem`` so that
    figures inlined in one page do not share ids)."""
    with matplotlib.rc_context({**RC, "svg.hashsalt": stem}):
        figure = build(*args, **kwargs)
        path = folder / f"{stem}.{fmt}"
        if fmt == "svg":
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
            text = buffer.getvalue()
            path.write_text(text, encoding="utf-8")
            return WrittenFigure(path, text)
        figure.savefig(path, format="png", dpi=PNG_DPI, bbox_inches="tight", metadata={"Software": None})
        return WrittenFigure(path)


def log_scale_fits(values: Any) -> bool:
    """Whether positive values spanning more than two decades read better on a log axis."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return bool(finite.size) and bool((finite > 0).all()) and finite.max() / finite.min() > 100
