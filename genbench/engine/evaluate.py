"""The evaluate stage, run-major. The runs missing values are batched per training group
(``RUNS_PER_BATCH`` at a time); each batch is evaluated in units of work (``evaluation_units``):
its measures that retrain on all its runs together (their jobs trained as ensembles, identical jobs
once), and each run's other measures, whose run context (checkpoints and data, loaded once) has one
cache they share. Units go to the executor; every value comes back as a record the driver stores,
with its kind, whether its options are the measure's defaults, and its status.

A failure stays where it happens: a run whose checkpoint is missing or unreadable fails that run's
values with the reason (one warning line per run); a measure that raises or returns NaN fails that
value (one warning line per measure, at the end: how many of its runs failed, the most common reason); a diverged run is skipped
by every measure with the reason recorded; a unit that does not finish (its worker died on every
try) fails nothing it did not store and is named in a warning. Failed values are computed again
next time; skipped ones are not (the run will not change).
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
import functools
from typing import Any, Callable, Protocol

import torch

from genbench.datasets import Dataset
from genbench.engine.data import DataCache, run_trainer, without_test_data
from genbench.engine.retraining import Retrainer, RetrainingBatch, Ticket
from genbench.errors import GenbenchError, NotApplicable, StoreError
from genbench.measures.base import Estimate, MeasureContext, TrainingLog, options_hash, retrains, with_stand_ins
from genbench.schemas import MeasureValue, Options, RunResult, RunSpec
from genbench.seeding import derive_seed
from genbench.errors import first_line
from genbench.executors import Emit, Pool, Progress, UnitFailure
from genbench.store import Store, checkpoint_from_bytes
from genbench.plugins import origin_of, registry
from genbench.version import __version__

#: Runs of one training group whose contexts are held together while their retraining jobs train:
#: bounded, so that the memory of the evaluate stage does not grow with the grid (a group of the
#: default grid has 12 runs; larger groups are evaluated 12 runs at a time).
RUNS_PER_BATCH = 12


@dataclass
class EvaluationSummary:
    """What one ``evaluate`` call stored: every new value, and the failures among them."""

    values: list[MeasureValue] = field(default_factory=list)
    #: evaluation units that did not finish (their values are computed again next time)
    failed_units: list[UnitFailure] = field(default_factory=list)

    @property
    def failed(self) -> list[MeasureValue]:
        return [value for value in self.values if value.status == "failed"]


class CheckpointSource(Protocol):
    """Where a run context reads checkpoints: the store itself, or the bytes a unit carries."""

    def load_checkpoint(self, run_id: str, which: str) -> dict[str, torch.Tensor]: ...


class ShippedCheckpoints:
    """The checkpoints an evaluation unit carries: safetensors bytes per run and checkpoint, or
    the reason the driver could not read them."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self._files = {RunSpec.model_validate_json(item["spec"]).run_id: item for item in runs}

    def load_checkpoint(self, run_id: str, which: str) -> dict[str, torch.Tensor]:
        item = self._files[run_id]
        data = item["checkpoints"].get(which)
        if data is None:
            raise StoreError(item["errors"].get(which) or f"checkpoint {which} of run {run_id} was not sent")
        return checkpoint_from_bytes(data, item["paths"][which])  # named as the store names it


class RunContext:
    """One run's models and data, loaded once, and the cache its measures share."""

    def __init__(self, run: RunSpec, result: RunResult, dataset: Dataset, checkpoints: CheckpointSource,
                 device: torch.device, load_initial: bool, memory_budget: int | None = None) -> None:
        self.run, self.result, self.device = run, result, device
        self.dataset = without_test_data(dataset)
        trainer = run_trainer(run, dataset, device)
        self.model = self._restore(trainer, checkpoints, "final")
        self.initial_model = self._restore(trainer, checkpoints, "init") if load_initial else None
        self.train_inputs = dataset.x_train.to(device)
        self.train_labels = dataset.y_train.to(device)
        self.retrainer = Retrainer(run, self.dataset, device, memory_budget)
        self.cache: dict[str, Any] = {}

    def _restore(self, trainer, checkpoints: CheckpointSource, which: str) -> torch.nn.Module:
        state = checkpoints.load_checkpoint(self.run.run_id, which)
        try:
            return trainer.restore(state).to(self.device).eval()
        except GenbenchError:
            raise
        except Exception as exc:  # a state that does not fit the architecture
            raise StoreError(f"checkpoint {which} of run {self.run.run_id} does not fit its model: {exc}".splitlines()[0]) from None

    def for_measure(self, measure: Any, stand_in_error: type[Exception] | None = None) -> MeasureContext:
        """The context ``measure`` sees: this run's model, data and cache, its own generator, and only
        the fields it declared (stand-ins for the others)."""
        ctx = MeasureContext(
            spec=self.run,
            model=self.model,
            initial_model=self.initial_model,
            train_inputs=self.train_inputs,
            train_labels=self.train_labels,
            num_classes=self.dataset.num_classes,
            training_log=TrainingLog.of(self.result),
            device=self.device,
            generator=torch.Generator().manual_seed(derive_seed(self.run.seed, f"measure:{measure.name}")),
            retrainer=self.retrainer,
            cache=self.cache,
        )
        if stand_in_error is None:
            with_stand_ins(ctx, measure)
        else:
            with_stand_ins(ctx, measure, stand_in_error)
        return ctx


@dataclass
class _Todo:
    measure: Any
    options: Options
    digest: str
    default_options: bool | None

    def plain(self) -> dict[str, Any]:
        return {"measure": self.measure.name, "options": self.options.model_dump(mode="json"),
                "digest": self.digest, "default_options": self.default_options}


@dataclass
class _Pending:
    """A retraining measure between its jobs and its finish."""

    run: RunSpec
    todo: _Todo
    ctx: MeasureContext
    ticket: Ticket
    seconds: float


class EvaluateStage:
    """Evaluates measures on stored runs (see the module docstring): the driver's part, which finds
    what is missing, sends one unit per batch of a group's runs, and stores what comes back."""

    def __init__(self, store: Store, data: DataCache, device: torch.device, reporter, memory_budget: int | None) -> None:
        self.store, self.data, self.device, self.reporter = store, data, device, reporter
        self.memory_budget = memory_budget

    def run_context(self, run: RunSpec, result: RunResult, load_initial: bool = True) -> RunContext:
        return RunContext(run, result, self.data.prepare(run), self.store, self.device, load_initial, self.memory_budget)

    def evaluate(self, measures: list[tuple[Any, Options]], open_pool: Callable[[], Pool],
                 run_ids: list[str] | None = None) -> EvaluationSummary:
        """Compute every (measure, options) on every run that lacks it, on the pool ``open_pool()``
        gives (opened only when there is something to compute); return what was stored."""
        todos = []
        for measure, options in measures:
            try:
                default = options == measure.Options()
            except Exception:  # noqa: BLE001 - Options without defaults: not the defaults' value
                default = None
            todos.append(_Todo(measure, options, options_hash(options), default))
        work: dict[str, list[tuple[RunSpec, RunResult, list[_Todo]]]] = defaultdict(list)
        total = 0
        done = self.store.done_values()
        for run, result in self.store.iter_runs(run_ids):
            missing = [t for t in todos if (run.run_id, t.measure.name, t.measure.version, t.digest) not in done]
            if missing:
                work[run.group_key()].append((run, result, missing))
                total += len(missing)
        summary = EvaluationSummary()
        if not total:
            return summary
        pool = open_pool()
        batches = [runs[start : start + RUNS_PER_BATCH] for runs in work.values() for start in range(0, len(runs), RUNS_PER_BATCH)]
        runs_by_id = {run.run_id: run for batch in batches for run, _, _ in batch}
        parts = evaluation_units(batches)
        if pool.in_process:
            task = functools.partial(evaluate_unit, data=self.data, checkpoints=self.store,
                                     measures={t.measure.name: t.measure for t in todos})
        else:
            task = evaluate_unit
        units = ((name, self._unit(part, ship=not pool.in_process)) for name, part in parts)

        def store_record(index: int, record: dict[str, Any]) -> None:
            value = MeasureValue.model_validate_json(record["value"])
            self.store.save_measure_value(value)
            summary.values.append(value)
            self.reporter.evaluated()

        warned: set[str] = set()

        def on_progress(kind: str, value: Any) -> None:
            if kind == "evaluating":
                self.reporter.evaluating(value[0], runs_by_id[value[1]])
            elif kind == "run-failed" and value[0] not in warned:  # once per run, whichever unit saw it first
                warned.add(value[0])
                self.reporter.warn(f"run {value[0]}: {value[1]}; its values failed")
            elif kind == "warn":
                self.reporter.warn(value)

        self.reporter.start_evaluation(total)
        try:
            summary.failed_units = pool.run(task, units, store_record, on_progress)
        finally:
            self.reporter.stop()
        for failure in summary.failed_units:
            self.reporter.warn(f"evaluation unit {failure.name} failed: {failure.reason}")
        self._warn_failures(summary, {t.measure.name: origin_of("measures", t.measure) for t in todos})
        return summary

    def _unit(self, batch: Batch, ship: bool) -> dict[str, Any]:
        """The plain-data unit of one batch; with ``ship``, it carries the runs' checkpoint bytes."""
        runs = []
        for run, result, todos in batch:
            item = {"spec": run.canonical(), "result": result.model_dump_json(), "todos": [t.plain() for t in todos],
                    "checkpoints": {}, "errors": {},
                    "paths": {which: str(self.store.checkpoint_path(run.run_id, which)) for which in ("init", "final")}}
            if ship and result.status != "diverged":
                wanted = ("init", "final") if any("init_weights" in t.measure.requires for t in todos) else ("final",)
                for which in wanted:
                    try:
                        item["checkpoints"][which] = self.store.checkpoint_bytes(run.run_id, which)
                    except StoreError as exc:
                        item["errors"][which] = str(exc)
            runs.append(item)
        return {"runs": runs, "device": str(self.device), "data_dir": self.data.data_dir,
                "memory_budget": self.memory_budget}

    def _warn_failures(self, summary: EvaluationSummary, origins: dict[str, Any]) -> None:
        """One line per measure that failed: on how many of the runs it was computed on, and the
        most common reason (with the run it first failed on). Store failures were reported per run
        already."""
        computed: dict[str, int] = defaultdict(int)
        for value in summary.values:
            computed[value.measure] += 1
        failures: dict[str, list[MeasureValue]] = defaultdict(list)
        for value in summary.failed:
            if value.details.get("stage") != "store":
                failures[value.measure].append(value)
        for measure, values in failures.items():
            origin = f" ({origins[measure]})" if origins.get(measure) else ""
            reasons = Counter(value.error for value in values)
            reason, count = reasons.most_common(1)[0]
            first = next(value.run_id for value in values if value.error == reason)
            others = f"; {len(reasons) - 1} other reasons" if len(reasons) > 1 else ""
            self.reporter.warn(
                f"measure {measure}{origin} failed on {len(values)} of {computed[measure]} runs: {reason} "
                f"({count} of them, first on run {first}{others})"
            )


Batch = list[tuple[RunSpec, RunResult, list[_Todo]]]


def evaluation_units(batches: list[Batch]) -> list[tuple[str, Batch]]:
    """The units a batch of a group's runs is evaluated in, named: its retraining measures on all
    its runs together (their jobs share ensembles, identical jobs trained once), then each run's
    other measures alone (sharing that run's context). Every batch's retraining unit comes first,
    the longest work started first on a cluster. The split does not depend on the executor, so
    every executor computes the same values."""
    retraining, direct = [], []
    for batch in batches:
        part = [(run, result, [t for t in todos if retrains(t.measure)]) for run, result, todos in batch]
        part = [item for item in part if item[2] and item[1].status != "diverged"]
        if part:
            retraining.append((f"retrain-{part[0][0].run_id[:8]}x{len(part)}", part))
        for run, result, todos in batch:
            rest = todos if result.status == "diverged" else [t for t in todos if not retrains(t.measure)]
            if rest:
                direct.append((f"measure-{run.run_id[:8]}", [(run, result, rest)]))
    return retraining + direct


def evaluate_unit(
    unit: dict[str, Any],
    emit: Emit,
    progress: Progress,
    data: DataCache | None = None,
    checkpoints: CheckpointSource | None = None,
    measures: dict[str, Any] | None = None,
) -> None:
    """Evaluate one unit: each run's missing values, the retraining ones trained together; ``emit``
    every value as a MeasureValue's JSON. ``data``, ``checkpoints`` and ``measures`` are the caller's
    dataset cache, checkpoint source and measure objects (by default a fresh cache, the checkpoints
    the unit carries, and the registry's measures)."""
    evaluator = _UnitEvaluator(
        data or DataCache(unit["data_dir"]),
        checkpoints or ShippedCheckpoints(unit["runs"]),
        torch.device(unit["device"]),
        unit["memory_budget"],
        emit,
        progress,
    )
    runs = []
    for item in unit["runs"]:
        todos = []
        for plain in item["todos"]:
            measure = (measures or {}).get(plain["measure"]) or registry("measures").get(plain["measure"])
            options = measure.Options.model_validate(plain["options"])
            todos.append(_Todo(measure, options, plain["digest"], plain["default_options"]))
        runs.append((RunSpec.model_validate_json(item["spec"]), RunResult.model_validate_json(item["result"]), todos))
    evaluator.evaluate_batch(runs)


class _UnitEvaluator:
    """The worker's part of the evaluate stage: one batch of runs, every value emitted."""

    def __init__(self, data: DataCache, checkpoints: CheckpointSource, device: torch.device,
                 memory_budget: int | None, emit: Emit, progress: Progress) -> None:
        self.data, self.checkpoints, self.device, self.memory_budget = data, checkpoints, device, memory_budget
        self.emit, self.progress = emit, progress

    def evaluate_batch(self, runs: list[tuple[RunSpec, RunResult, list[_Todo]]]) -> None:
        batch = RetrainingBatch(self.device, self.memory_budget)
        pending: list[_Pending] = []
        for run, result, todos in runs:
            pending.extend(self._evaluate_run(run, result, todos, batch))
        if not pending:
            return
        try:
            batch.train()
        except Exception as exc:  # noqa: BLE001 - the batch's values fail, the stage goes on
            for item in pending:
                self._record(item.run, item.todo, None, f"retraining failed: {first_line(exc)}", item.seconds)
            return
        for item in pending:
            self.progress("evaluating", [item.todo.measure.name, item.run.run_id])
            started = time.perf_counter()
            try:
                networks = batch.networks(item.ticket, self.device)
                outcome = item.todo.measure.finish(item.ctx, item.todo.options, networks)
                error, status = None, None
            except NotApplicable as exc:
                outcome, error, status = None, f"skipped: {exc}", "skipped"
            except Exception as exc:  # noqa: BLE001 - one broken measure must not lose the others
                outcome, error, status = None, first_line(exc), None
            seconds = item.seconds + time.perf_counter() - started + batch.seconds(item.ticket)
            self._record(item.run, item.todo, outcome, error, seconds, status=status)

    def _evaluate_run(self, run, result, todos: list[_Todo], batch: RetrainingBatch) -> list[_Pending]:
        """Values of ``run`` that need no retraining, now; the retraining ones as pending jobs."""
        if result.status == "diverged":
            for todo in todos:
                self._record(run, todo, None, "skipped: the run diverged (non-finite training loss)", 0.0, status="skipped")
            return []
        try:
            load_initial = any("init_weights" in t.measure.requires for t in todos)
            context = RunContext(run, result, self.data.prepare(run), self.checkpoints, self.device, load_initial,
                                 self.memory_budget)
        except Exception as exc:  # noqa: BLE001 - a damaged run fails its own values only
            reason = first_line(exc)
            self.progress("run-failed", [run.run_id, reason])
            stage = "store" if isinstance(exc, StoreError) else "data"
            for todo in todos:
                self._record(run, todo, None, reason, 0.0, stage=stage)
            return []
        pending = []
        for todo in todos:
            self.progress("evaluating", [todo.measure.name, run.run_id])
            ctx = context.for_measure(todo.measure)
            started = time.perf_counter()
            try:
                if retrains(todo.measure):
                    ticket = batch.add(run, context.dataset, todo.measure.jobs(ctx, todo.options))
                    pending.append(_Pending(run, todo, ctx, ticket, time.perf_counter() - started))
                    continue
                outcome, error = todo.measure.compute(ctx, todo.options), None
            except NotApplicable as exc:
                self._record(run, todo, None, f"skipped: {exc}", time.perf_counter() - started, status="skipped")
                continue
            except Exception as exc:  # noqa: BLE001 - one broken measure must not lose the others
                outcome, error = None, first_line(exc)
            self._record(run, todo, outcome, error, time.perf_counter() - started)
        return pending

    def _record(self, run: RunSpec, todo: _Todo, outcome, error: str | None, seconds: float,
                status: str | None = None, stage: str | None = None) -> None:
        value, details = math.nan, {}
        if error is None:
            try:
                if isinstance(outcome, Estimate):
                    value, details = float(outcome.value), dict(outcome.details)
                else:
                    value = float(outcome)
            except (TypeError, ValueError) as exc:
                error = f"compute returned {type(outcome).__name__}, not a number or an Estimate ({exc})"
            else:
                if math.isnan(value):
                    error = "the measure returned NaN"
        if stage is not None:
            details = {**details, "stage": stage}
        try:
            record = _value(run, todo, value, error, seconds, details, status)
            text = record.model_dump_json()
        except Exception as exc:  # noqa: BLE001 - e.g. details the store cannot hold: a failed value
            record = _value(run, todo, math.nan, f"the measure's outcome cannot be stored: {first_line(exc)}",
                            seconds, {}, None)
            text = record.model_dump_json()
        self.emit({"value": text})


def _value(run, todo: _Todo, value: float, error: str | None, seconds: float, details: dict,
           status: str | None) -> MeasureValue:
    origin = origin_of("measures", todo.measure)
    return MeasureValue(
        run_id=run.run_id,
        measure=todo.measure.name,
        version=todo.measure.version,
        options_hash=todo.digest,
        options=todo.options.model_dump(mode="json"),
        value=value if error is None else math.nan,
        seconds=seconds,
        error=error,
        details=details,
        status=status or ("ok" if error is None else "failed"),
        kind=todo.measure.kind if todo.measure.kind in ("complexity", "capability") else None,
        default_options=todo.default_options,
        genbench_version=__version__,
        plugin=getattr(origin, "distribution", None),
        plugin_version=getattr(origin, "version", None),
    )
