#!/usr/bin/env python
"""Measure cost: every registered measure evaluated on every run of a trained store.

The store is copied first (the original is never written to), or, with ``--train``,
the default experiment is trained into a fresh temporary store. Then each measure is
evaluated on all runs, one measure after another, exactly as ``genbench evaluate``
does (a fresh context per run and measure). The script prints, per measure, the wall
time over all runs, the mean seconds per run for each model, and how many values
failed; then the total. Training time is not counted.

Usage::

    .venv/bin/python benchmarks/bench_measures.py --store genbench-results
    .venv/bin/python benchmarks/bench_measures.py --train --json measures.json
    .venv/bin/python benchmarks/bench_measures.py --store S --measure pacbayes-flatness --measure sharpness
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from genbench.engine import Engine, resolve_measures, resolve_runs
from genbench.plugins import get_plugins
from genbench.schemas import ComponentRef, ExperimentSpec
from genbench.store import Store


def prepared_store(args: argparse.Namespace, workdir: Path) -> Path:
    target = workdir / "store"
    if args.train:
        started = time.perf_counter()
        with Store(target) as store:
            Engine(store, device=args.device).train(resolve_runs(ExperimentSpec()))
        print(f"trained the default grid in {time.perf_counter() - started:.1f} s (not counted below)")
    else:
        shutil.copytree(args.store, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="a trained store to copy (default: genbench-results)")
    parser.add_argument("--train", action="store_true", help="train the default experiment into a temporary store")
    parser.add_argument("--measure", action="append", help="evaluate only these measures (repeatable)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.train and args.store is None:
        args.store = Path("genbench-results")

    names = args.measure or list(get_plugins().registry("measures").names())
    with tempfile.TemporaryDirectory() as tmp:
        path = prepared_store(args, Path(tmp))
        rows = []
        total_started = time.perf_counter()
        with Store(path) as store:
            engine = Engine(store, device=args.device)
            runs = store.runs().set_index("run_id")
            for name in names:
                measures = resolve_measures([ComponentRef(name=name)])
                started = time.perf_counter()
                values = engine.evaluate(measures)
                wall = time.perf_counter() - started
                per_model = {}
                for value in values:
                    per_model.setdefault(runs.loc[value.run_id, "model"].split("(")[0], []).append(value.seconds)
                failed = sum(value.error is not None for value in values)
                row = {
                    "measure": name,
                    "runs": len(values),
                    "wall_s": round(wall, 3),
                    "per_run_s": {model: round(sum(s) / len(s), 4) for model, s in sorted(per_model.items())},
                    "failed": failed,
                }
                rows.append(row)
                per_run = ", ".join(f"{m} {s:.3f}" for m, s in row["per_run_s"].items())
                print(f"{name:34s} {wall:8.2f} s   per run: {per_run}   failed {failed}", flush=True)
        total = time.perf_counter() - total_started
    print(f"total {total:.1f} s for {len(names)} measures")
    if args.json:
        machine = f"{platform.platform()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, " \
                  f"{torch.get_num_threads()} threads"
        args.json.write_text(json.dumps({"machine": machine, "total_s": round(total, 1), "measures": rows}, indent=2))


if __name__ == "__main__":
    main()
