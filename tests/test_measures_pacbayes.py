"""Tests for the PAC-Bayes family and the batched evaluation of perturbed networks.

Expected values are computed here independently: the bound formulas with plain numpy from
the σ the search reports, the kl inverse with scipy's root finder, the accuracy of a linear
classifier under Gaussian weight noise in closed form (normal CDF), and the perturbed
networks one copy at a time with ``copy.deepcopy`` and in-place noise.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import norm
from torch import nn

from genbench.errors import MeasureError
from genbench.measures import pacbayes
from genbench.measures.pacbayes import (
    MagnitudeSearchOptions,
    PacBayesBound,
    PacBayesBoundOptions,
    PacBayesFlatness,
    PacBayesInit,
    PacBayesMagFlatness,
    PacBayesMagInit,
    PacBayesMagOrig,
    PacBayesOrig,
    SigmaSearchOptions,
    kl_inverse,
    pac_bayes_kl_bound,
    sampled_error_upper,
)
from genbench.measures.perturb import perturbable_parameters, perturbed_metrics
from genbench.plugins import load_plugins
from measure_helpers import linear_layers, make_ctx, seeded_mlp

FAST = settings(max_examples=15, deadline=None)
MODELS = load_plugins(entry_points=[]).registry("models")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def numpy_kl(q: float, p: float) -> float:
    a = 0.0 if q == 0 else q * np.log(q / p)
    b = 0.0 if q == 1 else (1 - q) * np.log((1 - q) / (1 - p))
    return a + b


def scipy_kl_inverse(q: float, c: float) -> float:
    if numpy_kl(q, 1 - 1e-15) <= c:
        return 1.0
    return brentq(lambda p: numpy_kl(q, p) - c, q, 1 - 1e-15, xtol=1e-14)


# ---------------------------------------------------------------------------
# kl inverse and the bound's formulas
# ---------------------------------------------------------------------------


@FAST
@given(q=st.floats(0.0, 0.99), c=st.floats(1e-5, 3.0))
def test_kl_inverse_matches_scipy_root(q, c):
    assert kl_inverse(q, c) == pytest.approx(scipy_kl_inverse(q, c), abs=1e-9)


def test_kl_inverse_edge_cases():
    assert kl_inverse(0.3, 0.0) == 0.3
    assert kl_inverse(1.0, 0.5) == 1.0
    assert math.isnan(kl_inverse(math.nan, 0.1))
    # kl(0‖p) = −log(1 − p): the inverse is 1 − e^{−c}
    assert kl_inverse(0.0, 0.2) == pytest.approx(1 - math.exp(-0.2), abs=1e-12)


def test_pac_bayes_kl_bound_by_hand():
    # ê_Q = 0, KL = 0, m = 100, δ = 0.05: c = log(2·√100/0.05)/100 = log(400)/100,
    # bound = kl⁻¹(0, c) = 1 − exp(−c) = 1 − 400^(−1/100)
    assert pac_bayes_kl_bound(0.0, 0.0, 100, 0.05) == pytest.approx(1 - 400 ** (-1 / 100), abs=1e-12)
    # ê_Q = 0.1, KL = 20, m = 1000, δ = 0.01: c = (20 + log(2·√1000/0.01))/1000
    c = (20 + math.log(2 * math.sqrt(1000) / 0.01)) / 1000
    assert pac_bayes_kl_bound(0.1, 20.0, 1000, 0.01) == pytest.approx(scipy_kl_inverse(0.1, c), abs=1e-9)
    # sample convexity with no observed error: 1 − (δ'/2)^(1/n)
    assert sampled_error_upper(0.0, 500, 0.01) == pytest.approx(1 - 0.005 ** (1 / 500), abs=1e-12)


# ---------------------------------------------------------------------------
# Batched evaluation of perturbed copies
# ---------------------------------------------------------------------------


def one_at_a_time(model, noise, draw, inputs, labels, paired_index=None):
    """Correct count and summed cross-entropy of a deep copy of ``model`` with draw ``draw`` added."""
    copy_ = copy.deepcopy(model)
    with torch.no_grad():
        params = dict(copy_.named_parameters())
        for name, value in noise.items():
            params[name].add_(value[draw])
        x, y = (inputs, labels) if paired_index is None else (inputs[[paired_index]], labels[[paired_index]])
        logits = copy_(x)
    correct = int((logits.argmax(-1) == y).sum())
    loss = float(nn.functional.cross_entropy(logits, y, reduction="sum"))
    return correct, loss


def tiny(name: str, input_shape, classes=3, **options):
    factory = MODELS.get(name)
    torch.manual_seed(0)
    return factory.build(tuple(input_shape), classes, factory.Options(**options)).eval()


ARCHITECTURES = [
    ("mlp", (5,), {"hidden": [7, 6]}),
    ("cnn", (2, 9), {"channels": [3, 4]}),
    ("cnn", (1, 6, 6), {"channels": [3, 4]}),
    ("small-alexnet", (3, 8, 8), {}),
    ("small-inception", (3, 8, 8), {}),
]
IDS = [f"{name}-{len(shape)}d-input" for name, shape, _ in ARCHITECTURES]


@pytest.mark.parametrize("name, shape, options", ARCHITECTURES, ids=IDS)
@pytest.mark.parametrize("use_vmap", [True, False])
def test_batched_draws_match_perturbing_copies_one_at_a_time(name, shape, options, use_vmap):
    model = pacbayes.fold_batch_norm(tiny(name, shape, **options))
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn((6, *shape), generator=generator)
    labels = torch.randint(0, 3, (6,), generator=generator)
    parameters = perturbable_parameters(model)
    draws = 3
    noise = {k: 0.05 * torch.randn((draws, *p.shape), generator=generator) for k, p in parameters.items()}
    source = lambda a, b: {k: parameters[k] + noise[k][a:b] for k in parameters}  # noqa: E731
    # a tiny memory budget forces several chunks of draws and examples
    metrics = perturbed_metrics(model, inputs, labels, draws, source, use_vmap=use_vmap, memory_bytes=1 << 12)
    for draw in range(draws):
        correct, loss = one_at_a_time(model, noise, draw, inputs, labels)
        assert int(metrics.correct[draw]) == correct
        assert float(metrics.loss_sum[draw]) == pytest.approx(loss, rel=1e-4, abs=1e-4)
    assert metrics.examples.tolist() == [6] * draws
    if use_vmap:
        assert metrics.vmapped  # every architecture here vmaps once batch norm is folded (eval mode)


def test_paired_draws_see_their_own_example():
    model = seeded_mlp([4, 5, 3], seed=2).eval()
    generator = torch.Generator().manual_seed(3)
    inputs, labels = torch.randn(7, 4, generator=generator), torch.randint(0, 3, (7,), generator=generator)
    parameters = perturbable_parameters(model)
    noise = {k: 0.3 * torch.randn((7, *p.shape), generator=generator) for k, p in parameters.items()}
    source = lambda a, b: {k: parameters[k] + noise[k][a:b] for k in parameters}  # noqa: E731
    metrics = perturbed_metrics(model, inputs, labels, 7, source, paired=True, memory_bytes=1 << 10)
    for i in range(7):
        correct, loss = one_at_a_time(model, noise, i, inputs, labels, paired_index=i)
        assert int(metrics.correct[i]) == correct
        assert float(metrics.loss_sum[i]) == pytest.approx(loss, rel=1e-5, abs=1e-6)
    assert metrics.examples.tolist() == [1] * 7


def test_biases_excluded_on_request():
    model = seeded_mlp([4, 5, 3], seed=2)
    assert set(perturbable_parameters(model)) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    assert set(perturbable_parameters(model, include_biases=False)) == {"1.weight", "3.weight"}


# ---------------------------------------------------------------------------
# The σ search on a linear classifier whose noisy accuracy has a closed form
# ---------------------------------------------------------------------------


def linear_problem(n=400, d=20, seed=0):
    """A linear 2-class model and the labels it predicts (training accuracy 1)."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, d, generator=generator) * 0.5)
        model[1].bias.copy_(torch.randn(2, generator=generator) * 0.5)
    inputs = torch.randn(n, d, generator=generator)
    labels = model(inputs).argmax(-1).detach()
    return model.eval(), inputs, labels


def expected_accuracy(model, inputs, sigma: float) -> float:
    """E[accuracy] under N(0, σ²) noise on all weights and biases: the logit difference of
    example x gets noise N(0, 2σ²(‖x‖² + 1)), so P(correct) = Φ(|margin| / (σ·sqrt(2(‖x‖²+1))))."""
    (w, b), = linear_layers(model)
    x = inputs.double().numpy()
    margin = np.abs(x @ (w[1] - w[0]) + (b[1] - b[0]))
    scale = sigma * np.sqrt(2 * ((x**2).sum(1) + 1))
    return float(norm.cdf(margin / scale).mean())


def test_sigma_search_stops_within_tolerance_of_the_target():
    model, inputs, labels = linear_problem()
    ctx = make_ctx(model, inputs, labels, 2)
    options = SigmaSearchOptions(draws=200)
    estimate = PacBayesFlatness().compute(ctx, options)
    sigma = estimate.details["sigma"]
    assert estimate.details["converged"] == 1
    assert abs(estimate.details["accuracy_drop"] - 0.1) <= 0.01
    assert estimate.details["bisection_steps"] < 15
    assert estimate.value == pytest.approx(1 / sigma**2)
    # the closed-form drop is monotone in σ: bracket σ* (drop = 0.1) and the band the
    # tolerance and the Monte-Carlo error allow, and check the search landed in it
    slack = 0.01 + 4 * estimate.details["accuracy_drop_stderr"]

    def drop(s):
        return 1.0 - expected_accuracy(model, inputs, s)

    low = brentq(lambda s: drop(s) - (0.1 - slack), 1e-4, 10)
    high = brentq(lambda s: drop(s) - (0.1 + slack), 1e-4, 10)
    assert low <= sigma <= high
    assert drop(sigma) == pytest.approx(0.1, abs=slack)


def test_sigma_search_reports_non_convergence_when_noise_never_hurts_enough():
    model, inputs, labels = linear_problem(n=50)
    ctx = make_ctx(model, inputs, labels, 2)
    # with σ ≤ 0.02 the drop stays far below 0.1: bisection climbs to the upper end
    estimate = PacBayesFlatness().compute(ctx, SigmaSearchOptions(sigma_max=0.02, max_steps=4, draws=4))
    assert estimate.details["converged"] == 0
    assert estimate.details["bisection_steps"] == 4
    assert estimate.details["sigma"] == pytest.approx(0.02 * (1 - 2**-4))
    assert estimate.details["accuracy_drop"] < 0.05


# ---------------------------------------------------------------------------
# The Jiang et al. formulas from the σ found
# ---------------------------------------------------------------------------


def trained_pair():
    initial = seeded_mlp([4, 6, 3], seed=5)
    model = copy.deepcopy(initial)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.4 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    inputs = torch.randn(60, 4, generator=torch.Generator().manual_seed(9))
    labels = model(inputs).argmax(-1).detach()
    return model.eval(), initial.eval(), inputs, labels


def numpy_weights(model):
    return np.concatenate([w.ravel() for w, _ in linear_layers(model)])


def test_init_and_orig_formulas_from_the_search_sigma():
    model, initial, inputs, labels = trained_pair()
    ctx = make_ctx(model, inputs, labels, 3, initial=initial)
    options = SigmaSearchOptions(draws=4, max_steps=6)
    init = PacBayesInit().compute(ctx, options)
    orig = PacBayesOrig().compute(ctx, options)
    sigma, m = init.details["sigma"], 60
    w, w0 = numpy_weights(model), numpy_weights(initial)
    assert init.value == pytest.approx(((w - w0) ** 2).sum() / (4 * sigma**2) + np.log(m / sigma) + 10, rel=1e-9)
    assert orig.value == pytest.approx((w**2).sum() / (4 * sigma**2) + np.log(m / sigma) + 10, rel=1e-9)
    normalized = PacBayesInit().compute(ctx, SigmaSearchOptions(draws=4, max_steps=6, normalize_by_m=True))
    assert normalized.value == pytest.approx(math.sqrt(init.value / m))


def test_magnitude_formulas_from_the_search_sigma():
    model, initial, inputs, labels = trained_pair()
    ctx = make_ctx(model, inputs, labels, 3, initial=initial)
    options = MagnitudeSearchOptions(draws=4, max_steps=6, epsilon=0.01)
    mag_init = PacBayesMagInit().compute(ctx, options)
    mag_orig = PacBayesMagOrig().compute(ctx, options)
    flatness = PacBayesMagFlatness().compute(ctx, options)
    s, eps, m = flatness.details["sigma"], 0.01, 60
    w, w0 = numpy_weights(model), numpy_weights(initial)
    omega = len(w)

    def expected(reference):
        total = 0.0
        for wi, w0i in zip(w, w0):  # one term per weight
            total += np.log((eps**2 + (s**2 + 1) * (reference**2).sum() / omega) / (eps**2 + s**2 * (wi - w0i) ** 2))
        return total / 4 + np.log(m / s) + 10

    assert flatness.value == pytest.approx(1 / s**2)
    assert mag_init.value == pytest.approx(expected(w - w0), rel=1e-9)
    assert mag_orig.value == pytest.approx(expected(w), rel=1e-9)


def test_magnitude_noise_scales_with_each_weight():
    model = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, -1.0]]))
    scales = pacbayes.noise_scales(perturbable_parameters(model, include_biases=False), 0.5, 0.1)
    expected = np.sqrt(0.25 * np.array([[9.0, 0.0], [0.0, 1.0]]) + 0.01)
    np.testing.assert_allclose(scales["0.weight"].numpy(), expected, rtol=1e-6)


# ---------------------------------------------------------------------------
# One search shared by three measures
# ---------------------------------------------------------------------------


def test_search_is_cached_and_shared(monkeypatch):
    calls = []
    real = pacbayes.sigma_search

    def counting(ctx, options):
        calls.append(type(options).__name__)
        return real(ctx, options)

    monkeypatch.setattr(pacbayes, "sigma_search", counting)
    model, initial, inputs, labels = trained_pair()
    ctx = make_ctx(model, inputs, labels, 3, initial=initial)
    plain = SigmaSearchOptions(draws=3, max_steps=4)
    values = [m().compute(ctx, plain) for m in (PacBayesFlatness, PacBayesInit, PacBayesOrig)]
    PacBayesInit().compute(ctx, SigmaSearchOptions(draws=3, max_steps=4, normalize_by_m=True))
    assert calls == ["SigmaSearchOptions"]
    assert len({v.details["sigma"] for v in values}) == 1
    magnitude = MagnitudeSearchOptions(draws=3, max_steps=4)
    for measure in (PacBayesMagFlatness, PacBayesMagInit, PacBayesMagOrig):
        measure().compute(ctx, magnitude)
    assert calls == ["SigmaSearchOptions", "MagnitudeSearchOptions"]
    PacBayesFlatness().compute(ctx, SigmaSearchOptions(draws=3, max_steps=4, target_drop=0.2))
    assert len(calls) == 3  # other search options: a new search
    # another run's context (here: other weights, same run id) has its own cache: a new search
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[1].weight.mul_(1.5)
    PacBayesFlatness().compute(make_ctx(other, inputs, labels, 3, initial=initial), plain)
    assert len(calls) == 4


def test_search_is_reproducible_across_measure_generators():
    model, initial, inputs, labels = trained_pair()
    options = SigmaSearchOptions(draws=3, max_steps=5)
    first = PacBayesFlatness().compute(make_ctx(model, inputs, labels, 3, initial=initial), options)
    ctx = make_ctx(model, inputs, labels, 3, initial=initial)
    ctx.generator.manual_seed(12345)  # the search does not depend on the measure's generator
    second = PacBayesFlatness().compute(ctx, options)
    assert first == second


# ---------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------


def test_diverged_model_gives_nan_not_a_crash():
    model, initial, inputs, labels = trained_pair()
    with torch.no_grad():
        model[1].weight[0, 0] = math.nan
    ctx = make_ctx(model, inputs, labels, 3, initial=initial)
    for measure in (PacBayesFlatness, PacBayesInit, PacBayesMagOrig):
        assert math.isnan(measure().compute(ctx, measure.Options(draws=2, max_steps=2)).value)
    assert math.isnan(PacBayesBound().compute(ctx, PacBayesBoundOptions()).value)


def test_network_without_weight_layers_is_a_measure_error():
    model = nn.Sequential(nn.Flatten())
    ctx = make_ctx(model, torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(MeasureError):
        PacBayesFlatness().compute(ctx, SigmaSearchOptions())
    with pytest.raises(MeasureError):
        PacBayesBound().compute(ctx, PacBayesBoundOptions())


@pytest.mark.parametrize("name, shape, options", ARCHITECTURES[:4], ids=IDS[:4])
def test_search_runs_on_each_architecture(name, shape, options):
    model = tiny(name, shape, **options)
    inputs = torch.randn((12, *shape), generator=torch.Generator().manual_seed(4))
    labels = model(inputs).argmax(-1).detach()
    ctx = make_ctx(model, inputs, labels, 3, initial=tiny(name, shape, **options))
    estimate = PacBayesMagInit().compute(ctx, MagnitudeSearchOptions(draws=2, max_steps=3))
    assert math.isfinite(estimate.value)
    assert estimate.details["train_accuracy"] == 1.0


# ---------------------------------------------------------------------------
# pacbayes-bound
# ---------------------------------------------------------------------------


def separable_problem(n: int, seed: int = 0, random_labels: bool = False):
    """Two well-separated clusters at x₁ = ±3 and a linear model W = [[−2, 0], [2, 0]] fitted to
    them from the initialization W⁰ = 0 (so ‖θ − θ⁰‖² = 8)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    inputs = torch.randn(n, 2, generator=generator) * 0.5
    inputs[:, 0] += torch.where(labels == 1, 3.0, -3.0)
    initial = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        initial[0].weight.zero_()
        initial[0].bias.zero_()
    model = copy.deepcopy(initial)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]))
    if random_labels:
        labels = torch.randint(0, 2, (n,), generator=generator)
    return model.eval(), initial.eval(), inputs, labels


def test_bound_is_positive_on_separable_data_with_many_examples():
    model, initial, inputs, labels = separable_problem(3000)
    ctx = make_ctx(model, inputs, labels, 2, initial=initial)
    options = PacBayesBoundOptions()
    estimate = PacBayesBound().compute(ctx, options)
    details = estimate.details
    assert details["certified"] == 1
    assert estimate.value > 0.8
    # recompute the bound from the reported pieces with scipy's root finder
    sigma, m, grid = details["sigma"], 3000, options.grid_points
    assert details["kl"] == pytest.approx(8 / (2 * sigma**2))
    delta_each = options.delta / 2 / grid
    upper = scipy_kl_inverse(details["gibbs_error"], math.log(2 / delta_each) / details["samples"])
    assert details["gibbs_error_upper"] == pytest.approx(upper, abs=1e-9)
    budget = (details["kl"] + math.log(2 * math.sqrt(m) / delta_each)) / m
    assert details["bound"] == pytest.approx(scipy_kl_inverse(upper, budget), abs=1e-9)
    assert estimate.value == pytest.approx(max(0.0, (1 - details["bound"] - 0.5) / 0.5))
    # the Monte-Carlo Gibbs error agrees with its closed form (noise on W and b)
    x = inputs.double().numpy()
    margin = np.abs(4 * x[:, 0])
    expected = float(norm.cdf(-margin / (sigma * np.sqrt(2 * ((x**2).sum(1) + 1)))).mean())
    assert details["gibbs_error"] == pytest.approx(expected, abs=4 * math.sqrt(max(expected, 1e-3) / m))
    # σ is a point of the stated geometric grid
    grid_values = np.geomspace(options.sigma_min, options.sigma_max, grid)
    assert np.min(np.abs(grid_values - sigma)) < 1e-9


def test_bound_is_zero_with_random_labels():
    model, initial, inputs, labels = separable_problem(3000, random_labels=True)
    ctx = make_ctx(model, inputs, labels, 2, initial=initial)
    estimate = PacBayesBound().compute(ctx, PacBayesBoundOptions())
    assert estimate.value == 0.0


def test_bound_is_zero_for_a_network_that_memorized_random_labels():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(80, 6, generator=generator)
    labels = torch.randint(0, 4, (80,), generator=generator)
    initial = seeded_mlp([6, 128, 4], seed=0)
    model = copy.deepcopy(initial)
    # memorize: keep the random first layer, solve the last one by least squares for
    # 5 × one-hot targets (128 hidden units ≥ 80 examples: an exact fit)
    with torch.no_grad():
        hidden = torch.cat([torch.relu(model[1](inputs)), torch.ones(80, 1)], dim=1).double()
        targets = 5 * nn.functional.one_hot(labels, 4).double()
        solution = torch.linalg.lstsq(hidden, targets).solution
        model[3].weight.copy_(solution[:-1].T)
        model[3].bias.copy_(solution[-1])
    assert (model(inputs).argmax(-1) == labels).all()  # memorized
    ctx = make_ctx(model.eval(), inputs, labels, 4, initial=initial.eval())
    estimate = PacBayesBound().compute(ctx, PacBayesBoundOptions())
    assert estimate.value == 0.0
    assert estimate.details["bound"] is None or estimate.details["bound"] >= 0.75


def test_bound_with_few_examples_is_zero_even_for_a_perfect_fit():
    # m = 10: the bound's complexity term alone keeps it above chance for every grid σ
    model, initial, inputs, labels = separable_problem(10)
    estimate = PacBayesBound().compute(make_ctx(model, inputs, labels, 2, initial=initial), PacBayesBoundOptions())
    assert estimate.value == 0.0
    assert estimate.details["certified"] == 0


def test_early_stopped_steps_take_the_same_path_as_full_evaluations(monkeypatch):
    model, inputs, labels = linear_problem(n=600)
    ctx = make_ctx(model, inputs, labels, 2)
    options = SigmaSearchOptions(draws=6, sigma_max=20.0)  # the first steps drop far more than 0.1
    real_step = pacbayes.NoisyTraining.step
    outcomes = {True: [], False: []}

    def recording(allow):
        def step(self, sigma, target, tolerance, early_stop):
            outcome = real_step(self, sigma, target, tolerance, early_stop=early_stop and allow)
            outcomes[allow].append(outcome)
            return outcome

        return step

    monkeypatch.setattr(pacbayes.NoisyTraining, "step", recording(True))
    with_early_stop = PacBayesFlatness().compute(ctx, options)
    ctx.cache.clear()  # the search is cached per run: search again
    monkeypatch.setattr(pacbayes.NoisyTraining, "step", recording(False))
    without = PacBayesFlatness().compute(ctx, options)
    assert without == with_early_stop
    assert any(o.drop is None for o in outcomes[True])  # some steps did stop early
    assert all(o.drop is not None for o in outcomes[False])
    assert [o.too_much for o in outcomes[True]] == [o.too_much for o in outcomes[False]]


def test_stop_early_ends_after_the_first_chunk():
    model = seeded_mlp([4, 5, 3], seed=2).eval()
    inputs = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
    labels = model(inputs).argmax(-1).detach()
    parameters = perturbable_parameters(model)
    source = lambda a, b: {k: p.expand(b - a, *p.shape) for k, p in parameters.items()}  # noqa: E731
    seen = []

    def stop(correct, done):
        seen.append((correct.tolist(), done))
        return True

    metrics = perturbed_metrics(model, inputs, labels, 2, source, stop_early=stop)
    assert seen == [([128, 128], 128)]  # unperturbed copies are right on the first 128 examples
    assert metrics.examples.tolist() == [128, 128]
    full = perturbed_metrics(model, inputs, labels, 2, source, stop_early=lambda c, d: False)
    assert full.examples.tolist() == [300, 300] and full.correct.tolist() == [300, 300]
