"""Which runs a board scores: ``--where`` filters on the runs' axes and results, and the slices of
``--by`` (one board per model, dataset or corruption)."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pandas as pd

from genbench.conditions import Condition, apply_where
from genbench.errors import SpecError

#: The run columns a board may be conditioned on (``--by``): one board per value.
SLICE_AXES = ("model", "dataset", "corruption", "test_labels")


def _with_recipe_fields(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with one column ``train.<field>`` per field of the recipes (``train_config``)."""
    if "train_config" not in runs.columns or runs.empty:
        return runs
    recipes = pd.DataFrame(
        [json.loads(text) if isinstance(text, str) and text else {} for text in runs["train_config"]], index=runs.index
    ).add_prefix("train.")
    return pd.concat([runs, recipes], axis=1)


def select_runs(runs: pd.DataFrame, where: Iterable[str] = ()) -> pd.DataFrame:
    """The runs that satisfy every condition of ``where`` (see ``genbench.conditions.Condition``):
    ``COLUMN=V1,V2`` (any of; a component's name matches its labels, ``model=mlp``),
    ``COLUMN!=V1,V2``, ``COLUMN<V`` (also ``<=``, ``>``, ``>=``), on any run column
    (``model``, ``dataset``, ``corruption``, ``level``, ``seed``, ``status``, ``gap``, …) or
    ``train.<field>`` of the recipe. An unknown column is one UnknownNameError line."""
    conditions = [Condition.parse(text) for text in where]
    if not conditions:
        return runs
    chosen = apply_where(_with_recipe_fields(runs), conditions)
    return runs.loc[chosen.index]


def slices(runs: pd.DataFrame, by: str | None) -> list[tuple[str, pd.DataFrame]]:
    """``[("", runs)]`` without ``by``; else one ``("by=value", runs of that value)`` per value,
    in sorted order."""
    if by is None:
        return [("", runs)]
    if by not in SLICE_AXES:
        raise SpecError(f"--by must be one of {', '.join(SLICE_AXES)}; got '{by}'")
    return [(f"{by}={value}", part) for value, part in runs.groupby(by, sort=True)]
