"""Closed-form fitting (the 2n+d construction, kernel interpolation) behind the trainers' ``fit()``.

A model factory with ``closed_form = True`` solves for its weights directly. This trainer gives it
the same interface as the ensemble trainer, so that the train stage, retraining and the store treat
it like any trained model: each member is fitted on its own labels (and training subset), with zero
optimizer steps; its status is "converged" when the fit reaches the recipe's target training
accuracy and "budget" otherwise; the initial state is the fitted module with its solved parameter
zeroed; the factory's diagnostics (residual, RKHS norm, …) come with the outcome.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from genbench.inference import accuracy_and_loss, predict
from genbench.training.architecture import ArchitectureTrainer
from genbench.training.ensemble import MemberOutcome


class ClosedFormTrainer(ArchitectureTrainer):
    """Fits a closed-form model factory member by member (see the module docstring)."""

    #: closed-form fits do not share an ensemble: any number of members "fit"
    memory_bound = False
    #: a fit takes no optimizer steps
    takes_steps = False

    def fit(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        seeds: list[int],
        train_indices: torch.Tensor | None = None,
        per_member_inputs: bool = False,
        on_member_done: Callable[[MemberOutcome], None] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> list[MemberOutcome]:
        outcomes = []
        for index, seed in enumerate(seeds):
            started = time.perf_counter()
            x = inputs[index] if per_member_inputs else inputs
            y = labels[index]
            if train_indices is not None:
                rows = train_indices[index].cpu()
                x, y = x[rows], y[rows]
            fitted, diagnostics = self.factory.fit(x, y, self.num_classes, self.options, int(seed))
            initial = self.factory.initial(fitted)
            accuracy, loss = accuracy_and_loss(predict(fitted, x, self.device), y.cpu())
            fitted_all = accuracy >= self.config.target_accuracy
            outcome = MemberOutcome(
                index=index,
                status="converged" if fitted_all else "budget",
                steps=0,
                epochs=0.0,
                steps_to_fit=0 if fitted_all else None,
                train_accuracy=accuracy,
                train_loss=loss,
                loss_curve=[],
                initial_state=dict(initial.state_dict()),
                final_state=dict(fitted.state_dict()),
                wall_time=time.perf_counter() - started,
                diagnostics={k: float(v) for k, v in diagnostics.items()},
            )
            outcomes.append(outcome)
            if on_member_done is not None:
                on_member_done(outcome)
        return outcomes

    def restore(self, state: dict[str, torch.Tensor]) -> nn.Module:
        """The fitted module of a saved state."""
        return self.factory.from_state(state, self.input_shape, self.num_classes, self.options)
