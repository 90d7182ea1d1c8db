"""The executor flags of ``run`` and ``evaluate`` (``--executor``, ``--workers``, ``--scheduler``,
``--cluster``, ``--retries``), what they ask for, and the exit code of units that failed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import typer

from genbench.cli.common import fail, with_default
from genbench.errors import ExitCode, UsageError
from genbench.executors import ExecutorOptions
from genbench.plugins import registry

ExecutorOption = typer.Option(
    None, "--executor", help=with_default("where units of work run: local | dask", "dask with --workers, --scheduler or --cluster, else local")
)
WorkersOption = typer.Option(None, "--workers", min=1, help=with_default("dask worker processes (one torch thread each)", "the machine's cores"))
SchedulerOption = typer.Option(
    None, "--scheduler", envvar="GENBENCH_SCHEDULER", metavar="tcp://HOST:PORT", help="join a running dask scheduler"
)
ClusterOption = typer.Option(
    None, "--cluster", metavar="FILE", help="TOML file describing a dask cluster to start (kind = slurm | kubernetes | local)"
)
RetriesOption = typer.Option(2, "--retries", min=0, help=with_default("times a unit whose dask worker died is started again", "2"))


@dataclass(frozen=True)
class ExecutorChoice:
    """The executor a command runs its units on, and its options."""

    name: str
    options: ExecutorOptions


def executor_choice(
    executor: str | None, workers: int | None, scheduler: str | None, cluster: Path | None, retries: int
) -> ExecutorChoice:
    """The executor the flags ask for: ``--workers``, ``--scheduler`` and ``--cluster`` imply dask
    and belong to it alone; an unknown name is exit 4 (the registry's error)."""
    if executor is not None and executor != "dask" and scheduler and scheduler == os.environ.get("GENBENCH_SCHEDULER"):
        scheduler = None  # an explicit other executor wins over the environment's scheduler
    dask_flags = [flag for flag, value in (("--workers", workers), ("--scheduler", scheduler), ("--cluster", cluster)) if value]
    name = executor or ("dask" if dask_flags else "local")
    registry("executors").get(name)
    if name != "dask" and dask_flags:
        raise UsageError(f"{dask_flags[0]} is an option of the dask executor, not of --executor {name}")
    if scheduler and cluster:
        raise UsageError("--scheduler joins a running cluster and --cluster starts one: give one of them")
    if scheduler and workers:
        raise UsageError("--workers starts a cluster of that many workers and --scheduler joins a running one: give one of them")
    return ExecutorChoice(name, ExecutorOptions(workers=workers, scheduler=scheduler or None, cluster=cluster, retries=retries))



def exit_for_failed_units(codes: list[int]) -> None:
    """After the leaderboard: one line and the first failure's exit code when units of work failed
    (each was named in a warning as it failed; what they did not store is done again next time)."""
    if codes:
        raise fail(f"{len(codes)} units of work failed (their runs and values are done again next time)", ExitCode(codes[0]))
