"""The PGDL measures against independent re-computations in numpy, on small fixed networks and data.

The references below never use the plugin's code nor torch hooks: networks are evaluated by
hand from their weights (matrix products, a convolution over sliding windows), the
Davies–Bouldin index from centroids and scatters, the graph from an explicit loop over nodes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from genbench_pgdl import DbiMixup, LabelVariation
from scipy import stats
from torch import nn

import genbench
from genbench import MeasureError, NotApplicable

CLASSES = 4


# --------------------------------------------------------------------------- fixtures
def context(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, classes: int, seed: int = 0):
    return genbench.MeasureContext(
        spec=None,
        model=model.eval(),
        initial_model=None,
        train_inputs=inputs,
        train_labels=labels,
        num_classes=classes,
        training_log=None,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
    )


def data(n: int, shape: tuple[int, ...], classes: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    labels = labels[torch.randperm(n, generator=g)]
    return torch.randn((n, *shape), generator=g), labels


def mlp(inputs: int, hidden: int, classes: int, seed: int = 2) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def cnn(classes: int, seed: int = 3) -> nn.Sequential:
    """genbench's `cnn` with channels [3, 5] on 1×8×8 inputs: conv3×3 → ReLU → pool2, twice, linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(5 * 2 * 2, classes),
    )


def weights(module: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    return module.weight.detach().double().numpy(), module.bias.detach().double().numpy()


# --------------------------------------------------------------------------- numpy networks
def relu(x):
    return np.maximum(x, 0.0)


def conv_same(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, c, h, w] ⋆ [o, c, 3, 3] with padding 1, via sliding windows."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # n, c, h, w, 3, 3
    return np.einsum("nchwij,ocij->nohw", windows, w) + b[None, :, None, None]


def pool(x: np.ndarray, s: int) -> np.ndarray:
    n, c, h, w = x.shape
    x = x[:, :, : h // s * s, : w // s * s]
    return x.reshape(n, c, h // s, s, w // s, s).max(axis=(3, 5))


def mlp_numpy(model, x):
    w1, b1 = weights(model[1])
    w2, b2 = weights(model[3])
    pre = x.reshape(len(x), -1) @ w1.T + b1
    return pre, relu(pre), relu(pre) @ w2.T + b2  # first layer raw, after ReLU, logits


def cnn_numpy(model, x):
    first = conv_same(x, *weights(model[0]))
    h = pool(relu(first), 2)
    h = pool(relu(conv_same(h, *weights(model[3]))), 2)
    flat = h.reshape(len(h), -1)
    return first, relu(first), flat, flat @ weights(model[7])[0].T + weights(model[7])[1]


# --------------------------------------------------------------------------- references
def davies_bouldin_by_hand(features: np.ndarray, labels: np.ndarray) -> float:
    clusters = sorted(set(labels.tolist()))
    centroids = np.stack([features[labels == c].mean(axis=0) for c in clusters])
    scatter = np.array(
        [np.mean(np.sqrt(((features[labels == c] - centroids[i]) ** 2).sum(axis=1))) for i, c in enumerate(clusters)]
    )
    worst = []
    for i in range(len(clusters)):
        ratios = [
            (scatter[i] + scatter[j]) / np.sqrt(((centroids[i] - centroids[j]) ** 2).sum())
            for j in range(len(clusters))
            if j != i
        ]
        worst.append(max(ratios))
    return float(np.mean(worst))


def mixup_accuracy_by_hand(logits_of, x: np.ndarray, labels: np.ndarray, order, per_class, batches, classes, lam):
    size = per_class * classes
    stream = [order[i % len(order)] for i in range(size * batches)]
    scores = {}
    for b in range(batches):
        batch = stream[b * size : (b + 1) * size]
        for c in range(classes):
            members = [i for i in batch if labels[i] == c]
            pairs = list(itertools.combinations(range(len(members)), 2))
            if not pairs:
                continue
            mixed = np.stack([lam * x[members[j]] + (1 - lam) * x[members[i]] for i, j in pairs])
            scores.setdefault(c, []).append(float(np.mean(logits_of(mixed).argmax(axis=1) == c)))
    return float(np.mean([np.mean(v) for v in scores.values()])), len(scores)


def explicit_adjacency(features: np.ndarray, k: int) -> np.ndarray:
    n = len(features)
    norms = np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-6)
    u = features / norms
    a = np.zeros((n, n))
    for i in range(n):
        others = [j for j in range(n) if j != i]
        d = {j: float(np.sum((u[i] - u[j]) ** 2)) for j in others}
        kth = sorted(d.values())[k - 1]
        for j in others:
            if d[j] <= kth + 1e-12:
                a[i, j] = 1.0
    return a


def variation_by_hand(adjacency: np.ndarray, targets: np.ndarray) -> float:
    n = len(adjacency)
    degree = adjacency.sum(axis=1)
    laplacian = np.eye(n) - np.diag(degree**-0.5) @ adjacency @ np.diag(degree**-0.5)
    return float(np.clip(np.trace(targets.T @ laplacian @ targets) / (4 * n), 0, 1000))


# --------------------------------------------------------------------------- dbi-mixup
@pytest.mark.parametrize("after_activation", [True, False])
def test_dbi_mixup_equals_hand_computation_on_an_mlp(after_activation):
    x, y = data(48, (1, 4, 4), CLASSES)
    model = mlp(16, 12, CLASSES)
    options = DbiMixup.Options(examples=48, rounds=2, shuffle=False, mixup_per_class=3, mixup_batches=5,
                               after_activation=after_activation)
    result = DbiMixup().compute(context(model, x, y, CLASSES), options)
    xn, yn = x.double().numpy(), y.numpy()
    raw, activated, _ = mlp_numpy(model, xn)
    dbi = davies_bouldin_by_hand(activated if after_activation else raw, yn)
    accuracy, used = mixup_accuracy_by_hand(lambda m: mlp_numpy(model, m)[2], xn, yn, list(range(48)), 3, 5, CLASSES, 0.5)
    assert result.details["dbi"] == pytest.approx(dbi, rel=1e-5)
    assert result.details["mixup_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result.details["mixup_classes"] == used
    assert result.value == pytest.approx(dbi * (1 - accuracy), rel=1e-5)
    assert result.details["layer"] == ("2" if after_activation else "1")


def test_dbi_mixup_equals_hand_computation_on_a_conv_net_with_pooling():
    x, y = data(40, (1, 8, 8), CLASSES)
    model = cnn(CLASSES)
    options = DbiMixup.Options(examples=40, rounds=1, shuffle=False, mixup_per_class=4, mixup_batches=3, mixup_lambda=0.3)
    result = DbiMixup().compute(context(model, x, y, CLASSES), options)
    xn, yn = x.double().numpy(), y.numpy()
    _, activated, _, _ = cnn_numpy(model, xn)
    dbi = davies_bouldin_by_hand(pool(activated, 4).reshape(40, -1), yn)  # 8×8 maps, 4×4 windows → 2×2
    accuracy, _ = mixup_accuracy_by_hand(lambda m: cnn_numpy(model, m)[3], xn, yn, list(range(40)), 4, 3, CLASSES, 0.3)
    assert result.details["dbi"] == pytest.approx(dbi, rel=1e-5)
    assert result.details["mixup_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result.value == pytest.approx(dbi * (1 - accuracy), rel=1e-5)


def test_dbi_mixup_random_draws_follow_the_generator():
    """Default sampling: `rounds` draws of `examples` distinct examples, then a random order for
    the mixup batches, all from ctx.generator in that order."""
    x, y = data(60, (1, 4, 4), CLASSES)
    model = mlp(16, 10, CLASSES)
    options = DbiMixup.Options(examples=25, rounds=3, mixup_per_class=2, mixup_batches=4)
    result = DbiMixup().compute(context(model, x, y, CLASSES, seed=7), options)
    g = torch.Generator().manual_seed(7)
    draws = [torch.randperm(60, generator=g)[:25].numpy() for _ in range(3)]
    order = torch.randperm(60, generator=g).tolist()
    xn, yn = x.double().numpy(), y.numpy()
    features = mlp_numpy(model, xn)[1]
    dbi = np.mean([davies_bouldin_by_hand(features[d], yn[d]) for d in draws])
    accuracy, _ = mixup_accuracy_by_hand(lambda m: mlp_numpy(model, m)[2], xn, yn, order, 2, 4, CLASSES, 0.5)
    assert result.value == pytest.approx(dbi * (1 - accuracy), rel=1e-5)


def test_dbi_mixup_with_a_class_of_one_example():
    """A singleton cluster has scatter 0 in the index and no within-class pair for mixup."""
    x, y = data(30, (1, 4, 4), 3)
    y[y == 2] = 1
    y[0] = 2  # class 2 has exactly one example
    model = mlp(16, 8, 3)
    options = DbiMixup.Options(examples=30, rounds=1, shuffle=False, mixup_per_class=5, mixup_batches=2)
    result = DbiMixup().compute(context(model, x, y, 3), options)
    xn, yn = x.double().numpy(), y.numpy()
    dbi = davies_bouldin_by_hand(mlp_numpy(model, xn)[1], yn)
    accuracy, used = mixup_accuracy_by_hand(lambda m: mlp_numpy(model, m)[2], xn, yn, list(range(30)), 5, 2, 3, 0.5)
    assert used == 2 and result.details["mixup_classes"] == 2
    assert result.value == pytest.approx(dbi * (1 - accuracy), rel=1e-5)


def test_dbi_mixup_is_not_applicable_without_two_classes_or_weight_layers():
    x, y = data(20, (1, 4, 4), 2)
    with pytest.raises(NotApplicable):
        DbiMixup().compute(context(mlp(16, 4, 2), x, torch.zeros(20, dtype=torch.int64), 2), DbiMixup.Options())
    with pytest.raises(NotApplicable):
        DbiMixup().compute(context(Kernel(x, 2), x, y, 2), DbiMixup.Options())


# --------------------------------------------------------------------------- label-variation
class Kernel(nn.Module):
    """A kernel machine: f(x) = exp(−‖x − s‖²) α — no linear or convolutional module."""

    def __init__(self, support: torch.Tensor, classes: int) -> None:
        super().__init__()
        self.register_buffer("support", support.reshape(len(support), -1))
        self.alpha = nn.Parameter(torch.randn(len(support), classes))

    def forward(self, x):
        return torch.exp(-torch.cdist(x.reshape(len(x), -1), self.support) ** 2) @ self.alpha


def penultimate_mlp(model, x):
    return mlp_numpy(model, x)[1]


@pytest.mark.parametrize("k", [1, 3])
def test_label_variation_without_mixup_equals_an_explicit_graph(k):
    x, y = data(36, (1, 4, 4), CLASSES)
    model = mlp(16, 10, CLASSES)
    result = LabelVariation().compute(context(model, x, y, CLASSES), LabelVariation.Options(mixup_alpha=0.0, k=k))
    features = penultimate_mlp(model, x.double().numpy())  # all 36 examples are nodes (500 // 4 per class)
    targets = np.eye(CLASSES)[y.numpy()]
    adjacency = explicit_adjacency(features, k)
    expected = variation_by_hand(adjacency, targets)
    assert result.details["nodes"] == 36
    assert result.value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    if (adjacency.sum(axis=1) == k).all():  # no ties: the share of edges between classes, / 4
        differ = sum(adjacency[i, j] for i in range(36) for j in range(36) if y[i] != y[j])
        assert result.value == pytest.approx(differ / (4 * 36 * k), rel=1e-9)


def test_label_variation_with_mixup_equals_hand_computation_on_a_conv_net():
    """Draws in the documented order: per class a permutation, then the partner permutation,
    then the uniforms behind λ ~ Beta(2, 2) (here inverted with scipy.stats.beta)."""
    x, y = data(40, (1, 8, 8), CLASSES)
    model = cnn(CLASSES)
    options = LabelVariation.Options(examples=24, k=2)
    result = LabelVariation().compute(context(model, x, y, CLASSES, seed=5), options)
    g = torch.Generator().manual_seed(5)
    nodes = []
    for c in range(CLASSES):
        members = torch.nonzero(y == c).flatten()
        nodes += members[torch.randperm(len(members), generator=g)[:6]].tolist()
    partner = torch.randperm(len(nodes), generator=g).numpy()
    lam = stats.beta.ppf(torch.rand(len(nodes), generator=g, dtype=torch.float64).numpy(), 2.0, 2.0)
    xn = x.numpy()[nodes]  # float32, as the model sees them
    mixed = (lam[:, None, None, None].astype(np.float32) * xn
             + (1 - lam[:, None, None, None]).astype(np.float32) * xn[partner]).astype(np.float64)
    hard = np.eye(CLASSES)[y.numpy()[nodes]]
    targets = lam[:, None] * hard + (1 - lam[:, None]) * hard[partner]
    features = cnn_numpy(model, mixed)[2]
    expected = variation_by_hand(explicit_adjacency(features, 2), targets)
    assert result.details["nodes"] == 24
    assert result.value == pytest.approx(expected, rel=1e-6)


def test_label_variation_with_k_larger_than_a_class_and_a_class_of_one_example():
    x, y = data(13, (1, 4, 4), 3)
    y[:] = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2])  # class 2: one example; k = 7 > every class
    model = mlp(16, 6, 3)
    result = LabelVariation().compute(context(model, x, y, 3), LabelVariation.Options(mixup_alpha=0.0, k=7))
    expected = variation_by_hand(explicit_adjacency(penultimate_mlp(model, x.double().numpy()), 7), np.eye(3)[y.numpy()])
    assert result.value == pytest.approx(expected, rel=1e-9)
    with pytest.raises(MeasureError):
        LabelVariation().compute(context(model, x, y, 3), LabelVariation.Options(k=13))


def test_label_variation_is_not_applicable_without_a_linear_layer():
    x, y = data(20, (1, 4, 4), 2)
    with pytest.raises(NotApplicable):
        LabelVariation().compute(context(Kernel(x, 2), x, y, 2), LabelVariation.Options())


# --------------------------------------------------------------------------- built-in architectures
def builtin_models():
    """genbench's built-in trained architectures (this test alone reaches into genbench.models to
    build them; the plugin itself uses the public API only)."""
    from genbench.models import (
        MLP1x512,
        MultilayerPerceptron,
        SmallAlexNet,
        SmallConvNet,
        SmallInception,
        SmallInceptionNoBN,
    )

    return [MultilayerPerceptron(), SmallConvNet(), MLP1x512(), SmallAlexNet(), SmallInception(), SmallInceptionNoBN()]


@pytest.mark.parametrize("factory", builtin_models(), ids=lambda f: f.name)
def test_both_measures_run_on_every_builtin_architecture(factory):
    torch.manual_seed(0)
    shape = (3, 12, 12)
    model = factory.build(shape, 3, factory.Options()).eval()
    x, y = data(30, shape, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dbi = DbiMixup().compute(context(model, x, y, 3), DbiMixup.Options(examples=30, rounds=2, mixup_per_class=3, mixup_batches=2))
    lv = LabelVariation().compute(context(model, x, y, 3), LabelVariation.Options(examples=30))
    assert np.isfinite(dbi.value) and dbi.value >= 0 and 0 <= lv.value <= 1000
    first = dict(model.named_modules())[dbi.details["layer"]]
    assert isinstance(first, nn.ReLU)  # every built-in follows its first layer by a ReLU (after batch norm in Inception)
    assert isinstance(dict(model.named_modules())[lv.details["layer"]], nn.Linear)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m.training for m in model.modules())


def test_the_kernel_machine_is_not_applicable():
    from genbench.models.kernel import KernelMachine

    x, y = data(20, (1, 4, 4), 2)
    model = KernelMachine("gaussian", 20, 16, 2)
    for measure in (DbiMixup(), LabelVariation()):
        with pytest.raises(NotApplicable):
            measure.compute(context(model, x, y, 2), measure.Options())


def test_a_network_that_chunks_its_forward_pass_is_read_whole():
    """genbench's closed-form interpolating ReLU network runs its hidden layer on sub-batches
    (of 2²² / width rows): the penultimate features are those sub-batches put back together."""
    from genbench.models.interpolation import InterpolatingReLUNetwork

    x, y = data(30, (1, 4, 4), 3)
    width = 300_000  # 13 rows per sub-batch
    torch.manual_seed(4)
    model = InterpolatingReLUNetwork(16, width, 3)
    with torch.no_grad():
        model.projection.weight.normal_()
        model.thresholds.uniform_(-2, 2)
        model.output.weight.normal_()
    result = LabelVariation().compute(context(model, x, y, 3), LabelVariation.Options(mixup_alpha=0.0, k=2))
    with torch.no_grad():
        hidden = model.hidden(x).numpy()
    expected = variation_by_hand(explicit_adjacency(hidden, 2), np.eye(3)[y.numpy()])
    assert result.value == pytest.approx(expected, rel=1e-9)
    dbi = DbiMixup().compute(context(model, x, y, 3), DbiMixup.Options(examples=30, rounds=1, mixup_per_class=2, mixup_batches=1))
    assert dbi.details["layer"] == "projection"
