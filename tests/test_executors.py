"""The executors: ``dask`` on a real LocalCluster gives the local executor's store run for run and
value for value, survives a worker killed in the middle of a unit, reports a unit that fails by
name while the rest finish, and starts the clusters its documented files describe."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import signal
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

import genbench.api as api  # noqa: E402
from genbench.errors import GenbenchWarning, SpecError, UsageError  # noqa: E402
from genbench.executors import (  # noqa: E402
    ExecutorOptions,
    LocalPool,
    load_cluster_file,
    make_cluster,
    worker_environment,
)
from genbench.schemas import ExperimentSpec  # noqa: E402

pytestmark = pytest.mark.slow

CLUSTERS = Path(__file__).resolve().parents[1] / "examples" / "clusters"

#: Four training groups (two recipes × two corruptions), three seeds, measures that retrain and not.
SPEC = ExperimentSpec.model_validate(
    {
        "name": "executors",
        "datasets": ["digits"],
        "models": [{"name": "mlp", "hidden": [32]}],
        "corruptions": ["labels", "gaussian"],
        "levels": [0.0, 1.0],
        "seeds": [0, 1, 2],
        "measures": ["params", "path-norm", "inverse-margin", {"name": "cross-validation", "folds": 2, "evaluated_folds": 2}],
        "train": {"lr": 0.1, "schedule": "constant", "max_steps": 400},
        "grids": [{"train": {"lr": 0.1}}, {"train": {"lr": 0.05}}],
    }
)


def store_contents(root: Path) -> tuple[dict, dict, int, int]:
    """Every run's result (without its wall time) and checkpoint hashes, every value, and the row counts."""
    connection = sqlite3.connect(root / "genbench.sqlite")
    runs = {}
    for run_id, result_json, checksums in connection.execute("SELECT run_id, result_json, checksums_json FROM runs"):
        result = json.loads(result_json)
        result.pop("wall_time")
        files = {
            which: hashlib.sha256((root / "checkpoints" / run_id / f"{which}.safetensors").read_bytes()).hexdigest()
            for which in ("init", "final")
        }
        runs[run_id] = (result, json.loads(checksums), files)
    values = {
        tuple(key): (value, error, status)
        for *key, value, error, status in connection.execute(
            "SELECT run_id, measure, version, options_hash, value, error, status FROM measure_values"
        )
    }
    counts = connection.execute("SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM measure_values)").fetchone()
    connection.close()
    return runs, values, *counts


def same_values(a: dict, b: dict) -> bool:
    """Value for value, NaN equal to NaN (a failed value on both sides)."""
    if a.keys() != b.keys():
        return False
    return all(x == y or (x[0] != x[0] and y[0] != y[0] and x[1:] == y[1:]) for x, y in ((a[k], b[k]) for k in a))


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    """The grid on the local executor, with one torch thread as each dask worker has (a conv net's
    arithmetic depends on the thread count; these MLPs' does not, but the comparison is exact)."""
    root = tmp_path_factory.mktemp("local") / "store"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        api.run(SPEC, store=api.open_store(root), device="cpu")
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def cluster():
    """A running two-worker cluster, started as genbench starts one (a nanny started with dask's
    default environment would also write MALLOC_TRIM_THRESHOLD_ into this process's environment)."""
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environment(),
                          "distributed.scheduler.allowed-failures": 2, "distributed.scheduler.worker-saturation": 1.0}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as running:
            yield running


def test_a_local_cluster_gives_the_local_store(local_store, tmp_path):
    root = tmp_path / "dask"
    api.run(SPEC, store=api.open_store(root), device="cpu", executor="dask", executor_options=ExecutorOptions(workers=2))
    local, distributed = store_contents(local_store), store_contents(root)
    assert distributed[2:] == local[2:] == (24, 24 * 4)
    assert distributed[0] == local[0]  # every result field and checkpoint byte
    assert same_values(distributed[1], local[1])


class StartedGroups:
    """A reporter that counts how many times each training group started (a retried unit starts twice)."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}

    def group_started(self, runs) -> None:
        self.started[runs[0].run_id] = self.started.get(runs[0].run_id, 0) + 1

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _kill_a_worker_in_a_unit(scheduler: str, groups: StartedGroups, killed: dict) -> None:
    """Kill (SIGKILL) the worker that runs the first training group to start, a moment into it."""
    with Client(scheduler, timeout="30s") as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = list(groups.started)
            if started:
                for worker, keys in client.processing().items():
                    mine = [key for key in keys if started[0][:8] in key]
                    if mine:
                        time.sleep(0.1)
                        pid = client.run(os.getpid)[worker]
                        os.kill(pid, signal.SIGKILL)
                        killed.update(worker=worker, pid=pid, keys=mine, group=started[0])
                        return
            time.sleep(0.01)


def test_a_worker_killed_mid_unit_costs_a_retry_not_the_run(local_store, cluster, tmp_path):
    root = tmp_path / "killed"
    killed: dict = {}
    groups = StartedGroups()
    killer = threading.Thread(target=_kill_a_worker_in_a_unit, args=(cluster.scheduler_address, groups, killed))
    killer.start()
    api.run(SPEC, store=api.open_store(root), device="cpu", executor="dask", reporter=groups,
            executor_options=ExecutorOptions(scheduler=cluster.scheduler_address))
    killer.join()
    assert killed, "no unit was ever seen running"
    assert groups.started[killed["group"]] == 2, groups.started  # the killed unit started again, once
    assert any(key.startswith("genbench-") for key in killed["keys"])
    with Client(cluster.scheduler_address) as client:
        assert killed["pid"] not in client.run(os.getpid).values()  # that process is gone
    local, distributed = store_contents(local_store), store_contents(root)
    assert distributed[2:] == local[2:]  # nothing lost, nothing stored twice
    assert distributed[0] == local[0]
    assert same_values(distributed[1], local[1])


# ---------------------------------------------------------------- the executor contract, bare
def _task(unit, emit, progress):
    """A unit: ``ok`` emits its number, ``raise`` fails in code, ``die`` kills its worker process."""
    kind, number = unit
    progress("started", number)
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "raise":
        raise RuntimeError(f"unit {number} is broken")
    if number == 3:
        warnings.warn("unit 3 has a note", GenbenchWarning)
    emit({"number": number})


UNITS = [("unit-0", ("ok", 0)), ("unit-1", ("raise", 1)), ("unit-2", ("die", 2)), ("unit-3", ("ok", 3))]


def test_dask_reports_failed_units_by_name_and_finishes_the_rest():
    from genbench.executors import DaskExecutor

    records, events = [], []
    with DaskExecutor().open(ExecutorOptions(workers=2, retries=1)) as pool:
        failures = pool.run(
            _task, UNITS, lambda index, record: records.append((index, record)), lambda *event: events.append(event)
        )
    assert sorted(records) == [(0, {"number": 0}), (3, {"number": 3})]
    assert [(f.index, f.name) for f in failures] == [(1, "unit-1"), (2, "unit-2")]
    assert failures[0].reason == "RuntimeError: unit 1 is broken"
    assert "KilledWorker" in failures[1].reason  # died on every one of its attempts
    assert ("started", 0) in events and ("started", 3) in events  # progress travels from the workers
    assert ("warn", "unit 3 has a note") in events  # and so do a unit's warnings


def test_local_reports_failed_units_by_name_and_finishes_the_rest():
    records = []
    with pytest.warns(GenbenchWarning, match="unit 3 has a note"):  # in this process, warnings are Python's
        failures = LocalPool().run(_task, [UNITS[0], UNITS[1], UNITS[3]], lambda i, r: records.append((i, r)), lambda *e: None)
    assert records == [(0, {"number": 0}), (2, {"number": 3})]
    assert [(f.index, f.name, f.reason) for f in failures] == [(1, "unit-1", "RuntimeError: unit 1 is broken")]


# ---------------------------------------------------------------- cluster files
def test_the_slurm_file_makes_a_slurm_job_script():
    pytest.importorskip("dask_jobqueue")
    kind, arguments = load_cluster_file(CLUSTERS / "slurm.toml")
    assert kind == "slurm"
    cluster = make_cluster(kind, {**arguments, "scheduler_options": {"dashboard_address": ":0"}})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p gpu", "#SBATCH -A my-lab", "#SBATCH --cpus-per-task=8", "#SBATCH -t 04:00:00",
                 "#SBATCH --gres=gpu:1", "source $HOME/genbench/.venv/bin/activate", "--nworkers 8", "--nthreads 1",
                 "export MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_MMAP_THRESHOLD_=33554432"):
        assert line in script


def test_the_kubernetes_file_makes_an_operator_cluster_spec():
    pytest.importorskip("dask_kubernetes")
    from dask_kubernetes.operator import KubeCluster, make_cluster_spec

    kind, arguments = load_cluster_file(CLUSTERS / "kubernetes.toml")
    assert kind == "kubernetes"
    inspect.signature(KubeCluster).bind(**arguments)  # every key is one of KubeCluster's
    spec_keys = set(inspect.signature(make_cluster_spec).parameters)
    spec = make_cluster_spec(**{k: v for k, v in arguments.items() if k in spec_keys})
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    assert worker["image"] == "ghcr.io/my-lab/genbench:0.1.0"
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in worker["env"]
    assert {"name": "MALLOC_MMAP_THRESHOLD_", "value": "33554432"} in worker["env"]
    assert worker["resources"]["limits"] == {"cpu": "1", "memory": "4Gi"}
    assert worker["args"][:3] == ["dask-worker", "--nthreads", "1"]


def test_a_cluster_file_runs_the_command(tmp_path):
    store = tmp_path / "store"
    small = SPEC.model_copy(update={"corruptions": SPEC.corruptions[:1], "grids": [], "measures": SPEC.measures[:1]})
    spec_file = tmp_path / "small.toml"
    spec_file.write_text(small_toml(small))
    from typer.testing import CliRunner

    from genbench.cli.main import app

    result = CliRunner().invoke(app, ["run", str(spec_file), "--store", str(store), "--device", "cpu",
                                      "--cluster", str(CLUSTERS / "local.toml"), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert store_contents(store)[2:] == (6, 6)


def small_toml(spec: ExperimentSpec) -> str:
    return "\n".join(
        [
            f'name = "{spec.name}"',
            'datasets = ["digits"]',
            'models = [{ name = "mlp", hidden = [32] }]',
            f"corruptions = {json.dumps([c.name for c in spec.corruptions])}",
            "levels = [0.0, 1.0]",
            "seeds = [0, 1, 2]",
            'measures = ["params"]',
            "[train]",
            "lr = 0.1",
            'schedule = "constant"',
            "max_steps = 400",
        ]
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("kind = 'pbs'\n", "kind must be one of"),
        ("kind = 'slurm'\nqueue = 'x'\n", "unknown key 'queue'"),
        ("kind = 'slurm'\ncluster = 3\n", "[cluster] must be a table"),
        ("kind = [\n", "not valid TOML"),
    ],
)
def test_a_malformed_cluster_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message.replace("[", r"\[")):
        load_cluster_file(path)


def _environment():
    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")


def test_local_cluster_workers_keep_glibc_adaptive_mmap_threshold():
    """dask's nanny sets MALLOC_TRIM_THRESHOLD_ by default, which fixes glibc's mmap threshold at
    128 KiB: a training step then maps and unmaps its tensors anew (half the time in the kernel).
    The workers genbench starts go without it, and with one OpenMP thread."""
    from genbench.executors import DaskExecutor

    with DaskExecutor().open(ExecutorOptions(workers=1)) as pool:
        assert set(pool.client.run(_environment).values()) == {(None, "1")}


def test_an_unreachable_scheduler_is_a_usage_error():
    from genbench.executors import DaskExecutor

    with pytest.raises(UsageError, match="cannot reach the dask scheduler"):
        with DaskExecutor().open(ExecutorOptions(scheduler="tcp://127.0.0.1:9", connect_timeout=1.0)):
            pass


def test_an_engine_on_workers_shares_the_hosts_memory_budget(cluster, tmp_path):
    from genbench.engine import Engine
    from genbench.store import Store
    from genbench.training.memory import default_budget

    with Client(cluster.scheduler_address) as client:
        limit = min(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
    with Store(tmp_path / "store") as store, Engine(store, device="cpu", executor="dask",
                                                    executor_options=ExecutorOptions(scheduler=cluster.scheduler_address)) as engine:
        engine.pool()
        # both workers run on this host and share its RAM: half of it each, at most half a worker's limit
        expected = min(default_budget(torch.device("cpu")) // 2, limit // 2)
        # the available RAM moves between the two reads: the budget is the worker's half or close to the RAM's
        assert engine.training.memory_budget == engine.evaluation.memory_budget
        assert abs(engine.training.memory_budget - expected) <= max(1, expected // 20)
        assert engine.training.memory_budget <= limit // 2


def test_a_malformed_scheduler_address_is_a_usage_error():
    from genbench.executors import DaskExecutor

    with pytest.raises(UsageError, match="is not a dask scheduler address"):
        with DaskExecutor().open(ExecutorOptions(scheduler="tcp://127.0.0.1:x", connect_timeout=1.0)):
            pass


def _broken_unit(unit, emit, progress, **kwargs):
    raise RuntimeError("this unit is broken")


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_a_failed_unit_is_named_and_the_command_exits_1(stage, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import genbench.engine.evaluate
    import genbench.engine.train
    from genbench.cli.main import app

    store = str(tmp_path / "store")
    grid = ["--dataset", "digits", "--model", "mlp", "--width", "16", "--levels", "0,1", "--seeds", "0,1,2",
            "--lr", "0.1", "--schedule", "constant", "--max-steps", "200", "--measure", "params", "--store", store,
            "--format", "csv", "--device", "cpu"]
    if stage == "evaluate":
        assert CliRunner().invoke(app, ["run", *grid, "--no-evaluate"]).exit_code == 0
        monkeypatch.setattr(genbench.engine.evaluate, "evaluate_unit", _broken_unit)
        args = ["evaluate", "--measure", "params", "--store", store, "--format", "csv"]
    else:
        monkeypatch.setattr(genbench.engine.train, "train_unit", _broken_unit)
        args = ["run", *grid]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "failed: RuntimeError: this unit is broken" in result.output
    assert "units of work failed" in result.output
