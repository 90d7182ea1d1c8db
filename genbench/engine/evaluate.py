"""The evaluate stage, run-major: per run, its checkpoints and data are loaded once into one context
whose cache every measure of the run shares; measures that retrain hand back jobs, which are trained
for the runs of a training group together (``RUNS_PER_BATCH`` at a time); every value is stored with its kind, whether its options
are the measure's defaults, and its status.

A failure stays where it happens: a run whose checkpoint is missing or unreadable fails that run's
values with the reason (one warning line per run); a measure that raises or returns NaN fails that
value (one warning line per measure, at the end, with the number of runs); a diverged run is skipped
by every measure with the reason recorded. Failed values are computed again next time; skipped ones
are not (the run will not change).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from genbench.datasets import Dataset
from genbench.engine.data import DataCache, run_trainer, without_test_data
from genbench.engine.retraining import Retrainer, RetrainingBatch, Ticket
from genbench.errors import GenbenchError, NotApplicable, StoreError
from genbench.measures.base import Estimate, MeasureContext, TrainingLog, options_hash, retrains, with_stand_ins
from genbench.schemas import MeasureValue, Options, RunResult, RunSpec
from genbench.seeding import derive_seed
from genbench.store import Store

#: Runs of one training group whose contexts are held together while their retraining jobs train:
#: bounded, so that the memory of the evaluate stage does not grow with the grid (a group of the
#: default grid has 12 runs; larger groups are evaluated 12 runs at a time).
RUNS_PER_BATCH = 12


@dataclass
class EvaluationSummary:
    """What one ``evaluate`` call stored: every new value, and the failures among them."""

    values: list[MeasureValue] = field(default_factory=list)

    @property
    def failed(self) -> list[MeasureValue]:
        return [value for value in self.values if value.status == "failed"]


class RunContext:
    """One run's models and data, loaded once, and the cache its measures share."""

    def __init__(self, run: RunSpec, result: RunResult, dataset: Dataset, store: Store, device: torch.device,
                 load_initial: bool, memory_budget: int | None = None) -> None:
        self.run, self.result, self.device = run, result, device
        self.dataset = without_test_data(dataset)
        trainer = run_trainer(run, dataset, device)
        self.model = self._restore(trainer, store, "final")
        self.initial_model = self._restore(trainer, store, "init") if load_initial else None
        self.train_inputs = dataset.x_train.to(device)
        self.train_labels = dataset.y_train.to(device)
        self.retrainer = Retrainer(run, self.dataset, device, memory_budget)
        self.cache: dict[str, Any] = {}

    def _restore(self, trainer, store: Store, which: str) -> torch.nn.Module:
        state = store.load_checkpoint(self.run.run_id, which)
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


@dataclass
class _Pending:
    """A retraining measure between its jobs and its finish."""

    run: RunSpec
    todo: _Todo
    ctx: MeasureContext
    ticket: Ticket
    seconds: float


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class EvaluateStage:
    """Evaluates measures on stored runs (see the module docstring)."""

    def __init__(self, store: Store, data: DataCache, device: torch.device, reporter, memory_budget: int | None) -> None:
        self.store, self.data, self.device, self.reporter = store, data, device, reporter
        self.memory_budget = memory_budget

    def run_context(self, run: RunSpec, result: RunResult, load_initial: bool = True) -> RunContext:
        return RunContext(run, result, self.data.prepare(run), self.store, self.device, load_initial, self.memory_budget)

    def evaluate(self, measures: list[tuple[Any, Options]], run_ids: list[str] | None = None) -> EvaluationSummary:
        """Compute every (measure, options) on every run that lacks it; return what was stored."""
        todos = []
        for measure, options in measures:
            try:
                default = options == measure.Options()
            except Exception:  # noqa: BLE001 - Options without defaults: not the defaults' value
                default = None
            todos.append(_Todo(measure, options, options_hash(options), default))
        work: dict[str, list[tuple[RunSpec, RunResult, list[_Todo]]]] = defaultdict(list)
        total = 0
        for run, result in self.store.iter_runs(run_ids):
            missing = [t for t in todos if not self.store.has_measure_value(run.run_id, t.measure.name, t.measure.version, t.digest)]
            if missing:
                work[run.group_key()].append((run, result, missing))
                total += len(missing)
        summary = EvaluationSummary()
        if not total:
            return summary
        self.reporter.start_evaluation(total)
        try:
            for runs in work.values():
                for start in range(0, len(runs), RUNS_PER_BATCH):
                    self._evaluate_batch(runs[start : start + RUNS_PER_BATCH], summary)
        finally:
            self.reporter.stop()
        self._warn_failures(summary, {t.measure.name: getattr(t.measure, "origin", None) for t in todos})
        return summary

    def _evaluate_batch(self, runs: list[tuple[RunSpec, RunResult, list[_Todo]]], summary: EvaluationSummary) -> None:
        batch = RetrainingBatch(self.device, self.memory_budget)
        pending: list[_Pending] = []
        for run, result, todos in runs:
            pending.extend(self._evaluate_run(run, result, todos, batch, summary))
        if not pending:
            return
        try:
            batch.train()
        except Exception as exc:  # noqa: BLE001 - the batch's values fail, the stage goes on
            for item in pending:
                self._record(item.run, item.todo, None, f"retraining failed: {_first_line(exc)}", item.seconds, summary)
            return
        for item in pending:
            self.reporter.evaluating(item.todo.measure.name, item.run)
            started = time.perf_counter()
            try:
                networks = batch.networks(item.ticket, self.device)
                outcome = item.todo.measure.finish(item.ctx, item.todo.options, networks)
                error, status = None, None
            except NotApplicable as exc:
                outcome, error, status = None, f"skipped: {exc}", "skipped"
            except Exception as exc:  # noqa: BLE001 - one broken measure must not lose the others
                outcome, error, status = None, _first_line(exc), None
            seconds = item.seconds + time.perf_counter() - started + batch.seconds(item.ticket)
            self._record(item.run, item.todo, outcome, error, seconds, summary, status=status)

    def _evaluate_run(self, run, result, todos: list[_Todo], batch: RetrainingBatch, summary) -> list[_Pending]:
        """Values of ``run`` that need no retraining, now; the retraining ones as pending jobs."""
        if result.status == "diverged":
            for todo in todos:
                self._record(run, todo, None, "skipped: the run diverged (non-finite training loss)", 0.0, summary,
                             status="skipped")
            return []
        try:
            context = self.run_context(run, result, any("init_weights" in t.measure.requires for t in todos))
        except Exception as exc:  # noqa: BLE001 - a damaged run fails its own values only
            reason = _first_line(exc)
            self.reporter.warn(f"run {run.run_id}: {reason}; its {len(todos)} values failed")
            stage = "store" if isinstance(exc, StoreError) else "data"
            for todo in todos:
                self._record(run, todo, None, reason, 0.0, summary, stage=stage)
            return []
        pending = []
        for todo in todos:
            self.reporter.evaluating(todo.measure.name, run)
            ctx = context.for_measure(todo.measure)
            started = time.perf_counter()
            try:
                if retrains(todo.measure):
                    ticket = batch.add(run, context.dataset, todo.measure.jobs(ctx, todo.options))
                    pending.append(_Pending(run, todo, ctx, ticket, time.perf_counter() - started))
                    continue
                outcome, error = todo.measure.compute(ctx, todo.options), None
            except NotApplicable as exc:
                self._record(run, todo, None, f"skipped: {exc}", time.perf_counter() - started, summary, status="skipped")
                continue
            except Exception as exc:  # noqa: BLE001 - one broken measure must not lose the others
                outcome, error = None, _first_line(exc)
            self._record(run, todo, outcome, error, time.perf_counter() - started, summary)
        return pending

    def _record(self, run: RunSpec, todo: _Todo, outcome, error: str | None, seconds: float,
                summary: EvaluationSummary, status: str | None = None, stage: str | None = None) -> None:
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
            record = self._value(run, todo, value, error, seconds, details, status)
        except Exception as exc:  # noqa: BLE001 - e.g. details the store cannot hold: a failed value
            record = self._value(run, todo, math.nan, f"the measure's outcome cannot be stored: {_first_line(exc)}",
                                 seconds, {}, None)
        self.store.save_measure_value(record)
        summary.values.append(record)
        self.reporter.evaluated()

    @staticmethod
    def _value(run, todo: _Todo, value: float, error: str | None, seconds: float, details: dict,
               status: str | None) -> MeasureValue:
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
        )

    def _warn_failures(self, summary: EvaluationSummary, origins: dict[str, Any]) -> None:
        """One line per measure that failed, with how many runs and its first reason (store failures
        were reported per run already)."""
        failures: dict[str, list[MeasureValue]] = defaultdict(list)
        for value in summary.failed:
            if value.details.get("stage") != "store":
                failures[value.measure].append(value)
        for measure, values in failures.items():
            origin = f" ({origins[measure]})" if origins.get(measure) else ""
            self.reporter.warn(
                f"measure {measure}{origin} failed on {len(values)} run{'s' if len(values) != 1 else ''} "
                f"(first: run {values[0].run_id}: {values[0].error})"
            )
