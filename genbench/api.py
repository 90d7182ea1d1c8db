"""The Python API: the same as the command line, from a notebook.

    import genbench
    store = genbench.open_store("genbench-results")
    board = genbench.run()                       # the embedded default grid
    genbench.evaluate(["rademacher"], store=store)
    store.runs(), store.measure_values()         # pandas DataFrames
    genbench.leaderboard(store)                  # a DataFrame

``run`` and ``evaluate`` show their progress (``progress=``): by default a rich progress bar in a
notebook or a terminal and a plain line every 10 s when stderr is neither (a log file, a cluster
job); ``progress=False`` is silent; a callable gets every ``ProgressEvent`` (stage, kind, done,
total, detail, elapsed, eta, groups, members) instead:

    genbench.run(spec, progress=lambda e: print(e.stage, e.done, e.total, e.eta))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from genbench.archive import ExportSummary, ImportSummary, export_archive, import_archive
from genbench.engine import Engine, resolve_measures, resolve_runs
from genbench.executors import ExecutorOptions
from genbench.errors import StoreError
from genbench.plugins import registry
from genbench.report.leaderboard import board_frame
from genbench.report.progress import ProgressEvent, ProgressLike, progress_reporter
from genbench.scoring.board import score_board
from genbench.scoring.bootstrap import REPLICATES
from genbench.scoring.selection import select_runs, slices
from genbench.schemas import ComponentRef, ExperimentSpec, parse_spec
from genbench.store import Store

SpecLike = ExperimentSpec | str | Path | dict[str, Any] | None
StoreLike = Store | str | Path | None


def open_store(path: str | Path | None = None, create: bool = True) -> Store:
    """The store at ``path`` (default ``$GENBENCH_STORE`` or ``./genbench-results``)."""
    return Store(path, create=create)


def _store(store: StoreLike) -> Store:
    return store if isinstance(store, Store) else open_store(store)


def load_spec(spec: SpecLike) -> ExperimentSpec:
    """An ExperimentSpec from a spec, a TOML path, a dict, or None (the embedded default)."""
    if spec is None:
        return ExperimentSpec()
    if isinstance(spec, ExperimentSpec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(ExperimentSpec, spec, source="experiment spec")
    return ExperimentSpec.from_toml(spec)


def measure_refs(measures: Iterable[str | dict | ComponentRef] | None) -> list[ComponentRef] | None:
    if measures is None:
        return None
    return [m if isinstance(m, ComponentRef) else ComponentRef.model_validate(m) for m in measures]


def _reporter(reporter: Any, progress: ProgressLike) -> Any:
    """``reporter`` when given (an object of the engine's reporter protocol), else the reporter
    ``progress`` asks for (see ``genbench.report.progress.progress_reporter``)."""
    return reporter if reporter is not None else progress_reporter(progress)


def run(
    spec: SpecLike = None,
    store: StoreLike = None,
    device: str | None = None,
    evaluate: bool = True,
    reporter: Any = None,
    data_dir: str | None = None,
    executor: str = "local",
    executor_options: ExecutorOptions | None = None,
    progress: ProgressLike = True,
) -> pd.DataFrame:
    """Train every run of ``spec`` missing from the store, evaluate its measures, and
    return the leaderboard of the spec's runs. ``executor`` (``local`` or ``dask``, with
    ``executor_options``) runs both stages' units.

    ``progress``: ``True`` or ``"auto"`` (default) shows a rich progress bar in a notebook or a
    terminal and a line every 10 s on stderr otherwise (``$GENBENCH_PROGRESS``, bar, lines or
    none, overrides the choice); ``"bar"`` or ``"lines"`` either one; ``False`` or ``None``
    nothing; a callable is called with each ``ProgressEvent`` (``stage`` "training" or
    "evaluating", ``kind`` "start", "progress", "end" or "warning", ``done`` and ``total`` runs or
    values, ``detail``, ``elapsed`` and ``eta`` in seconds, ``eta`` None before the first unit is
    done). A ``reporter`` (the engine's reporter protocol, ``genbench.engine.NullReporter``)
    replaces it."""
    experiment = load_spec(spec)
    target = _store(store)
    runs = resolve_runs(experiment)
    measures = resolve_measures(experiment.measures)
    reporter = _reporter(reporter, progress)
    with Engine(target, device=device, data_dir=data_dir, reporter=reporter, executor=executor,
                executor_options=executor_options) as engine:
        engine.train(runs)
        if evaluate:
            engine.evaluate(measures, [r.run_id for r in runs])
    return leaderboard(target, run_ids=[r.run_id for r in runs])


def evaluate(
    measures: Iterable[str | dict | ComponentRef],
    store: StoreLike = None,
    spec: SpecLike = None,
    device: str | None = None,
    reporter: Any = None,
    data_dir: str | None = None,
    executor: str = "local",
    executor_options: ExecutorOptions | None = None,
    progress: ProgressLike = True,
) -> pd.DataFrame:
    """Evaluate ``measures`` on the runs of ``spec`` (training what is missing first), or
    on every run in the store when ``spec`` is None. Returns the values computed now; the frame's
    ``attrs["failed_units"]`` lists the units of work that did not finish (``UnitFailure``).
    ``progress`` and ``reporter``: as for ``run``."""
    target = _store(store)
    resolved = resolve_measures(measure_refs(measures))
    run_ids = None
    if spec is None and not target.run_ids():
        raise StoreError(f"store {target.root} has no runs; train some with `genbench run` or pass a spec")
    reporter = _reporter(reporter, progress)
    with Engine(target, device=device, data_dir=data_dir, reporter=reporter, executor=executor,
                executor_options=executor_options) as engine:
        if spec is not None:
            runs = resolve_runs(load_spec(spec))
            run_ids = [r.run_id for r in runs]
        trained = engine.train(runs) if spec is not None else None
        summary = engine.evaluate_summary(resolved, run_ids)
    frame = new_values(target, summary.values)
    # units of work that did not finish (their names and reasons were reported as they failed)
    frame.attrs["failed_units"] = [*(trained.failed if trained else []), *summary.failed_units]
    return frame


def new_values(store: Store, values: list) -> pd.DataFrame:
    """The rows of ``store.measure_values()`` for ``values`` (MeasureValue records just stored)."""
    frame = store.measure_values()
    keys = {(v.run_id, v.measure, v.version, v.options_hash) for v in values}
    chosen = [key in keys for key in zip(frame["run_id"], frame["measure"], frame["version"], frame["options_hash"])]
    return frame[chosen].reset_index(drop=True)


def measure_kinds(names: Iterable[str] | None = None) -> dict[str, str]:
    """The kind ("complexity" or "capability") of each installed measure among ``names``
    (of every registered measure when None); names not installed are left out."""
    measures = dict(registry("measures").items())
    wanted = measures if names is None else [name for name in names if name in measures]
    return {name: measures[name].kind for name in wanted}


def leaderboard(
    store: StoreLike = None,
    run_ids: Iterable[str] | None = None,
    *,
    where: Iterable[str] = (),
    by: str | None = None,
    bootstrap: int = REPLICATES,
) -> pd.DataFrame:
    """Every measure in the store scored against the generalization gap (a DataFrame, one row per
    measure and options, the columns of ``MeasureScore``).

    ``run_ids`` and ``where`` (conditions such as ``"model=mlp"`` or ``"level<=0.6"``, see
    ``genbench.scoring.selection.select_runs``) choose the runs; ``by`` ("model", "dataset",
    "corruption" or "test_labels") scores one board per value, told apart by a first column
    ``slice`` ("model=mlp", …). ``bootstrap`` replicates give the intervals (0: none). What a
    reader must know to read a board is in ``frame.attrs["notes"]``: a list of lines, each
    prefixed by its slice under ``by``.

    Scoring reads only the store; the registry is asked only for the kind of a measure whose
    values did not record one (an older store)."""
    target = _store(store)
    runs, values = target.runs(), target.measure_values()
    if run_ids is not None:
        runs = runs[runs["run_id"].isin(set(run_ids))]
    runs = select_runs(runs, where)
    values = values[values["run_id"].isin(set(runs["run_id"]))]
    recorded = values["kind"].notna()
    unrecorded = set(values.loc[~recorded, "measure"]) - set(values.loc[recorded, "measure"])
    kinds = measure_kinds(sorted(unrecorded)) if unrecorded else None
    frames, slice_notes = [], []
    for label, part in slices(runs, by):
        scores, part_notes = score_board(part, values[values["run_id"].isin(set(part["run_id"]))], kinds=kinds,
                                         bootstrap=bootstrap)
        frame = board_frame(scores)
        if by is not None:
            frame.insert(0, "slice", label)
        frames.append(frame)
        slice_notes.append((label, part_notes))
    board = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    # a note every slice has is said once; the others name their slice
    shared = set.intersection(*(set(part) for _, part in slice_notes)) if slice_notes else set()
    notes = [note for note in slice_notes[0][1] if note in shared] if slice_notes else []
    notes += [f"{label}: {note}" for label, part in slice_notes for note in part if note not in shared]
    if not len(runs):
        notes.append("No runs match: the board is empty.")
    unsound = len(runs) - len(target.checkpoints_present(runs["run_id"]))
    if unsound:
        notes.append(
            f"{unsound} of the board's runs have missing or empty checkpoints: `genbench store check` lists them, "
            "`--repair` removes them so that the next `genbench run` trains them again."
        )
    board.attrs["notes"] = notes
    return board


def export_store(archive: str | Path, store: StoreLike = None) -> ExportSummary:
    """Write the store (which must exist) to the tar file ``archive``: its tables as Parquet, its
    checkpoints, and a manifest of sha256 and versions (see ``genbench.archive.export_archive``)."""
    source = store if isinstance(store, Store) else open_store(store, create=False)
    return export_archive(source, archive)


def import_store(archive: str | Path, into: StoreLike = None) -> ImportSummary:
    """Merge the archive ``archive`` into the store ``into`` after checking the whole archive; the
    store's own runs and values are kept (see ``genbench.archive.import_archive``)."""
    return import_archive(archive, into)


__all__ = ["open_store", "run", "evaluate", "leaderboard", "load_spec", "export_store", "import_store", "ProgressEvent"]
