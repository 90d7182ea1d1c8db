"""genbench.testing: the conformance suite passes good components and names what breaks bad ones."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from measure_helpers import Good
from pydantic import Field
from torch import nn

import genbench
from genbench.errors import SpecError
from genbench.measures import builtin_measures
from genbench.measures.base import Estimate
from genbench.plugins import get_plugins
from genbench.testing import ConformanceError, check_measure, check_model

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "genbench-param-norm"
BUILTIN = {m.name: m for m in builtin_measures()}


def test_the_example_plugin_passes_and_its_values_are_its_formula(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN))
    from genbench_param_norm import ParamNorm

    values = check_measure(ParamNorm())
    squared = check_measure(ParamNorm(), ParamNorm.Options(squared=True))
    assert set(values) == {"mlp", "cnn"}
    for architecture in values:
        assert values[architecture] == pytest.approx(squared[architecture] ** 0.5, rel=1e-9)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_measure_passes(name):
    values = check_measure(BUILTIN[name]())
    assert set(values) == {"mlp", "cnn"}



def broken(**changes):
    """A subclass of Good with ``changes`` as class attributes (methods included)."""
    return type("Broken", (Good,), {"__doc__": Good.__doc__, **changes})()


def noisy(self, ctx, options):
    return torch.rand(()).item()  # the global generator, not ctx.generator


def mutating(self, ctx, options):
    with torch.no_grad():
        next(ctx.model.parameters()).mul_(2.0)
    return 1.0


def retraining(self, ctx, options):
    ctx.retrainer.fit(ctx.train_labels)
    return 1.0


class NoDefault(genbench.Options):
    width: int


class Aliased(genbench.Options):
    width: int = Field(3, validation_alias="w")


def mutating_data(self, ctx, options):
    ctx.train_labels.zero_()
    return 1.0


def replacing(self, ctx, options):
    ctx.model = nn.Linear(2, 2)
    return 1.0


def swallowing(self, ctx, options):
    try:
        return float(sum(p.sum() for p in ctx.initial_model.parameters()))
    except Exception:  # a measure that falls back when the initial weights are missing
        return 1.0


@pytest.mark.parametrize(
    ("measure", "message"),
    [
        (broken(name="Bad Name"), "name must be lower-case letters and digits"),
        (broken(kind="bigger-is-better"), "kind must be one of"),
        (broken(version=1), "version must be a non-empty string"),
        (broken(requires=frozenset({"test_data"})), "requires must be a set within"),
        (broken(Options=NoDefault), "every option needs a default; width has none"),
        (broken(Options=Aliased), "do not survive a JSON round trip"),
        (broken(__doc__="Short."), "needs a docstring"),
        (broken(compute=lambda self, ctx, options: float("nan")), "gave nan"),
        (broken(compute=lambda self, ctx, options: torch.tensor(1.0)), "returned a tensor"),
        (broken(compute=lambda self, ctx, options: "1.0"), "must return a float or an Estimate, got str"),
        (broken(kind="capability", compute=lambda self, ctx, options: 1.5), "outside [0, 1]"),
        (broken(compute=lambda self, ctx, options: 1 / 0), "compute raised ZeroDivisionError"),
        (broken(compute=mutating), "changed model."),
        (broken(compute=mutating_data), "changed ctx.train_labels; work on a copy"),
        (broken(compute=replacing), "replaced ctx.model with another network"),
        (broken(compute=swallowing), "reads ctx.initial_model without declaring 'init_weights'"),
        (broken(compute=lambda self, ctx, options: Estimate(1.0, {"xs": [1, 2]})), "Estimate.details must map"),
        (broken(compute=lambda self, ctx, options: ctx.model[1].train() and 1.0), "left a module of the model"),
        (broken(compute=lambda self, ctx, options: ctx.model.train() and 1.0), "train/eval mode"),
        (broken(compute=noisy), "on a fresh context; draw randomness from ctx.generator"),
        (broken(compute=retraining), "reads ctx.retrainer without declaring 'retrain'"),
        (broken(compute=lambda self, ctx, options: ctx.initial_model.training + 1.0), "without declaring 'init_weights'"),
        (broken(compute=lambda self, ctx, options: float(ctx.training_log.steps)), "without declaring 'training_log'"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_broken_rule_is_named(measure, message):
    reference = check_measure(Good())  # the unbroken measure passes, as an instance or as a class
    check_measure(Good)
    with pytest.raises(ConformanceError, match=re.escape(message)) as raised:
        check_measure(measure)
    assert len(str(raised.value).splitlines()) == 1
    assert check_measure(Good()) == reference  # a broken measure spoils nothing for the next one


def test_copying_the_context_and_choosing_architectures_and_options():
    def copies(self, ctx, options):
        return sum(p.detach().abs().sum().item() for p in copy.deepcopy(ctx).model.parameters())

    assert check_measure(broken(compute=copies)) == pytest.approx(check_measure(Good()), rel=1e-12)
    conv_only = broken(compute=lambda self, ctx, options: float(len(ctx.model[0].weight.shape)))
    assert check_measure(conv_only, architectures=("cnn",)) == {"cnn": 4.0}
    with pytest.raises(ConformanceError, match="on the mlp check run: compute raised AttributeError"):
        check_measure(conv_only)  # the MLP's first module is a Flatten
    param_norm = BUILTIN["param-norm"]()
    assert check_measure(param_norm, {"normalize_by_m": True}) == check_measure(
        param_norm, param_norm.Options(normalize_by_m=True)
    )
    with pytest.raises(ConformanceError, match="the options given are not valid"):
        check_measure(param_norm, {"no_such_option": 1})


@pytest.mark.parametrize("name", get_plugins().registry("models").names())
def test_every_registered_model_passes(name):
    check_model(get_plugins().registry("models").get(name))


class SmallNet:
    name = "small-net"
    description = "a linear layer on the flattened input"
    Options = genbench.Options
    vmappable = True

    def build(self, input_shape, num_classes, options):
        if len(input_shape) != 3:
            raise SpecError(f"small-net needs (channels, height, width) inputs, got {input_shape}")
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))


class WrongWidth(SmallNet):
    def build(self, input_shape, num_classes, options):
        return super().build(input_shape, num_classes + 1, options)


class UnexplainedFailure(SmallNet):
    def build(self, input_shape, num_classes, options):
        raise ValueError("shape\nsecond line\nthird line")


class FailsToRun(SmallNet):
    def build(self, input_shape, num_classes, options):
        return nn.Sequential(nn.Conv2d(input_shape[0], 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))


class ItemInTraining(nn.Module):
    """Trains alone, but its train-mode forward calls .item(), which vmap cannot batch."""

    def __init__(self, features, num_classes):
        super().__init__()
        self.linear = nn.Linear(features, num_classes)

    def forward(self, x):
        out = self.linear(x.flatten(1))
        return out / out.abs().max().item() if self.training else out


class VmapFailsInTraining(SmallNet):
    def build(self, input_shape, num_classes, options):
        return ItemInTraining(int(torch.tensor(input_shape).prod()), num_classes)


class NoDefaultModelOptions(genbench.Options):
    width: int


class CountsCalls(nn.Module):
    """Not vmappable: a Python side effect (an in-place buffer update) in forward."""

    def __init__(self, features, num_classes):
        super().__init__()
        self.linear = nn.Linear(features, num_classes)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return self.linear(x.flatten(1)) + self.calls.item()


class FalselyVmappable(SmallNet):
    def build(self, input_shape, num_classes, options):
        return CountsCalls(int(torch.tensor(input_shape).prod()), num_classes)


def test_models_pass_or_fail_with_the_broken_rule():
    check_model(SmallNet())  # builds for 3-D inputs only, says why for the others
    with pytest.raises(ConformanceError, match=re.escape("must have shape (3, 10), got (3, 11)")):
        check_model(WrongWidth())
    with pytest.raises(ConformanceError, match="raise genbench.errors.SpecError saying why") as raised:
        check_model(UnexplainedFailure())
    assert len(str(raised.value).splitlines()) == 1
    with pytest.raises(ConformanceError, match="fails on a batch of 3"):
        check_model(FailsToRun(), input_shapes=((1, 40),))  # a Conv2d on (channels, length) inputs
    with pytest.raises(ConformanceError, match="the trainer's vmap fails"):
        check_model(VmapFailsInTraining())
    with pytest.raises(ConformanceError, match="width has none"):
        check_model(type("NeedsWidth", (SmallNet,), {"Options": NoDefaultModelOptions})())
    with pytest.raises(ConformanceError, match="builds for none of the input shapes"):
        check_model(SmallNet(), input_shapes=((40,),))
    with pytest.raises(ConformanceError, match="declares vmappable but"):
        check_model(FalselyVmappable())
    not_vmappable = copy.copy(FalselyVmappable())
    not_vmappable.vmappable = False
    check_model(not_vmappable)
    with pytest.raises(ConformanceError, match="must say whether it is vmappable"):
        check_model(type("NoFlag", (SmallNet,), {"vmappable": None})())


def test_the_measure_in_contributing_md_passes():
    text = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    source = re.search(r"```python\n(# genbench_my_measure/__init__.py\n.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(source, "CONTRIBUTING.md", "exec"), namespace)
    measure = namespace["SumOfSquaredWeights"]()
    squared = check_measure(measure)
    norm = check_measure(measure, measure.Options(squared=False))
    for architecture, value in squared.items():
        assert norm[architecture] == pytest.approx(value**0.5, rel=1e-9)


def test_the_retraining_measure_in_contributing_md_passes_alone_and_batched(tmp_path):
    text = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    source = re.search(r"```python\n(# genbench_shuffled_fit/__init__.py\n.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(source, "CONTRIBUTING.md", "exec"), namespace)
    measure = namespace["ShuffledLabelFit"]()
    values = check_measure(measure, architectures=("mlp",))
    assert 0.0 <= values["mlp"] <= 1.0
    # through the evaluate stage: the jobs of both runs of the group train as one ensemble
    import genbench
    from genbench.engine import Engine, resolve_runs
    from genbench.schemas import ComponentRef, ExperimentSpec, TrainConfig

    spec = ExperimentSpec(
        datasets=[ComponentRef(name="digits", options={"subset": 100})],
        models=[ComponentRef(name="mlp", options={"hidden": [16]})],
        levels=[0.0, 1.0],
        seeds=[0],
        train=TrainConfig(lr=0.1, schedule="constant", max_steps=400),
    )
    store = genbench.open_store(tmp_path / "store")
    engine = Engine(store, device="cpu")
    engine.train(resolve_runs(spec))
    batched = {v.run_id: v for v in engine.evaluate([(measure, measure.Options())])}
    assert {v.status for v in batched.values()} == {"ok"}
    for run, result in store.iter_runs():
        alone = measure.compute(engine.context(run, result, measure), measure.Options())
        assert alone == pytest.approx(batched[run.run_id].value, abs=1e-12)
