"""Worst-case sharpness: how large a box of weight perturbations the trained network tolerates.

Both measures search, by bisection, for the largest box radius α' such that projected gradient
ascent on the training cross-entropy inside the box w ± r(α) cannot lower the training accuracy
by more than a target, and report 1/α'². They differ in the box: ``sharpness`` uses the same
half-width α for every parameter, ``sharpness-mag`` a half-width proportional to each
parameter's magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from genbench.measures.base import BaseMeasure, Estimate, MeasureContext, SizeNormalizedOptions
from genbench.measures.quantities import chunks, evaluation_copy, has_nonfinite_parameters, seeded_subset

@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    correct = 0
    for x, y in chunks(inputs, labels):
        correct += int((model(x).argmax(dim=1) == y).sum())
    return correct / len(labels)


def loss_gradient_and_accuracy(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[list[torch.Tensor], float]:
    """∇ of the mean training cross-entropy with respect to every parameter, and the training
    accuracy at the same point (from the same forward passes)."""
    parameters = list(model.parameters())
    total = [torch.zeros_like(p) for p in parameters]
    correct = 0
    for x, y in chunks(inputs, labels):
        logits = model(x)
        correct += int((logits.detach().argmax(dim=1) == y).sum())
        loss = F.cross_entropy(logits, y, reduction="sum") / len(labels)
        for acc, g in zip(total, torch.autograd.grad(loss, parameters)):
            acc.add_(g)
    return total, correct / len(labels)


# ---------------------------------------------------------------------------
# The worst-case accuracy drop inside a box, and the bisection on its radius
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AscentSettings:
    ascent_steps: int
    step_fraction: float
    restarts: int


def worst_accuracy_in_box(
    model: nn.Module,
    centre: list[torch.Tensor],
    half_widths: list[torch.Tensor],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    settings: AscentSettings,
    generator: torch.Generator,
) -> float:
    """The lowest training accuracy found by projected sign-gradient ascent on the training
    cross-entropy inside the box {w : |w_i − centre_i| ≤ half_width_i}.

    Each restart starts at a uniformly random point of the box and takes ``ascent_steps`` steps
    u ← clip(u + step_fraction · half_width · sign(∇L(centre + u)), −half_width, half_width);
    the accuracy is read at every iterate (the forward pass of the gradient gives it) and at the
    last one, and the minimum over all of them and all restarts is returned. ``model``'s
    parameters are overwritten; pass a copy."""
    parameters = list(model.parameters())
    worst = math.inf
    for _ in range(settings.restarts):
        offsets = [
            (torch.rand(w.shape, generator=generator).to(w.device) * 2 - 1) * h for w, h in zip(centre, half_widths)
        ]
        for _ in range(settings.ascent_steps):
            with torch.no_grad():
                for p, w, u in zip(parameters, centre, offsets):
                    p.copy_(w + u)
            gradient, acc = loss_gradient_and_accuracy(model, inputs, labels)
            worst = min(worst, acc)
            for u, g, h in zip(offsets, gradient, half_widths):
                u.add_(settings.step_fraction * h * torch.sign(g))
                torch.maximum(torch.minimum(u, h), -h, out=u)
        with torch.no_grad():
            for p, w, u in zip(parameters, centre, offsets):
                p.copy_(w + u)
        worst = min(worst, accuracy(model, inputs, labels))
    with torch.no_grad():
        for p, w in zip(parameters, centre):
            p.copy_(w)
    return worst


@dataclass(frozen=True)
class RadiusSearch:
    """Result of the bisection: the radius, the drop measured there, and how the search ended."""

    alpha: float
    drop: float
    evaluations: int
    converged: bool


def bisect_radius(
    drop_at: Callable[[float], float],
    target: float,
    tolerance: float,
    lower: float,
    upper: float,
    steps: int,
) -> RadiusSearch:
    """Bisection on log α in [lower, upper] for the largest α whose accuracy drop stays at the
    target: stop at the first midpoint α whose drop is within ``tolerance`` of ``target``;
    otherwise move the upper end down when the drop exceeds the target and the lower end up when
    it does not. After ``steps`` midpoints without such a hit, return the lower end of the bracket
    (the largest radius seen to keep the drop within the target, or ``lower``)."""
    low, high = math.log(lower), math.log(upper)
    best_drop = math.nan
    for step in range(1, steps + 1):
        mid = 0.5 * (low + high)
        drop = drop_at(math.exp(mid))
        if abs(drop - target) <= tolerance:
            return RadiusSearch(alpha=math.exp(mid), drop=drop, evaluations=step, converged=True)
        if drop > target:
            high = mid
        else:
            low, best_drop = mid, drop
    return RadiusSearch(alpha=math.exp(low), drop=best_drop, evaluations=steps, converged=False)


class SharpnessOptions(SizeNormalizedOptions):
    target_drop: float = Field(
        0.1, gt=0, lt=1, description="training-accuracy drop (trained model minus perturbed model) that defines α'"
    )
    tolerance: float = Field(0.01, gt=0, description="the bisection stops when the drop is this close to the target")
    bisection_steps: int = Field(12, ge=1, description="at most this many bisection steps (on log α)")
    lower: float = Field(1e-6, gt=0, description="lower end of the bracket on α")
    upper: float = Field(10.0, gt=0, description="upper end of the bracket on α")
    ascent_steps: int = Field(5, ge=1, description="projected sign-gradient ascent steps per radius")
    step_fraction: float = Field(
        0.5, gt=0, description="ascent step per coordinate, as a fraction of that coordinate's box half-width"
    )
    restarts: int = Field(1, ge=1, description="random starts per radius (the worst accuracy over them counts)")
    max_examples: int | None = Field(
        256, ge=1, description="run the search on a seeded random subset of this many training examples (None = all)"
    )


class _WorstCaseSharpness(BaseMeasure):
    """Shared search; subclasses give the box half-width of each parameter as a function of α."""

    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    source: ClassVar[str] = (
        "Jiang et al. 2020, 'Fantastic generalization measures', §C.4–C.5 (worst-case sharpness, 1/α'); "
        "Keskar et al. 2017"
    )

    def half_widths(self, weights: list[torch.Tensor], alpha: float, options) -> list[torch.Tensor]:
        raise NotImplementedError

    def compute(self, ctx: MeasureContext, options) -> Estimate | float:
        if has_nonfinite_parameters(ctx.model):
            return math.nan
        if options.lower >= options.upper:
            raise ValueError(f"lower ({options.lower}) must be below upper ({options.upper})")
        inputs, labels = seeded_subset(ctx, options.max_examples)
        model = evaluation_copy(ctx.model, ctx.device)
        centre = [p.detach().clone() for p in model.parameters()]
        base_accuracy = accuracy(model, inputs, labels)
        settings = AscentSettings(options.ascent_steps, options.step_fraction, options.restarts)

        def drop_at(alpha: float) -> float:
            widths = self.half_widths(centre, alpha, options)
            worst = worst_accuracy_in_box(model, centre, widths, inputs, labels, settings, ctx.generator)
            return base_accuracy - worst

        search = bisect_radius(
            drop_at, options.target_drop, options.tolerance, options.lower, options.upper, options.bisection_steps
        )
        value = self.normalized(1.0 / search.alpha**2, ctx, options)
        return Estimate(
            value,
            details={
                "alpha": search.alpha,
                "accuracy_drop": search.drop,
                "train_accuracy": base_accuracy,
                "radii_tried": search.evaluations,
                "converged": int(search.converged),
            },
        )


class Sharpness(_WorstCaseSharpness):
    """Worst-case sharpness 1/α'²: α' is the largest absolute box radius that keeps the accuracy drop ≤ 0.1.

    sharpness = 1/α'²,  α' = the largest α with  acc(w) − min_{|u_i| ≤ α ∀i} acc(w + u) ≤ 0.1,

    over every parameter of the network as it is parametrized (weights, biases, batch-norm affine
    parameters; batch norm in eval mode, with its running statistics). Jiang et al. 2020 (§C.4,
    "1/α' sharpness") state the condition as max_{|u_i| ≤ α'} L̂(f_{w+u}) ≤ 0.1 with L̂ the
    training error; for a network that fits its training set this is the same as a drop of 0.1 in
    training accuracy, which is what is used here (as in the code released for the PGDL
    competition), so that a network that does not fit is measured from its own accuracy.

    The minimum is approximated by projected sign-gradient ascent on the training cross-entropy
    (``ascent_steps`` = 5 steps of ``step_fraction``·α = 0.5·α per coordinate from a uniformly
    random start in the box; the worst accuracy over the iterates and ``restarts`` starts), and
    α' by bisection on log α in [``lower``, ``upper``] = [10⁻⁶, 10] (at most 12 steps) that stops
    at the first radius whose drop is within ``tolerance`` = 0.01 of the target. Accuracies and
    gradients are taken on a seeded random subset of ``max_examples`` = 256 training examples
    (None: all of them); the PGDL code uses the full training set, 20 ascent steps and 15
    random starts, at about 300 times the cost. Jiang et al.'s box is absolute (the
    magnitude-aware box is ``sharpness-mag``); Keskar et al. 2017's ε-sharpness box
    ε(|w_i| + 1) is ``sharpness-mag`` with ``epsilon = 1`` and ``epsilon_scales_with_alpha``.
    NaN for a diverged network. Details: α', the drop found there, the training accuracy, the
    radii tried, and whether the search hit the target within tolerance (0: it ran out of steps
    and α' is the lower end of the last bracket).
    """

    name: ClassVar[str] = "sharpness"
    Options = SharpnessOptions

    def half_widths(self, weights, alpha, options):
        return [torch.full_like(w, alpha) for w in weights]


class MagnitudeSharpnessOptions(SharpnessOptions):
    upper: float = Field(100.0, gt=0, description="upper end of the bracket on α")
    epsilon: float = Field(1e-3, ge=0, description="ε: the box half-width of a parameter is α·|w_i| + ε")
    epsilon_scales_with_alpha: bool = Field(
        False,
        description="use α·(|w_i| + ε) instead (with ε = 1: Keskar et al. 2017's ε-sharpness box)",
        exclude_if=lambda value: value is False,
    )


class MagnitudeSharpness(_WorstCaseSharpness):
    """Magnitude-aware worst-case sharpness 1/α'²: the box half-width of each parameter is α'·|w_i| + ε.

    sharpness-mag = 1/α'²,  α' = the largest α with  acc(w) − min_{|u_i| ≤ α|w_i| + ε ∀i} acc(w + u) ≤ 0.1,

    ε = 10⁻³, over every parameter of the network as it is parametrized (batch norm in eval
    mode). Source: Jiang et al. 2020, §C.5 ("1/α' sharpness mag": max_{|u_i| ≤ α'|w_i| + ε}
    L̂(f_{w+u}) ≤ 0.1). The accuracy-drop target, the ascent and the bisection are those of
    ``sharpness`` (see there). With ``epsilon_scales_with_alpha`` the box is α(|w_i| + ε), and
    with ε = 1 it is Keskar et al. 2017's ε-sharpness box. If even α = ``lower`` (a box of about
    ±ε) drops the accuracy by more than the target, α' is ``lower``.
    """

    name: ClassVar[str] = "sharpness-mag"
    Options = MagnitudeSharpnessOptions

    def half_widths(self, weights, alpha, options):
        if options.epsilon_scales_with_alpha:
            return [alpha * (w.abs() + options.epsilon) for w in weights]
        return [alpha * w.abs() + options.epsilon for w in weights]


MEASURES = (Sharpness, MagnitudeSharpness)
