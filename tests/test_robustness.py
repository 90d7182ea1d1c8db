"""Diverged runs, failing measures and what a measure may see."""

from __future__ import annotations

import json
import math

import pytest
import torch

import genbench
from genbench.plugins import registry
from genbench.engine import Engine, resolve_measures, resolve_runs
from genbench.report.leaderboard import render
from genbench.schemas import ComponentRef, ExperimentSpec, TrainConfig


@pytest.fixture(scope="module")
def diverged_store(tmp_path_factory):
    spec = ExperimentSpec(
        models=[ComponentRef(name="mlp", options={"hidden": [16]})],
        levels=[0.0, 1.0],
        seeds=[0],
        train=TrainConfig(lr=1e12, schedule="constant", max_steps=50),
        measures=[ComponentRef(name=m) for m in ("params", "inverse-margin", "path-norm", "dist-from-init")],
    )
    store = genbench.open_store(tmp_path_factory.mktemp("diverged") / "store")
    board = genbench.run(spec, store=store)
    return store, board


def test_a_diverged_run_is_recorded_and_the_leaderboard_still_renders(diverged_store):
    store, board = diverged_store
    runs = store.runs()
    assert set(runs["status"]) == {"diverged"}
    assert runs["train_accuracy"].isna().all()
    values = store.measure_values().set_index("measure")
    assert math.isnan(values.loc["inverse-margin", "value"].iloc[0])  # no margin on a NaN network
    for fmt in ("table", "markdown", "csv", "json"):
        assert "params" in render(board, fmt)
    json.loads(render(board, "json"))  # valid JSON even with NaN/inf values


def test_infinite_values_survive_json(diverged_store):
    _, board = diverged_store
    board = board.copy()
    board.loc[0, "value_noise"] = math.inf
    assert json.loads(render(board, "json"))["rows"][0]["value_noise"] == "inf"


class Exploding:
    name = "exploding"
    kind = "complexity"
    version = "1"
    requires = frozenset()
    Options = genbench.Options

    def compute(self, ctx, options):
        raise genbench.errors.MeasureError("this measure always fails")


def test_a_failing_measure_is_recorded_as_nan_and_the_others_carry_on(tmp_path, capsys):
    spec = ExperimentSpec(models=[ComponentRef(name="mlp", options={"hidden": [16]})], levels=[0.0], seeds=[0],
                          train=TrainConfig(lr=0.1, schedule="constant", max_steps=30))
    store = genbench.open_store(tmp_path / "store")
    engine = Engine(store)
    engine.train(resolve_runs(spec))
    values = engine.evaluate([(Exploding(), genbench.Options()), *resolve_measures([ComponentRef(name="params")])])
    by_name = {v.measure: v for v in values}
    assert math.isnan(by_name["exploding"].value) and "always fails" in by_name["exploding"].error
    assert by_name["params"].value > 0
    # a failed value is computed again next time; a good one is not
    again = engine.evaluate([(Exploding(), genbench.Options()), *resolve_measures([ComponentRef(name="params")])])
    assert [v.measure for v in again] == ["exploding"]


def test_a_measure_context_holds_no_test_data(tmp_path):
    spec = ExperimentSpec(models=[ComponentRef(name="mlp", options={"hidden": [16]})], levels=[0.0], seeds=[0],
                          train=TrainConfig(lr=0.1, schedule="constant", max_steps=30))
    store = genbench.open_store(tmp_path / "store")
    engine = Engine(store)
    run = resolve_runs(spec)[0]
    engine.train([run])
    # a measure that declares every requirement sees the most
    measure = registry("measures").get("cross-validation")
    context = engine.context(run, store.run_result(run.run_id), measure)
    tensors = [value for value in vars(context).values() if isinstance(value, torch.Tensor)]
    tensors += [value for value in vars(context.retrainer.dataset).values() if isinstance(value, torch.Tensor)]
    assert all(t.shape[0] in (0, 1348) for t in tensors)  # the 449 test examples are nowhere
    assert context.retrainer.dataset.num_test == 0
