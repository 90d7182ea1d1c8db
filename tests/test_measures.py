"""Tests for the built-in measures: each one against a hand computation in plain numpy.

Every expected value is worked out here on a tiny network with its own code path
(numpy forward passes, explicit loops over paths, layer-shape arithmetic), never
with genbench's own helpers. The retraining measures (rademacher, cross-validation)
use the real :class:`genbench.engine.Retrainer` on tiny synthetic datasets.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from genbench.engine import RetrainingBatch
from genbench.measures.base import SizeNormalizedOptions
from genbench.measures.capability import (
    CrossValidation,
    CrossValidationOptions,
    fold_indices,
    rescale_to_chance,
)
from genbench.measures.capacity import EmpiricalRademacher, Params, ParamsOptions, RademacherOptions
from genbench.measures.margins import InverseMargin, InverseMarginOptions
from genbench.measures.norms import DistanceFromInit, PathNorm
from genbench.models.cnn import CNNOptions, SmallConvNet
from genbench.models.mlp import MLPOptions, MultilayerPerceptron
from genbench.schemas import TrainConfig
from measure_helpers import (
    RecordingRetrainer,
    linear_layers,
    make_ctx,
    make_dataset,
    make_run,
    numpy_mlp,
    seeded_mlp,
    set_linear,
)

FAST = settings(max_examples=25, deadline=None)
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------
# params
# ---------------------------------------------------------------------------


def test_params_mlp_by_hand():
    model = MultilayerPerceptron().build((1, 3, 2), 5, MLPOptions(hidden=[7, 4]))
    x = torch.zeros(2, 1, 3, 2)
    ctx = make_ctx(model, x, torch.zeros(2, dtype=torch.long), 5)
    # 6 inputs → 7 → 4 → 5
    weights = 6 * 7 + 7 * 4 + 4 * 5
    biases = 7 + 4 + 5
    assert Params().compute(ctx, ParamsOptions()) == weights + biases == 106
    assert Params().compute(ctx, ParamsOptions(include_biases=False)) == weights == 90


def test_params_conv_net_by_hand():
    model = SmallConvNet().build((2, 8, 8), 10, CNNOptions(channels=[3, 5], kernel_size=3))
    ctx = make_ctx(model, torch.zeros(1, 2, 8, 8), torch.zeros(1, dtype=torch.long), 10)
    conv1 = 2 * 3 * 3 * 3  # in × out × k × k
    conv2 = 3 * 5 * 3 * 3
    # 8×8 → maxpool → 4×4 → maxpool → 2×2, 5 channels, flattened into the head
    head = 5 * 2 * 2 * 10
    weights = conv1 + conv2 + head
    biases = 3 + 5 + 10
    assert Params().compute(ctx, ParamsOptions()) == weights + biases == 407
    assert Params().compute(ctx, ParamsOptions(include_biases=False)) == weights == 389


def test_params_ignores_batch_norm_and_bias_free_layers():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 2),
    )
    ctx = make_ctx(model, torch.zeros(1, 1, 3, 3), torch.zeros(1, dtype=torch.long), 2)
    weights = 1 * 4 * 3 * 3 + 36 * 2  # BatchNorm's 8 affine parameters do not count
    assert Params().compute(ctx, ParamsOptions()) == weights + 2
    assert Params().compute(ctx, ParamsOptions(include_biases=False)) == weights


@FAST
@given(
    inputs=st.integers(1, 12),
    hidden=st.lists(st.integers(1, 16), min_size=0, max_size=4),
    classes=st.integers(2, 10),
)
def test_params_mlp_property(inputs, hidden, classes):
    model = MultilayerPerceptron().build((inputs,), classes, MLPOptions(hidden=hidden))
    ctx = make_ctx(model, torch.zeros(1, inputs), torch.zeros(1, dtype=torch.long), classes)
    widths = [inputs, *hidden, classes]
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    biases = sum(widths[1:])
    assert Params().compute(ctx, ParamsOptions()) == weights + biases
    assert Params().compute(ctx, ParamsOptions(include_biases=False)) == weights


@FAST
@given(
    in_channels=st.integers(1, 3),
    channels=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    side=st.integers(1, 9),
    kernel=st.sampled_from([1, 3]),
)
def test_params_conv_property(in_channels, channels, side, kernel):
    model = SmallConvNet().build((in_channels, side, side), 3, CNNOptions(channels=channels, kernel_size=kernel))
    ctx = make_ctx(model, torch.zeros(1, in_channels, side, side), torch.zeros(1, dtype=torch.long), 3)
    weights, biases, c, s = 0, 0, in_channels, side
    for out in channels:
        weights += c * out * kernel * kernel
        biases += out
        if s >= 2:
            s //= 2
        c = out
    weights += c * s * s * 3
    biases += 3
    assert Params().compute(ctx, ParamsOptions()) == weights + biases
    assert Params().compute(ctx, ParamsOptions(include_biases=False)) == weights


# ---------------------------------------------------------------------------
# dist-from-init
# ---------------------------------------------------------------------------


@FAST
@given(hidden=st.lists(st.integers(1, 12), min_size=1, max_size=3), seed=st.integers(0, 10_000))
def test_dist_from_init_is_zero_at_init(hidden, seed):
    torch.manual_seed(seed)
    model = MultilayerPerceptron().build((5,), 3, MLPOptions(hidden=hidden))
    ctx = make_ctx(model, torch.zeros(1, 5), torch.zeros(1, dtype=torch.long), 3, initial=copy.deepcopy(model))
    assert DistanceFromInit().compute(ctx, SizeNormalizedOptions()) == 0.0


def test_dist_from_init_by_hand_weights_only():
    torch.manual_seed(0)
    initial = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model = copy.deepcopy(initial)
    rng = np.random.default_rng(3)
    deltas = {
        "1.weight": rng.normal(size=(4, 3)),
        "3.weight": rng.normal(size=(2, 4)),
        "1.bias": 5.0 * rng.normal(size=4),  # biases move too: they must not count
        "3.bias": 5.0 * rng.normal(size=2),
    }
    with torch.no_grad():
        state = model.state_dict()
        for name, delta in deltas.items():
            state[name].add_(torch.tensor(delta, dtype=torch.float32))
    ctx = make_ctx(model, torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), 2, initial=initial)

    expected = 0.0
    for name in ("1.weight", "3.weight"):
        w = model.state_dict()[name].double().numpy()
        w0 = initial.state_dict()[name].double().numpy()
        expected += np.linalg.norm(w - w0, "fro") ** 2
    # the perturbation itself, independently of the stored tensors
    assert expected == pytest.approx(sum((deltas[k] ** 2).sum() for k in ("1.weight", "3.weight")), rel=1e-5)
    with_biases = expected + sum((deltas[k] ** 2).sum() for k in ("1.bias", "3.bias"))
    value = DistanceFromInit().compute(ctx, SizeNormalizedOptions())
    assert value == pytest.approx(expected, rel=1e-6)
    assert value != pytest.approx(with_biases, rel=1e-2)


def test_dist_from_init_ignores_bias_only_changes():
    initial = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model = copy.deepcopy(initial)
    with torch.no_grad():
        model[0].bias.add_(3.0)
        model[2].bias.sub_(1.5)
    ctx = make_ctx(model, torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), 2, initial=initial)
    assert DistanceFromInit().compute(ctx, SizeNormalizedOptions()) == 0.0


def test_dist_from_init_conv_weights():
    torch.manual_seed(1)
    initial = SmallConvNet().build((1, 4, 4), 2, CNNOptions(channels=[2], kernel_size=3))
    model = copy.deepcopy(initial)
    with torch.no_grad():
        model[0].weight.add_(0.5)  # 2·1·3·3 = 18 entries, each moved by 0.5
        model[-1].weight.sub_(0.25)  # 2·(2·2·2) = 16 entries, each moved by 0.25
        model[0].bias.add_(10.0)
    ctx = make_ctx(model, torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long), 2, initial=initial)
    assert DistanceFromInit().compute(ctx, SizeNormalizedOptions()) == pytest.approx(18 * 0.25 + 16 * 0.0625, rel=1e-6)


# ---------------------------------------------------------------------------
# inverse-margin
# ---------------------------------------------------------------------------

# 2-layer network with hand-set weights that are exact in float32 (multiples of 1/4)
W1 = [[1.0, -1.0], [0.5, 1.0], [-1.0, 0.5]]
B1 = [0.0, 0.5, -0.5]
W2 = [[1.0, 0.0, -1.0], [0.5, 1.0, 0.0], [-0.5, 0.5, 1.0]]
B2 = [0.0, 0.25, -0.25]
X10 = np.array(
    [[2, 1], [-2, 2], [0, -2], [1, 1], [-2, -1], [2, -2], [1, 0], [0, 1], [-1, -1], [2, 2]], dtype=np.float64
)


def margin_net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3))
    set_linear(net[0], W1, B1)
    set_linear(net[2], W2, B2)
    return net


def numpy_margins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h = np.maximum(x @ np.array(W1).T + np.array(B1), 0.0)
    logits = h @ np.array(W2).T + np.array(B2)
    out = []
    for i in range(len(x)):
        others = [logits[i, j] for j in range(logits.shape[1]) if j != y[i]]
        out.append(logits[i, y[i]] - max(others))
    return np.array(out)


def margin_labels() -> np.ndarray:
    """The argmax class for every point but one, which gets a wrong class."""
    h = np.maximum(X10 @ np.array(W1).T + np.array(B1), 0.0)
    logits = h @ np.array(W2).T + np.array(B2)
    y = logits.argmax(1)
    y[8] = (y[8] + 2) % 3
    return y


def test_inverse_margin_by_hand():
    y = margin_labels()
    m = numpy_margins(X10, y)
    gamma = np.percentile(m, 10)  # numpy's default: linear interpolation
    # the interpolation matters on this data: "lower"/"nearest" would give another γ
    assert gamma != np.percentile(m, 10, method="lower")
    assert gamma > 0
    assert torch.quantile(torch.tensor(m), 0.10).item() == pytest.approx(gamma, rel=1e-12)
    ctx = make_ctx(margin_net(), torch.tensor(X10, dtype=torch.float32), torch.tensor(y), 3)
    assert InverseMargin().compute(ctx, InverseMarginOptions()) == pytest.approx(1 / gamma**2, rel=1e-9)


@pytest.mark.parametrize("percentile", [0.0, 35.0, 50.0, 87.5, 100.0])
def test_inverse_margin_percentile_option(percentile):
    y = margin_labels()
    m = numpy_margins(X10, y)
    gamma = np.percentile(m, percentile)
    assert torch.quantile(torch.tensor(m), percentile / 100).item() == pytest.approx(gamma, rel=1e-12)
    ctx = make_ctx(margin_net(), torch.tensor(X10, dtype=torch.float32), torch.tensor(y), 3)
    value = InverseMargin().compute(ctx, InverseMarginOptions(percentile=percentile))
    if gamma > 0:
        assert value == pytest.approx(1 / gamma**2, rel=1e-9)
    else:
        assert value == math.inf


def test_inverse_margin_uses_the_training_labels():
    y = margin_labels()
    flipped = y.copy()
    flipped[[0, 1, 2]] = (flipped[[0, 1, 2]] + 1) % 3
    gamma = np.percentile(numpy_margins(X10, flipped), 60)  # 0.95 (1.35 with the original labels)
    assert gamma > 0 and gamma != pytest.approx(np.percentile(numpy_margins(X10, y), 60))
    ctx = make_ctx(margin_net(), torch.tensor(X10, dtype=torch.float32), torch.tensor(flipped), 3)
    value = InverseMargin().compute(ctx, InverseMarginOptions(percentile=60))
    assert value == pytest.approx(1 / gamma**2, rel=1e-9)


def test_inverse_margin_infinite_when_gamma_not_positive():
    x = torch.tensor(X10, dtype=torch.float32)
    y = margin_labels()
    # every label wrong: all margins negative
    h = np.maximum(X10 @ np.array(W1).T + np.array(B1), 0.0)
    wrong = (h @ np.array(W2).T + np.array(B2)).argmin(1)
    assert (numpy_margins(X10, wrong) < 0).all()
    assert InverseMargin().compute(make_ctx(margin_net(), x, torch.tensor(wrong), 3), InverseMarginOptions()) == math.inf
    # γ == 0 exactly (all logits tied): still +inf, not a division by zero
    zero = margin_net()
    with torch.no_grad():
        for p in zero.parameters():
            p.zero_()
    assert InverseMargin().compute(make_ctx(zero, x, torch.tensor(y), 3), InverseMarginOptions()) == math.inf


def test_inverse_margin_two_classes_scaled():
    # logits (0, s·x): margin of example i is ±s·x_i; γ scales with s, value with 1/s²
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])
    y = torch.tensor([1, 1, 1, 1, 1])
    for s in (1.0, 2.0, 0.5):
        net = nn.Linear(1, 2)
        set_linear(net, [[0.0], [s]], [0.0, 0.0])
        m = s * np.array([1.0, 2.0, 3.0, 4.0, 5.0])
        gamma = np.percentile(m, 10)  # 1.4·s
        assert gamma == pytest.approx(1.4 * s)
        value = InverseMargin().compute(make_ctx(net, x, y, 2), InverseMarginOptions())
        assert value == pytest.approx(1 / (1.4 * s) ** 2, rel=1e-6)


# ---------------------------------------------------------------------------
# path-norm
# ---------------------------------------------------------------------------


def quarter_weights(rng: np.random.Generator, shape) -> np.ndarray:
    """Small weights in multiples of 1/4 (exact squares in float32)."""
    return rng.integers(-4, 5, size=shape) / 4.0


def path_norm_by_enumeration(layers: list[tuple[np.ndarray, np.ndarray]], num_inputs: int) -> float:
    """Σ_outputs Σ_paths Π squared parameters, for a 2-hidden-layer MLP, with explicit loops.

    A path starts at an input unit (value 1) or at a bias of some layer and runs to an
    output unit through every later layer.
    """
    (w1, b1), (w2, b2), (w3, b3) = layers
    h1, h2, out = w1.shape[0], w2.shape[0], w3.shape[0]
    total = 0.0
    for k in range(out):
        # input → h1 → h2 → output
        for i in range(num_inputs):
            for j in range(h1):
                for l in range(h2):
                    total += w1[j, i] ** 2 * w2[l, j] ** 2 * w3[k, l] ** 2
        # bias of layer 1 → h2 → output
        for j in range(h1):
            for l in range(h2):
                total += b1[j] ** 2 * w2[l, j] ** 2 * w3[k, l] ** 2
        # bias of layer 2 → output
        for l in range(h2):
            total += b2[l] ** 2 * w3[k, l] ** 2
        # bias of the output layer
        total += b3[k] ** 2
    return total


def test_path_norm_by_enumeration():
    rng = np.random.default_rng(7)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    for layer, (o, i) in zip([net[1], net[3], net[5]], [(4, 3), (3, 4), (2, 3)]):
        set_linear(layer, quarter_weights(rng, (o, i)), quarter_weights(rng, o))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ctx = make_ctx(net, torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 2)
    expected = path_norm_by_enumeration(linear_layers(net), 3)
    assert expected > 0
    assert PathNorm().compute(ctx, SizeNormalizedOptions()) == pytest.approx(expected, rel=1e-12)
    # the measure works on a copy: the model is untouched
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_path_norm_one_hidden_layer_closed_form():
    # 1 input, 1 hidden unit, 1 output: w2²·(w1²·1 + b1²) + b2²
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
    set_linear(net[0], [[-2.0]], [3.0])
    set_linear(net[2], [[0.5]], [-1.0])
    ctx = make_ctx(net, torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), 1)
    assert PathNorm().compute(ctx, SizeNormalizedOptions()) == pytest.approx(0.25 * (4.0 + 9.0) + 1.0, rel=1e-12)


@FAST
@given(
    seed=st.integers(0, 10_000),
    layer=st.sampled_from([0, 1]),
    unit=st.integers(0, 3),
    c=st.floats(0.1, 10.0),
)
def test_path_norm_invariant_under_relu_rescaling(seed, layer, unit, c):
    net = seeded_mlp([3, 4, 4, 2], seed)
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(seed))
    ctx = make_ctx(net, x, torch.zeros(16, dtype=torch.long), 2)
    before = PathNorm().compute(ctx, SizeNormalizedOptions())
    outputs_before = net(x).detach()

    rescaled = copy.deepcopy(net)
    r_linears = [m for m in rescaled if isinstance(m, nn.Linear)]
    with torch.no_grad():
        r_linears[layer].weight[unit] *= c
        r_linears[layer].bias[unit] *= c
        r_linears[layer + 1].weight[:, unit] /= c
    ctx2 = make_ctx(rescaled, x, torch.zeros(16, dtype=torch.long), 2)
    after = PathNorm().compute(ctx2, SizeNormalizedOptions())

    # the network function is unchanged ...
    torch.testing.assert_close(rescaled(x).detach(), outputs_before, rtol=1e-5, atol=1e-5)
    # ... and so is the path norm (also equal to the explicit sum over paths)
    assert after == pytest.approx(before, rel=1e-6)
    assert before == pytest.approx(path_norm_by_enumeration(linear_layers(net), 3), rel=1e-6)


# ---------------------------------------------------------------------------
# rademacher
# ---------------------------------------------------------------------------

RADEMACHER_TRAIN = TrainConfig(lr=0.1, schedule="constant", max_steps=2000)


def rademacher_inputs(seed: int = 1, n: int = 24) -> torch.Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))


def recorded_rademacher(hidden: list[int], train: TrainConfig, options: RademacherOptions | None = None) -> dict:
    """One real estimate on 24 random points in R⁴, with the retrainer's fits recorded."""
    x = rademacher_inputs()
    run = make_run(hidden, train)
    model = MultilayerPerceptron().build((4,), 2, MLPOptions(hidden=hidden))
    ctx = make_ctx(model, x, torch.zeros(24, dtype=torch.long), 2, run=run)
    recorder = RecordingRetrainer(ctx.retrainer)
    ctx.retrainer = recorder
    options = options or RademacherOptions()
    estimate = EmpiricalRademacher().compute(ctx, options)
    return dict(value=estimate.value, estimate=estimate, recorder=recorder, x=x, run=run, options=options)


@pytest.fixture(scope="module")
def memorizing_rademacher():
    """MLP [64]: can memorize any labeling of 24 points."""
    return recorded_rademacher([64], RADEMACHER_TRAIN)


@pytest.fixture(scope="module")
def weak_rademacher():
    """MLP [1] trained for 5 steps: cannot memorize."""
    return recorded_rademacher([1], TrainConfig(lr=0.1, schedule="constant", max_steps=5))


@pytest.fixture(scope="module")
def weak_three_class_rademacher():
    """MLP [2] trained for 30 steps on labels uniform on 3 classes: fits some, not all."""
    options = RademacherOptions(classes=3, draws=4)
    return recorded_rademacher([2], TrainConfig(lr=0.1, schedule="constant", max_steps=30), options)


def correlations_from_sign_draws(estimate: dict) -> list[float]:
    """(1/n) Σ σ_i h(x_i) per draw, σ reproduced from the documented seeding, h by numpy."""
    recorder, x, options = estimate["recorder"], estimate["x"], estimate["options"]
    n = len(x)
    assert len(recorder.calls) == 1
    call = recorder.calls[0]
    assert call["num_classes"] == 2 and call["train_indices"] is None
    assert len(call["models"]) == options.draws
    correlations = []
    for draw in range(options.draws):
        generator = torch.Generator().manual_seed(options.seed * 1000 + draw)
        sigma = (torch.randint(0, 2, (n,), generator=generator) * 2 - 1).numpy()
        assert set(np.unique(sigma)) <= {-1, 1}
        # the network of this draw was trained on label 1 ⇔ σ = +1
        np.testing.assert_array_equal(call["labels"][draw].numpy(), (sigma + 1) // 2)
        logits = numpy_mlp(call["models"][draw], x.numpy())
        h = np.where(logits[:, 1] > logits[:, 0], 1, -1)
        correlations.append(float(np.sum(sigma * h)) / n)
    return correlations


def correlations_from_class_draws(estimate: dict, classes: int) -> list[float]:
    """(K·acc − 1)/(K − 1) per draw, labels reproduced from the documented seeding, acc by numpy."""
    recorder, x, options = estimate["recorder"], estimate["x"], estimate["options"]
    (call,) = recorder.calls
    assert call["num_classes"] == classes and call["train_indices"] is None
    assert len(call["models"]) == options.draws
    values = []
    for draw in range(options.draws):
        generator = torch.Generator().manual_seed(options.seed * 1000 + draw)
        labels = torch.randint(0, classes, (len(x),), generator=generator).numpy()
        np.testing.assert_array_equal(call["labels"][draw].numpy(), labels)
        predictions = numpy_mlp(call["models"][draw], x.numpy()).argmax(1)
        accuracy = float(np.mean(predictions == labels))
        values.append((classes * accuracy - 1) / (classes - 1))
    return values


def numpy_standard_error(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


@pytest.mark.parametrize("which", ["memorizing_rademacher", "weak_rademacher"])
def test_rademacher_recomputed_from_its_sign_draws(which, request):
    estimate = request.getfixturevalue(which)
    correlations = correlations_from_sign_draws(estimate)
    assert estimate["value"] == pytest.approx(float(np.mean(correlations)), abs=1e-6)
    details = estimate["estimate"].details
    assert details["stderr"] == pytest.approx(numpy_standard_error(correlations), abs=1e-9)
    assert details["draws"] == 3 and details["classes"] == 2


def test_rademacher_k_class_recomputed_from_its_draws(weak_three_class_rademacher):
    values = correlations_from_class_draws(weak_three_class_rademacher, 3)
    estimate = weak_three_class_rademacher["estimate"]
    assert estimate.value == pytest.approx(float(np.mean(values)), abs=1e-12)
    assert estimate.details["stderr"] == pytest.approx(numpy_standard_error(values), abs=1e-12)
    assert estimate.details["classes"] == 3
    # a non-trivial value and spread, so that the checks above test the averaging itself
    assert -0.5 < estimate.value < 0.9
    assert estimate.details["stderr"] > 0


def test_rademacher_two_classes_equal_sign_labelings():
    # the K-class definition at K = 2 is the ±1 correlation, on the same draws
    train = TrainConfig(lr=0.1, schedule="constant", max_steps=20)
    binary = recorded_rademacher([3], train, RademacherOptions(draws=2))
    as_classes = recorded_rademacher([3], train, RademacherOptions(draws=2, classes=2))
    assert as_classes["value"] == binary["value"]
    assert binary["value"] == pytest.approx(float(np.mean(correlations_from_sign_draws(binary))), abs=1e-12)


def test_rademacher_classes_none_uses_the_dataset_classes():
    x = rademacher_inputs()
    run = make_run([2], TrainConfig(lr=0.1, schedule="constant", max_steps=3))
    model = MultilayerPerceptron().build((4,), 5, MLPOptions(hidden=[2]))
    ctx = make_ctx(model, x, torch.zeros(24, dtype=torch.long), 5, run=run)
    recorder = RecordingRetrainer(ctx.retrainer)
    ctx.retrainer = recorder
    estimate = EmpiricalRademacher().compute(ctx, RademacherOptions(classes=None, draws=1))
    assert recorder.calls[0]["num_classes"] == 5 and estimate.details["classes"] == 5
    assert int(recorder.calls[0]["labels"].max()) <= 4


def test_rademacher_standard_error_is_nan_with_one_draw():
    x = rademacher_inputs()
    run = make_run([2], TrainConfig(lr=0.1, schedule="constant", max_steps=3))
    model = MultilayerPerceptron().build((4,), 2, MLPOptions(hidden=[2]))
    ctx = make_ctx(model, x, torch.zeros(24, dtype=torch.long), 2, run=run)
    estimate = EmpiricalRademacher().compute(ctx, RademacherOptions(draws=1))
    assert math.isfinite(estimate.value)
    assert math.isnan(estimate.details["stderr"])  # undefined from one draw, not 0


def test_rademacher_default_options_keep_their_stored_form():
    # the K-class option leaves the default's serialized options (and so its stored values) unchanged
    assert RademacherOptions().model_dump(mode="json") == {"draws": 3, "seed": 0}
    assert RademacherOptions(classes=3).model_dump(mode="json") == {"draws": 3, "seed": 0, "classes": 3}
    # (version 2 is the batched retraining, not the options)
    assert EmpiricalRademacher.version == "2"


def test_rademacher_near_one_for_a_memorizing_class(memorizing_rademacher):
    assert memorizing_rademacher["value"] >= 0.95


def test_rademacher_smaller_for_a_class_that_cannot_memorize(weak_rademacher, memorizing_rademacher):
    value = weak_rademacher["value"]
    assert -1.0 <= value <= 0.3
    assert value < memorizing_rademacher["value"] - 0.5
    # a non-trivial value, so that the recomputation above checks the averaging itself
    assert abs(value) < 1.0


def _rademacher_batch(contexts, options_list):
    """Every context's rademacher jobs in one RetrainingBatch, trained; (batch, values)."""
    batch = RetrainingBatch(torch.device("cpu"))
    measure = EmpiricalRademacher()
    tickets = [
        batch.add(ctx.spec, make_dataset(ctx.train_inputs, ctx.train_labels, ctx.num_classes), measure.jobs(ctx, options))
        for ctx, options in zip(contexts, options_list)
    ]
    batch.train()
    values = [measure.finish(ctx, options, batch.networks(ticket)) for ctx, options, ticket in zip(contexts, options_list, tickets)]
    return batch, values


def test_rademacher_jobs_of_runs_on_equal_inputs_are_trained_once(memorizing_rademacher):
    x = memorizing_rademacher["x"]
    options = memorizing_rademacher["options"]
    # another run (other seed, other trained model and labels) of the same architecture and recipe,
    # on equal inputs held in another tensor
    other_run = memorizing_rademacher["run"].model_copy(update={"seed": 5})
    torch.manual_seed(123)
    model = MultilayerPerceptron().build((4,), 2, MLPOptions(hidden=[64]))
    first = make_ctx(model, x, torch.zeros(24, dtype=torch.long), 2, run=memorizing_rademacher["run"])
    second = make_ctx(model, x.clone(), torch.ones(24, dtype=torch.long), 2, run=other_run)
    batch, values = _rademacher_batch([first, second], [options, options])
    assert batch.distinct_jobs == options.draws  # one network per draw, shared by both runs
    assert values[0] == values[1] == memorizing_rademacher["estimate"]


def test_rademacher_jobs_differ_on_other_inputs_or_options():
    train = TrainConfig(lr=0.1, schedule="constant", max_steps=3)
    run = make_run([1], train)
    model = MultilayerPerceptron().build((4,), 2, MLPOptions(hidden=[1]))
    one = RademacherOptions(draws=1)
    variants = [
        (rademacher_inputs(1), one),
        (rademacher_inputs(1), one),
        (rademacher_inputs(2), one),
        (rademacher_inputs(1), RademacherOptions(draws=1, seed=1)),
        (rademacher_inputs(1), RademacherOptions(draws=1, classes=3)),
    ]
    contexts = [make_ctx(model, x, torch.zeros(len(x), dtype=torch.long), 2, run=run) for x, _ in variants]
    batch, _ = _rademacher_batch(contexts, [options for _, options in variants])
    assert batch.distinct_jobs == 4  # the first two are the same job


# ---------------------------------------------------------------------------
# cross-validation
# ---------------------------------------------------------------------------

CV_TRAIN = TrainConfig(lr=0.1, schedule="constant", max_steps=100)


def blobs(seed: int, n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs in R², centres (−5, −5) and (5, 5), unit variance."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) + (y[:, None].float() * 2 - 1) * 5.0
    return x, y


def cv_context(x, y, seed, hidden=(16,)):
    run = make_run(list(hidden), CV_TRAIN, seed=seed)
    model = MultilayerPerceptron().build((2,), 2, MLPOptions(hidden=list(hidden)))
    return make_ctx(model, x, y, 2, run=run)


@pytest.mark.parametrize("evaluated_folds", [1, None])
def test_cross_validation_separable_blobs(evaluated_folds):
    x, y = blobs(0)
    ctx = cv_context(x, y, seed=0)
    assert CrossValidation().compute(ctx, CrossValidationOptions(evaluated_folds=evaluated_folds)) >= 0.9


def test_cross_validation_random_labels_near_zero():
    # labels drawn uniformly at random, independently of the (well-separated) inputs;
    # full 5-fold estimates averaged over seeds, so that the chance agreement of a
    # 60-example sample does not dominate
    values = []
    for seed in range(6):
        x, _ = blobs(seed)
        labels = torch.randint(0, 2, (len(x),), generator=torch.Generator().manual_seed(100 + seed))
        options = CrossValidationOptions(evaluated_folds=None, seed=seed)
        values.append(CrossValidation().compute(cv_context(x, labels, seed), options))
    assert all(0.0 <= v <= 1.0 for v in values)
    assert np.mean(values) <= 0.2


@pytest.mark.parametrize("evaluated_folds", [1, 3, None])
def test_cross_validation_recomputed_from_its_folds(evaluated_folds):
    # 60 examples, 5 folds: every training set is exactly the complement of its held-out fold
    x, y = blobs(1)
    y = y.clone()
    y[:6] = 1 - y[:6]  # a few labels the networks cannot reproduce on held-out data
    ctx = cv_context(x, y, seed=3)
    recorder = RecordingRetrainer(ctx.retrainer)
    ctx.retrainer = recorder
    options = CrossValidationOptions(folds=5, evaluated_folds=evaluated_folds, seed=2)
    value = CrossValidation().compute(ctx, options)

    used = 5 if evaluated_folds is None else evaluated_folds
    assert len(recorder.calls) == 1
    call = recorder.calls[0]
    assert len(call["models"]) == used and call["num_classes"] == 2
    # trained on the labels the model was trained on, one row per evaluated fold
    assert tuple(call["labels"].shape) == (used, 60)
    for row in call["labels"]:
        assert torch.equal(row, y)
    assert call["seeds"] == [3 * 1000 + 2 * 100 + j for j in range(used)]
    correct = total = 0
    held_out_seen: list[int] = []
    for model, train in zip(call["models"], call["train_indices"]):
        train = train.numpy()
        assert len(train) == 48 and len(set(train.tolist())) == 48
        held_out = np.setdiff1d(np.arange(60), train)
        assert len(held_out) == 12
        held_out_seen += held_out.tolist()
        predictions = numpy_mlp(model, x.numpy()[held_out]).argmax(1)
        correct += int((predictions == y.numpy()[held_out]).sum())
        total += len(held_out)
    assert total == 12 * used
    assert len(set(held_out_seen)) == 12 * used  # different folds are held out
    accuracy = correct / total
    assert value == pytest.approx(max(0.0, (accuracy - 0.5) / 0.5), abs=1e-12)
    assert 0.0 < value < 1.0  # the flipped labels make this a non-trivial check


@pytest.mark.parametrize(
    ("accuracy", "classes", "expected"),
    [
        (1.0, 2, 1.0),
        (0.5, 2, 0.0),
        (0.75, 2, 0.5),
        (0.3, 2, 0.0),  # below chance: clamped at 0
        (0.1, 10, 0.0),
        (0.55, 10, 0.5),
        (0.625, 4, 0.5),
        (1.0, 10, 1.0),
    ],
)
def test_rescale_to_chance_by_hand(accuracy, classes, expected):
    assert rescale_to_chance(accuracy, classes) == pytest.approx(expected, abs=1e-12)


@FAST
@given(
    n=st.integers(2, 120),
    folds=st.integers(2, 10),
    seed=st.integers(0, 2**31 - 1),
)
def test_fold_indices_partition(n, folds, seed):
    training, held_out = fold_indices(n, folds, torch.Generator().manual_seed(seed))
    assert len(held_out) == folds
    # the held-out folds partition range(n), with sizes differing by at most one
    everything = np.concatenate([f.numpy() for f in held_out])
    assert sorted(everything.tolist()) == list(range(n))
    sizes = [len(f) for f in held_out]
    assert max(sizes) - min(sizes) <= 1
    # equal-size training sets of n − ⌈n/k⌉ distinct examples, disjoint from their fold
    assert tuple(training.shape) == (folds, n - math.ceil(n / folds))
    for j in range(folds):
        row = training[j].numpy()
        assert len(set(row.tolist())) == len(row)
        assert ((row >= 0) & (row < n)).all()
        assert not set(row.tolist()) & set(held_out[j].tolist())
    # deterministic in the generator's seed
    training2, held_out2 = fold_indices(n, folds, torch.Generator().manual_seed(seed))
    assert torch.equal(training, training2)
    assert all(torch.equal(a, b) for a, b in zip(held_out, held_out2))


def test_tensor_digest_tells_names_shapes_dtypes_and_values_apart_and_takes_bfloat16():
    from genbench.engine.retraining import tensor_digest

    x = torch.arange(6.0)
    base = tensor_digest([("w", x)])
    assert base == tensor_digest([("w", x.clone())])
    different = [
        tensor_digest([("v", x)]),
        tensor_digest([("w", x.view(2, 3))]),
        tensor_digest([("w", x.double())]),
        tensor_digest([("w", x + 1e-6)]),
        tensor_digest([("w", x)], salt="other"),
    ]
    assert len({base, *different}) == 6
    half = tensor_digest([("w", x.bfloat16())])
    assert half == tensor_digest([("w", x.bfloat16().clone())]) and half != base
