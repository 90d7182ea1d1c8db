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
    at least 2×2); then flatten → Linear to the classes. No batch norm. On 1-D inputs
    (channels, length), such as MNIST-1D, the same with Conv1d and 2-wide pooling."""

    name: ClassVar[str] = "cnn"
    description: ClassVar[str] = "small conv net: (conv3x3 → ReLU → maxpool2) per block, linear head (default 32, 64); 1-D or 2-D inputs"
    Options = CNNOptions
    vmappable: ClassVar[bool] = True

    def build(self, input_shape: tuple[int, ...], num_classes: int, options: CNNOptions) -> nn.Module:
        if len(input_shape) not in (2, 3):
            raise SpecError(
                "model 'cnn' needs inputs of shape (channels, length) or (channels, height, width); "
                f"the dataset gives {input_shape}"
            )
        if options.kernel_size % 2 == 0:
            raise SpecError(f"model 'cnn' needs an odd kernel_size for 'same' padding, got {options.kernel_size}")
        one_dimensional = len(input_shape) == 2
        conv, pool = (nn.Conv1d, nn.MaxPool1d) if one_dimensional else (nn.Conv2d, nn.MaxPool2d)
        in_channels, *spatial = input_shape
        layers: list[nn.Module] = []
        for out_channels in options.channels:
            layers += [conv(in_channels, out_channels, options.kernel_size, padding=options.kernel_size // 2), nn.ReLU()]
            if min(spatial) >= 2:
                layers.append(pool(2))
                spatial = [size // 2 for size in spatial]
            in_channels = out_channels
        features = in_channels
        for size in spatial:
            features *= size
        layers += [nn.Flatten(), nn.Linear(features, num_classes)]
        return nn.Sequential(*layers)
