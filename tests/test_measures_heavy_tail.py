"""Heavy-tailed self-regularization measures: power-law fits, stable rank and spectral norms
against plain-numpy computations (and against the weightwatcher package where it is installed)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from genbench.measures.heavy_tail import (
    LogSpectralNorm,
    PowerLawOptions,
    SpectralOptions,
    StableRank,
    WWAlpha,
    WWAlphaWeighted,
    fit_power_law,
)
from genbench.plugins import load_plugins
from measure_helpers import make_ctx

FAST = settings(max_examples=15, deadline=None)


#: small tensor work: one intra-op thread (see conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------
# plain-numpy references
# ---------------------------------------------------------------------------


def brute_force_power_law(x: np.ndarray) -> tuple[float, float]:
    """(α, x_min): Clauset et al.'s MLE at every candidate x_min = each sorted value but the
    largest, KS distance max_j |1 − (x_j/x_min)^(1−α) − j/n| over the tail; first minimum."""
    x = np.sort(x)
    best = (math.inf, math.nan, math.nan)
    for i in range(len(x) - 1):
        tail = x[i:]
        n = len(tail)
        alpha = 1 + n / np.sum(np.log(tail / x[i]))
        if alpha <= 1:
            continue
        distance = max(abs(1 - (tail[j] / x[i]) ** (1 - alpha) - j / n) for j in range(n))
        if distance < best[0]:
            best = (distance, alpha, x[i])
    return best[1], best[2]


def numpy_eigenvalues(matrix: np.ndarray) -> np.ndarray:
    """Eigenvalues of X = WᵀW/N (N = the larger side), via numpy's symmetric eigensolver."""
    w = matrix if matrix.shape[0] >= matrix.shape[1] else matrix.T
    return np.sort(np.linalg.eigvalsh(w.T @ w / w.shape[0]))


def numpy_layer_eigenvalues(weight: np.ndarray) -> np.ndarray:
    """Pooled eigenvalues of a layer: the matrix itself, or every [out, in] kernel position."""
    if weight.ndim == 2:
        return numpy_eigenvalues(weight)
    positions = weight.reshape(weight.shape[0], weight.shape[1], -1)
    return np.sort(np.concatenate([numpy_eigenvalues(positions[:, :, k]) for k in range(positions.shape[2])]))


def pareto_sample(rng: np.random.Generator, alpha: float, xmin: float, n: int) -> np.ndarray:
    """Continuous power law p(x) ∝ x^(−α), x ≥ xmin, by inverse transform."""
    return xmin * (1 - rng.random(n)) ** (-1 / (alpha - 1))


def heavy_tailed_mlp(seed: int, widths=(30, 60, 40, 25)) -> nn.Sequential:
    """An MLP whose weights carry Student-t noise, so that its spectra have power-law tails."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.add_(torch.distributions.StudentT(2.0).sample(layer.weight.shape) * 0.1)
    return model


def ctx_for(model: nn.Module, input_shape=(30,), classes: int = 25):
    return make_ctx(model, torch.zeros(2, *input_shape), torch.zeros(2, dtype=torch.long), classes)


# ---------------------------------------------------------------------------
# power-law fit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [2.0, 2.5, 3.5])
def test_power_law_mle_recovers_alpha_of_pareto_samples(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    sample = pareto_sample(rng, alpha, xmin=0.7, n=3000)
    fit = fit_power_law(sample)
    # the MLE's standard error is (α − 1)/sqrt(n) ≈ 0.02–0.05 for the tail the KS choice keeps
    assert fit.alpha == pytest.approx(alpha, abs=0.2)
    assert fit.xmin >= 0.7


def test_power_law_fit_finds_the_tail_above_a_bulk():
    """A uniform bulk below 1 and a Pareto tail (α = 2.5) above it: x_min lands near 1."""
    rng = np.random.default_rng(5)
    sample = np.concatenate([rng.uniform(0.05, 1.0, 1000), pareto_sample(rng, 2.5, 1.0, 1500)])
    fit = fit_power_law(sample)
    assert 0.8 <= fit.xmin <= 1.6
    assert fit.alpha == pytest.approx(2.5, abs=0.25)


@FAST
@given(seed=st.integers(0, 10_000), n=st.integers(3, 60), alpha=st.floats(1.5, 5.0))
def test_power_law_fit_matches_brute_force(seed, n, alpha):
    rng = np.random.default_rng(seed)
    sample = np.concatenate([rng.uniform(0.1, 1.0, n), pareto_sample(rng, alpha, 1.0, n)])
    expected_alpha, expected_xmin = brute_force_power_law(sample)
    fit = fit_power_law(sample)
    assert fit.xmin == expected_xmin
    assert fit.alpha == pytest.approx(expected_alpha, rel=1e-10)


def test_power_law_fit_in_blocks_matches_brute_force(monkeypatch):
    """More candidates than one block of KS distances."""
    import genbench.measures.heavy_tail as heavy_tail

    monkeypatch.setattr(heavy_tail, "KS_BLOCK", 7)
    rng = np.random.default_rng(11)
    sample = np.concatenate([rng.uniform(0.1, 1.0, 40), pareto_sample(rng, 3.0, 1.0, 30)])
    expected_alpha, expected_xmin = brute_force_power_law(sample)
    fit = heavy_tail.fit_power_law(sample)
    assert (fit.alpha, fit.xmin) == (pytest.approx(expected_alpha, rel=1e-10), expected_xmin)


# ---------------------------------------------------------------------------
# the measures on networks
# ---------------------------------------------------------------------------


def test_ww_alpha_is_the_mean_of_per_layer_fits_by_hand():
    model = heavy_tailed_mlp(0)
    estimate = WWAlpha().compute(ctx_for(model), PowerLawOptions())
    expected = {}
    for name, layer in (("1", model[1]), ("3", model[3]), ("5", model[5])):
        expected[name] = brute_force_power_law(numpy_layer_eigenvalues(layer.weight.detach().double().numpy()))[0]
    for name, alpha in expected.items():
        assert estimate.details[f"alpha:{name}"] == pytest.approx(alpha, rel=1e-8)
    assert estimate.value == pytest.approx(np.mean(list(expected.values())), rel=1e-8)
    assert estimate.details["layers"] == 3 and estimate.details["skipped"] == 0


def test_ww_alpha_skips_layers_with_too_few_eigenvalues():
    model = heavy_tailed_mlp(1, widths=(30, 60, 8))  # the last layer has 8 eigenvalues
    estimate = WWAlpha().compute(ctx_for(model, classes=8), PowerLawOptions(min_eigenvalues=20))
    assert estimate.details["skipped"] == 1
    assert "alpha:3" not in estimate.details
    assert estimate.value == estimate.details["alpha:1"]
    everything = WWAlpha().compute(ctx_for(model, classes=8), PowerLawOptions(min_eigenvalues=5))
    assert everything.details["skipped"] == 0 and "alpha:3" in everything.details


def test_ww_alpha_weighted_and_log_spectral_norm_by_hand():
    model = heavy_tailed_mlp(2)
    ctx = ctx_for(model)
    alpha = WWAlpha().compute(ctx, PowerLawOptions())
    weighted = WWAlphaWeighted().compute(ctx, PowerLawOptions())
    log_norms = []
    terms = []
    for name, layer in (("1", model[1]), ("3", model[3]), ("5", model[5])):
        w = layer.weight.detach().double().numpy()
        largest = np.linalg.svd(w, compute_uv=False)[0] ** 2 / max(w.shape)
        log_norms.append(np.log10(largest))
        terms.append(alpha.details[f"alpha:{name}"] * np.log10(largest))
    assert weighted.value == pytest.approx(np.mean(terms), rel=1e-8)
    assert LogSpectralNorm().compute(ctx, SpectralOptions()).value == pytest.approx(np.mean(log_norms), rel=1e-8)


def test_stable_rank_of_known_singular_values():
    rng = np.random.default_rng(0)
    singular = np.array([4.0, 2.0, 1.0, 0.5])
    u, _ = np.linalg.qr(rng.normal(size=(7, 4)))
    v, _ = np.linalg.qr(rng.normal(size=(5, 4)))
    w = u @ np.diag(singular) @ v.T  # 7 × 5, rank 4
    layer = nn.Linear(5, 7)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
    value = StableRank().compute(ctx_for(nn.Sequential(layer), (5,), 7), SpectralOptions()).value
    assert value == pytest.approx((16 + 4 + 1 + 0.25) / 16, rel=1e-6)


@FAST
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), rank=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_stable_rank_between_one_and_rank(rows, cols, rank, seed):
    rng = np.random.default_rng(seed)
    rank = min(rank, rows, cols)
    w = rng.normal(size=(rows, rank)) @ rng.normal(size=(rank, cols))
    layer = nn.Linear(cols, rows)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
    value = StableRank().compute(ctx_for(nn.Sequential(layer), (cols,), rows), SpectralOptions()).value
    assert 1 - 1e-5 <= value <= rank + 1e-5


@FAST
@given(seed=st.integers(0, 1000), log_scale=st.floats(-3, 3))
def test_ww_alpha_and_stable_rank_invariant_to_scaling(seed, log_scale):
    model = heavy_tailed_mlp(seed, widths=(30, 40, 25))
    scaled = heavy_tailed_mlp(seed, widths=(30, 40, 25))
    c = 10.0**log_scale
    with torch.no_grad():
        for layer in scaled:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(c)
    # scaling every weight by c: α and the stable rank do not move; log10 λ_max moves by 2·log10 c
    for measure, options in ((WWAlpha(), PowerLawOptions()), (StableRank(), SpectralOptions())):
        assert measure.compute(ctx_for(scaled), options).value == pytest.approx(
            measure.compute(ctx_for(model), options).value, rel=1e-6
        )
    shift = LogSpectralNorm().compute(ctx_for(scaled), SpectralOptions()).value - LogSpectralNorm().compute(
        ctx_for(model), SpectralOptions()
    ).value
    assert shift == pytest.approx(2 * math.log10(c), abs=1e-5)


def test_conv_kernels_pool_per_position_matrices():
    torch.manual_seed(3)
    conv = nn.Conv2d(6, 24, 3)
    model = nn.Sequential(conv, nn.Flatten())
    ctx = make_ctx(model, torch.zeros(1, 6, 3, 3), torch.zeros(1, dtype=torch.long), 24)
    w = conv.weight.detach().double().numpy()
    pooled = numpy_layer_eigenvalues(w)  # 9 positions × 6 eigenvalues
    assert len(pooled) == 54
    slices = WWAlpha().compute(ctx, PowerLawOptions())
    assert slices.details["alpha:0"] == pytest.approx(brute_force_power_law(pooled)[0], rel=1e-8)
    assert StableRank().compute(ctx, SpectralOptions()).value == pytest.approx(pooled.sum() / pooled.max(), rel=1e-8)
    reshaped = numpy_eigenvalues(w.reshape(24, -1))  # 24 × 54: 24 eigenvalues
    value = StableRank().compute(ctx, SpectralOptions(conv_matrices="reshaped")).value
    assert value == pytest.approx(reshaped.sum() / reshaped.max(), rel=1e-8)
    alpha = WWAlpha().compute(ctx, PowerLawOptions(conv_matrices="reshaped")).value
    assert alpha == pytest.approx(brute_force_power_law(reshaped)[0], rel=1e-8)


def test_batch_norm_is_folded_first():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(30, 40, bias=False), nn.BatchNorm1d(40), nn.ReLU(), nn.Linear(40, 25)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(0.2, 3.0, 40))
        model[1].running_var.copy_(torch.linspace(0.5, 2.0, 40))
    ctx = ctx_for(model)
    scale = (model[1].weight / torch.sqrt(model[1].running_var + model[1].eps)).detach().double().numpy()
    folded = model[0].weight.detach().double().numpy() * scale[:, None]
    pooled = numpy_eigenvalues(folded)
    estimate = LogSpectralNorm().compute(ctx, SpectralOptions())
    assert estimate.details["log_spectral_norm:0"] == pytest.approx(np.log10(pooled.max()), rel=1e-8)


def test_diverged_model_gives_nan():
    model = heavy_tailed_mlp(0)
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")
    ctx = ctx_for(model)
    for measure, options in (
        (WWAlpha(), PowerLawOptions()),
        (WWAlphaWeighted(), PowerLawOptions()),
        (StableRank(), SpectralOptions()),
        (LogSpectralNorm(), SpectralOptions()),
    ):
        assert math.isnan(measure.compute(ctx, options).value)


def test_no_layer_large_enough_gives_nan():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ctx = make_ctx(model, torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), 2)
    assert math.isnan(WWAlpha().compute(ctx, PowerLawOptions()).value)
    assert StableRank().compute(ctx, SpectralOptions()).details["layers"] == 2


@pytest.mark.parametrize("name", ["mlp-1x512", "small-alexnet", "small-inception", "cnn"])
def test_runs_on_registered_models(name):
    factory = load_plugins(entry_points=[]).registry("models").get(name)
    torch.manual_seed(0)
    model = factory.build((3, 8, 8), 10, factory.Options())
    ctx = make_ctx(model, torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), 10)
    alpha = WWAlpha().compute(ctx, PowerLawOptions())
    assert alpha.details["layers"] >= 1 and alpha.value > 1
    assert math.isfinite(WWAlphaWeighted().compute(ctx, PowerLawOptions()).value)
    assert StableRank().compute(ctx, SpectralOptions()).value >= 1
    assert math.isfinite(LogSpectralNorm().compute(ctx, SpectralOptions()).value)


def test_conv1d_model():
    factory = load_plugins(entry_points=[]).registry("models").get("cnn")
    torch.manual_seed(0)
    model = factory.build((1, 40), 10, factory.Options())
    ctx = make_ctx(model, torch.zeros(2, 1, 40), torch.zeros(2, dtype=torch.long), 10)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv1d) and m.in_channels > 1)
    name = next(n for n, m in model.named_modules() if m is conv)
    pooled = numpy_layer_eigenvalues(conv.weight.detach().double().numpy())
    details = StableRank().compute(ctx, SpectralOptions()).details
    assert details[f"stable_rank:{name}"] == pytest.approx(pooled.sum() / pooled.max(), rel=1e-8)


# ---------------------------------------------------------------------------
# against the weightwatcher package (when installed)
# ---------------------------------------------------------------------------


def test_matches_weightwatcher_per_layer():
    """Same model, same layers: α and stable rank equal WeightWatcher 0.7.7's; its eigenvalues are
    σ² without the 1/N, and its conv slices are scaled by 1/√2 (conv2d_norm), so its
    log_spectral_norm is ours + log10 N (− log10 2 for a convolution)."""
    weightwatcher = pytest.importorskip("weightwatcher")
    logging.disable(logging.WARNING)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 48, 3), nn.ReLU(), nn.Flatten(),
            nn.Linear(48 * 6 * 6, 100), nn.ReLU(), nn.Linear(100, 40),
        )
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.distributions.StudentT(2.0).sample(p.shape) * p.std())
        frame = weightwatcher.WeightWatcher(model=model).analyze(min_evals=20)
    finally:
        logging.disable(logging.NOTSET)
    ctx = make_ctx(model, torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long), 40)
    alpha = WWAlpha().compute(ctx, PowerLawOptions())
    stable = StableRank().compute(ctx, SpectralOptions())
    log_norm = LogSpectralNorm().compute(ctx, SpectralOptions())
    assert len(frame) == 4
    for _, row in frame.iterrows():
        name = str(row["name"])
        assert alpha.details[f"alpha:{name}"] == pytest.approx(row["alpha"], rel=1e-6)
        assert stable.details[f"stable_rank:{name}"] == pytest.approx(row["stable_rank"], rel=1e-6)
        correction = math.log10(row["N"]) - (math.log10(2) if row["rf"] > 1 else 0.0)
        assert log_norm.details[f"log_spectral_norm:{name}"] + correction == pytest.approx(
            row["log_spectral_norm"], abs=1e-6
        )
