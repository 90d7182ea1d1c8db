"""Template of a model plugin: a small all-convolutional image network (no batch norm, so it is
vmappable and trains as a stacked ensemble)."""

from __future__ import annotations

DEPENDENCIES = ("genbench", "torch>=2.2", "pydantic>=2.5")

SUMMARY = """\
a small convolutional network for images, `blocks` × (conv 3×3 → activation → 2×2 average
pool), channels doubling from `base_channels`, then a linear layer to the classes. It has no
batch norm, so genbench trains many copies of it at once as a stacked ensemble."""

USAGE = """\
```bash
genbench run --dataset digits --model {{name}} --corruption labels --levels 0,0.5,1
genbench leaderboard
```

In an experiment file: `models = [{ name = "{{name}}", blocks = 3, activation = "gelu" }]`."""

EDIT = """\
`build(input_shape, num_classes, options)` returns the `torch.nn.Module`; raise
`genbench.errors.SpecError` saying why when it cannot adapt to an input shape. Keep `vmappable`
honest: `False` for layers with running statistics (batch norm), which then train one network at
a time. A plain `nn.Sequential` of convolutions, pools, activations, `Flatten` and `Linear`
layers takes genbench's fastest training path."""

MODULE = '''\
"""{{distribution}}: a genbench plugin contributing the model ``{{name}}``.

genbench finds this module through the entry point declared in ``pyproject.toml``::

    [project.entry-points.genbench]
    {{name}} = "{{module}}"

and calls its ``register_models`` hook implementation (at the bottom of this file).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import genbench
from genbench.errors import SpecError
from pydantic import Field
from torch import nn

__version__ = "0.1.0"

__all__ = ["{{class}}", "{{class}}Options", "register_models"]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class {{class}}Options(genbench.Options):
    """Options of ``{{name}}`` (pydantic; an unknown option is an error)."""

    blocks: int = Field(2, ge=1, le=6, description="convolutional blocks; block i has base_channels · 2^i channels")
    base_channels: int = Field(16, ge=1, description="output channels of the first block")
    activation: Literal["relu", "gelu", "tanh"] = Field("relu", description="the nonlinearity after each convolution")


class {{class}}:
    """Per block i (0 ≤ i < blocks): conv 3×3 with 'same' padding to base_channels · 2^i
    channels → activation → 2×2 average pool (while the map is at least 2×2); then flatten →
    linear to the classes. Images only: inputs of shape (channels, height, width)."""

    name: ClassVar[str] = "{{name}}"
    description: ClassVar[str] = "small all-conv net: (conv3x3 → activation → avgpool2) per block, linear head"
    Options: ClassVar[type[genbench.Options]] = {{class}}Options
    #: no batch norm or other running statistics: members of an ensemble train under torch.func.vmap
    vmappable: ClassVar[bool] = True

    def build(self, input_shape: tuple[int, ...], num_classes: int, options: {{class}}Options) -> nn.Module:
        if len(input_shape) != 3:
            raise SpecError(
                f"model '{{name}}' needs images of shape (channels, height, width); the dataset gives {input_shape}"
            )
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for block in range(options.blocks):
            out_channels = options.base_channels * 2**block
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), ACTIVATIONS[options.activation]()]
            if min(height, width) >= 2:
                layers.append(nn.AvgPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        layers += [nn.Flatten(), nn.Linear(in_channels * height * width, num_classes)]
        return nn.Sequential(*layers)


@genbench.hookimpl
def register_models(register) -> None:
    register({{class}}())
'''

TEST = '''\
"""genbench's conformance kit on the model ``{{name}}``, and its shapes by hand.

Run with ``pytest`` from the plugin's folder.
"""

import pytest
import torch
from genbench.errors import SpecError
from genbench.testing import check_model

from {{module}} import {{class}}


def test_{{identifier}}_keeps_the_model_contract():
    check_model({{class}}())
    check_model({{class}}(), num_classes=3, input_shapes=((3, 5, 7), (2, 1, 1)))


def test_{{identifier}}_has_the_layers_its_options_say():
    model = {{class}}().build((1, 8, 8), 10, {{class}}.Options())
    # conv 1→16 (16·9 + 16), conv 16→32 (32·16·9 + 32); 8×8 pooled twice to 2×2; linear 32·2·2 → 10
    assert sum(p.numel() for p in model.parameters()) == 160 + 4640 + 1290
    deeper = {{class}}().build((3, 28, 28), 4, {{class}}.Options(blocks=3, base_channels=8, activation="tanh"))
    assert [m.out_channels for m in deeper if isinstance(m, torch.nn.Conv2d)] == [8, 16, 32]
    assert sum(isinstance(m, torch.nn.Tanh) for m in deeper) == 3
    assert deeper(torch.randn(5, 3, 28, 28)).shape == (5, 4)


def test_{{identifier}}_refuses_inputs_that_are_not_images():
    with pytest.raises(SpecError, match="channels, height, width"):
        {{class}}().build((40,), 10, {{class}}.Options())


def test_{{identifier}}_rejects_an_unknown_option():
    with pytest.raises(ValueError):
        {{class}}.Options(depth=3)
'''
