"""Commands that train, evaluate and rank: run, evaluate, leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from genbench import api
from genbench.cli.common import exit_for_failed_values, handle_errors, parse_floats, parse_ints, stderr, stdout
from genbench.cli.progress import RichReporter
from genbench.engine import Engine, resolve_measures, resolve_runs
from genbench.errors import SpecError
from genbench.report.leaderboard import render
from genbench.schemas import ExperimentSpec, parse_spec

FORMATS = ("table", "markdown", "csv", "json")

SpecArgument = typer.Argument(None, help="experiment TOML file (default: the embedded default grid)")
StoreOption = typer.Option(None, "--store", envvar="GENBENCH_STORE", help="store folder [default: ./genbench-results]")
DeviceOption = typer.Option(None, "--device", help="torch device [default: cuda when present, else cpu]")
DataDirOption = typer.Option(None, "--data-dir", envvar="GENBENCH_DATA", help="folder with downloaded datasets")
FormatOption = typer.Option("table", "--format", "-f", help="table | markdown | csv | json")


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise SpecError(f"--format must be one of {', '.join(FORMATS)}; got '{fmt}'")
    return fmt


def build_spec(
    spec_file: Optional[Path],
    datasets: list[str] | None = None,
    models: list[str] | None = None,
    corruptions: list[str] | None = None,
    levels: str | None = None,
    seeds: str | None = None,
    measures: list[str] | None = None,
    train: dict[str, Any] | None = None,
) -> ExperimentSpec:
    """The spec file (or the embedded default) with command-line flags overriding it."""
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
    return parse_spec(ExperimentSpec, base, source=f"experiment {spec_file or '(default)'}")


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def run(
        spec_file: Optional[Path] = SpecArgument,
        dataset: Optional[list[str]] = typer.Option(None, "--dataset", help="dataset name (repeatable)"),
        model: Optional[list[str]] = typer.Option(None, "--model", help="model name (repeatable)"),
        corruption: Optional[list[str]] = typer.Option(None, "--corruption", help="corruption name (repeatable)"),
        levels: Optional[str] = typer.Option(None, "--levels", help="corruption levels p_c, e.g. 0,0.5,1"),
        seeds: Optional[str] = typer.Option(None, "--seeds", help="seeds, e.g. 0,1"),
        measure: Optional[list[str]] = typer.Option(None, "--measure", help="measure name (repeatable) [default: all]"),
        lr: Optional[float] = typer.Option(None, "--lr", help="learning rate"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="minibatch size"),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="step budget per run"),
        evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="evaluate the measures after training"),
        store: Optional[Path] = StoreOption,
        device: Optional[str] = DeviceOption,
        data_dir: Optional[Path] = DataDirOption,
        fmt: str = FormatOption,
    ) -> None:
        """Train the runs of an experiment that the store lacks, evaluate its measures, print the leaderboard."""
        _check_format(fmt)
        spec = build_spec(
            spec_file, dataset, model, corruption, levels, seeds, measure,
            {"lr": lr, "batch_size": batch_size, "max_steps": max_steps},
        )
        runs = resolve_runs(spec)
        measures = resolve_measures(spec.measures)
        target = api.open_store(store)
        engine = Engine(target, device=device, data_dir=str(data_dir) if data_dir else None, reporter=RichReporter(stderr))
        stderr.print(f"experiment '{spec.name}': {len(runs)} runs, store {target.root}, device {engine.device}")
        summary = engine.train(runs)
        if summary.already_done == summary.requested:
            stderr.print(f"all {summary.requested} runs are already in the store; nothing to train")
        elif summary.already_done:
            stderr.print(f"{summary.already_done} of {summary.requested} runs were already in the store; trained {len(summary.trained)}")
        failed = [r for r in summary.trained if r.status != "converged"]
        if failed:
            stderr.print(f"[yellow]{len(failed)} runs did not reach the stopping criterion ({', '.join(sorted({r.status for r in failed}))})[/]")
        statuses, stages = [], []
        if evaluate:
            summary = engine.evaluate_summary(measures, [r.run_id for r in runs])
            statuses = [v.status for v in summary.values]
            stages = [v.details.get("stage") if v.status == "failed" else None for v in summary.values]
        board = api.leaderboard(target, run_ids=[r.run_id for r in runs])
        stdout.print(render(board, fmt), markup=False, highlight=False, end="")
        exit_for_failed_values(statuses, stages)

    @app.command()
    @handle_errors
    def evaluate(
        measure: list[str] = typer.Option(..., "--measure", "-m", help="measure name (repeatable)"),
        spec_file: Optional[Path] = typer.Argument(None, help="experiment TOML; its missing runs are trained first"),
        store: Optional[Path] = StoreOption,
        device: Optional[str] = DeviceOption,
        data_dir: Optional[Path] = DataDirOption,
        fmt: str = FormatOption,
    ) -> None:
        """Evaluate measures on the runs in the store (or on a spec's runs), then print the leaderboard."""
        _check_format(fmt)
        resolve_measures(api.measure_refs(measure))  # unknown names fail before any work
        if spec_file is not None:
            resolve_runs(api.load_spec(spec_file))  # so does a bad spec, before the store is touched
        target = api.open_store(store, create=spec_file is not None)
        values = api.evaluate(
            measure, store=target, spec=spec_file, device=device, reporter=RichReporter(stderr),
            data_dir=str(data_dir) if data_dir else None,
        )
        stderr.print(f"computed {len(values)} new measure values")
        run_ids = None if spec_file is None else [r.run_id for r in resolve_runs(api.load_spec(spec_file))]
        stdout.print(render(api.leaderboard(target, run_ids=run_ids), fmt), markup=False, highlight=False, end="")
        statuses = list(values["status"]) if len(values) else []
        stages = [d.get("stage") if st == "failed" else None for d, st in zip(values["details"], statuses)] if len(values) else []
        exit_for_failed_values(statuses, stages)

    @app.command()
    @handle_errors
    def leaderboard(store: Optional[Path] = StoreOption, fmt: str = FormatOption) -> None:
        """Print the leaderboard of every measure in the store."""
        _check_format(fmt)
        target = api.open_store(store, create=False)
        stdout.print(render(api.leaderboard(target), fmt), markup=False, highlight=False, end="")
