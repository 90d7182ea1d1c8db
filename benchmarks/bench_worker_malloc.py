#!/usr/bin/env python
"""Training steps in a dask worker with and without the ``MALLOC_TRIM_THRESHOLD_`` a dask nanny
sets by default (any value of it turns off glibc's adaptive mmap threshold), and in this process
for reference.

One "step loop" is 5,000 SGD steps of a 64→512→10 MLP on a batch of 128 (the default grid's MLP
shape), one torch thread. Each round runs it once in a fresh one-worker LocalCluster started with
dask's default worker environment, once in one started with genbench's
(``genbench.executors.worker_environment``), and once in a plain process; each in a process of its
own (a nanny writes its environment into the process that starts it, which later clusters of that
process would inherit). The script prints each way's median and spread of wall time and of the
loop thread's system (kernel) time, the load average at the start and the end.

Usage::

    .venv/bin/python benchmarks/bench_worker_malloc.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys


def step_loop() -> tuple[float, float]:
    """(wall seconds, system seconds of this thread) of 5,000 SGD steps of a small MLP."""
    import resource
    import time

    import torch

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(128, 64, generator=generator)
    labels = torch.randint(0, 10, (128,), generator=generator)
    first = torch.nn.Linear(64, 512)
    second = torch.nn.Linear(512, 10)
    optimizer = torch.optim.SGD([*first.parameters(), *second.parameters()], lr=0.01, momentum=0.9)
    before, started = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
    for _ in range(5_000):
        loss = torch.nn.functional.cross_entropy(second(first(inputs).relu()), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = resource.getrusage(resource.RUSAGE_THREAD)
    return time.perf_counter() - started, after.ru_stime - before.ru_stime


def in_worker(environment: dict | None) -> tuple[float, float]:
    """``step_loop`` in a fresh one-worker LocalCluster whose nanny gives ``environment`` (None: dask's default)."""
    import dask
    from distributed import Client, LocalCluster

    settings = {} if environment is None else {"distributed.nanny.pre-spawn-environ": environment}
    with dask.config.set(settings):
        with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
            return client.submit(step_loop, pure=False).result()


def one(way: str) -> None:
    """Run one way in this process and print its (wall, kernel) seconds."""
    from genbench.executors import worker_environment

    found = {"dask": lambda: in_worker(None), "genbench": lambda: in_worker(worker_environment()), "plain": step_loop}[way]()
    print(f"{found[0]} {found[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", choices=["dask", "genbench", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one)
        return
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"load average at the start: {os.getloadavg()}")
    ways = {"dask's default worker environment": "dask", "genbench's worker environment": "genbench", "a plain process": "plain"}
    timings: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    for round_ in range(args.repeats):
        for way, key in ways.items():
            done = subprocess.run([sys.executable, __file__, "--one", key], capture_output=True, text=True, check=True)
            wall, system = map(float, done.stdout.split()[-2:])
            timings[way].append((wall, system))
            print(f"round {round_ + 1}, {way}: {wall:.2f} s, {system:.2f} s in the kernel", flush=True)
    print(f"load average at the end: {os.getloadavg()}")
    for way, found in timings.items():
        walls, systems = [w for w, _ in found], [s for _, s in found]
        print(f"{way}: median {statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f}), "
              f"kernel median {statistics.median(systems):.2f} s")


if __name__ == "__main__":
    main()
