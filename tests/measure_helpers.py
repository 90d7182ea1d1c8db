"""Shared helpers of the measure tests: tiny runs, contexts and plain-numpy forward passes.

Independent of genbench's measure code: expected values in the tests are computed with
these numpy helpers, never with the measures' own functions.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

import genbench
from genbench.datasets import Dataset
from genbench.engine import Retrainer
from genbench.measures.base import MeasureContext, RetrainJob, TrainingLog
from genbench.schemas import ComponentRef, CorruptionSpec, RunSpec, TrainConfig

CPU = torch.device("cpu")


def make_run(hidden: list[int], train: TrainConfig | None = None, seed: int = 0) -> RunSpec:
    return RunSpec(
        dataset=ComponentRef(name="digits"),
        model=ComponentRef(name="mlp", options={"hidden": hidden}),
        corruption=CorruptionSpec(),
        train=train or TrainConfig(),
        seed=seed,
    )


def make_dataset(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> Dataset:
    return Dataset(name="toy", x_train=x, y_train=y, x_test=x[:0], y_test=y[:0], num_classes=num_classes)


def make_ctx(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    initial: nn.Module | None = None,
    run: RunSpec | None = None,
) -> MeasureContext:
    run = run or make_run([4])
    log = TrainingLog(
        status="converged",
        steps=120,
        epochs=12.0,
        steps_to_fit=120,
        train_accuracy=1.0,
        train_loss=0.009,
        loss_curve=[(10, 0.7), (60, 0.1), (120, 0.009)],
    )
    return MeasureContext(
        spec=run,
        model=model.eval(),
        initial_model=(initial if initial is not None else copy.deepcopy(model)).eval(),
        train_inputs=x,
        train_labels=y,
        num_classes=num_classes,
        training_log=log,
        device=CPU,
        generator=torch.Generator().manual_seed(0),
        retrainer=Retrainer(run, make_dataset(x, y, num_classes), CPU),
    )


def linear_layers(model: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) of every nn.Linear, in order, as float64 numpy arrays."""
    out = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            out.append(
                (module.weight.detach().double().numpy().copy(), module.bias.detach().double().numpy().copy())
            )
    return out


def numpy_mlp(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Forward of Flatten → [Linear → ReLU]* → Linear, in float64 numpy."""
    layers = linear_layers(model)
    h = x.reshape(len(x), -1).astype(np.float64)
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def set_linear(layer: nn.Linear, weight, bias) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def seeded_mlp(widths: list[int], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(len(widths) - 2):
        layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def train_networks(retrainer, labels, seeds, num_classes=None, train_indices=None, train=None) -> list:
    """``retrainer.train`` of one job per row of ``labels`` [M, n] with ``seeds`` (and rows of
    ``train_indices``): the ``Retrained`` networks, in order."""
    jobs = [
        RetrainJob(
            labels=labels[i],
            seed=seed,
            train_indices=None if train_indices is None else train_indices[i],
            num_classes=num_classes,
            train=train,
        )
        for i, seed in enumerate(seeds)
    ]
    return retrainer.train(jobs)


class RecordingRetrainer:
    """Wraps a real Retrainer and records what a measure asked it to train, one entry per call:
    the jobs, their labels [M, n], seeds, classes, training rows [M, m] (or None) and recipe
    (of the first job), and the networks it returned (``models``: the modules)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[dict] = []

    def train(self, jobs):
        networks = self.inner.train(jobs)
        indices = [job.train_indices for job in jobs]
        self.calls.append(
            dict(
                jobs=list(jobs),
                labels=torch.stack([job.labels for job in jobs]).clone(),
                seeds=[job.seed for job in jobs],
                num_classes=jobs[0].num_classes,
                train_indices=None if all(i is None for i in indices) else torch.stack(indices).clone(),
                train=jobs[0].train,
                networks=networks,
                models=[network.model for network in networks],
            )
        )
        return networks

    def predict(self, model, inputs):
        return self.inner.predict(model, inputs)


# A well-formed measure that tests of the conformance kit break one rule at a time.
class Good:
    """Sum of the weights' absolute values.

    Σ_W Σ_ij |W_ij| over every parameter (a test measure)."""

    name = "good-measure"
    kind = "complexity"
    version = "1"
    requires: frozenset[str] = frozenset()
    Options = genbench.Options

    def compute(self, ctx, options):
        return sum(p.detach().abs().sum().item() for p in ctx.model.parameters())


#: Three tiny MLP runs on 120 digits (p_c 0, 0.5, 1), with the params measure: seconds to train.
TINY_GRID = {
    "datasets": [{"name": "digits", "subset": 120}],
    "models": [{"name": "mlp", "hidden": [16]}],
    "levels": [0.0, 0.5, 1.0],
    "seeds": [0],
    "measures": ["params"],
    "train": {"lr": 0.1, "schedule": "constant", "max_steps": 40},
}
