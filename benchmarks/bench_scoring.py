#!/usr/bin/env python
"""Scoring cost: the leaderboard of a generated store, now and as it was scored before (commit c835c08).

A synthetic pair of store frames is generated (``Store.runs()`` and
``Store.measure_values()`` in form): runs on a grid of dataset × model ×
corruption × level × train_config × test_labels × seed (5 seeds; the number of
models grows with ``--runs``: 5 for 2,000 runs, 25 for 10,000) with a gap that
grows with the level, and 40 measures (one in five a capability score, four evaluated
at two options, two with an older version too) with ties, ±inf, failed values
and runs whose gap is NaN. Then ``genbench.scoring.score_measures`` and the
``build_leaderboard`` of commit c835c08, the last before scoring became a pure
function of the store (``--previous REV`` for another; read with ``git show`` into a
temporary folder; nothing in the repository is changed) score it, the two sides taking
turns, and the script prints the median and the spread of each, the machine's
load average at the start and the end, and whether the two boards agree.

Usage::

    .venv/bin/python benchmarks/bench_scoring.py                      # 2,000 and 10,000 runs × 40 measures
    .venv/bin/python benchmarks/bench_scoring.py --runs 2000 --repeats 5
    .venv/bin/python benchmarks/bench_scoring.py --runs 500 --repeats 1 --no-previous
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from genbench.scoring import score_measures

REPOSITORY = Path(__file__).resolve().parent.parent
DATASETS = ("digits", "mnist1d")
SEEDS = 5
CORRUPTIONS = ("labels", "gaussian")
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
TRAIN_CONFIGS = ('{"lr":0.05}', '{"lr":0.01}')
TEST_LABELS = ("clean", "corrupted")
#: measures (by index) also evaluated at non-default options, and with an older version too
TWO_OPTIONS = (3, 11, 19, 27)
OLDER_VERSION = (5, 6)
SCORED_COLUMNS = ["kind", "reference", "runs", "tau_gap", "psi", "tau_level", "axiom", "axiom_value",
                  "value_clean", "value_noise", "seconds_per_run"]


def synthetic_store(runs: int, measures: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs frame, values frame) of a generated store with ``runs`` runs and ``measures`` measures."""
    rng = np.random.default_rng(seed)
    per_model = len(DATASETS) * len(CORRUPTIONS) * len(LEVELS) * len(TRAIN_CONFIGS) * len(TEST_LABELS) * SEEDS
    models = [f"model-{i:02d}" for i in range(math.ceil(runs / per_model))]
    grid = pd.MultiIndex.from_product(
        [DATASETS, models, CORRUPTIONS, LEVELS, TRAIN_CONFIGS, TEST_LABELS, range(SEEDS)],
        names=["dataset", "model", "corruption", "level", "train_config", "test_labels", "seed"],
    ).to_frame(index=False).iloc[:runs]
    grid.insert(0, "run_id", [f"run{i:06d}" for i in range(len(grid))])
    model_effect = grid["model"].map({m: 0.02 * i for i, m in enumerate(models)}).to_numpy()
    gap = 0.8 * grid["level"].to_numpy() + model_effect + rng.normal(0, 0.05, len(grid))
    gap[rng.random(len(grid)) < 0.005] = np.nan  # a few diverged runs
    grid["gap"] = gap
    grid["status"] = np.where(np.isnan(gap), "diverged", "converged")
    grid["labels_uninformative"] = (grid["level"] == 1.0).to_numpy()
    grid = grid[["run_id", "dataset", "model", "corruption", "level", "seed", "test_labels", "train_config",
                 "status", "gap", "labels_uninformative"]]

    rows = []
    clock = 1.0e9
    base_gap = np.nan_to_num(gap, nan=0.5)
    for index in range(measures):
        name = f"measure-{index:02d}"
        kind = "capability" if index % 5 == 0 else "complexity"
        variants = [({"k": 1}, True)] + ([({"k": 2}, False)] if index in TWO_OPTIONS else [])
        versions = (["0"] if index in OLDER_VERSION else []) + ["1"]
        for version in versions:
            for options, default in variants:
                signal = -base_gap if kind == "capability" else base_gap
                value = rng.normal(0.3 + 0.02 * index, 0.3) * signal + rng.normal(0, 0.2, len(grid))
                if kind == "capability":
                    value = np.where(grid["labels_uninformative"], rng.normal(0, 0.02, len(grid)), value)
                if index % 4 == 1:
                    value = np.round(value, 1)  # many ties
                if index % 7 == 2:
                    value[rng.random(len(grid)) < 0.01] = np.inf
                status = np.where(np.isnan(gap), "skipped", np.where(rng.random(len(grid)) < 0.01, "failed", "ok"))
                value = np.where(status == "ok", value, np.nan)
                error = np.where(status == "ok", None, np.where(status == "skipped", "skipped: diverged", "failed"))
                frame = pd.DataFrame(
                    {
                        "run_id": grid["run_id"].to_numpy(),
                        "measure": name,
                        "version": version,
                        "options_hash": json.dumps(options, sort_keys=True),
                        "options": [options] * len(grid),
                        "value": value,
                        "seconds": rng.exponential(0.01, len(grid)),
                        "error": error,
                        "status": status,
                        "kind": kind,
                        "default_options": default,
                        "details": [{}] * len(grid),
                        "created_at": clock + np.arange(len(grid)) * 1e-3,
                    }
                )
                clock += len(grid) * 1e-3 + 1.0
                rows.append(frame)
    values = pd.concat(rows, ignore_index=True)
    return grid.reset_index(drop=True), values


#: The last commit whose leaderboard scored with the registry's kinds (the side compared against).
PREVIOUS = "c835c08"


def previous_implementation(workdir: Path, revision: str = PREVIOUS):
    """``build_leaderboard`` as committed at ``revision``, imported from a temporary folder."""

    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{revision}:{path}"], cwd=REPOSITORY, check=True,
                              capture_output=True, text=True).stdout

    (workdir / "previous_scoring.py").write_text(show("genbench/scoring.py"))
    leaderboard = show("genbench/report/leaderboard.py").replace("from genbench.scoring import",
                                                                 "from previous_scoring import")
    (workdir / "previous_leaderboard.py").write_text(leaderboard)
    sys.path.insert(0, str(workdir))
    spec = importlib.util.spec_from_file_location("previous_leaderboard", workdir / "previous_leaderboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_leaderboard


def previous_arguments(values: pd.DataFrame) -> dict:
    """What the previous build_leaderboard took from the registry, read off the generated values."""
    kinds = dict(zip(values["measure"], values["kind"]))
    defaults = {
        measure: json.dumps(options, sort_keys=True)
        for measure, options, default in zip(values["measure"], values["options"], values["default_options"])
        if default
    }
    return {"kinds": kinds, "default_options": defaults, "uninformative": {"labels", "random-labels", "gaussian"}}


def agreement(new: pd.DataFrame, old: pd.DataFrame) -> str:
    """How the two boards compare: same rows in the same order, and the largest difference."""
    if list(new["measure"]) != list(old["measure"]):
        same = sorted(new["measure"]) == sorted(old["measure"])
        return "rows differ" if not same else "same rows, other order"
    largest = 0.0
    for column in SCORED_COLUMNS:
        for a, b in zip(new[column], old[column]):
            if isinstance(a, str) or isinstance(b, str) or isinstance(a, bool):
                if a != b:
                    return f"column {column} differs: {a!r} vs {b!r}"
                continue
            a = math.nan if a is None else float(a)
            b = math.nan if b is None else float(b)
            if math.isnan(a) or math.isnan(b):
                if not (math.isnan(a) and math.isnan(b)):
                    return f"column {column}: {a} vs {b}"
                continue
            if a != b:
                largest = max(largest, abs(a - b))
    return "identical" if largest == 0 else f"same rows and order; largest difference {largest:.3g}"


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, action="append", help="runs in the store (repeatable; default 2000 and 10000)")
    parser.add_argument("--measures", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3, help="timings per side (the sides take turns)")
    parser.add_argument("--no-previous", action="store_true", help="time only the current implementation")
    parser.add_argument("--previous", default=PREVIOUS, help="the commit of the other side (default %(default)s)")
    parser.add_argument("--json", type=Path, help="write the timings here")
    args = parser.parse_args()
    sizes = args.runs or [2000, 10000]
    import scipy.stats  # noqa: F401 - imported by the scoring on first use; not part of the timings
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, numpy {np.__version__}, pandas {pd.__version__}")
    print(f"load average at start {os.getloadavg()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        previous = None if args.no_previous else previous_implementation(Path(workdir), args.previous)
        for size in sizes:
            runs, values = synthetic_store(size, args.measures)
            sides = {"now": lambda runs=runs, values=values: score_measures(runs, values)}
            if previous is not None:
                extra = previous_arguments(values)
                sides["previous"] = lambda runs=runs, values=values, extra=extra: previous(runs, values, **extra)
            times: dict[str, list[float]] = {side: [] for side in sides}
            outputs = {}
            for repeat in range(args.repeats):
                names = list(sides) if repeat % 2 == 0 else list(reversed(sides))
                for side in names:
                    seconds, outputs[side] = timed(sides[side])
                    times[side].append(seconds)
                    print(f"  {size} runs × {args.measures} measures, {side}: {seconds:.3f} s "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)
            print(f"{size} runs × {args.measures} measures ({len(values)} values):")
            for side, values_s in times.items():
                print(f"  {side:>4}: median {statistics.median(values_s):.3f} s, "
                      f"min–max {min(values_s):.3f}–{max(values_s):.3f} s over {len(values_s)}")
            row = {"runs": size, "measures": args.measures, "values": len(values),
                   **{side: sorted(values_s) for side, values_s in times.items()}}
            if previous is not None:
                from genbench.report.leaderboard import board_frame

                verdict = agreement(board_frame(outputs["now"]), outputs["previous"])
                ratio = statistics.median(times["previous"]) / statistics.median(times["now"])
                print(f"  previous / now: {ratio:.1f}×; boards: {verdict}")
                row.update(ratio=ratio, agreement=verdict)
            results.append(row)
    end = os.getloadavg()
    print(f"load average at end {end}")
    if args.json:
        args.json.write_text(json.dumps({"load_average_end": end, "results": results}, indent=2))


if __name__ == "__main__":
    main()
