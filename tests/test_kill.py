"""kill -9 at any moment loses nothing and duplicates nothing.

A ``genbench run`` of a tiny grid runs as a subprocess that is killed with SIGKILL at one point
(each point one ``KillPoint`` below), then the same command is run again to completion, and the
store is compared with a reference store made by one uninterrupted run of the same command:

- ``genbench store check`` exits 0 (no damaged run, no orphan folder, no half-written file);
- the same run ids, each run row and each measure value stored once;
- every run's result JSON (less its wall time) and every checkpoint tensor bit-identical;
- every measure value equal (float equality; ``seconds`` and ``created_at`` aside);
- what the killed process had committed is kept as it was (not computed or trained again).

The kill points are not hooks in genbench: the subprocess is ``python -c SCRIPT ARGV``, where
SCRIPT monkeypatches what genbench calls (``genbench.store``'s ``os.replace``, which renames a
checkpoint's temporary file into place, and its sqlite connection's ``execute``; a measure's
``compute``; the CLI reporter's step callback) to SIGKILL its own process on its n-th call, then
calls the CLI entry point. The store is patched below its methods, which other work reshapes
(executors hand the driver serialized checkpoints), so the points stay where they are. A point's process must die by SIGKILL (returncode -9), so a point
that never fires fails its test. A new point (a store write under another executor, say) is one
more ``KillPoint`` in ``POINTS``: a name, its patch code, the extra argv of the killed run and the
rerun, optionally a kill from outside and a check of the store the kill left.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from genbench.cli.main import app
from genbench.store import CHECKPOINTS, DATABASE, Store

#: The grid: 2 levels × 2 seeds of a small MLP on a synthetic Gaussian mixture (no dataset files;
#: scikit-learn is not even imported, which saves a second per process), one training group of 4
#: members that converge at different steps (≈ 30 and 33 at p_c = 0, ≈ 180 and 210 at p_c = 1), so
#: runs are stored one at a time during training and a rerun trains the rest as a smaller
#: ensemble; 3 cheap measures, one per kind of input (the architecture, the initial weights, the
#: training data).
MEASURES = ("params", "dist-from-init", "cross-entropy")
SPEC = f"""
datasets = [{{ name = "gaussian-mixture", n_train = 300, n_test = 300, separation = 1.0 }}]
models = [{{ name = "mlp", hidden = [32] }}]
levels = [0.0, 1.0]
seeds = [0, 1]
measures = {json.dumps(list(MEASURES))}
[train]
lr = 0.1
schedule = "constant"
max_steps = 400
"""
RUNS, VALUES = 4, 4 * len(MEASURES)

#: Run in the subprocess before the patch: ``die()`` SIGKILLs the process; ``nth(key, n)`` is true
#: on the n-th call with ``key`` (and only then); ``inserts_into(sql, table)``: whether ``sql``
#: writes a row of ``table``.
PRELUDE = """
import os, re, signal, sys
def inserts_into(sql, table):
    return re.match(r"\\s*(INSERT|REPLACE)\\b.*?\\bINTO\\s+" + table + r"\\b", sql, re.I | re.S) is not None
_calls = {}
def nth(key, n):
    _calls[key] = _calls.get(key, 0) + 1
    return _calls[key] == n
def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""

#: Run after the patch: the CLI on the argv given after ``-c SCRIPT``.
ENTRY = """
from genbench.cli.main import main
sys.argv[0] = "genbench"
main()
"""

#: Appended to a patch that defines ``after_execute(sql)``: the store's sqlite connection runs it
#: after each statement executes (inside its transaction, before ``with connection:`` commits it).
#: ``genbench.store`` gets a copy of the sqlite3 module whose ``connect`` makes such connections.
KILLING_CONNECTION = """
import sqlite3, genbench.store
class _Connection(sqlite3.Connection):
    def execute(self, sql, *args):
        cursor = super().execute(sql, *args)
        after_execute(sql)
        return cursor
_connect = sqlite3.connect
genbench.store.sqlite3 = type(sys)("sqlite3_patched")
genbench.store.sqlite3.__dict__.update(sqlite3.__dict__)
genbench.store.sqlite3.connect = lambda *a, **k: _connect(*a, factory=_Connection, **k)
"""

#: Appended to a patch that defines ``before_replace(src, dst)`` and ``after_replace(src, dst)``:
#: the store runs them around each rename of a checkpoint's temporary file into place.
#: ``genbench.store`` gets a copy of the os module whose ``replace`` calls them.
RENAME_HOOK = """
import genbench.store
_os = genbench.store.os
genbench.store.os = type(sys)("os_patched")
genbench.store.os.__dict__.update(_os.__dict__)
def _replace(src, dst, *args, **kwargs):
    before_replace(src, dst)
    _os.replace(src, dst, *args, **kwargs)
    after_replace(src, dst)
genbench.store.os.replace = _replace
"""


@dataclass(frozen=True)
class KillPoint:
    """Where the killed run dies.

    ``patch``: Python run in the subprocess before the CLI (with PRELUDE's ``nth``, ``die`` and
    ``inserts_into``; end it with KILLING_CONNECTION or RENAME_HOOK to patch the store's writes);
    ``argv``: extra arguments of the killed run and of the rerun (the reference has none);
    ``kill_when``: for a kill from outside, polled with the store's path until true, then the test
    SIGKILLs the process; ``after_kill``: a check of the store the kill left (an AssertionError
    when the kill missed its window)."""

    name: str
    patch: str = ""
    argv: tuple[str, ...] = ()
    kill_when: Callable[[Path], bool] | None = None
    after_kill: Callable[[Snapshot], None] | None = None


@dataclass
class Snapshot:
    """A store read without genbench: its rows, its checkpoint folders and temporary files."""

    runs: list[tuple[str, str, float]]  # run_id, result_json, created_at
    values: list[tuple]  # run_id, measure, version, options_hash, value, status, error, details, kind, default, created_at
    folders: set[str]
    temporary: list[Path]

    @classmethod
    def of(cls, root: Path) -> Snapshot:
        runs, values = [], []
        if (root / DATABASE).exists():
            with sqlite3.connect(root / DATABASE) as connection:
                try:
                    runs = connection.execute("SELECT run_id, result_json, created_at FROM runs").fetchall()
                    values = connection.execute(
                        "SELECT run_id, measure, version, options_hash, value, status, error, details_json, kind, "
                        "default_options, created_at FROM measure_values"
                    ).fetchall()
                except sqlite3.OperationalError:  # killed before the tables were made
                    pass
            connection.close()
        folder = root / "checkpoints"
        folders = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        return cls(runs, values, folders, sorted(folder.glob("*/*.tmp")) if folder.is_dir() else [])


def _rows_in_runs(root: Path) -> int:
    if not (root / DATABASE).exists():
        return 0
    try:
        with sqlite3.connect(root / DATABASE, timeout=1) as connection:
            count = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
        connection.close()
        return count
    except sqlite3.OperationalError:  # the tables are not made yet, or the writer holds a lock
        return 0


def _expect(condition: bool, what: str) -> None:
    assert condition, f"the kill missed its window: {what}"


#: Dies inside the INSERT of the second run row (executed, not committed).
SECOND_RUN_ROW = """
def after_execute(sql):
    if inserts_into(sql, "runs") and nth("run row", 2):
        die()
""" + KILLING_CONNECTION
#: Dies inside the INSERT of the fifth measure value (executed, not committed).
FIFTH_VALUE_ROW = """
def after_execute(sql):
    if inserts_into(sql, "measure_values") and nth("value row", 5):
        die()
""" + KILLING_CONNECTION


POINTS = [
    KillPoint(
        "training, after 20 optimizer steps of the first group",
        patch="""
import genbench.report.progress as progress
_steps = progress.ProgressReporter.steps
def steps(self, members):
    if nth("step", 20):
        die()
    return _steps(self, members)
progress.ProgressReporter.steps = steps
""",
        after_kill=lambda s: _expect(not s.runs, "a run was stored before step 20"),
    ),
    KillPoint(
        "between a run's checkpoint files and its row (second run)",
        patch="""
def before_replace(src, dst):
    pass
def after_replace(src, dst):
    if os.path.basename(dst) == "final.safetensors" and nth("final", 2):
        die()
""" + RENAME_HOOK,
        after_kill=lambda s: _expect(len(s.runs) == 1 and len(s.folders) == 2, "not 1 run row and 2 checkpoint folders"),
    ),
    KillPoint(
        "inside a checkpoint write (temporary file written, not renamed)",
        patch="""
def before_replace(src, dst):
    if nth("rename", 3):  # the second run's init checkpoint
        die()
def after_replace(src, dst):
    pass
""" + RENAME_HOOK,
        after_kill=lambda s: _expect(len(s.temporary) == 1, "no temporary checkpoint file left"),
    ),
    KillPoint(
        "inside the sqlite write of a run row (INSERT executed, not committed; second run)",
        patch=SECOND_RUN_ROW,
        after_kill=lambda s: _expect(len(s.runs) == 1, "not exactly the first run row committed"),
    ),
    KillPoint(
        "evaluation, inside a measure's compute (dist-from-init on the third run)",
        patch="""
from genbench.plugins import registry
measure = type(registry("measures").get("dist-from-init"))
_compute = measure.compute
def compute(self, ctx, options):
    value = _compute(self, ctx, options)
    if nth("compute", 3):
        die()
    return value
measure.compute = compute
""",
        after_kill=lambda s: _expect(len(s.runs) == RUNS and 0 < len(s.values) < VALUES, "no value stored, or all"),
    ),
    KillPoint(
        "inside the sqlite write of a measure value (INSERT executed, not committed; fifth value)",
        patch=FIFTH_VALUE_ROW,
        after_kill=lambda s: _expect(len(s.runs) == RUNS and len(s.values) == 4, "not exactly 4 values committed"),
    ),
    KillPoint(
        "under dask: the driver inside the sqlite write of a run a worker sent (second run)",
        patch=SECOND_RUN_ROW,
        argv=("--executor", "dask", "--workers", "2"),
        after_kill=lambda s: _expect(len(s.runs) == 1, "not exactly the first run row committed"),
    ),
    KillPoint(
        "under dask: the driver inside the sqlite write of a measure value a worker sent (fifth value)",
        patch=FIFTH_VALUE_ROW,
        argv=("--executor", "dask", "--workers", "2"),
        after_kill=lambda s: _expect(len(s.runs) == RUNS and len(s.values) == 4, "not exactly 4 values committed"),
    ),
    KillPoint(
        "a timer: killed from outside as soon as the first run row is committed",
        kill_when=lambda root: _rows_in_runs(root) > 0,
        after_kill=lambda s: _expect(len(s.runs) >= 1, "no run row committed"),
    ),
]


def _environment() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GENBENCH_")}
    # one thread everywhere: the same arithmetic in every process, and no oversubscribed cores;
    # no third-party plugins
    return {**environment, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GENBENCH_LOAD_PLUGINS": ""}


def _command(argv: list[str], patch: str = "") -> list[str]:
    return [sys.executable, "-c", PRELUDE + patch + ENTRY, *argv]


def _run(argv: list[str], patch: str = "", timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(argv, patch), check=False, capture_output=True, text=True, env=_environment(), timeout=timeout
    )


def _killed_from_outside(argv: list[str], root: Path, when: Callable[[Path], bool], timeout: float = 180) -> tuple[int, str]:
    """Start the command, poll ``when(root)`` and SIGKILL the process once it holds; its exit status
    and stderr (to a file, not a pipe: a full pipe would stall it while it is polled)."""
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(_command(argv), stdout=subprocess.DEVNULL, stderr=stderr, text=True, env=_environment())
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None and not when(root) and time.monotonic() < deadline:
                time.sleep(0.005)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        stderr.seek(0)
        return process.returncode, stderr.read()


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[str, ...]:
    """The command under test (without ``--store``)."""
    spec = tmp_path_factory.mktemp("kill-grid") / "grid.toml"
    spec.write_text(SPEC)
    return ("run", str(spec), "--format", "csv")


@pytest.fixture(scope="module")
def reference(grid, tmp_path_factory) -> Path:
    """A store made by one uninterrupted run of the grid."""
    root = tmp_path_factory.mktemp("kill-reference") / "store"
    done = _run([*grid, "--store", str(root)])
    assert done.returncode == 0, done.stderr[-2000:]
    snapshot = Snapshot.of(root)
    assert len(snapshot.runs) == RUNS and len(snapshot.values) == VALUES
    assert all(row[5] == "ok" for row in snapshot.values), snapshot.values
    return root


def _checkpoints(root: Path, run_id: str) -> dict[str, dict[str, tuple[str, tuple, bytes]]]:
    out = {}
    for which in CHECKPOINTS:
        state = load_file(str(root / "checkpoints" / run_id / f"{which}.safetensors"))
        out[which] = {name: (str(t.dtype), tuple(t.shape), t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
                      for name, t in state.items()}
    return out


def _results(snapshot: Snapshot) -> dict[str, dict]:
    results = {}
    for run_id, result_json, _ in snapshot.runs:
        result = json.loads(result_json)
        result.pop("wall_time")
        results[run_id] = result
    return results


def _values(snapshot: Snapshot) -> dict[tuple, tuple]:
    """(run_id, measure, version, options_hash) → (value, status, error, details, kind, default_options)."""
    return {row[:4]: row[4:10] for row in snapshot.values}


@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_a_kill_then_a_rerun_gives_the_uninterrupted_store(point: KillPoint, grid, reference, tmp_path):
    root = tmp_path / "store"
    argv = [*grid, *point.argv, "--store", str(root)]

    if point.kill_when is None:
        killed = _run(argv, point.patch)
        returncode, stderr = killed.returncode, killed.stderr
    else:
        returncode, stderr = _killed_from_outside(argv, root, point.kill_when)
    assert returncode == -signal.SIGKILL, f"the point never fired (exit {returncode}): {stderr[-2000:]}"
    before = Snapshot.of(root)
    if point.after_kill is not None:
        point.after_kill(before)

    rerun = _run(argv)
    assert rerun.returncode == 0, rerun.stderr[-2000:]

    checked = CliRunner().invoke(app, ["store", "check", "--store", str(root)])
    assert checked.exit_code == 0, checked.output

    after, expected = Snapshot.of(root), Snapshot.of(reference)
    # each run row and each value once, the same ones as the reference's
    assert len(after.runs) == len({r[0] for r in after.runs}) == RUNS
    assert len(after.values) == len({v[:4] for v in after.values}) == len({v[:2] for v in after.values}) == VALUES
    assert {r[0] for r in after.runs} == {r[0] for r in expected.runs}
    assert after.folders == {r[0] for r in expected.runs} and not after.temporary

    # bit-identical results (less the wall time) and checkpoints; equal measure values
    assert _results(after) == _results(expected)
    for run_id, _, _ in expected.runs:
        assert _checkpoints(root, run_id) == _checkpoints(reference, run_id), f"run {run_id}'s checkpoints differ"
    assert _values(after) == _values(expected)

    # what the killed process had committed is kept, not trained or computed again
    kept_runs = {r[0]: r[2] for r in after.runs}
    assert all(kept_runs[run_id] == created for run_id, _, created in before.runs)
    kept_values = {v[:4]: v[10] for v in after.values}
    assert all(kept_values[v[:4]] == v[10] for v in before.values)

    with Store(root, create=False) as store:
        assert store.check().clean
