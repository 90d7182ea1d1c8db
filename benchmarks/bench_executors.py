#!/usr/bin/env python
"""The whole ``genbench run`` of the default grid (24 runs, every measure: training, evaluation and
the leaderboard) on the dask executor with ``--workers 1`` against ``--workers 2``, and on the
local executor for reference, each in a fresh store and a fresh process.

The ways take turns (``--repeats`` rounds, each way once a round, in order); the script prints the
median and the spread (min–max) of each way's wall time, the speed-up of the medians, the load
average at the start and at the end, and checks that every dask store holds the same runs and
values as the first dask store (run for run, value for value; the workers run one torch thread
each). The local executor's store is compared too and the answer printed: its process uses every
core's thread, and a conv net's arithmetic depends on the thread count.

Usage::

    .venv/bin/python benchmarks/bench_executors.py                 # 3 rounds of dask-1, dask-2, local
    .venv/bin/python benchmarks/bench_executors.py --repeats 1 --ways dask-1,dask-2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS = {
    "dask-1": ["--executor", "dask", "--workers", "1"],
    "dask-2": ["--executor", "dask", "--workers", "2"],
    "local": ["--executor", "local"],
}


def genbench_run(store: Path, extra: list[str]) -> float:
    """Seconds of one ``genbench run`` of the default grid into ``store`` (it must exit 0), with the
    built-in measures only (``GENBENCH_LOAD_PLUGINS=""``: installed plugins would add theirs)."""
    command = [str(Path(sys.executable).with_name("genbench")), "run", "--store", str(store), "--format", "csv", *extra]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "GENBENCH_LOAD_PLUGINS": ""})
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {finished.returncode}:\n{finished.stderr[-2000:]}")
    return seconds


def contents(store: Path) -> tuple[dict, dict]:
    """Run results (without their wall time) with their checkpoints' sha256, and measure values, of a store."""
    connection = sqlite3.connect(store / "genbench.sqlite")
    runs = {}
    for run_id, text, checksums in connection.execute("SELECT run_id, result_json, checksums_json FROM runs"):
        result = json.loads(text)
        result.pop("wall_time")
        runs[run_id] = (result, checksums)
    values = {
        tuple(key): (value if value == value else "nan", status)
        for *key, value, status in connection.execute(
            "SELECT run_id, measure, version, options_hash, value, status FROM measure_values"
        )
    }
    connection.close()
    return runs, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="rounds (each way once a round)")
    parser.add_argument("--ways", default="dask-1,dask-2,local", help="comma-separated: " + ", ".join(WAYS))
    args = parser.parse_args()
    ways = args.ways.split(",")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"load average at the start: {os.getloadavg()}")
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    reference = None
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.repeats):
            for way in ways:
                store = Path(folder) / f"{way}-{round_}"
                seconds[way].append(genbench_run(store, WAYS[way]))
                found = contents(store)
                if way.startswith("dask"):
                    reference = reference or found
                same = reference is None or found == reference
                print(f"round {round_ + 1} {way}: {seconds[way][-1]:.1f} s, same store as the first dask store: {same}",
                      flush=True)
                if way.startswith("dask") and not same:
                    raise SystemExit(f"{way} stored other values than the first dask store")
    print(f"load average at the end: {os.getloadavg()}")
    medians = {}
    for way in ways:
        medians[way] = statistics.median(seconds[way])
        print(f"{way}: median {medians[way]:.1f} s (min {min(seconds[way]):.1f}, max {max(seconds[way]):.1f}) over {len(seconds[way])}")
    if "dask-1" in medians and "dask-2" in medians:
        print(f"speed-up of --workers 2 over --workers 1 (medians): {medians['dask-1'] / medians['dask-2']:.2f}x")
    if "local" in medians and "dask-2" in medians:
        print(f"speed-up of --workers 2 over the local executor (medians): {medians['local'] / medians['dask-2']:.2f}x")


if __name__ == "__main__":
    main()
