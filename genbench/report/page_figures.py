"""The figures of a report page: each written into the report folder and turned into a page
block, or replaced by one line saying what the store lacks for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from genbench.report.figures_data import (
    CE_THRESHOLD,
    STEPS_MEASURE,
    TrainedRun,
    ce_steps,
    disagreements,
    in_order,
    label_corruptions,
    measure_series,
    relative_steps,
)
from genbench.report.figures_measures import MEASURES_PER_FIGURE, chunks, leaderboard_figure, measures_figure
from genbench.report.figures_style import ImageFormat, WrittenFigure, write_figure
from genbench.report.figures_training import error_figure, loss_figure, steps_figure
from genbench.report.page import Block, FigureBlock, Paragraph, Prerendered
from genbench.report.page_leaderboard import leaderboard_tables


@dataclass(frozen=True)
class FigureWriter:
    """Writes the report's figures into ``folder`` in ``fmt`` and turns each into a page block."""

    folder: Path
    fmt: ImageFormat

    def block(self, stem: str, title: str, caption: str, build: Callable, *args: object) -> tuple[FigureBlock, Path]:
        written: WrittenFigure = write_figure(build, self.folder, stem, self.fmt, *args)
        return FigureBlock(title, caption, written.path.name, written.svg), written.path


@dataclass
class Collected:
    """The files written and the lines for figures left out, gathered while a page is built."""

    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def figure(self, result: tuple[FigureBlock, Path]) -> FigureBlock:
        self.files.append(result[1])
        return result[0]

    def skip(self, line: str) -> Paragraph:
        self.skipped.append(line)
        return Paragraph(line)


def figure1_blocks(
    axes: pd.DataFrame, values: pd.DataFrame, trained: Sequence[TrainedRun], writer: FigureWriter, collected: Collected
) -> list[Block]:
    """Figure 1a, 1b and 1c, or one line for each that the store cannot give."""
    blocks: list[Block] = []
    series = in_order(axes["series"])
    with_curves = {spec.run_id for spec, result in trained if result.loss_curve}
    if with_curves:
        blocks.append(collected.figure(writer.block(
            "fig1a-loss", "Figure 1a: training loss against steps",
            "Each run's epoch-mean minibatch cross-entropy (log scale) against optimizer steps, one thin line per seed, "
            "one colour, marker and line style per corruption and level; true labels pool every corruption at p_c = 0. "
            f"The dashed grey line is the cross-entropy {CE_THRESHOLD:g} of Figure 1b's second criterion.",
            loss_figure, axes, trained)))
        without = [s for s in in_order(axes["setting"]) if s not in set(axes.loc[axes["run_id"].isin(with_curves), "setting"])]
        if without:
            blocks.append(Paragraph(f"Figure 1a has no panel for {', '.join(without)}: no loss curve recorded "
                                    "(e.g. a model fitted in closed form)."))
    else:
        blocks.append(collected.skip("Figure 1a left out: no run in the store recorded a loss curve."))
    blocks += steps_blocks(axes, values, trained, writer, collected, series)
    blocks.append(collected.figure(writer.block(
        "fig1c-test-error", "Figure 1c: test error against p_c",
        "Mean test error (1 − test accuracy) over seeds against the corruption level, error bars from the lowest to the "
        "highest seed; label corruptions as lines, corruptions of the inputs as separate markers at their levels. "
        "The dotted line is chance, 1 − 1/K; the corruptions are drawn a little apart in p_c so that equal points do "
        "not hide each other.",
        error_figure, axes, series, label_corruptions(axes))))
    return blocks


def steps_blocks(
    axes: pd.DataFrame,
    values: pd.DataFrame,
    trained: Sequence[TrainedRun],
    writer: FigureWriter,
    collected: Collected,
    series: list[str],
) -> list[Block]:
    """Figure 1b with the cells where its two criteria disagree, or the line saying why not."""
    frame = axes.merge(ce_steps(axes, values, trained), on="run_id")
    frame["own_steps"] = frame["steps_to_fit"].astype(float)
    own, ce = relative_steps(frame, "own_steps"), relative_steps(frame, "ce_steps")
    if own.empty and ce.empty:
        return [collected.skip(
            "Figure 1b left out: no setting has a true-label run (p_c = 0) that reached a stop criterion, so there is "
            "nothing to compare the steps with.")]
    stops = {s: "; ".join(in_order(g["stop"])) for s, g in frame.groupby("setting", sort=False)}
    sources = {s: _source_text(g["ce_source"]) for s, g in frame.groupby("setting", sort=False)}
    block = collected.figure(writer.block(
        "fig1b-steps", "Figure 1b: steps to fit relative to true labels",
        "Mean steps to fit over seeds, divided by the mean on true labels (p_c = 0) of the same model and recipe, "
        "against p_c. Solid lines, filled markers: each run's own stop criterion (`train.stop`, its recorded "
        f"`steps_to_fit`). Dashed lines, open markers: steps to training cross-entropy {CE_THRESHOLD:g}, from the "
        f"stored `{STEPS_MEASURE}` value where there is one, else from the first loss-curve point at or below "
        f"{CE_THRESHOLD:g}. Zhang et al. plot the loss. Runs that never met a criterion are left out of its means; "
        "the corruptions are drawn a little apart in p_c so that equal points do not hide each other.",
        steps_figure, own, ce, stops, sources, series))
    lines = disagreements(own, ce)
    text = ("The two criteria disagree (one fits faster than true labels, the other slower) in: " + "; ".join(lines) + "."
            if lines else "The two criteria agree on which cells fit faster than true labels and which slower.")
    return [block, Paragraph(text), *steps_notes(frame, own, ce)]


def steps_notes(frame: pd.DataFrame, own: pd.DataFrame, ce: pd.DataFrame) -> list[Paragraph]:
    """What Figure 1b could not show: settings without a true-label baseline, and runs whose
    steps to cross-entropy 0.1 the store does not know."""
    notes = []
    drawn = set(own["setting"]) | set(ce["setting"])
    left_out = [s for s in in_order(frame["setting"]) if s not in drawn]
    if left_out:
        notes.append(Paragraph(f"Figure 1b has no panel for {', '.join(left_out)}: no true-label run (p_c = 0) "
                               "took a step to fit (e.g. a model fitted in closed form)."))
    unknown = frame[frame["setting"].isin(drawn) & frame["ce_steps"].isna()]
    if len(unknown):
        notes.append(Paragraph(
            f"Steps to training CE {CE_THRESHOLD:g} are unknown for {len(unknown)} of {int(frame['setting'].isin(drawn).sum())} "
            f"runs (their loss curve stops above {CE_THRESHOLD:g} and the store has no `{STEPS_MEASURE}` value, or the "
            f"measure found it never reached): `genbench evaluate --measure {STEPS_MEASURE}` retrains them to find it."))
    return notes


def _source_text(sources: pd.Series) -> str:
    known = [s for s in in_order(sources) if s]
    names = {"measure": f"{STEPS_MEASURE} measure", "curve": "loss curve"}
    return " + ".join(names[s] for s in known) or "none reached"


def measure_blocks(
    axes: pd.DataFrame, values: pd.DataFrame, board: pd.DataFrame, writer: FigureWriter, collected: Collected
) -> list[Block]:
    """The per-measure small multiples, ``MEASURES_PER_FIGURE`` measures a figure in the
    leaderboard's order, or one line when the store has no measure values."""
    measures = measure_series(values)
    if not measures:
        return [collected.skip(
            "Per-measure figures left out: the store has no measure values (evaluate some with "
            "`genbench evaluate --measure NAME`).")]
    order = {label: index for index, label in enumerate(board.get("measure", pd.Series(dtype=str)))}
    measures.sort(key=lambda m: (order.get(m.label, len(order)), m.label))
    blocks: list[Block] = []
    for number, chunk in enumerate(chunks(measures, MEASURES_PER_FIGURE), start=1):
        names = ", ".join(m.label for m in chunk)
        blocks.append(collected.figure(writer.block(
            f"measures-{number}", f"Measures {number}: {names}",
            "Left of each pair: the measure's mean over seeds against p_c, a line per model (colour, line style, filled "
            "or open markers) and corruption (marker shape). Right: every run's value against its generalization gap, with τ(gap) from the "
            "leaderboard (its 95 % interval where the board has one) in the title. Log scale where the values span "
            "more than two decades.",
            measures_figure, axes, chunk, board)))
    return blocks


def leaderboard_blocks(board: pd.DataFrame, writer: FigureWriter, collected: Collected) -> list[Block]:
    """The leaderboard as bars with intervals and as a table, or one line when it has no measure."""
    measured = board[~board["reference"].astype(bool)] if len(board) else board
    if measured.empty:
        return [collected.skip("Leaderboard left out: the store has no measure values to score.")]
    markdown, html = leaderboard_tables(board)
    figure = collected.figure(writer.block(
        "leaderboard", "Leaderboard: τ(gap) and Ψ",
        "Every row of the leaderboard in its order (best τ(gap) first): Kendall τ-b with the gap over all runs and "
        "granulated Kendall Ψ, with their 95 % bootstrap intervals where the board has them. Capability scores enter "
        "negated, so larger is better for every row. Reference rows (the true gap plus noise) are grey, hatched and "
        "in italics.",
        leaderboard_figure, board))
    return [figure, Prerendered(markdown, html)]
