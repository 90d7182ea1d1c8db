"""Retraining for measures: the jobs of many runs trained together, identical jobs once.

A measure that retrains (``RetrainingMeasure``) describes its networks as ``RetrainJob``s. The
evaluate stage adds the jobs of the runs of a training group (up to ``RUNS_PER_BATCH`` of them) to one
``RetrainingBatch``, which

1. resolves each job against its run (the run's inputs, classes and recipe unless the job says
   otherwise) and keys it by content — architecture, recipe, classes, seed, and digests of its
   labels, training subset and inputs — so that identical jobs (the two step-count measures'
   continuation of a run; the random labelings of ``rademacher``, the same for every run on the
   same inputs) are trained once;
2. groups the distinct jobs that can share an ensemble (same architecture, recipe, classes, input
   shape, number of examples and subset size) and trains each group through the run's trainer
   (``genbench.training.trainer_for``: stacked ensembles, or closed-form fits), in chunks that fit
   the memory budget;
3. hands each run its networks in job order (``Retrained``), restored on demand, with the
   training time of each network shared among the jobs that asked for it.

``Retrainer`` is the same for one run alone: ``ctx.retrainer.train(jobs)``.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from genbench.datasets import Dataset
from genbench.engine.data import run_trainer
from genbench.engine.train import members_that_fit
from genbench.inference import predict
from genbench.measures.base import Retrained, RetrainJob
from genbench.schemas import RunSpec, TrainingRecord, content_hash
from genbench.training import MemberOutcome, Trainer


def tensor_digest(named: Iterable[tuple[str, torch.Tensor]], salt: str = "") -> str:
    """sha256 of named tensors (names, shapes, dtypes and values; bfloat16 hashed as float32),
    after ``salt``: what a retraining job's labels, subset and inputs are keyed by."""
    digest = hashlib.sha256(salt.encode())
    for name, tensor in named:
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update((value.float() if value.dtype == torch.bfloat16 else value).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class _Network:
    """One distinct job: what trains it, and (after training) its outcome and cost."""

    run: RunSpec
    dataset: Dataset
    job: RetrainJob  # resolved: inputs, classes and recipe filled in
    ensemble: str
    requests: int = 0
    outcome: MemberOutcome | None = None
    trainer: Trainer | None = None
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Ticket:
    """What one run's measure asked for: its networks' keys, in job order."""

    keys: list[str] = field(default_factory=list)
    jobs: list[RetrainJob] = field(default_factory=list)


class RetrainingFailed(Exception):
    """A retraining ensemble failed; every job in it fails with this reason."""


class RetrainingBatch:
    """Collects retraining jobs of many runs, trains them as ensembles, hands back networks."""

    def __init__(self, device: torch.device, memory_budget: int | None = None) -> None:
        self.device = device
        self.memory_budget = memory_budget
        self._networks: dict[str, _Network] = {}
        self._digests: dict[int, tuple[torch.Tensor, str]] = {}

    @property
    def distinct_jobs(self) -> int:
        """How many distinct networks the jobs added so far ask for."""
        return len(self._networks)

    # -------------------------------------------------------------- jobs in
    def _digest(self, tensor: torch.Tensor | None, name: str) -> str | None:
        if tensor is None:
            return None
        known = self._digests.get(id(tensor))
        if known is None or known[0] is not tensor:
            known = (tensor, tensor_digest([(name, tensor)]))
            self._digests[id(tensor)] = known
        return known[1]

    def _resolved(self, run: RunSpec, dataset: Dataset, job: RetrainJob) -> RetrainJob:
        """``job`` with the run's inputs, classes and recipe filled in, on the CPU, checked (a job
        that could not train fails here, alone, not inside an ensemble with other jobs)."""
        inputs = (dataset.x_train if job.inputs is None else job.inputs).detach().cpu()
        n = inputs.shape[0]
        if tuple(inputs.shape[1:]) != tuple(dataset.x_train.shape[1:]) or not inputs.is_floating_point():
            raise ValueError(
                f"a retraining job's inputs must be floats shaped [n, {', '.join(map(str, dataset.x_train.shape[1:]))}]; "
                f"got {inputs.dtype} {tuple(inputs.shape)}"
            )
        labels = job.labels.detach().to("cpu", torch.int64)
        classes = dataset.num_classes if job.num_classes is None else int(job.num_classes)
        if labels.shape != (n,):
            raise ValueError(f"a retraining job needs one label per training example ({n}); got {tuple(labels.shape)}")
        if n and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            raise ValueError(f"a retraining job's labels must lie in [0, {classes}); got [{int(labels.min())}, {int(labels.max())}]")
        indices = None if job.train_indices is None else job.train_indices.detach().to("cpu", torch.int64).reshape(-1)
        if indices is not None:
            if len(indices) == 0 or int(indices.min()) < 0 or int(indices.max()) >= n:
                raise ValueError(f"a retraining job's train_indices must be non-empty and lie in [0, {n})")
            if len(indices) == n and torch.equal(indices, torch.arange(n)):
                indices = None  # every example, in order: the same job as none given
        return RetrainJob(
            labels=labels,
            seed=int(job.seed),
            train_indices=indices,
            inputs=inputs,
            num_classes=classes,
            train=run.train if job.train is None else job.train,
        )

    def add(self, run: RunSpec, dataset: Dataset, jobs: list[RetrainJob]) -> Ticket:
        """Register ``jobs`` of ``run`` (whose training data is ``dataset``); returns the ticket that
        ``networks`` takes once ``train`` has run."""
        ticket = Ticket()
        resolved_jobs = [self._resolved(run, dataset, job) for job in jobs]  # all checked before any is added
        for job, resolved in zip(jobs, resolved_jobs):
            n = resolved.inputs.shape[0]
            ensemble = content_hash(
                {
                    "model": run.model.model_dump(mode="json"),
                    "train": resolved.train.model_dump(mode="json"),
                    "classes": resolved.num_classes,
                    "input_shape": list(resolved.inputs.shape[1:]),
                    "n": n,
                    "m": n if resolved.train_indices is None else len(resolved.train_indices),
                }
            )
            key = content_hash(
                {
                    "ensemble": ensemble,
                    "seed": resolved.seed,
                    "labels": self._digest(resolved.labels, "labels"),
                    "indices": self._digest(resolved.train_indices, "indices"),
                    "inputs": self._digest(resolved.inputs, "inputs"),
                }
            )
            network = self._networks.get(key)
            if network is None:
                network = self._networks[key] = _Network(run, dataset, resolved, ensemble)
            network.requests += 1
            ticket.keys.append(key)
            ticket.jobs.append(job)
        return ticket

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Train every job not trained yet, ensemble by ensemble; a failure fails that ensemble's jobs."""
        groups: dict[str, list[_Network]] = defaultdict(list)
        for network in self._networks.values():
            if network.outcome is None and network.error is None:
                groups[network.ensemble].append(network)
        for members in groups.values():
            try:
                trainer = run_trainer(members[0].run, members[0].dataset, self.device,
                                      members[0].job.num_classes, members[0].job.train)
                size = self._members_that_fit(trainer, members)
            except Exception as exc:  # noqa: BLE001 - recorded on every job of the group
                for network in members:
                    network.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                continue
            for start in range(0, len(members), size):
                self._train_chunk(trainer, members[start : start + size])

    def _members_that_fit(self, trainer: Trainer, members: list[_Network]) -> int:
        first = members[0].job
        own_inputs = any(network.job.inputs is not first.inputs for network in members[1:])
        return members_that_fit(
            trainer, tuple(first.inputs.shape[1:]), first.inputs.shape[0], first.train.batch_size, own_inputs,
            self.memory_budget, self.device,
        )

    def _train_chunk(self, trainer: Trainer, members: list[_Network]) -> None:
        """Train ``members`` as one ensemble; if that fails, each one alone, so that one job that
        cannot train fails alone (with its own reason)."""
        try:
            self._fit(trainer, members)
        except Exception as exc:  # noqa: BLE001 - retried member by member, then recorded
            if len(members) == 1:
                members[0].error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                return
            for network in members:
                self._train_chunk(trainer, [network])

    def _fit(self, trainer: Trainer, members: list[_Network]) -> None:
        jobs = [network.job for network in members]
        shared = all(job.inputs is jobs[0].inputs for job in jobs)
        inputs = jobs[0].inputs if shared else torch.stack([job.inputs for job in jobs])
        labels = torch.stack([job.labels for job in jobs])
        indices = None
        if any(job.train_indices is not None for job in jobs):
            everything = torch.arange(labels.shape[1])
            indices = torch.stack([everything if job.train_indices is None else job.train_indices for job in jobs])
        started = time.perf_counter()
        outcomes = trainer.fit(inputs, labels, [job.seed for job in jobs], train_indices=indices,
                               per_member_inputs=not shared)
        share = (time.perf_counter() - started) / len(members)
        for outcome in outcomes:
            network = members[outcome.index]
            network.outcome, network.trainer, network.seconds = outcome, trainer, share

    # ------------------------------------------------------------ networks out
    def networks(self, ticket: Ticket, device: torch.device | None = None) -> list[Retrained]:
        """The trained networks of ``ticket``, in job order; raises ``RetrainingFailed`` when one failed."""
        retrained = []
        for key, job in zip(ticket.keys, ticket.jobs):
            network = self._networks[key]
            if network.error is not None:
                raise RetrainingFailed(f"retraining failed: {network.error}")
            if network.outcome is None:
                raise RuntimeError("RetrainingBatch.networks called before train")
            model = network.trainer.restore(network.outcome.final_state).to(device or self.device).eval()
            log = TrainingRecord.of(network.outcome) if network.trainer.takes_steps else None
            retrained.append(Retrained(job=job, model=model, log=log))
        return retrained

    def seconds(self, ticket: Ticket) -> float:
        """The training time of the ticket's networks, each shared among the jobs that asked for it."""
        return sum(self._networks[key].seconds / self._networks[key].requests for key in ticket.keys)


class Retrainer:
    """``ctx.retrainer``: trains a run's architecture with its recipe on other labels, now, for this
    run alone (the evaluate stage batches the jobs of many runs instead)."""

    def __init__(self, run: RunSpec, dataset: Dataset, device: torch.device, memory_budget: int | None = None) -> None:
        self.run, self.dataset, self.device, self.memory_budget = run, dataset, device, memory_budget

    def train(self, jobs: list[RetrainJob]) -> list[Retrained]:
        """One ``Retrained`` per job, in order (identical jobs are trained once)."""
        batch = RetrainingBatch(self.device, self.memory_budget)
        ticket = batch.add(self.run, self.dataset, jobs)
        batch.train()
        return batch.networks(ticket)

    def fit(self, labels, seeds, num_classes=None, train_indices=None, inputs=None, train=None) -> list[nn.Module]:
        """The earlier form of ``train``: networks trained on ``labels`` [M, n] with ``seeds`` (one
        per member), ``train_indices`` [M, m] rows, shared ``inputs`` and recipe ``train``."""
        return [network.model for network in self.fit_with_outcomes(labels, seeds, num_classes, train_indices, inputs, train)]

    def fit_with_outcomes(self, labels, seeds, num_classes=None, train_indices=None, inputs=None, train=None):
        """As ``fit``, with each network's training record: (model, record) pairs, record None for
        a closed-form fit."""
        jobs = [
            RetrainJob(
                labels=labels[i], seed=seed, train_indices=None if train_indices is None else train_indices[i],
                inputs=inputs, num_classes=num_classes, train=train,
            )
            for i, seed in enumerate(seeds)
        ]
        return [(network.model, network.log) for network in self.train(jobs)]

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of ``model`` on ``inputs`` (on the CPU)."""
        return predict(model, inputs, self.device)
