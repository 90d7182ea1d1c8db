"""The ``zhang2017`` report: Zhang et al. (ICLR 2017, arXiv:1611.03530)'s Table 1 and Figure 1
redrawn from a store, the measures against p_c and the gap, and the leaderboard as bars.

A report is a function of what the store holds — the runs frame, the measure-values frame, the
leaderboard (as ``genbench.api.leaderboard`` scores it) and the runs with their loss curves — and
writes figures plus one page into a folder: SVG figures inlined in ``report.html``, or PNG
figures linked from ``report.md``. Where the store lacks what a figure needs, the figure is left
out and the page says so in one line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Mapping, NamedTuple, Sequence

import pandas as pd

from genbench.choices import REPORTS
from genbench.report.figures_data import TrainedRun, cell_means, in_order, run_axes
from genbench.report.figures_style import ImageFormat
from genbench.report.page import Block, Page, Paragraph, Section, Table, render_markdown
from genbench.report.page_context import grid_section, versions_section
from genbench.report.page_figures import Collected, FigureWriter, figure1_blocks, leaderboard_blocks, measure_blocks
from genbench.report.page_html import render_html

NAME = REPORTS[0]
PageFormat = Literal["html", "markdown"]
PAGE_FILES = MappingProxyType({"html": "report.html", "markdown": "report.md"})
IMAGE_FORMATS: Mapping[str, ImageFormat] = MappingProxyType({"html": "svg", "markdown": "png"})
TABLE1_CSV = "table1.csv"


@dataclass(frozen=True)
class ReportInputs:
    """What a report is drawn from, all read from one store: ``runs`` (``Store.runs()``),
    ``values`` (``Store.measure_values()``), ``board`` (``genbench.api.leaderboard``) and
    ``trained`` (``Store.iter_runs()``: specs and results with their loss curves).
    ``installed`` maps kind → component name → the version installed now (optional: the report
    stands on the store alone); ``source`` names the store on the page."""

    runs: pd.DataFrame
    values: pd.DataFrame
    board: pd.DataFrame
    trained: Sequence[TrainedRun]
    installed: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""


@dataclass(frozen=True)
class ReportOutput:
    """What was written: the page, every file (the page included), and one line per figure
    left out."""

    page: Path
    files: tuple[Path, ...]
    skipped: tuple[str, ...]


# ---------------------------------------------------------------------------
# Zhang et al.'s Table 1 (CIFAR-10)
# ---------------------------------------------------------------------------


class ZhangRow(NamedTuple):
    """One row of Zhang et al.'s Table 1: the genbench model it matches, crop, weight decay,
    random labels, and their train and test accuracy (%) on CIFAR-10."""

    model: str
    crop: bool
    weight_decay: bool
    random_labels: bool
    train: float
    test: float
    row: str


TABLE1 = (
    ZhangRow("small-inception", True, True, False, 100.0, 89.05, "Inception, crop, wd"),
    ZhangRow("small-inception", False, False, False, 100.0, 85.75, "Inception"),
    ZhangRow("small-inception", False, False, True, 100.0, 9.78, "Inception, random labels"),
    ZhangRow("small-inception-nobn", False, False, False, 100.0, 82.00, "Inception w/o BN"),
    ZhangRow("small-alexnet", True, True, False, 99.90, 81.22, "AlexNet, crop, wd"),
    ZhangRow("small-alexnet", False, False, False, 100.0, 76.07, "AlexNet"),
    ZhangRow("small-alexnet", False, False, True, 99.82, 9.86, "AlexNet, random labels"),
    ZhangRow("mlp-3x512", False, False, False, 100.0, 52.39, "MLP 3x512"),
    ZhangRow("mlp-3x512", False, False, True, 100.0, 10.48, "MLP 3x512, random labels"),
    ZhangRow("mlp-1x512", False, False, False, 100.0, 50.51, "MLP 1x512"),
    ZhangRow("mlp-1x512", False, False, True, 99.34, 10.61, "MLP 1x512, random labels"),
)
RANDOM_LABELS = frozenset({"labels", "random-labels"})


def zhang_row(cell: Mapping[str, object]) -> ZhangRow | None:
    """Zhang et al.'s row for a cell of ``cell_means``: same model name, crop = ``augment``,
    wd = weight decay > 0, no dropout, and true labels (p_c = 0) or random labels (``labels`` or
    ``random-labels`` at p_c = 1)."""
    level = float(cell["level"])  # type: ignore[arg-type]
    random = cell["corruption_name"] in RANDOM_LABELS and level == 1.0
    if (level != 0.0 and not random) or cell["dropout"]:
        return None
    for row in TABLE1:
        if (row.model, row.crop, row.weight_decay, row.random_labels) == (
            cell["model_name"], bool(cell["augment"]), float(cell["weight_decay"]) > 0, random  # type: ignore[arg-type]
        ):
            return row
    return None


def table1(cells: pd.DataFrame) -> pd.DataFrame:
    """The Table 1 analogue: one row per cell of the grid with the seed count, mean train and
    test accuracy (%), and Zhang et al.'s CIFAR-10 numbers where the cell matches one of theirs."""
    matches = [zhang_row(cell) for cell in cells.to_dict("records")]
    out = cells[["dataset", "model", "recipe", "regularizers", "corruption", "level", "test_labels", "seeds",
                 "train_pct", "test_pct", "dataset_short", "model_short", "series"]].copy()
    out["zhang_row"] = [m.row if m else "" for m in matches]
    out["zhang_train_pct"] = [m.train if m else float("nan") for m in matches]
    out["zhang_test_pct"] = [m.test if m else float("nan") for m in matches]
    return out


def percent(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.2f}"


def table1_block(table: pd.DataFrame, datasets: list[str]) -> Block:
    """Table 1 as a page table; columns that do not vary (dataset, recipe, test labels) are
    left out of it and stated in the grid section."""
    optional = [c for c in ("dataset_short", "recipe", "test_labels") if table[c].nunique() > 1]
    names = {"dataset_short": "dataset", "recipe": "recipe", "test_labels": "test labels"}
    headers = [*(names[c] for c in optional), "model", "regularizers", "corruption", "p_c", "seeds", "train %",
               "test %", "Zhang et al. row", "their train % (CIFAR-10)", "their test % (CIFAR-10)"]
    rows = []
    for r in table.to_dict("records"):
        rows.append(tuple([*(str(r[c]) for c in optional), str(r["model_short"]), str(r["regularizers"]),
                           str(r["series"]), f"{r['level']:g}", str(r["seeds"]), percent(r["train_pct"]),
                           percent(r["test_pct"]), r["zhang_row"] or "–", percent(r["zhang_train_pct"]),
                           percent(r["zhang_test_pct"])]))
    caption = (
        f"Train and test accuracy (%), mean over seeds, on {', '.join(datasets)} (the store's data). Zhang et al.'s "
        "numbers are their Table 1 on CIFAR-10 (28×28 crops, 50,000 training images), given beside the cells that match "
        "one of theirs (same model name; crop = `augment`, wd = weight decay > 0; no dropout; true labels at p_c = 0, "
        "random labels = `labels` or `random-labels` at p_c = 1): compare the pattern, not the values. "
        f"Models and corruptions by the short names of the grid section; full precision in `{TABLE1_CSV}`."
    )
    return Table(tuple(headers), tuple(rows), caption)


def zhang_table_block() -> Table:
    """Zhang et al.'s Table 1 itself, with the genbench model each row is matched on."""
    rows = tuple(
        (row.row, f"`{row.model}`", "yes" if row.crop else "no", "yes" if row.weight_decay else "no",
         "random" if row.random_labels else "true", percent(row.train), percent(row.test))
        for row in TABLE1
    )
    caption = ("Zhang et al. (2017), Table 1: CIFAR-10, train and test accuracy (%), SGD with momentum 0.9, "
               "learning rate ×0.95 per epoch; their models on 28×28×3 inputs.")
    return Table(("their row", "genbench model", "crop", "wd", "labels", "train %", "test %"), rows, caption)


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------


def intro(inputs: ReportInputs, axes: pd.DataFrame) -> tuple[Block, ...]:
    """What the page is and what it was drawn from."""
    ok = int((inputs.values["status"] == "ok").sum()) if len(inputs.values) else 0
    store = f" `{inputs.source}`" if inputs.source else ""
    return (
        Paragraph(
            f"Zhang, Bengio, Hardt, Recht & Vinyals (ICLR 2017, arXiv:1611.03530), \"Understanding deep learning "
            f"requires rethinking generalization\": their Table 1 and Figure 1, redrawn on the runs of the store{store} "
            f"({len(axes)} runs, {ok} measure values), and every measure against p_c and the gap. Everything here is "
            "read from the store: nothing was trained or measured for this page, and the scores are the leaderboard's."
        ),
    )


def build_page(inputs: ReportInputs, writer: FigureWriter, collected: Collected) -> Page:
    """Every section of the report, writing its figures on the way."""
    axes = run_axes(inputs.runs, inputs.trained)
    table = table1(cell_means(axes))
    csv = writer.folder / TABLE1_CSV
    table.to_csv(csv, index=False)
    collected.files.append(csv)
    datasets = in_order(axes["dataset"])
    sections = (
        grid_section(axes, inputs.trained),
        Section("Table 1 analogue", (table1_block(table, datasets), zhang_table_block()), "table1"),
        Section("Figure 1 analogue", tuple(figure1_blocks(axes, inputs.values, inputs.trained, writer, collected)),
                "figure1"),
        Section("Leaderboard", tuple(leaderboard_blocks(inputs.board, writer, collected)), "leaderboard"),
        Section("Measures", tuple(measure_blocks(axes, inputs.values, inputs.board, writer, collected)), "measures"),
        versions_section(axes, inputs.values, inputs.installed),
    )
    return Page(f"genbench report {NAME}: randomization tests", intro(inputs, axes), sections)


def write_report(inputs: ReportInputs, out: str | Path, fmt: PageFormat = "html") -> ReportOutput:
    """Write the report into the folder ``out`` (created if needed): its figures, ``table1.csv``
    and ``report.html`` (``fmt="html"``, SVG figures inlined) or ``report.md`` (``fmt="markdown"``,
    PNG figures beside it)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    collected = Collected()
    page = build_page(inputs, FigureWriter(folder, IMAGE_FORMATS[fmt]), collected)
    path = folder / PAGE_FILES[fmt]
    path.write_text(render_html(page) if fmt == "html" else render_markdown(page), encoding="utf-8")
    return ReportOutput(path, (*collected.files, path), tuple(collected.skipped))
