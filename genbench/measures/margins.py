"""Output-margin measures."""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from genbench.measures.base import BaseMeasure, MeasureContext
from genbench.measures.quantities import training_margin
from genbench.schemas import Options


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
