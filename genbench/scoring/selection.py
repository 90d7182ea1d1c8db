"""Which runs a board scores: ``--where`` filters on the runs' axes and results, and the slices of
``--by`` (one board per model, dataset or corruption)."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pandas as pd

from genbench.choices import SLICE_AXES  # the run columns ``--by`` may slice a board by
from genbench.conditions import Condition, apply_where
from genbench.errors import SpecError
from genbench.schemas import TrainConfig


def _recipe(text: object) -> dict:
    """Every field of one run's recipe, defaults included: the stored JSON leaves out fields at
    their defaults that were added later (``augment``, early stopping), so it is read as a
    ``TrainConfig``; a recipe that is not one (another version's) is read as plain JSON."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        config = TrainConfig.model_validate_json(text)
    except ValueError:
        return json.loads(text)
    return {name: getattr(config, name) for name in TrainConfig.model_fields}  # model_dump leaves defaults out


def recipes(runs: pd.DataFrame) -> pd.DataFrame:
    """One column ``train.<field>`` per recipe field of ``runs`` (``train_config``), values hashable."""
    if "train_config" not in runs.columns or runs.empty:
        return pd.DataFrame(index=runs.index)
    frame = pd.DataFrame([_recipe(text) for text in runs["train_config"]], index=runs.index)
    hashable = frame.apply(lambda column: column.map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v))
    return hashable.add_prefix("train.")


def _with_recipe_fields(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with one column ``train.<field>`` per field of the recipes."""
    return pd.concat([runs, recipes(runs)], axis=1)


def select_runs(runs: pd.DataFrame, where: Iterable[str] = ()) -> pd.DataFrame:
    """The runs that satisfy every condition of ``where`` (see ``genbench.conditions.Condition``):
    ``COLUMN=V1,V2`` (any of; a component's name matches its labels, ``model=mlp``),
    ``COLUMN!=V1,V2``, ``COLUMN<V`` (also ``<=``, ``>``, ``>=``), on any run column
    (``model``, ``dataset``, ``corruption``, ``level``, ``seed``, ``status``, ``gap``, …) or
    ``train.<field>`` of the recipe. An unknown column is one UnknownNameError line."""
    conditions = [Condition.parse(text) for text in where]
    if not conditions:
        return runs
    positions = pd.RangeIndex(len(runs))
    chosen = apply_where(_with_recipe_fields(runs.set_axis(positions)), conditions)
    return runs.iloc[chosen.index.to_numpy()]


def slices(runs: pd.DataFrame, by: str | None) -> list[tuple[str, pd.DataFrame]]:
    """``[("", runs)]`` without ``by``; else one ``("by=value", runs of that value)`` per value,
    in sorted order."""
    if by is None:
        return [("", runs)]
    if by not in SLICE_AXES:
        raise SpecError(f"--by must be one of {', '.join(SLICE_AXES)}; got '{by}'")
    return [(f"{by}={value}", part) for value, part in runs.groupby(by, sort=True, dropna=False)]
