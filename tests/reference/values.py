"""Every built-in measure's value on a small fixed store: the reference that code moves must keep.

``python -m tests.reference.values`` trains the reference grid into a temporary store, evaluates
every registered measure on every run and writes ``values.json`` beside this file;
``tests/test_values_preserved.py`` does the same with the current code and compares.

The grid: 160 digits, an MLP (hidden [32]) and a conv net (channels [4, 8]) trained with a fast
recipe, and the 2n+d interpolation construction fitted in closed form, at label-corruption levels
0, 0.5 and 1 with seeds 0 and 1: 18 runs, 6 per training group, so that retraining measures have
several runs of one group to batch.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

from genbench.schemas import ComponentRef, ExperimentSpec, TrainConfig

PATH = Path(__file__).with_name("values.json")

SPEC = ExperimentSpec(
    name="reference-values",
    datasets=[ComponentRef(name="digits", options={"subset": 160})],
    models=[
        ComponentRef(name="mlp", options={"hidden": [32]}),
        ComponentRef(name="cnn", options={"channels": [4, 8]}),
        ComponentRef(name="interpolation"),
    ],
    levels=[0.0, 0.5, 1.0],
    seeds=[0, 1],
    train=TrainConfig(lr=0.05, schedule="constant", max_steps=2000),
)


def run_label(row) -> str:
    """The run's place in the grid, readable and stable across versions of the code."""
    return f"{row['model']}|p={row['level']:g}|seed={row['seed']}"


def encoded(value: float) -> float | str:
    """JSON keeps finite floats; NaN and ±∞ become strings."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def decoded(value: float | str) -> float:
    return float(value)


def compute(store_root: str | Path) -> dict[str, dict[str, dict]]:
    """{run label: {measure: {"value", "failed"}}} for every measure on every run of SPEC."""
    import genbench

    store = genbench.open_store(store_root)
    genbench.run(SPEC, store=store, device="cpu")
    runs = store.runs().set_index("run_id")
    values = store.measure_values()
    table: dict[str, dict[str, dict]] = {}
    for record in values.to_dict("records"):
        label = run_label(runs.loc[record["run_id"]])
        failed = record["error"] is not None and not (isinstance(record["error"], float) and math.isnan(record["error"]))
        table.setdefault(label, {})[record["measure"]] = {"value": encoded(float(record["value"])), "failed": failed}
    store.close()
    return dict(sorted(table.items()))


def main() -> None:
    os.environ["GENBENCH_LOAD_PLUGINS"] = ""  # the built-in measures only, as the test sees them
    with tempfile.TemporaryDirectory() as tmp:
        table = compute(Path(tmp) / "store")
    PATH.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {sum(len(v) for v in table.values())} values of {len(table)} runs to {PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
