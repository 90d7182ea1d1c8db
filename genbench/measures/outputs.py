"""Output-based measures: what the network's softmax says about its own training set."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from genbench.measures.base import BaseMeasure, Estimate, MeasureContext, standard_error
from genbench.measures.base import on_cpu_one_thread
from genbench.inference import predict


def training_log_probabilities(ctx: MeasureContext) -> torch.Tensor:
    """log softmax of the model's logits on the training inputs, [n, classes], float64 on CPU
    (one intra-op thread on CPU: the forward pass of a small network gains nothing from more,
    and on a busy shared CPU threads waiting on each other slowed it several times)."""
    with on_cpu_one_thread(ctx):
        logits = predict(ctx.model, ctx.train_inputs, ctx.device).double()
    return F.log_softmax(logits, dim=1)


def softmax_entropies(log_probabilities: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ_j p_j log p_j per row (nats), with 0·log 0 = 0."""
    probabilities = log_probabilities.exp()
    terms = torch.where(probabilities == 0, torch.zeros_like(probabilities), probabilities * log_probabilities)
    return -terms.sum(dim=1)


def mean_with_stderr(values: torch.Tensor) -> Estimate:
    """The mean of ``values`` with its standard error (sample std / sqrt(n)) in the details."""
    return Estimate(values.mean().item(), {"stderr": standard_error(values), "examples": values.numel()})


class OutputEntropy(BaseMeasure):
    """Mean entropy of the softmax output over the training set (nats).

    output-entropy = (1/m) Σ_i H(softmax(f(x_i))),  H(p) = −Σ_j p_j log p_j,
    over the m training examples, with natural logarithms (0 ≤ H ≤ log K for K classes).

    Sign: the value is the plain mean entropy, read as a complexity. Every run is
    trained to the same stopping target (100 % training accuracy, or a fixed
    cross-entropy), so a run that ends less confident on its own training set is one
    whose labels were harder to fit — memorized rather than learned — and such runs
    have the larger gap. The confidence-penalty argument of Pereyra et al. 2017 (low
    entropy = overconfidence = overfitting) predicts the opposite sign; the ranking
    correlation reports which one holds. Source: Jiang et al. 2020, "Fantastic
    generalization measures" (output-based baselines); Pereyra et al. 2017,
    "Regularizing neural networks by penalizing confident output distributions".
    The standard error over examples is reported in the details; NaN for a diverged
    model.
    """

    name: ClassVar[str] = "output-entropy"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    source: ClassVar[str] = (
        "Jiang et al. 2020, 'Fantastic generalization measures' (output-based baselines); "
        "Pereyra et al. 2017 (confidence penalty)"
    )

    def compute(self, ctx: MeasureContext, options) -> Estimate:
        return mean_with_stderr(softmax_entropies(training_log_probabilities(ctx)))


class CrossEntropy(BaseMeasure):
    """Mean training cross-entropy with the labels the model was trained on (nats).

    cross-entropy = (1/m) Σ_i −log softmax(f(x_i))_{y_i},  y_i = the training label
    (corrupted labels included), over the whole training set with the model in eval
    mode (batch norm uses its running statistics).

    Sign: the plain loss, read as a complexity: when every run stops at the same
    target (100 % training accuracy), the runs that end with a larger training loss are
    those whose labels were harder to fit, which is what label noise does. Jiang et al.
    2020 and Dziugaite et al. 2020 list it as a baseline and train every model to
    cross-entropy 0.01, where it carries almost no signal; on runs stopped at 100 %
    accuracy it varies. Source: Jiang et al. 2020, "Fantastic generalization measures",
    measure "cross-entropy"; Dziugaite et al. 2020, "In search of robust measures of
    generalization". The standard error over examples is reported in the details; NaN
    for a diverged model.
    """

    name: ClassVar[str] = "cross-entropy"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    source: ClassVar[str] = (
        "Jiang et al. 2020, 'Fantastic generalization measures', measure 'cross-entropy'; "
        "Dziugaite et al. 2020, 'In search of robust measures of generalization'"
    )

    def compute(self, ctx: MeasureContext, options) -> Estimate:
        log_probabilities = training_log_probabilities(ctx)
        labels = ctx.train_labels.to(log_probabilities.device)
        losses = -log_probabilities.gather(1, labels[:, None]).squeeze(1)
        return mean_with_stderr(losses)


MEASURES = (OutputEntropy, CrossEntropy)
