"""The ensemble forward of genbench.stacked_forward against vmap(functional_call)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from genbench.corruptions import corrupt_labels
from genbench.datasets import Digits, DigitsOptions
from genbench.models.cnn import CNNOptions, SmallConvNet
from genbench.schemas import TrainConfig
from genbench.training.stacked_forward import stacked_forward, stacked_plan
from genbench.training import EnsembleTrainer, build_initialized


def stacked_models(make, members: int):
    models = [build_initialized(make, seed) for seed in range(members)]
    params, buffers = stack_module_state(models)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    return copy.deepcopy(models[0]).to("meta"), params, buffers


def vmapped(base, params, buffers, x):
    return vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), randomness="different")(params, buffers, x)


def expand(x: torch.Tensor, spans) -> torch.Tensor:
    return torch.cat([x[g].expand(end - start, *x.shape[1:]) for g, (start, end) in enumerate(spans)])


def assert_same_logits_and_gradients(base, params, buffers, x, spans):
    """Stacked logits and parameter gradients equal vmap's on the per-member inputs."""
    plan = stacked_plan(base)
    assert plan is not None
    per_member = expand(x, spans)
    targets = torch.arange(per_member.shape[1]) % 3
    results = []
    for logits in (stacked_forward(plan, params, x, spans), vmapped(base, params, buffers, per_member)):
        loss = F.cross_entropy(logits.flatten(0, 1), targets.repeat(logits.shape[0]))
        results.append((logits, torch.autograd.grad(loss, list(params.values()))))
    (ours, our_grads), (reference, reference_grads) = results
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    for name, a, b in zip(params, our_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"gradient of {name}")
    # one input row per member (no spans) gives the same
    torch.testing.assert_close(stacked_forward(plan, params, per_member), reference, rtol=1e-4, atol=1e-5)


def test_the_default_conv_net_on_digits_with_cohorts_of_unequal_size():
    base, params, buffers = stacked_models(lambda: SmallConvNet().build((1, 8, 8), 10, CNNOptions()), 5)
    x = torch.randn(2, 16, 1, 8, 8)
    assert_same_logits_and_gradients(base, params, buffers, x, [(0, 3), (3, 5)])


def test_a_one_dimensional_conv_net():
    base, params, buffers = stacked_models(lambda: SmallConvNet().build((1, 40), 10, CNNOptions(channels=[4, 6, 8])), 3)
    assert_same_logits_and_gradients(base, params, buffers, torch.randn(3, 7, 1, 40), [(0, 1), (1, 2), (2, 3)])


def test_strides_dilation_string_padding_no_bias_and_a_hidden_dense_layer():
    def make():
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False),
            nn.Tanh(),
            nn.Sequential(nn.Conv2d(4, 5, 3, padding="same", dilation=2), nn.ReLU(), nn.AvgPool2d(2)),
            nn.Flatten(),
            nn.Linear(5 * 3 * 3, 7),
            nn.ReLU(),
            nn.Dropout(0.0),
            nn.Linear(7, 3, bias=False),
        )

    base, params, buffers = stacked_models(make, 4)
    assert_same_logits_and_gradients(base, params, buffers, torch.randn(1, 5, 3, 12, 12), [(0, 4)])


def test_a_multilayer_perceptron():
    from genbench.models.mlp import MLPOptions, MultilayerPerceptron

    base, params, buffers = stacked_models(
        lambda: MultilayerPerceptron().build((1, 8, 8), 10, MLPOptions(hidden=[16, 8])), 4
    )
    assert_same_logits_and_gradients(base, params, buffers, torch.randn(2, 9, 1, 8, 8), [(0, 1), (1, 4)])


# The inputs are drawn from a seed of the example, so that an example always gives the same data
# (an unseeded draw once failed the gradient check once and not again, its data lost), and the
# examples are the same on every run (derandomize), so that the suite does not pass or fail by
# the luck of the draw. The tolerances are unchanged.
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    spatial=st.sampled_from([(1, 9), (2, 8), (1, 6, 6), (2, 7, 5)]),
    channels=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    kernel=st.sampled_from([1, 3, 5]),
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    batch=st.integers(1, 6),
    data_seed=st.integers(0, 2**31 - 1),
)
def test_any_small_conv_net_and_any_cohorts_match_vmap(spatial, channels, kernel, sizes, batch, data_seed):
    members = sum(sizes)
    base, params, buffers = stacked_models(
        lambda: SmallConvNet().build(spatial, 4, CNNOptions(channels=channels, kernel_size=kernel)), members
    )
    starts = [sum(sizes[:g]) for g in range(len(sizes))]
    spans = [(start, start + size) for start, size in zip(starts, sizes)]
    x = torch.randn(len(sizes), batch, *spatial, generator=torch.Generator().manual_seed(data_seed))
    assert_same_logits_and_gradients(base, params, buffers, x, spans)


def test_plans_for_the_models_it_applies_to_and_none_for_the_others():
    from genbench.models.mlp import MLPOptions, MultilayerPerceptron
    from genbench.models.zhang import AlexNetOptions, InceptionOptions, SmallAlexNet, SmallInception

    plan = stacked_plan(SmallConvNet().build((1, 8, 8), 10, CNNOptions()))
    assert [step.kind for step in plan] == [
        "patch-conv", "channelwise", "channelwise", "conv", "channelwise", "channelwise", "flatten", "linear",
    ]
    # the ReLU runs after the max-pool it came before
    assert [type(step.module).__name__ for step in plan[1:3]] == ["MaxPool2d", "ReLU"]
    dense = stacked_plan(MultilayerPerceptron().build((1, 8, 8), 10, MLPOptions(hidden=[5, 6])))
    assert [step.kind for step in dense] == ["flatten-input", "linear", "channelwise", "linear", "channelwise", "linear"]
    assert stacked_plan(nn.Sequential(nn.Linear(3, 2))) is None  # a Linear on unflattened inputs
    assert stacked_plan(SmallAlexNet().build((3, 28, 28), 10, AlexNetOptions())) is None  # LocalResponseNorm
    assert stacked_plan(SmallInception().build((3, 28, 28), 10, InceptionOptions())) is None  # batch norm
    assert stacked_plan(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))) is None
    assert stacked_plan(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.MaxPool1d(2))) is None
    assert stacked_plan(nn.Conv2d(1, 2, 3)) is None
    assert stacked_plan(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())) is None  # no Linear


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


class ScaledLinear(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


class ChannelSoftmax(nn.Identity):
    def forward(self, x):
        return x.softmax(1)


def test_modules_it_cannot_run_exactly_are_left_to_vmap():
    conv = [nn.Conv2d(1, 3, 3), nn.ReLU()]
    head = [nn.Flatten(), nn.Linear(3 * 6 * 6, 2)]
    # subclasses may have their own forward
    assert stacked_plan(nn.Sequential(*conv, Residual(nn.ReLU()), *head)) is None
    assert stacked_plan(nn.Sequential(*conv, nn.Flatten(), ScaledLinear(108, 2))) is None
    assert stacked_plan(nn.Sequential(*conv, ChannelSoftmax(), *head)) is None
    assert stacked_plan(Residual(*conv, *head)) is None
    # pools act on the maps of a convolution of their own dimension
    assert stacked_plan(nn.Sequential(nn.AvgPool1d(2), nn.Flatten(), nn.Linear(2, 2))) is None
    assert stacked_plan(nn.Sequential(nn.Conv1d(1, 3, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3, 2))) is None
    assert stacked_plan(nn.Sequential(nn.Conv1d(1, 3, 3), nn.Conv2d(3, 3, 1), nn.Flatten(), nn.Linear(3, 2))) is None


def test_only_nondecreasing_activations_move_past_a_max_pool():
    for slope, moved in [(0.2, True), (0.0, True), (-0.5, False)]:
        def make(slope=slope):
            return nn.Sequential(nn.Conv2d(1, 3, 3), nn.LeakyReLU(slope), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 3))

        base, params, buffers = stacked_models(make, 2)
        assert (type(stacked_plan(base)[1].module) is nn.MaxPool2d) == moved
        assert_same_logits_and_gradients(base, params, buffers, torch.randn(2, 4, 1, 8, 8), [(0, 1), (1, 2)])


def test_inputs_and_spans_that_do_not_fit_are_refused():
    import pytest

    base, params, _ = stacked_models(lambda: SmallConvNet().build((1, 8, 8), 10, CNNOptions(channels=[2])), 3)
    plan = stacked_plan(base)
    x = torch.randn(3, 4, 1, 8, 8)
    for spans in ([(0, 0), (0, 2), (2, 3)], [(0, 1), (2, 3), (1, 2)], [(0, 1), (1, 2), (2, 2)]):
        with pytest.raises(ValueError, match="contiguous non-empty"):
            stacked_forward(plan, params, x, spans)
    with pytest.raises(ValueError, match="needs inputs"):
        stacked_forward(plan, params, torch.randn(3, 4, 8, 8))  # no channel axis


DIGITS = Digits().load(DigitsOptions())


def conv_net():
    return SmallConvNet().build(DIGITS.input_shape, 10, CNNOptions(channels=[8, 16]))


def test_training_a_conv_net_stacked_equals_training_it_under_vmap_and_alone():
    config = TrainConfig(lr=0.05, schedule="constant", max_steps=60, batch_size=64)
    seeds = [0, 1, 0]
    labels = torch.stack([corrupt_labels(DIGITS.y_train, 10, p, s) for p, s in zip([0.0, 0.5, 1.0], seeds)])
    stacked = EnsembleTrainer(config).fit(conv_net, DIGITS.x_train, labels, seeds)
    reference = EnsembleTrainer(config, stacked=False).fit(conv_net, DIGITS.x_train, labels, seeds)
    alone = EnsembleTrainer(config).fit(conv_net, DIGITS.x_train, labels[2:], seeds[2:])[0]
    for other in (reference[2], alone):
        assert other.steps == stacked[2].steps
        for name, value in other.final_state.items():
            torch.testing.assert_close(stacked[2].final_state[name], value, rtol=1e-4, atol=1e-4)
