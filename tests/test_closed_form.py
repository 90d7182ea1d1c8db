"""Closed-form models: Zhang et al. 2017's §4 interpolating ReLU network and §5 kernel interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from safetensors.torch import load, save

from genbench.corruptions import corrupt_labels
from genbench.datasets import Digits, DigitsOptions
from genbench.errors import DataError, SpecError
from genbench.models.interpolation import FiniteSampleInterpolation, InterpolationOptions
from genbench.models.kernel import KernelInterpolation, KernelMachine, KernelOptions


def _points(n: int, shape: tuple[int, ...], num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=generator)
    y = torch.randint(0, num_classes, (n,), generator=generator)
    return x, y


def _round_trip(factory, module, input_shape, num_classes, options):
    """Through safetensors bytes, as the store saves checkpoints."""
    state = load(save({k: v.contiguous() for k, v in module.state_dict().items()}))
    return factory.from_state(state, input_shape, num_classes, options)


def _one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(y, num_classes).to(torch.float64)


# ---------------------------------------------------------------- §4 interpolation


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 10),
    num_classes=st.integers(2, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_interpolation_fits_any_labels(n, d, num_classes, seed):
    factory = FiniteSampleInterpolation()
    x, y = _points(n, (d,), num_classes, seed)
    module, diagnostics = factory.fit(x, y, num_classes, InterpolationOptions(), seed)
    with torch.no_grad():
        outputs = module(x)
    assert outputs.dtype == torch.float32 and outputs.shape == (n, num_classes)
    assert torch.equal(outputs.argmax(1), y)
    assert (outputs.double() - _one_hot(y, num_classes)).abs().max() < 1e-3
    assert diagnostics["residual"] < 1e-3
    assert diagnostics["residual"] <= 1e-6 * max(1.0, diagnostics["condition_number"])
    assert diagnostics["condition_number"] >= 1.0
    weights = d + n + num_classes * n
    assert sum(p.numel() for p in module.parameters()) == weights == diagnostics["num_weights"]
    assert not module.training

    rebuilt = _round_trip(factory, module, (d,), num_classes, InterpolationOptions())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), outputs)

    initial = factory.initial(module)
    assert torch.count_nonzero(initial.output.weight) == 0
    assert torch.equal(initial.projection.weight, module.projection.weight)
    assert torch.equal(initial.thresholds, module.thresholds)
    assert torch.count_nonzero(module.output.weight) > 0  # the fitted module is untouched
    with torch.no_grad():
        assert torch.count_nonzero(initial(x)) == 0


def test_interpolation_structure_follows_the_construction():
    x, y = _points(30, (1, 2, 3), 4, seed=7)
    module, _ = FiniteSampleInterpolation().fit(x, y, 4, InterpolationOptions(), seed=3)
    a = module.projection.weight.detach()[0]
    assert a.dtype == torch.float64 and a.shape == (6,)
    projections = torch.sort(x.reshape(30, -1).double() @ a).values
    b = module.thresholds.detach()
    assert torch.all(b[1:] > b[:-1])  # b_1 < x_(1) < b_2 < x_(2) < …
    assert torch.allclose(b[0], projections[0] - 1)
    assert torch.allclose(b[1:], (projections[:-1] + projections[1:]) / 2)
    assert torch.all(projections > b) and torch.all(projections[:-1] < b[1:])
    # the seed alone determines the network
    again, _ = FiniteSampleInterpolation().fit(x, y, 4, InterpolationOptions(), seed=3)
    other, _ = FiniteSampleInterpolation().fit(x, y, 4, InterpolationOptions(), seed=4)
    assert all(torch.equal(p, q) for p, q in zip(module.parameters(), again.parameters(), strict=True))
    assert not torch.equal(other.projection.weight, module.projection.weight)


def test_interpolation_at_n_200_is_badly_conditioned_but_exact():
    x, y = _points(200, (5,), 10, seed=0)
    module, diagnostics = FiniteSampleInterpolation().fit(x, y, 10, InterpolationOptions(), seed=0)
    assert diagnostics["condition_number"] > 1e6
    assert diagnostics["residual"] < 1e-6
    with torch.no_grad():
        assert torch.equal(module(x).argmax(1), y)


def test_interpolation_on_lattice_points():
    rng = np.random.default_rng(1)
    points = np.unique(rng.integers(-3, 4, size=(80, 3)), axis=0)
    x = torch.tensor(points, dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 3, size=len(points)))
    module, diagnostics = FiniteSampleInterpolation().fit(x, y, 3, InterpolationOptions(), seed=0)
    with torch.no_grad():
        assert torch.equal(module(x).argmax(1), y)
    assert diagnostics["residual"] < 1e-3


def test_interpolation_rejects_duplicates_and_bad_labels():
    x, y = _points(10, (3,), 3, seed=0)
    x[7] = x[2]
    with pytest.raises(DataError, match="distinct points; found duplicates"):
        FiniteSampleInterpolation().fit(x, y, 3, InterpolationOptions(), seed=0)
    x, y = _points(10, (3,), 3, seed=0)
    with pytest.raises(DataError):
        FiniteSampleInterpolation().fit(x, y + 3, 3, InterpolationOptions(), seed=0)


def test_interpolation_protocol():
    factory = FiniteSampleInterpolation()
    assert factory.name == "interpolation" and factory.closed_form and not factory.vmappable
    with pytest.raises(SpecError, match="interpolation is fitted in closed form; it has no untrained form"):
        factory.build((4,), 2, InterpolationOptions())
    with pytest.raises(ValidationError):
        InterpolationOptions(bias_rule="left")
    x, y = _points(8, (4,), 2, seed=0)
    module, _ = factory.fit(x, y, 2, InterpolationOptions(), seed=0)
    with pytest.raises(SpecError):
        factory.from_state(module.state_dict(), (5,), 2, InterpolationOptions())
    with torch.no_grad():
        assert module(x[:0]).shape == (0, 2)


# ---------------------------------------------------------------- §5 kernel interpolation


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(3, 10),
    num_classes=st.integers(2, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_gaussian_kernel_interpolates_any_labels(n, d, num_classes, seed):
    x, y = _points(n, (d,), num_classes, seed)
    module, diagnostics = KernelInterpolation().fit(x, y, num_classes, KernelOptions(), seed)
    with torch.no_grad():
        outputs = module(x)
    assert outputs.dtype == torch.float32
    assert torch.equal(outputs.argmax(1), y)
    assert diagnostics["residual"] < 1e-6
    assert diagnostics["pseudo_inverse"] == 0.0
    assert diagnostics["train_accuracy_closed_form"] == 1.0
    assert diagnostics["rkhs_norm"] > 0


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 20), extra=st.integers(0, 20), num_classes=st.integers(2, 6), seed=st.integers(0, 2**31 - 1))
def test_linear_kernel_interpolates_when_n_at_most_d(n, extra, num_classes, seed):
    x, y = _points(n, (n + extra,), num_classes, seed)
    module, diagnostics = KernelInterpolation().fit(x, y, num_classes, KernelOptions(kernel="linear"), seed)
    with torch.no_grad():
        assert torch.equal(module(x).argmax(1), y)
    assert diagnostics["residual"] < 1e-6
    assert diagnostics["pseudo_inverse"] == 0.0


def test_linear_kernel_with_n_above_d_gives_the_minimum_norm_least_squares_fit():
    x, y = _points(50, (6,), 3, seed=2)
    module, diagnostics = KernelInterpolation().fit(x, y, 3, KernelOptions(kernel="linear"), seed=0)
    assert diagnostics["pseudo_inverse"] == 1.0
    assert diagnostics["residual"] > 0.1  # a linear model cannot fit 50 random labels in 6 dimensions
    xd = x.double()
    w = torch.linalg.pinv(xd) @ _one_hot(y, 3)  # w = X⁺ Y
    with torch.no_grad():
        assert torch.allclose(module(x).double(), xd @ w, atol=1e-5)
    alpha = module.alpha.detach()
    assert torch.allclose(xd.T @ alpha, w, atol=1e-8)
    assert diagnostics["rkhs_norm"] == pytest.approx(float(w.norm()), rel=1e-8)


def test_singular_gaussian_kernel_falls_back_to_the_pseudo_inverse():
    x, y = _points(20, (5,), 3, seed=4)
    x[11], y[11] = x[3], y[3]  # a repeated point makes K exactly singular (the system stays consistent)
    module, diagnostics = KernelInterpolation().fit(x, y, 3, KernelOptions(), seed=0)
    assert diagnostics["pseudo_inverse"] == 1.0
    assert diagnostics["residual"] < 1e-6
    with torch.no_grad():
        outputs = module(x)
    assert torch.isfinite(outputs).all() and torch.equal(outputs.argmax(1), y)


def test_ridge_and_gamma_options():
    x, y = _points(30, (4,), 3, seed=5)
    factory = KernelInterpolation()
    _, exact = factory.fit(x, y, 3, KernelOptions(), seed=0)
    _, ridged = factory.fit(x, y, 3, KernelOptions(ridge=1.0), seed=0)
    assert ridged["residual"] > 1e-3 and ridged["rkhs_norm"] < exact["rkhs_norm"]
    flat = x.reshape(30, -1).numpy().astype(np.float64)
    assert exact["gamma"] == pytest.approx(1.0 / (flat.shape[1] * flat.var()))  # scikit-learn's 'scale'
    module, fixed = factory.fit(x, y, 3, KernelOptions(gamma=0.25), seed=0)
    assert fixed["gamma"] == 0.25 and float(module.gamma) == 0.25
    with pytest.raises(ValidationError):
        KernelOptions(gamma=0.0)
    with pytest.raises(ValidationError):
        KernelOptions(ridge=-1.0)
    with pytest.raises(ValidationError):
        KernelOptions(kernel="polynomial")


def test_kernel_protocol_round_trip_and_initial():
    factory = KernelInterpolation()
    assert factory.name == "kernel" and factory.closed_form and not factory.vmappable
    with pytest.raises(SpecError, match="kernel is fitted in closed form; it has no untrained form"):
        factory.build((4,), 2, KernelOptions())
    x, y = _points(25, (1, 2, 3), 4, seed=6)
    x_new, _ = _points(7, (1, 2, 3), 4, seed=8)
    for options in (KernelOptions(), KernelOptions(kernel="linear", ridge=0.5)):
        module, _ = factory.fit(x, y, 4, options, seed=0)
        assert isinstance(module, KernelMachine) and not module.training
        assert module.support.dtype == module.alpha.dtype == module.gamma.dtype == torch.float64
        assert module.support.shape == (25, 6) and module.alpha.shape == (25, 4)
        assert [name for name, _ in module.named_parameters()] == ["alpha"]
        rebuilt = _round_trip(factory, module, (1, 2, 3), 4, options)
        with torch.no_grad():
            assert torch.equal(rebuilt(x_new), module(x_new))
        initial = factory.initial(module)
        assert torch.count_nonzero(initial.alpha) == 0 and torch.count_nonzero(module.alpha) > 0
        assert torch.equal(initial.support, module.support) and torch.equal(initial.gamma, module.gamma)
        with torch.no_grad():
            assert torch.count_nonzero(initial(x_new)) == 0
        with pytest.raises(SpecError):
            factory.from_state(module.state_dict(), (1, 2, 3), 5, options)


@pytest.fixture(scope="module")
def digits_fits():
    data = Digits().load(DigitsOptions())
    factory = KernelInterpolation()
    fits = {}
    for level in (0.0, 0.5, 1.0):
        labels = corrupt_labels(data.y_train, 10, level, seed=0)
        module, diagnostics = factory.fit(data.x_train, labels, 10, KernelOptions(), seed=0)
        with torch.no_grad():
            train = (module(data.x_train).argmax(1) == labels).double().mean().item()
            test = (module(data.x_test).argmax(1) == data.y_test).double().mean().item()
        fits[level] = {"train": train, "test": test, **diagnostics}
    return fits


def test_digits_gaussian_kernel_generalizes_on_true_labels(digits_fits):
    fit = digits_fits[0.0]
    assert fit["train"] == 1.0 and fit["test"] > 0.9


def test_digits_gaussian_kernel_interpolates_random_labels_without_generalizing(digits_fits):
    fit = digits_fits[1.0]
    assert fit["train"] == 1.0 and fit["train_accuracy_closed_form"] == 1.0
    assert fit["residual"] < 1e-6
    assert fit["test"] < 0.2


def test_digits_rkhs_norm_grows_with_label_corruption(digits_fits):
    """Zhang et al. §5: interpolating more random labels needs a larger-norm solution."""
    norms = [digits_fits[level]["rkhs_norm"] for level in (0.0, 0.5, 1.0)]
    assert norms[0] < norms[1] < norms[2]
