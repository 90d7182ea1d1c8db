"""Zhang et al. 2017, Figure 1a, on digits: every randomization test is fitted, and
random pixels and Gaussian inputs are fitted faster than random labels."""

from __future__ import annotations

import pytest

import genbench
from genbench.schemas import ComponentRef, ExperimentSpec, TrainConfig

KINDS = ["labels", "random-labels", "shuffled-pixels", "random-pixels", "gaussian"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    spec = ExperimentSpec(
        name="figure-1a",
        models=[ComponentRef(name="mlp")],
        corruptions=[
            ComponentRef(name="labels", options={"levels": [0.0]}),  # true labels
            *[ComponentRef(name=kind) for kind in KINDS[1:]],
        ],
        levels=[1.0],
        seeds=[0, 1],
        train=TrainConfig(lr=0.1, schedule="constant", max_steps=4_000),
        measures=[],
    )
    store = genbench.open_store(tmp_path_factory.mktemp("fig1") / "store")
    genbench.run(spec, store=store, evaluate=False)
    return store.runs()


def test_every_randomization_test_is_fitted(runs):
    assert sorted(set(runs["corruption"])) == sorted(KINDS)
    assert (runs["status"] == "converged").all()
    assert (runs["train_accuracy"] == 1.0).all()


def test_random_pixels_and_gaussian_fit_faster_than_random_labels(runs):
    steps = runs.groupby("corruption")["steps"].mean()
    assert steps["random-pixels"] * 2 < steps["random-labels"]
    assert steps["gaussian"] * 2 < steps["random-labels"]
    assert steps["labels"] < steps["random-labels"]  # true labels fit fastest of the label tests


def test_only_undamaged_inputs_and_labels_generalize(runs):
    accuracy = runs.groupby("corruption")["test_accuracy"].mean()
    assert accuracy["labels"] > 0.9
    assert accuracy["shuffled-pixels"] > 0.9  # one fixed permutation, train and test alike: an MLP does not mind
    assert accuracy["random-labels"] < 0.2
    assert accuracy["gaussian"] < 0.25 and accuracy["random-pixels"] < 0.3
