"""``dbi-mixup``: the winning measure of the PGDL competition (NeurIPS 2020).

Natekar & Sharma, "Representation Based Complexity Measures for Predicting Generalization in
Deep Learning" (arXiv 2012.02775); code: github.com/parthnatekar/pgdl, ``complexity.py``
(``complexity``, measure ``'DBI, Mixup'``, the default) and ``complexitymeasures.py``
(``complexityDB``, ``complexityMixup``), as of the last commit (b8ed0ea, April 2021).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

import genbench
from genbench import MeasureError, NotApplicable
from genbench_pgdl.features import (
    capture,
    first_layer,
    max_pool_valid,
    one_thread_on_cpu,
    predicted_classes,
)


def davies_bouldin(features: np.ndarray, labels: np.ndarray) -> float:
    """Davies–Bouldin index of the clusters that ``labels`` make of ``features`` [n, d].

    DB = (1/K) Σ_a max_{b≠a} (S_a + S_b) / ‖c_a − c_b‖, c_a the centroid of cluster a and
    S_a the mean Euclidean distance of its points to c_a (Davies & Bouldin 1979), computed by
    ``sklearn.metrics.davies_bouldin_score`` — which is what the authors' ``db`` in
    ``complexityDB`` re-implements line for line (0 when all S_a or all centroid distances
    are 0). Needs 2 ≤ K ≤ n − 1 clusters."""
    classes = np.unique(labels).size
    if not 1 < classes < labels.size:
        raise MeasureError(
            f"the Davies–Bouldin index needs between 2 and n − 1 classes among the n examples; "
            f"a draw of {labels.size} examples has {classes}"
        )
    from sklearn.metrics import davies_bouldin_score  # here: listing the plugins need not import scikit-learn

    return float(davies_bouldin_score(features, labels))


def mixup_stream(order: torch.Tensor, batch_size: int, batches: int) -> torch.Tensor:
    """[batches, batch_size] example indices: ``order`` repeated end to end and cut into
    consecutive batches (the authors' ``dataset.repeat(-1).batch(batch_size)``)."""
    total = batch_size * batches
    repeats = math.ceil(total / order.numel())
    return order.repeat(repeats)[:total].view(batches, batch_size)


def within_class_pairs(batch_labels: torch.Tensor, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (i, j), i < j, of every pair of examples of class ``label`` in one batch, in
    row-major order of the upper triangle (the authors' ``np.triu_indices(m, 1)``)."""
    members = torch.nonzero(batch_labels == label).flatten()
    first, second = torch.triu_indices(members.numel(), members.numel(), offset=1)
    return members[first], members[second]


class DbiMixupOptions(genbench.Options):
    """Options of ``dbi-mixup``; the defaults are the authors'."""

    rounds: int = Field(
        10, ge=1, description="draws of examples whose Davies–Bouldin indices are averaged (computeOver // batchSize = 400 // 40)"
    )
    examples: int = Field(
        120, ge=3, description="examples per draw (three batches of 40); all of them when the training set is smaller"
    )
    pool: int = Field(
        4, ge=1, description="max-pooling window (and stride) over each spatial side of a conv feature map, 'valid'; 1 = none"
    )
    after_activation: bool = Field(
        True, description="read the first layer after the activation that follows it (the Keras layer's output includes its activation)"
    )
    mixup_batches: int = Field(10, ge=1, description="batches of the mixup accuracy")
    mixup_per_class: int = Field(10, ge=1, description="examples per class in a mixup batch: batch size = this × classes")
    mixup_lambda: float = Field(0.5, ge=0.0, le=1.0, description="mixing coefficient λ of a pair: λ·x_j + (1 − λ)·x_i")
    shuffle: bool = Field(
        True, description="cut the mixup batches from a random order of the training set (False: its stored order, as the authors' code)"
    )


class DbiMixup:
    """Davies–Bouldin index of the first layer's class clusters × (1 − within-class mixup accuracy).

    dbi-mixup = DB · (1 − A), the PGDL 2020 winner (Natekar & Sharma 2020, arXiv 2012.02775,
    "Representation Based Complexity Measures for Predicting Generalization in Deep Learning";
    github.com/parthnatekar/pgdl, complexity.py ``complexity`` (measure 'DBI, Mixup') and
    complexitymeasures.py ``complexityDB``/``complexityMixup``), on the training set:

    DB = (1/R) Σ_r DB(φ(X_r), y_r) over R = ``rounds`` (10) draws X_r of ``examples`` (120)
    training examples, DB(·) the Davies–Bouldin index (1/K) Σ_a max_{b≠a} (S_a + S_b)/‖c_a − c_b‖
    of the clusters of the training labels (sklearn's ``davies_bouldin_score``), and φ(x) the
    first layer's output — the output of the first nn.Linear/nn.Conv* module, after the
    activation that follows it (``after_activation``) — max-pooled over non-overlapping
    ``pool``×``pool`` windows (4×4, 'valid') on a conv map and flattened;

    A = (1/|C|) Σ_{c∈C} (1/|B_c|) Σ_{b∈B_c} (1/|P_bc|) Σ_{(i,j)∈P_bc} 1[argmax f(λ x_j + (1−λ) x_i) = c],
    λ = 0.5, over ``mixup_batches`` (10) batches of ``mixup_per_class`` × K (10·K) consecutive
    training examples; P_bc = every pair i < j of examples of class c in batch b, B_c the
    batches with at least one such pair, C the classes with at least one.

    Larger means worse-separated first-layer class clusters and less consistent predictions
    between examples of a class, which the authors read as a larger generalization gap (their
    competition entry is this value itself): a complexity. Labels are the training labels the
    model saw (corrupted ones included). Differences from their code (TensorFlow, PGDL's Keras
    models): a draw is ``examples`` distinct examples drawn with ``ctx.generator`` (theirs:
    three consecutive batches of 40 from ``dataset.repeat(-1).shuffle(5000, seed=1)``); the
    mixup batches are cut from a random order of the training set (``shuffle``; theirs: the
    dataset's stored order); an MLP's first layer is its first nn.Linear (their layer search
    accepts conv and pooling layers only); a pooling window is clipped to a map side smaller
    than it. Details: ``dbi``, ``mixup_accuracy``, ``layer``. NotApplicable on a model without
    linear or convolutional layers.
    """

    name: ClassVar[str] = "dbi-mixup"
    kind: ClassVar[Literal["complexity", "capability"]] = "complexity"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    Options: ClassVar[type[genbench.Options]] = DbiMixupOptions
    source: ClassVar[str] = (
        "Natekar & Sharma 2020, arXiv 2012.02775 (PGDL 2020 winner); github.com/parthnatekar/pgdl "
        "complexitymeasures.py complexityDB, complexityMixup"
    )

    @property
    def description(self) -> str:
        return "PGDL winner: Davies–Bouldin index of first-layer class clusters × (1 − within-class mixup accuracy)."

    def compute(self, ctx, options: DbiMixupOptions) -> genbench.Estimate:
        with one_thread_on_cpu(ctx.device):
            return self._compute(ctx, options)

    def _compute(self, ctx, options: DbiMixupOptions) -> genbench.Estimate:
        model, device = ctx.model, ctx.device
        layer_name, layer = first_layer(model, options.after_activation)
        inputs, labels = ctx.train_inputs, ctx.train_labels.cpu()
        n = ctx.num_train
        if torch.unique(labels).numel() < 2:
            raise NotApplicable("the Davies–Bouldin index needs at least two classes in the training labels")

        # DB: R draws of `examples` distinct training examples; features computed once per example.
        size = min(options.examples, n)
        draws = [torch.randperm(n, generator=ctx.generator)[:size] for _ in range(options.rounds)]
        needed = torch.unique(torch.cat(draws))
        where = torch.full((n,), -1, dtype=torch.int64)
        where[needed] = torch.arange(needed.numel())
        features = capture(
            model, layer, inputs[needed], device, transform=lambda t: max_pool_valid(t, options.pool)
        ).numpy()
        dbi = float(np.mean([davies_bouldin(features[where[d].numpy()], labels[d].numpy()) for d in draws]))

        # A: within-class mixup accuracy over consecutive batches of mixup_per_class × K examples.
        order = torch.randperm(n, generator=ctx.generator) if options.shuffle else torch.arange(n)
        batches = mixup_stream(order, options.mixup_per_class * ctx.num_classes, options.mixup_batches)
        lam = options.mixup_lambda
        per_class: dict[int, list[float]] = {}
        for batch in batches:
            batch_labels = labels[batch]
            for label in range(ctx.num_classes):
                first, second = within_class_pairs(batch_labels, label)
                if first.numel() == 0:
                    continue
                mixed = lam * inputs[batch[second]] + (1.0 - lam) * inputs[batch[first]]
                hits = (predicted_classes(model, mixed, device) == label).double().mean().item()
                per_class.setdefault(label, []).append(hits)
        if not per_class:
            raise NotApplicable("no class has two examples in a mixup batch, so there is no within-class mixup")
        accuracy = float(np.mean([np.mean(values) for values in per_class.values()]))
        return genbench.Estimate(
            dbi * (1.0 - accuracy),
            {"dbi": dbi, "mixup_accuracy": accuracy, "mixup_classes": len(per_class), "layer": layer_name},
        )
