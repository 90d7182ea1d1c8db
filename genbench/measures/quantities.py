"""Quantities several measure families share, computed once per run through the run's cache.

Measure families import the measure contract (``base``), the tensor helpers (``weights``,
``perturb``) and this module — never each other, the trainer or the engine. What is cached
lives in ``ctx.cache``, which the evaluate stage shares between the measures of one run (and
drops with the run): training margins, folded weights and their changes from initialization.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterator

import torch
from torch import nn

from genbench.errors import MeasureError
from genbench.inference import predict
from genbench.measures.base import MeasureContext, one_intra_op_thread
from genbench.measures.weights import layer_weights

#: Training examples per forward/backward pass (the gradient is summed over chunks).
CHUNK = 2048


def cached_on_one_thread(ctx: MeasureContext, key: str, compute: Callable[[], Any]) -> Any:
    """``ctx.cached(key, compute)``, computed on one intra-op thread (small tensor work)."""

    def on_one_thread() -> Any:
        with one_intra_op_thread():
            return compute()

    return ctx.cached(key, on_one_thread)


# ---------------------------------------------------------------------------
# Margins
# ---------------------------------------------------------------------------


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logit_y − max_{j≠y} logit_j for each example."""
    correct = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.clone()
    others.scatter_(1, labels[:, None], -math.inf)
    return correct - others.max(dim=1).values


def training_margins(ctx: MeasureContext) -> torch.Tensor:
    """logit_y − max_{j≠y} logit_j of every training example (float64, on the CPU), y the label
    the model was trained on; one forward pass over the training set per run."""

    def compute() -> torch.Tensor:
        logits = predict(ctx.model, ctx.train_inputs, ctx.device).double()
        return margins(logits, ctx.train_labels.cpu())

    return ctx.cached("margins", compute)


def training_margin(ctx: MeasureContext, percentile: float) -> float:
    """γ: the ``percentile``-th percentile over the training set of logit_y − max_{j≠y} logit_j
    (y = the label the model was trained on; linear interpolation, numpy's default); NaN for a
    diverged model."""
    return torch.quantile(training_margins(ctx), percentile / 100).item()


# ---------------------------------------------------------------------------
# Folded weights
# ---------------------------------------------------------------------------


def folded_weights(ctx: MeasureContext) -> list[torch.Tensor]:
    """W_1 … W_d of the final network after batch-norm folding (float64); a MeasureError
    for a model without linear or convolutional layers (e.g. a kernel machine)."""

    def compute() -> list[torch.Tensor]:
        weights = layer_weights(ctx.model)
        if not weights:
            raise MeasureError(f"{type(ctx.model).__name__} has no linear or convolutional layer to take norms of")
        return weights

    return cached_on_one_thread(ctx, "norms:weights", compute)


def folded_initial_weights(ctx: MeasureContext) -> list[torch.Tensor]:
    """W⁰_1 … W⁰_d of the initial network after batch-norm folding (float64), on ``ctx.device``.

    Reads ``ctx.initial_model`` before the run's cache, so that a measure that did not declare
    ``init_weights`` fails here even when another measure of the run has cached the weights."""
    ctx.initial_model.training  # noqa: B018 - an undeclared stand-in raises on any use

    def compute() -> list[torch.Tensor]:
        initial = [w.to(ctx.device) for w in layer_weights(ctx.initial_model)]
        final = folded_weights(ctx)
        if len(initial) != len(final) or any(a.shape != b.shape for a, b in zip(initial, final)):
            raise MeasureError("the initial and final networks do not have the same weight layers")
        return initial

    return cached_on_one_thread(ctx, "norms:initial-weights", compute)


def weight_changes(ctx: MeasureContext) -> list[torch.Tensor]:
    """W_i − W⁰_i for every layer (needs ``init_weights``, like ``folded_initial_weights``)."""
    ctx.initial_model.training  # noqa: B018 - an undeclared stand-in raises on any use
    return cached_on_one_thread(
        ctx, "norms:changes", lambda: [w - w0 for w, w0 in zip(folded_weights(ctx), folded_initial_weights(ctx))]
    )


def all_finite(weights: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(w).all()) for w in weights)


# ---------------------------------------------------------------------------
# Training subsets and evaluation copies
# ---------------------------------------------------------------------------


def has_nonfinite_parameters(model: nn.Module) -> bool:
    """True when any parameter or buffer of ``model`` is NaN or ±∞ (a diverged run)."""
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    return any(not bool(torch.isfinite(t).all()) for t in tensors)


def chunks(inputs: torch.Tensor, labels: torch.Tensor, size: int = CHUNK) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) in consecutive pieces of at most ``size`` examples."""
    for start in range(0, len(inputs), size):
        yield inputs[start : start + size], labels[start : start + size]


def seeded_subset(ctx: MeasureContext, max_examples: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set, or a random subset of ``max_examples`` of it drawn with ``ctx.generator``."""
    n = ctx.num_train
    if max_examples is None or max_examples >= n:
        return ctx.train_inputs.to(ctx.device), ctx.train_labels.to(ctx.device)
    order = torch.randperm(n, generator=ctx.generator)[:max_examples].to(ctx.train_inputs.device)
    return ctx.train_inputs[order].to(ctx.device), ctx.train_labels[order].to(ctx.device)


def evaluation_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``model`` in eval mode (batch norm uses its running statistics) whose parameters
    all require gradients, so the original is never modified."""
    clone = copy.deepcopy(model).to(device).eval()
    for parameter in clone.parameters():
        parameter.requires_grad_(True)
    return clone
