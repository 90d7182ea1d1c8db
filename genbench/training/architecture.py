"""What every trainer holds: one architecture on one input shape and class count, a recipe, a device."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genbench.schemas import TrainConfig


class ArchitectureTrainer:
    """Base of the trainers behind ``trainer_for``: the model ``factory`` with its validated
    ``options``, built for inputs of ``input_shape`` with ``num_classes`` outputs, trained with the
    recipe ``config`` on ``device``."""

    def __init__(
        self,
        factory: Any,
        options: Any,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: TrainConfig,
        device: torch.device | str = "cpu",
    ) -> None:
        self.factory, self.options = factory, options
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.config, self.device = config, torch.device(device)

    def build(self) -> nn.Module:
        """A fresh (untrained) network of the architecture."""
        return self.factory.build(self.input_shape, self.num_classes, self.options)
