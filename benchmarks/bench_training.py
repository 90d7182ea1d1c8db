#!/usr/bin/env python
"""Training speed: genbench's EnsembleTrainer against a plain per-run PyTorch loop.

Both sides train the same set of runs in one process, with the same stopping rule:
stop at 100 % accuracy on the full training set, checked at the end of an epoch,
or when the run's ``max_steps`` optimizer steps are spent. For each side the script
prints the wall time, the optimizer member-steps, the training samples per second,
the final training-accuracy range, how many runs converged and the peak memory,
then the ratio of the two. Nothing is written to a store: this is training only.

genbench side
    ``group_runs(resolve_runs(spec))``, then per group the data from ``prepare_data``
    and ``EnsembleTrainer(run.train, device, vmappable).fit(build, inputs, labels,
    seeds)``: stacked parameters, ``vmap``, a member leaves the ensemble when it stops,
    and the full-training-set check runs only when the member's running minibatch
    accuracy over the epoch is within ``ACCURACY_GATE`` of the target.

plain side
    One run at a time, in the shape of the public reference implementations
    (Zhang et al.'s training loop, kuangliu/pytorch-cifar): a ``TensorDataset`` and a
    ``DataLoader(batch_size, shuffle=True, generator=...)``, the model from
    ``build_initialized(build, seed)`` (the same initialization genbench uses),
    ``torch.optim.SGD(lr, momentum, weight_decay)``, batches moved to the device with
    ``.to(device)`` (no pinned memory; ``num_workers`` 0 by default, ``--workers`` to
    change it: the data is an in-memory tensor), and an epoch loop::

        for x, y in loader:
            optimizer.zero_grad(); loss = F.cross_entropy(model(x), y)
            loss.backward(); optimizer.step()

    followed at every epoch end by the accuracy on the full training set (a second,
    unshuffled DataLoader), stopping at 100 %. The learning rate follows the run's
    schedule (``genbench.training.learning_rate``), as genbench does. The data-order
    generator is seeded from the run seed (``derive_seed(seed, "data-order")``, the
    seed genbench uses), but the DataLoader also draws its worker base seed from that
    generator, so the two sides see different (equally random) data orders and their
    trajectories, hence their steps to 100 %, differ somewhat. Compare samples/s for
    the rate, wall time for the end-to-end cost.

Counting: "samples" are training examples pushed through a training step, summed over
runs (the last minibatch of an epoch is partial; both sides count it as it is);
full-training-set evaluations are not samples but are included in the wall time.

Grids (``--grid``)
    default-mlp  the default grid's 12 MLP runs (digits, 64 → 512 → 10, batch 128,
                 p_c ∈ {0, .2, .4, .6, .8, 1}, seeds {0, 1}, lr 0.05 constant,
                 budget 5,000 steps)
    default      all 24 runs of the default grid (mlp and cnn)
    cifar-mlp    32 MLP runs 3072 → 512 → 10 on n = 50,000 (``--n``) Gaussian inputs
                 of dimension 3,072 with uniformly random labels (one labeling per seed),
                 the default grid's recipe: meant for a GPU

Usage::

    .venv/bin/python benchmarks/bench_training.py                           # default-mlp, CPU
    .venv/bin/python benchmarks/bench_training.py --grid default --json out.json
    .venv/bin/python benchmarks/bench_training.py --grid cifar-mlp --device cuda
    .venv/bin/python benchmarks/bench_training.py --runs 2 --max-steps 50   # a smoke run
    .venv/bin/python benchmarks/bench_training.py --profile-only            # torch.profiler only

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated when the
side started. On every device, the peak resident set size above the side's starting RSS,
sampled from /proc/self/statm every 5 ms by a background thread, and the process's
``ru_maxrss`` (a lifetime high-water mark: it only shows the later side's peak when that
exceeds the earlier one's). The two sides run in one process, so the later one may reuse
memory the allocator kept from the earlier one; ``--sides genbench`` / ``--sides plain``
runs one side alone for a clean number, ``--order`` swaps them. ``--tracemalloc`` adds
Python-level peaks (tensor storage is not Python memory and is not counted; tracemalloc
slows Python-heavy code, i.e. the DataLoader, so timings taken with it are not clean).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from genbench.datasets.base import Dataset
from genbench.engine import group_runs, prepare_data, resolve_runs, run_trainer
from genbench.inference import EVAL_CHUNK, pick_device
from genbench.plugins import registry
from genbench.schemas import DEFAULT_EXPERIMENT_TRAIN, ComponentRef, ExperimentSpec, RunSpec
from genbench.seeding import derive_seed
from genbench.training import EnsembleTrainer, build_initialized, learning_rate


def is_closed_form(run: RunSpec) -> bool:
    return bool(getattr(registry("models").get(run.model.name), "closed_form", False))


def model_builder(run: RunSpec, dataset: Dataset):
    """The run's network builder (untrained) on ``dataset``'s inputs."""
    return run_trainer(run, dataset, torch.device("cpu")).build

GRIDS = ("default-mlp", "default", "cifar-mlp")
CIFAR_DIM = 3072
CIFAR_RUNS = 32
#: cleared by --no-stacked: conv nets run under vmap instead of genbench.training.stacked_forward
STACKED = True


# --------------------------------------------------------------------------- grids
def build_grid(name: str, n: int) -> list[RunSpec]:
    """The runs of grid ``name`` (in the grid's expansion order)."""
    if name == "default":
        return resolve_runs(ExperimentSpec())
    if name == "default-mlp":
        return [run for run in resolve_runs(ExperimentSpec()) if run.model.name == "mlp"]
    if name == "cifar-mlp":
        # separation 0: every class has mean 0, so the inputs are pure N(0, I) noise and
        # the labels (each redrawn uniformly by `labels` at p_c = 1, per seed) are random.
        spec = ExperimentSpec(
            name="bench-cifar-mlp",
            datasets=[
                ComponentRef(
                    name="gaussian-mixture",
                    options={"n_train": n, "n_test": 100, "dim": CIFAR_DIM, "num_classes": 10, "separation": 0.0},
                )
            ],
            models=[ComponentRef(name="mlp")],
            corruptions=[ComponentRef(name="labels")],
            levels=[1.0],
            seeds=list(range(CIFAR_RUNS)),
            train=DEFAULT_EXPERIMENT_TRAIN,
        )
        return resolve_runs(spec)
    raise ValueError(f"unknown grid {name!r}; choose one of {', '.join(GRIDS)}")


def select_runs(runs: list[RunSpec], count: int | None, max_steps: int | None) -> list[RunSpec]:
    """The first ``count`` runs, with ``max_steps`` replacing each run's budget."""
    if count is not None:
        runs = runs[:count]
    if max_steps is not None:
        runs = [run.model_copy(update={"train": run.train.model_copy(update={"max_steps": max_steps})}) for run in runs]
    for run in runs:
        if is_closed_form(run):
            raise SystemExit(f"run {label(run)} is fitted in closed form; nothing to benchmark")
        if getattr(run.train, "augment", False):
            raise SystemExit(f"run {label(run)} uses data augmentation, which the plain loop does not reproduce")
    return runs


def label(run: RunSpec) -> str:
    return f"{run.model.name} p_c={run.corruption.level:g} seed={run.seed}"


def samples_in(steps: int, n: int, batch_size: int) -> int:
    """Training examples in the first ``steps`` minibatches of epochs over ``n`` examples."""
    per_epoch = math.ceil(n / batch_size)
    return (steps // per_epoch) * n + min((steps % per_epoch) * batch_size, n)


# -------------------------------------------------------------------------- memory
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_bytes() -> int:
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


class MemoryMonitor:
    """Peak memory of one side: RSS (sampled), ru_maxrss, CUDA allocator, tracemalloc."""

    def __init__(self, device: torch.device, use_tracemalloc: bool = False, interval: float = 0.005) -> None:
        self.device, self.use_tracemalloc, self.interval = device, use_tracemalloc, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_rss = 0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = _rss_bytes()
            if rss is not None and rss > self.peak_rss:
                self.peak_rss = rss

    def __enter__(self) -> "MemoryMonitor":
        release_freed_memory()
        self.start_rss = _rss_bytes()
        self.start_maxrss = _maxrss_bytes()
        self.peak_rss = self.start_rss or 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_cuda = torch.cuda.memory_allocated(self.device)
        if self.use_tracemalloc:
            tracemalloc.start()
        if self.start_rss is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        rss = _rss_bytes()
        if rss is not None:
            self.peak_rss = max(self.peak_rss, rss)
        mib = 1 / 2**20
        self.result: dict[str, float | None] = {
            "rss_start_mib": self.start_rss * mib if self.start_rss is not None else None,
            "rss_peak_mib": self.peak_rss * mib if self.start_rss is not None else None,
            "rss_peak_above_start_mib": (self.peak_rss - self.start_rss) * mib if self.start_rss is not None else None,
            "ru_maxrss_mib": _maxrss_bytes() * mib,
            "ru_maxrss_growth_mib": (_maxrss_bytes() - self.start_maxrss) * mib,
            "tracemalloc_peak_mib": None,
            "cuda_max_allocated_mib": None,
            "cuda_peak_above_start_mib": None,
        }
        if self.use_tracemalloc:
            self.result["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] * mib
            tracemalloc.stop()
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            self.result["cuda_max_allocated_mib"] = peak * mib
            self.result["cuda_peak_above_start_mib"] = (peak - self.start_cuda) * mib


def release_freed_memory() -> None:
    """Hand memory the C allocator keeps from earlier work back to the OS (glibc), so that
    each side's RSS starts from what is really in use."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------- results
@dataclass
class RunRecord:
    run: str
    status: str
    steps: int
    samples: int
    train_accuracy: float
    train_loss: float
    evaluations: int | None
    seconds: float  # plain: the run's own wall time; genbench: its group's time until it stopped


@dataclass
class SideResult:
    name: str
    seconds: float = 0.0
    records: list[RunRecord] = field(default_factory=list)
    evaluations: int = 0  # full-training-set checks (member-evaluations)
    evaluation_seconds: float = 0.0
    loading_seconds: float | None = None  # plain only: time waiting for the DataLoader (+ copy to device)
    groups: int = 0
    memory: dict = field(default_factory=dict)

    def summary(self) -> dict:
        records = self.records
        accuracies = [r.train_accuracy for r in records]
        steps = sum(r.steps for r in records)
        samples = sum(r.samples for r in records)
        converged = [r for r in records if r.status == "converged"]
        return {
            "side": self.name,
            "runs": len(records),
            "groups": self.groups,
            "wall_seconds": self.seconds,
            "member_steps": steps,
            "samples": samples,
            "samples_per_second": samples / self.seconds if self.seconds else math.nan,
            "member_steps_per_second": steps / self.seconds if self.seconds else math.nan,
            "train_accuracy_min": min(accuracies) if accuracies else math.nan,
            "train_accuracy_max": max(accuracies) if accuracies else math.nan,
            "converged": len(converged),
            "budget": sum(r.status == "budget" for r in records),
            "diverged": sum(r.status == "diverged" for r in records),
            "mean_steps_to_fit": (sum(r.steps for r in converged) / len(converged)) if converged else None,
            "full_set_evaluations": self.evaluations,
            "evaluation_seconds": self.evaluation_seconds,
            "loading_seconds": self.loading_seconds,
            **self.memory,
        }


# ------------------------------------------------------------------- genbench side
class TimedEnsembleTrainer(EnsembleTrainer):
    """EnsembleTrainer that counts and times its full-training-set evaluations."""

    evaluation_calls = 0
    member_evaluations = 0
    evaluation_seconds = 0.0

    def evaluate(self, base, params, buffers, inputs, labels, train_indices, alive, per_member_inputs):
        started = time.perf_counter()
        result = super().evaluate(base, params, buffers, inputs, labels, train_indices, alive, per_member_inputs)
        self.evaluation_seconds += time.perf_counter() - started  # evaluate() ends in .cpu(): synchronized
        self.evaluation_calls += 1
        self.member_evaluations += len(alive)
        return result


@dataclass
class Group:
    runs: list[RunSpec]
    datasets: list[Dataset]
    inputs: torch.Tensor
    labels: torch.Tensor
    per_member_inputs: bool
    build: Callable[[], nn.Module]
    vmappable: bool


def make_group(runs: list[RunSpec]) -> Group:
    """The ensemble inputs of one group, exactly as ``Engine._train_group`` builds them."""
    datasets = [prepare_data(run) for run in runs]
    first = datasets[0]
    shared = all(d.x_train is first.x_train for d in datasets)
    inputs = first.x_train if shared else torch.stack([d.x_train for d in datasets])
    labels = torch.stack([d.y_train for d in datasets])
    vmappable = registry("models").get(runs[0].model.name).vmappable
    return Group(runs, datasets, inputs, labels, not shared, model_builder(runs[0], first), vmappable)


def fit_group(group: Group, device: torch.device, max_steps: int | None = None, on_step=None):
    config = group.runs[0].train
    if max_steps is not None:
        config = config.model_copy(update={"max_steps": max_steps})
    trainer = TimedEnsembleTrainer(
        config, device, group.vmappable, stacked=STACKED
    )
    outcomes = trainer.fit(
        group.build,
        group.inputs,
        group.labels,
        [run.seed for run in group.runs],
        per_member_inputs=group.per_member_inputs,
        on_step=on_step,
    )
    return trainer, outcomes


def run_genbench(groups: list[Group], device: torch.device, use_tracemalloc: bool) -> SideResult:
    side = SideResult("genbench", groups=len(groups))
    with MemoryMonitor(device, use_tracemalloc) as memory:
        synchronize(device)
        started = time.perf_counter()
        for group in groups:
            trainer, outcomes = fit_group(group, device)
            n, batch = group.labels.shape[1], group.runs[0].train.batch_size
            for outcome in outcomes:
                side.records.append(
                    RunRecord(
                        run=label(group.runs[outcome.index]),
                        status=outcome.status,
                        steps=outcome.steps,
                        samples=samples_in(outcome.steps, n, batch),
                        train_accuracy=outcome.train_accuracy,
                        train_loss=outcome.train_loss,
                        evaluations=None,  # counted per ensemble, not per member
                        seconds=outcome.wall_time,
                    )
                )
            side.evaluations += trainer.member_evaluations
            side.evaluation_seconds += trainer.evaluation_seconds
        synchronize(device)
        side.seconds = time.perf_counter() - started
    side.memory = memory.result
    return side


# ---------------------------------------------------------------------- plain side
@dataclass
class PlainOutcome:
    status: str
    steps: int
    samples: int
    train_accuracy: float
    train_loss: float
    evaluations: int
    evaluation_seconds: float
    loading_seconds: float


@torch.no_grad()
def evaluate_plain(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on the full training set (the reference 'test' loop)."""
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        outputs = model(x)
        loss_sum += F.cross_entropy(outputs, y, reduction="sum").item()
        correct += (outputs.argmax(1) == y).sum().item()
        total += y.size(0)
    model.train()
    return correct / total, loss_sum / total


def train_plain(
    run: RunSpec,
    dataset: Dataset,
    build: Callable[[], nn.Module],
    device: torch.device,
    num_workers: int = 0,
    max_steps: int | None = None,
    on_step: Callable[[], None] | None = None,
) -> PlainOutcome:
    """One run, trained the way the public reference implementations do it."""
    config = run.train
    budget = config.max_steps if max_steps is None else max_steps
    train_set = TensorDataset(dataset.x_train, dataset.y_train)
    generator = torch.Generator().manual_seed(derive_seed(run.seed, "data-order"))
    loader = DataLoader(
        train_set, batch_size=config.batch_size, shuffle=True, generator=generator, num_workers=num_workers
    )
    eval_loader = DataLoader(train_set, batch_size=EVAL_CHUNK, shuffle=False, num_workers=num_workers)
    model = build_initialized(build, run.seed).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    steps, samples, epoch, evaluations = 0, 0, 0, 0
    evaluation_seconds = loading_seconds = 0.0
    accuracy, loss_value, status = math.nan, math.nan, "budget"
    model.train()
    while True:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, epoch)
        waited = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loading_seconds += time.perf_counter() - waited
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            steps += 1
            samples += y.size(0)
            if on_step is not None:
                on_step()
            if steps >= budget:
                break
            waited = time.perf_counter()
        epoch += 1
        started = time.perf_counter()
        accuracy, loss_value = evaluate_plain(model, eval_loader, device)
        evaluation_seconds += time.perf_counter() - started
        evaluations += 1
        if not math.isfinite(loss_value):
            status = "diverged"
            break
        if config.stop == "accuracy":
            fitted = accuracy >= config.target_accuracy
        else:
            fitted = loss_value <= config.loss_threshold
        if fitted:
            status = "converged"
            break
        if steps >= budget:
            break
    return PlainOutcome(status, steps, samples, accuracy, loss_value, evaluations, evaluation_seconds, loading_seconds)


def run_plain(groups: list[Group], device: torch.device, num_workers: int, use_tracemalloc: bool) -> SideResult:
    side = SideResult("plain", groups=sum(len(g.runs) for g in groups), loading_seconds=0.0)
    with MemoryMonitor(device, use_tracemalloc) as memory:
        synchronize(device)
        started = time.perf_counter()
        for group in groups:
            for run, dataset in zip(group.runs, group.datasets):
                run_started = time.perf_counter()
                outcome = train_plain(run, dataset, group.build, device, num_workers)
                synchronize(device)
                side.records.append(
                    RunRecord(
                        run=label(run),
                        status=outcome.status,
                        steps=outcome.steps,
                        samples=outcome.samples,
                        train_accuracy=outcome.train_accuracy,
                        train_loss=outcome.train_loss,
                        evaluations=outcome.evaluations,
                        seconds=time.perf_counter() - run_started,
                    )
                )
                side.evaluations += outcome.evaluations
                side.evaluation_seconds += outcome.evaluation_seconds
                side.loading_seconds += outcome.loading_seconds
        synchronize(device)
        side.seconds = time.perf_counter() - started
    side.memory = memory.result
    return side


def warm_up(groups: list[Group], device: torch.device, num_workers: int, sides: list[str], steps: int = 3) -> None:
    """A few steps of each architecture on the timed sides: first-call costs stay out of the timing."""
    seen = set()
    for group in groups:
        key = group.runs[0].group_key()
        if key in seen:
            continue
        seen.add(key)
        if "genbench" in sides:
            fit_group(group, device, max_steps=steps)
        if "plain" in sides:
            train_plain(group.runs[0], group.datasets[0], group.build, device, num_workers, max_steps=steps)
    synchronize(device)


# ------------------------------------------------------------------------- profile
def profile_sides(group: Group, device: torch.device, steps: int, rows: int, num_workers: int) -> dict[str, str]:
    """torch.profiler over ``steps`` steps of the genbench ensemble (and, for comparison,
    of the plain loop on the group's first run); top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    wait, warmup = 2, 3
    total = wait + warmup + steps + 1  # the step after the window ends the run: its final check is not profiled
    tables = {}
    members = len(group.runs)
    for side in ("genbench", "plain"):
        prof = profile(activities=activities, schedule=schedule(wait=wait, warmup=warmup, active=steps, repeat=1))
        times: list[float] = []

        def step(*_: object) -> None:
            synchronize(device)
            times.append(time.perf_counter())
            prof.step()

        with prof:
            times.append(time.perf_counter())
            if side == "genbench":
                fit_group(group, device, max_steps=total, on_step=step)
            else:
                train_plain(group.runs[0], group.datasets[0], group.build, device, num_workers, total, on_step=step)
        window = times[wait + warmup : wait + warmup + steps + 1]
        per_step = (window[-1] - window[0]) / steps * 1e3
        per_member = members if side == "genbench" else 1
        head = (
            f"--- profile: {side}, {steps} steps of {per_member} member(s) ({label(group.runs[0])}"
            f"{' …' if per_member > 1 else ''}); {per_step:.2f} ms/step under the profiler, "
            f"{per_step / per_member:.3f} ms per member-step ---"
        )
        sort = "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=rows)
        if device.type == "cuda":
            table += "\n" + prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=rows)
        tables[side] = head + "\n" + table
        print(tables[side], flush=True)
    return tables


# -------------------------------------------------------------------------- report
def machine_info(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": None,
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _mib(value) -> str:
    return "n/a" if value is None else f"{value:,.1f} MiB"


def print_side(summary: dict, device: torch.device) -> None:
    s = summary
    print(f"\n[{s['side']}]  {s['runs']} runs in {s['groups']} {'ensembles' if s['side'] == 'genbench' else 'loops'}")
    print(f"  wall time            {s['wall_seconds']:.2f} s")
    print(f"  member-steps         {s['member_steps']:,}  ({s['member_steps_per_second']:,.0f}/s)")
    print(f"  training samples     {s['samples']:,}  ({s['samples_per_second']:,.0f} samples/s)")
    print(f"  train accuracy       {s['train_accuracy_min']:.4f} – {s['train_accuracy_max']:.4f}")
    fit = f"{s['mean_steps_to_fit']:.0f}" if s["mean_steps_to_fit"] is not None else "–"
    print(
        f"  converged            {s['converged']}/{s['runs']} (budget {s['budget']}, diverged {s['diverged']}; "
        f"mean steps of converged runs {fit})"
    )
    print(f"  full-set checks      {s['full_set_evaluations']:,} member-evaluations, {s['evaluation_seconds']:.2f} s")
    if s["loading_seconds"] is not None:
        print(f"  DataLoader wait      {s['loading_seconds']:.2f} s")
    if device.type == "cuda":
        print(
            f"  peak CUDA memory     {_mib(s['cuda_max_allocated_mib'])} allocated "
            f"({_mib(s['cuda_peak_above_start_mib'])} above start)"
        )
    print(
        f"  peak RSS             {_mib(s['rss_peak_mib'])} ({_mib(s['rss_peak_above_start_mib'])} above start; "
        f"ru_maxrss {_mib(s['ru_maxrss_mib'])}, grew {_mib(s['ru_maxrss_growth_mib'])})"
    )
    if s["tracemalloc_peak_mib"] is not None:
        print(f"  tracemalloc peak     {_mib(s['tracemalloc_peak_mib'])} (Python objects only)")


def ratios(genbench: dict, plain: dict) -> dict:
    def ratio(a, b):
        return a / b if b else math.nan

    return {
        "wall_plain_over_genbench": ratio(plain["wall_seconds"], genbench["wall_seconds"]),
        "samples_per_second_genbench_over_plain": ratio(genbench["samples_per_second"], plain["samples_per_second"]),
        "member_steps_genbench_over_plain": ratio(genbench["member_steps"], plain["member_steps"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", choices=GRIDS, default="default-mlp", help="the runs to train (default: default-mlp)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when present, else cpu)")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="replace every run's step budget (default: the grid's, 5,000)"
    )
    parser.add_argument("--runs", type=int, default=None, help="only the first N runs of the grid")
    parser.add_argument("--n", type=int, default=50_000, help="cifar-mlp only: training examples (default 50,000)")
    parser.add_argument("--sides", choices=("both", "genbench", "plain"), default="both")
    parser.add_argument("--order", choices=("genbench-first", "plain-first"), default="genbench-first")
    parser.add_argument("--workers", type=int, default=0, help="plain side: DataLoader num_workers (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument(
        "--no-stacked", action="store_true", help="genbench side: conv nets under vmap, not genbench.training.stacked_forward"
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the few untimed warm-up steps")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also report Python-level peaks (slows the DataLoader)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="after the timing, torch.profiler on a few steps of each side"
    )
    parser.add_argument("--profile-only", action="store_true", help="only the profile, no timing")
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument(
        "--profile-group", type=int, default=0, help="which ensemble of the grid to profile (default: the first)"
    )
    parser.add_argument("--json", metavar="OUT", default=None, help="write everything measured to OUT as JSON")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.max_steps is not None and args.max_steps < 1:
        parser.error("--max-steps must be at least 1")
    if args.profile_steps < 1 or args.n < 1:
        parser.error("--profile-steps and --n must be at least 1")

    if args.threads:
        torch.set_num_threads(args.threads)
    global STACKED
    STACKED = not args.no_stacked
    device = pick_device(args.device)
    machine = machine_info(device)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), flush=True)

    if args.grid == "cifar-mlp" and device.type == "cpu" and args.n > 5_000:
        print(
            f"note: cifar-mlp with n = {args.n:,} on a CPU takes hours; it is meant for --device cuda "
            "(or shrink it with --n, --runs, --max-steps)",
            flush=True,
        )
    runs = select_runs(build_grid(args.grid, args.n), args.runs, args.max_steps)
    prepared = time.perf_counter()
    groups = [make_group(chunk) for chunk in group_runs(runs)]  # data built outside the timing
    budgets = sorted({run.train.max_steps for run in runs})
    first = groups[0]
    print(
        f"grid {args.grid}: {len(runs)} runs in {len(groups)} ensemble(s) of "
        f"{', '.join(str(len(g.runs)) for g in groups)}; {first.labels.shape[1]:,} training examples, "
        f"input {tuple(first.datasets[0].input_shape)}, batch {first.runs[0].train.batch_size}, "
        f"lr {first.runs[0].train.lr} ({first.runs[0].train.schedule}), budget {budgets} steps; "
        f"data ready in {time.perf_counter() - prepared:.1f} s (not timed)",
        flush=True,
    )

    report: dict = {"machine": machine, "args": vars(args), "grid": args.grid, "runs": [label(r) for r in runs]}
    summaries: dict[str, dict] = {}
    if not args.profile_only:
        sides = ["genbench", "plain"] if args.sides == "both" else [args.sides]
        if args.order == "plain-first":
            sides.reverse()
        if not args.no_warmup:
            warm_up(groups, device, args.workers, sides)
        for name in sides:
            print(f"training: {name} …", flush=True)
            if name == "genbench":
                side = run_genbench(groups, device, args.tracemalloc)
            else:
                side = run_plain(groups, device, args.workers, args.tracemalloc)
            summaries[name] = side.summary()
            report.setdefault("per_run", {})[name] = [asdict(r) for r in side.records]
            print_side(summaries[name], device)
        report["summary"] = summaries
        if len(summaries) == 2:
            r = ratios(summaries["genbench"], summaries["plain"])
            report["ratio"] = r
            print(
                f"\nratio: wall time plain/genbench = {r['wall_plain_over_genbench']:.2f}×; "
                f"samples/s genbench/plain = {r['samples_per_second_genbench_over_plain']:.2f}×; "
                f"member-steps genbench/plain = {r['member_steps_genbench_over_plain']:.2f}"
            )
        machine_after = os.getloadavg() if hasattr(os, "getloadavg") else None
        report["load_average_after"] = machine_after
        print(f"load average before {machine['load_average']}, after {machine_after}")
    if args.profile or args.profile_only:
        print(flush=True)
        if not 0 <= args.profile_group < len(groups):
            parser.error(f"--profile-group must be below the number of ensembles, {len(groups)}")
        report["profile"] = profile_sides(
            groups[args.profile_group], device, args.profile_steps, args.profile_rows, args.workers
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
