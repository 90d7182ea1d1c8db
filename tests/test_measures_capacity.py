"""Tests of the capacity bounds vc-bound and rademacher-norm-bound: each against a hand or
plain-numpy computation from the layer shapes and weights written out here."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from genbench.measures.capacity import NormBoundOptions, RademacherNormBound, VCBound, VCBoundOptions
from genbench.models.cnn import CNNOptions, SmallConvNet
from genbench.models.mlp import MLPOptions, MultilayerPerceptron
from genbench.plugins import get_plugins
from measure_helpers import make_ctx

FAST = settings(max_examples=15, deadline=None)


def theorem7(units: list[int], parameters: list[int]) -> float:
    """L + L̄·W·log₂(4eR·log₂(2eR)) with p = 1, R = Σ i·k_i, L̄·W = Σ_i Σ_{j≤i} P_j (numpy)."""
    units, parameters = np.array(units, dtype=np.float64), np.array(parameters, dtype=np.float64)
    depth = len(units)
    r = float(np.sum(np.arange(1, depth + 1) * units))
    summed_cumulative = float(np.sum(np.cumsum(parameters)))
    return depth + summed_cumulative * np.log2(4 * np.e * r * np.log2(2 * np.e * r))


def ctx_for(model: nn.Module, input_shape: tuple[int, ...], n: int = 5, classes: int = 2, seed: int = 0):
    x = torch.randn(n, *input_shape, generator=torch.Generator().manual_seed(seed))
    return make_ctx(model, x, torch.zeros(n, dtype=torch.long), classes)


# ---------------------------------------------------------------------------
# vc-bound
# ---------------------------------------------------------------------------


def test_vc_bound_mlp_by_hand():
    # 3 inputs → 4 ReLU units → 2 outputs: P = (3·4 + 4, 4·2 + 2) = (16, 10), k = (4, 2)
    model = MultilayerPerceptron().build((3,), 2, MLPOptions(hidden=[4]))
    ctx = ctx_for(model, (3,))
    # R = 1·4 + 2·2 = 8; Σ_i W_i = 16 + 26 = 42
    expected = 2 + 42 * math.log2(4 * math.e * 8 * math.log2(2 * math.e * 8))
    assert expected == pytest.approx(theorem7([4, 2], [16, 10]), rel=1e-12)
    estimate = VCBound().compute(ctx, VCBoundOptions())
    assert estimate.value == pytest.approx(expected, rel=1e-12)
    assert estimate.details["parameters"] == 26 and estimate.details["depth"] == 2


def test_vc_bound_conv_net_by_hand():
    # conv 3×3 'same', 1 → 2 channels on 4×4: 2·1·9 + 2 = 20 shared parameters, 2·4·4 = 32 units;
    # 2×2 max-pool → 2·2·2 = 8 features; linear 8 → 3: 27 parameters, 3 units
    model = SmallConvNet().build((1, 4, 4), 3, CNNOptions(channels=[2], kernel_size=3))
    ctx = ctx_for(model, (1, 4, 4), classes=3)
    expected = theorem7([32, 3], [20, 27])
    value = VCBound().compute(ctx, VCBoundOptions()).value
    assert value == pytest.approx(expected, rel=1e-12)
    # the shared kernel counts once: W = 47, not 32·(9 + 1) + 27
    assert VCBound().compute(ctx, VCBoundOptions(formula="w-l-log-w")).value == pytest.approx(
        47 * 2 * math.log2(47), rel=1e-12
    )


def test_vc_bound_conv1d_by_hand():
    # Conv1d k=3, 2 → 3 channels on length 6: 21 parameters, 18 units; pool → 3·3 = 9; linear 9 → 2
    model = SmallConvNet().build((2, 6), 2, CNNOptions(channels=[3], kernel_size=3))
    ctx = ctx_for(model, (2, 6))
    assert VCBound().compute(ctx, VCBoundOptions()).value == pytest.approx(theorem7([18, 2], [21, 20]), rel=1e-12)


class TwoBranches(nn.Module):
    """Two parallel linear layers (3 and 5 units) concatenated, then a linear output layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 5, bias=False)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(torch.relu(torch.cat([self.a(x), self.b(x)], dim=1)))


def test_vc_bound_parallel_branches_share_a_depth():
    ctx = ctx_for(TwoBranches(), (4,))
    # depth 1: 3 + 5 units, 15 + 20 parameters; depth 2: 2 units, 18 parameters
    expected = theorem7([8, 2], [35, 18])
    estimate = VCBound().compute(ctx, VCBoundOptions())
    assert estimate.details["depth"] == 2
    assert estimate.value == pytest.approx(expected, rel=1e-12)


def test_vc_bound_folds_batch_norm():
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    ctx = ctx_for(model, (3,))
    # the folded first layer has 12 weights and 4 biases; BN's own parameters are not counted
    assert VCBound().compute(ctx, VCBoundOptions()).value == pytest.approx(theorem7([4, 2], [16, 10]), rel=1e-12)


def test_vc_bound_options_and_normalization():
    model = MultilayerPerceptron().build((3,), 2, MLPOptions(hidden=[4]))
    ctx = ctx_for(model, (3,), n=50)
    vc = theorem7([4, 2], [16, 10])
    bound = VCBound().compute(ctx, VCBoundOptions(value="generalization-bound")).value
    assert bound == pytest.approx(math.sqrt(vc * math.log(50) / 50), rel=1e-12)
    normalized = VCBound().compute(ctx, VCBoundOptions(normalize_by_m=True)).value
    assert normalized == pytest.approx(math.sqrt(vc / 50), rel=1e-12)
    simple = VCBound().compute(ctx, VCBoundOptions(formula="w-l-log-w")).value
    assert simple == pytest.approx(26 * 2 * math.log2(26), rel=1e-12)


def test_vc_bound_is_the_same_for_every_run_of_an_architecture():
    torch.manual_seed(0)
    trained = MultilayerPerceptron().build((5,), 3, MLPOptions(hidden=[6, 4]))
    other = copy.deepcopy(trained)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-3.0).add_(1.0)
    diverged = copy.deepcopy(trained)
    with torch.no_grad():
        diverged[1].weight.fill_(math.nan)
    values = {VCBound().compute(ctx_for(m, (5,), classes=3, seed=s), VCBoundOptions()).value
              for s, m in enumerate([trained, other, diverged])}
    assert len(values) == 1 and math.isfinite(values.pop())


@FAST
@given(
    inputs=st.integers(1, 10),
    hidden=st.lists(st.integers(1, 12), min_size=1, max_size=3),
    classes=st.integers(2, 6),
    where=st.integers(0, 2),
    extra=st.integers(1, 8),
    formula=st.sampled_from(["theorem-7", "w-l-log-w"]),
)
def test_vc_bound_monotone_in_width_and_depth(inputs, hidden, classes, where, extra, formula):
    def vc(widths):
        model = MultilayerPerceptron().build((inputs,), classes, MLPOptions(hidden=widths))
        return VCBound().compute(ctx_for(model, (inputs,), classes=classes), VCBoundOptions(formula=formula)).value

    base = vc(hidden)
    wider = list(hidden)
    wider[where % len(hidden)] += extra
    deeper = list(hidden)  # one more layer, as wide as the one before it: nothing else changes
    position = where % len(hidden)
    deeper.insert(position, hidden[position])
    assert vc(wider) > base
    assert vc(deeper) > base


# ---------------------------------------------------------------------------
# rademacher-norm-bound
# ---------------------------------------------------------------------------


def golowich(norms: list[float], x: np.ndarray) -> float:
    """B·(sqrt(2 ln2 · d) + 1)·Π‖W_j‖_F / sqrt(m) in numpy."""
    radius = np.max(np.linalg.norm(x.reshape(len(x), -1), axis=1))
    d = len(norms)
    return radius * (np.sqrt(2 * np.log(2) * d) + 1) * np.prod(norms) / np.sqrt(len(x))


def test_norm_bound_mlp_against_numpy():
    torch.manual_seed(3)
    model = MultilayerPerceptron().build((4,), 3, MLPOptions(hidden=[5, 6]))
    ctx = ctx_for(model, (4,), n=7, classes=3)
    norms = [np.linalg.norm(m.weight.detach().double().numpy(), "fro") for m in model if isinstance(m, nn.Linear)]
    expected = golowich(norms, ctx.train_inputs.double().numpy())
    estimate = RademacherNormBound().compute(ctx, NormBoundOptions())
    assert estimate.value == pytest.approx(expected, rel=1e-9)
    assert estimate.details["depth"] == 3
    log_value = RademacherNormBound().compute(ctx, NormBoundOptions(log=True)).value
    assert log_value == pytest.approx(math.log(expected), rel=1e-9)


def test_norm_bound_ignores_biases_and_uses_the_kernel_norm_of_convolutions():
    torch.manual_seed(4)
    model = SmallConvNet().build((1, 4, 4), 2, CNNOptions(channels=[2], kernel_size=3))
    ctx = ctx_for(model, (1, 4, 4), n=6)
    kernel = model[0].weight.detach().double().numpy()  # [2, 1, 3, 3]
    head = model[-1].weight.detach().double().numpy()
    expected = golowich([np.sqrt((kernel**2).sum()), np.linalg.norm(head, "fro")], ctx.train_inputs.double().numpy())
    before = RademacherNormBound().compute(ctx, NormBoundOptions()).value
    assert before == pytest.approx(expected, rel=1e-9)
    with torch.no_grad():
        model[0].bias.add_(10.0)
    assert RademacherNormBound().compute(ctx, NormBoundOptions()).value == pytest.approx(before, rel=1e-12)


def test_norm_bound_folds_batch_norm():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].running_var.copy_(torch.tensor([0.5, 2.0, 4.0, 0.25]))
        model[1].running_mean.copy_(torch.tensor([1.0, -1.0, 0.5, 0.0]))
        model[1].weight.copy_(torch.tensor([1.5, -0.5, 2.0, 1.0]))
    ctx = ctx_for(model.eval(), (3,), n=4)
    w1 = model[0].weight.detach().double().numpy()
    scale = model[1].weight.detach().double().numpy() / np.sqrt(model[1].running_var.double().numpy() + model[1].eps)
    folded = scale[:, None] * w1
    w2 = model[3].weight.detach().double().numpy()
    expected = golowich([np.linalg.norm(folded, "fro"), np.linalg.norm(w2, "fro")], ctx.train_inputs.double().numpy())
    assert RademacherNormBound().compute(ctx, NormBoundOptions()).value == pytest.approx(expected, rel=1e-6)


def test_norm_bound_parallel_branches_combine_as_one_layer():
    torch.manual_seed(6)
    model = TwoBranches()
    ctx = ctx_for(model, (4,), n=5)
    a, b = model.a.weight.detach().double().numpy(), model.b.weight.detach().double().numpy()
    first = np.linalg.norm(np.concatenate([a, b]), "fro")  # the concatenated layer's matrix
    expected = golowich([first, np.linalg.norm(model.out.weight.detach().double().numpy())], ctx.train_inputs.double().numpy())
    assert RademacherNormBound().compute(ctx, NormBoundOptions()).value == pytest.approx(expected, rel=1e-9)


def test_norm_bound_log_scale_survives_overflow():
    layers = [nn.Flatten()]
    for _ in range(9):
        layers += [nn.Linear(4, 4), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(4, 2))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.fill_(1e37)  # ‖W‖_F = 4·1e37 (or sqrt(8)·1e37): a product of 10 overflows float64
    ctx = ctx_for(model, (4,), n=3)
    entry = float(np.float32(1e37))  # the weight as stored
    log_norms = 9 * math.log(4 * entry) + math.log(math.sqrt(8) * entry)
    radius = ctx.train_inputs.double().norm(dim=1).max().item()
    expected_log = math.log(radius) + math.log(math.sqrt(2 * math.log(2) * 10) + 1) + log_norms - 0.5 * math.log(3)
    assert expected_log > 709.8  # beyond float64
    assert RademacherNormBound().compute(ctx, NormBoundOptions()).value == math.inf
    assert RademacherNormBound().compute(ctx, NormBoundOptions(log=True)).value == pytest.approx(expected_log, rel=1e-12)
    normalized = RademacherNormBound().compute(ctx, NormBoundOptions(log=True, normalize_by_m=True)).value
    assert normalized == pytest.approx(0.5 * (expected_log - math.log(3)), rel=1e-12)


def test_norm_bound_nan_weights_give_nan():
    model = MultilayerPerceptron().build((3,), 2, MLPOptions(hidden=[4]))
    with torch.no_grad():
        model[1].weight[0, 0] = math.nan
    ctx = ctx_for(model, (3,))
    assert math.isnan(RademacherNormBound().compute(ctx, NormBoundOptions()).value)
    assert math.isnan(RademacherNormBound().compute(ctx, NormBoundOptions(log=True)).value)


# ---------------------------------------------------------------------------
# every registered architecture
# ---------------------------------------------------------------------------

MODELS = [
    ("mlp", (1, 6, 6)),
    ("cnn", (1, 6, 6)),
    ("cnn", (2, 10)),
    ("mlp-1x512", (1, 4, 4)),
    ("mlp-3x512", (1, 4, 4)),
    ("small-alexnet", (3, 8, 8)),
    ("small-inception", (3, 8, 8)),
    ("small-inception-nobn", (3, 8, 8)),
]


@pytest.mark.parametrize(("name", "shape"), MODELS)
def test_capacity_bounds_run_on_every_architecture(name, shape):
    factory = get_plugins().registry("models").get(name)
    model = factory.build(shape, 4, factory.Options())
    ctx = ctx_for(model, shape, n=4, classes=4)
    vc = VCBound().compute(ctx, VCBoundOptions())
    parameters = sum(layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
                     for layer in model.modules() if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)))
    assert vc.details["parameters"] == parameters
    assert math.isfinite(vc.value) and vc.value > parameters
    bound = RademacherNormBound().compute(ctx, NormBoundOptions(log=True))
    assert math.isfinite(bound.value)


def test_inception_depth_counts_parallel_branches_once():
    factory = get_plugins().registry("models").get("small-inception")
    model = factory.build((3, 8, 8), 4, factory.Options())
    estimate = VCBound().compute(ctx_for(model, (3, 8, 8), n=2, classes=4), VCBoundOptions())
    # stem, 8 inception modules, 2 downsample modules, the FC layer: 12 layers (20 weight layers)
    assert estimate.details["depth"] == 12


class NoWeightLayers(nn.Module):
    """A model whose parameter is not a linear or convolutional layer's (as a kernel machine's)."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(3, 2))

    def forward(self, x):
        return x @ self.alpha


@pytest.mark.parametrize("measure, options", [(VCBound(), VCBoundOptions()), (RademacherNormBound(), NormBoundOptions())])
def test_a_network_without_weight_layers_is_a_clear_error(measure, options):
    from genbench.errors import MeasureError

    with pytest.raises(MeasureError, match="no linear or convolutional layer"):
        measure.compute(ctx_for(NoWeightLayers(), (3,)), options)
