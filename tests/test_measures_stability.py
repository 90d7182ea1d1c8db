"""Tests of uniform-stability: the retrainings it asks for, and its value recomputed in plain
numpy from the recorded retrained networks, on tiny MLPs trained by the real Retrainer."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genbench.engine import Retrainer
from genbench.measures.stability import UniformStability, UniformStabilityOptions, replacement_pairs
from genbench.schemas import TrainConfig
from measure_helpers import CPU, RecordingRetrainer, make_ctx, make_dataset, make_run, numpy_mlp, train_networks

TRAIN = TrainConfig(lr=0.1, schedule="constant", max_steps=60, batch_size=8)
SEED = 7


def toy_data(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def trained_context(x: torch.Tensor, y: torch.Tensor, hidden=(8,), seed: int = SEED):
    """A context whose model is the run's own training: the Retrainer with the run's seed."""
    run = make_run(list(hidden), TRAIN, seed=seed)
    retrainer = Retrainer(run, make_dataset(x, y, 3), CPU)
    model = train_networks(retrainer, y[None], [seed])[0].model
    ctx = make_ctx(model, x, y, 3, run=run)
    return ctx


def numpy_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probabilities[np.arange(len(labels)), labels]


def same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def close_weights(a, b) -> bool:
    return all(
        torch.allclose(p, q, rtol=1e-4, atol=1e-5) for p, q in zip(a.state_dict().values(), b.state_dict().values())
    )


@pytest.fixture(scope="module")
def recorded():
    x, y = toy_data()
    ctx = trained_context(x, y)
    recorder = RecordingRetrainer(ctx.retrainer)
    ctx.retrainer = recorder
    estimate = UniformStability().compute(ctx, UniformStabilityOptions(replacements=3))
    return dict(x=x, y=y, ctx=ctx, recorder=recorder, estimate=estimate)


def test_retraining_on_the_unmodified_set_reproduces_the_runs_model():
    x, y = toy_data()
    ctx = trained_context(x, y)
    # alone, and inside an ensemble next to replaced sets, as the measure trains
    alone = train_networks(ctx.retrainer, y[None], [SEED])[0].model
    rows = torch.arange(len(x)).repeat(3, 1)
    rows[1, 4], rows[2, 9] = 11, 0
    in_ensemble = train_networks(ctx.retrainer, y.expand(3, -1), [SEED] * 3, train_indices=rows)[0].model
    assert same_weights(alone, ctx.model)
    # an ensemble batches its members through vmap, a run alone does not: equal to rounding
    assert close_weights(in_ensemble, ctx.model)


def replaced_pairs(rows: torch.Tensor) -> list[tuple[int, int]]:
    """(i, j) of every row that is arange(n) with exactly one position i set to j ≠ i."""
    n = rows.shape[1]
    pairs = []
    for row in rows:
        changed = np.flatnonzero(row.numpy() != np.arange(n))
        assert len(changed) == 1  # arange(n) with one position replaced
        i = int(changed[0])
        j = int(row[i])
        assert j != i and 0 <= j < n
        pairs.append((i, j))
    return pairs


def test_one_ensemble_of_replaced_sets_with_the_runs_seed(recorded):
    (call,) = recorded["recorder"].calls
    n = len(recorded["x"])
    # the unmodified set first (the retrained A(S)), then one row per replacement
    assert call["seeds"] == [SEED] * 4 and call["num_classes"] == 3
    for row in call["labels"]:
        assert torch.equal(row, recorded["y"])  # the labels the model was trained on
    assert torch.equal(call["train_indices"][0], torch.arange(n))
    replaced = replaced_pairs(call["train_indices"][1:])
    assert len({i for i, _ in replaced}) == 3  # distinct replaced examples
    details = recorded["estimate"].details
    assert [details[f"pair_{r}"] for r in range(3)] == [f"{i}->{j}" for i, j in replaced]


def test_value_recomputed_from_the_retrained_models(recorded):
    x, y = recorded["x"].numpy(), recorded["y"].numpy()
    (call,) = recorded["recorder"].calls
    reference = numpy_cross_entropy(numpy_mlp(call["models"][0], x), y)
    maxima = [float(np.max(np.abs(numpy_cross_entropy(numpy_mlp(m, x), y) - reference))) for m in call["models"][1:]]
    estimate = recorded["estimate"]
    assert estimate.value == pytest.approx(max(maxima), rel=1e-5)
    assert estimate.details["mean"] == pytest.approx(np.mean(maxima), rel=1e-5)
    for r, maximum in enumerate(maxima):
        assert estimate.details[f"max_{r}"] == pytest.approx(maximum, rel=1e-5)
    assert estimate.value > 0  # replacing an example changed the trained network
    # the run was trained alone by the same code: the retrained A(S) is the run's model, up to
    # the rounding that batching members through vmap brings
    assert close_weights(call["models"][0], recorded["ctx"].model)
    assert estimate.details["reference_drift"] < 1e-4
    assert estimate.details["max_vs_run"] == pytest.approx(estimate.value, abs=1e-4)


def test_reference_run_compares_with_the_runs_own_model():
    x, y = toy_data(n=20, seed=5)
    ctx = trained_context(x, y, hidden=(6,))
    # a stand-in for a run whose training is not reproduced exactly: its weights nudged
    with torch.no_grad():
        ctx.model[1].weight.mul_(1.01)
    recorder = RecordingRetrainer(ctx.retrainer)
    ctx.retrainer = recorder
    estimate = UniformStability().compute(ctx, UniformStabilityOptions(replacements=2, reference="run"))
    (call,) = recorder.calls
    assert len(call["models"]) == 2  # no retrained reference member
    replaced_pairs(call["train_indices"])
    xs, ys = x.numpy(), y.numpy()
    reference = numpy_cross_entropy(numpy_mlp(ctx.model, xs), ys)
    maxima = [float(np.max(np.abs(numpy_cross_entropy(numpy_mlp(m, xs), ys) - reference))) for m in call["models"]]
    assert estimate.value == pytest.approx(max(maxima), rel=1e-5)
    assert "reference_drift" not in estimate.details


def test_replacement_is_training_on_a_copy_of_another_example(recorded):
    # the row arange(n) with i → j trains exactly as the data set with example i overwritten
    # by example j (input and label), in the run's data order
    (call,) = recorded["recorder"].calls
    ((i, j),) = replaced_pairs(call["train_indices"][1:2])
    x, y = recorded["x"].clone(), recorded["y"].clone()
    x[i], y[i] = x[j], y[j]
    run = make_run([8], TRAIN, seed=SEED)
    copied = train_networks(Retrainer(run, make_dataset(x, y, 3), CPU), y[None], [SEED])[0].model
    assert close_weights(copied, call["models"][1])


def test_zero_when_the_replacement_changes_nothing():
    # two identical examples: replacing one by a copy of the other leaves the data set as it was
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0]]).repeat(2, 1)
    y = torch.tensor([2, 2])
    ctx = trained_context(x, y, hidden=(3,))
    estimate = UniformStability().compute(ctx, UniformStabilityOptions(replacements=2))
    assert estimate.value == 0.0 and estimate.details["mean"] == 0.0


def test_options_and_generator():
    x, y = toy_data(n=16, seed=3)
    ctx = trained_context(x, y, hidden=(4,))
    recorder = RecordingRetrainer(ctx.retrainer)
    ctx.retrainer = recorder
    options = UniformStabilityOptions(replacements=1)
    first = UniformStability().compute(ctx, options)
    assert recorder.calls[-1]["train_indices"].shape == (2, 16)  # the unmodified set and one replacement
    assert first.details["replacements"] == 1
    # the pairs come from the measure's generator: the same generator state gives the same value
    ctx.generator = torch.Generator().manual_seed(0)
    again = UniformStability().compute(ctx, options)
    assert again == first
    # and another generator state draws other pairs
    pairs = {UniformStability().compute(
        ctx.__class__(**{**ctx.__dict__, "generator": torch.Generator().manual_seed(seed)}), options
    ).details["pair_0"] for seed in range(1, 6)}
    assert len(pairs | {first.details["pair_0"]}) > 1
    normalized = UniformStability().compute(
        ctx.__class__(**{**ctx.__dict__, "generator": torch.Generator().manual_seed(0)}),
        UniformStabilityOptions(replacements=1, normalize_by_m=True),
    )
    assert normalized.value == pytest.approx(math.sqrt(first.value / 16), rel=1e-12)


def test_diverged_model_gives_nan():
    x, y = toy_data(n=12)
    ctx = trained_context(x, y, hidden=(4,))
    broken = copy.deepcopy(ctx.model)
    with torch.no_grad():
        broken[1].weight.fill_(math.nan)
    ctx.model = broken
    against_run = UniformStability().compute(ctx, UniformStabilityOptions(replacements=1, reference="run"))
    assert math.isnan(against_run.value)
    retrained = UniformStability().compute(ctx, UniformStabilityOptions(replacements=1))
    assert math.isnan(retrained.details["reference_drift"]) and math.isnan(retrained.details["max_vs_run"])


def test_needs_two_examples():
    x, y = toy_data(n=1)
    ctx = trained_context(x, y, hidden=(2,))
    with pytest.raises(ValueError, match="two training examples"):
        UniformStability().compute(ctx, UniformStabilityOptions())


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 50), count=st.integers(1, 60), seed=st.integers(0, 2**31 - 1))
def test_replacement_pairs_are_valid_and_reproducible(n, count, seed):
    pairs = replacement_pairs(n, count, torch.Generator().manual_seed(seed))
    assert len(pairs) == count
    assert all(0 <= i < n and 0 <= j < n and i != j for i, j in pairs)
    replaced = [i for i, _ in pairs]
    assert len(set(replaced)) == min(count, n)  # distinct while there are examples left
    assert pairs == replacement_pairs(n, count, torch.Generator().manual_seed(seed))
