#!/usr/bin/env python
"""The evaluate stage's resident memory after every batch of runs (current and peak, from /proc/self/status).

    .venv/bin/python benchmarks/trace_evaluate_memory.py STORE 0,1,2,3 train   # train the grid with these seeds
    .venv/bin/python benchmarks/trace_evaluate_memory.py STORE 0,1,2,3 eval    # evaluate it, one line per batch
"""
import sys
import time

from genbench.engine import Engine, resolve_measures, resolve_runs
from genbench.engine.evaluate import EvaluateStage
from genbench.schemas import ExperimentSpec
from genbench.store import Store

def rss():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return fields["VmRSS"].strip(), fields["VmHWM"].strip()

real = EvaluateStage._evaluate_batch
def logged(self, runs, summary):
    t = time.perf_counter(); real(self, runs, summary)
    print(f"batch of {len(runs)} runs ({runs[0][0].model.name}) {time.perf_counter()-t:.1f} s; RSS, peak: {rss()}", flush=True)
EvaluateStage._evaluate_batch = logged
seeds = [int(s) for s in sys.argv[2].split(",")]
store = Store(sys.argv[1]); engine = Engine(store, device="cpu")
runs = resolve_runs(ExperimentSpec(seeds=seeds))
if sys.argv[3] == "train":
    engine.train(runs); sys.exit()
print("start", rss(), flush=True)
engine.evaluate(resolve_measures(None), [r.run_id for r in runs])
