"""The Trainer: device-resident data, vmapped ensembles, stop at interpolation.

Runs that share data shape, architecture and recipe train together as one
ensemble: the parameters of M members are stacked along a leading member axis
and trained with ``torch.func.functional_call`` under ``torch.func.vmap``. Each
member has its own initialization, data order and labels (and optionally its own
inputs and its own training subset), and stops on its own criterion; a stopped
member leaves the ensemble at once, so its weights are frozen and it costs
nothing more. The ensemble ends when every member has stopped or the step budget
is spent.

Members with the same seed and training subset form a cohort: they draw the same
minibatches (one permutation per cohort and epoch). Networks built as an
``nn.Sequential`` of plain layers (the MLPs, the conv net) run without ``vmap``, as
patch products, grouped convolutions with the members inside the channel axis and
batched products (``genbench.training.stacked_forward``): the same arithmetic (dropout masks
come from another random stream), ≈ 1.4× faster per step for the conv net on a CPU; a
cohort then shares the patches of its minibatch in the first convolution.

Stopping is decided on the full training set, evaluated at the end of an epoch, but
only once the member's running minibatch statistics over that epoch (computed on the
forward passes training makes anyway, before each update) come close to the criterion
(within ACCURACY_GATE of the target accuracy, or LOSS_GATE × the loss threshold):
evaluating every member at every epoch would cost a third of the training compute.
The loss curve holds the epoch-mean minibatch loss; a member whose epoch-mean loss is
not finite stops there as "diverged" (checked once an epoch, so that training never
waits for the device in between). With ``early_stopping_patience`` each member also
scores a held-out part of its examples at every epoch end (``genbench.training.early_stopping``).
SGD with momentum is applied to the stacked tensors exactly as ``torch.optim.SGD``
applies it to one model (buf = μ·buf + g; w -= lr·buf), as fused ``torch._foreach_*``
updates over all parameter tensors.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from genbench.inference import EVAL_CHUNK
from genbench.seeding import derive_seed
from genbench.training.augment import augment_apply, augment_draws
from genbench.training.early_stopping import validation_split
from pydantic import ConfigDict, Field

from genbench.schemas import RunStatus, TrainConfig, TrainingRecord
from genbench.training.stacked_forward import stacked_forward, stacked_plan

#: In loss mode, a member is checked on its full training set at the end of an epoch
#: whose mean minibatch loss is at most LOSS_GATE × the threshold.
LOSS_GATE = 2.0
#: In accuracy mode, at a running minibatch accuracy of at least target − ACCURACY_GATE.
ACCURACY_GATE = 0.02

MemberStatus = RunStatus


def build_initialized(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model whose random initialization is drawn from ``seed`` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return build()


def learning_rate(config: TrainConfig, epoch: int) -> float:
    if config.schedule == "exponential":
        return config.lr * config.lr_decay**epoch
    if config.schedule == "step":
        return config.lr * config.lr_decay ** (epoch // config.step_epochs)
    return config.lr


class MemberOutcome(TrainingRecord):
    """How one member of an ensemble ended: its training record, its initial and final states,
    and (with early stopping) ``validation_accuracy``, the held-out accuracy of the returned
    weights; ``diagnostics`` are a closed-form fit's numbers."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    index: int
    initial_state: dict[str, torch.Tensor]
    final_state: dict[str, torch.Tensor]
    wall_time: float
    validation_accuracy: float | None = None
    diagnostics: dict[str, float] = Field(default_factory=dict)


@dataclass
class _Cohort:
    """Members with the same seed and training subset: they draw the same minibatches."""

    row: int  # a member whose train_indices row is the cohort's
    generator: torch.Generator
    augment_generator: torch.Generator
    order: torch.Tensor | None = None


@dataclass
class _Member:
    index: int
    cohort: int
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    best_accuracy: float = -math.inf  # held-out accuracy of the best epoch so far
    best_epoch: int = 0
    last_validation: float = math.nan


class _Layout:
    """Where the cohorts of the alive members lie in the stacked tensors (contiguous spans)."""

    def __init__(self, members: list[_Member], cohorts: list[_Cohort], train_indices: torch.Tensor) -> None:
        self.cohorts: list[int] = []
        self.spans: list[tuple[int, int]] = []
        for position, member in enumerate(members):
            if self.cohorts and self.cohorts[-1] == member.cohort:
                self.spans[-1] = (self.spans[-1][0], position + 1)
            else:
                self.cohorts.append(member.cohort)
                self.spans.append((position, position + 1))
        device = train_indices.device
        #: each member's cohort, on the host (indexes the host-side augmentation draws without a
        #: readback from the device) and on the device
        self.member_cohort_host = torch.tensor([g for g, (start, end) in enumerate(self.spans) for _ in range(start, end)])
        self.member_cohort = self.member_cohort_host.to(device)
        self.rows = train_indices[torch.tensor([cohorts[c].row for c in self.cohorts], device=device)]


def _cohorts(seeds: list[int], train_indices: torch.Tensor) -> tuple[list[_Cohort], list[int]]:
    """The distinct (seed, training subset) pairs, and each member's cohort."""
    keys: dict[tuple[int, bytes], int] = {}
    cohorts: list[_Cohort] = []
    member_cohort = []
    rows = train_indices.cpu()
    for i, seed in enumerate(seeds):
        key = (int(seed), rows[i].numpy().tobytes())
        if key not in keys:
            keys[key] = len(cohorts)
            cohorts.append(
                _Cohort(
                    i,
                    torch.Generator().manual_seed(derive_seed(seed, "data-order")),
                    torch.Generator().manual_seed(derive_seed(seed, "augmentation")),
                )
            )
        member_cohort.append(keys[key])
    return cohorts, member_cohort


class EnsembleTrainer:
    """Trains M copies of one architecture at once. See the module docstring."""

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device | str = "cpu",
        vmappable: bool = True,
        stacked: bool = True,
    ) -> None:
        """``stacked``: run the models that ``genbench.training.stacked_forward`` accepts (plain
        Sequential MLPs and conv nets) without ``vmap`` (``False`` forces ``vmap``, for
        comparison)."""
        self.config = config
        self.device = torch.device(device)
        self.vmappable = vmappable
        self.stacked = stacked
        self._plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def fit(
        self,
        build: Callable[[], nn.Module],
        inputs: torch.Tensor,
        labels: torch.Tensor,
        seeds: list[int],
        train_indices: torch.Tensor | None = None,
        per_member_inputs: bool = False,
        on_member_done: Callable[[MemberOutcome], None] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> list[MemberOutcome]:
        """Train ``len(seeds)`` members; ``labels`` is [M, n]; ``inputs`` is [n, ...]
        (shared) or [M, n, ...] with ``per_member_inputs``; ``train_indices`` [M, m]
        restricts member i to examples ``train_indices[i]`` (default: all n).

        Random operations inside the model (dropout) draw from a generator seeded by the
        members' seeds, so a run is reproducible; with dropout its masks depend on which
        members share the ensemble."""
        with self._model_randomness(seeds):
            return _Fit(self, build, inputs, labels, seeds, train_indices, per_member_inputs, on_member_done, on_step).run()

    @contextlib.contextmanager
    def _model_randomness(self, seeds: list[int]) -> Iterator[None]:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(0, "model-randomness:" + ",".join(str(seed) for seed in seeds)))
            yield

    def _plan(self, base: nn.Module):
        if not (self.stacked and self.vmappable):
            return None
        if base not in self._plans:
            self._plans[base] = stacked_plan(base)
        return self._plans[base]

    def _forward(self, base: nn.Module, params, buffers, x: torch.Tensor, spans=None) -> torch.Tensor:
        """Logits [M, B, classes]; ``x`` is [M, B, …], or [G, B, …] shared by the members
        of each of the ``spans`` (contiguous ranges of members)."""
        plan = self._plan(base)
        if plan is not None:
            return stacked_forward(plan, params, x, spans)
        if spans is not None:
            x = torch.cat([x[g].expand(end - start, *x.shape[1:]) for g, (start, end) in enumerate(spans)])
        # one member (a run alone, the last member of an ensemble, a retraining) skips vmap:
        # its batching adds ≈ 35 % per step for a small MLP on a CPU and gains nothing
        if self.vmappable and x.shape[0] > 1:
            # randomness="different": each member draws its own dropout masks
            forward = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), randomness="different")
            return forward(params, buffers, x)
        outputs = []
        for i in range(x.shape[0]):
            member_params = {k: v[i] for k, v in params.items()}
            member_buffers = {k: v[i] for k, v in buffers.items()}
            outputs.append(functional_call(base, (member_params, member_buffers), (x[i],)))
        return torch.stack(outputs)

    @torch.no_grad()
    def evaluate(self, base, params, buffers, inputs, labels, train_indices, alive, per_member_inputs):
        """Accuracy and mean cross-entropy of every alive member on its training subset."""
        base.eval()
        indices = train_indices[alive]
        correct = torch.zeros(len(alive), device=self.device)
        total_loss = torch.zeros(len(alive), device=self.device)
        for start in range(0, indices.shape[1], EVAL_CHUNK):
            chunk = indices[:, start : start + EVAL_CHUNK]
            x = inputs[alive[:, None], chunk] if per_member_inputs else inputs[chunk]
            y = labels[alive[:, None], chunk]
            logits = self._forward(base, params, buffers, x)
            correct += (logits.argmax(-1) == y).sum(dim=1)
            losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(len(alive), -1)
            total_loss += losses.sum(dim=1)
        base.train()
        size = indices.shape[1]
        return (correct / size).cpu(), (total_loss / size).cpu()


class _Fit:
    """One call of ``EnsembleTrainer.fit``: the ensemble's state and its training loop."""

    def __init__(self, trainer, build, inputs, labels, seeds, train_indices, per_member_inputs, on_member_done, on_step):
        self.trainer, self.config, self.device = trainer, trainer.config, trainer.device
        config, device = self.config, self.device
        num_members = len(seeds)
        if labels.shape[0] != num_members:
            raise ValueError(f"labels has {labels.shape[0]} rows for {num_members} members")
        self.started = time.perf_counter()
        self.on_member_done, self.on_step = on_member_done, on_step
        self.per_member_inputs = per_member_inputs
        self.inputs, self.labels = inputs.to(device), labels.to(device)
        if train_indices is None:
            train_indices = torch.arange(labels.shape[1]).expand(num_members, -1)
        self.held_out = None
        if config.early_stopping_patience is not None:
            train_indices, self.held_out = validation_split(train_indices, seeds, config.validation_fraction)
            self.held_out = self.held_out.to(device)
        self.train_indices = train_indices.to(device)
        self.cohorts, cohort_of = _cohorts(seeds, self.train_indices)
        # members of one cohort sit next to each other in the stacked tensors
        ranked = sorted(range(num_members), key=lambda i: cohort_of[i])
        models = {i: build_initialized(build, seeds[i]) for i in ranked}
        self.initial_states = {i: {k: v.detach().clone() for k, v in m.state_dict().items()} for i, m in models.items()}
        self.base = copy.deepcopy(models[ranked[0]]).to("meta")
        params, self.buffers = stack_module_state([models[i].to(device) for i in ranked])
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.momentum = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.best = None
        if self.held_out is not None:
            self.best = {k: v.detach().clone() for k, v in [*self.params.items(), *self.buffers.items()]}
        self.alive = torch.tensor(ranked, device=device)
        self.members = [_Member(i, cohort_of[i]) for i in ranked]
        self.layout = _Layout(self.members, self.cohorts, self.train_indices)
        self.subset_size = int(self.train_indices.shape[1])
        self.steps_per_epoch = math.ceil(self.subset_size / config.batch_size)
        self.outcomes: list[MemberOutcome] = []
        self.running = _zero_running(num_members, device)
        self.step = 0

    def run(self) -> list[MemberOutcome]:
        config = self.config
        while self.members and self.step < config.max_steps:
            self.train_step()
            if self.step % self.steps_per_epoch == 0 or self.step >= config.max_steps:
                self.epoch_end()
        return sorted(self.outcomes, key=lambda o: o.index)

    def minibatch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ([cohorts, B, ...] when shared, else [M, B, ...]) and labels [M, B] of this step."""
        config, layout = self.config, self.layout
        offset = (self.step % self.steps_per_epoch) * config.batch_size
        if offset == 0:
            for c in layout.cohorts:
                cohort = self.cohorts[c]
                cohort.order = torch.randperm(self.subset_size, generator=cohort.generator).to(self.device)
        order = torch.stack([self.cohorts[c].order[offset : offset + config.batch_size] for c in layout.cohorts])
        batch = torch.gather(layout.rows, 1, order)
        member_batch = batch[layout.member_cohort]
        y = self.labels[self.alive[:, None], member_batch]
        x = self.inputs[self.alive[:, None], member_batch] if self.per_member_inputs else self.inputs[batch]
        if config.augment:
            generators = [self.cohorts[c].augment_generator for c in layout.cohorts]
            offsets, flips = augment_draws(generators, batch.shape[1], config.augment_padding)
            if self.per_member_inputs:
                offsets, flips = offsets[layout.member_cohort_host], flips[layout.member_cohort_host]
            x = augment_apply(x, config.augment_padding, offsets, flips)
        return x, y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training-mode logits [M, B, classes] of the alive members."""
        self.base.train()
        spans = None if self.per_member_inputs else self.layout.spans
        return self.trainer._forward(self.base, self.params, self.buffers, x, spans)

    def train_step(self) -> None:
        config = self.config
        x, y = self.minibatch()
        logits = self.forward(x)
        per_member = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(len(self.members), -1)
        with torch.no_grad():
            self.running["correct"] += (logits.argmax(-1) == y).sum(dim=1)
            self.running["loss"] += per_member.sum(dim=1)
            self.running["seen"] += y.shape[1]
        weights = list(self.params.values())
        grads = torch.autograd.grad(per_member.mean(dim=1).sum(), weights)
        lr = learning_rate(config, self.step // self.steps_per_epoch)
        with torch.no_grad():
            if config.weight_decay:
                grads = torch._foreach_add(grads, weights, alpha=config.weight_decay)
            buffers = list(self.momentum.values())
            torch._foreach_mul_(buffers, config.momentum)
            torch._foreach_add_(buffers, grads)
            torch._foreach_add_(weights, buffers, alpha=-lr)
        self.step += 1
        if self.on_step is not None:
            self.on_step(len(self.members))

    def epoch_end(self) -> None:
        """Loss curve, divergence, the held-out score, and the gated full-set stop check."""
        config = self.config
        running_accuracy = (self.running["correct"] / self.running["seen"]).cpu()
        running_loss = (self.running["loss"] / self.running["seen"]).cpu()
        self.running = _zero_running(len(self.members), self.device)
        for member, value in zip(self.members, running_loss.tolist()):
            member.loss_curve.append((self.step, value))
        finite = torch.isfinite(running_loss)
        if self.held_out is not None:
            self.track_best()
        if config.stop == "accuracy":
            candidates = running_accuracy >= config.target_accuracy - ACCURACY_GATE
        else:
            candidates = running_loss <= LOSS_GATE * config.loss_threshold
        final = self.step >= config.max_steps
        checked = (torch.ones_like(candidates) if final else candidates) & finite
        accuracy, loss = self.evaluate_flagged(checked)
        fitted = accuracy >= config.target_accuracy if config.stop == "accuracy" else loss <= config.loss_threshold
        epochs = self.step // self.steps_per_epoch
        patience = config.early_stopping_patience
        positions, statuses = [], []
        for i, member in enumerate(self.members):
            status: MemberStatus | None = None
            if not finite[i] or (checked[i] and not math.isfinite(loss[i])):
                status = "diverged"
            elif fitted[i]:
                status = "converged"
            elif patience is not None and epochs - member.best_epoch >= patience:
                status = "early-stopped"
            elif final:
                status = "budget"
            if status is not None:
                positions.append(i)
                statuses.append(status)
        if positions:
            self.finish(positions, statuses, accuracy.tolist(), loss.tolist())

    def evaluate_members(self, params, buffers, rows: torch.Tensor, alive: torch.Tensor):
        """Accuracy and mean cross-entropy of the members ``alive`` (with ``params``, ``buffers``) on
        their example rows ``rows`` of this fit's data."""
        return self.trainer.evaluate(
            self.base, params, buffers, self.inputs, self.labels, rows, alive, self.per_member_inputs
        )

    @torch.no_grad()
    def evaluate_flagged(self, checked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``evaluate_members`` on their training subsets for the members flagged in ``checked``;
        NaN for the others."""
        chosen = checked.nonzero().flatten()
        all_accuracy = torch.full((len(checked),), math.nan)
        all_loss = torch.full((len(checked),), math.nan)
        if len(chosen) == 0:
            return all_accuracy, all_loss
        index = chosen.to(self.device)
        accuracy, loss = self.evaluate_members(
            {k: v[index] for k, v in self.params.items()},
            {k: v[index] for k, v in self.buffers.items()},
            self.train_indices,
            self.alive[index],
        )
        all_accuracy[chosen], all_loss[chosen] = accuracy, loss
        return all_accuracy, all_loss

    @torch.no_grad()
    def track_best(self) -> None:
        """Held-out accuracy of every alive member; keep the weights of each one's best epoch."""
        accuracy, _ = self.evaluate_members(self.params, self.buffers, self.held_out, self.alive)
        improved = []
        for i, (member, value) in enumerate(zip(self.members, accuracy.tolist())):
            member.last_validation = value
            if value > member.best_accuracy:
                member.best_accuracy, member.best_epoch = value, self.step // self.steps_per_epoch
                improved.append(i)
        if improved:
            index = torch.tensor(improved, device=self.device)
            for name, value in [*self.params.items(), *self.buffers.items()]:
                self.best[name][index] = value.detach()[index]

    def restore_best(self, positions: list[int], accuracy: list[float], loss: list[float]) -> dict[int, dict]:
        """States of the best held-out epochs of ``positions``, with their training accuracy and loss."""
        index = torch.tensor(positions, device=self.device)
        params = {k: self.best[k][index] for k in self.params}
        buffers = {k: self.best[k][index] for k in self.buffers}
        best_accuracy, best_loss = self.evaluate_members(params, buffers, self.train_indices, self.alive[index])
        states = {}
        for j, pos in enumerate(positions):
            accuracy[pos], loss[pos] = float(best_accuracy[j]), float(best_loss[j])
            states[pos] = {k: v[j].to("cpu").clone() for k, v in [*params.items(), *buffers.items()]}
        return states

    def finish(self, positions: list[int], statuses: list[MemberStatus], accuracy: list[float], loss: list[float]) -> None:
        """Record the outcomes of the members at ``positions`` and drop them from the ensemble."""
        restored = [p for p, s in zip(positions, statuses) if s in ("early-stopped", "budget")]
        best_states = self.restore_best(restored, accuracy, loss) if self.best is not None and restored else {}
        for pos, status in zip(positions, statuses):
            member = self.members[pos]
            if pos in best_states:
                state, validation = best_states[pos], member.best_accuracy
            else:
                state = {k: v[pos].detach().to("cpu").clone() for k, v in [*self.params.items(), *self.buffers.items()]}
                validation = member.last_validation
            initial = self.initial_states[member.index]
            outcome = MemberOutcome(
                index=member.index,
                status=status,
                steps=self.step,
                epochs=self.step / self.steps_per_epoch,
                steps_to_fit=self.step if status == "converged" else None,
                train_accuracy=float(accuracy[pos]),
                train_loss=float(loss[pos]),
                loss_curve=member.loss_curve,
                initial_state=initial,
                final_state={k: state[k] for k in initial},
                wall_time=time.perf_counter() - self.started,
                validation_accuracy=validation if self.held_out is not None else None,
            )
            self.outcomes.append(outcome)
            if self.on_member_done is not None:
                self.on_member_done(outcome)
        gone = set(positions)
        keep = [i for i in range(len(self.members)) if i not in gone]
        self.members = [self.members[i] for i in keep]
        if not keep:
            return
        index = torch.tensor(keep, device=self.device)
        self.params = {k: v.detach()[index].clone().requires_grad_(True) for k, v in self.params.items()}
        self.buffers = {k: v[index].clone() for k, v in self.buffers.items()}
        self.momentum = {k: v[index].clone() for k, v in self.momentum.items()}
        if self.best is not None:
            self.best = {k: v[index].clone() for k, v in self.best.items()}
        self.running = {k: (v[index] if k != "seen" else v) for k, v in self.running.items()}
        self.alive = self.alive[index]
        self.layout = _Layout(self.members, self.cohorts, self.train_indices)


def _zero_running(members: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-member sums over the current epoch's minibatches (before each update)."""
    zeros = torch.zeros(members, device=device)
    return {"correct": zeros.clone(), "loss": zeros.clone(), "seen": torch.zeros((), device=device)}
