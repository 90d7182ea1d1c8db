"""The report stage: ``genbench report`` draws Table 1 and Figure 1 analogues, per-measure panels and
the leaderboard from a store alone, into a self-contained folder."""

from __future__ import annotations

import importlib
import math
import pkgutil
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from typer.testing import CliRunner

import genbench.report
from genbench import api
from genbench.cli.main import app
from genbench.errors import ExitCode
from genbench.report import zhang2017
from genbench.report.figures_data import measure_series, run_axes
from genbench.report.figures_measures import leaderboard_figure, measures_figure
from genbench.report.figures_style import write_figure
from genbench.report.page_html import inline_svg

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = {"lr": 0.1, "schedule": "constant", "max_steps": 800}
GRID = {
    "name": "report-test",
    "datasets": [{"name": "digits", "subset": 200}],
    "models": ["mlp", {"name": "mlp", "hidden": [64, 64]}],
    "corruptions": [{"name": "labels", "levels": [0.0, 0.5, 1.0]}, {"name": "random-pixels", "levels": [1.0]}],
    "seeds": [0],
    "measures": ["params", "param-norm", "steps-to-fit"],
    "train": TRAIN,
}
HTML_FILES = {"report.html", "table1.csv", "fig1a-loss.svg", "fig1b-steps.svg", "fig1c-test-error.svg",
              "leaderboard.svg", "measures-1.svg"}


@pytest.fixture(scope="module")
def store(tmp_path_factory, one_thread):
    path = tmp_path_factory.mktemp("report") / "store"
    api.run(GRID, store=path, device="cpu")
    return api.open_store(path, create=False)


def inputs_of(store) -> zhang2017.ReportInputs:
    return zhang2017.ReportInputs(store.runs(), store.measure_values(), api.leaderboard(store), list(store.iter_runs()))


@pytest.fixture(scope="module")
def html_report(store, tmp_path_factory):
    return zhang2017.write_report(inputs_of(store), tmp_path_factory.mktemp("html"), "html")


@pytest.fixture(scope="module")
def markdown_report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("markdown")
    result = CliRunner().invoke(app, ["report", "--store", str(store.root), "--out", str(out), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "report.md")
    return out


def test_every_promised_file_exists_and_is_not_empty(html_report):
    names = {path.name for path in html_report.files}
    assert names == HTML_FILES
    assert all(path.exists() and path.stat().st_size > 0 for path in html_report.files)
    assert html_report.page.name == "report.html" and not html_report.skipped


def test_the_html_page_is_self_contained(html_report):
    page = html_report.page.read_text(encoding="utf-8")
    folder = html_report.page.parent
    assert "http" not in page.lower()
    for tag in ("<script", "<link", "<img", "<iframe", "@import"):
        assert tag not in page.lower()
    for reference in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert reference.startswith("#") or (folder / reference).is_file(), reference
    assert page.count("<svg") == len([p for p in html_report.files if p.suffix == ".svg"])
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "ids shared between inlined figures"
    internal = set(re.findall(r'href="#([^"]+)"', page)) | set(re.findall(r"url\(#([^)]+)\)", page))
    assert internal <= set(ids)


def test_the_html_page_states_the_grid_the_versions_and_the_leaderboard(html_report):
    page = html_report.page.read_text(encoding="utf-8")
    for text in ("The grid", "Table 1 analogue", "Figure 1a", "Figure 1b", "Figure 1c", "Leaderboard", "Versions",
                 "random-pixels", "test labels: clean", "CIFAR-10", "steps-to-fit", "param-norm", "mlp(hidden=[64, 64])"):
        assert text in page, text
    assert "<table" in page and "oracle" in page


def test_the_markdown_page_links_only_pngs_that_exist(markdown_report):
    page = (markdown_report / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)]+)\)", page)
    assert links and "http" not in page.lower()
    assert all(link.endswith(".png") and "/" not in link and (markdown_report / link).is_file() for link in links)
    assert set(links) == {path.name for path in markdown_report.glob("*.png")}
    assert not list(markdown_report.glob("*.svg"))


def test_table1_equals_the_means_of_the_stores_runs(store, html_report, markdown_report):
    runs = store.runs()
    expected = runs.groupby(["model", "corruption", "level"]).agg(
        seeds=("seed", "nunique"), train=("train_accuracy", "mean"), test=("test_accuracy", "mean")
    )
    table = pd.read_csv(html_report.page.parent / zhang2017.TABLE1_CSV)
    assert len(table) == len(expected)
    page = (markdown_report / "report.md").read_text(encoding="utf-8")
    for row in table.itertuples():
        corruption = row.corruption.split("(")[0]
        want = expected.loc[(row.model, corruption, row.level)]
        assert row.seeds == want.seeds
        assert math.isclose(row.train_pct, 100 * want.train, abs_tol=1e-9)
        assert math.isclose(row.test_pct, 100 * want.test, abs_tol=1e-9)
        line = f"| {row.model_short} | none | {row.series} | {row.level:g} | {row.seeds} | {100 * want.train:.2f} | {100 * want.test:.2f} |"
        assert line in page, line


@pytest.mark.parametrize(
    ("cell", "row"),
    [
        ({"model_name": "mlp-1x512", "corruption_name": "labels", "level": 1.0}, "MLP 1x512, random labels"),
        ({"model_name": "mlp-1x512", "corruption_name": "random-labels", "level": 1.0}, "MLP 1x512, random labels"),
        ({"model_name": "mlp-3x512", "corruption_name": "shuffled-pixels", "level": 0.0}, "MLP 3x512"),
        ({"model_name": "small-alexnet", "corruption_name": "labels", "level": 0.0, "augment": True, "weight_decay": 5e-4},
         "AlexNet, crop, wd"),
        ({"model_name": "small-inception-nobn", "corruption_name": "labels", "level": 0.0}, "Inception w/o BN"),
        ({"model_name": "mlp-1x512", "corruption_name": "labels", "level": 0.5}, None),
        ({"model_name": "mlp-1x512", "corruption_name": "random-pixels", "level": 1.0}, None),
        ({"model_name": "mlp-1x512", "corruption_name": "labels", "level": 0.0, "weight_decay": 5e-4}, None),
        ({"model_name": "mlp-1x512", "corruption_name": "labels", "level": 0.0, "dropout": True}, None),
        ({"model_name": "mlp", "corruption_name": "labels", "level": 0.0}, None),
    ],
)
def test_cells_match_zhang_et_als_table1_rows(cell, row):
    match = zhang2017.zhang_row({"augment": False, "weight_decay": 0.0, "dropout": False, **cell})
    assert (match.row if match else None) == row


def test_scatter_titles_take_tau_from_the_board(store, tmp_path):
    board = api.leaderboard(store)
    board.loc[board["measure"] == "param-norm", ["tau_gap", "tau_gap_low", "tau_gap_high"]] = [0.123, -0.25, 0.5]
    measures = [m for m in measure_series(store.measure_values()) if m.label == "param-norm"]
    figure = measures_figure(run_axes(store.runs(), list(store.iter_runs())), measures, board)
    titles = [panel.get_title() for panel in figure.axes]
    assert "τ(gap) = +0.12 [-0.25, +0.50]" in titles


def test_leaderboard_bars_draw_intervals_only_where_they_are_finite(store):
    board = api.leaderboard(store)
    for column in ("tau_gap_low", "tau_gap_high", "psi_low", "psi_high"):
        board[column] = np.nan
    bare = leaderboard_figure(board)
    assert not [c for panel in bare.axes for c in panel.containers if isinstance(c, ErrorbarContainer)]
    board.loc[0, ["tau_gap_low", "tau_gap_high"]] = [board.loc[0, "tau_gap"] - 0.1, board.loc[0, "tau_gap"] + 0.05]
    one = leaderboard_figure(board)
    assert len([c for panel in one.axes for c in panel.containers if isinstance(c, ErrorbarContainer)]) == 1


def test_a_store_without_measures_still_gives_a_report(tmp_path):
    path = tmp_path / "bare"
    api.run({**GRID, "models": ["mlp"], "corruptions": [{"name": "labels", "levels": [0.0, 1.0]}]},
            store=path, device="cpu", evaluate=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "--store", str(path), "--out", str(out), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    page = (out / "report.md").read_text(encoding="utf-8")
    assert "Per-measure figures left out: the store has no measure values" in page
    assert "Leaderboard left out" in page
    assert (out / "fig1a-loss.png").is_file() and not list(out.glob("measures-*.png"))
    assert "Per-measure figures left out" in result.stderr


def test_a_missing_store_is_one_line_and_exit_code_5(tmp_path):
    result = CliRunner().invoke(app, ["report", "--store", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert result.exit_code == ExitCode.STORE_ERROR
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert "no genbench store" in result.output and not (tmp_path / "out").exists()


def test_an_empty_store_is_one_line_and_exit_code_5(tmp_path):
    api.open_store(tmp_path / "empty").close()
    result = CliRunner().invoke(app, ["report", "--store", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert result.exit_code == ExitCode.STORE_ERROR
    assert "has no runs" in result.output and len(result.output.strip().splitlines()) == 1


def test_unknown_report_names_and_formats_are_refused(store, tmp_path):
    unknown = CliRunner().invoke(app, ["report", "zhang2016", "--store", str(store.root), "--out", str(tmp_path)])
    assert unknown.exit_code == ExitCode.UNKNOWN_NAME and "did you mean 'zhang2017'" in unknown.output
    bad = CliRunner().invoke(app, ["report", "--store", str(store.root), "--out", str(tmp_path), "--format", "pdf"])
    assert bad.exit_code == ExitCode.USAGE


def test_inlined_svg_ids_are_prefixed_and_namespaces_dropped():
    svg = ('<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"\n "http://www.w3.org/x.dtd">\n'
           '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><metadata>x</metadata>'
           '<defs><path id="a"/></defs><use xlink:href="#a"/><g clip-path="url(#a)"/></svg>')
    inlined = inline_svg(svg, "f1")
    assert "http" not in inlined and "<?xml" not in inlined and "metadata" not in inlined
    assert 'id="f1-a"' in inlined and 'xlink:href="#f1-a"' in inlined and "url(#f1-a)" in inlined


def test_figures_are_written_without_pyplot(tmp_path):
    from matplotlib.figure import Figure

    import matplotlib

    def build() -> Figure:
        figure = Figure()
        figure.subplots().plot([0, 1], [1, 0])
        return figure

    before = dict(matplotlib.rcParams)
    written = write_figure(build, tmp_path, "probe", "png")
    assert written.path.read_bytes().startswith(b"\x89PNG")
    assert dict(matplotlib.rcParams) == before


def test_no_module_level_mutable_state_in_the_report_modules():
    mutable = (dict, list, set, bytearray)
    found = []
    for info in pkgutil.iter_modules(genbench.report.__path__, "genbench.report."):
        short = info.name.rsplit(".", 1)[1]
        if not short.startswith(("figures", "page", "zhang2017")):
            continue
        module = importlib.import_module(info.name)
        found += [f"{info.name}.{name}" for name, value in vars(module).items()
                  if not name.startswith("__") and isinstance(value, mutable)]
    assert not found


def test_the_command_writes_the_html_report_into_its_folder(store, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["report", "zhang2017", "--store", str(store.root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == HTML_FILES
    assert "installed now" in (out / "report.html").read_text(encoding="utf-8")
