"""Capacity measures: parameter count and the empirical Rademacher complexity."""

from __future__ import annotations

import hashlib
from typing import ClassVar

import torch
from pydantic import Field

from genbench.measures.base import BaseMeasure, MeasureContext
from genbench.measures.weights import weight_count
from genbench.schemas import Options, content_hash


class ParamsOptions(Options):
    include_biases: bool = Field(True, description="count biases too (Zhang et al.'s Table 1 does)")


class Params(BaseMeasure):
    """Number of parameters of the linear and convolutional layers.

    params = Σ_layers numel(W_i) (+ numel(b_i)); batch-norm parameters are not
    counted, as in Zhang et al. 2017, Table 1. Source: Jiang et al. 2020, "Fantastic
    generalization measures", measure "params".
    """

    name: ClassVar[str] = "params"
    version: ClassVar[str] = "1"
    Options = ParamsOptions

    def compute(self, ctx: MeasureContext, options: ParamsOptions) -> float:
        return float(weight_count(ctx.model, include_biases=options.include_biases))


class RademacherOptions(Options):
    draws: int = Field(3, gt=0, description="random ±1 labelings to average over")
    seed: int = Field(0, description="seed of the labelings and of the retrained networks")


class EmpiricalRademacher(BaseMeasure):
    """Empirical Rademacher complexity of the model class *as trained*, on the training inputs.

    R̂_n(H) = E_σ [ sup_{h∈H} (1/n) Σ_i σ_i h(x_i) ],  σ_i uniform on {−1, +1}.

    Following Zhang et al. 2017 (§2.2, "Rademacher complexity and generalization"), the
    supremum is replaced by what the training procedure finds: the same architecture
    (with two outputs; h(x) = +1 if the second logit is larger, else −1) is trained with
    the same recipe on each random labeling σ, and the value is the mean over ``draws``
    labelings of (1/n) Σ_i σ_i h(x_i) = 2·(training accuracy) − 1. A class that memorizes
    any labeling gets ≈ 1, the trivial bound that explains nothing — the paper's point.
    Depends only on the architecture, recipe and training inputs, so it is computed once
    per such combination and shared by the runs that have it.
    """

    name: ClassVar[str] = "rademacher"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data", "retrain"})
    Options = RademacherOptions
    _cache: ClassVar[dict[str, float]] = {}

    def compute(self, ctx: MeasureContext, options: RademacherOptions) -> float:
        key = self._key(ctx, options)
        if key not in self._cache:
            self._cache[key] = self._estimate(ctx, options)
        return self._cache[key]

    @staticmethod
    def _key(ctx: MeasureContext, options: RademacherOptions) -> str:
        inputs = ctx.train_inputs.detach().to("cpu").contiguous()
        digest = hashlib.sha256(inputs.numpy().tobytes())
        digest.update(f"{tuple(inputs.shape)}:{inputs.dtype}".encode())
        fingerprint = digest.hexdigest()
        spec = ctx.spec
        return content_hash(
            {
                "inputs": fingerprint,
                "model": spec.model.model_dump(mode="json"),
                "train": spec.train.model_dump(mode="json"),
                "options": options.model_dump(mode="json"),
            }
        )

    @staticmethod
    def _estimate(ctx: MeasureContext, options: RademacherOptions) -> float:
        n = ctx.num_train
        signs = []
        for draw in range(options.draws):
            generator = torch.Generator().manual_seed(options.seed * 1_000 + draw)
            signs.append(torch.randint(0, 2, (n,), generator=generator) * 2 - 1)
        sigma = torch.stack(signs)
        labels = (sigma + 1) // 2
        seeds = [options.seed * 1_000 + draw for draw in range(options.draws)]
        models = ctx.retrainer.fit(labels=labels, seeds=seeds, num_classes=2)
        correlations = []
        for model, sigma_draw in zip(models, sigma):
            logits = ctx.retrainer.predict(model, ctx.train_inputs)
            h = torch.where(logits[:, 1] > logits[:, 0], 1, -1)
            correlations.append((sigma_draw * h).float().mean().item())
        return float(sum(correlations) / len(correlations))


MEASURES = (Params, EmpiricalRademacher)
