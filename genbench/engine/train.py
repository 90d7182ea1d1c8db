"""The train stage: the runs a store lacks, grouped into ensembles, trained, stored as they finish."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import torch

from genbench.version import __version__
from genbench.datasets import Dataset
from genbench.engine.data import DataCache, run_trainer, uninformative_labels
from genbench.inference import accuracy_and_loss, predict
from genbench.plugins import registry
from genbench.schemas import RunResult, RunSpec, TrainingRecord
from genbench.store import Store
from genbench.training import MemberOutcome, Trainer
from genbench.training.memory import default_budget, ensemble_size, member_bytes

#: Members trained together at most (larger groups are split).
MAX_ENSEMBLE = 64


def group_runs(runs: list[RunSpec], max_members: Callable[[list[RunSpec]], int] | None = None) -> list[list[RunSpec]]:
    """Runs that can train as one ensemble, split into chunks of at most
    ``max_members(group)`` members (default MAX_ENSEMBLE)."""
    groups: dict[str, list[RunSpec]] = defaultdict(list)
    for run in runs:
        groups[run.group_key()].append(run)
    chunks = []
    for members in groups.values():
        size = MAX_ENSEMBLE if max_members is None else max(1, min(MAX_ENSEMBLE, max_members(members)))
        for start in range(0, len(members), size):
            chunks.append(members[start : start + size])
    return chunks


def members_that_fit(
    trainer: Trainer,
    input_shape: tuple[int, ...],
    num_train: int,
    batch_size: int,
    own_inputs: bool,
    budget: int | None,
    device: torch.device,
) -> int:
    """How many members of ``trainer``'s architecture, each training on ``num_train`` examples of
    ``input_shape`` (with inputs of their own when ``own_inputs``), fit in one ensemble within
    ``budget`` bytes (None: ``default_budget(device)``); MAX_ENSEMBLE for a trainer whose members
    share no ensemble."""
    if not trainer.memory_bound:
        return MAX_ENSEMBLE
    model = trainer.build().to(device)
    per_member = member_bytes(model, tuple(input_shape), batch_size, num_train, own_inputs)
    return ensemble_size(per_member, default_budget(device) if budget is None else budget, MAX_ENSEMBLE)


def run_result(
    run: RunSpec, dataset: Dataset, outcome: MemberOutcome, trainer: Trainer, device: torch.device
) -> RunResult:
    """The stored record of a trained run: its training record, then the test set's numbers."""
    model = trainer.restore(outcome.final_state)
    test_accuracy, test_loss = accuracy_and_loss(predict(model, dataset.x_test, device), dataset.y_test)
    clean = dataset.clean_train_labels()
    return RunResult(
        **TrainingRecord.of(outcome).model_dump(),
        run_id=run.run_id,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        gap=outcome.train_accuracy - test_accuracy,
        wall_time=outcome.wall_time,
        device=str(device),
        num_train=dataset.num_train,
        num_test=dataset.num_test,
        num_classes=dataset.num_classes,
        num_parameters=sum(p.numel() for p in model.parameters()),
        labels_changed=(dataset.y_train != clean).float().mean().item(),
        diagnostics=outcome.diagnostics,
        genbench_version=__version__,
        labels_uninformative=uninformative_labels(run),
    )


@dataclass
class TrainSummary:
    requested: int
    already_done: int
    trained: list[RunResult] = field(default_factory=list)


class TrainStage:
    """Trains the runs a store lacks; each run is stored the moment its member stops."""

    def __init__(self, store: Store, data: DataCache, device: torch.device, reporter, memory_budget: int | None) -> None:
        self.store, self.data, self.device, self.reporter = store, data, device, reporter
        self.memory_budget = memory_budget

    def train(self, runs: list[RunSpec], executor: str = "local") -> TrainSummary:
        stored = self.store.finished_ids(r.run_id for r in runs)
        # a stored run whose checkpoint files are gone or empty is trained again, not skipped
        done = self.store.checkpoints_present(stored)
        missing = [r for r in runs if r.run_id not in done]
        summary = TrainSummary(requested=len(runs), already_done=len(runs) - len(missing))
        if not missing:
            return summary
        # sizing builds every group's model on its dataset, so a model that cannot take
        # the dataset's inputs fails here, before anything trains
        groups = group_runs(missing, self._members_that_fit)
        self.reporter.start_training(len(missing), sum(r.train.max_steps for r in missing))
        runner = registry("executors").get(executor)
        try:
            for results in runner.map(self._train_group, groups):
                summary.trained.extend(results)
        finally:
            self.reporter.stop()
        return summary

    def _members_that_fit(self, runs: list[RunSpec]) -> int:
        dataset = self.data.prepare(runs[0])
        own_inputs = any(self.data.prepare(run).x_train is not dataset.x_train for run in runs[1:])
        trainer = run_trainer(runs[0], dataset, self.device)
        return members_that_fit(
            trainer, dataset.input_shape, dataset.num_train, runs[0].train.batch_size, own_inputs,
            self.memory_budget, self.device,
        )

    def _train_group(self, runs: list[RunSpec]) -> list[RunResult]:
        datasets = [self.data.prepare(run) for run in runs]
        first = datasets[0]
        shared_inputs = all(d.x_train is first.x_train for d in datasets)
        inputs = first.x_train if shared_inputs else torch.stack([d.x_train for d in datasets])
        labels = torch.stack([d.y_train for d in datasets])
        trainer = run_trainer(runs[0], first, self.device)
        results: list[RunResult] = []

        def save(outcome: MemberOutcome) -> None:
            run, dataset = runs[outcome.index], datasets[outcome.index]
            result = run_result(run, dataset, outcome, trainer, self.device)
            self.store.save_run(run, result, outcome.initial_state, outcome.final_state)
            results.append(result)
            self.reporter.run_done(run, result)

        self.reporter.group_started(runs)
        trainer.fit(
            inputs,
            labels,
            [run.seed for run in runs],
            per_member_inputs=not shared_inputs,
            on_member_done=save,
            on_step=self.reporter.steps,
        )
        return results
