"""What a ``genbench run`` would do, before anything trains (``--dry-run``): the runs, the training
groups, the measure values to compute, and a time estimate from the costs the store recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from genbench.measures.base import options_hash
from genbench.schemas import RunSpec
from genbench.store import Store


@dataclass
class Plan:
    """A run's work, counted: ``train_seconds`` and ``evaluate_seconds`` are estimates from the
    store's recorded costs (None where it recorded none); ``unpriced`` names the measures without
    a recorded cost."""

    runs: int
    stored: int
    to_train: int
    groups: int
    values: int
    train_seconds: float | None = None
    evaluate_seconds: float | None = None
    unpriced: list[str] = field(default_factory=list)


def plan_run(store: Store | None, runs: list[RunSpec], measures: list[tuple[Any, Any]], evaluate: bool = True) -> Plan:
    """Count what training and evaluating ``runs`` with ``measures`` would do on ``store`` (None: an
    empty store), reading and writing nothing but the store's rows.

    Training is priced at the median recorded ``wall_time`` of stored runs of the same model and
    dataset (else of every stored run); a measure at the median ``seconds`` of its recorded "ok"
    values of the same version."""
    ids = [run.run_id for run in runs]
    stored = store.checkpoints_present(store.finished_ids(ids)) if store is not None else set()
    missing = [run for run in runs if run.run_id not in stored]
    done = store.done_values() if store is not None else set()
    todo: dict[str, int] = {}
    if evaluate:
        for measure, options in measures:
            digest = options_hash(options)
            count = sum(
                1 for run_id in ids
                if run_id not in stored or (run_id, measure.name, measure.version, digest) not in done
            )
            if count:
                todo[measure.name] = todo.get(measure.name, 0) + count
    result = Plan(runs=len(runs), stored=len(stored), to_train=len(missing), groups=len({r.group_key() for r in missing}),
                  values=sum(todo.values()))
    frame = store.runs() if store is not None else pd.DataFrame()
    if missing and len(frame):
        overall = float(frame["wall_time"].median())
        by_setting = frame.groupby(["dataset", "model"])["wall_time"].median().to_dict()
        result.train_seconds = sum(
            by_setting.get((run.dataset.label(), run.model.label()), overall) for run in missing
        )
    elif not missing:
        result.train_seconds = 0.0
    values = store.measure_values() if store is not None else pd.DataFrame()
    versions = {measure.name: measure.version for measure, _ in measures}
    total = 0.0
    for name, count in todo.items():
        recorded = values[(values["measure"] == name) & (values["version"] == versions[name]) & (values["status"] == "ok")] if len(values) else values
        if len(recorded):
            total += float(recorded["seconds"].median()) * count
        else:
            result.unpriced.append(name)
    if not todo:
        result.evaluate_seconds = 0.0
    elif len(result.unpriced) < len(todo):
        result.evaluate_seconds = total  # the priced measures' part: the unpriced ones are named
    return result
