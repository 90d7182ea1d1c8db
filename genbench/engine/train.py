"""The train stage: the runs a store lacks, grouped into ensembles, trained, stored as they finish."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
import functools
from typing import Any, Callable

import torch

from genbench.version import __version__
from genbench.datasets import Dataset
from genbench.engine.data import DataCache, run_trainer, uninformative_labels
from genbench.executors import Emit, Pool, Progress, UnitFailure
from genbench.inference import accuracy_and_loss, predict
from genbench.plugins import registry
from genbench.schemas import ComponentOrigin, RunResult, RunSpec, TrainingRecord
from genbench.store import Store, checkpoint_bytes
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
        components={
            kind: ComponentOrigin.of(registry(f"{kind}s").origin(name))
            for kind, name in (("dataset", run.dataset.name), ("model", run.model.name), ("corruption", run.corruption.name))
        },
    )


@dataclass
class TrainSummary:
    requested: int
    already_done: int
    trained: list[RunResult] = field(default_factory=list)
    #: training groups that did not finish (their finished members are stored all the same)
    failed: list[UnitFailure] = field(default_factory=list)


def train_unit_of(runs: list[RunSpec], device: str, data_dir: str | None) -> dict[str, Any]:
    """The plain-data unit of work of one training group."""
    return {"runs": [run.canonical() for run in runs], "device": device, "data_dir": data_dir}


def unit_name(runs: list[RunSpec]) -> str:
    """A training group's name in messages: its model, dataset and first run."""
    run = runs[0]
    return f"{run.model.name}-on-{run.dataset.name}-{run.run_id[:8]}x{len(runs)}"


def train_unit(unit: dict[str, Any], emit: Emit, progress: Progress, data: DataCache | None = None) -> None:
    """Train one group as an ensemble; ``emit`` each member's record as it stops: the run's spec
    and result as JSON and its checkpoints as safetensors bytes. ``data`` is the caller's dataset
    cache (a fresh one when None)."""
    runs = [RunSpec.model_validate_json(text) for text in unit["runs"]]
    progress("started", [run.run_id for run in runs])
    data = data or DataCache(unit["data_dir"])
    device = torch.device(unit["device"])
    datasets = [data.prepare(run) for run in runs]
    first = datasets[0]
    shared_inputs = all(d.x_train is first.x_train for d in datasets)
    inputs = first.x_train if shared_inputs else torch.stack([d.x_train for d in datasets])
    labels = torch.stack([d.y_train for d in datasets])
    trainer = run_trainer(runs[0], first, device)

    def done(outcome: MemberOutcome) -> None:
        run, dataset = runs[outcome.index], datasets[outcome.index]
        result = run_result(run, dataset, outcome, trainer, device)
        emit({
            "spec": run.canonical(),
            "result": result.model_dump_json(),
            "init": checkpoint_bytes(outcome.initial_state),
            "final": checkpoint_bytes(outcome.final_state),
        })

    trainer.fit(
        inputs,
        labels,
        [run.seed for run in runs],
        per_member_inputs=not shared_inputs,
        on_member_done=done,
        on_step=lambda members: progress("steps", members),
    )


class TrainStage:
    """Trains the runs a store lacks; each run is stored the moment its record reaches the driver
    (with the local executor, the moment its member stops)."""

    def __init__(self, store: Store, data: DataCache, device: torch.device, reporter, memory_budget: int | None) -> None:
        self.store, self.data, self.device, self.reporter = store, data, device, reporter
        self.memory_budget = memory_budget

    def train(self, runs: list[RunSpec], open_pool: Callable[[], Pool]) -> TrainSummary:
        """Train the runs the store lacks on the pool ``open_pool()`` gives (opened only when there
        is something to train)."""
        stored = self.store.finished_ids(r.run_id for r in runs)
        # a stored run whose checkpoint files are gone or empty is trained again, not skipped
        done = self.store.checkpoints_present(stored)
        missing = [r for r in runs if r.run_id not in done]
        summary = TrainSummary(requested=len(runs), already_done=len(runs) - len(missing))
        if not missing:
            return summary
        # sizing builds every group's model on its dataset, so a model that cannot take
        # the dataset's inputs fails here, before anything trains
        pool = open_pool()  # before sizing: a pool of workers sets the memory budget
        groups = group_runs(missing, self._members_that_fit)
        by_id = {run.run_id: run for run in missing}
        self.reporter.start_training(len(missing), sum(r.train.max_steps for r in missing))
        task = functools.partial(train_unit, data=self.data) if pool.in_process else train_unit
        units = ((unit_name(group), train_unit_of(group, str(self.device), self.data.data_dir)) for group in groups)

        def store_record(index: int, record: dict[str, Any]) -> None:
            run, result = RunSpec.model_validate_json(record["spec"]), RunResult.model_validate_json(record["result"])
            self.store.save_run_files(run, result, record["init"], record["final"])
            summary.trained.append(result)
            self.reporter.run_done(run, result)

        def on_progress(kind: str, value: Any) -> None:
            if kind == "started":
                self.reporter.group_started([by_id[run_id] for run_id in value])
            elif kind == "steps":
                self.reporter.steps(value)
            elif kind == "warn":
                self.reporter.warn(value)

        try:
            summary.failed = pool.run(task, units, store_record, on_progress)
        finally:
            self.reporter.stop()
        for failure in summary.failed:
            self.reporter.warn(f"training group {failure.name} failed: {failure.reason}")
        return summary

    def _members_that_fit(self, runs: list[RunSpec]) -> int:
        dataset = self.data.prepare(runs[0])
        own_inputs = any(self.data.prepare(run).x_train is not dataset.x_train for run in runs[1:])
        trainer = run_trainer(runs[0], dataset, self.device)
        return members_that_fit(
            trainer, dataset.input_shape, dataset.num_train, runs[0].train.batch_size, own_inputs,
            self.memory_budget, self.device,
        )
