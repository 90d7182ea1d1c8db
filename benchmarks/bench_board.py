#!/usr/bin/env python
"""The whole leaderboard's cost: every score with its bootstrap intervals, against the same board
without intervals, on a generated store (``bench_scoring.synthetic_store``: 5 seeds, 40 measures
with ties, ±inf, failed values and NaN gaps).

The two sides take turns (``--repeats`` times each); the script prints the median and the
spread of each, the machine's load average at the start and the end, and, for scale, what the
bootstrap would cost done the plain way — each replicate built as data and scored with
``scipy.stats.kendalltau`` and ``granulated_kendall`` — timed on a few replicates of one
measure and multiplied out.

Usage::

    .venv/bin/python benchmarks/bench_board.py                      # 2,000 and 10,000 runs × 40 measures
    .venv/bin/python benchmarks/bench_board.py --runs 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scoring import synthetic_store  # noqa: E402

from genbench.scoring import granulated_kendall  # noqa: E402
from genbench.scoring.board import grid_axes, score_board  # noqa: E402
from genbench.scoring.bootstrap import REPLICATES, cell_weights  # noqa: E402
from genbench.scoring.granulated import _combined_codes  # noqa: E402


def plain_bootstrap_seconds(runs, values, replicates: int, timed: int = 3) -> float:
    """Seconds per measure of ``replicates`` replicates built as data and scored one by one
    (timed on ``timed`` replicates of the first measure, then multiplied out)."""
    from scipy.stats import kendalltau

    axes = grid_axes(runs)
    cells, count = _combined_codes(list(axes.values()), len(runs))
    weights = cell_weights(count, timed)
    frame = runs.assign(**{name: codes for name, codes in axes.items()})
    first = values[values["measure"] == values["measure"].iloc[0]]
    frame["mu"] = frame["run_id"].map(dict(zip(first["run_id"], first["value"])))
    started = time.perf_counter()
    for b in range(timed):
        data = frame.iloc[np.repeat(np.arange(len(frame)), weights[b][cells].astype(int))].dropna(subset=["mu", "gap"])
        kendalltau(data["mu"], data["gap"])
        granulated_kendall(data, "mu", "gap", list(axes))
    return (time.perf_counter() - started) / timed * replicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, action="append", help="runs in the generated store (repeatable)")
    parser.add_argument("--measures", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replicates", type=int, default=REPLICATES)
    arguments = parser.parse_args()
    sizes = arguments.runs or [2000, 10000]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    for size in sizes:
        runs, values = synthetic_store(size, arguments.measures)
        runs["num_test"] = 1000
        timings = {"with intervals": [], "without": []}
        for _ in range(arguments.repeats):
            for name, replicates in (("with intervals", arguments.replicates), ("without", 0)):
                started = time.perf_counter()
                scores, _ = score_board(runs, values, bootstrap=replicates)
                timings[name].append(time.perf_counter() - started)
        rows = len(scores)
        print(f"{size} runs × {arguments.measures} measures ({rows} rows, {arguments.replicates} replicates):")
        for name, seconds in timings.items():
            print(f"  {name:15s} median {statistics.median(seconds):7.2f} s  "
                  f"(min {min(seconds):.2f}, max {max(seconds):.2f}; {len(seconds)} runs)")
        plain = plain_bootstrap_seconds(runs, values, arguments.replicates)
        print(f"  the plain bootstrap (replicates as data, scipy + granulated_kendall): ≈ {plain:.0f} s per measure, "
              f"≈ {plain * rows / 60:.0f} min for the board")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
