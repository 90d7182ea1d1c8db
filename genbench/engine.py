"""Orchestration: spec → missing runs → train → evaluate. Every stage reads and writes the store."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from genbench import __version__
from genbench.datasets import Dataset, load_dataset
from genbench.errors import SpecError
from genbench.memory import default_budget, ensemble_size, member_bytes
from genbench.measures.base import Estimate, MeasureContext, TrainingLog, options_hash
from genbench.plugins import registry
from genbench.schemas import (
    ComponentRef,
    CorruptionSpec,
    ExperimentSpec,
    MeasureValue,
    Options,
    RunResult,
    RunSpec,
    TrainConfig,
    content_hash,
    format_validation_error,
)
from genbench.store import Store
from genbench.training import EnsembleTrainer, MemberOutcome, accuracy_and_loss, derive_seed, pick_device, predict

from pydantic import ValidationError

#: Members trained together at most (larger groups are split).
MAX_ENSEMBLE = 64


def validated_options(kind: str, ref: ComponentRef | CorruptionSpec) -> Options:
    """The component's Options built from ``ref.options`` (unknown fields are errors)."""
    component = registry(kind).get(ref.name)
    try:
        return component.Options(**ref.options)
    except ValidationError as exc:
        noun = registry(kind).kind
        raise SpecError(f"invalid options for {noun} '{ref.name}': {format_validation_error(exc)}") from None


def normalized(kind: str, ref: ComponentRef) -> ComponentRef:
    """``ref`` with its options validated and every default filled in (stable run ids)."""
    options = validated_options(kind, ref)
    return ComponentRef(name=ref.name, options=options.model_dump(mode="json"))


def resolve_runs(spec: ExperimentSpec) -> list[RunSpec]:
    """Expand the grid, checking every name and option and normalizing options."""
    datasets = {d.name: normalized("datasets", d) for d in spec.datasets}
    models = {}
    for model in spec.models:
        options = {k: v for k, v in model.options.items() if k != "train"}
        models[model.name + repr(options)] = normalized("models", ComponentRef(name=model.name, options=options))
    corruptions = {}
    for corruption in spec.corruptions:
        options = {k: v for k, v in corruption.options.items() if k != "levels"}
        corruptions[corruption.name + repr(options)] = normalized(
            "corruptions", ComponentRef(name=corruption.name, options=options)
        )
    runs = []
    for run in spec.expand():
        runs.append(
            run.model_copy(
                update={
                    "dataset": datasets[run.dataset.name],
                    "model": models[run.model.name + repr(run.model.options)],
                    "corruption": run.corruption.model_copy(
                        update={"options": corruptions[run.corruption.name + repr(run.corruption.options)].options}
                    ),
                }
            )
        )
    seen: dict[str, RunSpec] = {}
    for run in runs:
        seen.setdefault(run.run_id, run)
    return list(seen.values())


def resolve_measures(refs: Iterable[ComponentRef] | None) -> list[tuple[Any, Options]]:
    """(measure, options) pairs; ``None`` = every registered measure with default options."""
    measures = registry("measures")
    if refs is None:
        return [(measure, measure.Options()) for _, measure in measures.items()]
    return [(measures.get(ref.name), validated_options("measures", ref)) for ref in refs]


_DATA_CACHE: dict[str, Dataset] = {}


def prepare_data(run: RunSpec, data_dir: str | None = None) -> Dataset:
    """The run's dataset with its corruption applied (deterministic in the spec)."""
    key = content_hash(
        {
            "dataset": run.dataset.model_dump(mode="json"),
            "corruption": run.corruption.model_dump(mode="json"),
            "test_labels": run.test_labels,
            "data_dir": data_dir,
        }
    )
    if key not in _DATA_CACHE:
        factory = registry("datasets").get(run.dataset.name)
        dataset = load_dataset(factory, validated_options("datasets", run.dataset), data_dir)
        corruption = registry("corruptions").get(run.corruption.name)
        options = validated_options("corruptions", run.corruption)
        corrupted = corruption.apply(dataset, run.corruption.level, run.corruption.seed, options, run.test_labels)
        if len(_DATA_CACHE) > 64:
            _DATA_CACHE.clear()
        _DATA_CACHE[key] = corrupted
    return _DATA_CACHE[key]


def model_builder(run: RunSpec, dataset: Dataset, num_classes: int | None = None) -> Callable[[], nn.Module]:
    factory = registry("models").get(run.model.name)
    options = validated_options("models", run.model)
    classes = dataset.num_classes if num_classes is None else num_classes
    return lambda: factory.build(dataset.input_shape, classes, options)


def without_test_data(dataset: Dataset) -> Dataset:
    """``dataset`` with its test split emptied: what a measure may be handed."""
    return dataset.with_changes(
        x_test=dataset.x_test[:0], y_test=dataset.y_test[:0], y_test_clean=None
    )


def is_closed_form(run: RunSpec) -> bool:
    return bool(getattr(registry("models").get(run.model.name), "closed_form", False))


def build_model(run: RunSpec, dataset: Dataset, state: dict[str, torch.Tensor]) -> nn.Module:
    """The run's network with ``state`` loaded (closed-form models rebuild from the state)."""
    factory = registry("models").get(run.model.name)
    if getattr(factory, "closed_form", False):
        return factory.from_state(state, dataset.input_shape, dataset.num_classes, validated_options("models", run.model))
    model = model_builder(run, dataset)()
    model.load_state_dict(state)
    return model


def fit_closed_form(
    run: RunSpec, inputs: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int
) -> tuple[nn.Module, nn.Module, dict[str, float]]:
    """(initial, fitted, diagnostics) of a model that is fitted in closed form."""
    factory = registry("models").get(run.model.name)
    options = validated_options("models", run.model)
    fitted, diagnostics = factory.fit(inputs, labels, num_classes, options, seed)
    return factory.initial(fitted), fitted, {k: float(v) for k, v in diagnostics.items()}


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


@dataclass
class TrainSummary:
    requested: int
    already_done: int
    trained: list[RunResult] = field(default_factory=list)


class Retrainer:
    """Trains the architecture of ``run`` with its recipe on other labels (for measures)."""

    def __init__(self, run: RunSpec, dataset: Dataset, device: torch.device) -> None:
        self.run, self.dataset, self.device = run, dataset, device
        self.vmappable = registry("models").get(run.model.name).vmappable

    def fit(
        self,
        labels: torch.Tensor,
        seeds: list[int],
        num_classes: int | None = None,
        train_indices: torch.Tensor | None = None,
        inputs: torch.Tensor | None = None,
        train: TrainConfig | None = None,
    ) -> list[nn.Module]:
        """Networks trained on ``labels`` [M, n] with ``seeds`` (one per member); the run's
        own seed and labels reproduce the run's model. ``train`` overrides the recipe."""
        return [model for model, _ in self.fit_with_outcomes(labels, seeds, num_classes, train_indices, inputs, train)]

    def fit_with_outcomes(
        self,
        labels: torch.Tensor,
        seeds: list[int],
        num_classes: int | None = None,
        train_indices: torch.Tensor | None = None,
        inputs: torch.Tensor | None = None,
        train: TrainConfig | None = None,
    ) -> list[tuple[nn.Module, MemberOutcome | None]]:
        """As ``fit``, with each member's training outcome (steps, loss curve, status);
        ``None`` for a model fitted in closed form."""
        x = self.dataset.x_train if inputs is None else inputs
        if is_closed_form(self.run):
            classes = self.dataset.num_classes if num_classes is None else num_classes
            fitted_models: list[tuple[nn.Module, MemberOutcome | None]] = []
            for i, seed in enumerate(seeds):
                rows = slice(None) if train_indices is None else train_indices[i].cpu()
                _, fitted, _ = fit_closed_form(self.run, x[rows], labels[i][rows], classes, seed)
                fitted_models.append((fitted.to(self.device).eval(), None))
            return fitted_models
        build = model_builder(self.run, self.dataset, num_classes)
        trainer = EnsembleTrainer(train or self.run.train, self.device, self.vmappable)
        outcomes = trainer.fit(build, x, labels, seeds, train_indices=train_indices)
        models = []
        for outcome in outcomes:
            model = build()
            model.load_state_dict(outcome.final_state)
            models.append((model.to(self.device).eval(), outcome))
        return models

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return predict(model, inputs, self.device)


class Engine:
    """Trains and evaluates against one store; ``reporter`` receives progress events."""

    def __init__(
        self,
        store: Store,
        device: str | None = None,
        data_dir: str | None = None,
        reporter=None,
        memory_budget: int | None = None,
    ) -> None:
        self.store = store
        self.device = pick_device(device)
        self.memory_budget = memory_budget
        self.data_dir = data_dir
        self.reporter = reporter or NullReporter()

    # ------------------------------------------------------------ training
    def train(self, runs: list[RunSpec], executor: str = "local") -> TrainSummary:
        done = self.store.finished_ids(r.run_id for r in runs)
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
        """How many of these runs fit in one ensemble within the memory budget."""
        if is_closed_form(runs[0]):
            return len(runs)
        dataset = prepare_data(runs[0], self.data_dir)
        own_inputs = any(prepare_data(run, self.data_dir).x_train is not dataset.x_train for run in runs[1:])
        model = model_builder(runs[0], dataset)()
        per_member = member_bytes(model, dataset.input_shape, runs[0].train.batch_size, dataset.num_train, own_inputs)
        budget = self.memory_budget if self.memory_budget is not None else default_budget(self.device)
        return ensemble_size(per_member, budget, MAX_ENSEMBLE)

    def _train_group(self, runs: list[RunSpec]) -> list[RunResult]:
        if is_closed_form(runs[0]):
            return [self._fit_closed_form(run) for run in runs]
        datasets = [prepare_data(run, self.data_dir) for run in runs]
        first = datasets[0]
        shared_inputs = all(d.x_train is first.x_train for d in datasets)
        inputs = first.x_train if shared_inputs else torch.stack([d.x_train for d in datasets])
        labels = torch.stack([d.y_train for d in datasets])
        build = model_builder(runs[0], first)
        vmappable = registry("models").get(runs[0].model.name).vmappable
        trainer = EnsembleTrainer(runs[0].train, self.device, vmappable)
        num_parameters = sum(p.numel() for p in build().parameters())
        results: list[RunResult] = []

        def save(outcome: MemberOutcome) -> None:
            run, dataset = runs[outcome.index], datasets[outcome.index]
            result = self._result(run, dataset, outcome, build, num_parameters)
            self.store.save_run(run, result, outcome.initial_state, outcome.final_state)
            results.append(result)
            self.reporter.run_done(run, result)

        self.reporter.group_started(runs)
        trainer.fit(
            build,
            inputs,
            labels,
            [run.seed for run in runs],
            per_member_inputs=not shared_inputs,
            on_member_done=save,
            on_step=self.reporter.steps,
        )
        return results

    def _fit_closed_form(self, run: RunSpec) -> RunResult:
        """Fit a closed-form model (no steps); stored and measured like a trained one."""
        self.reporter.group_started([run])
        started = time.perf_counter()
        dataset = prepare_data(run, self.data_dir)
        initial, fitted, diagnostics = fit_closed_form(run, dataset.x_train, dataset.y_train, dataset.num_classes, run.seed)
        train_accuracy, train_loss = accuracy_and_loss(predict(fitted, dataset.x_train, self.device), dataset.y_train)
        fitted_all = train_accuracy >= run.train.target_accuracy
        outcome = MemberOutcome(
            index=0,
            status="converged" if fitted_all else "budget",
            steps=0,
            epochs=0.0,
            steps_to_fit=0 if fitted_all else None,
            train_accuracy=train_accuracy,
            train_loss=train_loss,
            loss_curve=[],
            initial_state=dict(initial.state_dict()),
            final_state=dict(fitted.state_dict()),
            wall_time=time.perf_counter() - started,
        )
        num_parameters = sum(p.numel() for p in fitted.parameters())
        result = self._result(run, dataset, outcome, lambda: fitted, num_parameters, diagnostics)
        self.store.save_run(run, result, outcome.initial_state, outcome.final_state)
        self.reporter.run_done(run, result)
        return result

    def _result(
        self, run, dataset, outcome: MemberOutcome, build, num_parameters: int, diagnostics: dict | None = None
    ) -> RunResult:
        model = build()
        if not is_closed_form(run):
            model.load_state_dict(outcome.final_state)
        test_accuracy, test_loss = accuracy_and_loss(predict(model, dataset.x_test, self.device), dataset.y_test)
        clean = dataset.clean_train_labels()
        return RunResult(
            run_id=run.run_id,
            status=outcome.status,
            train_accuracy=outcome.train_accuracy,
            train_loss=outcome.train_loss,
            test_accuracy=test_accuracy,
            test_loss=test_loss,
            gap=outcome.train_accuracy - test_accuracy,
            steps=outcome.steps,
            epochs=outcome.epochs,
            steps_to_fit=outcome.steps_to_fit,
            loss_curve=outcome.loss_curve,
            wall_time=outcome.wall_time,
            device=str(self.device),
            num_train=dataset.num_train,
            num_test=dataset.num_test,
            num_classes=dataset.num_classes,
            num_parameters=num_parameters,
            labels_changed=(dataset.y_train != clean).float().mean().item(),
            diagnostics=diagnostics or {},
            genbench_version=__version__,
        )

    # ---------------------------------------------------------- evaluation
    def context(self, run: RunSpec, result: RunResult, measure_name: str) -> MeasureContext:
        dataset = prepare_data(run, self.data_dir)
        model = build_model(run, dataset, self.store.load_checkpoint(run.run_id, "final")).to(self.device).eval()
        initial = build_model(run, dataset, self.store.load_checkpoint(run.run_id, "init")).to(self.device).eval()
        log = TrainingLog.of(result)
        generator = torch.Generator().manual_seed(derive_seed(run.seed, f"measure:{measure_name}"))
        return MeasureContext(
            spec=run,
            model=model,
            initial_model=initial,
            train_inputs=dataset.x_train.to(self.device),
            train_labels=dataset.y_train.to(self.device),
            num_classes=dataset.num_classes,
            training_log=log,
            device=self.device,
            generator=generator,
            retrainer=Retrainer(run, without_test_data(dataset), self.device),
        )

    def evaluate(self, measures: list[tuple[Any, Options]], run_ids: list[str] | None = None) -> list[MeasureValue]:
        """Compute every (measure, options) on every run that lacks it; return the new values."""
        pairs = list(self.store.iter_runs(run_ids))
        todo = []
        for measure, options in measures:
            digest = options_hash(options)
            for run, result in pairs:
                if not self.store.has_measure_value(run.run_id, measure.name, measure.version, digest):
                    todo.append((measure, options, digest, run, result))
        if not todo:
            return []
        self.reporter.start_evaluation(len(todo))
        values = []
        try:
            for measure, options, digest, run, result in todo:
                values.append(self._evaluate_one(measure, options, digest, run, result))
        finally:
            self.reporter.stop()
        return values

    def _evaluate_one(self, measure, options, digest, run, result) -> MeasureValue:
        self.reporter.evaluating(measure.name, run)
        started = time.perf_counter()
        error = None
        details: dict = {}
        context = self.context(run, result, measure.name)  # store or data problems stop here
        try:
            outcome = measure.compute(context, options)
            if isinstance(outcome, Estimate):
                value, details = float(outcome.value), dict(outcome.details)
            else:
                value = float(outcome)
        except Exception as exc:  # one broken measure must not lose the others' values
            origin = getattr(measure, "origin", None)
            where = f" ({origin})" if origin else ""
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.reporter.warn(f"measure {measure.name}{where} failed on run {run.run_id}: {error}")
            value = math.nan
        record = MeasureValue(
            run_id=run.run_id,
            measure=measure.name,
            version=measure.version,
            options_hash=digest,
            options=options.model_dump(mode="json"),
            value=value,
            seconds=time.perf_counter() - started,
            error=error,
            details=details,
        )
        self.store.save_measure_value(record)
        self.reporter.evaluated()
        return record


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

