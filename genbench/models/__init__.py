"""Model architectures. A model plugin provides ``name``, ``description``, an
``Options`` model, ``vmappable`` (whether members of an ensemble can be trained
with ``torch.func.vmap``; False for batch norm with running statistics) and
``build(input_shape, num_classes, options) -> torch.nn.Module`` that raises
:class:`genbench.errors.SpecError` when it cannot adapt to the input.

A model fitted in closed form instead sets ``closed_form = True`` and provides
``fit(x_train, y_train, num_classes, options, seed) -> (module, diagnostics)``,
``initial(fitted) -> module`` (the state saved as the run's initial checkpoint) and
``from_state(state, input_shape, num_classes, options) -> module``; it goes through
the same run, store and measure path as trained models, with zero steps."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from genbench.hookspecs import hookimpl
from genbench.models.cnn import SmallConvNet
from genbench.models.interpolation import FiniteSampleInterpolation
from genbench.models.kernel import KernelInterpolation
from genbench.models.mlp import MultilayerPerceptron
from genbench.models.zhang import MLP1x512, MLP3x512, SmallAlexNet, SmallInception, SmallInceptionNoBN
from genbench.schemas import Options


class ModelFactory(Protocol):
    name: str
    description: str
    Options: type[Options]
    vmappable: bool

    def build(self, input_shape: tuple[int, ...], num_classes: int, options: Options) -> nn.Module: ...


@hookimpl
def register_models(register) -> None:
    register(MultilayerPerceptron())
    register(SmallConvNet())
    # Zhang et al. 2017's CIFAR-10 architectures (Table 1)
    register(MLP1x512())
    register(MLP3x512())
    register(SmallAlexNet())
    register(SmallInception())
    register(SmallInceptionNoBN())
    # fitted in closed form (Zhang et al. 2017, §4 and §5)
    register(FiniteSampleInterpolation())
    register(KernelInterpolation())
