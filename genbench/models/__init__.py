"""Model architectures. A model plugin provides ``name``, ``description``, an
``Options`` model, ``vmappable`` (whether members of an ensemble can be trained
with ``torch.func.vmap``; False for batch norm with running statistics) and
``build(input_shape, num_classes, options) -> torch.nn.Module`` that raises
:class:`genbench.errors.SpecError` when it cannot adapt to the input."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from genbench.hookspecs import hookimpl
from genbench.models.cnn import SmallConvNet
from genbench.models.mlp import MultilayerPerceptron
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
