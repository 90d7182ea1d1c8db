"""The whole pipeline on a small real grid: the randomization-test phenomenon appears."""

from __future__ import annotations

import pytest

import genbench
from conftest import FAST_TRAIN
from genbench.schemas import ComponentRef, ExperimentSpec

LEVELS = [0.0, 0.5, 1.0]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    store = genbench.open_store(tmp_path_factory.mktemp("e2e") / "store")
    spec = ExperimentSpec(
        name="e2e",
        models=[ComponentRef(name="mlp", options={"hidden": [128]}), ComponentRef(name="mlp")],
        levels=LEVELS,
        seeds=[0, 1],
        train=FAST_TRAIN,
        measures=[
            ComponentRef(name=name)
            for name in (
                "params", "dist-from-init", "inverse-margin", "path-norm", "path-norm-over-margin",
                "pacbayes-flatness", "rademacher", "cross-validation", "pacbayes-bound",
            )
        ],
    )
    board = genbench.run(spec, store=store)
    return store, board


def test_networks_fit_every_labeling(grid):
    store, _ = grid
    runs = store.runs()
    assert len(runs) == 12
    assert (runs["status"] == "converged").all()
    assert (runs["train_accuracy"] == 1.0).all()


def test_clean_test_accuracy_falls_to_chance_as_labels_become_noise(grid):
    store, _ = grid
    accuracy = store.runs().groupby("level")["test_accuracy"].mean()
    assert accuracy[0.0] > 0.9
    assert accuracy[0.0] > accuracy[0.5] > accuracy[1.0]
    assert accuracy[1.0] < 0.2


def test_measures_show_the_phenomenon(grid):
    store, board = grid
    values = store.measure_values().merge(store.runs()[["run_id", "level"]], on="run_id")
    by = values.pivot_table(index="level", columns="measure", values="value", aggfunc="mean")
    assert by.loc[1.0, "cross-validation"] < 0.05  # capability ≈ 0 where labels are noise
    assert by.loc[0.0, "cross-validation"] > 0.8
    assert (values.loc[values["measure"] == "rademacher", "value"] > 0.95).all()  # the class memorizes
    assert by.loc[1.0, "dist-from-init"] > by.loc[0.0, "dist-from-init"]
    assert by.loc[1.0, "path-norm-over-margin"] > by.loc[0.0, "path-norm-over-margin"]
    assert by.loc[1.0, "pacbayes-flatness"] > by.loc[0.0, "pacbayes-flatness"]  # flatter minima on real labels
    bound_at_noise = values.loc[(values["level"] == 1.0) & (values["measure"] == "pacbayes-bound"), "value"]
    assert len(bound_at_noise) == 4 and (bound_at_noise == 0).all()  # a valid bound certifies nothing
    rows = board.set_index("measure")
    assert rows.loc["pacbayes-bound", "axiom"] == "pass"
    assert rows.loc["cross-validation", "axiom"] == "pass"
    assert rows.loc["cross-validation", "tau_gap"] > 0.5
    oracle = rows.loc["oracle σ=0.02"]
    assert oracle["reference"] and oracle["tau_gap"] > 0.7


def test_leaderboard_and_evaluate_from_python(grid):
    store, _ = grid
    new = genbench.evaluate(["params"], store=store)
    assert new.empty  # already computed: nothing recomputed
    board = genbench.leaderboard(store)
    assert list(board["tau_gap"].dropna()) == sorted(board["tau_gap"].dropna(), reverse=True)
    assert set(board["kind"]) == {"complexity", "capability", "reference"}
