"""Memorization: how many training points sit next to a decision boundary (Arpit et al. 2017)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from genbench.measures.base import BaseMeasure, Estimate, MeasureContext, SizeNormalizedOptions
from genbench.measures.quantities import CHUNK, evaluation_copy, has_nonfinite_parameters, seeded_subset


def feature_scale(inputs: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-feature unit of the search, shaped like one input: the range max − min of each feature
    over the training inputs ("range"), or 1 ("unit")."""
    if mode == "unit":
        return torch.ones_like(inputs[0])
    return inputs.amax(dim=0) - inputs.amin(dim=0)


def langevin_adversarial_search(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    radius: torch.Tensor,
    step: torch.Tensor,
    noise: torch.Tensor,
    iterations: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Arpit et al. 2017's Langevin adversarial sample search (their Algorithm 1), run on all
    points at once. For each point x with predicted class k = argmax f(x), starting at x̃ = x:

        x̃ ← x̃ + step·sign(∇_x̃ CE(f(x̃), k)) + noise·η,  η ~ N(0, I)
        x̃ ← x + clip(x̃ − x, −radius, radius)          (per feature)

    (step, noise and radius per feature). A point is critical once argmax f(x̃) ≠ k at some
    iterate. Returns the boolean mask of critical points (``iterations`` ≥ 1)."""
    critical = torch.zeros(len(inputs), dtype=torch.bool, device=inputs.device)
    for start in range(0, len(inputs), CHUNK):
        x0 = inputs[start : start + CHUNK]
        found = critical[start : start + CHUNK]
        x = x0.clone()
        k = None  # the predicted classes at x0: the first iterate's
        for _ in range(iterations):
            x.requires_grad_(True)
            logits = model(x)
            if k is None:
                k = logits.detach().argmax(dim=1)
            found |= logits.detach().argmax(dim=1) != k
            if bool(found.all()):
                break
            (gradient,) = torch.autograd.grad(F.cross_entropy(logits, k, reduction="sum"), x)
            with torch.no_grad():
                eta = torch.randn(x.shape, generator=generator).to(x.device)
                x = x.detach() + step * torch.sign(gradient) + noise * eta
                x = x0 + torch.maximum(torch.minimum(x - x0, radius), -radius)
        with torch.no_grad():
            found |= model(x).argmax(dim=1) != k
    return critical


class CriticalSampleRatioOptions(SizeNormalizedOptions):
    max_examples: int | None = Field(
        500, ge=1, description="search around a seeded random subset of this many training points (None = all)"
    )
    radius: float = Field(
        30 / 255, gt=0, description="r: half-width of the L∞ box around each point, in units of input_scale"
    )
    step: float = Field(0.25 / 255, ge=0, description="α: the sign-gradient step, in units of input_scale")
    noise: float = Field(0.2 / 255, ge=0, description="β: the std of the Gaussian noise added per step, in units of input_scale")
    iterations: int = Field(20, ge=1, description="search steps per point")
    input_scale: Literal["range", "unit"] = Field(
        "range",
        description="unit of radius, step and noise: each input feature's range (max − min) over the training set "
        "(the [0, 1] pixel scale of Arpit et al. when raw pixels span [0, 1]), or the model's input units",
    )


class CriticalSampleRatio(BaseMeasure):
    """Critical sample ratio: the fraction of training points whose prediction flips within a small L∞ box.

    A point is critical when Langevin adversarial sample search finds a differently classified
    point within the box around it:

    CSR = (1/N) Σ_i 1[∃ x̂ : ‖x̂ − x_i‖_∞ ≤ r, argmax f(x̂) ≠ argmax f(x_i)],

    over N = ``max_examples`` = 500 training points drawn with the run's seeded generator (all of them
    with None), x̂ searched for by Arpit et al. 2017's Algorithm 1 (LASS): from x̃ = x, repeat
    x̃ ← x̃ + α·sign(∇_x̃ CE(f(x̃), k)) + β·η (η standard Gaussian; k the class predicted at x),
    then clip x̃ − x to [−r, r] per feature, for ``iterations`` steps; x is critical once the
    prediction at some x̃ differs from k. All points are searched at once (a batch).

    Input scale: Arpit et al. work on pixels in [0, 1]; the search code released with the paper
    uses α = 0.25/255 and β = 0.2/255, the defaults here. r = 30/255 and 20 steps are this
    module's choices: with them the search moves at most 20·α ≈ 5/255 (plus noise) from x, so
    the number of steps bounds the search before r does (raise ``iterations`` or ``step`` for
    larger boxes). genbench's inputs are standardized, so with ``input_scale = "range"`` r, α
    and β are multiplied by each feature's range (max − min) over the training inputs, which
    maps the paper's pixel units onto standardized pixels (features that never vary get a
    zero-width box); "unit" uses the values as they are. Inputs are not clipped to the data
    range. Kind complexity: memorizing networks have many critical
    samples (Arpit et al. §3.3). Details: the number of critical points and of points searched.
    NaN for a diverged network.
    """

    name: ClassVar[str] = "critical-sample-ratio"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    Options = CriticalSampleRatioOptions
    source: ClassVar[str] = (
        "Arpit et al. 2017, 'A closer look at memorization in deep networks', §3.3 and Algorithm 1 (LASS)"
    )

    def compute(self, ctx: MeasureContext, options: CriticalSampleRatioOptions) -> Estimate | float:
        if has_nonfinite_parameters(ctx.model):
            return math.nan
        scale = feature_scale(ctx.train_inputs.to(ctx.device).float(), options.input_scale)
        inputs, _ = seeded_subset(ctx, options.max_examples)
        model = evaluation_copy(ctx.model, ctx.device).requires_grad_(False)  # gradients in x only
        critical = langevin_adversarial_search(
            model,
            inputs.float(),
            radius=options.radius * scale,
            step=options.step * scale,
            noise=options.noise * scale,
            iterations=options.iterations,
            generator=ctx.generator,
        )
        count = int(critical.sum())
        value = self.normalized(count / len(inputs), ctx, options)
        return Estimate(value, details={"critical": count, "searched": len(inputs)})


MEASURES = (CriticalSampleRatio,)
