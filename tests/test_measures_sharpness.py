"""Tests for the sharpness, curvature and memorization measures.

Expected values are worked out here by hand or in plain numpy: the Hessian of a linear softmax
model in closed form, the box radius at which a 1-D linear classifier starts to lose training
points, and which points lie within an L∞ ball of a linear decision boundary.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from genbench.measures import curvature
from genbench.measures.curvature import (
    HessianEigenvalueOptions,
    HessianTopEigenvalue,
    HessianTrace,
    HessianTraceOptions,
)
from genbench.measures.memorization import CriticalSampleRatio, CriticalSampleRatioOptions
from genbench.measures.sharpness import (
    MagnitudeSharpness,
    MagnitudeSharpnessOptions,
    Sharpness,
    SharpnessOptions,
)
from genbench.plugins import load_plugins
from measure_helpers import make_ctx

FAST = settings(max_examples=15, deadline=None, derandomize=True)


# ---------------------------------------------------------------------------
# Hessian of a linear softmax model, in closed form
# ---------------------------------------------------------------------------


def linear_softmax(d: int, k: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k))


def numpy_softmax_hessian(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hessian of the mean cross-entropy of z = W x + b with respect to (vec W row-major, b):
    the per-example curvature in the logits is A = diag(p) − p pᵀ, and z is linear in the
    parameters, so H = (1/n) Σ [[A ⊗ x xᵀ, A ⊗ x], [(A ⊗ x)ᵀ, A]]."""
    layer = model[1]
    w = layer.weight.detach().double().numpy()
    b = layer.bias.detach().double().numpy()
    k, d = w.shape
    size = k * d + k
    hessian = np.zeros((size, size))
    for xi in x.reshape(len(x), -1).astype(np.float64):
        z = w @ xi + b
        p = np.exp(z - z.max())
        p /= p.sum()
        a = np.diag(p) - np.outer(p, p)
        column = xi[:, None]
        hessian[: k * d, : k * d] += np.kron(a, column @ column.T)
        hessian[: k * d, k * d :] += np.kron(a, column)
        hessian[k * d :, : k * d] += np.kron(a, column).T
        hessian[k * d :, k * d :] += a
    return hessian / len(x)


def softmax_problem(d: int, k: int, n: int, seed: int):
    model = linear_softmax(d, k, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, d, generator=generator)
    x[:, 0] *= 3  # one dominant input direction: a clear gap below the top eigenvalue
    y = torch.randint(0, k, (n,), generator=generator)
    return model, x, y, numpy_softmax_hessian(model, x.numpy(), y.numpy())


def test_hessian_top_eigenvalue_matches_closed_form():
    model, x, y, hessian = softmax_problem(d=4, k=3, n=40, seed=1)
    ctx = make_ctx(model, x, y, 3)
    options = HessianEigenvalueOptions(iterations=300, tolerance=1e-6, max_examples=None)
    estimate = HessianTopEigenvalue().compute(ctx, options)
    expected = np.linalg.eigvalsh(hessian).max()
    assert estimate.value == pytest.approx(expected, rel=1e-3)
    assert estimate.details["converged"] == 1
    assert 1 < estimate.details["iterations"] < 300


def test_hessian_trace_matches_closed_form_within_its_standard_error():
    model, x, y, hessian = softmax_problem(d=4, k=3, n=40, seed=1)
    ctx = make_ctx(model, x, y, 3)
    probes = 200
    estimate = HessianTrace().compute(ctx, HessianTraceOptions(probes=probes, max_examples=None))
    # Var(vᵀHv) = 2 Σ_{i≠j} H_ij² for Rademacher v
    off_diagonal = hessian - np.diag(np.diag(hessian))
    exact_stderr = math.sqrt(2 * (off_diagonal**2).sum() / probes)
    assert estimate.details["stderr"] == pytest.approx(exact_stderr, rel=0.35)
    assert abs(estimate.value - np.trace(hessian)) <= 4 * exact_stderr


def test_hessian_trace_probes_of_a_two_parameter_model_by_hand():
    # z = (w0, w1)·x, one feature, one example, two classes: H = x² p0 p1 [[1, −1], [−1, 1]], so a
    # Rademacher probe gives vᵀHv = 0 when v0 = v1 and 4h (h = x² p0 p1) when v0 = −v1; tr H = 2h.
    # The estimate is 4h·j/k for the j of k probes with opposite signs, and its standard error is
    # that of those 0/4h values.
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.3], [-0.2]]))
    x, y = torch.tensor([[1.5]]), torch.tensor([0])
    probes = 40
    estimate = HessianTrace().compute(make_ctx(model, x, y, 2), HessianTraceOptions(probes=probes, max_examples=None))
    z = np.array([0.3, -0.2]) * 1.5
    p = np.exp(z) / np.exp(z).sum()
    h = 1.5**2 * p[0] * p[1]
    opposite = estimate.value / (4 * h) * probes
    assert opposite == pytest.approx(round(opposite), abs=1e-3)
    j = round(opposite)
    assert 0 < j < probes
    samples = np.array([4 * h] * j + [0.0] * (probes - j))
    assert estimate.details["stderr"] == pytest.approx(samples.std(ddof=1) / math.sqrt(probes), rel=1e-4)
    assert abs(estimate.value - 2 * h) <= 4 * estimate.details["stderr"]


@FAST
@given(d=st.integers(1, 4), k=st.integers(2, 4), n=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_psd_hessian_top_eigenvalue_at_least_mean_eigenvalue(d, k, n, seed):
    model, x, y, hessian = softmax_problem(d, k, n, seed)
    ctx = make_ctx(model, x, y, k)
    options = HessianEigenvalueOptions(iterations=300, tolerance=1e-6, max_examples=None)
    top = HessianTopEigenvalue().compute(ctx, options).value
    parameters = hessian.shape[0]
    assert top >= np.trace(hessian) / parameters - 1e-5
    assert top == pytest.approx(np.linalg.eigvalsh(hessian).max(), rel=2e-3, abs=1e-5)


class MatrixOperator:
    """Stands in for the Hessian-vector products of a network: a fixed symmetric matrix."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix
        self.size = matrix.shape[0]
        self.parameters = [matrix]

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        return vectors @ self.matrix.T


def test_top_eigenvalue_found_when_the_largest_magnitude_one_is_negative(monkeypatch):
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
    matrix = rotation @ torch.diag(torch.tensor([-5.0, 2.0, 0.5])) @ rotation.T
    monkeypatch.setattr(curvature, "hessian_operator", lambda ctx, max_examples: MatrixOperator(matrix))
    model, x, y, _ = softmax_problem(2, 2, 4, 0)
    options = HessianEigenvalueOptions(iterations=500, tolerance=1e-8)
    estimate = HessianTopEigenvalue().compute(make_ctx(model, x, y, 2), options)
    assert estimate.value == pytest.approx(2.0, rel=1e-3)
    assert estimate.details["most_negative"] == pytest.approx(-5.0, rel=1e-3)


# ---------------------------------------------------------------------------
# Sharpness: a 1-D linear classifier whose points flip at known box radii
# ---------------------------------------------------------------------------


def one_dimensional_classifier(w: tuple[float, float], b: tuple[float, float]) -> nn.Sequential:
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[w[0]], [w[1]]]))
        model[1].bias.copy_(torch.tensor(b))
    return model


def test_sharpness_bracketed_by_hand():
    # z1 − z0 = x on points x_i > 0, all of class 1. Moving every parameter by at most α lowers
    # the margin of x_i by at most α(2 x_i + 2) (w1, b1 down, w0, b0 up), and projected
    # sign-gradient ascent reaches that corner for all points at once. So x_i is lost exactly
    # when α > α_i = x_i / (2 x_i + 2). With α_i = 0.01·(i + 1), one point in ten is lost
    # (drop 0.1, the target) for α in (0.01, 0.02].
    radii = 0.01 * np.arange(1, 11)
    positions = 2 * radii / (1 - 2 * radii)
    model = one_dimensional_classifier((0.0, 1.0), (0.0, 0.0))
    x = torch.tensor(positions, dtype=torch.float32)[:, None]
    y = torch.ones(10, dtype=torch.long)
    ctx = make_ctx(model, x, y, 2)
    options = SharpnessOptions(bisection_steps=40, tolerance=0.001)
    estimate = Sharpness().compute(ctx, options)
    alpha = estimate.details["alpha"]
    assert 0.01 < alpha <= 0.02 + 1e-6
    assert estimate.value == pytest.approx(1 / alpha**2)
    assert estimate.details["accuracy_drop"] == pytest.approx(0.1)
    assert estimate.details["converged"] == 1


def test_sharpness_with_a_larger_target_moves_to_the_matching_bracket():
    radii = 0.01 * np.arange(1, 11)
    model = one_dimensional_classifier((0.0, 1.0), (0.0, 0.0))
    x = torch.tensor(2 * radii / (1 - 2 * radii), dtype=torch.float32)[:, None]
    ctx = make_ctx(model, x, torch.ones(10, dtype=torch.long), 2)
    estimate = Sharpness().compute(ctx, SharpnessOptions(target_drop=0.3, bisection_steps=40, tolerance=0.001))
    assert 0.03 < estimate.details["alpha"] <= 0.04 + 1e-6  # three points lost


def test_magnitude_sharpness_bracketed_by_hand():
    # w = (0, 1), b = (0, −1): margin x_i − 1 on points x_i > 1 of class 1. The box
    # |u_i| ≤ α|w_i| (ε = 0) moves only w1 and b1, lowering the margin by at most α(x_i + 1),
    # so x_i is lost when α > α_i = (x_i − 1) / (x_i + 1). With α_i = 0.05·(i + 1):
    # x_i = (1 + α_i) / (1 − α_i), and a drop of 0.1 holds for α in (0.05, 0.10].
    radii = 0.05 * np.arange(1, 11)
    positions = (1 + radii) / (1 - radii)
    model = one_dimensional_classifier((0.0, 1.0), (0.0, -1.0))
    x = torch.tensor(positions, dtype=torch.float32)[:, None]
    ctx = make_ctx(model, x, torch.ones(10, dtype=torch.long), 2)
    options = MagnitudeSharpnessOptions(epsilon=0.0, bisection_steps=40, tolerance=0.001)
    estimate = MagnitudeSharpness().compute(ctx, options)
    assert 0.05 < estimate.details["alpha"] <= 0.10 + 1e-6
    # the absolute box on the same network is a different radius: α(x_i + 1) + α(x_i + 1)... the
    # margin falls by α(2 x_i + 2), so α_i halves and the bracket is (0.025, 0.05]
    absolute = Sharpness().compute(ctx, SharpnessOptions(bisection_steps=40, tolerance=0.001))
    assert 0.025 < absolute.details["alpha"] <= 0.05 + 1e-6


def test_keskar_box_is_the_magnitude_box_scaled_by_alpha():
    # box α(|w_i| + 1): on w = (0, 1), b = (0, −1) the margin x_i − 1 falls by
    # α(1 + 1)x_i + α(0 + 1)x_i + α(1 + 1) + α(0 + 1) = 3α(x_i + 1), so α_i = (x_i − 1) / (3(x_i + 1))
    radii = 0.05 * np.arange(1, 11)
    positions = (1 + radii) / (1 - radii)  # (x − 1)/(x + 1) = radii
    model = one_dimensional_classifier((0.0, 1.0), (0.0, -1.0))
    x = torch.tensor(positions, dtype=torch.float32)[:, None]
    ctx = make_ctx(model, x, torch.ones(10, dtype=torch.long), 2)
    options = MagnitudeSharpnessOptions(epsilon=1.0, epsilon_scales_with_alpha=True, bisection_steps=40, tolerance=0.001)
    alpha = MagnitudeSharpness().compute(ctx, options).details["alpha"]
    assert 0.05 / 3 < alpha <= 0.10 / 3 + 1e-6


def test_sharpness_search_leaves_the_model_untouched():
    model, x, y, _ = softmax_problem(3, 3, 20, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = make_ctx(model, x, y, 3)
    Sharpness().compute(ctx, SharpnessOptions(bisection_steps=3))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


# ---------------------------------------------------------------------------
# Critical sample ratio: points at known L∞ distances from a linear boundary
# ---------------------------------------------------------------------------


def boundary_model(w: np.ndarray, b: float) -> nn.Sequential:
    """Two classes with z1 − z0 = w·x + b (z0 = 0)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(len(w), 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(np.stack([np.zeros_like(w), w]), dtype=torch.float32))
        model[1].bias.copy_(torch.tensor([0.0, b]))
    return model


def test_critical_sample_ratio_by_hand():
    # boundary x_1 = 0; the L∞ distance of a point to it is |x_1|. Within r = 0.2: 4 of 8.
    first = np.array([-0.05, 0.1, -0.15, 0.19, 0.25, -0.4, 0.6, -1.0])
    x = torch.tensor(np.stack([first, np.linspace(-1, 1, 8)], axis=1), dtype=torch.float32)
    model = boundary_model(np.array([1.0, 0.0]), 0.0)
    ctx = make_ctx(model, x, torch.zeros(8, dtype=torch.long), 2)
    options = CriticalSampleRatioOptions(
        radius=0.2, step=0.05, noise=0.0, iterations=10, input_scale="unit", max_examples=None
    )
    estimate = CriticalSampleRatio().compute(ctx, options)
    assert estimate.value == 0.5
    assert estimate.details == {"critical": 4, "searched": 8}


def test_critical_sample_ratio_radius_in_units_of_the_feature_range():
    # feature 1 spans [−1, 1] (range 2): radius 0.1 of the range is 0.2 in input units
    first = np.array([-0.05, 0.1, -0.15, 0.19, 0.25, -0.4, 0.6, -1.0, 1.0])
    x = torch.tensor(np.stack([first, np.zeros(9)], axis=1), dtype=torch.float32)
    model = boundary_model(np.array([1.0, 0.0]), 0.0)
    ctx = make_ctx(model, x, torch.zeros(9, dtype=torch.long), 2)
    options = CriticalSampleRatioOptions(radius=0.1, step=0.025, noise=0.0, iterations=10, max_examples=None)
    assert CriticalSampleRatio().compute(ctx, options).details["critical"] == 4


@FAST
@given(
    d=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    radius=st.floats(0.05, 1.0),
)
def test_critical_sample_ratio_of_a_linear_classifier(d, seed, radius):
    # Sign-gradient steps move every coordinate towards the boundary, lowering |w·x + b| by
    # step·‖w‖₁ per step: a point flips iff its L∞ distance |w·x + b| / ‖w‖₁ is below r.
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    b = float(rng.normal())
    x = rng.normal(size=(30, d))
    distance = np.abs(x @ w + b) / np.abs(w).sum()
    keep = np.abs(distance - radius) > 1e-3 * radius  # no point on the sphere itself
    x = x[keep]
    ctx = make_ctx(boundary_model(w, b), torch.tensor(x, dtype=torch.float32), torch.zeros(len(x), dtype=torch.long), 2)
    options = CriticalSampleRatioOptions(
        radius=radius, step=radius / 4, noise=0.0, iterations=5, input_scale="unit", max_examples=None
    )
    estimate = CriticalSampleRatio().compute(ctx, options)
    assert estimate.details["critical"] == int((distance[keep] < radius).sum())


def test_critical_sample_ratio_subsample_is_seeded():
    model, x, y, _ = softmax_problem(3, 3, 50, 3)
    options = CriticalSampleRatioOptions(max_examples=20, radius=0.5, step=0.1, input_scale="unit")
    first = CriticalSampleRatio().compute(make_ctx(model, x, y, 3), options)
    second = CriticalSampleRatio().compute(make_ctx(model, x, y, 3), options)
    assert first == second
    assert first.details["searched"] == 20


# ---------------------------------------------------------------------------
# Every measure on every kind of network; diverged networks
# ---------------------------------------------------------------------------

CHEAP = {
    "sharpness": SharpnessOptions(bisection_steps=1, ascent_steps=1),
    "sharpness-mag": MagnitudeSharpnessOptions(bisection_steps=2, ascent_steps=1),
    "hessian-top-eigenvalue": HessianEigenvalueOptions(iterations=2),
    "hessian-trace": HessianTraceOptions(probes=2),
    "critical-sample-ratio": CriticalSampleRatioOptions(iterations=2),
}
MEASURES = {cls.name: cls for cls in (Sharpness, MagnitudeSharpness, HessianTopEigenvalue, HessianTrace, CriticalSampleRatio)}
MODELS = load_plugins(entry_points=[]).registry("models")


def batch_norm_net() -> nn.Sequential:
    """conv → batch norm → ReLU → linear, with non-trivial running statistics."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        model[1].running_var.copy_(torch.tensor([0.5, 2.0, 1.5, 1.0]))
        model[1].weight.copy_(torch.tensor([1.2, 0.7, 1.0, 0.9]))
    return model


def registry_network(name: str, shape: tuple[int, ...], **options) -> nn.Module:
    factory = MODELS.get(name)
    return factory.build(shape, 3, factory.Options(**options))


NETWORKS = {
    "mlp-1x512": lambda: registry_network("mlp-1x512", (1, 4, 4)),
    "small-alexnet": lambda: registry_network("small-alexnet", (3, 8, 8)),  # local response norm
    "cnn-1d": lambda: registry_network("cnn", (2, 12), channels=[3, 4]),  # 1-D convolutions
    "batch-norm": batch_norm_net,
}
SHAPES = {"mlp-1x512": (1, 4, 4), "small-alexnet": (3, 8, 8), "cnn-1d": (2, 12), "batch-norm": (3, 4, 4)}


def check_runs_in_eval_mode(model: nn.Module, shape: tuple[int, ...], measure_name: str) -> None:
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    ctx = make_ctx(model, x, torch.tensor([0, 1, 2]), 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    outcome = MEASURES[measure_name]().compute(ctx, CHEAP[measure_name])
    assert math.isfinite(outcome.value)
    for key, value in model.state_dict().items():  # eval mode: batch-norm statistics unchanged
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("measure_name", sorted(CHEAP))
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_measure_runs_on_every_network(measure_name, network):
    torch.manual_seed(0)
    check_runs_in_eval_mode(NETWORKS[network](), SHAPES[network], measure_name)


def test_small_inception_with_batch_norm():
    # Zhang et al.'s full-width inception (1.6 M parameters) on a 4×4 input, with the cheapest
    # search; every measure's path through batch norm is checked on the batch-norm net above
    torch.manual_seed(0)
    check_runs_in_eval_mode(registry_network("small-inception", (3, 4, 4)), (3, 4, 4), "sharpness")


@pytest.mark.parametrize("measure_name", sorted(CHEAP))
def test_diverged_network_gives_nan(measure_name):
    model, x, y, _ = softmax_problem(3, 3, 10, 0)
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    value = MEASURES[measure_name]().compute(make_ctx(model, x, y, 3), CHEAP[measure_name])
    assert math.isnan(value)


def test_bracket_must_be_ordered():
    model, x, y, _ = softmax_problem(2, 2, 4, 0)
    with pytest.raises(ValueError):
        Sharpness().compute(make_ctx(model, x, y, 2), SharpnessOptions(lower=1.0, upper=0.5))


def test_normalize_by_m():
    model, x, y, _ = softmax_problem(3, 3, 16, 2)
    plain = HessianTrace().compute(make_ctx(model, x, y, 3), HessianTraceOptions(probes=4))
    normalized = HessianTrace().compute(make_ctx(model, x, y, 3), HessianTraceOptions(probes=4, normalize_by_m=True))
    assert normalized.value == pytest.approx(math.sqrt(plain.value / 16))
