"""Damaged stores are found and repaired: checkpoints with their sha256, `genbench store check
[--repair]`, `run` retraining a run whose checkpoint is gone, the leaderboard's warning."""

from __future__ import annotations

import pytest
from measure_helpers import TINY_GRID
from typer.testing import CliRunner

import genbench
from genbench.cli.main import app
from genbench.errors import ExitCode

SPEC = TINY_GRID


@pytest.fixture
def trained(tmp_path, one_thread):
    store = tmp_path / "store"
    genbench.run(SPEC, store=store)
    return store


def test_each_checkpoint_is_stored_with_its_sha256(trained):
    import hashlib

    target = genbench.open_store(trained, create=False)
    run_id = target.run_ids()[0]
    recorded = target.checksums(run_id)
    assert set(recorded) == {"init", "final"}
    assert recorded["final"] == hashlib.sha256(target.checkpoint_path(run_id, "final").read_bytes()).hexdigest()
    assert target.check().clean


def test_check_finds_missing_truncated_and_orphan_files_and_repair_lets_run_retrain_exactly_those(trained):
    target = genbench.open_store(trained, create=False)
    first, second, third = target.run_ids()
    before = target.load_checkpoint(first, "final")
    target.checkpoint_path(first, "final").unlink()  # missing
    path = target.checkpoint_path(second, "init")
    path.write_bytes(path.read_bytes()[:50])  # truncated
    (trained / "checkpoints" / "deadbeef00000000").mkdir()  # no run owns it
    (trained / "checkpoints" / third / "final.123.abc.tmp").write_bytes(b"x")  # half-written

    board = genbench.leaderboard(trained)
    assert any("1 of the board's runs have missing or empty checkpoints" in note for note in board.attrs["notes"])

    checked = CliRunner().invoke(app, ["store", "check", "--store", str(trained)])
    assert checked.exit_code == ExitCode.STORE_ERROR
    assert f"damaged run {first}: final checkpoint missing" in checked.stdout
    assert f"damaged run {second}: init checkpoint" in checked.stdout
    assert "orphan checkpoint folder" in checked.stdout and "half-written file" in checked.stdout
    assert "2 damaged runs, 1 orphan folders, 1 half-written files" in checked.stderr
    assert set(target.run_ids()) == {first, second, third}  # checking changes nothing

    repaired = CliRunner().invoke(app, ["store", "check", "--repair", "--store", str(trained)])
    assert repaired.exit_code == 0, repaired.output
    assert target.run_ids() == [third]
    spec = trained.parent / "spec.toml"
    spec.write_text(
        'datasets = [{ name = "digits", subset = 120 }]\nmodels = [{ name = "mlp", hidden = [16] }]\n'
        'levels = [0.0, 0.5, 1.0]\nseeds = [0]\nmeasures = ["params"]\n'
        '[train]\nlr = 0.1\nschedule = "constant"\nmax_steps = 40\n'
    )
    again = CliRunner().invoke(app, ["run", str(spec), "--store", str(trained), "--format", "json"])
    assert again.exit_code == 0, again.output
    assert "1 of 3 runs were already in the store; trained 2" in again.stderr
    assert set(target.run_ids()) == {first, second, third}
    after = target.load_checkpoint(first, "final")
    assert all((after[name] == before[name]).all() for name in before)  # the same run, bit for bit
    assert CliRunner().invoke(app, ["store", "check", "--store", str(trained)]).exit_code == 0


def test_run_retrains_a_run_whose_checkpoint_vanished(trained):
    target = genbench.open_store(trained, create=False)
    run_id = target.run_ids()[1]
    target.checkpoint_path(run_id, "final").unlink()
    summary = genbench.api.Engine(target).train(genbench.api.resolve_runs(genbench.api.load_spec(SPEC)))
    assert [r.run_id for r in summary.trained] == [run_id] and summary.already_done == 2
    assert target.check().clean


def test_two_runs_of_one_grid_at_once_both_finish_and_store_each_run_once(tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "spec.toml"
    spec.write_text(
        'datasets = [{ name = "digits", subset = 120 }]\nmodels = [{ name = "mlp", hidden = [16] }]\n'
        'levels = [0.0, 0.5, 1.0]\nseeds = [0, 1]\nmeasures = ["params", "param-norm"]\n'
        '[train]\nlr = 0.1\nschedule = "constant"\nmax_steps = 40\n'
    )
    store = tmp_path / "store"
    command = [sys.executable, "-c", "from genbench.cli.main import main; main()", "run", str(spec), "--store", str(store), "--format", "csv"]
    environment = {"OMP_NUM_THREADS": "1", "PATH": "", "GENBENCH_LOAD_PLUGINS": ""}
    import os

    environment = {**os.environ, **environment}
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment) for _ in range(2)]
    outcomes = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err.decode()[-500:] for _, err in outcomes]
    target = genbench.open_store(store, create=False)
    assert len(target.run_ids()) == 6 and len(set(target.run_ids())) == 6
    values = target.measure_values()
    assert len(values) == 12 and not values.duplicated(["run_id", "measure", "version", "options_hash"]).any()
    assert target.check().clean


def test_dry_run_counts_the_work_and_prices_it_from_the_store_without_touching_it(trained):
    target = genbench.open_store(trained, create=False)
    removed = target.run_ids()[0]
    target.remove_runs([removed])
    spec = trained.parent / "spec.toml"
    spec.write_text(
        'datasets = [{ name = "digits", subset = 120 }]\nmodels = [{ name = "mlp", hidden = [16] }]\n'
        'levels = [0.0, 0.5, 1.0]\nseeds = [0]\nmeasures = ["params", "param-norm"]\n'
        '[train]\nlr = 0.1\nschedule = "constant"\nmax_steps = 40\n'
    )
    result = CliRunner().invoke(app, ["run", str(spec), "--store", str(trained), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "3 runs (2 already in the store), 1 to train in 1 training groups" in result.stdout
    # params is missing on the removed run only; param-norm was never computed: 1 + 3 values
    assert "measure values to compute: 4" in result.stdout
    assert "not counted, no recorded cost: 1 measures (param-norm)" in result.stdout
    from genbench.engine import resolve_measures, resolve_runs
    from genbench.engine.plan import plan_run

    plan = plan_run(target, resolve_runs(genbench.api.load_spec(spec)), resolve_measures(
        genbench.api.measure_refs(["params", "param-norm"])))
    runs, values = target.runs(), target.measure_values()
    assert (plan.to_train, plan.groups, plan.values, plan.unpriced) == (1, 1, 4, ["param-norm"])
    assert plan.train_seconds == pytest.approx(runs["wall_time"].median())  # one run at the stored median
    assert plan.evaluate_seconds == pytest.approx(values.loc[values["measure"] == "params", "seconds"].median())
    assert len(target.run_ids()) == 2 and len(target.measure_values()) == 2  # nothing trained or computed
    fresh = trained.parent / "fresh"
    empty = CliRunner().invoke(app, ["run", str(spec), "--store", str(fresh), "--dry-run"])
    assert empty.exit_code == 0 and "estimated training: unknown" in empty.stdout and not fresh.exists()
