"""Orchestration only: spec → missing runs → train stage → evaluate stage. Every stage reads and
writes the store, so any stage can be re-run alone and an interrupted one resumes.

- ``resolve``: names and options to components; the grid as normalized RunSpecs;
- ``data``: a run's corrupted dataset, its trainer, what a measure may see;
- ``train``: the train stage (groups of runs → ensembles → store);
- ``evaluate``: the evaluate stage (run-major: one context per run, retraining batched per group);

Both stages hand their units of work (a training group; a batch of a group's runs to evaluate) to
an executor (``genbench.executors``: ``local`` in this process, ``dask`` on a cluster), opened once
per engine and closed by ``close()`` or the ``with`` block; the engine alone writes the store.
- ``retraining``: measures' retraining jobs → ensembles.
"""

from __future__ import annotations

from typing import Any

import contextlib

import torch

from genbench.engine.data import DataCache, prepare_data, run_trainer, without_test_data
from genbench.engine.evaluate import EvaluateStage, EvaluationSummary, RunContext
from genbench.engine.resolve import normalized, resolve_measures, resolve_runs, validated_options
from genbench.engine.retraining import Retrainer, RetrainingBatch
from genbench.engine.train import MAX_ENSEMBLE, TrainStage, TrainSummary, group_runs
from genbench.executors import ExecutorOptions, Pool
from genbench.inference import pick_device
from genbench.training.memory import default_budget
from genbench.measures.base import MeasureContext
from genbench.schemas import MeasureValue, Options, RunResult, RunSpec
from genbench.plugins import registry
from genbench.store import Store


class NullReporter:
    """Progress sink that ignores everything (library use, tests)."""

    def start_training(self, runs: int, steps: int) -> None: ...
    def group_started(self, runs: list[RunSpec]) -> None: ...
    def steps(self, members: int) -> None: ...
    def run_done(self, run: RunSpec, result: RunResult) -> None: ...
    def start_evaluation(self, total: int) -> None: ...
    def evaluating(self, measure: str, run: RunSpec) -> None: ...
    def evaluated(self) -> None: ...
    def warn(self, message: str) -> None: ...
    def stop(self) -> None: ...


class Engine:
    """Trains and evaluates against one store; ``reporter`` receives progress events. What it
    remembers between calls (the prepared datasets, the open executor) lives on this object.
    ``executor`` names the registered executor both stages run their units on."""

    def __init__(
        self,
        store: Store,
        device: str | None = None,
        data_dir: str | None = None,
        reporter=None,
        memory_budget: int | None = None,
        executor: str = "local",
        executor_options: ExecutorOptions | None = None,
    ) -> None:
        self.store = store
        self.device: torch.device = pick_device(device)
        self.data_dir = data_dir
        self.memory_budget = memory_budget
        self.reporter = reporter or NullReporter()
        self.data = DataCache(data_dir)
        self.executor = registry("executors").get(executor)
        self.executor_options = executor_options or ExecutorOptions()
        self._pool: Pool | None = None
        self._pool_exit = contextlib.ExitStack()
        self.training = TrainStage(store, self.data, self.device, self.reporter, memory_budget)
        self.evaluation = EvaluateStage(store, self.data, self.device, self.reporter, memory_budget)

    def pool(self) -> Pool:
        """The executor's pool, opened on first use (a dask cluster starts here) and kept open.
        Without a memory budget of its own, an engine whose units run in other processes sizes
        ensembles to its device's budget shared by the workers of one host, and on the CPU to at
        most half the smallest worker's memory limit (as it uses half the available RAM in this
        process)."""
        if self._pool is None:
            self._pool = self._pool_exit.enter_context(self.executor.open(self.executor_options))
            if self.memory_budget is None and not self._pool.in_process:
                budget = default_budget(self.device) // max(1, self._pool.workers_per_host)
                limit = self._pool.memory_limit
                if limit and self.device.type == "cpu":
                    budget = min(budget, limit // 2)
                self.training.memory_budget = self.evaluation.memory_budget = budget
        return self._pool

    def close(self) -> None:
        """Close the executor's pool (a dask cluster this engine started is shut down)."""
        self._pool, exit_stack = None, self._pool_exit
        self._pool_exit = contextlib.ExitStack()
        exit_stack.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def train(self, runs: list[RunSpec]) -> TrainSummary:
        """Train the runs the store lacks."""
        return self.training.train(runs, self.pool)

    def evaluate(self, measures: list[tuple[Any, Options]], run_ids: list[str] | None = None) -> list[MeasureValue]:
        """Compute every (measure, options) on every run that lacks it; return the new values
        (``evaluate_summary`` also says which failed)."""
        return self.evaluate_summary(measures, run_ids).values

    def evaluate_summary(
        self, measures: list[tuple[Any, Options]], run_ids: list[str] | None = None
    ) -> EvaluationSummary:
        return self.evaluation.evaluate(measures, self.pool, run_ids)

    def context(
        self, run: RunSpec, result: RunResult, measure: Any, stand_in_error: type[Exception] | None = None
    ) -> MeasureContext:
        """The context ``measure`` gets on ``run``, on a fresh run context (its own cache)."""
        return self.evaluation.run_context(run, result).for_measure(measure, stand_in_error)


__all__ = [
    "DataCache",
    "Engine",
    "EvaluationSummary",
    "MAX_ENSEMBLE",
    "NullReporter",
    "Retrainer",
    "RetrainingBatch",
    "RunContext",
    "TrainSummary",
    "group_runs",
    "normalized",
    "prepare_data",
    "resolve_measures",
    "resolve_runs",
    "run_trainer",
    "validated_options",
    "without_test_data",
]
