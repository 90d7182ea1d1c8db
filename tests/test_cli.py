from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from genbench.cli.main import app
from genbench.errors import ExitCode, SpecError

FAST = ["--model", "mlp", "--lr", "0.1", "--max-steps", "2000", "--seeds", "0"]


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("cli") / "store"
    result = CliRunner().invoke(
        app,
        ["run", *FAST, "--levels", "0,1", "--measure", "params", "--measure", "inverse-margin",
         "--store", str(store), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    return store, result


def test_run_prints_a_leaderboard_with_the_measures_and_the_oracles(trained_store):
    _, result = trained_store
    printed = json.loads(result.stdout)
    board = printed["rows"]
    names = [row["measure"] for row in board]
    assert "params" in names and "inverse-margin" in names
    assert sum(row["reference"] for row in board) == 2
    assert all(row["runs"] == 2 for row in board)
    # two runs give every row tau = +1 or -1: the board says it cannot tell anything
    assert any("too few for τ or Ψ to say anything" in note for note in printed["notes"])
    assert all(row["tau_gap_low"] is None for row in board)  # and gives no interval
    assert "experiment 'experiment': 2 runs" in result.stderr


def test_running_the_same_spec_again_trains_nothing(trained_store):
    store, _ = trained_store
    again = CliRunner().invoke(app, ["run", *FAST, "--levels", "0,1", "--measure", "params", "--store", str(store)])
    assert again.exit_code == 0, again.output
    assert "already in the store; nothing to train" in again.stderr


def test_evaluate_one_measure_on_the_store_then_every_format(trained_store):
    store, _ = trained_store
    result = CliRunner().invoke(app, ["evaluate", "--measure", "path-norm", "--store", str(store), "-f", "csv"])
    assert result.exit_code == 0, result.output
    assert "computed 2 new measure values" in result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.startswith("measure,kind,reference,runs,runs_total,partial,tau_gap,tau_gap_low,tau_gap_high,psi")
    assert any(row.startswith("path-norm,complexity") for row in rows)
    markdown = CliRunner().invoke(app, ["leaderboard", "--store", str(store), "--format", "markdown"])
    assert markdown.exit_code == 0 and markdown.stdout.startswith("| measure | kind | τ(gap)")
    table = CliRunner().invoke(app, ["leaderboard", "--store", str(store)])
    assert table.exit_code == 0 and "genbench leaderboard" in table.stdout and "path-norm" in table.stdout


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["run", "--levels", "0,1.5", "--no-evaluate"], ExitCode.INVALID_SPEC, "p_c must be in [0, 1], got 1.5"),
        (["run", "--model", "mlpp"], ExitCode.UNKNOWN_NAME, "did you mean 'mlp'"),
        (["run", "--seeds", "a,b"], ExitCode.INVALID_SPEC, "--seeds expects comma-separated integers"),
        (["evaluate", "--measure", "radmacher"], ExitCode.UNKNOWN_NAME, "did you mean 'rademacher'"),
        (["evaluate", "--measure", "params"], ExitCode.STORE_ERROR, "no genbench store"),
        (["leaderboard", "--format", "xml"], ExitCode.USAGE, "--format must be one of"),
        (["list", "widgets"], ExitCode.UNKNOWN_NAME, "unknown kind 'widgets'"),
    ],
)
def test_bad_input_is_one_red_line_and_an_exit_code(arguments, code, message, tmp_path):
    result = CliRunner().invoke(app, arguments + (["--store", str(tmp_path / "s")] if arguments[0] != "list" else []))
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_malformed_and_invalid_toml_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("levels = [0, \n")
    result = CliRunner().invoke(app, ["run", str(bad), "--store", str(tmp_path / "s")])
    assert result.exit_code == ExitCode.INVALID_SPEC and "malformed TOML" in result.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("levls = [0.0]\n")
    result = CliRunner().invoke(app, ["run", str(unknown), "--store", str(tmp_path / "s")])
    assert result.exit_code == ExitCode.INVALID_SPEC and "levls: unknown field" in result.stderr


def _snapshot(store):
    import genbench

    with genbench.open_store(store, create=False) as opened:
        runs = sorted(opened.runs()["run_id"])
        values = opened.measure_values()[["run_id", "measure", "value"]].sort_values(["run_id", "measure"])
    return runs, values.to_csv(index=False)


def test_bad_input_never_touches_an_existing_store(trained_store, tmp_path):
    store, _ = trained_store
    before = _snapshot(store)
    bad_spec = tmp_path / "bad.toml"
    bad_spec.write_text("levels = [0.0, 2.0]\n")
    for arguments in (
        ["run", "--levels", "7"],
        ["run", "--model", "nope"],
        ["run", str(bad_spec)],
        ["evaluate", "--measure", "nope"],
        ["evaluate", "--measure", "params", str(bad_spec)],
        ["run", "--device", "tpu"],
        # small-alexnet cannot take mnist1d's 1-D inputs: found before the mlp runs train
        ["run", "--dataset", "mnist1d", "--model", "mlp", "--model", "small-alexnet", "--no-evaluate"],
    ):
        result = CliRunner().invoke(app, [*arguments, "--store", str(store)])
        assert result.exit_code != 0 and result.stderr.splitlines()[-1].startswith("error:"), (arguments, result.output)
    assert _snapshot(store) == before
    assert before[0]  # the store really holds runs


def test_raise_errors_shows_the_exception(monkeypatch):
    monkeypatch.setenv("GENBENCH_RAISE_ERRORS", "1")
    result = CliRunner().invoke(app, ["run", "--levels", "3"])
    assert isinstance(result.exception, SpecError)


def test_list_and_plugins_show_the_builtins():
    measures = CliRunner().invoke(app, ["list", "measures", "--options", "--json"])
    rows = {row["name"]: row for row in json.loads(measures.stdout)}
    assert {"params", "dist-from-init", "inverse-margin", "path-norm", "rademacher", "cross-validation"} <= set(rows)
    assert rows["cross-validation"]["kind"] == "capability"
    assert "draws=3" in rows["rademacher"]["options"]
    for kind, expected in [("models", {"mlp", "cnn"}), ("datasets", {"digits"}), ("corruptions", {"labels"})]:
        listed = CliRunner().invoke(app, ["list", kind, "--json"])
        assert expected <= {row["name"] for row in json.loads(listed.stdout)}
    plugins = CliRunner().invoke(app, ["plugins", "--json"])
    builtin = next(p for p in json.loads(plugins.stdout) if p["name"] == "genbench")
    assert builtin["status"] == "loaded" and "rademacher" in builtin["registered"]["measures"]


@pytest.mark.parametrize("seeds", ["100000000000000000000000", "-1"])
def test_a_seed_outside_0_to_2_63_is_one_line_and_touches_no_store(tmp_path, seeds):
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["run", "--seeds", seeds, "--no-evaluate", "--store", str(store)])
    assert result.exit_code == ExitCode.INVALID_SPEC, result.output
    assert "seeds.0" in result.stderr and "Traceback" not in result.output
    assert not store.exists()


def test_a_grid_over_ten_thousand_runs_is_refused_fast_without_yes(tmp_path):
    levels = ", ".join(str(i / 200_000) for i in range(200_001))
    spec = tmp_path / "huge.toml"
    spec.write_text(f"models = ['mlp']\nseeds = [0]\nlevels = [{levels}]\n")
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["run", str(spec), "--store", str(store)])
    assert result.exit_code == ExitCode.USAGE
    assert "spans 200,001 runs in 1 training groups" in result.stderr and "--yes" in result.stderr
    assert not store.exists()


def test_the_grid_size_is_counted_without_expanding_it():
    from genbench.schemas import ExperimentSpec

    spec = ExperimentSpec.model_validate({
        "seeds": [0, 1],
        "grids": [
            {"models": ["mlp", "cnn"], "corruptions": [{"name": "labels", "levels": [0.0, 1.0]}, "gaussian"], "levels": [1.0]},
            {"models": ["mlp"], "levels": [0.0, 0.5]},
        ],
    })
    assert spec.size() == (1 * 2 * 3 * 2 + 1 * 1 * 2 * 2, 2 * 2 + 1)
    assert spec.size()[0] == len(spec.expand())
