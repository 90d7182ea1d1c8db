#!/usr/bin/env python
"""One prepared check of genbench on a GPU: correctness, training speed, conv nets, the default run.

    .venv/bin/python benchmarks/device_check.py OUT            # on a machine with CUDA
    .venv/bin/python benchmarks/device_check.py OUT --smoke    # tiny sizes on the CPU (CI runs it)

writes ``OUT/device-check.json`` after every section (a cut-off run keeps what it finished) and the
raw material beside it (the tests' junit XML, the training benchmark's JSON, the leaderboards).
Sections, each with its own time limit:

1. ``tests``: ``pytest -m gpu tests/test_gpu.py tests/test_no_sync.py`` (CUDA against the CPU: a
   small grid trained, every measure, a store written on the device evaluated on the CPU, the
   stacked forward against ``vmap(functional_call)``; no host readback inside a training step).
2. ``training``: ``bench_training.py --grid cifar-mlp`` (32 MLP 1×512 runs on 50,000 CIFAR-sized
   Gaussian images with random labels, 200 steps each: genbench against the plain per-run
   DataLoader loop) in three rounds alternating which side goes first, with torch.profiler's
   tables from the first; the medians and the spread.
3. ``conv``: Zhang's ``small-inception`` fitting random labels on 50,000 such images, batch 128:
   samples/s of one plain eager model, the same with channels_last and bf16 autocast, a CUDA graph
   of its whole step, four eager models on four streams, and genbench's trainer on 16 members.
4. ``default``: the default experiment (``genbench run``) on the device, every measure, against
   the same experiment on the CPU, run at the same time in a second process; each τ on the
   device's board against the CPU board's.

With ``--smoke`` every size shrinks to seconds, the device is the CPU, the gpu tests run with the
CPU standing in for CUDA (``GENBENCH_GPU_TEST_DEVICE=cpu``), and the default experiment is one
model, two levels, 50 steps and three measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch
import torch.nn.functional as F

from bench_training import machine_info, synchronize

ROOT = Path(__file__).resolve().parents[1]
GENBENCH = [str(Path(sys.executable).with_name("genbench"))]
#: The default experiment's arguments in a smoke run.
SMOKE_RUN = ["--model", "mlp", "--levels", "0,1", "--seeds", "0", "--max-steps", "50",
             "--measure", "param-norm", "--measure", "path-norm", "--measure", "dist-from-init"]


def machine(device: torch.device) -> dict:
    """``bench_training.machine_info`` (platform, CPU, torch, the GPU's name), with the load."""
    return machine_info(device)


class Report:
    """The JSON file, written again after every section."""

    def __init__(self, out: Path, header: dict) -> None:
        self.path = out / "device-check.json"
        self.data = {**header, "sections": {}}
        self.write()

    def section(self, name: str, result: dict) -> None:
        self.data["sections"][name] = result
        self.write()

    def write(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2, default=str))


def timed(name: str, function, *args) -> dict:
    """``function(*args)`` as a section: its result, its seconds, or the error that stopped it."""
    started = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
        result = function(*args)
        status = "ok" if result.pop("passed", True) else "failed"
    except Exception as exc:  # noqa: BLE001 - a section that breaks must not lose the others
        result, status = {"error": f"{type(exc).__name__}: {exc}"}, "error"
    result.update(status=status, seconds=round(time.perf_counter() - started, 1))
    print(f"   {name}: {status} in {result['seconds']} s", flush=True)
    return result


def run(command: list[str], timeout: float, env: dict | None = None, log: Path | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout, check=False)
    if log is not None:
        log.write_text(f"$ {' '.join(command)}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    return done


# ------------------------------------------------------------------------------------------ 1
def tests_section(out: Path, smoke: bool, timeout: float) -> dict:
    env = {"GENBENCH_GPU_TEST_DEVICE": "cpu", "GENBENCH_GPU_TEST_SMOKE": "1"} if smoke else {}
    xml = out / "gpu-tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu or not gpu", "tests/test_gpu.py", "tests/test_no_sync.py",
               "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    done = run(command, timeout, env, out / "gpu-tests.log")
    suite = ElementTree.parse(xml).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None or case.find("error") is not None]
    return {**counts, "failed_tests": failed, "exit_code": done.returncode,
            # on the CPU stand-in the CUDA-only test skips; on a GPU nothing may
            "passed": done.returncode == 0 and (smoke or counts["skipped"] == 0)}


# ------------------------------------------------------------------------------------------ 2
#: The order of the two sides in the training section's rounds: alternated, three rounds.
ROUNDS = ("genbench-first", "plain-first", "genbench-first")


def training_section(out: Path, device: torch.device, smoke: bool, timeout: float) -> dict:
    """``bench_training.py --grid cifar-mlp`` in three rounds that alternate which side goes first
    (the first round also profiles): each side's samples/s per round, their median and spread, and
    the ratio of the medians."""
    sizes = ["--runs", "2", "--n", "256", "--max-steps", "10", "--profile-steps", "2"] if smoke else ["--max-steps", "200"]
    started, reports = time.perf_counter(), []
    for number, order in enumerate(ROUNDS):
        target = out / f"training-{number}.json"
        command = [sys.executable, "benchmarks/bench_training.py", "--grid", "cifar-mlp", "--device", str(device),
                   "--order", order, "--json", str(target), *sizes, *(["--profile"] if number == 0 else [])]
        left = timeout - (time.perf_counter() - started)
        done = run(command, max(left, 1.0), log=out / f"training-{number}.log")
        if done.returncode != 0:
            return {"exit_code": done.returncode, "round": number, "tail": done.stderr[-2000:], "passed": False}
        reports.append(json.loads(target.read_text()))
    rates = {side: [report["summary"][side]["samples_per_second"] for report in reports] for side in ("genbench", "plain")}
    medians = {side: statistics.median(values) for side, values in rates.items()}
    speedup = medians["genbench"] / medians["plain"]
    return {
        "samples_per_second": rates,
        "median_samples_per_second": medians,
        "spread_samples_per_second": {side: [min(values), max(values)] for side, values in rates.items()},
        "rounds": list(ROUNDS),
        "peak_memory": {side: {k: v for k, v in summary.items() if "peak" in k or "memory" in k}
                        for side, summary in reports[0]["summary"].items()},
        "speedup_over_plain": speedup,
        "target": 30.0,
        "target_met": speedup >= 30.0,
        "profile": reports[0].get("profile"),
        "passed": True,
    }


# ------------------------------------------------------------------------------------------ 3
def _inception(device: torch.device, memory_format=torch.contiguous_format):
    from genbench.models.zhang import SmallInception

    factory = SmallInception()
    return factory.build((3, 32, 32), 10, factory.Options()).to(device, memory_format=memory_format)


def _rate(step, steps: int, warmup: int, batch: int, device: torch.device) -> float:
    """Samples per second of ``step()`` over ``steps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * batch / (time.perf_counter() - started)


def _eager_step(model, x, y, batch, generator, autocast: bool = False, channels_last: bool = False):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n = x.shape[0]

    def step():
        rows = torch.randint(0, n, (batch,), device=x.device, generator=generator)
        xb = x[rows]
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(xb), y[rows])
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()

    return step


def conv_section(device: torch.device, smoke: bool) -> dict:
    n, batch, steps, warmup, members = (64, 8, 2, 1, 2) if smoke else (50_000, 128, 60, 10, 16)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, 3, 32, 32, device=device, generator=generator)
    y = torch.randint(0, 10, (n,), device=device, generator=generator)
    rates: dict[str, float] = {}
    torch.manual_seed(0)
    rates["eager"] = _rate(_eager_step(_inception(device), x, y, batch, generator), steps, warmup, batch, device)
    rates["eager_bf16_channels_last"] = _rate(
        _eager_step(_inception(device, torch.channels_last), x, y, batch, generator, autocast=True, channels_last=True),
        steps, warmup, batch, device,
    )
    if device.type == "cuda":
        rates["cuda_graph"] = _graphed_rate(device, x, y, batch, steps, warmup)
        rates["four_streams"] = _streams_rate(device, x, y, batch, steps, warmup, 4)
    rates[f"genbench_{members}_members"] = _genbench_rate(device, x, y, batch, steps, warmup, members)
    eager = rates["eager"]
    ours = rates[f"genbench_{members}_members"] / eager
    return {
        "samples_per_second": {k: round(v, 1) for k, v in rates.items()},
        "over_eager": {k: round(v / eager, 2) for k, v in rates.items()},
        "target_over_eager": 4.0,
        "target_met": ours >= 4.0,
        "batch": batch,
        "examples": n,
    }


def _graphed_rate(device, x, y, batch, steps, warmup) -> float:
    """One eager model's whole step (forward, backward, SGD) captured as a CUDA graph."""
    model = _inception(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    static_x, static_y = x[:batch].clone(), y[:batch].clone()
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            optimizer.zero_grad(set_to_none=False)
            F.cross_entropy(model(static_x), static_y).backward()
            optimizer.step()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        F.cross_entropy(model(static_x), static_y).backward()
        optimizer.step()
    generator = torch.Generator(device=device).manual_seed(1)

    def step():
        rows = torch.randint(0, x.shape[0], (batch,), device=device, generator=generator)
        static_x.copy_(x[rows])
        static_y.copy_(y[rows])
        graph.replay()

    return _rate(step, steps, warmup, batch, device)


def _streams_rate(device, x, y, batch, steps, warmup, count: int) -> float:
    """``count`` eager models, each stepping on a stream of its own; samples summed."""
    streams = [torch.cuda.Stream(device) for _ in range(count)]
    generator = torch.Generator(device=device).manual_seed(2)
    stepping = [_eager_step(_inception(device), x, y, batch, generator) for _ in range(count)]

    def step():
        for stream, one in zip(streams, stepping):
            with torch.cuda.stream(stream):
                one()
        for stream in streams:
            torch.cuda.current_stream(device).wait_stream(stream)

    return count * _rate(step, steps, warmup, batch, device)


def _genbench_rate(device, x, y, batch, steps, warmup, members: int) -> float:
    """genbench's EnsembleTrainer on ``members`` Inception runs: the samples of the steps between
    the ``warmup``-th and the last, timed from its step callback (its final full-set evaluation
    is not counted)."""
    from genbench.models.zhang import SmallInception
    from genbench.schemas import TrainConfig
    from genbench.training.ensemble import EnsembleTrainer

    factory = SmallInception()
    config = TrainConfig(lr=0.01, schedule="constant", batch_size=batch, max_steps=warmup + steps)
    stamps: list[float] = []

    def on_step(_members: int) -> None:
        if len(stamps) in (warmup - 1, warmup + steps - 1):
            synchronize(device)
        stamps.append(time.perf_counter())

    labels = y.expand(members, -1).clone()
    EnsembleTrainer(config, device, factory.vmappable).fit(
        lambda: factory.build((3, 32, 32), 10, factory.Options()), x, labels, list(range(members)), on_step=on_step,
    )
    return members * batch * steps / (stamps[warmup + steps - 1] - stamps[warmup - 1])


# ------------------------------------------------------------------------------------------ 4
def start_cpu_reference(out: Path, smoke: bool) -> subprocess.Popen:
    arguments = SMOKE_RUN if smoke else []
    log = open(out / "default-cpu.log", "w")  # noqa: SIM115 - closed with the process
    command = [*GENBENCH, "run", *arguments, "--device", "cpu", "--store", str(out / "store-cpu"), "--yes", "--format", "json"]
    return subprocess.Popen(command, cwd=ROOT, stdout=open(out / "board-cpu-run.json", "w"), stderr=log)


def default_section(out: Path, device: torch.device, smoke: bool, reference: subprocess.Popen, timeout: float) -> dict:
    arguments = SMOKE_RUN if smoke else []
    started = time.perf_counter()
    command = [*GENBENCH, "run", *arguments, "--device", str(device), "--store", str(out / "store-device"), "--yes",
               "--format", "json"]
    done = run(command, timeout, log=out / "default-device.log")
    wall = time.perf_counter() - started
    (out / "board-device-run.json").write_text(done.stdout)
    try:
        reference.wait(timeout=max(30.0, timeout - wall))
    except subprocess.TimeoutExpired:
        reference.kill()
        return {"wall_seconds": round(wall, 1), "error": "the CPU reference did not finish in time", "passed": False}
    boards = {label: _taus(out / f"store-{label}") for label in ("device", "cpu")}
    differences = {name: abs(tau - boards["cpu"][name]) for name, tau in boards["device"].items()
                   if name in boards["cpu"] and tau == tau and boards["cpu"][name] == boards["cpu"][name]}
    worst = max(differences.items(), key=lambda item: item[1], default=(None, 0.0))
    return {
        "wall_seconds": round(wall, 1),
        "exit_codes": {"device": done.returncode, "cpu": reference.returncode},
        "measures": len(boards["device"]),
        "tau_differences": {k: round(v, 4) for k, v in sorted(differences.items())},
        "largest_tau_difference": {"measure": worst[0], "difference": round(worst[1], 4)},
        "median_tau_difference": round(statistics.median(differences.values()), 4) if differences else None,
        "target": 0.05,
        "target_met": bool(differences) and worst[1] <= 0.05,
        "passed": done.returncode == 0 and reference.returncode == 0 and bool(differences),
    }


def _taus(store: Path) -> dict[str, float]:
    """Each measure's τ with the gap on the store's board (``genbench.leaderboard``, no bootstrap)."""
    import genbench

    board = genbench.leaderboard(genbench.open_store(store, create=False), bootstrap=0)
    rows = board[board["kind"] != "reference"]
    return {row.measure: float(row.tau_gap) for row in rows.itertuples()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for device-check.json and the raw results")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (what CI runs)")
    parser.add_argument("--device", default=None, help="default: cuda (the CPU with --smoke)")
    parser.add_argument("--sections", default="tests,training,conv,default", help="comma-separated subset")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --smoke for the CPU path", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    # seconds each subprocess section may take; the conv section is bounded by its sizes (about a minute)
    limits = {"tests": 150, "training": 110, "default": 160}
    report = Report(args.out, {"machine": machine(device), "smoke": args.smoke, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    begun = time.perf_counter()
    if "tests" in sections:
        report.section("tests", timed("tests", tests_section, args.out, args.smoke, limits["tests"]))
    if "training" in sections:
        report.section("training", timed("training", training_section, args.out, device, args.smoke, limits["training"]))
    if "conv" in sections:
        report.section("conv", timed("conv", conv_section, device, args.smoke))
    if "default" in sections:  # the CPU reference starts only now: it must not load the timed sections' CPU
        reference = start_cpu_reference(args.out, args.smoke)
        report.section("default", timed("default", default_section, args.out, device, args.smoke, reference, limits["default"]))
    report.data["seconds"] = round(time.perf_counter() - begun, 1)
    report.write()
    statuses = {name: section["status"] for name, section in report.data["sections"].items()}
    print(json.dumps(statuses), flush=True)
    return 0 if all(status == "ok" for status in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
