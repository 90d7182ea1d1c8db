"""A small convolutional network for small images (digits' 8×8, MNIST's 28×28)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator
from torch import nn

from genbench.errors import SpecError
from genbench.schemas import Options


class CNNOptions(Options):
    channels: list[int] = Field(default_factory=lambda: [32, 64], description="output channels of each conv block")
    kernel_size: int = Field(3, gt=0, description="square kernel size, 'same' padding (odd sizes)")

    @field_validator("channels")
    @classmethod
    def _positive(cls, channels: list[int]) -> list[int]:
        if not channels or any(c <= 0 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        return channels


class SmallConvNet:
    """Per block: conv k×k ('same' padding) → ReLU → 2×2 max-pool (while the map is
    at least 2×2); then flatten → Linear to the classes. No batch norm."""

    name: ClassVar[str] = "cnn"
    description: ClassVar[str] = "small conv net: [conv3x3 → ReLU → maxpool2] per block, linear head (default 32, 64)"
    Options = CNNOptions
    vmappable: ClassVar[bool] = True

    def build(self, input_shape: tuple[int, ...], num_classes: int, options: CNNOptions) -> nn.Module:
        if len(input_shape) != 3:
            raise SpecError(
                f"model 'cnn' needs image inputs of shape (channels, height, width); the dataset gives {input_shape}"
            )
        if options.kernel_size % 2 == 0:
            raise SpecError(f"model 'cnn' needs an odd kernel_size for 'same' padding, got {options.kernel_size}")
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for out_channels in options.channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, options.kernel_size, padding=options.kernel_size // 2),
                nn.ReLU(),
            ]
            if height >= 2 and width >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        layers += [nn.Flatten(), nn.Linear(in_channels * height * width, num_classes)]
        return nn.Sequential(*layers)
