"""Optimization measures: steps to a training cross-entropy (from hand-made loss curves and from
a real retraining) and the minibatch gradient noise (against numpy per-batch gradients)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from genbench.engine import Retrainer, RetrainingBatch
from genbench.errors import NotApplicable
from genbench.measures.optimization import (
    GradientNoise,
    GradientNoiseOptions,
    LossHistory,
    StepsBetween,
    StepsBetweenOptions,
    StepsToFit,
    StepsToFitOptions,
    first_crossing,
    minibatch_gradient_deviations,
    steps_between,
)
from genbench.plugins import load_plugins
from genbench.schemas import TrainConfig
from measure_helpers import RecordingRetrainer, make_ctx, make_dataset, make_run, seeded_mlp, train_networks

FAST = settings(max_examples=15, deadline=None)


#: small tensor work: one intra-op thread (see conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


class NoRetraining:
    """A retrainer that must not be used."""

    def train(self, jobs):
        raise AssertionError("the measure retrained although the recorded curve was enough")


def tiny_ctx(curve, status="converged", steps=None, retrainer=None):
    model = seeded_mlp([2, 4, 2], 0)
    ctx = make_ctx(model, torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), 2)
    ctx.training_log = ctx.training_log.model_copy(
        update={"loss_curve": list(curve), "status": status, "steps": steps if steps is not None else curve[-1][0]}
    )
    ctx.retrainer = retrainer if retrainer is not None else NoRetraining()
    return ctx


# ---------------------------------------------------------------------------
# crossings of hand-made curves
# ---------------------------------------------------------------------------


def test_hand_made_curve_reaching_both_thresholds():
    ctx = tiny_ctx([(10, 2.1), (20, 0.5), (30, 0.1), (40, 0.04), (50, 0.011), (60, 0.0099), (70, 0.002)])
    assert StepsToFit().compute(ctx, StepsToFitOptions()).value == 30  # 0.1 ≤ 0.1 counts as reached
    assert StepsBetween().compute(ctx, StepsBetweenOptions()).value == 60 - 30
    assert StepsToFit().compute(ctx, StepsToFitOptions(loss_threshold=0.05)).value == 40


def test_make_ctx_default_curve():
    ctx = make_ctx(seeded_mlp([2, 3, 2], 0), torch.zeros(2, 2), torch.tensor([0, 1]), 2)
    ctx.retrainer = NoRetraining()
    # loss_curve=[(10, 0.7), (60, 0.1), (120, 0.009)]
    assert StepsToFit().compute(ctx, StepsToFitOptions()).value == 60
    assert StepsBetween().compute(ctx, StepsBetweenOptions()).value == 60


def test_budget_without_crossing_is_infinite_without_retraining():
    ctx = tiny_ctx([(10, 2.0), (20, 1.5), (30, 1.2)], status="budget", steps=30)
    ctx.spec = ctx.spec.model_copy(update={"train": TrainConfig(max_steps=30)})
    assert StepsToFit().compute(ctx, StepsToFitOptions()).value == math.inf
    assert StepsBetween().compute(ctx, StepsBetweenOptions()).value == math.inf


def test_diverged_training_has_no_step_count():
    ctx = tiny_ctx([(10, 2.0), (20, math.nan)], status="diverged")
    with pytest.raises(NotApplicable, match="diverged before reaching cross-entropy 0.1"):
        StepsToFit().compute(ctx, StepsToFitOptions())
    with pytest.raises(NotApplicable, match="diverged before reaching cross-entropy 0.01"):
        StepsBetween().compute(ctx, StepsBetweenOptions())


def test_crossings_of_histories():
    curve = ((5, 1.0), (10, 0.3), (15, 0.08))
    assert first_crossing(LossHistory(curve, "converged", 15), 0.1) == 15
    assert first_crossing(LossHistory(curve, "converged", 15), 0.05) is None
    # stopped by the trainer's full-set check at CE ≤ 0.05, before an epoch mean got there
    stopped = LossHistory(curve, "converged", 15, stopped_at_loss=0.05)
    assert first_crossing(stopped, 0.05) == 15 and first_crossing(stopped, 0.01) is None
    assert steps_between(stopped, 0.1, 0.05) == 0
    assert steps_between(LossHistory(curve, "budget", 15), 0.1, 0.01) == math.inf
    assert steps_between(LossHistory(curve, "budget", 15), None, 0.1) == 15


@FAST
@given(losses=st.lists(st.floats(0.0001, 5.0), min_size=1, max_size=30), threshold=st.floats(0.001, 1.0))
def test_first_crossing_matches_a_plain_scan(losses, threshold):
    curve = tuple((11 * (i + 1), loss) for i, loss in enumerate(losses))
    expected = next((step for step, loss in curve if loss <= threshold), None)
    assert first_crossing(LossHistory(curve, "budget", curve[-1][0]), threshold) == expected


def test_invalid_thresholds_are_a_clear_error():
    ctx = tiny_ctx([(10, 0.5)])
    with pytest.raises(Exception, match="at most"):
        StepsBetween().compute(ctx, StepsBetweenOptions(start=0.01, end=0.1))


# ---------------------------------------------------------------------------
# retraining to the threshold
# ---------------------------------------------------------------------------


def separable_problem(n: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(n, 6)), dtype=torch.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def recorded_run(x, y, train: TrainConfig, seed: int = 3):
    """A run trained with the recipe (stopped at 100 % training accuracy) and its context."""
    run = make_run([8], train=train, seed=seed)
    retrainer = Retrainer(run, make_dataset(x, y, 2), torch.device("cpu"))
    [network] = train_networks(retrainer, y[None], [seed])
    ctx = make_ctx(network.model, x, y, 2, run=run)
    ctx.training_log = network.log
    ctx.retrainer = RecordingRetrainer(retrainer)
    return ctx, network.log


def test_retraining_continues_the_recorded_curve_and_is_shared():
    x, y = separable_problem()
    train = TrainConfig(lr=0.05, momentum=0.9, schedule="constant", batch_size=16, max_steps=3_000)
    ctx, outcome = recorded_run(x, y, train)
    assert outcome.status == "converged"
    assert all(loss > 0.01 for _, loss in outcome.loss_curve)  # the recorded curve stops short of 0.01

    # both measures ask for the same job: the evaluate stage's batch trains it once
    batch = RetrainingBatch(torch.device("cpu"))
    dataset = make_dataset(x, y, 2)
    measures = [(StepsBetween(), StepsBetweenOptions()), (StepsToFit(), StepsToFitOptions())]
    tickets = [batch.add(ctx.spec, dataset, measure.jobs(ctx, options)) for measure, options in measures]
    assert batch.distinct_jobs == 1
    batch.train()
    between, to_fit = (measure.finish(ctx, options, batch.networks(t)) for (measure, options), t in zip(measures, tickets))
    # and each measure alone retrains through ctx.retrainer, to the same value
    assert StepsBetween().compute(ctx, StepsBetweenOptions()) == between
    call = ctx.retrainer.calls[0]
    assert call["seeds"] == [ctx.spec.seed] and torch.equal(call["labels"][0], y)
    assert call["train"].stop == "loss" and call["train"].loss_threshold == 0.01
    retrained = call["networks"][0].log

    # same seed, same recipe: the retraining repeats the recorded run, then goes on
    recorded_curve = outcome.loss_curve
    assert [s for s, _ in retrained.loss_curve[: len(recorded_curve)]] == [s for s, _ in recorded_curve]
    np.testing.assert_allclose(
        [v for _, v in retrained.loss_curve[: len(recorded_curve)]], [v for _, v in recorded_curve], rtol=1e-5
    )
    assert retrained.status == "converged"

    # the crossings, read off the retrained curve by a plain scan
    def crossing(threshold):
        hit = next((s for s, v in retrained.loss_curve if v <= threshold), None)
        return hit if hit is not None else retrained.steps  # stopped by the full-set check

    assert between.value == crossing(0.01) - crossing(0.1)
    assert between.details["retrained"] == 1
    recorded_hit = next((s for s, v in recorded_curve if v <= 0.1), None)
    assert to_fit.value == (recorded_hit if recorded_hit is not None else crossing(0.1))


def test_retraining_that_runs_out_of_budget_is_infinite():
    x, y = separable_problem(seed=1)
    train = TrainConfig(lr=0.05, schedule="constant", batch_size=16, max_steps=3_000)
    ctx, outcome = recorded_run(x, y, train)
    assert outcome.status == "converged" and outcome.steps < 200
    # a retraining budget that ends before cross-entropy 0.01 (the recorded run never got there)
    estimate = StepsBetween().compute(ctx, StepsBetweenOptions(max_steps=outcome.steps + 3))
    assert estimate.value == math.inf and estimate.details["status"] == "budget"


# ---------------------------------------------------------------------------
# gradient noise
# ---------------------------------------------------------------------------


def numpy_linear_gradient(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∇ of the mean softmax cross-entropy of logits xWᵀ + b, flattened (W then b)."""
    logits = x @ w.T + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return np.concatenate([(p.T @ x / len(y)).ravel(), p.mean(axis=0)])


def linear_problem(seed: int, n: int = 10, d: int = 3, classes: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, classes, size=n)
    model = nn.Linear(d, classes)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(rng.normal(size=(classes, d))))
        model.bias.copy_(torch.tensor(rng.normal(size=classes)))
    return model.double(), x, y


def test_per_batch_deviations_against_numpy():
    model, x, y = linear_problem(0)
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    batches = torch.tensor([[0, 1, 2], [3, 4, 5], [9, 2, 7], [8, 6, 0]])
    full = numpy_linear_gradient(w, b, x, y)
    expected = [np.sum((numpy_linear_gradient(w, b, x[rows], y[rows]) - full) ** 2) for rows in batches.numpy()]
    deviations = minibatch_gradient_deviations(model, torch.tensor(x), torch.tensor(y), batches, chunk=3)
    np.testing.assert_allclose(deviations.numpy(), expected, rtol=1e-9)


def test_gradient_noise_estimates_the_expectation_over_all_batches():
    model, x, y = linear_problem(1, n=8)
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    full = numpy_linear_gradient(w, b, x, y)
    every = [
        np.sum((numpy_linear_gradient(w, b, x[list(c)], y[list(c)]) - full) ** 2)
        for c in itertools.combinations(range(8), 3)
    ]
    ctx = make_ctx(model, torch.tensor(x), torch.tensor(y), 3)
    estimate = GradientNoise().compute(ctx, GradientNoiseOptions(batches=600, batch_size=3))
    assert estimate.details["batch_size"] == 3 and estimate.details["batches"] == 600
    assert abs(estimate.value - np.mean(every)) < 4 * estimate.details["stderr"]
    assert estimate.details["full_gradient_sq_norm"] == pytest.approx(np.sum(full**2), rel=1e-9)
    # reproducible: the batches come from the context's generator
    fresh = make_ctx(model, torch.tensor(x), torch.tensor(y), 3)
    again = GradientNoise().compute(fresh, GradientNoiseOptions(batches=600, batch_size=3))
    assert again.value == estimate.value


def test_full_batch_has_no_noise_and_recipe_batch_size_is_the_default():
    model, x, y = linear_problem(2, n=6)
    ctx = make_ctx(model, torch.tensor(x), torch.tensor(y), 3)
    assert GradientNoise().compute(ctx, GradientNoiseOptions(batch_size=6)).value == pytest.approx(0.0, abs=1e-20)
    ctx.spec = ctx.spec.model_copy(update={"train": TrainConfig(batch_size=4)})
    assert GradientNoise().compute(ctx, GradientNoiseOptions()).details["batch_size"] == 4


def test_gradient_noise_of_a_diverged_model_is_nan():
    model, x, y = linear_problem(3)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    ctx = make_ctx(model, torch.tensor(x), torch.tensor(y), 3)
    assert math.isnan(GradientNoise().compute(ctx, GradientNoiseOptions(batches=4, batch_size=2)).value)


@pytest.mark.parametrize("name", ["mlp-1x512", "small-alexnet", "small-inception", "cnn"])
def test_gradient_noise_runs_on_registered_models(name):
    factory = load_plugins(entry_points=[]).registry("models").get(name)
    torch.manual_seed(0)
    model = factory.build((3, 8, 8), 4, factory.Options())
    if name == "small-inception":  # batch norm with non-trivial running statistics
        model.train()
        with torch.no_grad():
            model(torch.randn(16, 3, 8, 8))
    x, y = torch.randn(12, 3, 8, 8), torch.arange(12) % 4
    ctx = make_ctx(model, x, y, 4)
    estimate = GradientNoise().compute(ctx, GradientNoiseOptions(batches=4, batch_size=5))
    assert estimate.value > 0 and math.isfinite(estimate.value)
