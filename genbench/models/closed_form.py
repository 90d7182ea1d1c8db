"""What the models fitted in closed form (interpolation, kernel) share."""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
from torch import nn

from genbench.errors import DataError, SpecError


class ClosedFormModel:
    """Base of a model factory fitted in closed form: no untrained form, no ensemble."""

    name: ClassVar[str]
    vmappable: ClassVar[bool] = False
    closed_form: ClassVar[bool] = True
    #: the parameter that the fit solves for; zero in the 'before fitting' state
    solved_parameter: ClassVar[str]

    def initial(self, fitted: nn.Module) -> nn.Module:
        """The fitted module with its solved parameter zeroed: the run's initial checkpoint."""
        module = copy.deepcopy(fitted)
        with torch.no_grad():
            module.get_parameter(self.solved_parameter).zero_()
        return module.eval()

    def check_saved_shape(
        self, num_features: int, saved_classes: int, input_shape: tuple[int, ...], num_classes: int
    ) -> None:
        """A saved state must fit the run's input size and class count."""
        if num_features != math.prod(input_shape) or saved_classes != num_classes:
            raise SpecError(
                f"saved {self.name} model has {num_features} inputs and {saved_classes} classes; "
                f"expected {math.prod(input_shape)} inputs and {num_classes} classes"
            )

    def build(self, input_shape: tuple[int, ...], num_classes: int, options: object) -> nn.Module:
        raise SpecError(f"{self.name} is fitted in closed form; it has no untrained form")

    def training_matrix(
        self, x_train: torch.Tensor, y_train: torch.Tensor, num_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs flattened to an [n, d] float64 matrix and the labels, checked."""
        points = x_train.detach().cpu().reshape(x_train.shape[0], -1).to(torch.float64)
        labels = y_train.detach().cpu().to(torch.int64)
        check_labels(self.name, labels, points.shape[0], num_classes)
        return points, labels


def check_labels(name: str, labels: torch.Tensor, n: int, num_classes: int) -> None:
    if n == 0:
        raise DataError(f"{name} needs at least one training point")
    if labels.shape != (n,):
        raise DataError(f"{name} needs one label per training point; got labels of shape {tuple(labels.shape)}")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise DataError(f"{name} needs labels in [0, {num_classes}); got [{int(labels.min())}, {int(labels.max())}]")
