"""Stability of the training algorithm: how much the trained model moves when one training
example is replaced."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from genbench.measures.base import Estimate, MeasureContext, RetrainJob, Retrained, RetrainingMeasure, SizeNormalizedOptions


class UniformStabilityOptions(SizeNormalizedOptions):
    replacements: int = Field(
        1,
        ge=1,
        description="retrainings, each with one training example replaced by a copy of another; the value is "
        "the largest change over all of them (1 by default to keep the full measure set within its time budget: "
        "each replacement costs about one training run)",
    )
    reference: Literal["retrained", "run"] = Field(
        "retrained",
        description="A(S): retrained: the run's training repeated on the unmodified set inside the same ensemble "
        "(identical arithmetic to the replaced sets; one more member); run: the run's own model",
    )


def replacement_pairs(n: int, count: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """``count`` pairs (i, j), i ≠ j, drawn with ``generator``: example i is replaced by a copy of
    example j. The i are distinct while count ≤ n; each j is uniform on the other n − 1 examples."""
    positions = torch.randperm(n, generator=generator)
    pairs = []
    for t in range(count):
        i = int(positions[t % n])
        offset = int(torch.randint(1, n, (1,), generator=generator))
        pairs.append((i, (i + offset) % n))
    return pairs


def replaced_indices(n: int, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Rows [len(pairs), n] of training indices: arange(n) with position i set to j."""
    rows = torch.arange(n).repeat(len(pairs), 1)
    for row, (i, j) in enumerate(pairs):
        rows[row, i] = j
    return rows


def per_example_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every example, in float64."""
    return F.cross_entropy(logits.double(), labels.to(logits.device), reduction="none")


class UniformStability(RetrainingMeasure):
    """Empirical uniform stability of the training algorithm: the largest change in per-example
    training loss when one training example is replaced.

    Uniform stability (Bousquet & Elisseeff 2002; for SGD, Hardt, Recht & Singer 2016,
    "Train faster, generalize better: stability of stochastic gradient descent", ICML) is
    ε = sup_{S, S'} sup_z |ℓ(A(S), z) − ℓ(A(S'), z)| over training sets S, S' differing in
    one example; the expected generalization gap is at most ε. Zhang et al. 2017 (§2.2)
    reject it as an explanation: it is a property of the algorithm alone, blind to the labels.
    Estimated here as

        ε̂ = max_{r=1..R} max_{k=1..n} |ℓ(A(S), z_k) − ℓ(A(S^{(i_r)}), z_k)|,

    ℓ the cross-entropy (nats), z_k = (x_k, y_k) the training examples with the labels the
    model was trained on, and S^{(i)} the training set with example i replaced by a copy of
    another training example j (input and label), so that S^{(i)} is still a sample from
    the empirical distribution. The R = ``replacements`` pairs (i, j) are drawn with the
    measure's generator (distinct i; j uniform on the other examples). Each A(S^{(i)}) is
    the run's architecture retrained with its recipe and the run's own seed
    (a ``RetrainJob`` whose training indices are arange(n) with position i set to j):
    initialization and data order are the run's, so apart from the replaced example the
    randomness is shared. The retrainings of all runs of a training group train as one ensemble.

    A(S): with ``reference = "retrained"`` (default) the run's training repeated on the
    unmodified set as one more member of that ensemble, so that A(S) and the A(S^{(i)})
    share their arithmetic exactly; with ``reference = "run"`` the run's own model. The two
    coincide when retraining reproduces the run bit for bit (as it does for a run trained
    alone with the same code on the same device); a run trained in another ensemble (where
    members of one seed share a batched first layer), by another version of the trainer or
    on another device rounds differently, and SGD amplifies that difference, which would
    then be counted as instability. ``details["reference_drift"]`` =
    max_k |ℓ(run's model, z_k) − ℓ(retrained A(S), z_k)| shows by how much, and
    ``details["max_vs_run"]`` is ε̂ measured against the run's model. Other details: the
    mean over replacements of the per-replacement maximum, each maximum (``max_r``) with its
    pair (``pair_r`` = "i->j"), and how many replaced-set networks reached the training
    target (``retrained_fit``).
    Version 2: its networks are retrained in stacked ensembles with the retraining jobs of the
    other runs of its training group (before: each run's alone); a conv net rounds differently
    there, and SGD amplifies it (the spread is in benchmarks/RESULTS.md).
    """

    name: ClassVar[str] = "uniform-stability"
    version: ClassVar[str] = "2"
    source: ClassVar[str] = (
        "Hardt, Recht & Singer 2016, 'Train faster, generalize better: stability of stochastic gradient descent' "
        "(uniform stability; Bousquet & Elisseeff 2002), as discussed by Zhang et al. 2017, §2.2"
    )
    requires: ClassVar[frozenset[str]] = frozenset({"train_data", "retrain"})
    Options = UniformStabilityOptions

    def jobs(self, ctx: MeasureContext, options: UniformStabilityOptions) -> list[RetrainJob]:
        n = ctx.num_train
        if n < 2:
            raise ValueError("uniform-stability needs at least two training examples")
        rows = replaced_indices(n, replacement_pairs(n, options.replacements, ctx.generator))
        if options.reference == "retrained":
            rows = torch.cat([torch.arange(n)[None], rows])
        labels = ctx.train_labels.detach().cpu()
        return [
            RetrainJob(labels=labels, seed=ctx.spec.seed, train_indices=row, num_classes=ctx.num_classes)
            for row in rows
        ]

    def finish(self, ctx: MeasureContext, options: UniformStabilityOptions, networks: list[Retrained]) -> Estimate:
        labels = ctx.train_labels.detach().cpu()
        losses = [per_example_losses(ctx.retrainer.predict(net.model, ctx.train_inputs), labels) for net in networks]
        run_losses = per_example_losses(ctx.retrainer.predict(ctx.model, ctx.train_inputs), labels)
        details: dict = {}
        if options.reference == "retrained":
            reference, losses = losses[0], losses[1:]
            details["reference_drift"] = largest_change(run_losses, reference)
            details["max_vs_run"] = worst([largest_change(run_losses, replaced) for replaced in losses])
            networks = networks[1:]
        else:
            reference = run_losses
        maxima = [largest_change(reference, replaced) for replaced in losses]
        pairs = [replacement_of(net.job.train_indices) for net in networks]
        details["mean"] = sum(maxima) / len(maxima)
        details["replacements"] = len(maxima)
        for r, ((i, j), maximum) in enumerate(zip(pairs, maxima)):
            details[f"max_{r}"] = maximum
            details[f"pair_{r}"] = f"{i}->{j}"
        details["retrained_fit"] = sum(1 for net in networks if net.log is None or net.log.status == "converged")
        return Estimate(self.normalized(worst(maxima), ctx, options), details)


def replacement_of(row: torch.Tensor) -> tuple[int, int]:
    """(i, j) of a ``replaced_indices`` row: the position that differs from arange(n), and its value."""
    [i] = (row != torch.arange(len(row))).nonzero().flatten().tolist()
    return i, int(row[i])


def worst(values: list[float]) -> float:
    """The largest value, NaN if any is NaN."""
    return math.nan if any(math.isnan(v) for v in values) else max(values)


def largest_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """max_k |before_k − after_k| (NaN if any loss is NaN)."""
    change = (before - after.to(before.device)).abs()
    return math.nan if torch.isnan(change).any() else change.max().item()


MEASURES = (UniformStability,)
