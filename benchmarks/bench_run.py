#!/usr/bin/env python
"""The default ``genbench run`` end to end — train the 24 runs, evaluate every built-in measure —
timed stage by stage, for two trees of the code side by side.

Each side runs in a fresh child process on a fresh store: ``Engine.train`` on the default grid,
then ``Engine.evaluate`` of every registered measure (what ``genbench run`` does before it prints
the leaderboard), then the leaderboard. Training and evaluation run in two child processes, one after the other on the same
store, so that each stage's peak resident memory is its own; they report wall seconds of each stage and
the seconds the store recorded for each measure (summed over runs). With ``--before TREE`` the other side imports genbench from TREE (a checkout of another
commit: ``git worktree add /tmp/before <commit>``); the sides alternate ``--repeat`` times.

    .venv/bin/python benchmarks/bench_run.py                          # this tree, once
    .venv/bin/python benchmarks/bench_run.py --before /tmp/before --repeat 3 --json run.json
    .venv/bin/python benchmarks/bench_run.py --seeds 0,1,2,3           # 48 runs (memory flatness)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
tree = os.environ.get("GENBENCH_BENCH_TREE")
if tree:  # import genbench from that tree, not from the editable install
    sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
    sys.path.insert(0, tree)
import torch
import genbench
print("genbench from", genbench.__file__, file=sys.stderr)
from genbench.engine import Engine, resolve_measures, resolve_runs
from genbench.schemas import ExperimentSpec
from genbench.store import Store
from genbench import api

stage, seeds = sys.argv[2], [int(s) for s in sys.argv[3].split(",")]
spec = ExperimentSpec(seeds=seeds)
store = Store(sys.argv[1])
engine = Engine(store, device="cpu")
runs = resolve_runs(spec)
started = time.perf_counter()
if stage == "train":
    engine.train(runs)
    print(json.dumps({"runs": len(runs), "train_s": time.perf_counter() - started,
                      "train_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit(0)
engine.evaluate(resolve_measures(None), [r.run_id for r in runs])
evaluated = time.perf_counter()
api.leaderboard(store, run_ids=[r.run_id for r in runs])
ranked = time.perf_counter()
values = store.measure_values()
failed = int(values["error"].notna().sum())
per_measure = values.groupby("measure")["seconds"].sum().round(3).to_dict()
print(json.dumps({
    "evaluate_s": evaluated - started, "leaderboard_s": ranked - evaluated,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "values": len(values), "failed": failed, "per_measure_s": per_measure,
}))
"""


def run_side(tree: Path | None, seeds: str) -> dict:
    env = dict(os.environ)
    env.pop("GENBENCH_BENCH_TREE", None)
    if tree is not None:
        env["GENBENCH_BENCH_TREE"] = str(tree)
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in ("train", "evaluate"):  # one process each: the evaluate stage's own peak memory
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(Path(tmp) / "store"), stage, seeds],
                env=env, capture_output=True, text=True, check=True,
            )
            result.update(json.loads(out.stdout.strip().splitlines()[-1]))
    result["total_s"] = result["train_s"] + result["evaluate_s"] + result["leaderboard_s"]
    return result


def summary(name: str, results: list[dict]) -> dict:
    keys = ("total_s", "train_s", "evaluate_s", "leaderboard_s", "train_peak_rss_mib", "peak_rss_mib")
    row = {"side": name, "repeats": len(results)}
    for key in keys:
        values = [r[key] for r in results]
        row[key] = {"median": round(statistics.median(values), 1), "min": round(min(values), 1), "max": round(max(values), 1)}
    measures = sorted(results[0]["per_measure_s"])
    row["per_measure_s"] = {m: round(statistics.median(r["per_measure_s"].get(m, 0.0) for r in results), 2) for m in measures}
    row["failed"] = [r["failed"] for r in results]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a tree of another commit, run as the other side")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seeds", default="0,1", help="seeds of the default grid (0,1 = 24 runs)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sides = [("after", None)] + ([("before", args.before)] if args.before else [])
    results: dict[str, list[dict]] = {name: [] for name, _ in sides}
    print(f"load average at start {os.getloadavg()}", flush=True)
    for repeat in range(args.repeat):
        order = sides if repeat % 2 == 0 else sides[::-1]
        for name, tree in order:
            result = run_side(tree, args.seeds)
            results[name].append(result)
            print(f"{name:6s} repeat {repeat}: total {result['total_s']:.1f} s (train {result['train_s']:.1f}, "
                  f"evaluate {result['evaluate_s']:.1f}), peak RSS evaluating {result['peak_rss_mib']:.0f} MiB "
                  f"(training {result['train_peak_rss_mib']:.0f}), "
                  f"{result['values']} values, {result['failed']} failed; load {os.getloadavg()[0]:.2f}", flush=True)
    rows = [summary(name, values) for name, values in results.items()]
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if k != "per_measure_s"}))
    if args.json:
        args.json.write_text(json.dumps({"load_average_end": os.getloadavg(), "sides": rows, "raw": results}, indent=2))


if __name__ == "__main__":
    main()
