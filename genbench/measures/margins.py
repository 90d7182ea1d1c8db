"""Output-margin measures."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import ClassVar

import torch
from pydantic import Field

from genbench.measures.base import BaseMeasure, MeasureContext, tensor_digest
from genbench.schemas import Options
from genbench.training import predict


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logit_y − max_{j≠y} logit_j for each example."""
    correct = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.clone()
    others.scatter_(1, labels[:, None], -math.inf)
    return correct - others.max(dim=1).values


def run_fingerprint(ctx: MeasureContext) -> str:
    """A content hash of what the training margins depend on: the network (its structure and
    every parameter and buffer), the training inputs and labels, and the device."""
    named = [*ctx.model.state_dict().items(), ("inputs", ctx.train_inputs), ("labels", ctx.train_labels)]
    return tensor_digest(named, salt=f"{ctx.model!r}|{ctx.device}")


#: Training margins of recent runs, by ``run_fingerprint``: the engine evaluates one measure
#: on every run before the next measure, with a fresh context each, and the forward pass over
#: the training set is the costly part of every margin-normalized measure (about 0.2 s for a
#: digits CNN on one core). Least recently used runs are dropped beyond ``_MARGINS_BUDGET``
#: stored margins in all (32 MB: about 3,000 digits runs, or 80 runs on 50,000 examples).
_MARGINS: OrderedDict[str, torch.Tensor] = OrderedDict()
_MARGINS_BUDGET = 4_000_000


def training_margins(ctx: MeasureContext) -> torch.Tensor:
    """logit_y − max_{j≠y} logit_j of every training example (float64, on the CPU), shared
    by the measures of a run through ``ctx.cache`` and, across contexts, a small
    module-level cache keyed by the content hash of the network and training set."""

    def compute() -> torch.Tensor:
        key = run_fingerprint(ctx)
        if key in _MARGINS:
            _MARGINS.move_to_end(key)
        else:
            logits = predict(ctx.model, ctx.train_inputs, ctx.device).double()
            _MARGINS[key] = margins(logits, ctx.train_labels.cpu())
            while len(_MARGINS) > 1 and sum(m.numel() for m in _MARGINS.values()) > _MARGINS_BUDGET:
                _MARGINS.popitem(last=False)
        return _MARGINS[key]

    if "margins" not in ctx.cache:
        ctx.cache["margins"] = compute()
    return ctx.cache["margins"]


def training_margin(ctx: MeasureContext, percentile: float) -> float:
    """γ: the ``percentile``-th percentile over the training set of logit_y − max_{j≠y} logit_j
    (y = the label the model was trained on; linear interpolation, numpy's default); NaN for a
    diverged model."""
    return torch.quantile(training_margins(ctx), percentile / 100).item()


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
    source: ClassVar[str] = "Jiang et al. 2020, 'Fantastic generalization measures', inverse margin"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    Options = InverseMarginOptions

    def compute(self, ctx: MeasureContext, options: InverseMarginOptions) -> float:
        gamma = training_margin(ctx, options.percentile)
        if math.isnan(gamma):  # a diverged run has no margin
            return math.nan
        return 1.0 / gamma**2 if gamma > 0 else math.inf


MEASURES = (InverseMargin,)
