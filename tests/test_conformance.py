"""genbench.testing: the conformance suite passes good components and names what breaks bad ones."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import genbench
from genbench.errors import SpecError
from genbench.measures import builtin_measures
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


class Good:
    """Sum of the weights' absolute values.

    Σ_W Σ_ij |W_ij| over every parameter (a test measure)."""

    name = "good-measure"
    kind = "complexity"
    version = "1"
    requires: frozenset[str] = frozenset()
    Options = genbench.Options

    def compute(self, ctx, options):
        return sum(p.detach().abs().sum().item() for p in ctx.model.parameters())


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


@pytest.mark.parametrize(
    ("measure", "message"),
    [
        (broken(name="Bad Name"), "name must be lower-case words"),
        (broken(kind="bigger-is-better"), "kind must be one of"),
        (broken(version=1), "version must be a non-empty string"),
        (broken(requires=frozenset({"test_data"})), "requires must be a set within"),
        (broken(Options=NoDefault), "every option needs a default"),
        (broken(__doc__="Short."), "needs a docstring"),
        (broken(compute=lambda self, ctx, options: float("nan")), "gave nan"),
        (broken(compute=lambda self, ctx, options: torch.tensor(1.0)), "returned a tensor"),
        (broken(compute=lambda self, ctx, options: "1.0"), "must return a float or an Estimate, got str"),
        (broken(kind="capability", compute=lambda self, ctx, options: 1.5), "outside [0, 1]"),
        (broken(compute=lambda self, ctx, options: 1 / 0), "compute raised ZeroDivisionError"),
        (broken(compute=mutating), "changed model."),
        (broken(compute=lambda self, ctx, options: ctx.model.train() and 1.0), "train/eval mode"),
        (broken(compute=noisy), "on a fresh context; draw randomness from ctx.generator"),
        (broken(compute=retraining), "reads ctx.retrainer without declaring 'retrain'"),
        (broken(compute=lambda self, ctx, options: ctx.initial_model.training + 1.0), "without declaring 'init_weights'"),
        (broken(compute=lambda self, ctx, options: float(ctx.training_log.steps)), "without declaring 'training_log'"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_broken_rule_is_named(measure, message):
    check_measure(Good())  # the unbroken measure passes, as an instance or as a class
    check_measure(Good)
    with pytest.raises(ConformanceError, match=re.escape(message)) as raised:
        check_measure(measure)
    assert len(str(raised.value).splitlines()) == 1


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
        raise ValueError("shape")


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
    with pytest.raises(ConformanceError, match="raise genbench.errors.SpecError saying why"):
        check_model(UnexplainedFailure())
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
