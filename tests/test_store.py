from __future__ import annotations

import math
import sqlite3

import pytest
import torch

from conftest import FAST_TRAIN
from genbench.engine import Engine, NullReporter, resolve_runs
from genbench.errors import StoreError
from genbench.schemas import ComponentRef, ExperimentSpec, MeasureValue
from genbench.store import Store

SPEC = ExperimentSpec(
    models=[ComponentRef(name="mlp", options={"hidden": [64]})],
    levels=[0.0, 0.5, 1.0],
    seeds=[0],
    train=FAST_TRAIN.model_copy(update={"max_steps": 300}),
)


class InterruptAfter(NullReporter):
    def __init__(self, runs: int) -> None:
        self.left = runs

    def run_done(self, run, result) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


def test_round_trip_of_runs_checkpoints_and_values(store_path):
    runs = resolve_runs(SPEC)
    with Store(store_path) as store:
        summary = Engine(store).train(runs)
        assert len(summary.trained) == 3
        frame = store.runs()
        assert sorted(frame["run_id"]) == sorted(r.run_id for r in runs)
        assert set(frame["level"]) == {0.0, 0.5, 1.0}
        run = runs[1]
        assert store.run_spec(run.run_id) == run
        final = store.load_checkpoint(run.run_id, "final")
        initial = store.load_checkpoint(run.run_id, "init")
        assert set(final) == set(initial) == {"1.weight", "1.bias", "3.weight", "3.bias"}
        assert not torch.equal(final["1.weight"], initial["1.weight"])
        value = MeasureValue(run_id=run.run_id, measure="m", version="1", options_hash="h", options={"a": 1},
                             value=math.inf, seconds=0.5)
        store.save_measure_value(value)
        store.save_measure_value(MeasureValue(**{**value.model_dump(), "measure": "n", "value": math.nan, "error": "boom", "status": "failed"}))
    with Store(store_path, create=False) as reopened:
        values = reopened.measure_values().set_index("measure")
        assert values.loc["m", "value"] == math.inf
        assert math.isnan(values.loc["n", "value"]) and values.loc["n", "error"] == "boom"
        assert values.loc["m", "options"] == {"a": 1}
        # the failed value is computed again, the others are not
        assert values.loc["n", "status"] == "failed" and values.loc["m", "status"] == "ok"
        assert reopened.has_measure_value(run.run_id, "m", "1", "h")
        assert not reopened.has_measure_value(run.run_id, "n", "1", "h")


def test_store_uses_wal_and_safetensors_files(store_path):
    with Store(store_path) as store:
        Engine(store).train(resolve_runs(SPEC)[:1])
    connection = sqlite3.connect(store_path / "genbench.sqlite")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    files = list((store_path / "checkpoints").rglob("*"))
    assert {f.suffix for f in files if f.is_file()} == {".safetensors"}


def test_same_spec_again_trains_nothing(store_path):
    runs = resolve_runs(SPEC)
    with Store(store_path) as store:
        Engine(store).train(runs)
        again = Engine(store).train(runs)
    assert again.already_done == 3 and again.trained == []


def test_interrupted_training_resumes_with_the_runs_it_finished(store_path):
    runs = resolve_runs(SPEC)
    with Store(store_path) as store:
        with pytest.raises(KeyboardInterrupt):
            Engine(store, reporter=InterruptAfter(2)).train(runs)
        finished = set(store.run_ids())
        assert len(finished) == 2
        before = {rid: store.load_checkpoint(rid, "final")["1.weight"].clone() for rid in finished}
    with Store(store_path) as store:
        summary = Engine(store).train(runs)
        assert summary.already_done == 2 and len(summary.trained) == 1
        assert set(store.run_ids()) == {r.run_id for r in runs}
        for rid, weight in before.items():  # nothing already stored was touched
            assert torch.equal(store.load_checkpoint(rid, "final")["1.weight"], weight)


def test_bad_store_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(StoreError, match="no genbench store"):
        Store(tmp_path / "missing", create=False)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        Store(not_a_folder)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "genbench.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        Store(broken)


def test_truncated_checkpoint_is_a_store_error(store_path):
    with Store(store_path) as store:
        run = resolve_runs(SPEC)[0]
        Engine(store).train([run])
        path = store.checkpoint_path(run.run_id, "final")
        path.write_bytes(path.read_bytes()[:40])
        with pytest.raises(StoreError, match="checkpoint unreadable"):
            store.load_checkpoint(run.run_id, "final")


def test_measure_details_round_trip_and_older_stores_gain_the_columns(store_path):
    value = MeasureValue(
        run_id="r1", measure="m", version="1", options_hash="h", options={}, value=0.5, seconds=0.1,
        details={"stderr": 0.02, "sigma": 0.3},
    )
    with Store(store_path) as store:
        store.save_measure_value(value)
        frame = store.measure_values()
    assert frame.loc[0, "details"] == {"sigma": 0.3, "stderr": 0.02}

    older = store_path.parent / "older"
    older.mkdir()
    connection = sqlite3.connect(older / "genbench.sqlite")
    connection.executescript(
        "CREATE TABLE measure_values (run_id TEXT, measure TEXT, version TEXT, options_hash TEXT, "
        "options_json TEXT, value REAL, seconds REAL, error TEXT, created_at REAL, "
        "PRIMARY KEY (run_id, measure, version, options_hash));"
        "INSERT INTO measure_values VALUES ('r0', 'm', '1', 'h', '{}', 1.5, 0.1, NULL, 0);"
        "INSERT INTO measure_values VALUES ('r0', 'n', '1', 'h', '{}', NULL, 0.1, 'boom', 0);"
    )
    connection.commit()
    connection.close()
    with Store(older) as store:
        store.save_measure_value(value)
        frame = store.measure_values()
    assert frame["value"].tolist()[::2] == [1.5, 0.5]
    assert frame["details"].tolist() == [{}, {}, {"sigma": 0.3, "stderr": 0.02}]
    # rows written before status, kind and default_options existed: status from the error, the rest unknown
    assert frame["status"].tolist() == ["ok", "failed", "ok"]
    assert frame["kind"].tolist() == [None, None, None] and frame["default_options"].tolist() == [None, None, None]
    # and their provenance is not recorded
    for column in ("genbench_version", "plugin", "plugin_version"):
        assert frame[column].tolist() == [None, None, None]
    with Store(older) as store:
        assert store.has_measure_value("r0", "m", "1", "h") and not store.has_measure_value("r0", "n", "1", "h")
