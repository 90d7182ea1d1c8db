"""The analogues of Zhang et al. (2017)'s Figure 1, one panel per setting (dataset × model ×
recipe): (a) training loss against steps, (b) steps to fit relative to true labels against p_c
under two stop criteria, (c) test error against p_c."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from genbench.report.figures_data import CE_THRESHOLD, TrainedRun, in_order
from genbench.report.figures_style import SeriesStyle, new_figure, styles

PANEL_WIDTH, PANEL_HEIGHT, MAX_COLUMNS = 4.2, 3.2, 3
TRUE_LABELS = "true labels"


def panel_grid(count: int, height: float = PANEL_HEIGHT) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` panels, at most ``MAX_COLUMNS`` a row; unused cells hidden."""
    columns = min(count, MAX_COLUMNS)
    rows = math.ceil(count / columns)
    figure = new_figure(PANEL_WIDTH * columns, height * rows + 0.8)
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, axes[:count]


#: About how many legend characters (font size 8) one inch of figure holds.
LEGEND_CHARACTERS_PER_INCH = 13


def figure_legend(figure: Figure, handles: Sequence[Line2D], columns: int = 4) -> None:
    """One legend for the whole figure, below the panels, at most ``columns`` entries a row, and no
    more than fit the figure's width (long labels take fewer a row, so the legend grows down, not
    out past the panels)."""
    if handles:
        longest = max(len(str(entry.get_label())) for entry in handles)
        fitting = max(1, int(figure.get_figwidth() * LEGEND_CHARACTERS_PER_INCH // (longest + 4)))
        figure.legend(handles=list(handles), loc="outside lower center", ncols=min(columns, len(handles), fitting))


def legend_columns(panels: int) -> int:
    """Legend entries a row for a figure of ``panels`` panels: three per panel width."""
    return 3 * min(panels, MAX_COLUMNS)


def handle(label: str, **line: object) -> Line2D:
    """A legend entry drawn like a line of the figure."""
    return Line2D([], [], label=label, **line)


#: How far apart in p_c the series of one panel are drawn, so that equal points do not hide each other.
DODGE = 0.012


def dodge(index: int, count: int) -> float:
    """The sideways shift of the ``index``-th of ``count`` series."""
    return (index - (count - 1) / 2) * DODGE


def level_text(level: float) -> str:
    return f"p_c = {level:g}"


# ---------------------------------------------------------------------------
# (a) training loss against steps
# ---------------------------------------------------------------------------


def curve_key(series: str, level: float) -> tuple[str, float]:
    """The line a run belongs to in Figure 1a: true labels pool every series at p_c = 0."""
    return (TRUE_LABELS, 0.0) if level == 0 else (series, level)


def curve_label(key: tuple[str, float]) -> str:
    series, level = key
    return f"{TRUE_LABELS} (p_c = 0)" if series == TRUE_LABELS else f"{series}, {level_text(level)}"


def loss_figure(axes: pd.DataFrame, trained: Sequence[TrainedRun]) -> Figure:
    """Figure 1a: each run's training loss curve (epoch-mean minibatch cross-entropy) against
    optimizer steps, a thin line per seed, one style per (corruption, p_c); log-scaled loss."""
    curves = {spec.run_id: result.loss_curve for spec, result in trained if result.loss_curve}
    shown = axes[axes["run_id"].isin(curves)]
    keys = in_order(curve_key(s, l) for s, l in sorted(zip(shown["series"], shown["level"]), key=_series_order(shown)))
    look = styles(keys)
    settings = in_order(shown["setting"])
    figure, panels = panel_grid(len(settings))
    for panel, setting in zip(panels, settings):
        runs = shown[shown["setting"] == setting]
        for run in runs.itertuples():
            steps, losses = zip(*curves[run.run_id])
            key = curve_key(run.series, run.level)
            panel.plot(steps, losses, **look[key].line(markevery=max(1, len(steps) // 8), linewidth=1.0, markersize=4))
        panel.axhline(CE_THRESHOLD, color="0.45", linewidth=0.8, linestyle=(0, (2, 2)))
        panel.set_yscale("log")
        panel.set_title(setting)
        panel.set_xlabel("optimizer steps")
        panel.set_ylabel("training cross-entropy (nats, log scale)")
    handles = [handle(curve_label(key), **look[key].line()) for key in keys]
    handles.append(handle(f"training CE = {CE_THRESHOLD:g}", color="0.45", linewidth=0.8, linestyle=(0, (2, 2))))
    figure_legend(figure, handles, legend_columns(len(settings)))
    return figure


def _series_order(frame: pd.DataFrame):
    order = {series: index for index, series in enumerate(in_order(frame["series"]))}
    return lambda pair: (pair[1] > 0, order[pair[0]], pair[1])


# ---------------------------------------------------------------------------
# (b) steps to fit relative to true labels
# ---------------------------------------------------------------------------

OWN_LINE, CE_LINE = "-", (0, (4, 2))


def steps_figure(
    own: pd.DataFrame, ce: pd.DataFrame, stops: Mapping[str, str], ce_sources: Mapping[str, str], series: list[str]
) -> Figure:
    """Figure 1b: mean steps to fit ÷ mean steps on true labels, against p_c, per series; solid
    lines with filled markers for each run's own stop criterion (``stops[setting]``), dashed
    lines with open markers for training cross-entropy ``CE_THRESHOLD`` (``ce_sources[setting]``
    says where those steps come from). ``own`` and ``ce`` are ``relative_steps`` frames."""
    look = styles(series)
    settings = in_order([*own["setting"], *ce["setting"]])
    figure, panels = panel_grid(len(settings), height=PANEL_HEIGHT + 0.3)
    for panel, setting in zip(panels, settings):
        plotted = False
        for index, name in enumerate(series):
            shift = dodge(index, len(series))
            plotted |= _relative_line(panel, own, setting, name, look[name], OWN_LINE, True, shift)
            plotted |= _relative_line(panel, ce, setting, name, look[name], CE_LINE, False, shift)
        if not plotted:
            panel.text(0.5, 0.5, "no corrupted run of this setting\nreached either criterion\nwithin its step budget",
                       transform=panel.transAxes, ha="center", va="center", fontsize=8, color="0.3")
        panel.set_xlim(-0.05, 1.05)
        panel.axhline(1.0, color="0.45", linewidth=0.8)
        panel.set_title(setting)
        panel.set_xlabel("corruption level p_c")
        panel.set_ylabel("steps to fit ÷ steps on true labels")
        criteria = [f"solid: {stops.get(setting, '–')}"]
        if setting in set(ce["setting"]):
            criteria.append(f"dashed: training CE ≤ {CE_THRESHOLD:g} ({ce_sources.get(setting, '–')})")
        panel.text(0.02, 0.98, "\n".join(criteria), transform=panel.transAxes, va="top", ha="left", fontsize=7,
                   bbox={"facecolor": "white", "edgecolor": "0.7", "alpha": 0.85, "boxstyle": "round,pad=0.3"})
        panel.margins(y=0.25)
        panel.set_ylim(bottom=0)
    handles = [handle(name, **look[name].points()) for name in series]
    handles += [
        handle("own stop criterion (filled)", color="0.2", linestyle=OWN_LINE, marker="o"),
        handle(f"training CE ≤ {CE_THRESHOLD:g} (open)", color="0.2", linestyle=CE_LINE, marker="o", markerfacecolor="white"),
    ]
    figure_legend(figure, handles, legend_columns(len(settings)))
    return figure


def _relative_line(
    panel: Axes,
    frame: pd.DataFrame,
    setting: str,
    series: str,
    look: SeriesStyle,
    linestyle: object,
    filled: bool,
    shift: float,
) -> bool:
    """Draw one line; whether it has a point above p_c = 0 (the baseline alone says nothing)."""
    rows = frame[(frame["setting"] == setting) & (frame["series"] == series) & np.isfinite(frame["relative"])]
    if rows.empty:
        return False
    rows = rows.sort_values("level")
    face = look.colour if filled else "white"
    panel.plot(rows["level"] + shift, rows["relative"], color=look.colour, marker=look.marker, linestyle=linestyle,
               markerfacecolor=face, markeredgecolor=look.colour)
    return bool((rows["level"] > 0).any())


# ---------------------------------------------------------------------------
# (c) test error against p_c
# ---------------------------------------------------------------------------


def error_figure(axes: pd.DataFrame, series: list[str], label_series: set[str]) -> Figure:
    """Figure 1c: mean test error (1 − test accuracy, %) over seeds against p_c, with the range
    over seeds as error bars; label corruptions as lines, the others as markers at their levels;
    chance (1 − 1/K) as a dotted line."""
    look = styles(series)
    settings = in_order(axes["setting"])
    figure, panels = panel_grid(len(settings))
    for panel, setting in zip(panels, settings):
        runs = axes[axes["setting"] == setting]
        for index, name in enumerate(series):
            _error_points(panel, runs[runs["series"] == name], look[name], name in label_series, dodge(index, len(series)))
        classes = runs["num_classes"].dropna()
        if len(classes):
            chance = 100 * (1 - 1 / float(classes.iloc[0]))
            panel.axhline(chance, color="0.45", linewidth=0.8, linestyle=":")
        panel.set_ylim(0, 100)
        panel.set_xlim(-0.05, 1.05)
        panel.set_title(setting)
        panel.set_xlabel("corruption level p_c")
        panel.set_ylabel("test error (%)")
    handles = [
        handle(f"{name}{'' if name in label_series else ' (inputs corrupted)'}",
               **(look[name].line() if name in label_series else look[name].points()))
        for name in series
    ]
    handles.append(handle("chance: 1 − 1/K", color="0.45", linewidth=0.8, linestyle=":"))
    figure_legend(figure, handles, legend_columns(len(settings)))
    return figure


def _error_points(panel: Axes, runs: pd.DataFrame, look: SeriesStyle, connected: bool, shift: float) -> None:
    if runs.empty:
        return
    error = 100 * (1 - runs["test_accuracy"].astype(float))
    cells = error.groupby(runs["level"]).agg(["mean", "min", "max"]).sort_index()
    spread = np.vstack([cells["mean"] - cells["min"], cells["max"] - cells["mean"]])
    line = look.line() if connected else look.points()
    panel.errorbar(cells.index + shift, cells["mean"], yerr=spread, capsize=2.5, elinewidth=0.8, **line)
