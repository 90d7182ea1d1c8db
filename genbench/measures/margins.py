"""Output-margin measures."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field

from genbench.measures.base import BaseMeasure, MeasureContext
from genbench.schemas import Options
from genbench.training import predict


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logit_y − max_{j≠y} logit_j for each example."""
    correct = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.clone()
    others.scatter_(1, labels[:, None], -math.inf)
    return correct - others.max(dim=1).values


def training_margin(ctx: MeasureContext, percentile: float = 10.0) -> float:
    """γ: the ``percentile``-th percentile over the training set of logit_y − max_{j≠y} logit_j
    (y = the label the model was trained on; the model after batch-norm folding computes the
    same logits). Cached in ``ctx.cache``; NaN for a diverged model."""
    key = f"margin:{percentile}"
    if key not in ctx.cache:
        logits = predict(ctx.model, ctx.train_inputs, ctx.device).double()
        ctx.cache[key] = torch.quantile(margins(logits, ctx.train_labels.cpu()), percentile / 100).item()
    return ctx.cache[key]


class InverseMarginOptions(Options):
    percentile: float = Field(10.0, ge=0, le=100, description="percentile of the training margins taken as γ")


class InverseMargin(BaseMeasure):
    """Inverse squared margin: 1/γ², γ = the 10th percentile over the training set of
    logit_y − max_{j≠y} logit_j (y = the label the model was trained on).

    +∞ when γ ≤ 0 (the model does not fit that percentile). Source: Jiang et al. 2020,
    "Fantastic generalization measures", measure "inverse margin".
    """

    name: ClassVar[str] = "inverse-margin"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    Options = InverseMarginOptions

    def compute(self, ctx: MeasureContext, options: InverseMarginOptions) -> float:
        gamma = training_margin(ctx, options.percentile)
        if math.isnan(gamma):  # a diverged run has no margin
            return math.nan
        return 1.0 / gamma**2 if gamma > 0 else math.inf


MEASURES = (InverseMargin,)
