"""Zhang et al. (2017)'s CIFAR-10 architectures: Table 1 parameter counts, shapes, vmap, training."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from genbench.errors import SpecError
from genbench.measures.weights import weight_count
from genbench.plugins import load_plugins
from genbench.schemas import TrainConfig
from genbench.training import EnsembleTrainer

#: small tensor work: one intra-op thread (see conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


MODELS = load_plugins(entry_points=[]).registry("models")  # built-ins only

CONV_MODELS = ["small-alexnet", "small-inception", "small-inception-nobn"]
MLP_MODELS = ["mlp-1x512", "mlp-3x512"]
ALL_MODELS = MLP_MODELS + CONV_MODELS

#: Table 1 of Zhang et al. (2017), on a 28×28×3 input with 10 classes (BN parameters not counted).
TABLE_1 = {
    "mlp-1x512": 1_209_866,
    "mlp-3x512": 1_735_178,
    "small-alexnet": 1_387_786,
    "small-inception": 1_649_402,
    "small-inception-nobn": 1_649_402,
}

VMAPPABLE = {
    "mlp-1x512": True,
    "mlp-3x512": True,
    "small-alexnet": True,
    "small-inception": False,
    "small-inception-nobn": True,
}


def build(name: str, input_shape, num_classes: int, **options) -> nn.Module:
    factory = MODELS.get(name)
    return factory.build(tuple(input_shape), num_classes, factory.Options(**options))


def non_bn_parameter_count(model: nn.Module) -> int:
    """Sum of numel over parameters not owned by a batch-norm module (independent of weight_count)."""
    return sum(
        p.numel()
        for module in model.modules()
        if not isinstance(module, nn.modules.batchnorm._BatchNorm)
        for p in module.parameters(recurse=False)
    )


# --- registration and options -----------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_registered_with_protocol_attributes(name):
    factory = MODELS.get(name)
    assert factory.name == name
    assert factory.description and "\n" not in factory.description
    assert factory.vmappable is VMAPPABLE[name]
    assert "Zhang et al." in type(factory).__doc__
    for field_name, info in factory.Options.model_fields.items():
        assert info.description, f"{name}.{field_name} has no description"


def test_options_defaults_and_validation():
    assert MODELS.get("mlp-1x512").Options().dropout == 0.0
    alexnet = MODELS.get("small-alexnet").Options()
    assert alexnet.dropout == 0.0 and alexnet.local_response_norm is True
    assert MODELS.get("small-inception").Options().batch_norm is True
    with pytest.raises(ValidationError):
        MODELS.get("small-alexnet").Options(dropout=1.0)
    with pytest.raises(ValidationError):
        MODELS.get("mlp-3x512").Options(dropout=-0.1)
    with pytest.raises(ValidationError):
        MODELS.get("small-inception-nobn").Options(batch_norm=True)
    with pytest.raises(ValidationError):
        MODELS.get("small-alexnet").Options(channels=32)


# --- Table 1 parameter counts ------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_table_1_parameter_counts(name):
    model = build(name, (3, 28, 28), 10)
    assert weight_count(model) == TABLE_1[name]
    assert non_bn_parameter_count(model) == TABLE_1[name]


def test_inception_batch_norm_is_the_only_difference():
    with_bn = build("small-inception", (3, 28, 28), 10)
    option_off = build("small-inception", (3, 28, 28), 10, batch_norm=False)
    nobn = build("small-inception-nobn", (3, 28, 28), 10)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 19
    assert not any(isinstance(m, nn.BatchNorm2d) for m in nobn.modules())
    assert set(nobn.state_dict()) == set(option_off.state_dict())
    assert {k for k in with_bn.state_dict() if ".bn." not in k} == set(nobn.state_dict())
    # BN adds 2 parameters per channel of every conv module; they are not counted.
    bn_params = sum(p.numel() for m in with_bn.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert sum(p.numel() for p in with_bn.parameters()) == TABLE_1["small-inception"] + bn_params
    assert sum(p.numel() for p in nobn.parameters()) == TABLE_1["small-inception-nobn"]


def test_alexnet_structure_and_first_fc_width():
    model = build("small-alexnet", (3, 28, 28), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(7 * 7 * 64, 384), (384, 192), (192, 10)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.out_channels, m.padding) for m in convs] == [((5, 5), 64, (2, 2))] * 2
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    plain = build("small-alexnet", (3, 28, 28), 10, local_response_norm=False)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in plain.modules())
    assert weight_count(plain) == TABLE_1["small-alexnet"]


def test_lrn_matches_tensorflow_formula():
    """tf.nn.lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75):
    x / (bias + alpha · Σ_{|c' − c| ≤ 4} x_{c'}²)^beta."""
    model = build("small-alexnet", (3, 8, 8), 10)
    lrn = next(m for m in model.modules() if isinstance(m, nn.LocalResponseNorm))
    x = torch.randn(2, 64, 5, 5) * 20
    squares = x.pow(2)
    window = torch.stack([squares[:, max(0, c - 4) : c + 5].sum(1) for c in range(64)], dim=1)
    expected = x / (1.0 + (0.001 / 9.0) * window) ** 0.75
    torch.testing.assert_close(lrn(x), expected, rtol=1e-5, atol=1e-6)


# --- shapes -------------------------------------------------------------------------------

IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 28, 28)]


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("input_shape", IMAGE_SHAPES)
def test_forward_shapes_on_images(name, input_shape):
    for num_classes in (2, 10, 7) if input_shape == (1, 8, 8) else (10,):
        model = build(name, input_shape, num_classes).eval()
        with torch.no_grad():
            out = model(torch.randn(2, *input_shape))
        assert out.shape == (2, num_classes)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MLP_MODELS)
@pytest.mark.parametrize("input_shape", [(40,), (1, 40), (3, 28, 28)])
@pytest.mark.parametrize("num_classes", [2, 10, 100])
def test_mlp_adapts_to_any_input(name, input_shape, num_classes):
    model = build(name, input_shape, num_classes)
    assert model(torch.randn(4, *input_shape)).shape == (4, num_classes)


def test_mlp_preset_without_dropout_is_the_mlp_plugin():
    mlp = MODELS.get("mlp")
    preset = build("mlp-3x512", (1, 40), 10)
    reference = mlp.build((1, 40), 10, mlp.Options(hidden=[512, 512, 512]))
    assert {k: v.shape for k, v in preset.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


@pytest.mark.parametrize("name", ["mlp-1x512", "mlp-3x512", "small-alexnet"])
def test_dropout_option(name):
    assert not any(isinstance(m, nn.Dropout) for m in build(name, (3, 12, 12), 10).modules())
    model = build(name, (3, 12, 12), 10, dropout=0.5)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == {"mlp-1x512": 1, "mlp-3x512": 3, "small-alexnet": 2}[name]
    assert all(d.p == 0.5 for d in dropouts)
    assert weight_count(model) == weight_count(build(name, (3, 12, 12), 10))
    x = torch.randn(8, 3, 12, 12)
    model.eval()
    torch.testing.assert_close(model(x), model(x))  # no dropout at eval time


@pytest.mark.parametrize("name", CONV_MODELS)
@pytest.mark.parametrize("input_shape", [(40,), (1, 40), (28, 28), (3, 1, 28, 28)])
def test_conv_models_need_images(name, input_shape):
    with pytest.raises(SpecError) as raised:
        build(name, input_shape, 10)
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        f"model '{name}' needs image inputs (channels, height, width); the dataset gives {tuple(input_shape)}"
    )


def test_conv_model_spec_error_message_for_mnist1d():
    with pytest.raises(SpecError, match=r"^model 'small-alexnet' needs image inputs \(channels, height, width\); "
                       r"the dataset gives \(40,\)$"):
        build("small-alexnet", (40,), 10)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_zero_classes_is_a_spec_error(name):
    with pytest.raises(SpecError, match="at least one class"):
        build(name, (3, 8, 8), 0)


@settings(max_examples=10, deadline=None)
@given(
    name=st.sampled_from(CONV_MODELS),
    channels=st.integers(1, 4),
    height=st.integers(5, 40),
    width=st.integers(5, 40),
    num_classes=st.integers(1, 12),
)
def test_conv_models_build_for_any_image_shape(name, channels, height, width, num_classes):
    model = build(name, (channels, height, width), num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(1, channels, height, width))
    assert out.shape == (1, num_classes)


# --- vmap and training ---------------------------------------------------------------------


def _stacked(name: str, input_shape, num_classes: int, members: int, **options):
    models = []
    for seed in range(members):
        torch.manual_seed(seed)
        models.append(build(name, input_shape, num_classes, **options))
    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)
    return models, base, params, buffers


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if VMAPPABLE[n]])
def test_vmappable_models_vmap_like_a_loop(name):
    input_shape = (3, 6, 6)
    models, base, params, buffers = _stacked(name, input_shape, 5, members=2)
    x = torch.randn(2, 3, *input_shape)
    base.train()
    out = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)))(params, buffers, x)
    expected = torch.stack([m.train()(x[i]) for i, m in enumerate(models)])
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_dropout_needs_vmap_randomness():
    """Dropout is random: vmap refuses it in its default randomness mode, allows it with
    randomness="different" (independent masks per member)."""
    _, base, params, buffers = _stacked("small-alexnet", (3, 10, 10), 5, members=2, dropout=0.5)
    x = torch.randn(2, 4, 3, 10, 10)
    base.train()
    call = lambda p, b, xb: functional_call(base, (p, b), (xb,))  # noqa: E731
    with pytest.raises(RuntimeError, match="randomness"):
        vmap(call)(params, buffers, x)
    assert vmap(call, randomness="different")(params, buffers, x).shape == (2, 4, 5)


TINY_X = torch.randn(16, 3, 12, 12, generator=torch.Generator().manual_seed(0))
TINY_Y = torch.randint(0, 3, (2, 16), generator=torch.Generator().manual_seed(1))


def _fit(name: str, vmappable: bool, **options):
    factory = MODELS.get(name)
    opts = factory.Options(**options)
    # Minibatches of 4 keep the Inception runs cheap on CPU (3 steps, then one evaluation on all 16).
    trainer = EnsembleTrainer(TrainConfig(max_steps=3, lr=0.01, batch_size=4), vmappable=vmappable)
    return trainer.fit(lambda: factory.build((3, 12, 12), 3, opts), TINY_X, TINY_Y, seeds=[0, 1])


@pytest.mark.parametrize("name", ["small-alexnet", "small-inception-nobn", "mlp-3x512"])
def test_vmappable_model_trains_in_ensemble(name):
    outcomes = _fit(name, vmappable=MODELS.get(name).vmappable)
    assert MODELS.get(name).vmappable
    assert [o.status for o in outcomes] == ["budget", "budget"] and all(o.steps == 3 for o in outcomes)
    for o in outcomes:
        assert o.final_state.keys() == o.initial_state.keys()
        assert any(not torch.equal(o.final_state[k], o.initial_state[k]) for k in o.initial_state)
    first = outcomes[0].final_state
    assert any(not torch.equal(first[k], outcomes[1].final_state[k]) for k in first)


def test_batch_norm_inception_trains_through_the_loop_fallback():
    assert MODELS.get("small-inception").vmappable is False
    outcomes = _fit("small-inception", vmappable=False)
    assert [o.status for o in outcomes] == ["budget", "budget"]
    for o in outcomes:
        running = [k for k in o.initial_state if k.endswith("running_mean") or k.endswith("running_var")]
        assert len(running) == 2 * 19
        for key in running:
            assert not torch.equal(o.final_state[key], o.initial_state[key]), key
        tracked = [k for k in o.initial_state if k.endswith("num_batches_tracked")]
        assert len(tracked) == 19 and all(int(o.final_state[k]) == 3 for k in tracked)
        assert torch.isfinite(torch.tensor(o.train_loss))
    a, b = (o.final_state["stem.bn.running_mean"] for o in outcomes)
    assert not torch.equal(a, b)  # each member keeps its own statistics


def test_dropout_model_trains_through_the_loop_fallback():
    outcomes = _fit("small-alexnet", vmappable=False, dropout=0.5)
    assert [o.status for o in outcomes] == ["budget", "budget"]


def test_mlp_dropout_is_an_option_that_keeps_plain_run_ids():
    from genbench.models.mlp import MLPOptions, MultilayerPerceptron

    assert "dropout" not in MLPOptions().model_dump(mode="json")  # runs stored before the option keep their ids
    net = MultilayerPerceptron().build((1, 40), 10, MLPOptions(hidden=[32, 16], dropout=0.25))
    assert [type(m).__name__ for m in net] == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert net[3].p == 0.25
    plain = MultilayerPerceptron().build((1, 40), 10, MLPOptions(hidden=[32, 16]))
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain)
