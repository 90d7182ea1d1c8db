"""Multilayer perceptron with ReLU (Zhang et al. 2017's MLP 1x512 by default)."""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field, field_validator
from torch import nn

from genbench.schemas import Options


class MLPOptions(Options):
    hidden: list[int] = Field(default_factory=lambda: [512], description="widths of the hidden layers")
    # Left out of the serialized options at its default, so runs stored before it existed keep their run ids.
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="dropout probability after every hidden layer (0 = no dropout layer)",
        exclude_if=lambda value: value == 0.0,
    )

    @field_validator("hidden")
    @classmethod
    def _positive(cls, widths: list[int]) -> list[int]:
        if any(w <= 0 for w in widths):
            raise ValueError(f"hidden widths must be positive, got {widths}")
        return widths


class MultilayerPerceptron:
    """Flatten → [Linear → ReLU (→ Dropout)] per hidden width → Linear to the classes."""

    name: ClassVar[str] = "mlp"
    description: ClassVar[str] = "multilayer perceptron, ReLU; hidden widths configurable (default 1x512)"
    Options = MLPOptions
    vmappable: ClassVar[bool] = True

    def build(self, input_shape: tuple[int, ...], num_classes: int, options: MLPOptions) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in options.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if options.dropout > 0:
                layers.append(nn.Dropout(options.dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        return nn.Sequential(*layers)
