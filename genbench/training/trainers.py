"""One interface for every way a model is trained: ``trainer_for`` picks the trainer of an architecture.

Both trainers take ``fit(inputs, labels, seeds, train_indices=None, per_member_inputs=False,
on_member_done=None, on_step=None) -> [MemberOutcome]`` and ``restore(state) -> nn.Module``, so the
stages never ask which kind of model they hold: gradient-trained networks train as stacked
ensembles (``EnsembleTrainer``), closed-form models are fitted one member at a time
(``ClosedFormTrainer``).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch import nn

from genbench.schemas import TrainConfig
from genbench.training.architecture import ArchitectureTrainer
from genbench.training.closed_form import ClosedFormTrainer
from genbench.training.ensemble import EnsembleTrainer, MemberOutcome


class Trainer(Protocol):
    #: whether members share an ensemble (their number is bounded by the memory budget)
    memory_bound: bool
    #: whether training takes optimizer steps (a training record with a loss curve)
    takes_steps: bool

    def fit(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        seeds: list[int],
        train_indices: torch.Tensor | None = None,
        per_member_inputs: bool = False,
        on_member_done: Callable[[MemberOutcome], None] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> list[MemberOutcome]: ...

    def restore(self, state: dict[str, torch.Tensor]) -> nn.Module: ...

    def build(self) -> nn.Module: ...


class GradientTrainer(ArchitectureTrainer):
    """An architecture trained by SGD as stacked ensembles (``EnsembleTrainer``)."""

    #: members share an ensemble, so their number is bounded by the memory budget
    memory_bound = True
    takes_steps = True

    def __init__(self, factory: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(factory, *args, **kwargs)
        self.ensemble = EnsembleTrainer(self.config, self.device, factory.vmappable)

    def fit(self, inputs, labels, seeds, train_indices=None, per_member_inputs=False, on_member_done=None, on_step=None):
        return self.ensemble.fit(
            self.build, inputs, labels, seeds, train_indices=train_indices,
            per_member_inputs=per_member_inputs, on_member_done=on_member_done, on_step=on_step,
        )

    def restore(self, state: dict[str, torch.Tensor]) -> nn.Module:
        model = self.build()
        model.load_state_dict(state)
        return model


def trainer_for(
    factory: Any,
    options: Any,
    input_shape: tuple[int, ...],
    num_classes: int,
    config: TrainConfig,
    device: torch.device | str = "cpu",
) -> Trainer:
    """The trainer of the model ``factory`` (with its validated ``options``) on inputs of
    ``input_shape`` with ``num_classes`` outputs, under the recipe ``config``."""
    kind = ClosedFormTrainer if getattr(factory, "closed_form", False) else GradientTrainer
    return kind(factory, options, input_shape, num_classes, config, device)
