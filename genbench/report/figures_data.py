"""The numbers a report shows, taken from the store's frames as they are (nothing is trained,
measured or scored here): one row per run with its axes, the grid's cells averaged over seeds,
steps to fit under two criteria, and each measure's values per run.

Terms used throughout the report modules:

* a **setting** is one panel of a figure: dataset × model (with options) × recipe; runs of one
  setting differ only in corruption, level and seed;
* a **series** is one corruption kind (with its options) inside a setting;
* **true labels** are the runs of a setting at p_c = 0 (every corruption is the identity there).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from genbench.schemas import ComponentRef, RunResult, RunSpec, TrainConfig

#: The training cross-entropy of the second stop criterion of Figure 1b (Zhang et al. plot the loss).
CE_THRESHOLD = 0.1
#: The measure whose stored value is the steps to training cross-entropy ``CE_THRESHOLD``.
STEPS_MEASURE = "steps-to-fit"

TrainedRun = tuple[RunSpec, RunResult]


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def ref_labels(refs: Iterable[ComponentRef]) -> dict[str, str]:
    """Short labels for components: the bare name where it is unambiguous, else the full label
    with options. Keyed by the full label (``ComponentRef.label()``)."""
    distinct = {ref.label(): ref for ref in refs}
    names = pd.Series([ref.name for ref in distinct.values()]).value_counts()
    return {full: (ref.name if names[ref.name] == 1 else full) for full, ref in distinct.items()}


def corruption_ref(spec: RunSpec) -> ComponentRef:
    """The run's corruption kind with its options (level and seed left out)."""
    return ComponentRef(name=spec.corruption.name, options=dict(spec.corruption.options))


def train_fields(train: TrainConfig) -> dict[str, Any]:
    """Every field of a recipe, defaults included (``model_dump`` leaves some defaults out)."""
    return {name: getattr(train, name) for name in type(train).model_fields}


def recipe_variation(trains: Iterable[TrainConfig]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The recipe fields that are the same in every run (field → value) and those that vary
    (field → sorted distinct values)."""
    seen: dict[str, list[Any]] = {}
    for train in trains:
        for name, value in train_fields(train).items():
            values = seen.setdefault(name, [])
            if value not in values:
                values.append(value)
    constant = {name: values[0] for name, values in seen.items() if len(values) == 1}
    varying = {name: sorted(values, key=repr) for name, values in seen.items() if len(values) > 1}
    return constant, varying


def recipe_label(train: TrainConfig, varying: Iterable[str]) -> str:
    """The recipe told by the fields that vary over the store (empty when none does)."""
    fields = train_fields(train)
    return ", ".join(f"{name}={fields[name]}" for name in varying)


def dropout_of(spec: RunSpec) -> float:
    """The model's ``dropout`` option (0 when it has none)."""
    dropout = spec.model.options.get("dropout")
    return float(dropout) if isinstance(dropout, (int, float)) else 0.0


def regularizers(spec: RunSpec) -> str:
    """The explicit regularizers of a run, as Zhang et al. count them: weight decay, random crop
    (``augment``), dropout (a model option) and early stopping; "none" without any."""
    parts = []
    if spec.train.weight_decay > 0:
        parts.append(f"wd {spec.train.weight_decay:g}")
    if spec.train.augment:
        parts.append("crop")
    if dropout_of(spec) > 0:
        parts.append(f"dropout {dropout_of(spec):g}")
    if getattr(spec.train, "early_stopping_patience", None) is not None:
        parts.append("early stopping")
    return ", ".join(parts) or "none"


def stop_label(train: TrainConfig) -> str:
    """A recipe's own stop criterion in words."""
    if train.stop == "loss":
        return f"training CE ≤ {train.loss_threshold:g}"
    return f"{100 * train.target_accuracy:g} % training accuracy"


# ---------------------------------------------------------------------------
# One row per run
# ---------------------------------------------------------------------------

RESULT_COLUMNS = (
    "status", "steps", "steps_to_fit", "train_accuracy", "test_accuracy", "gap", "labels_changed",
    "num_train", "num_test", "num_classes", "num_parameters", "genbench_version", "device",
)


def run_axes(runs: pd.DataFrame, trained: Sequence[TrainedRun]) -> pd.DataFrame:
    """One row per run: its axes (full and short labels, setting, series, recipe, regularizers,
    stop criterion) from the specs, then its numbers from the runs frame."""
    if not trained:
        return pd.DataFrame(columns=["run_id", "setting", "series", "level", "seed", *RESULT_COLUMNS])
    specs = [spec for spec, _ in trained]
    datasets = ref_labels(spec.dataset for spec in specs)
    models = ref_labels(spec.model for spec in specs)
    corruptions = ref_labels(corruption_ref(spec) for spec in specs)
    _, varying = recipe_variation(spec.train for spec in specs)
    records = []
    for spec in specs:
        dataset, model = spec.dataset.label(), spec.model.label()
        recipe = recipe_label(spec.train, varying)
        setting = models[model] if len(datasets) == 1 else f"{datasets[dataset]} · {models[model]}"
        records.append(
            {
                "run_id": spec.run_id,
                "dataset": dataset,
                "dataset_name": spec.dataset.name,
                "dataset_short": datasets[dataset],
                "model": model,
                "model_name": spec.model.name,
                "model_short": models[model],
                "recipe": recipe,
                "setting": f"{setting} ({recipe})" if recipe else setting,
                "corruption": corruption_ref(spec).label(),
                "corruption_name": spec.corruption.name,
                "series": corruptions[corruption_ref(spec).label()],
                "level": float(spec.corruption.level),
                "seed": int(spec.seed),
                "test_labels": spec.test_labels,
                "regularizers": regularizers(spec),
                "weight_decay": float(spec.train.weight_decay),
                "augment": bool(spec.train.augment),
                "dropout": dropout_of(spec) > 0,
                "stop": stop_label(spec.train),
            }
        )
    axes = pd.DataFrame.from_records(records)
    numbers = runs[["run_id", *[c for c in RESULT_COLUMNS if c in runs.columns]]]
    return axes.merge(numbers, on="run_id", how="left")


def in_order(values: Iterable[Any]) -> list[Any]:
    """Distinct values in the order they first appear."""
    return list(dict.fromkeys(values))


def label_corruptions(axes: pd.DataFrame) -> set[str]:
    """The series that corrupt labels: some run of theirs above p_c = 0 has changed labels (pixel
    corruptions never change a label), read from the runs' recorded ``labels_changed``."""
    touched = axes[(axes["level"] > 0) & (axes["labels_changed"].astype(float) > 0)]
    return set(touched["series"])


# ---------------------------------------------------------------------------
# Table 1: the cells of the grid, averaged over seeds
# ---------------------------------------------------------------------------

CELL_KEYS = ("dataset", "model", "recipe", "regularizers", "corruption", "level", "test_labels")


def cell_means(axes: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (``CELL_KEYS``), in the order cells first appear: the seed count and the
    mean train and test accuracy in %, with the columns Zhang et al.'s rows are matched on."""
    if axes.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "seeds", "train_pct", "test_pct"])
    keys = list(CELL_KEYS)
    grouped = axes.groupby(keys, sort=False, dropna=False)
    cells = grouped.agg(
        seeds=("seed", "nunique"),
        runs=("run_id", "size"),
        train_pct=("train_accuracy", lambda s: 100 * float(np.mean(s))),
        test_pct=("test_accuracy", lambda s: 100 * float(np.mean(s))),
        model_name=("model_name", "first"),
        model_short=("model_short", "first"),
        dataset_short=("dataset_short", "first"),
        corruption_name=("corruption_name", "first"),
        series=("series", "first"),
        setting=("setting", "first"),
        weight_decay=("weight_decay", "first"),
        augment=("augment", "first"),
        dropout=("dropout", "first"),
    )
    return sort_cells(cells.reset_index())


def sort_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells ordered by each key in the order its values first appear, p_c ascending."""
    ranks = {key: cells[key].map({v: i for i, v in enumerate(in_order(cells[key]))}) for key in CELL_KEYS if key != "level"}
    order = pd.DataFrame({**ranks, "level": cells["level"].astype(float)})
    return cells.loc[order.sort_values(list(order.columns), kind="stable").index].reset_index(drop=True)


# ---------------------------------------------------------------------------
# Figure 1b: steps to fit
# ---------------------------------------------------------------------------


def curve_crossing(curve: Sequence[tuple[int, float]], threshold: float) -> float:
    """The first step whose epoch-mean training cross-entropy is ≤ ``threshold`` (NaN if none)."""
    for step, loss in curve:
        if math.isfinite(loss) and loss <= threshold:
            return float(step)
    return float("nan")


def measured_steps(values: pd.DataFrame, threshold: float = CE_THRESHOLD) -> pd.Series:
    """The stored ``steps-to-fit`` value per run (its newest version, options with
    ``loss_threshold`` = ``threshold``, status "ok"; +inf = never reached)."""
    if values.empty:
        return pd.Series(dtype=float)
    chosen = values[(values["measure"] == STEPS_MEASURE) & (values["status"] == "ok")]
    chosen = chosen[[_threshold_of(options) == threshold for options in chosen["options"]]]
    if chosen.empty:
        return pd.Series(dtype=float)
    newest = chosen.sort_values("created_at")["version"].iloc[-1]
    chosen = chosen[chosen["version"] == newest].sort_values("created_at")
    return chosen.groupby("run_id")["value"].last().astype(float)


def _threshold_of(options: object) -> float:
    if isinstance(options, Mapping):
        return float(options.get("loss_threshold", CE_THRESHOLD))
    return CE_THRESHOLD


def ce_steps(axes: pd.DataFrame, values: pd.DataFrame, trained: Sequence[TrainedRun]) -> pd.DataFrame:
    """Per run: ``ce_steps`` (steps to training CE ``CE_THRESHOLD``, NaN where unknown or never
    reached) and ``ce_source`` ("measure" for a stored steps-to-fit value, "curve" for the loss
    curve's first point at or below the threshold, "" where neither gives one)."""
    measured = measured_steps(values)
    curves = {spec.run_id: result.loss_curve for spec, result in trained}
    steps, sources = [], []
    for run_id in axes["run_id"]:
        if run_id in measured.index:
            value = float(measured[run_id])
            steps.append(value if math.isfinite(value) else float("nan"))
            sources.append("measure")
            continue
        crossing = curve_crossing(curves.get(run_id, []), CE_THRESHOLD)
        steps.append(crossing)
        sources.append("curve" if math.isfinite(crossing) else "")
    return pd.DataFrame({"run_id": list(axes["run_id"]), "ce_steps": steps, "ce_source": sources})


def relative_steps(axes: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per (setting, series, level): the mean of ``column`` over the runs that have it, divided by
    the same mean over the setting's true-label runs (p_c = 0, every series); ``runs`` and
    ``known`` count the cell's runs and those with a value. Settings without a true-label value
    are left out."""
    known = axes[np.isfinite(axes[column].astype(float))]
    baseline = known[known["level"] == 0].groupby("setting")[column].mean()
    baseline = baseline[baseline > 0]
    cells = axes.groupby(["setting", "series", "level"], sort=False)
    out = cells.agg(runs=("run_id", "size"), known=(column, lambda s: int(np.isfinite(s.astype(float)).sum())))
    out["mean"] = cells[column].agg(lambda s: float(np.nanmean(s.astype(float))) if np.isfinite(s.astype(float)).any() else np.nan)
    out = out.reset_index()
    out = out[out["setting"].isin(baseline.index)]
    out["relative"] = out["mean"] / out["setting"].map(baseline)
    return out.reset_index(drop=True)


#: Ratios to the true-label steps within this of 1 count as "as fast as true labels".
SAME_SPEED = 0.05


def side_of_one(ratio: float) -> int:
    """−1 faster than true labels, +1 slower, 0 within ``SAME_SPEED`` of them."""
    return 0 if abs(ratio - 1) <= SAME_SPEED else (1 if ratio > 1 else -1)


def disagreements(own: pd.DataFrame, ce: pd.DataFrame) -> list[str]:
    """The cells above p_c = 0 where one criterion says training fits faster than on true labels
    and the other slower (each by more than ``SAME_SPEED``), in words."""
    merged = own.merge(ce, on=["setting", "series", "level"], suffixes=("_own", "_ce"))
    merged = merged[(merged["level"] > 0) & np.isfinite(merged["relative_own"]) & np.isfinite(merged["relative_ce"])]
    lines = []
    for row in merged.itertuples():
        own_side, ce_side = side_of_one(row.relative_own), side_of_one(row.relative_ce)
        if own_side * ce_side < 0:
            lines.append(
                f"{row.setting}, {row.series} at p_c = {row.level:g}: ×{row.relative_own:.2f} the true-label steps "
                f"to its own stop criterion, ×{row.relative_ce:.2f} to training CE {CE_THRESHOLD:g}"
            )
    return lines


# ---------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasureSeries:
    """One measure at one set of options (one leaderboard row): its latest "ok" value per run."""

    label: str
    name: str
    version: str
    kind: str
    values: pd.Series  # indexed by run_id


def _label(name: str, options: object, plain: bool) -> str:
    if plain or not isinstance(options, Mapping):
        return name
    return f"{name}[{','.join(f'{key}={value}' for key, value in sorted(options.items()))}]"


def measure_series(values: pd.DataFrame) -> list[MeasureSeries]:
    """Each measure's newest version, one entry per options hash, labelled as the leaderboard
    labels its rows (``name`` at the default options, ``name[k=v,...]`` otherwise); entries
    without an "ok" value are left out."""
    if values.empty:
        return []
    frame = values.sort_values("created_at", kind="stable")
    newest = frame.groupby("measure", sort=False)["version"].last()
    frame = frame[frame["version"].to_numpy() == frame["measure"].map(newest).to_numpy()]
    out = []
    for (name, _), group in frame.groupby(["measure", "options_hash"], sort=False):
        defaults = [d for d in group["default_options"] if d is not None]
        variants = frame.loc[frame["measure"] == name, "options_hash"].nunique()
        plain = bool(defaults[-1]) if defaults else variants == 1
        ok = group[group["status"] == "ok"]
        if ok.empty:
            continue
        kinds = [k for k in group["kind"] if isinstance(k, str)]
        out.append(
            MeasureSeries(
                label=_label(name, group["options"].iloc[-1], plain),
                name=name,
                version=str(group["version"].iloc[-1]),
                kind=kinds[-1] if kinds else "complexity",
                values=ok.groupby("run_id")["value"].last().astype(float),
            )
        )
    return out


def board_row(board: pd.DataFrame, label: str) -> dict[str, Any]:
    """The leaderboard row of ``label`` as a dict (empty when the board has none)."""
    if board.empty or "measure" not in board.columns:
        return {}
    rows = board[board["measure"] == label]
    return rows.iloc[0].to_dict() if len(rows) else {}


def finite(value: object) -> bool:
    """Whether ``value`` is a finite number."""
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def options_text(options: Mapping[str, Any]) -> str:
    """Options as ``k=v, …`` with JSON values."""
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in sorted(options.items()))
