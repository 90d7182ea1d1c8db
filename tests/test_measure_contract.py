"""Every built-in measure keeps the measure contract and evaluates on every kind of model.

The per-measure hand computations live in the test_measures*.py files; this file checks
what all measures share: metadata, options, registration, listing, and that each one gives
a value (not an error) through the engine on a small trained grid of an MLP and a conv net.
Batch-norm and local-response-norm networks (Zhang et al.'s Inception and AlexNet) are covered
measure by measure in the family test files, without training, to keep this file fast.
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

import genbench
from conftest import FAST_TRAIN
from genbench.cli.main import app
from genbench.measures import builtin_measures
from genbench.measures.base import BaseMeasure
from genbench.protocols import REQUIREMENTS
from genbench.plugins import get_plugins
from genbench.schemas import ComponentRef, ExperimentSpec, Options

MEASURES = builtin_measures()


@pytest.mark.parametrize("measure", MEASURES, ids=lambda m: m.name)
def test_measure_metadata(measure):
    assert issubclass(measure, BaseMeasure)
    assert measure.kind in ("complexity", "capability")
    assert isinstance(measure.version, str) and measure.version
    assert measure.requires <= REQUIREMENTS
    assert issubclass(measure.Options, Options)
    measure.Options()  # every option has a default
    assert measure.source, f"{measure.name} names no source"
    doc = (measure.__doc__ or "").strip().splitlines()
    assert len(doc) > 2, f"{measure.name} needs a docstring with its formula"


def test_names_are_unique_and_registered():
    names = [m.name for m in MEASURES]
    assert len(names) == len(set(names))
    assert set(names) <= set(get_plugins().registry("measures").names())


def test_list_measures_shows_options_and_sources():
    result = CliRunner().invoke(app, ["list", "measures", "--options", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    for measure in MEASURES:
        row = rows[measure.name]
        assert row["source"] == measure.source
        assert row["kind"] == measure.kind
        for option in measure.Options.model_fields:
            assert f"{option}=" in row["options"]


@pytest.fixture(scope="module")
def small_grid(tmp_path_factory):
    """An MLP and a conv net on 160 digits with half the labels corrupted; every measure evaluated."""
    store = genbench.open_store(tmp_path_factory.mktemp("contract") / "store")
    spec = ExperimentSpec(
        name="contract",
        datasets=[ComponentRef(name="digits", options={"subset": 160})],
        models=[
            ComponentRef(name="mlp", options={"hidden": [32]}),
            ComponentRef(name="cnn", options={"channels": [4, 8]}),
        ],
        levels=[0.5],
        seeds=[0],
        train=FAST_TRAIN.model_copy(update={"max_steps": 120}),
    )
    genbench.run(spec, store=store)
    return store


def test_every_measure_evaluates_on_every_architecture(small_grid):
    values = small_grid.measure_values().merge(small_grid.runs()[["run_id", "model"]], on="run_id")
    failed = values[values["error"].notna()]
    assert failed.empty, failed[["measure", "model", "error"]].to_string()
    evaluated = set(values["measure"])
    assert {m.name for m in MEASURES} <= evaluated
    for _, row in values[values["error"].isna()].iterrows():
        assert not math.isnan(row["value"]), f"{row['measure']} gave NaN on {row['model']}"
