"""Tests for the norm family (genbench.measures.norms), each value against a hand computation.

Expected values come from plain numpy on tiny networks: weights read from named modules,
batch norm folded by hand, forward passes (linear, 1-D and 2-D 'same' convolutions, ReLU,
2×2 max-pool) written here with numpy loops, singular values from numpy's SVD — never
from genbench's own helpers.
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

from genbench.errors import MeasureError
from genbench.measures import margins as margins_module
from genbench.measures import quantities
from genbench.measures import norms
from genbench.measures.base import BaseMeasure, SizeNormalizedOptions, one_intra_op_thread
from genbench.models.cnn import CNNOptions, SmallConvNet
from genbench.plugins import load_plugins
from measure_helpers import make_ctx, seeded_mlp

FAST = settings(max_examples=15, deadline=None)
BY_NAME = {cls.name: cls for cls in norms.MEASURES}
EPS = 1e-5  # BatchNorm's default eps

WEIGHT_ONLY = ["param-norm", "log-prod-of-fro", "log-sum-of-fro", "log-prod-of-spec", "log-sum-of-spec", "fro-over-spec"]
FROM_INIT = ["dist-from-init", "dist-spec-init"]
OVER_MARGIN = [
    "log-prod-of-spec-over-margin",
    "log-sum-of-spec-over-margin",
    "log-prod-of-fro-over-margin",
    "log-sum-of-fro-over-margin",
    "path-norm-over-margin",
]
MARGIN_AND_INIT = ["spec-init-main", "spectral-complexity"]
LOG_SCALE = {
    "log-prod-of-fro",
    "log-sum-of-fro",
    "log-prod-of-spec",
    "log-sum-of-spec",
    "spec-init-main",
    "log-prod-of-spec-over-margin",
    "log-sum-of-spec-over-margin",
    "log-prod-of-fro-over-margin",
    "log-sum-of-fro-over-margin",
}


#: small tensor work: one intra-op thread (see conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


def value(name: str, ctx, **options) -> float:
    measure = BY_NAME[name]()
    return measure.compute(ctx, measure.Options(**options))


# ---------------------------------------------------------------------------
# numpy reference implementation
# ---------------------------------------------------------------------------


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy().copy()


def conv_same(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """'same' convolution (cross-correlation, odd kernel) of x [N, C, *spatial] with w [O, C, *k]."""
    pad = w.shape[2] // 2
    spatial = x.shape[2:]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pad, pad)] * len(spatial))
    out = np.zeros((x.shape[0], w.shape[0], *spatial))
    for offset in np.ndindex(*w.shape[2:]):
        window = xp[(slice(None), slice(None)) + tuple(slice(o, o + s) for o, s in zip(offset, spatial))]
        out += np.einsum("nc...,oc->no...", window, w[(slice(None), slice(None)) + offset])
    return out + b.reshape((1, -1) + (1,) * len(spatial))


def max_pool2(x: np.ndarray) -> np.ndarray:
    """2-wide, stride-2 max-pool over every spatial axis (floor)."""
    if x.ndim == 3:
        n, c, length = x.shape
        return x[:, :, : length // 2 * 2].reshape(n, c, length // 2, 2).max(3)
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max((3, 5))


def folded_layers(model: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) of every Linear/Conv of a flat Sequential, with a following BatchNorm folded by hand."""
    modules = list(model)
    out = []
    for i, module in enumerate(modules):
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            w, b = as_numpy(module.weight), as_numpy(module.bias)
            following = modules[i + 1] if i + 1 < len(modules) else None
            if isinstance(following, (nn.BatchNorm1d, nn.BatchNorm2d)):
                scale = as_numpy(following.weight) / np.sqrt(as_numpy(following.running_var) + following.eps)
                w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
                b = scale * (b - as_numpy(following.running_mean)) + as_numpy(following.bias)
            out.append((w, b))
    return out


def numpy_forward(model: nn.Sequential, x: np.ndarray, squared: bool = False) -> np.ndarray:
    """Eval-mode forward of a flat Sequential (Flatten, Linear, Conv1d/2d, BatchNorm → folded,
    ReLU, MaxPool 2) with the hand-folded parameters (squared if ``squared``)."""
    layers = iter(folded_layers(model))
    h = x.astype(np.float64)
    for module in model:
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            w, b = next(layers)
            if squared:
                w, b = w**2, b**2
            h = h @ w.T + b if isinstance(module, nn.Linear) else conv_same(h, w, b)
        elif isinstance(module, nn.Flatten):
            h = h.reshape(len(h), -1)
        elif isinstance(module, nn.ReLU):
            h = np.maximum(h, 0.0)
        elif isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
            h = max_pool2(h)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            pass  # folded into the layer before
        else:
            raise AssertionError(f"no numpy forward for {module}")
    return h


def numpy_margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = []
    for row, y in zip(logits, labels):
        out.append(row[y] - max(v for j, v in enumerate(row) if j != y))
    return np.array(out)


def reference_values(model, initial, x, labels, percentile=10.0) -> dict[str, float]:
    """Every norm measure of ``model`` worked out in numpy."""
    weights = [w for w, _ in folded_layers(model)]
    initial_weights = [w for w, _ in folded_layers(initial)]
    matrices = [w.reshape(w.shape[0], -1) for w in weights]
    changes = [(w - w0).reshape(w.shape[0], -1) for w, w0 in zip(weights, initial_weights)]
    d = len(weights)
    fro = np.array([np.sum(m**2) for m in matrices])
    sigma = np.array([np.linalg.svd(m, compute_uv=False)[0] for m in matrices])
    spec = sigma**2
    gamma = np.percentile(numpy_margins(numpy_forward(model, x), labels), percentile)
    assert gamma > 0
    path = numpy_forward(model, np.ones((1, *x.shape[1:])), squared=True).sum()
    two_one = np.array([np.sum(np.sqrt(np.sum(c**2, axis=1))) for c in changes])
    return {
        "param-norm": fro.sum(),
        "dist-from-init": sum(np.sum(c**2) for c in changes),
        "dist-spec-init": sum(np.linalg.svd(c, compute_uv=False)[0] ** 2 for c in changes),
        "log-prod-of-fro": np.log(fro).sum(),
        "log-sum-of-fro": np.log(d) + np.log(fro).sum() / d,
        "log-prod-of-spec": np.log(spec).sum(),
        "log-sum-of-spec": np.log(d) + np.log(spec).sum() / d,
        "fro-over-spec": np.sum(fro / spec),
        "spec-init-main": np.log(np.prod(spec) / gamma**2 * sum(np.sum(c**2) / s for c, s in zip(changes, spec))),
        "log-prod-of-spec-over-margin": np.log(np.prod(spec) / gamma**2),
        "log-sum-of-spec-over-margin": np.log(d * (np.prod(spec) / gamma**2) ** (1 / d)),
        "log-prod-of-fro-over-margin": np.log(np.prod(fro) / gamma**2),
        "log-sum-of-fro-over-margin": np.log(d * (np.prod(fro) / gamma**2) ** (1 / d)),
        "path-norm": path,
        "path-norm-over-margin": path / gamma**2,
        "spectral-complexity": np.prod(sigma) * np.sum((two_one / sigma) ** (2 / 3)) ** 1.5 / gamma,
    }


def fitted_labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own predictions (every margin ≥ 0) with one point relabelled wrongly."""
    with torch.no_grad():
        labels = model.eval()(x).argmax(1)
    labels[0] = (labels[0] + 1) % model(x).shape[1]
    return labels


# ---------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------


def tiny_mlp(seed: int) -> nn.Sequential:
    return seeded_mlp([5, 4, 3, 3], seed)


def tiny_cnn(seed: int, shape=(1, 4, 4)) -> nn.Sequential:
    torch.manual_seed(seed)
    return SmallConvNet().build(shape, 3, CNNOptions(channels=[2, 3], kernel_size=3))


def randomize_batch_norm(norm: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = norm.num_features
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(n, generator=g))
        norm.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
        norm.weight.copy_(torch.randn(n, generator=g))
        norm.bias.copy_(torch.randn(n, generator=g))


def tiny_bn_cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3),
    )
    randomize_batch_norm(net[1], seed + 1)
    return net.eval()


def tiny_bn_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    randomize_batch_norm(net[2], seed + 1)
    return net.eval()


def context_for(model, initial, shape, n=24, seed=0, labels=None):
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
    y = fitted_labels(model, x) if labels is None else labels
    return make_ctx(model, x, y, 3, initial=initial), x.numpy().astype(np.float64), y.numpy()


# ---------------------------------------------------------------------------
# hand computations: MLP, 2-D and 1-D conv nets, batch-norm nets
# ---------------------------------------------------------------------------

NETWORKS = {
    "mlp": (tiny_mlp, (5,)),
    "cnn-2d": (tiny_cnn, (1, 4, 4)),
    "cnn-1d": (lambda seed: tiny_cnn(seed, (2, 6)), (2, 6)),
    "bn-cnn": (tiny_bn_cnn, (1, 4, 4)),
}


def test_numpy_reference_matches_torch_forward():
    """The numpy forward (with its hand-folded batch norm) is the torch network's function."""
    for build, shape in NETWORKS.values():
        model = build(3)
        x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(1))
        expected = model.eval()(x).detach().double().numpy()
        np.testing.assert_allclose(numpy_forward(model, x.numpy()), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_measure_by_hand(network):
    build, shape = NETWORKS[network]
    model, initial = build(1), build(2)
    ctx, x, y = context_for(model, initial, shape)
    expected = reference_values(model, initial, x, y)
    assert set(expected) == set(BY_NAME)
    for name, reference in expected.items():
        assert value(name, ctx) == pytest.approx(reference, rel=1e-5, abs=1e-9), name


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_measures_share_a_context_in_any_order(network):
    """Cached per-run quantities (weights, spectral norms, γ) give the same values in any order."""
    build, shape = NETWORKS[network]
    model, initial = build(4), build(5)
    names = sorted(BY_NAME)
    ctx, _, _ = context_for(model, initial, shape)
    forward = {name: value(name, ctx) for name in names}
    ctx, _, _ = context_for(model, initial, shape)
    backward = {name: value(name, ctx) for name in reversed(names)}
    assert forward == backward
    for name in names:  # and each equals its value in a fresh context
        fresh, _, _ = context_for(model, initial, shape)
        assert value(name, fresh) == forward[name]


def test_batch_norm_fold_by_hand():
    """Conv → BN: the folded weight is W·γ/sqrt(var + ε) per output channel; BN parameters
    themselves and biases never count."""
    model, initial = tiny_bn_cnn(1), tiny_bn_cnn(2)
    conv, bn, linear = model[0], model[1], model[5]
    w = as_numpy(conv.weight)
    scale = as_numpy(bn.weight) / np.sqrt(as_numpy(bn.running_var) + EPS)
    folded = w * scale[:, None, None, None]
    assert not np.allclose(folded, w)  # the fold changes the weights on this network
    conv0, bn0 = initial[0], initial[1]
    folded0 = as_numpy(conv0.weight) * (as_numpy(bn0.weight) / np.sqrt(as_numpy(bn0.running_var) + EPS))[:, None, None, None]
    head, head0 = as_numpy(linear.weight), as_numpy(initial[5].weight)
    ctx, _, _ = context_for(model, initial, (1, 4, 4))
    assert value("param-norm", ctx) == pytest.approx(np.sum(folded**2) + np.sum(head**2), rel=1e-6)
    assert value("dist-from-init", ctx) == pytest.approx(
        np.sum((folded - folded0) ** 2) + np.sum((head - head0) ** 2), rel=1e-6
    )
    spec = [np.linalg.norm(folded.reshape(2, 9), 2) ** 2, np.linalg.norm(head, 2) ** 2]
    assert value("log-prod-of-spec", ctx) == pytest.approx(np.log(spec).sum(), rel=1e-6)
    # the network is left untouched (batch norm still in place, weights unchanged)
    assert isinstance(model[1], nn.BatchNorm2d)
    np.testing.assert_array_equal(as_numpy(conv.weight), w)


def test_dist_from_init_folds_the_initial_network_too():
    """An initial network whose batch norm has other statistics: both sides are folded."""
    model = tiny_bn_mlp(0)
    initial = copy.deepcopy(model)
    randomize_batch_norm(initial[2], 99)  # same weights, other BN statistics at init
    ctx, _, _ = context_for(model, initial, (3,))
    w = as_numpy(model[1].weight)
    s = as_numpy(model[2].weight) / np.sqrt(as_numpy(model[2].running_var) + EPS)
    s0 = as_numpy(initial[2].weight) / np.sqrt(as_numpy(initial[2].running_var) + EPS)
    expected = np.sum((w * s[:, None] - w * s0[:, None]) ** 2)
    assert expected > 0.1
    assert value("dist-from-init", ctx) == pytest.approx(expected, rel=1e-6)
    assert value("dist-spec-init", ctx) == pytest.approx(np.linalg.norm(w * (s - s0)[:, None], 2) ** 2, rel=1e-6)


def test_bn_mlp_path_norm_by_enumeration():
    """Linear → BN → ReLU → Linear: the sum over paths of squared folded parameters."""
    model = tiny_bn_mlp(3)
    w1, b1 = as_numpy(model[1].weight), as_numpy(model[1].bias)
    bn = model[2]
    s = as_numpy(bn.weight) / np.sqrt(as_numpy(bn.running_var) + EPS)
    f1 = w1 * s[:, None]
    c1 = s * (b1 - as_numpy(bn.running_mean)) + as_numpy(bn.bias)
    w2, b2 = as_numpy(model[4].weight), as_numpy(model[4].bias)
    total = 0.0
    for k in range(2):
        for j in range(4):
            total += sum(f1[j, i] ** 2 for i in range(3)) * w2[k, j] ** 2  # input → j → k
            total += c1[j] ** 2 * w2[k, j] ** 2  # bias of j → k
        total += b2[k] ** 2
    ctx, _, _ = context_for(model, tiny_bn_mlp(4), (3,))
    assert value("path-norm", ctx) == pytest.approx(total, rel=1e-6)


def test_spectral_complexity_two_one_norm_runs_over_output_units():
    """‖Wᵀ − W⁰ᵀ‖_{2,1}: Σ over output units (rows of [out, in]) of the ℓ2 norm of their
    incoming changes, not over input units. One layer, W⁰ = 0, so that Π s · (r/s) = r."""
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]))
        net.bias.zero_()
    initial = copy.deepcopy(net)
    with torch.no_grad():
        initial.weight.zero_()
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    # logits: (3, 0), (0, 1), (4, 0): margins 3, 1, 4; γ = 10th percentile = 1 + 0.2·(3 − 1) = 1.4
    ctx = make_ctx(net, x, y, 2, initial=initial)
    rows = 5.0 + 1.0  # ‖(3, 4, 0)‖ + ‖(0, 0, 1)‖; the columns would give 3 + 4 + 1 = 8
    assert value("spectral-complexity", ctx) == pytest.approx(rows / 1.4, rel=1e-6)


# ---------------------------------------------------------------------------
# options, edge cases
# ---------------------------------------------------------------------------


def test_percentile_option():
    model, initial = tiny_mlp(1), tiny_mlp(2)
    ctx, x, y = context_for(model, initial, (5,))
    for percentile in (25.0, 50.0, 90.0):
        expected = reference_values(model, initial, x, y, percentile)
        for name in OVER_MARGIN + MARGIN_AND_INIT:
            assert value(name, ctx, percentile=percentile) == pytest.approx(expected[name], rel=1e-5), name
    assert value("path-norm-over-margin", ctx, percentile=90.0) < value("path-norm-over-margin", ctx)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_normalize_by_m(name):
    model, initial = tiny_mlp(1), tiny_mlp(2)
    ctx, _, _ = context_for(model, initial, (5,), n=30)
    measure = BY_NAME[name]()
    assert issubclass(measure.Options, SizeNormalizedOptions)
    assert measure.log_scale == (name in LOG_SCALE)
    raw = measure.compute(ctx, measure.Options())
    normalized = measure.compute(ctx, measure.Options(normalize_by_m=True))
    if name in LOG_SCALE:
        assert normalized == pytest.approx(0.5 * (raw - math.log(30)), rel=1e-12)
    else:
        assert normalized == pytest.approx(math.sqrt(raw / 30), rel=1e-12)


@pytest.mark.parametrize("name", OVER_MARGIN + MARGIN_AND_INIT)
def test_margin_not_positive_gives_infinity(name):
    model, initial = tiny_mlp(1), tiny_mlp(2)
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        wrong = model.eval()(x).argmin(1)  # every margin negative
    ctx = make_ctx(model, x, wrong, 3, initial=initial)
    assert value(name, ctx) == math.inf
    assert value(name, ctx, normalize_by_m=True) == math.inf


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_diverged_model_gives_nan(name):
    model, initial = tiny_cnn(1), tiny_cnn(2)
    x = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        model[0].weight[0, 0, 1, 1] = math.nan
    ctx = make_ctx(model, x, y, 3, initial=initial)
    assert math.isnan(value(name, ctx))


def test_path_norm_refuses_layers_it_cannot_fold():
    lrn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.LocalResponseNorm(2), nn.Flatten(), nn.Linear(36, 2))
    # batch norm that follows a ReLU, not a weight layer: cannot be folded
    late_bn = nn.Sequential(nn.Flatten(), nn.Linear(9, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2))
    for net, shape, expected in ((lrn, (1, 3, 3), "LocalResponseNorm"), (late_bn, (1, 3, 3), "BatchNorm1d")):
        x = torch.randn(4, *shape)
        ctx = make_ctx(net, x, torch.zeros(4, dtype=torch.long), 2)
        for name in ("path-norm", "path-norm-over-margin"):
            with pytest.raises(MeasureError, match=expected):
                value(name, ctx)


def test_zero_layer_is_handled():
    """A layer with W = 0: log measures −∞, fro-over-spec skips it, spectral complexity
    takes the continuous extension r_k · Π_{j≠k} s_j."""
    model, initial = tiny_mlp(1), tiny_mlp(2)
    with torch.no_grad():
        model[3].weight.zero_()
        model[5].bias.copy_(torch.tensor([0.5, -0.25, 1.5]))
    x = torch.randn(10, 5, generator=torch.Generator().manual_seed(0))
    # the network is now constant: logits = W₃·relu(b₂) + b₃ for every input
    logits = numpy_forward(model, x.numpy())
    labels = logits.argmax(1)
    gamma = np.percentile(numpy_margins(logits, labels), 10)
    assert gamma > 0 and np.ptp(logits, axis=0).max() < 1e-12
    ctx = make_ctx(model, x, torch.tensor(labels), 3, initial=initial)
    assert value("log-prod-of-spec", ctx) == -math.inf
    assert value("log-sum-of-fro", ctx) == -math.inf
    w = [as_numpy(model[i].weight) for i in (1, 3, 5)]
    assert value("fro-over-spec", ctx) == pytest.approx(
        sum(np.sum(m**2) / np.linalg.norm(m, 2) ** 2 for m in (w[0], w[2])), rel=1e-6
    )
    r = np.sum(np.linalg.norm(w[1] - as_numpy(initial[3].weight), axis=1))
    expected = r * np.linalg.norm(w[0], 2) * np.linalg.norm(w[2], 2) / gamma
    assert value("spectral-complexity", ctx) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------


@FAST
@given(seed=st.integers(0, 10_000), bn=st.booleans())
def test_zero_at_initialization(seed, bn):
    model = tiny_bn_mlp(seed) if bn else tiny_mlp(seed)
    shape = (3,) if bn else (5,)
    ctx, _, _ = context_for(model, copy.deepcopy(model), shape, n=24, seed=seed)
    assert value("dist-from-init", ctx) == 0.0
    assert value("dist-spec-init", ctx) == 0.0
    assert value("spec-init-main", ctx) == -math.inf  # log of a zero distance
    assert value("spectral-complexity", ctx) == 0.0


def scale_last_layer(model: nn.Sequential, c: float) -> nn.Sequential:
    scaled = copy.deepcopy(model)
    last = [m for m in scaled if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(c)
        last.bias.mul_(c)
    return scaled


def margin_tolerance(model, x, y) -> float:
    """Relative tolerance for γ-normalized values: the logits are float32, so γ carries a
    relative error of about 1e-7·max|logit|/γ (large when γ is small)."""
    logits = numpy_forward(model, x)
    return 1e-5 + 1e-5 * np.abs(logits).max() / np.percentile(numpy_margins(logits, y), 10)


@FAST
@given(seed=st.integers(0, 10_000), c=st.floats(0.2, 5.0), bn=st.booleans())
def test_over_margin_measures_invariant_to_last_layer_scale(seed, c, bn):
    """Logits × c ⇒ γ × c, while the last layer's spec and fro grow by c²: the −2 log γ
    (or 1/γ²) cancels it exactly. The measures without the margin move by 2 log c."""
    model, initial = (tiny_bn_mlp(seed), tiny_bn_mlp(seed + 1)) if bn else (tiny_mlp(seed), tiny_mlp(seed + 1))
    shape = (3,) if bn else (5,)
    ctx, x, y = context_for(model, initial, shape, seed=seed)
    scaled_ctx, _, _ = context_for(scale_last_layer(model, c), initial, shape, seed=seed, labels=torch.tensor(y))
    tolerance = margin_tolerance(model, x, y)
    for name in OVER_MARGIN:
        assert value(name, scaled_ctx) == pytest.approx(value(name, ctx), rel=tolerance, abs=tolerance), name
    for name in ("log-prod-of-spec", "log-prod-of-fro"):
        assert value(name, scaled_ctx) == pytest.approx(value(name, ctx) + 2 * math.log(c), abs=1e-4)


@FAST
@given(seed=st.integers(0, 10_000), c=st.floats(0.2, 5.0))
def test_init_referenced_measures_invariant_when_init_scales_too(seed, c):
    """spec-init-main and spectral-complexity measure W_L − W⁰_L, so they are invariant only
    when the initial last layer is scaled with the final one."""
    model, initial = tiny_mlp(seed), tiny_mlp(seed + 1)
    ctx, x, y = context_for(model, initial, (5,), seed=seed)
    scaled = scale_last_layer(model, c)
    both, _, _ = context_for(scaled, scale_last_layer(initial, c), (5,), seed=seed, labels=torch.tensor(y))
    tolerance = margin_tolerance(model, x, y)
    for name in MARGIN_AND_INIT:
        assert value(name, both) == pytest.approx(value(name, ctx), rel=tolerance, abs=tolerance), name


@FAST
@given(seed=st.integers(0, 10_000), unit=st.integers(0, 3), c=st.floats(0.1, 10.0))
def test_path_norm_invariant_under_rescaling_through_batch_norm(seed, unit, c):
    """Linear → BN → ReLU → Linear: scaling BN's γ and β of one unit by c > 0 and the unit's
    outgoing weights by 1/c keeps the function and the (folded) path norm."""
    model = tiny_bn_mlp(seed)
    rescaled = copy.deepcopy(model)
    with torch.no_grad():
        rescaled[2].weight[unit] *= c
        rescaled[2].bias[unit] *= c
        rescaled[4].weight[:, unit] /= c
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(rescaled(x), model(x), rtol=1e-4, atol=1e-4)
    before = value("path-norm", make_ctx(model, x, torch.zeros(8, dtype=torch.long), 2))
    after = value("path-norm", make_ctx(rescaled, x, torch.zeros(8, dtype=torch.long), 2))
    assert after == pytest.approx(before, rel=1e-5)


# ---------------------------------------------------------------------------
# the registered architectures
# ---------------------------------------------------------------------------

MODELS = load_plugins(entry_points=[]).registry("models")
ARCHITECTURES = [
    ("mlp-1x512", {}, (1, 8, 8)),
    ("mlp-3x512", {}, (1, 8, 8)),
    ("small-alexnet", {}, (3, 8, 8)),
    ("small-alexnet", {"local_response_norm": False}, (3, 8, 8)),
    ("small-inception", {}, (3, 8, 8)),
    ("small-inception-nobn", {}, (3, 8, 8)),
    ("cnn", {}, (1, 8, 8)),
    ("cnn", {}, (1, 40)),
    ("mlp", {"hidden": [16]}, (40,)),
]


@pytest.mark.parametrize(("model_name", "options", "shape"), ARCHITECTURES)
def test_every_measure_runs_on_every_architecture(model_name, options, shape):
    factory = MODELS.get(model_name)
    torch.manual_seed(0)
    model = factory.build(shape, 10, factory.Options(**options)).eval()
    torch.manual_seed(1)
    initial = factory.build(shape, 10, factory.Options(**options)).eval()
    for module in model.modules():  # non-trivial batch-norm statistics to fold
        if isinstance(module, nn.BatchNorm2d):
            randomize_batch_norm(module, 7)
    x = torch.randn(12, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(1)  # every margin ≥ 0
    ctx = make_ctx(model, x, y, 10, initial=initial)
    lrn = model_name == "small-alexnet" and not options
    for name in sorted(BY_NAME):
        if lrn and name.startswith("path-norm"):
            with pytest.raises(MeasureError, match="LocalResponseNorm"):
                value(name, ctx)
            continue
        result = value(name, ctx)
        assert isinstance(result, float) and not math.isnan(result), name
        assert result < math.inf or name in OVER_MARGIN + MARGIN_AND_INIT, name


def test_every_measure_is_documented():
    for cls in norms.MEASURES:
        assert issubclass(cls, BaseMeasure)
        assert cls.kind == "complexity"
        assert cls.source and cls.__doc__ and "Source" in cls.__doc__, cls.name
        if cls.name in FROM_INIT + MARGIN_AND_INIT:
            assert "init_weights" in cls.requires
        if cls.name in OVER_MARGIN + MARGIN_AND_INIT:
            assert "train_data" in cls.requires
            assert cls.Options().percentile == 10.0


# ---------------------------------------------------------------------------
# the margins shared by the measures of one run (its context's cache)
# ---------------------------------------------------------------------------


def test_margins_computed_once_per_run_context(monkeypatch):
    calls = []
    real_predict = quantities.predict

    def counting_predict(*args, **kwargs):
        calls.append(1)
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(quantities, "predict", counting_predict)
    model, initial = tiny_mlp(1), tiny_mlp(2)
    ctx, x, y = context_for(model, initial, (5,))
    first = {name: value(name, ctx) for name in OVER_MARGIN}
    assert len(calls) == 1  # one forward pass for every margin measure of the run
    # another run's context computes its own, and gets the same values for equal content
    fresh, _, _ = context_for(copy.deepcopy(model), initial, (5,))
    assert {name: value(name, fresh) for name in OVER_MARGIN} == first
    assert len(calls) == 2
    # other weights: computed again, and right
    changed = scale_last_layer(model, 2.0)
    with torch.no_grad():
        changed[1].weight[0, 0] += 0.5
    changed_ctx, _, _ = context_for(changed, initial, (5,), labels=torch.tensor(y))
    expected = reference_values(changed, initial, x, y)["log-prod-of-spec-over-margin"]
    assert value("log-prod-of-spec-over-margin", changed_ctx) == pytest.approx(expected, rel=1e-5)
    assert len(calls) == 3


def test_margin_matches_the_inverse_margin_measure():
    model, initial = tiny_cnn(1), tiny_cnn(2)
    ctx, _, _ = context_for(model, initial, (1, 4, 4))
    for percentile in (0.0, 10.0, 37.5, 100.0):
        gamma = quantities.training_margin(ctx, percentile)
        inverse = margins_module.InverseMargin()
        assert inverse.compute(ctx, inverse.Options(percentile=percentile)) == pytest.approx(
            1 / gamma**2 if gamma > 0 else math.inf
        )


def test_thread_count_restored():
    torch.set_num_threads(2)
    try:
        model, initial = tiny_cnn(1), tiny_cnn(2)
        ctx, _, _ = context_for(model, initial, (1, 4, 4))
        for name in sorted(BY_NAME):
            value(name, ctx)
            assert torch.get_num_threads() == 2, name
        with pytest.raises(ZeroDivisionError), one_intra_op_thread():
            assert torch.get_num_threads() == 1
            1 / 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


class NoWeightLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(5, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1) @ self.alpha


@pytest.mark.parametrize("name", sorted(set(BY_NAME) - {"path-norm", "path-norm-over-margin"}))
def test_model_without_weight_layers_is_refused(name):
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    ctx = make_ctx(NoWeightLayers(), x, torch.zeros(6, dtype=torch.long), 3)
    with pytest.raises(MeasureError, match="no linear or convolutional layer"):
        value(name, ctx)
