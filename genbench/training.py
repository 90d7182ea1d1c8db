"""The Trainer: device-resident data, vmapped ensembles, stop at interpolation.

Runs that share data shape, architecture and recipe train together as one
ensemble: the parameters of M members are stacked along a leading member axis
and trained with ``torch.func.functional_call`` under ``torch.func.vmap``. Each
member has its own initialization, data order and labels (and optionally its own
inputs and its own training subset), and stops on its own criterion; a stopped
member leaves the ensemble at once, so its weights are frozen and it costs
nothing more. The ensemble ends when every member has stopped or the step budget
is spent.

Stopping is decided on the full training set, evaluated at the end of an epoch, but
only once the member's running minibatch statistics over that epoch (computed on the
forward passes training makes anyway, before each update) come close to the criterion
(within ACCURACY_GATE of the target accuracy, or LOSS_GATE × the loss threshold):
evaluating every member at every epoch would cost a third of the training compute. The loss curve holds the epoch-mean minibatch
loss. SGD with momentum is applied to the stacked tensors exactly as
``torch.optim.SGD`` applies it to one model (buf = μ·buf + g; w -= lr·buf).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from genbench.schemas import TrainConfig

EVAL_CHUNK = 2048
#: In loss mode, a member is checked on its full training set at the end of an epoch
#: whose mean minibatch loss is at most LOSS_GATE × the threshold.
LOSS_GATE = 2.0
#: In accuracy mode, at a running minibatch accuracy of at least target − ACCURACY_GATE.
ACCURACY_GATE = 0.02

MemberStatus = Literal["converged", "budget", "diverged"]


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given, else ``cuda`` when present, else ``cpu``."""
    if requested:
        from genbench.errors import SpecError

        try:
            device = torch.device(requested)
        except RuntimeError:
            raise SpecError(f"unknown device '{requested}'; use cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SpecError(f"device '{requested}' requested but CUDA is not available here")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for ``purpose`` (e.g. "init", "data-order") from ``seed``."""
    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


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


@dataclass
class MemberOutcome:
    """How one member of an ensemble ended."""

    index: int
    status: MemberStatus
    steps: int
    epochs: float
    steps_to_fit: int | None
    train_accuracy: float
    train_loss: float
    loss_curve: list[tuple[int, float]]
    initial_state: dict[str, torch.Tensor]
    final_state: dict[str, torch.Tensor]
    wall_time: float


@dataclass
class _Member:
    index: int
    generator: torch.Generator
    augment_generator: torch.Generator
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    order: torch.Tensor | None = None


class EnsembleTrainer:
    """Trains M copies of one architecture at once. See the module docstring."""

    def __init__(self, config: TrainConfig, device: torch.device | str = "cpu", vmappable: bool = True) -> None:
        self.config = config
        self.device = torch.device(device)
        self.vmappable = vmappable

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
            config, device = self.config, self.device
            num_members = len(seeds)
            if labels.shape[0] != num_members:
                raise ValueError(f"labels has {labels.shape[0]} rows for {num_members} members")
            started = time.perf_counter()
            models = [build_initialized(build, seed) for seed in seeds]
            initial_states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]
            base = copy.deepcopy(models[0]).to("meta")
            params, buffers = stack_module_state([m.to(device) for m in models])
            params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
            momentum = {k: torch.zeros_like(v) for k, v in params.items()}

            inputs = inputs.to(device)
            labels = labels.to(device)
            if train_indices is None:
                train_indices = torch.arange(labels.shape[1]).expand(num_members, -1)
            train_indices = train_indices.to(device)
            subset_size = int(train_indices.shape[1])
            steps_per_epoch = math.ceil(subset_size / config.batch_size)
            members = [
                _Member(
                    i,
                    torch.Generator().manual_seed(derive_seed(seed, "data-order")),
                    torch.Generator().manual_seed(derive_seed(seed, "augmentation")),
                )
                for i, seed in enumerate(seeds)
            ]
            alive = torch.arange(num_members, device=device)
            outcomes: list[MemberOutcome] = []
            running = _zero_running(num_members, device)
            step = 0

            def finish(positions: list[int], status: list[MemberStatus], accuracy, loss) -> None:
                nonlocal params, buffers, momentum, alive, members, running
                for pos, member_status in zip(positions, status):
                    member = members[pos]
                    state = {k: v[pos].detach().to("cpu").clone() for k, v in params.items()}
                    state.update({k: v[pos].detach().to("cpu").clone() for k, v in buffers.items()})
                    fitted = member_status == "converged"
                    outcome = MemberOutcome(
                        index=member.index,
                        status=member_status,
                        steps=step,
                        epochs=step / steps_per_epoch,
                        steps_to_fit=step if fitted else None,
                        train_accuracy=float(accuracy[pos]),
                        train_loss=float(loss[pos]),
                        loss_curve=member.loss_curve,
                        initial_state=initial_states[member.index],
                        final_state=_ordered_like(initial_states[member.index], state),
                        wall_time=time.perf_counter() - started,
                    )
                    outcomes.append(outcome)
                    if on_member_done is not None:
                        on_member_done(outcome)
                keep = [i for i in range(len(members)) if i not in set(positions)]
                if not keep:
                    members = []
                    return
                keep_index = torch.tensor(keep, device=device)
                params = {k: v.detach()[keep_index].clone().requires_grad_(True) for k, v in params.items()}
                buffers = {k: v[keep_index].clone() for k, v in buffers.items()}
                momentum = {k: v[keep_index].clone() for k, v in momentum.items()}
                running = {k: (v[keep_index] if k != "seen" else v) for k, v in running.items()}
                alive = alive[keep_index]
                members = [members[i] for i in keep]

            while members and step < config.max_steps:
                epoch = step // steps_per_epoch
                offset = (step % steps_per_epoch) * config.batch_size
                if offset == 0:
                    for member in members:
                        member.order = torch.randperm(subset_size, generator=member.generator).to(device)
                order = torch.stack([m.order[offset : offset + config.batch_size] for m in members])
                batch = torch.gather(train_indices[alive], 1, order)
                x = inputs[alive[:, None], batch] if per_member_inputs else inputs[batch]
                if config.augment:
                    x = augment_batch(x, config.augment_padding, [m.augment_generator for m in members])
                y = labels[alive[:, None], batch]
                base.train()
                logits = self._forward(base, params, buffers, x)
                per_member = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(len(members), -1)
                with torch.no_grad():
                    running["correct"] += (logits.argmax(-1) == y).sum(dim=1)
                    running["loss"] += per_member.sum(dim=1)
                    running["seen"] += y.shape[1]
                per_member = per_member.mean(dim=1)
                grads = torch.autograd.grad(per_member.sum(), list(params.values()))
                lr = learning_rate(config, epoch)
                with torch.no_grad():
                    for (name, weight), grad in zip(params.items(), grads):
                        if config.weight_decay:
                            grad = grad + config.weight_decay * weight
                        buf = momentum[name]
                        buf.mul_(config.momentum).add_(grad)
                        weight.sub_(lr * buf)
                step += 1
                if on_step is not None:
                    on_step(len(members))

                diverged = [i for i, v in enumerate(per_member.detach().tolist()) if not math.isfinite(v)]
                end_of_epoch = step % steps_per_epoch == 0
                if diverged:
                    nan = [math.nan] * len(members)
                    finish(diverged, ["diverged"] * len(diverged), nan, nan)
                if members and (end_of_epoch or step >= config.max_steps):
                    running_accuracy = (running["correct"] / running["seen"]).cpu()
                    running_loss = (running["loss"] / running["seen"]).cpu()
                    for member, value in zip(members, running_loss.tolist()):
                        member.loss_curve.append((step, value))
                    if config.stop == "accuracy":
                        candidates = running_accuracy >= config.target_accuracy - ACCURACY_GATE
                    else:
                        candidates = running_loss <= LOSS_GATE * config.loss_threshold
                    running = _zero_running(len(members), device)
                    final = step >= config.max_steps
                    if final or bool(candidates.any()):
                        checked = torch.ones_like(candidates) if final else candidates
                        accuracy, loss = self._evaluate_some(
                            checked, base, params, buffers, inputs, labels, train_indices, alive, per_member_inputs
                        )
                        fitted = accuracy >= config.target_accuracy if config.stop == "accuracy" else loss <= config.loss_threshold
                        done = fitted | (checked & ~torch.isfinite(loss))
                        positions = [i for i, flag in enumerate(done.tolist()) if flag]
                        statuses: list[MemberStatus] = [
                            "converged" if math.isfinite(loss[i]) else "diverged" for i in positions
                        ]
                        if step >= config.max_steps:
                            rest = [i for i in range(len(members)) if i not in positions]
                            positions += rest
                            statuses += ["budget"] * len(rest)
                        if positions:
                            finish(positions, statuses, accuracy.tolist(), loss.tolist())
            return sorted(outcomes, key=lambda o: o.index)

    @contextlib.contextmanager
    def _model_randomness(self, seeds: list[int]) -> Iterator[None]:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(0, "model-randomness:" + ",".join(str(seed) for seed in seeds)))
            yield

    def _forward(self, base: nn.Module, params, buffers, x: torch.Tensor) -> torch.Tensor:
        if self.vmappable:
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
    def _evaluate_some(self, checked, base, params, buffers, inputs, labels, train_indices, alive, per_member_inputs):
        """``evaluate`` for the members flagged in ``checked``; NaN for the others."""
        chosen = checked.nonzero().flatten()
        index = chosen.to(self.device)
        accuracy, loss = self.evaluate(
            base,
            {k: v[index] for k, v in params.items()},
            {k: v[index] for k, v in buffers.items()},
            inputs,
            labels,
            train_indices,
            alive[index],
            per_member_inputs,
        )
        all_accuracy = torch.full((len(checked),), math.nan)
        all_loss = torch.full((len(checked),), math.nan)
        all_accuracy[chosen], all_loss[chosen] = accuracy, loss
        return all_accuracy, all_loss

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


def augment_batch(x: torch.Tensor, padding: int, generators: list[torch.Generator]) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per example, for a
    batch of image minibatches ``x`` [M, B, C, H, W]; member m draws from generators[m].

    Each image is padded by ``padding`` pixels on every side, a random H×W window is
    cut out (offsets uniform in [0, 2·padding]), and it is mirrored left-right with
    probability 1/2 — the augmentation of Zhang et al. 2017's "random crop" rows and of
    the usual CIFAR-10 recipes.
    """
    if x.dim() != 5:
        raise ValueError(f"augmentation needs image inputs (channels, height, width); got {tuple(x.shape[2:])}")
    members, batch, channels, height, width = x.shape
    offsets, flips = [], []
    for generator in generators:
        offsets.append(torch.randint(0, 2 * padding + 1, (batch, 2), generator=generator))
        flips.append(torch.rand(batch, generator=generator) < 0.5)
    offset = torch.stack(offsets).to(x.device)
    flip = torch.stack(flips).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offset[..., 0, None] + torch.arange(height, device=x.device)
    columns = torch.arange(width, device=x.device).expand(members, batch, width)
    columns = torch.where(flip[..., None], width - 1 - columns, columns) + offset[..., 1, None]
    full_width = width + 2 * padding
    cropped = padded.gather(3, rows[:, :, None, :, None].expand(members, batch, channels, height, full_width))
    return cropped.gather(4, columns[:, :, None, None, :].expand(members, batch, channels, height, width))


def _zero_running(members: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-member sums over the current epoch's minibatches (before each update)."""
    zeros = torch.zeros(members, device=device)
    return {"correct": zeros.clone(), "loss": zeros.clone(), "seen": torch.zeros((), device=device)}


def _ordered_like(reference: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: state[k] for k in reference}


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits of ``model`` (eval mode) on ``inputs``, in chunks, on ``device``; returned on CPU."""
    model = model.to(device).eval()
    outputs = [model(inputs[i : i + EVAL_CHUNK].to(device)).cpu() for i in range(0, len(inputs), EVAL_CHUNK)]
    return torch.cat(outputs) if outputs else torch.empty(0)


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    if len(labels) == 0:
        return math.nan, math.nan
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    loss = F.cross_entropy(logits, labels).item()
    return accuracy, loss
