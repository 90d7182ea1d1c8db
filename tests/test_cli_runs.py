"""`genbench runs`, `genbench show`, the list-valued grid flags of `genbench run`, and help texts
that keep their bracketed defaults."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import genbench
from genbench.cli.experiments import build_spec, option_axes, train_axes
from genbench.cli.main import app
from genbench.cli.runs import resolve_run_id, thinned
from genbench.engine import resolve_runs
from genbench.errors import ExitCode, SpecError, UnknownNameError
from genbench.schemas import ExperimentSpec, MeasureValue, RunResult, TrainConfig

SPEC = """
name = "tiny"
datasets = [{ name = "digits", subset = 200 }]
models = ["mlp"]
levels = [0.0, 1.0]
seeds = [0]
measures = ["params", "inverse-margin"]
"""


def invoke(*arguments: str, columns: int = 100):
    return CliRunner().invoke(app, list(arguments), env={"COLUMNS": str(columns)})


def one_error_line(result, code: ExitCode, message: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Four tiny runs (two learning rates × two levels) trained through the grid flags, with
    values of params and inverse-margin; then one value failed, one skipped, an older version
    and a non-default option set stored beside them."""
    folder = tmp_path_factory.mktemp("runs")
    spec = folder / "tiny.toml"
    spec.write_text(SPEC)
    path = folder / "store"
    result = CliRunner().invoke(
        app,
        ["run", str(spec), "--lr", "0.05,0.1", "--width", "32", "--max-steps", "60", "--schedule", "constant",
         "--store", str(path), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    assert "experiment 'tiny': 4 runs" in result.stderr
    with genbench.open_store(path, create=False) as opened:
        values = opened.measure_values()
        ids = sorted(opened.run_ids())
        margin = values[values["measure"] == "inverse-margin"].set_index("run_id")
        params = values[values["measure"] == "params"].set_index("run_id")
        for run_id, status in ((ids[0], "failed"), (ids[1], "skipped")):
            row = margin.loc[run_id]
            opened.save_measure_value(MeasureValue(
                run_id=run_id, measure="inverse-margin", version=row["version"], options_hash=row["options_hash"],
                options=row["options"], value=float("nan"), seconds=0.1, error=f"{status} on purpose",
                status=status, kind="complexity", default_options=True,
            ))
        row = params.loc[ids[2]]
        common = {"run_id": ids[2], "measure": "params", "seconds": 0.0, "kind": "complexity"}
        opened.save_measure_value(MeasureValue(
            **common, version="0", options_hash=row["options_hash"], options=row["options"], value=-1.0,
            default_options=True,
        ))
        opened.save_measure_value(MeasureValue(
            **common, version=row["version"], options_hash="other", options={"include_biases": False}, value=-2.0,
            default_options=False,
        ))
    return path


@pytest.fixture(scope="module")
def listed(store):
    result = invoke("runs", "--store", str(store), "--with-measures", "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------- genbench runs
def test_runs_lists_every_run_sorted_with_the_recipe_fields_that_differ(listed):
    assert len(listed) == 4
    assert [row["level"] for row in listed] == [0.0, 0.0, 1.0, 1.0]
    assert [row["train.lr"] for row in listed] == [0.05, 0.1, 0.05, 0.1]  # then by the recipe fields that differ
    first = listed[0]
    assert list(first)[:6] == ["run_id", "dataset", "model", "corruption", "level", "seed"]
    assert first["model"] == "mlp(hidden=[32])" and first["dataset"].startswith("digits(")
    for key in ("train_accuracy", "test_accuracy", "gap", "steps", "steps_to_fit", "status"):
        assert key in first
    assert not any(key.startswith("train.") and key != "train.lr" for key in first)  # the same in every run
    assert isinstance(first["steps"], int)


def test_with_measures_shows_the_newest_version_at_default_options(listed, store):
    with genbench.open_store(store, create=False) as opened:
        parameters = opened.run_result(listed[0]["run_id"]).num_parameters
    assert all(row["params"] == parameters for row in listed)  # not the older version's -1, not -2
    statuses = sorted(str(row["inverse-margin"]) for row in listed)
    assert statuses.count("None") == 2  # failed and skipped are null in json
    assert all(isinstance(row["inverse-margin"], float) for row in listed if row["inverse-margin"] is not None)


def test_failed_and_skipped_values_read_so_in_markdown_and_null_in_csv(store):
    markdown = invoke("runs", "--store", str(store), "--with-measures", "-f", "markdown")
    assert markdown.exit_code == 0, markdown.output
    lines = markdown.stdout.strip().splitlines()
    assert lines[0].startswith("| run_id | dataset | model |") and lines[0].endswith("| inverse-margin | params |")
    assert len(lines) == 2 + 4
    assert sum("| failed |" in line for line in lines) == 1 and sum("| skipped |" in line for line in lines) == 1
    csv = invoke("runs", "--store", str(store), "--with-measures", "-f", "csv")
    header, *rows = csv.stdout.strip().splitlines()
    assert header.split(",")[:6] == ["run_id", "dataset", "model", "corruption", "level", "seed"]
    assert "train.lr" in header and "inverse-margin" in header and len(rows) == 4
    assert "failed" not in csv.stdout and "skipped" not in csv.stdout


def test_a_wide_table_shows_every_column(store):
    result = invoke("runs", "--store", str(store), "--with-measures", columns=400)
    assert result.exit_code == 0, result.output
    for header in ("run_id", "dataset", "train.lr", "train acc", "steps to fit", "status", "inverse-margin"):
        assert header in result.stdout
    assert "left out" not in result.stdout


@pytest.mark.parametrize("columns", [60, 90])
def test_a_narrow_table_drops_the_less_important_columns_and_says_which(store, columns):
    result = invoke("runs", "--store", str(store), "--with-measures", columns=columns)
    assert result.exit_code == 0, result.output
    lines = result.stdout.rstrip("\n").splitlines()
    assert all(len(line) <= columns for line in lines)
    note = [line for line in lines if "left out to fit" in line]
    assert note and f"left out to fit {columns} columns: dataset" in note[0]
    table = "\n".join(line for line in lines if "│" in line or "┃" in line)
    for kept in ("run_id", "model", "level"):
        assert kept in table
    assert "0.05" in table or columns < 90  # the varying recipe field stays before the constant ones
    assert "dataset" not in table  # the same in every run: among the first to go


def test_where_filters_the_runs(store):
    def count(*conditions: str) -> int:
        arguments = [part for condition in conditions for part in ("--where", condition)]
        result = invoke("runs", "--store", str(store), "-f", "json", *arguments)
        assert result.exit_code == 0, result.output
        return len(json.loads(result.stdout))

    assert count("level=1") == 2
    assert count("model=mlp") == 4  # a component's name matches its labels
    assert count("train.lr>0.07", "level!=1") == 1
    assert count("level=0,1", "status=budget,converged") == 4
    assert count("train.momentum=0.9") == 4  # a recipe field the listing leaves out still filters


def test_an_empty_store_or_no_match_lists_nothing(store, tmp_path):
    empty = tmp_path / "empty"
    genbench.open_store(empty).close()
    for fmt, expected in (("json", "[]"), ("table", "no runs in store")):
        result = invoke("runs", "--store", str(empty), "--with-measures", "-f", fmt)
        assert result.exit_code == 0 and expected in result.stdout, result.output
    result = invoke("runs", "--store", str(store), "--where", "level=0.5")
    assert result.exit_code == 0 and "no runs that match --where" in result.stdout
    csv = invoke("runs", "--store", str(store), "--where", "level=0.5", "-f", "csv")
    assert csv.stdout.strip().startswith("run_id,") and len(csv.stdout.strip().splitlines()) == 1


def test_runs_bad_input_is_one_red_line(store, tmp_path):
    one_error_line(invoke("runs", "--store", str(store), "--where", "levle=1"), ExitCode.UNKNOWN_NAME,
                   "did you mean 'level'")
    one_error_line(invoke("runs", "--store", str(store), "--where", "level"), ExitCode.INVALID_SPEC,
                   "--where expects COLUMN=VALUE")
    one_error_line(invoke("runs", "--store", str(store), "--where", "model>mlp"), ExitCode.INVALID_SPEC,
                   "expects one number")
    one_error_line(invoke("runs", "--store", str(store), "-f", "xml"), ExitCode.USAGE, "--format must be one of")
    one_error_line(invoke("runs", "--store", str(tmp_path / "none")), ExitCode.STORE_ERROR, "no genbench store")


# ---------------------------------------------------------------------------------- genbench show
def test_show_json_holds_the_whole_run(store, listed):
    run_id = listed[0]["run_id"]
    result = invoke("show", run_id, "--store", str(store), "--format", "json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["run_id"] == run_id
    assert set(record["spec"]["train"]) == set(TrainConfig.model_fields)  # defaults left out of the hash too
    assert record["spec"]["model"] == {"name": "mlp", "options": {"hidden": [32]}}
    assert record["spec"]["dataset"]["options"]["subset"] == 200
    assert set(record["result"]) == set(RunResult.model_fields) - {"run_id", "loss_curve"}
    with genbench.open_store(store, create=False) as opened:
        curve = opened.run_result(run_id).loss_curve
    assert [[p["step"], p["loss"]] for p in record["loss_curve"]] == [list(point) for point in curve]
    measures = {(v["measure"], v["version"]) for v in record["measure_values"]}
    assert {("params", "1"), ("inverse-margin", "1")} <= measures
    for value in record["measure_values"]:
        assert {"measure", "version", "options", "value", "status", "error", "seconds", "details"} <= set(value)


def test_show_table_accepts_a_prefix_and_thins_the_loss_curve(store, listed):
    run_id = listed[-1]["run_id"]
    result = invoke("show", run_id[:6], "--store", str(store), columns=120)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"run {run_id}: spec" in text
    for field in ("train.lr", "train.augment_padding", "model.options.hidden", "gap", "num_parameters"):
        assert field in text
    assert "loss curve (20 of 30 points)" in text
    assert "measure values" in text and "inverse-margin" in text


def test_show_unknown_or_short_ids_are_one_red_line(store):
    one_error_line(invoke("show", "ffffffffff", "--store", str(store)), ExitCode.UNKNOWN_NAME, "no run 'ffffffffff'")
    one_error_line(invoke("show", "abc", "--store", str(store)), ExitCode.UNKNOWN_NAME, "at least 6 characters")
    one_error_line(invoke("show", "abcdef", "--store", str(store), "-f", "csv"), ExitCode.USAGE, "--format")


def test_an_ambiguous_prefix_is_refused():
    store = SimpleNamespace(root="s", run_ids=lambda: ["abcdef0011", "abcdef0022", "123456789a"])
    assert resolve_run_id(store, "abcdef001") == "abcdef0011"
    assert resolve_run_id(store, "123456789A") == "123456789a"
    with pytest.raises(UnknownNameError, match="matches 2 runs"):
        resolve_run_id(store, "abcdef")
    assert UnknownNameError.exit_code == ExitCode.UNKNOWN_NAME


def test_thinned_keeps_at_most_20_points_with_both_ends():
    curve = [{"step": i, "loss": 1 / (i + 1)} for i in range(137)]
    points = thinned(curve)
    assert len(points) == 20 and points[0] == curve[0] and points[-1] == curve[-1]
    assert thinned(curve[:7]) == curve[:7]


# ------------------------------------------------------------------------- list-valued grid flags
def spec_of(*, train=None, width=None, depth=None, dropout=None, options=None, models=("mlp",), spec_file=None):
    return build_spec(
        spec_file, models=list(models), levels="0,1", seeds="0",
        axes=train_axes(train or {}), options=option_axes(width, depth, dropout, options),
    )


def test_several_values_multiply_the_model_entries():
    spec = spec_of(train={"lr": "0.01,0.1", "weight_decay": "0,5e-4"}, width="256,512")
    assert len(spec.models) == 2 * 2 * 2
    cells = {(m.options["hidden"][0], m.options["train"]["lr"], m.options["train"]["weight_decay"]) for m in spec.models}
    assert cells == {(w, lr, wd) for w in (256, 512) for lr in (0.01, 0.1) for wd in (0.0, 5e-4)}
    assert len(resolve_runs(spec)) == 8 * 2


def test_one_value_sets_the_recipe_as_before():
    spec = spec_of(train={"lr": "0.2", "max_steps": "77", "augment": "true", "early_stopping_patience": "null"})
    assert [m.name for m in spec.models] == ["mlp"] and "train" not in spec.models[0].options
    assert (spec.train.lr, spec.train.max_steps, spec.train.augment) == (0.2, 77, True)
    assert spec.train.early_stopping_patience is None


def test_width_and_depth_build_hidden():
    assert [m.options["hidden"] for m in spec_of(depth="2").models] == [[512, 512]]
    assert [m.options["hidden"] for m in spec_of(width="64").models] == [[64]]
    assert [m.options["hidden"] for m in spec_of(width="8,16", depth="1,2").models] == [[8], [8, 8], [16], [16, 16]]


def test_dropout_and_any_option():
    spec = spec_of(dropout="0,0.1", models=("mlp-1x512", "small-alexnet"))
    assert [(m.name, m.options["dropout"]) for m in spec.models] == [
        ("mlp-1x512", 0.0), ("mlp-1x512", 0.1), ("small-alexnet", 0.0), ("small-alexnet", 0.1)
    ]
    spec = spec_of(options=["hidden=[64,64],[32]", "dropout=0.2"])
    assert [m.options for m in spec.models] == [{"hidden": [64, 64], "dropout": 0.2}, {"hidden": [32], "dropout": 0.2}]
    spec = spec_of(options=["channels=[8],[8,16]"], models=("cnn",))
    assert [m.options["channels"] for m in spec.models] == [[8], [8, 16]]


def test_an_axis_replaces_a_model_entrys_own_recipe_field_and_keeps_the_others(tmp_path):
    path = tmp_path / "own.toml"
    path.write_text('models = [{ name = "mlp", train = { lr = 0.3, momentum = 0.5 } }]\n[train]\nmax_steps = 9\n')
    spec = spec_of(spec_file=path, models=(), train={"lr": "0.01,0.1"})
    runs = resolve_runs(spec)
    assert sorted(r.train.lr for r in runs) == [0.01, 0.01, 0.1, 0.1]
    assert {(r.train.momentum, r.train.max_steps) for r in runs} == {(0.5, 9)}


def test_sub_grids_models_are_multiplied_too(tmp_path):
    if "grids" not in ExperimentSpec.model_fields:
        pytest.skip("this ExperimentSpec has no sub-grids")
    path = tmp_path / "grids.toml"
    path.write_text('levels = [0.0]\nseeds = [0]\n[[grids]]\nmodels = ["mlp"]\n[[grids]]\nmodels = ["mlp-1x512"]\n')
    spec = build_spec(path, options=option_axes(dropout="0,0.1"))
    assert sorted((r.model.name, r.model.options.get("dropout", 0.0)) for r in resolve_runs(spec)) == [
        ("mlp", 0.0), ("mlp", 0.1), ("mlp-1x512", 0.0), ("mlp-1x512", 0.1)
    ]


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["--model", "cnn", "--dropout", "0,0.1"], ExitCode.INVALID_SPEC, "model 'cnn' has no option 'dropout'"),
        (["--model", "mlp-1x512", "--width", "64"], ExitCode.INVALID_SPEC, "model 'mlp-1x512' has no option 'hidden'"),
        (["--model", "mlp", "--option", "colour=red"], ExitCode.INVALID_SPEC, "model 'mlp' has no option 'colour'"),
        (["--model", "mlp", "--option", "hidden"], ExitCode.INVALID_SPEC, "--option expects KEY=V1,V2"),
        (["--model", "mlp", "--width", "64", "--option", "hidden=[2]"], ExitCode.INVALID_SPEC, "set twice"),
        (["--lr", "0.1,-1"], ExitCode.INVALID_SPEC, "invalid --lr value -1"),
        (["--schedule", "cosine"], ExitCode.INVALID_SPEC, "invalid --schedule value \"cosine\""),
        (["--batch-size", "a"], ExitCode.INVALID_SPEC, "invalid --batch-size value"),
        (["--width", "0"], ExitCode.INVALID_SPEC, "positive integers"),
        (["--lr", ","], ExitCode.INVALID_SPEC, "--lr expects one or more"),
        (["--model", "mlpp", "--dropout", "0.1"], ExitCode.UNKNOWN_NAME, "did you mean 'mlp'"),
    ],
)
def test_bad_grid_flags_are_one_red_line_before_the_store(arguments, code, message, tmp_path):
    store = tmp_path / "s"
    one_error_line(invoke("run", *arguments, "--no-evaluate", "--store", str(store)), code, message)
    assert not store.exists()


def test_build_spec_errors_are_spec_errors():
    with pytest.raises(SpecError, match="has no option 'dropout'"):
        spec_of(dropout="0.1", models=("cnn",))


# ------------------------------------------------------------------------------------ help texts
@pytest.mark.parametrize(
    ("command", "texts"),
    [
        ("run", ["[default: ./genbench-results]", "[default: all]", "[default: cuda when present, else cpu]"]),
        ("evaluate", ["[default: ./genbench-results]", "[default: cuda when present, else cpu]"]),
        ("leaderboard", ["[default: ./genbench-results]"]),
        ("runs", ["[default: ./genbench-results]", "[default: table]"]),
        ("show", ["[default: ./genbench-results]"]),
    ],
)
def test_help_shows_the_defaults_in_brackets(command, texts):
    result = invoke(command, "--help", columns=200)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.replace("│", " ").split())
    for text in texts:
        assert text in flat, (command, text)
