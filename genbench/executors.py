"""Executors run the stages' units of work: one training group (an ensemble), or one group's
evaluation. A unit and what it sends back are plain data (JSON text and safetensors bytes); the
driver alone writes the store, as each record arrives.

A task is a module-level function ``task(unit, emit, progress)``: ``emit(record)`` sends back one
result (a trained run, a measure value); ``progress(kind, value)`` reports a small event (steps
taken, a unit started, a warning). ``Pool.run(task, units, on_record, on_progress)`` runs every
``(name, unit)`` of ``units`` (an iterable, drawn as the pool has room, so units that carry
checkpoints are read when they are sent) and calls ``on_record(index, record)`` in the driver's
thread for each record of the ``index``-th unit; it returns the units that failed, each with its
reason. The rest finish regardless.

- ``local`` runs the units one after another in this process; records arrive as they are emitted.
- ``dask`` runs them on a ``dask.distributed`` cluster: a ``LocalCluster`` of ``workers`` processes
  (one torch thread each by default), a running scheduler (``scheduler``), or a cluster described by
  a TOML file (``cluster``: SLURM through ``dask-jobqueue``, Kubernetes through ``dask-kubernetes``).
  A unit's records arrive when the unit finishes; a worker that dies mid-unit costs the unit a
  retry (at most ``retries``), after which the unit is reported failed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import time
import tomllib
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Protocol

from genbench.errors import ExecutorError, ExitCode, GenbenchError, GenbenchWarning, SpecError, UsageError, first_line, raise_errors
from genbench.hookspecs import hookimpl

Record = Any
Emit = Callable[[Record], None]
Progress = Callable[[str, Any], None]
Task = Callable[[Any, Emit, Progress], None]

#: Seconds between the step counts a dask worker reports (steps are summed in between).
PROGRESS_INTERVAL = 0.5

#: Cluster kinds a ``--cluster`` file may name, and the package each needs.
CLUSTER_KINDS = {"slurm": "dask-jobqueue", "kubernetes": "dask-kubernetes", "local": "distributed"}


@dataclass(frozen=True)
class ExecutorOptions:
    """How an executor runs: ``workers`` processes (dask; default the machine's cores), a running
    ``scheduler`` to join, a ``cluster`` TOML file, torch threads per worker, and how many times a
    unit whose worker died is started again."""

    workers: int | None = None
    scheduler: str | None = None
    cluster: Path | None = None
    threads_per_worker: int = 1
    retries: int = 2
    #: seconds to wait for a running scheduler to answer
    connect_timeout: float = 30.0
    #: seconds to wait for the first worker to join (a SLURM job may wait in its queue)
    wait_timeout: float = 600.0


@dataclass(frozen=True)
class UnitFailure:
    """A unit that did not finish: its index, its name, why, and the exit code that reason carries."""

    index: int
    name: str
    reason: str
    exit_code: int = ExitCode.FAILURE


class Pool(Protocol):
    #: whether tasks run in this process (so they may share its in-memory caches)
    in_process: bool
    #: bytes of memory the smallest worker may use (None: no limit known, or this process's)
    memory_limit: int | None
    #: the most workers one host runs (they share its memory and devices; 1 in this process)
    workers_per_host: int

    def run(
        self,
        task: Task,
        units: Iterable[tuple[str, Any]],
        on_record: Callable[[int, Record], None],
        on_progress: Progress,
    ) -> list[UnitFailure]: ...


class Executor(Protocol):
    name: str
    description: str

    def open(self, options: ExecutorOptions) -> contextlib.AbstractContextManager[Pool]: ...


# ------------------------------------------------------------------------------------------ local
class LocalPool:
    """Runs each unit in this process, one after another."""

    in_process = True
    memory_limit = None
    workers_per_host = 1

    def run(self, task, units, on_record, on_progress) -> list[UnitFailure]:
        failures = []
        for index, (name, unit) in enumerate(units):
            try:
                task(unit, lambda record, index=index: _stored(on_record, index, record), on_progress)
            except _StoreRecordError as exc:  # the driver's own write failed: that error, not the unit's
                raise exc.error from None
            except Exception as exc:  # noqa: BLE001 - one unit's failure must not lose the others
                if raise_errors():
                    raise
                code = exc.exit_code if isinstance(exc, GenbenchError) else ExitCode.FAILURE
                failures.append(UnitFailure(index, name, first_line(exc), int(code)))
        return failures


def _stored(on_record, index: int, record: Record) -> None:
    try:
        on_record(index, record)
    except Exception as exc:  # noqa: BLE001 - re-raised as itself by the pool
        raise _StoreRecordError(exc) from exc


class LocalExecutor:
    """Runs each unit in this process, one after another (the default)."""

    name: ClassVar[str] = "local"
    description: ClassVar[str] = "run units one after another in this process"

    @contextlib.contextmanager
    def open(self, options: ExecutorOptions) -> Iterator[Pool]:
        yield LocalPool()


# ------------------------------------------------------------------------------------------- dask
def run_on_worker(task: Task, unit: Any, topic: str, threads: int) -> dict[str, Any]:
    """What a dask worker runs for one unit: the task with its records collected (they travel back
    with the result) and its progress sent to the driver as ``topic`` events, steps summed over
    ``PROGRESS_INTERVAL``. An exception becomes the result's ``error``: a unit that fails in code
    is not retried (it would fail again); a unit whose worker dies is. The GenbenchWarnings the unit
    raised travel back with it, for the driver to show."""
    from distributed import get_worker

    import torch

    torch.set_num_threads(threads)
    worker = get_worker()
    records: list[Record] = []
    pending = {"steps": 0, "members": 0, "sent": time.monotonic()}

    def progress(kind: str, value: Any) -> None:
        if kind == "steps":
            pending["steps"] += 1
            pending["members"] = value
            if time.monotonic() - pending["sent"] < PROGRESS_INTERVAL:
                return
            value, pending["steps"], pending["sent"] = (pending["steps"], pending["members"]), 0, time.monotonic()
        worker.log_event(topic, {"kind": kind, "value": value})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GenbenchWarning)
        try:
            task(unit, records.append, progress)
            error, code = None, None
        except Exception as exc:  # noqa: BLE001 - reported to the driver as this unit's failure
            error = first_line(exc)
            code = int(exc.exit_code) if isinstance(exc, GenbenchError) else int(ExitCode.FAILURE)
        if pending["steps"]:  # the steps of the last interval
            worker.log_event(topic, {"kind": "steps", "value": (pending["steps"], pending["members"])})
    notes = [str(w.message) for w in caught if issubclass(w.category, GenbenchWarning)]
    return {"records": records, "error": error, "exit_code": code, "warnings": notes}


class DaskPool:
    """Submits every unit to a dask client and stores records as units finish."""

    in_process = False

    def __init__(self, client, options: ExecutorOptions) -> None:
        self.client, self.options = client, options

    def _workers(self) -> list[dict]:
        return list(self.client.scheduler_info(n_workers=-1).get("workers", {}).values())

    @property
    def memory_limit(self) -> int | None:
        limits = [w.get("memory_limit") or 0 for w in self._workers()]
        limits = [limit for limit in limits if limit > 0]
        return min(limits) if limits else None

    @property
    def workers_per_host(self) -> int:
        """The most workers one host runs (they share its memory and devices)."""
        hosts: dict[str, int] = {}
        for worker in self._workers():
            hosts[worker.get("host", "")] = hosts.get(worker.get("host", ""), 0) + 1
        return max(hosts.values(), default=1)

    def run(self, task, units, on_record, on_progress) -> list[UnitFailure]:
        from distributed import wait

        topic = f"genbench-progress-{uuid.uuid4().hex}"
        events: queue.Queue = queue.Queue()
        waiting = iter(enumerate(units))
        futures: dict[Any, tuple[int, str]] = {}
        failures: list[UnitFailure] = []
        pending: set = set()
        try:
            self.client.subscribe_topic(topic, lambda event: events.put(event[1]))
            while True:
                # at most two units a worker thread in flight (the threads of the workers there are
                # now: a cluster may grow): the next unit is read only when there is room
                room = 2 * max(1, sum(self.client.nthreads().values()))
                for index, (name, unit) in itertools.islice(waiting, max(0, room - len(pending))):
                    future = self.client.submit(
                        run_on_worker, task, unit, topic, self.options.threads_per_worker,
                        key=f"genbench-{name}-{uuid.uuid4().hex[:8]}", pure=False,
                    )
                    futures[future] = (index, name)
                    pending.add(future)
                if not pending:
                    break
                try:
                    done, pending = wait(pending, timeout=PROGRESS_INTERVAL, return_when="FIRST_COMPLETED")
                except TimeoutError:  # nothing finished within the interval: report progress, wait on
                    done = set()
                _drain(events, on_progress)
                for future in sorted(done, key=lambda f: futures[f][0]):
                    failures.extend(self._collect(future, *futures.pop(future), on_record, on_progress))
            _drain(events, on_progress)
        except _StoreRecordError as exc:  # the driver's own write failed: that error, not the unit's
            raise exc.error from None
        except GenbenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - the scheduler went away (cancelled futures, a closed comm)
            if raise_errors():
                raise
            raise ExecutorError(f"lost the dask scheduler: {first_line(exc)}; what was stored stays stored") from None
        finally:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(topic)
            with contextlib.suppress(Exception):
                self.client.cancel(list(pending))
        return sorted(failures, key=lambda failure: failure.index)

    @staticmethod
    def _collect(future, index: int, name: str, on_record, on_progress) -> list[UnitFailure]:
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker once its retries are spent
            if raise_errors():
                raise
            return [UnitFailure(index, name, first_line(exc))]
        for note in outcome["warnings"]:
            on_progress("warn", note)
        for record in outcome["records"]:
            _stored(on_record, index, record)
        if outcome["error"] is not None:
            return [UnitFailure(index, name, outcome["error"], outcome["exit_code"])]
        return []


class _StoreRecordError(Exception):
    """The driver failed to store a record: its error, carried past the unit's failure handling."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _drain(events: queue.Queue, on_progress: Progress) -> None:
    """Hand the workers' progress events to ``on_progress``; a worker's summed ``steps`` event
    ``(count, members)`` is replayed as ``count`` steps, as the local executor reports them."""
    while True:
        try:
            event = events.get_nowait()
        except queue.Empty:
            return
        if event["kind"] == "steps":
            count, members = event["value"]
            for _ in range(count):
                on_progress("steps", members)
        else:
            on_progress(event["kind"], event["value"])


def load_cluster_file(path: Path) -> tuple[str, dict[str, Any]]:
    """A ``--cluster`` file: ``kind`` (slurm | kubernetes | local) and the ``[cluster]`` table of
    keyword arguments of that kind's cluster class; SpecError when malformed."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"cluster file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"cluster file {path} is not valid TOML: {first_line(exc)}") from None
    kind = data.get("kind")
    if kind not in CLUSTER_KINDS:
        raise SpecError(f"cluster file {path}: kind must be one of {', '.join(CLUSTER_KINDS)}, not {kind!r}")
    unknown = sorted(set(data) - {"kind", "cluster"})
    if unknown:
        raise SpecError(f"cluster file {path}: unknown key {unknown[0]!r} (expected kind and a [cluster] table)")
    arguments = data.get("cluster", {})
    if not isinstance(arguments, dict):
        raise SpecError(f"cluster file {path}: [cluster] must be a table")
    return kind, arguments


def make_cluster(kind: str, arguments: dict[str, Any]):
    """The cluster object a ``--cluster`` file describes (not yet scaled)."""
    try:
        if kind == "slurm":
            from dask_jobqueue import SLURMCluster

            return SLURMCluster(**arguments)
        if kind == "kubernetes":
            from dask_kubernetes.operator import KubeCluster

            return KubeCluster(**arguments)
        from distributed import LocalCluster

        return LocalCluster(**arguments)
    except ImportError:
        raise UsageError(f"a {kind} cluster needs the {CLUSTER_KINDS[kind]} package: pip install {CLUSTER_KINDS[kind]}") from None
    except TypeError as exc:
        raise SpecError(f"{kind} cluster: {first_line(exc)}") from None


#: What a worker's environment must not hold: a dask nanny sets MALLOC_TRIM_THRESHOLD_ by default,
#: and any value of it turns off glibc's adaptive mmap threshold, so every tensor of 128 KiB or more
#: is mapped and unmapped anew (training then spends as long in the kernel as in torch).
WORKER_ENVIRONMENT_DROPPED = ("MALLOC_TRIM_THRESHOLD_",)


def worker_environment() -> dict[str, Any]:
    """The environment a nanny gives the worker processes it starts: dask's own (one thread for
    OpenMP, MKL and OpenBLAS) without ``WORKER_ENVIRONMENT_DROPPED``."""
    import dask

    current = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    return {key: value for key, value in current.items() if key not in WORKER_ENVIRONMENT_DROPPED}


class DaskExecutor:
    """Runs units on a dask.distributed cluster (see the module docstring)."""

    name: ClassVar[str] = "dask"
    description: ClassVar[str] = "run units on a dask.distributed cluster: local processes, a scheduler, SLURM or Kubernetes"

    @contextlib.contextmanager
    def open(self, options: ExecutorOptions) -> Iterator[Pool]:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("the dask executor needs dask and distributed: pip install 'genbench[dask]'") from None
        logging.getLogger("distributed").setLevel(logging.ERROR)
        with contextlib.ExitStack() as stack:
            # a unit whose worker died is started again at most `retries` times
            stack.enter_context(dask.config.set({"distributed.scheduler.allowed-failures": options.retries}))
            # a worker holds only the unit it runs: when it dies, no unit queued behind it is blamed
            stack.enter_context(dask.config.set({"distributed.scheduler.worker-saturation": 1.0}))
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environment()}))
            if options.scheduler:
                try:
                    client = stack.enter_context(Client(options.scheduler, timeout=options.connect_timeout))
                except ValueError as exc:
                    raise UsageError(f"--scheduler {options.scheduler!r} is not a dask scheduler address "
                                     f"(tcp://HOST:PORT): {first_line(exc)}") from None
                except (OSError, TimeoutError) as exc:
                    raise UsageError(f"cannot reach the dask scheduler at {options.scheduler}: {first_line(exc)}") from None
            else:
                kind, arguments = load_cluster_file(options.cluster) if options.cluster is not None else ("local", None)
                try:
                    if arguments is not None:
                        cluster = stack.enter_context(make_cluster(kind, arguments))
                        if options.workers:
                            cluster.scale(options.workers)
                    else:
                        cluster = stack.enter_context(
                            LocalCluster(
                                n_workers=options.workers or os.cpu_count() or 1,
                                threads_per_worker=1,
                                processes=True,
                                dashboard_address=":0",  # any free port: never a clash with a running cluster
                                silence_logs=logging.ERROR,
                            )
                        )
                    client = stack.enter_context(Client(cluster))
                except GenbenchError:
                    raise
                except Exception as exc:  # noqa: BLE001 - e.g. workers that cannot start: one line
                    if raise_errors():
                        raise
                    raise ExecutorError(f"the {kind} dask cluster did not start: {first_line(exc)}") from None
            try:  # sizing and scheduling need the workers: wait for the first (SLURM jobs may queue)
                client.wait_for_workers(1, timeout=options.wait_timeout)
            except TimeoutError:
                raise ExecutorError(f"no dask worker joined within {options.wait_timeout:g} s (give --workers N to "
                                    "scale a cluster file's cluster)") from None
            yield DaskPool(client, options)


@hookimpl
def register_executors(register) -> None:
    register(LocalExecutor())
    register(DaskExecutor())
