"""Figures of the measures: small multiples of every measure's value against p_c and against the
gap (with the leaderboard's τ in the title), and the leaderboard as bars with their intervals.
Every score drawn here is read from the board; nothing is computed but means over seeds."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from genbench.report.figures_data import MeasureSeries, board_row, finite
from genbench.report.figures_style import COLOURS, LINESTYLES, MARKERS, log_scale_fits, new_figure
from genbench.report.figures_training import figure_legend, handle

#: Measures per small-multiples figure, and measures per row of it (two panels each).
MEASURES_PER_FIGURE, MEASURES_PER_ROW = 6, 2
PANEL_WIDTH, PANEL_HEIGHT = 3.1, 2.6


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive groups of ``size``."""
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def interval_text(row: dict[str, Any], value: str, low: str, high: str) -> str:
    """``+0.89 [+0.80, +0.95]``, the interval only where both ends are finite; "undefined" for NaN."""
    if not finite(row.get(value)):
        return "undefined"
    text = f"{row[value]:+.2f}"
    if finite(row.get(low)) and finite(row.get(high)):
        text += f" [{row[low]:+.2f}, {row[high]:+.2f}]"
    return text


# ---------------------------------------------------------------------------
# Small multiples: value against p_c, value against the gap
# ---------------------------------------------------------------------------


def measures_figure(axes: pd.DataFrame, measures: Sequence[MeasureSeries], board: pd.DataFrame) -> Figure:
    """Up to ``MEASURES_PER_FIGURE`` measures, two panels each: the mean over seeds against p_c
    (a line per setting and corruption), and every run against its gap (τ(gap) from the board,
    with its 95 % interval where the board has one, in the title). Colour = setting; marker and
    line style = corruption."""
    settings = list(dict.fromkeys(axes["setting"]))
    series = list(dict.fromkeys(axes["series"]))
    rows = math.ceil(len(measures) / MEASURES_PER_ROW)
    columns = 2 * min(len(measures), MEASURES_PER_ROW)
    figure = new_figure(PANEL_WIDTH * columns, PANEL_HEIGHT * rows + 0.7)
    panels = figure.subplots(rows, columns, squeeze=False)
    for index, measure in enumerate(measures):
        row, column = divmod(index, MEASURES_PER_ROW)
        frame = axes.assign(value=axes["run_id"].map(measure.values))
        by_level, by_gap = panels[row, 2 * column], panels[row, 2 * column + 1]
        _against_level(by_level, frame, settings, series)
        _against_gap(by_gap, frame, settings, series)
        by_level.set_title(f"{measure.label} ({measure.kind}, v{measure.version})")
        by_gap.set_title(f"τ(gap) = {interval_text(board_row(board, measure.label), 'tau_gap', 'tau_gap_low', 'tau_gap_high')}")
        _scale_and_note(by_level, by_gap, frame["value"])
    for unused in panels.ravel()[2 * len(measures) :]:
        unused.set_visible(False)
    handles = [handle(s, **_setting_look(i), marker="o") for i, s in enumerate(settings)]
    handles += [handle(s, color="0.25", marker=MARKERS[i % len(MARKERS)], linestyle="none") for i, s in enumerate(series)]
    figure_legend(figure, handles, columns=6)
    return figure


def _setting_look(index: int) -> dict[str, Any]:
    """A setting's colour, line style and marker fill (open and filled alternate), so that
    settings differ in grey-scale too; corruptions differ by marker."""
    colour = COLOURS[index % len(COLOURS)]
    return {"color": colour, "linestyle": LINESTYLES[index % len(LINESTYLES)],
            "markerfacecolor": "white" if index % 2 else colour, "markeredgecolor": colour}


def _look(settings: list[str], series: list[str], setting: str, name: str) -> dict[str, Any]:
    return {**_setting_look(settings.index(setting)), "marker": MARKERS[series.index(name) % len(MARKERS)]}


def _against_level(panel: Axes, frame: pd.DataFrame, settings: list[str], series: list[str]) -> None:
    drawn = frame[np.isfinite(frame["value"].astype(float))]
    for (setting, name), group in drawn.groupby(["setting", "series"], sort=False):
        means = group.groupby("level")["value"].mean().sort_index()
        panel.plot(means.index, means.to_numpy(), **_look(settings, series, setting, name))
    panel.set_xlabel("corruption level p_c")
    panel.set_ylabel("value (mean over seeds)")


def _against_gap(panel: Axes, frame: pd.DataFrame, settings: list[str], series: list[str]) -> None:
    drawn = frame[np.isfinite(frame["value"].astype(float))]
    for (setting, name), group in drawn.groupby(["setting", "series"], sort=False):
        look = {**_look(settings, series, setting, name), "linestyle": "none"}
        panel.plot(100 * group["gap"].astype(float), group["value"], alpha=0.85, **look)
    panel.set_xlabel("gap: train − test accuracy (% points)")
    panel.set_ylabel("value (one point per run)")


def _scale_and_note(by_level: Axes, by_gap: Axes, values: pd.Series) -> None:
    numbers = values.astype(float)
    if log_scale_fits(numbers):
        for panel in (by_level, by_gap):
            panel.set_yscale("log")
            panel.set_ylabel(panel.get_ylabel() + ", log scale")
    infinite = int(np.isinf(numbers).sum())
    missing = int(numbers.isna().sum())
    notes = []
    if infinite:
        notes.append(f"{infinite} runs at ±∞ not drawn")
    if missing:
        notes.append(f"{missing} runs without a value")
    if notes:
        by_gap.text(0.98, 0.02, "; ".join(notes), transform=by_gap.transAxes, ha="right", va="bottom", fontsize=7,
                    color="0.3")


# ---------------------------------------------------------------------------
# The leaderboard as bars
# ---------------------------------------------------------------------------

KIND_LOOK = MappingProxyType({
    "complexity": MappingProxyType({"color": "#0072B2", "hatch": None, "edgecolor": "#0072B2"}),
    "capability": MappingProxyType({"color": "#E69F00", "hatch": "..", "edgecolor": "0.25"}),
    "reference": MappingProxyType({"color": "0.85", "hatch": "///", "edgecolor": "0.35"}),
})
SCORES = (("tau_gap", "tau_gap_low", "tau_gap_high", "τ(gap): Kendall τ-b with the gap"),
          ("psi", "psi_low", "psi_high", "Ψ: granulated Kendall"))


def leaderboard_figure(board: pd.DataFrame) -> Figure:
    """τ(gap) and Ψ of every leaderboard row as horizontal bars in the board's order, with 95 %
    intervals where the board has finite ones; reference rows (noisy oracles) grey, hatched and
    in italics, capability scores hatched."""
    records = board.to_dict("records")
    labels = [str(record["measure"]) for record in records]
    positions = np.arange(len(records))[::-1]
    figure = new_figure(11, 0.2 * len(records) + 1.6)
    panels = figure.subplots(1, len(SCORES), sharey=True, squeeze=False)[0]
    for panel, (value, low, high, title) in zip(panels, SCORES):
        for position, record in zip(positions, records):
            _bar(panel, position, record, value, low, high)
        panel.axvline(0, color="0.2", linewidth=0.8)
        panel.set_xlim(-1.05, 1.05)
        panel.set_title(title)
        whiskers = "whiskers: 95 % interval" if _has_intervals(board, low, high) else "no intervals on this board"
        panel.set_xlabel(f"{title.split(':')[0]} (−1 … +1; larger is better; {whiskers})")
        panel.grid(axis="y", visible=False)
    panels[0].set_yticks(positions, labels)
    panels[0].set_ylim(-0.7, len(records) - 0.3)
    for tick, record in zip(panels[0].get_yticklabels(), records):
        if record.get("reference"):
            tick.set_fontstyle("italic")
    kinds = [kind for kind in KIND_LOOK if any(_kind(record) == kind for record in records)]
    handles = [Patch(facecolor=KIND_LOOK[k]["color"], hatch=KIND_LOOK[k]["hatch"], edgecolor=KIND_LOOK[k]["edgecolor"],
                     label="reference (noisy oracle)" if k == "reference" else k) for k in kinds]
    figure_legend(figure, handles)
    return figure


def _has_intervals(board: pd.DataFrame, low: str, high: str) -> bool:
    if low not in board.columns or high not in board.columns:
        return False
    return bool((np.isfinite(board[low].astype(float)) & np.isfinite(board[high].astype(float))).any())


def _kind(record: dict[str, Any]) -> str:
    return "reference" if record.get("reference") else str(record.get("kind", "complexity"))


def _bar(panel: Axes, position: float, record: dict[str, Any], value: str, low: str, high: str) -> None:
    look = KIND_LOOK.get(_kind(record), KIND_LOOK["complexity"])
    score = record.get(value)
    if not finite(score):
        panel.text(0.02, position, "undefined", va="center", ha="left", fontsize=7, color="0.35")
        return
    panel.barh(position, score, height=0.7, color=look["color"], hatch=look["hatch"], edgecolor=look["edgecolor"],
               linewidth=0.6)
    if finite(record.get(low)) and finite(record.get(high)):
        spread = [[max(score - record[low], 0.0)], [max(record[high] - score, 0.0)]]
        panel.errorbar(score, position, xerr=spread, color="0.1", capsize=2, elinewidth=0.9, linestyle="none")
