"""Optimization-based measures: how fast the recipe fits the training set, and how noisy its
minibatch gradients are at the end."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.func import functional_call, grad, vmap

from genbench.errors import MeasureError, NotApplicable
from genbench.measures.base import (
    BaseMeasure,
    Estimate,
    MeasureContext,
    Retrained,
    RetrainingMeasure,
    RetrainJob,
    on_cpu_one_thread,
    standard_error,
)
from genbench.schemas import Options, TrainConfig

#: The cross-entropy a retraining continues to when the recorded curve stops short of a threshold
#: (the smallest threshold the two step-count measures use, so that they share one retraining).
RETRAIN_TARGET = 0.01


# ---------------------------------------------------------------------------
# Loss-curve crossings
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LossHistory:
    """A training loss curve — (optimizer step, mean minibatch cross-entropy of the epoch that
    ends there) — and how training ended: ``status`` and ``steps`` of the run, and
    ``stopped_at_loss``, the cross-entropy the trainer's full-training-set stop check
    confirmed at ``steps`` when the run stopped on a loss threshold (None otherwise)."""

    curve: tuple[tuple[int, float], ...]
    status: str
    steps: int
    stopped_at_loss: float | None = None
    retrained: bool = False


def first_crossing(history: LossHistory, threshold: float) -> int | None:
    """The first step at which training reached cross-entropy ``threshold``: the first epoch end
    whose mean minibatch loss is ≤ ``threshold``, or, when the curve never gets there but the
    run stopped because its full-training-set loss was ≤ a threshold ≤ ``threshold``, the step
    it stopped at. None when the history never reaches it."""
    for step, loss in history.curve:
        if loss <= threshold:
            return int(step)
    if history.status == "converged" and history.stopped_at_loss is not None and history.stopped_at_loss <= threshold:
        return int(history.steps)
    return None


def recorded_history(ctx: MeasureContext) -> LossHistory:
    """The loss curve the run recorded while training (stopped by its own recipe)."""
    log = ctx.training_log
    stopped = ctx.spec.train.loss_threshold if ctx.spec.train.stop == "loss" else None
    return LossHistory(tuple((int(s), float(v)) for s, v in log.loss_curve), log.status, int(log.steps), stopped)


def retraining_recipe(ctx: MeasureContext, target: float, max_steps: int | None) -> TrainConfig:
    """The run's recipe, stopped at training cross-entropy ``target`` (and after ``max_steps``,
    default the recipe's) instead of its own rule."""
    steps = max_steps if max_steps is not None else ctx.spec.train.max_steps
    return ctx.spec.train.model_copy(update={"stop": "loss", "loss_threshold": target, "max_steps": steps})


def recorded_reaches(ctx: MeasureContext, threshold: float, max_steps: int | None) -> bool:
    """Whether the recorded history answers the question: it reaches ``threshold`` within the budget,
    or it shows that the recipe cannot (the run diverged, or spent the whole budget: a retraining
    would repeat it)."""
    recorded = recorded_history(ctx)
    budget = max_steps if max_steps is not None else ctx.spec.train.max_steps
    crossing = first_crossing(recorded, threshold)
    if crossing is not None and crossing <= budget:
        return True
    return recorded.status == "diverged" or (recorded.status == "budget" and budget == ctx.spec.train.max_steps)


def continuation_jobs(ctx: MeasureContext, threshold: float, max_steps: int | None) -> list[RetrainJob]:
    """Nothing when the recorded history answers the question; otherwise one retraining of the run
    with its own seed, labels and recipe, continued to cross-entropy min(threshold, RETRAIN_TARGET):
    training is deterministic given the seed, so its curve continues the recorded one. The
    step-count measures ask for the same job, which the evaluate stage trains once per run."""
    if recorded_reaches(ctx, threshold, max_steps):
        return []
    recipe = retraining_recipe(ctx, min(threshold, RETRAIN_TARGET), max_steps)
    return [RetrainJob(labels=ctx.train_labels.detach().cpu(), seed=ctx.spec.seed, train=recipe)]


def history_of(ctx: MeasureContext, networks: list[Retrained]) -> LossHistory:
    """The recorded history, or that of the continued retraining when there is one."""
    if not networks:
        return recorded_history(ctx)
    [network] = networks
    if network.log is None:
        raise MeasureError("a model fitted in closed form takes no optimizer steps")
    log = network.log
    curve = tuple((int(s), float(v)) for s, v in log.loss_curve)
    target = network.job.train.loss_threshold if network.job.train is not None else None
    return LossHistory(curve, log.status, int(log.steps), target, retrained=True)


def steps_between(history: LossHistory, start: float | None, end: float) -> float:
    """Steps from cross-entropy ``start`` (None: from step 0) to ``end``: +∞ when the history
    never reaches a threshold without diverging (the budget ran out first), NaN when it diverged."""
    reached_end = first_crossing(history, end)
    if reached_end is None:
        return math.nan if history.status == "diverged" else math.inf
    reached_start = 0 if start is None else first_crossing(history, start)
    return float(reached_end - (reached_start if reached_start is not None else reached_end))


def not_diverged(steps: float, threshold: float) -> float:
    """``steps``, or NotApplicable when it is NaN: training diverged before reaching ``threshold``
    (a step count that does not exist, stored as skipped with that reason)."""
    if math.isnan(steps):
        raise NotApplicable(f"training diverged before reaching cross-entropy {threshold:g}")
    return steps


def crossing_details(history: LossHistory, thresholds: list[float]) -> dict[str, float | int | str | None]:
    details: dict[str, float | int | str | None] = {
        "status": history.status,
        "retrained": int(history.retrained),
        "curve_steps": history.curve[-1][0] if history.curve else 0,
    }
    for threshold in thresholds:
        details[f"step_at_{threshold:g}"] = first_crossing(history, threshold)
    return details


class RetrainBudgetOptions(Options):
    max_steps: int | None = Field(
        None, gt=0, description="step budget of a retraining (None: the recipe's max_steps)"
    )


class StepsToFitOptions(RetrainBudgetOptions):
    loss_threshold: float = Field(0.1, gt=0, description="training cross-entropy to reach")


class StepsToFit(RetrainingMeasure):
    """Optimizer steps until the training cross-entropy first reaches 0.1.

    steps-to-fit = min{t : CE_t ≤ 0.1}, with CE_t the mean minibatch cross-entropy of the
    epoch ending at step t (the recorded loss curve, one point per epoch), or the step at
    which the trainer's full-training-set check found CE ≤ the threshold it stopped at.
    Runs stopped at 100 % training accuracy may stop above 0.1; then the run is retrained
    with its own seed, labels and recipe (training is deterministic given the seed, so the
    retraining repeats the recorded run) with the stop rule "cross-entropy ≤ 0.01" instead,
    and the crossing is read from that curve (one retraining shared with
    steps-0.1-to-0.01: both measures ask for the same retraining job). +∞ when the recipe never reaches the threshold (the
    step budget runs out, or early stopping ends training first): ranked as the slowest; no
    value (skipped, NotApplicable) when training diverged. Source: Jiang et al.
    2020, "Fantastic generalization measures", "#steps to CE 0.1"; Dziugaite et al. 2020
    ("number of steps/epochs to reach a cross-entropy").
    Version 2: its networks are retrained in stacked ensembles with the retraining jobs of the
    other runs of its training group (before: each run's alone); a conv net rounds differently
    there, and SGD amplifies it (the spread is in benchmarks/RESULTS.md).
    """

    name: ClassVar[str] = "steps-to-fit"
    version: ClassVar[str] = "2"
    requires: ClassVar[frozenset[str]] = frozenset({"training_log", "retrain"})
    Options = StepsToFitOptions
    source: ClassVar[str] = "Jiang et al. 2020, 'Fantastic generalization measures', '#steps CE 0.1'"

    def jobs(self, ctx: MeasureContext, options: StepsToFitOptions) -> list[RetrainJob]:
        return continuation_jobs(ctx, options.loss_threshold, options.max_steps)

    def finish(self, ctx: MeasureContext, options: StepsToFitOptions, networks: list[Retrained]) -> Estimate:
        history = history_of(ctx, networks)
        value = not_diverged(steps_between(history, None, options.loss_threshold), options.loss_threshold)
        return Estimate(value, crossing_details(history, [options.loss_threshold]))


class StepsBetweenOptions(RetrainBudgetOptions):
    start: float = Field(0.1, gt=0, description="training cross-entropy where counting starts")
    end: float = Field(0.01, gt=0, description="training cross-entropy where counting stops")


class StepsBetween(RetrainingMeasure):
    """Optimizer steps from training cross-entropy 0.1 to 0.01.

    steps-0.1-to-0.01 = min{t : CE_t ≤ 0.01} − min{t : CE_t ≤ 0.1}, with CE_t as in
    steps-to-fit (epoch-end mean minibatch cross-entropy, or the trainer's full-set stop
    check). The recorded curve of a run stopped at 100 % training accuracy rarely reaches
    0.01, so the run is retrained with its own seed, labels and recipe to cross-entropy
    0.01 (the same retraining job as steps-to-fit's, trained once). +∞ when the recipe never reaches 0.01
    (the step budget runs out, or early stopping ends training first); no value (skipped,
    NotApplicable) when training diverged. Source: Jiang et al. 2020, "Fantastic
    generalization measures", "#steps 0.1→0.01"; Dziugaite et al. 2020 ("epochs to CE 0.01").
    Version 2: its networks are retrained in stacked ensembles with the retraining jobs of the
    other runs of its training group (before: each run's alone); a conv net rounds differently
    there, and SGD amplifies it (the spread is in benchmarks/RESULTS.md).
    """

    name: ClassVar[str] = "steps-0.1-to-0.01"
    version: ClassVar[str] = "2"
    requires: ClassVar[frozenset[str]] = frozenset({"training_log", "retrain"})
    Options = StepsBetweenOptions
    source: ClassVar[str] = "Jiang et al. 2020, 'Fantastic generalization measures', '#steps 0.1→0.01'"

    def jobs(self, ctx: MeasureContext, options: StepsBetweenOptions) -> list[RetrainJob]:
        if options.end > options.start:
            raise MeasureError(f"end ({options.end}) must be at most start ({options.start})")
        return continuation_jobs(ctx, options.end, options.max_steps)

    def finish(self, ctx: MeasureContext, options: StepsBetweenOptions, networks: list[Retrained]) -> Estimate:
        history = history_of(ctx, networks)
        value = not_diverged(steps_between(history, options.start, options.end), options.end)
        return Estimate(value, crossing_details(history, [options.start, options.end]))


# ---------------------------------------------------------------------------
# Gradient noise
# ---------------------------------------------------------------------------


def random_minibatches(n: int, batch_size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """[count, batch_size] example indices, drawn the way SGD draws them: the training set in a
    seeded random order, cut into consecutive batches (a new order when one runs out; a partial
    last batch is dropped). Each batch is a uniform random subset of size ``batch_size``."""
    if not 1 <= batch_size <= n:
        raise MeasureError(f"batch size {batch_size} must be between 1 and the {n} training examples")
    per_order = n // batch_size
    batches = []
    while len(batches) < count:
        order = torch.randperm(n, generator=generator)
        batches.extend(order[i * batch_size : (i + 1) * batch_size] for i in range(per_order))
    return torch.stack(batches[:count])


def full_gradient(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, chunk: int = 1024
) -> dict[str, torch.Tensor]:
    """∇_θ (1/n) Σ_i CE(f_θ(x_i), y_i) over every trainable parameter, model in eval mode."""
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    n = len(labels)

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, (p, buffers), (x,)), y, reduction="sum") / n

    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for start in range(0, n, chunk):
        part = grad(loss)(params, inputs[start : start + chunk], labels[start : start + chunk])
        for name in total:
            total[name] += part[name]
    return total


def minibatch_gradient_deviations(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    batches: torch.Tensor,
    full: dict[str, torch.Tensor] | None = None,
    chunk: int = 8,
) -> torch.Tensor:
    """‖g_B − g‖² for each row B of ``batches`` (example indices), g_B = ∇_θ of the mean
    cross-entropy over B, g = the full-batch gradient; all trainable parameters, model in eval
    mode (``full``: g when already computed). The batches' gradients are computed ``chunk`` at a
    time under ``torch.func.vmap``."""
    model = model.eval()
    g = full if full is not None else full_gradient(model, inputs, labels)
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def batch_loss(p, x, y):
        return F.cross_entropy(functional_call(model, (p, buffers), (x,)), y)

    def squared_deviation(x, y):
        gradient = grad(batch_loss)(params, x, y)
        return sum(((gradient[name] - g[name]) ** 2).sum() for name in gradient)

    batched = vmap(squared_deviation)
    deviations = []
    for start in range(0, len(batches), chunk):
        rows = batches[start : start + chunk].to(inputs.device)
        deviations.append(batched(inputs[rows], labels[rows]))
    return torch.cat(deviations)


class GradientNoiseOptions(Options):
    batches: int = Field(16, gt=1, description="random minibatches the variance is averaged over")
    batch_size: int | None = Field(None, gt=0, description="minibatch size (None: the recipe's batch size)")


class GradientNoise(BaseMeasure):
    """Variance of the minibatch gradients at the end of training.

    gradient-noise = E_B ‖g_B − g‖²,  g_B = ∇_θ (1/b) Σ_{i∈B} CE(f_θ(x_i), y_i),
    g = ∇_θ (1/m) Σ_{i=1}^{m} CE(f_θ(x_i), y_i),

    θ = every trainable parameter of the final network (weights, biases, batch-norm
    affine parameters: the vector SGD updates), the network in eval mode (batch norm with
    its running statistics), y = the labels it was trained on. The expectation is over
    minibatches B of the recipe's batch size b drawn as SGD draws them (uniform subsets
    without replacement, from seeded random orders of the training set), estimated by the
    mean over ``batches`` of them; the details give its standard error. Not normalized by
    the number of parameters; the squared norm of the full-batch gradient is reported in
    the details (``full_gradient_sq_norm``). Source: Jiang et al. 2020, "Fantastic
    generalization measures", optimization-based measure "gradient noise" (variance of
    the gradients after training).
    """

    name: ClassVar[str] = "gradient-noise"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    Options = GradientNoiseOptions
    source: ClassVar[str] = (
        "Jiang et al. 2020, 'Fantastic generalization measures', optimization-based 'gradient noise'"
    )

    def compute(self, ctx: MeasureContext, options: GradientNoiseOptions) -> Estimate:
        batch_size = min(options.batch_size or ctx.spec.train.batch_size, ctx.num_train)
        batches = random_minibatches(ctx.num_train, batch_size, options.batches, ctx.generator)
        inputs, labels = ctx.train_inputs.to(ctx.device), ctx.train_labels.to(ctx.device)
        with on_cpu_one_thread(ctx):
            g = full_gradient(ctx.model.eval(), inputs, labels)
            deviations = minibatch_gradient_deviations(ctx.model, inputs, labels, batches, g).double().cpu()
        return Estimate(
            deviations.mean().item(),
            {
                "stderr": standard_error(deviations),
                "batches": len(deviations),
                "batch_size": batch_size,
                "full_gradient_sq_norm": sum((v.double() ** 2).sum().item() for v in g.values()),
            },
        )


MEASURES = (StepsToFit, StepsBetween, GradientNoise)
