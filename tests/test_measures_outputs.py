"""output-entropy and cross-entropy against plain-numpy softmax computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from genbench.measures.outputs import CrossEntropy, OutputEntropy
from genbench.plugins import load_plugins
from measure_helpers import make_ctx, numpy_mlp, seeded_mlp

FAST = settings(max_examples=15, deadline=None)


def numpy_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def tiny_problem(seed: int = 0, n: int = 20, d: int = 5, classes: int = 4):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(n, d)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, classes, size=n))
    model = seeded_mlp([d, 6, classes], seed)
    return model, x, y


def test_output_entropy_by_hand():
    model, x, y = tiny_problem()
    p = numpy_softmax(numpy_mlp(model, x.numpy()))
    entropies = -(p * np.log(p)).sum(axis=1)
    estimate = OutputEntropy().compute(make_ctx(model, x, y, 4), None)
    assert estimate.value == pytest.approx(entropies.mean(), rel=1e-5)
    assert estimate.details["stderr"] == pytest.approx(entropies.std(ddof=1) / math.sqrt(len(x)), rel=1e-4)


def test_cross_entropy_by_hand_uses_the_trained_labels():
    model, x, y = tiny_problem(seed=1)
    p = numpy_softmax(numpy_mlp(model, x.numpy()))
    losses = -np.log(p[np.arange(len(y)), y.numpy()])
    value = CrossEntropy().compute(make_ctx(model, x, y, 4), None).value
    assert value == pytest.approx(losses.mean(), rel=1e-5)
    other = (y + 1) % 4
    other_losses = -np.log(p[np.arange(len(y)), other.numpy()])
    value_other = CrossEntropy().compute(make_ctx(model, x, other, 4), None).value
    assert value_other == pytest.approx(other_losses.mean(), rel=1e-5)


def test_hand_set_logits():
    """A 1-input linear model whose logits are (0, log 3): softmax (1/4, 3/4)."""
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, math.log(3.0)]))
    x = torch.zeros(3, 1)
    y = torch.tensor([0, 1, 1])
    ctx = make_ctx(model, x, y, 2)
    assert OutputEntropy().compute(ctx, None).value == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert CrossEntropy().compute(ctx, None).value == pytest.approx((math.log(4) + 2 * math.log(4 / 3)) / 3)


@FAST
@given(classes=st.integers(2, 8), scale=st.floats(0.0, 50.0), seed=st.integers(0, 1000))
def test_entropy_between_zero_and_log_k(classes, scale, seed):
    model, x, y = tiny_problem(seed=seed, classes=classes)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    ctx = make_ctx(model, x, y, classes)
    entropy = OutputEntropy().compute(ctx, None).value
    assert -1e-12 <= entropy <= math.log(classes) + 1e-9
    assert CrossEntropy().compute(ctx, None).value >= 0


def test_saturated_softmax_gives_zero_entropy_not_nan():
    model = nn.Linear(1, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, 2000.0, 0.0]))  # exp underflows to exactly 0
    ctx = make_ctx(model, torch.zeros(4, 1), torch.ones(4, dtype=torch.long), 3)
    assert OutputEntropy().compute(ctx, None).value == 0.0
    assert CrossEntropy().compute(ctx, None).value == 0.0


def test_diverged_model_gives_nan():
    model, x, y = tiny_problem()
    with torch.no_grad():
        model[1].weight.fill_(float("nan"))
    ctx = make_ctx(model, x, y, 4)
    assert math.isnan(OutputEntropy().compute(ctx, None).value)
    assert math.isnan(CrossEntropy().compute(ctx, None).value)


@pytest.mark.parametrize("name", ["mlp-1x512", "small-alexnet", "small-inception"])
def test_runs_on_zhang_models(name):
    factory = load_plugins(entry_points=[]).registry("models").get(name)
    torch.manual_seed(0)
    model = factory.build((3, 8, 8), 5, factory.Options())
    x = torch.randn(6, 3, 8, 8)
    y = torch.arange(6) % 5
    ctx = make_ctx(model, x, y, 5)
    assert 0 <= OutputEntropy().compute(ctx, None).value <= math.log(5)
    assert CrossEntropy().compute(ctx, None).value > 0
