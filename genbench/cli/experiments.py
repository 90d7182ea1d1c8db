"""Commands that train, evaluate and rank: run, evaluate, leaderboard."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import ValidationError

from genbench.choices import RUN_FORMATS as FORMATS
from genbench.cli.common import (
    check_choice,
    exit_for_failed_values,
    handle_errors,
    parse_assignment,
    parse_floats,
    parse_ints,
    parse_values,
    stderr,
    stdout,
    with_default,
)
from genbench.cli.leaderboard import print_board
from genbench.cli.preflight import check_trainable
from genbench.cli.progress import cli_reporter
from genbench.errors import SpecError, StoreError, UsageError
from genbench.cli.executor_options import (
    ClusterOption,
    ExecutorChoice,
    ExecutorOption,
    RetriesOption,
    SchedulerOption,
    WorkersOption,
    executor_choice,
    exit_for_failed_units,
)
from genbench.plugins import registry
from genbench.schemas import ComponentRef, ExperimentSpec, TrainConfig, parse_spec


#: The TrainConfig fields that ``genbench run`` takes as list-valued flags (``--lr 0.01,0.1``).
TRAIN_AXES = (
    "lr", "momentum", "weight_decay", "batch_size", "schedule", "lr_decay", "step_epochs", "stop",
    "target_accuracy", "loss_threshold", "max_steps", "augment", "early_stopping_patience", "validation_fraction",
)

SpecArgument = typer.Argument(None, help="experiment TOML file (default: the embedded default grid)")
StoreOption = typer.Option(
    None, "--store", envvar="GENBENCH_STORE", help=with_default("store folder", "./genbench-results")
)
DeviceOption = typer.Option(None, "--device", help=with_default("torch device", "cuda when present, else cpu"))
DataDirOption = typer.Option(None, "--data-dir", envvar="GENBENCH_DATA", help="folder with downloaded datasets")
FormatOption = typer.Option("table", "--format", "-f", help=" | ".join(FORMATS))
def _check_format(fmt: str) -> str:
    return check_choice(fmt, FORMATS, "--format")


@dataclass(frozen=True)
class Axis:
    """One list-valued flag of ``genbench run``: the recipe field or model option it sets
    (``key``), the flag that set it, and its values (several: an axis of the grid)."""

    key: str
    flag: str
    values: tuple[Any, ...]


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def train_axes(flags: dict[str, str | None]) -> list[Axis]:
    """The recipe flags given (field → comma-separated text), each value checked against TrainConfig."""
    return [
        Axis(key, flag_name(key), tuple(_train_value(key, value) for value in parse_values(text, flag_name(key))))
        for key, text in flags.items()
        if text is not None
    ]


def _train_value(key: str, value: Any) -> Any:
    """``value`` as TrainConfig's field ``key`` holds it, or one SpecError line naming the flag."""
    try:
        return getattr(TrainConfig.model_validate({key: value}), key)
    except ValidationError as exc:
        reason = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise SpecError(f"invalid {flag_name(key)} value {json.dumps(value)}: {reason}") from None


def option_axes(
    width: str | None = None, depth: str | None = None, dropout: str | None = None, options: list[str] | None = None
) -> list[Axis]:
    """The model-option flags given: ``--width``/``--depth`` (the ``hidden`` option, ``[width] * depth``;
    width 512 and depth 1 when only the other is given), ``--dropout`` and ``--option KEY=V1,V2``."""
    axes = []
    if width is not None or depth is not None:
        widths = parse_ints(width, "--width") if width is not None else [512]
        depths = parse_ints(depth, "--depth") if depth is not None else [1]
        if not widths or not depths or min(widths + depths) < 1:
            raise SpecError("--width and --depth expect comma-separated positive integers")
        flag = "/".join(f for f, given in (("--width", width), ("--depth", depth)) if given is not None)
        axes.append(Axis("hidden", flag, tuple([w] * d for w, d in itertools.product(widths, depths))))
    if dropout is not None:
        axes.append(Axis("dropout", "--dropout", tuple(parse_floats(dropout, "--dropout"))))
    for text in options or []:
        key, values = parse_assignment(text, "--option")
        axes.append(Axis(key, f"--option {key}", tuple(values)))
    seen: dict[str, str] = {}
    for axis in axes:
        if axis.key in seen:
            raise SpecError(f"model option '{axis.key}' is set twice: by {seen[axis.key]} and by {axis.flag}")
        seen[axis.key] = axis.flag
    return axes


def _check_model_options(name: str, axes: list[Axis]) -> None:
    """One SpecError line when model ``name`` lacks an option that a flag sets."""
    fields = registry("models").get(name).Options.model_fields
    for axis in axes:
        if axis.key not in fields:
            known = ", ".join(fields) or "none"
            raise SpecError(f"model '{name}' has no option '{axis.key}' (set by {axis.flag}); its options: {known}")


def _combinations(axes: list[Axis]) -> list[dict[str, Any]]:
    """The cartesian product of the axes' values, one {key: value} per cell ([{}] without axes)."""
    return [dict(zip((a.key for a in axes), cell)) for cell in itertools.product(*(a.values for a in axes))]


def multiply_models(entries: list[Any], options: list[Axis], recipe: list[Axis]) -> list[dict[str, Any]]:
    """Every model entry once per cell of the option axes × the recipe axes: the cell's options over
    the entry's, the cell's recipe fields over the entry's own ``train`` table."""
    models = []
    for entry in entries:
        ref = ComponentRef.model_validate(entry).model_dump(mode="json")
        _check_model_options(ref["name"], options)
        for option_cell, train_cell in itertools.product(_combinations(options), _combinations(recipe)):
            merged = {**ref["options"], **option_cell}
            if train_cell:
                merged["train"] = {**merged.get("train", {}), **train_cell}
            models.append({"name": ref["name"], "options": merged})
    return models


def apply_axes(base: dict[str, Any], axes: list[Axis], options: list[Axis]) -> dict[str, Any]:
    """The spec's data with the flags' values: a recipe flag with one value sets the experiment's
    ``train`` field; recipe flags with several values and every model-option flag multiply the
    model entries (the experiment's and each sub-grid's)."""
    single = {axis.key: axis.values[0] for axis in axes if len(axis.values) == 1}
    recipe = [axis for axis in axes if len(axis.values) > 1]
    data = {**base, "train": {**base.get("train", {}), **single}}
    if not recipe and not options:
        return data
    grids = data.get("grids") or []
    if not grids or any("models" not in grid for grid in grids):  # the experiment's models are used
        data["models"] = multiply_models(data["models"], options, recipe)
    if grids:
        data["grids"] = [
            {**grid, "models": multiply_models(grid["models"], options, recipe)} if "models" in grid else grid
            for grid in grids
        ]
    return data


def build_spec(
    spec_file: Optional[Path],
    datasets: list[str] | None = None,
    models: list[str] | None = None,
    corruptions: list[str] | None = None,
    levels: str | None = None,
    seeds: str | None = None,
    measures: list[str] | None = None,
    train: dict[str, Any] | None = None,
    axes: list[Axis] | None = None,
    options: list[Axis] | None = None,
) -> ExperimentSpec:
    """The spec file (or the embedded default) with command-line flags overriding it: ``train``
    sets recipe fields (None values are ignored), ``axes`` are recipe flags and ``options``
    model-option flags (see ``apply_axes``)."""
    from genbench import api

    base = api.load_spec(spec_file).model_dump(mode="json", exclude_none=True)
    if datasets:
        base["datasets"] = datasets
    if models:
        base["models"] = models
    if corruptions:
        base["corruptions"] = corruptions
    if levels is not None:
        base["levels"] = parse_floats(levels, "--levels")
    if seeds is not None:
        base["seeds"] = parse_ints(seeds, "--seeds")
    if measures:
        base["measures"] = measures
    if train:
        base["train"] = {**base.get("train", {}), **{k: v for k, v in train.items() if v is not None}}
    base = apply_axes(base, axes or [], options or [])
    return parse_spec(ExperimentSpec, base, source=f"experiment {spec_file or '(default)'}")


def _axis_option(flag: str, help_text: str) -> Any:
    """A flag of ``genbench run`` that takes comma-separated values."""
    return typer.Option(None, flag, metavar="V1,V2,...", help=help_text)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (the store has recorded no cost for it)"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _print_plan(spec: ExperimentSpec, runs, measures, store: Optional[Path], evaluate: bool) -> None:
    """What ``run`` would do, on stdout; the store is only read (and not created)."""
    from genbench import api
    from genbench.engine.plan import plan_run

    try:
        target = api.open_store(store, create=False)
    except StoreError:
        target = None
    plan = plan_run(target, runs, measures, evaluate)
    lines = [
        f"experiment '{spec.name}': {plan.runs} runs ({plan.stored} already in the store), "
        f"{plan.to_train} to train in {plan.groups} training groups",
        f"measure values to compute: {plan.values}" + ("" if evaluate else " (--no-evaluate)"),
        f"estimated training: {_duration(plan.train_seconds)}",
        f"estimated evaluation: {_duration(plan.evaluate_seconds)}"
        + (f"; not counted, no recorded cost: {len(plan.unpriced)} measures ({', '.join(plan.unpriced)})"
           if plan.unpriced and plan.evaluate_seconds is not None else ""),
        "(estimates: the store's recorded median cost per run and per value, times the work)",
    ]
    for line in lines:
        stdout.print(line, markup=False, highlight=False)


#: A grid of more runs than this is trained only with ``--yes``.
LARGE_GRID = 10_000


def _train_evaluate_and_rank(
    spec: ExperimentSpec, store: Optional[Path], device: Optional[str], data_dir: Optional[Path], fmt: str, evaluate: bool,
    executor: ExecutorChoice, yes: bool = False, dry_run: bool = False,
) -> None:
    """Train the spec's runs that the store lacks, evaluate its measures (unless ``evaluate`` is
    false), print the leaderboard of its runs, and exit non-zero when values failed."""
    from genbench import api
    from genbench.engine import Engine, resolve_measures, resolve_runs

    count, groups = spec.size()
    if count > LARGE_GRID and not yes:
        raise UsageError(
            f"experiment '{spec.name}' spans {count:,} runs in {groups:,} training groups (more than {LARGE_GRID:,}); "
            "pass --yes to train them"
        )
    runs = resolve_runs(spec)
    measures = resolve_measures(spec.measures)
    if dry_run:
        _print_plan(spec, runs, measures, store, evaluate)
        return
    check_trainable(runs, store, data_dir, device)  # a bad device, missing data, …: before the store exists
    reporter = cli_reporter(stderr)  # a bad GENBENCH_PROGRESS, too
    target = api.open_store(store)
    with Engine(target, device=device, data_dir=str(data_dir) if data_dir else None, reporter=reporter,
                executor=executor.name, executor_options=executor.options) as engine:
        stderr.print(f"experiment '{spec.name}': {len(runs)} runs, store {target.root}, device {engine.device}"
                     + ("" if executor.name == "local" else f", executor {executor.name}"))
        summary = engine.train(runs)
        if summary.already_done == summary.requested:
            stderr.print(f"all {summary.requested} runs are already in the store; nothing to train")
        elif summary.already_done:
            stderr.print(f"{summary.already_done} of {summary.requested} runs were already in the store; trained {len(summary.trained)}")
        failed = [r for r in summary.trained if r.status != "converged"]
        if failed:
            stderr.print(f"[yellow]{len(failed)} runs did not reach the stopping criterion ({', '.join(sorted({r.status for r in failed}))})[/]")
        unit_codes = [failure.exit_code for failure in summary.failed]
        statuses, stages = [], []
        if evaluate:
            evaluation = engine.evaluate_summary(measures, [r.run_id for r in runs])
            statuses = [v.status for v in evaluation.values]
            stages = [v.details.get("stage") if v.status == "failed" else None for v in evaluation.values]
            unit_codes += [failure.exit_code for failure in evaluation.failed_units]
    print_board(api.leaderboard(target, run_ids=[r.run_id for r in runs]), fmt)
    exit_for_failed_units(unit_codes)
    exit_for_failed_values(statuses, stages)


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def run(
        ctx: typer.Context,
        spec_file: Optional[Path] = SpecArgument,
        dataset: Optional[list[str]] = typer.Option(None, "--dataset", help="dataset name (repeatable)"),
        model: Optional[list[str]] = typer.Option(None, "--model", help="model name (repeatable)"),
        corruption: Optional[list[str]] = typer.Option(None, "--corruption", help="corruption name (repeatable)"),
        levels: Optional[str] = typer.Option(None, "--levels", help="corruption levels p_c, e.g. 0,0.5,1"),
        seeds: Optional[str] = typer.Option(None, "--seeds", help="seeds, e.g. 0,1"),
        measure: Optional[list[str]] = typer.Option(None, "--measure", help=with_default("measure name (repeatable)", "all")),
        lr: Optional[str] = _axis_option("--lr", "learning rate, e.g. 0.01,0.1"),
        momentum: Optional[str] = _axis_option("--momentum", "SGD momentum"),
        weight_decay: Optional[str] = _axis_option("--weight-decay", "L2 weight decay, e.g. 0,5e-4"),
        batch_size: Optional[str] = _axis_option("--batch-size", "minibatch size"),
        schedule: Optional[str] = _axis_option("--schedule", "learning-rate schedule: constant | exponential | step"),
        lr_decay: Optional[str] = _axis_option("--lr-decay", "learning-rate factor per epoch (exponential) or per step"),
        step_epochs: Optional[str] = _axis_option("--step-epochs", "epochs between the step schedule's decays"),
        stop: Optional[str] = _axis_option("--stop", "stopping criterion: accuracy | loss"),
        target_accuracy: Optional[str] = _axis_option("--target-accuracy", "training accuracy that stops a run"),
        loss_threshold: Optional[str] = _axis_option("--loss-threshold", "training cross-entropy that stops a run"),
        max_steps: Optional[str] = _axis_option("--max-steps", "step budget per run"),
        augment: Optional[str] = _axis_option("--augment", "random crop and flip of images: true | false"),
        early_stopping_patience: Optional[str] = _axis_option(
            "--early-stopping-patience", "epochs without a better held-out accuracy before a run stops (null: never)"
        ),
        validation_fraction: Optional[str] = _axis_option(
            "--validation-fraction", "fraction of the training examples held out for early stopping"
        ),
        width: Optional[str] = _axis_option("--width", "hidden width of models with a hidden option, e.g. 256,512"),
        depth: Optional[str] = _axis_option("--depth", "hidden layers of models with a hidden option, e.g. 1,2"),
        dropout: Optional[str] = _axis_option("--dropout", "dropout of models with a dropout option, e.g. 0,0.1"),
        option: Optional[list[str]] = typer.Option(
            None, "--option", metavar="KEY=V1,V2", help="any model option, values as JSON or text (repeatable)"
        ),
        evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="evaluate the measures after training"),
        yes: bool = typer.Option(False, "--yes", help=f"train a grid of more than {LARGE_GRID:,} runs"),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="say how many runs, groups and values it would compute, and how long, then stop"
        ),
        store: Optional[Path] = StoreOption,
        device: Optional[str] = DeviceOption,
        data_dir: Optional[Path] = DataDirOption,
        fmt: str = FormatOption,
        executor: Optional[str] = ExecutorOption,
        workers: Optional[int] = WorkersOption,
        scheduler: Optional[str] = SchedulerOption,
        cluster: Optional[Path] = ClusterOption,
        retries: int = RetriesOption,
    ) -> None:
        """Train the runs of an experiment that the store lacks, evaluate its measures, print the leaderboard.

        Recipe and model-option flags take comma-separated values: one value sets the field, several
        make it an axis (every model entry once per combination of the values)."""
        _check_format(fmt)
        spec = build_spec(
            spec_file, dataset, model, corruption, levels, seeds, measure,
            axes=train_axes({key: ctx.params[key] for key in TRAIN_AXES}),
            options=option_axes(width, depth, dropout, option),
        )
        choice = executor_choice(executor, workers, scheduler, cluster, retries)
        _train_evaluate_and_rank(spec, store, device, data_dir, fmt, evaluate, choice, yes, dry_run)

    @app.command()
    @handle_errors
    def evaluate(
        measure: list[str] = typer.Option(..., "--measure", "-m", help="measure name (repeatable)"),
        spec_file: Optional[Path] = typer.Argument(None, help="experiment TOML; its missing runs are trained first"),
        store: Optional[Path] = StoreOption,
        device: Optional[str] = DeviceOption,
        data_dir: Optional[Path] = DataDirOption,
        fmt: str = FormatOption,
        executor: Optional[str] = ExecutorOption,
        workers: Optional[int] = WorkersOption,
        scheduler: Optional[str] = SchedulerOption,
        cluster: Optional[Path] = ClusterOption,
        retries: int = RetriesOption,
    ) -> None:
        """Evaluate measures on the runs in the store (or on a spec's runs), then print the leaderboard."""
        from genbench import api
        from genbench.engine import resolve_measures, resolve_runs

        _check_format(fmt)
        choice = executor_choice(executor, workers, scheduler, cluster, retries)
        resolve_measures(api.measure_refs(measure))  # unknown names fail before any work
        if spec_file is not None:
            # so do a bad spec, missing data and a model that cannot take it, before the store is touched
            check_trainable(resolve_runs(api.load_spec(spec_file)), store, data_dir, device)
        reporter = cli_reporter(stderr)
        target = api.open_store(store, create=spec_file is not None)
        values = api.evaluate(
            measure, store=target, spec=spec_file, device=device, reporter=reporter,
            data_dir=str(data_dir) if data_dir else None, executor=choice.name, executor_options=choice.options,
        )
        stderr.print(f"computed {len(values)} new measure values")
        run_ids = None if spec_file is None else [r.run_id for r in resolve_runs(api.load_spec(spec_file))]
        print_board(api.leaderboard(target, run_ids=run_ids), fmt)
        statuses = list(values["status"]) if len(values) else []
        stages = [d.get("stage") if st == "failed" else None for d, st in zip(values["details"], statuses)] if len(values) else []
        exit_for_failed_units([failure.exit_code for failure in values.attrs.get("failed_units", [])])
        exit_for_failed_values(statuses, stages)
