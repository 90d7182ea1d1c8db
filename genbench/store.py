"""The result store: one SQLite file (WAL mode) plus safetensors checkpoints.

Layout under the store root (``./genbench-results`` by default; ``--store`` or
``GENBENCH_STORE`` override it)::

    genbench.sqlite                       tables runs, measure_values
    checkpoints/<run_id>/init.safetensors
    checkpoints/<run_id>/final.safetensors

Checkpoints are written to a temporary name and renamed, and a run's row is
committed only after both files exist, so an interrupted run leaves either a
complete run or none. Nothing read from a store can execute code: specs and
results are JSON, weights are safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save

from genbench.errors import StoreError
from genbench.schemas import RUN_COMPONENTS, MeasureValue, RunResult, RunSpec

DEFAULT_ROOT = "genbench-results"
DATABASE = "genbench.sqlite"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    result_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS measure_values (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    measure TEXT NOT NULL,
    version TEXT NOT NULL,
    options_hash TEXT NOT NULL,
    options_json TEXT NOT NULL,
    value REAL,
    seconds REAL NOT NULL,
    error TEXT,
    created_at REAL NOT NULL,
    details_json TEXT,
    status TEXT,
    kind TEXT,
    default_options INTEGER,
    genbench_version TEXT,
    plugin TEXT,
    plugin_version TEXT,
    PRIMARY KEY (run_id, measure, version, options_hash)
);
"""

#: Columns added to measure_values after the first release: (name, SQL type). Older stores gain
#: them empty; an empty status reads as "ok" without an error and "failed" with one, and an empty
#: provenance (``PROVENANCE_COLUMNS``) as None: not recorded.
ADDED_VALUE_COLUMNS = (
    ("details_json", "TEXT"), ("status", "TEXT"), ("kind", "TEXT"), ("default_options", "INTEGER"),
    ("genbench_version", "TEXT"), ("plugin", "TEXT"), ("plugin_version", "TEXT"),
)
#: The columns of a value's provenance: the genbench that computed it, and the distribution (and
#: its version) that registered its measure.
PROVENANCE_COLUMNS = ("genbench_version", "plugin", "plugin_version")
#: Columns added to runs after the first release: the sha256 of each checkpoint ({"init": …, "final": …}).
ADDED_RUN_COLUMNS = (("checksums_json", "TEXT"),)
#: The checkpoints every run has.
CHECKPOINTS = ("init", "final")
#: A stored value that need not be computed again.
#: (A row from before statuses were recorded is done when it has a value and no error: SQLite
#: stores NaN as NULL, and a NaN is now a failed value.)
DONE = "(status IN ('ok', 'skipped') OR (status IS NULL AND error IS NULL AND value IS NOT NULL))"
#: The columns of a raw ``runs`` row (``Store.raw_rows``, ``Store.add_raw_run``), in this order.
RUN_ROW_COLUMNS = ("run_id", "spec_json", "result_json", "checksums_json", "created_at")
#: The columns of a raw ``measure_values`` row (``Store.raw_rows``, ``Store.add_raw_values``), in this order.
VALUE_ROW_COLUMNS = (
    "run_id", "measure", "version", "options_hash", "options_json", "value", "seconds", "error", "created_at",
    "details_json", "status", "kind", "default_options", *PROVENANCE_COLUMNS,
)


@dataclass
class StoreCheck:
    """What ``Store.check`` found."""

    runs: int
    damaged: dict[str, list[str]] = field(default_factory=dict)
    orphans: list[Path] = field(default_factory=list)
    half_written: list[Path] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.damaged or self.orphans or self.half_written)


def default_root() -> Path:
    return Path(os.environ.get("GENBENCH_STORE") or DEFAULT_ROOT)


class Store:
    """A result store rooted at ``root`` (created on first write)."""

    def __init__(self, root: str | Path | None = None, create: bool = True) -> None:
        self.root = Path(root) if root is not None else default_root()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {self.root} exists and is not a folder")
        if not create and not (self.root / DATABASE).exists():
            raise StoreError(f"no genbench store at {self.root} (run `genbench run` first, or pass --store)")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._connection = self._open()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {self.root / DATABASE}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot create store at {self.root}: {exc}") from None

    def _open(self, attempts: int = 60) -> sqlite3.Connection:
        """The store's connection, in WAL mode, with its tables and columns made. Two processes
        that create one store at once race for the switch to WAL, which SQLite answers with
        "database is locked" at once rather than waiting its busy timeout: the loser tries again
        (``attempts`` times, half a second apart)."""
        attempt = 0
        while True:
            attempt += 1
            connection = sqlite3.connect(self.root / DATABASE, timeout=30)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(SCHEMA)
                self._connection = connection
                self._check_schema_version()
                self._add_missing_columns()
                return connection
            except sqlite3.OperationalError as exc:
                connection.close()
                if "locked" not in str(exc) or attempt >= attempts:
                    raise
                time.sleep(0.5)

    def _check_schema_version(self) -> None:
        # OR IGNORE: two processes may create the store at once; the second keeps the first's row
        with self._connection:
            self._connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        row = self._connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"store {self.root} has schema version {row[0]}; this genbench reads {SCHEMA_VERSION}")

    def _add_missing_columns(self) -> None:
        """Stores written before a column of ``ADDED_VALUE_COLUMNS`` existed gain it (empty), keeping their values."""
        for table, added in (("measure_values", ADDED_VALUE_COLUMNS), ("runs", ADDED_RUN_COLUMNS)):
            columns = {row[1] for row in self._connection.execute(f"PRAGMA table_info({table})")}
            missing = [(name, kind) for name, kind in added if name not in columns]
            for name, kind in missing:
                try:
                    with self._connection:
                        self._connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:  # another process opening the store added it first
                    if "duplicate column" not in str(exc):
                        raise

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- runs
    def checkpoint_path(self, run_id: str, which: str) -> Path:
        return self.root / "checkpoints" / run_id / f"{which}.safetensors"

    def has_run(self, run_id: str) -> bool:
        row = self._connection.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row is not None

    def finished_ids(self, run_ids: Iterable[str]) -> set[str]:
        ids = list(run_ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._connection.execute(f"SELECT run_id FROM runs WHERE run_id IN ({marks})", chunk)
            found.update(r[0] for r in rows)
        return found

    def save_run(
        self,
        spec: RunSpec,
        result: RunResult,
        initial_state: dict[str, torch.Tensor],
        final_state: dict[str, torch.Tensor],
    ) -> None:
        """Write both checkpoints (atomically), then commit the run's row with their sha256."""
        self.save_run_files(spec, result, checkpoint_bytes(initial_state), checkpoint_bytes(final_state))

    def save_run_files(self, spec: RunSpec, result: RunResult, initial: bytes, final: bytes) -> None:
        """``save_run`` for checkpoints already serialized as safetensors (what an executor's
        worker sends back): write both files atomically, then commit the row with their sha256."""
        run_id = spec.run_id
        if result.run_id != run_id:
            raise StoreError(f"result for run {result.run_id} saved under spec {run_id}")
        remove_dead_temporaries(self.checkpoint_path(run_id, "final").parent)
        checksums = {
            which: self._write_checkpoint_bytes(self.checkpoint_path(run_id, which), data)
            for which, data in (("init", initial), ("final", final))
        }
        with self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO runs (run_id, spec_json, result_json, created_at, checksums_json) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, spec.canonical(), result.model_dump_json(), time.time(), json.dumps(checksums, sort_keys=True)),
            )

    @staticmethod
    def _write_checkpoint_bytes(path: Path, data: bytes) -> str:
        """Write ``data`` to ``path`` through a temporary file of a name no other process uses,
        then rename it into place; return its sha256."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return hashlib.sha256(data).hexdigest()

    def checkpoint_bytes(self, run_id: str, which: str) -> bytes:
        """The stored safetensors file of a run's checkpoint, as bytes (StoreError when missing)."""
        path = self.checkpoint_path(run_id, which)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"checkpoint missing: {path}") from None
        except OSError as exc:
            raise StoreError(f"checkpoint unreadable: {path}: {exc}") from None

    # ---------------------------------------------------------------- integrity
    def checksums(self, run_id: str) -> dict[str, str]:
        """The recorded sha256 of each checkpoint of ``run_id`` ({} for a run stored before they were)."""
        row = self._connection.execute("SELECT checksums_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def checkpoints_present(self, run_ids: Iterable[str]) -> set[str]:
        """The runs among ``run_ids`` whose checkpoint files all exist and are not empty (cheap: no reading)."""
        present = set()
        for run_id in run_ids:
            paths = [self.checkpoint_path(run_id, which) for which in CHECKPOINTS]
            if all(path.is_file() and path.stat().st_size > 0 for path in paths):
                present.add(run_id)
        return present

    def check_run(self, run_id: str) -> list[str]:
        """What is wrong with a stored run's checkpoints: missing, not readable as safetensors, a
        sha256 other than the recorded one, or an initial and a final state of different tensors."""
        problems, shapes = [], {}
        recorded = self.checksums(run_id)
        for which in CHECKPOINTS:
            path = self.checkpoint_path(run_id, which)
            if not path.is_file():
                problems.append(f"{which} checkpoint missing")
                continue
            data = path.read_bytes()
            if which in recorded and hashlib.sha256(data).hexdigest() != recorded[which]:
                problems.append(f"{which} checkpoint's sha256 differs from the recorded one")
                continue
            try:
                state = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as exc:
                problems.append(f"{which} checkpoint unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
                continue
            shapes[which] = {name: tuple(tensor.shape) for name, tensor in state.items()}
        if len(shapes) == 2 and shapes["init"] != shapes["final"]:
            problems.append("initial and final checkpoints hold different tensors")
        return problems

    def check(self) -> "StoreCheck":
        """Every run checked against its files, and the files no run owns."""
        ids = self.run_ids()
        damaged = {run_id: problems for run_id in ids if (problems := self.check_run(run_id))}
        folder = self.root / "checkpoints"
        owned = set(ids)
        orphans = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in owned) if folder.is_dir() else []
        partial = sorted(folder.glob("*/*.tmp")) if folder.is_dir() else []
        return StoreCheck(runs=len(ids), damaged=damaged, orphans=orphans, half_written=partial)

    def remove_runs(self, run_ids: Iterable[str]) -> None:
        """Delete runs: their rows, their measure values and their checkpoint folders."""
        ids = list(run_ids)
        with self._connection:
            for run_id in ids:
                self._connection.execute("DELETE FROM measure_values WHERE run_id = ?", (run_id,))
                self._connection.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        for run_id in ids:
            shutil.rmtree(self.root / "checkpoints" / run_id, ignore_errors=True)

    def repair(self, check: "StoreCheck") -> None:
        """Remove what ``check`` found: the damaged runs (so that the next ``run`` trains them
        again), the orphan folders and the half-written files."""
        self.remove_runs(check.damaged)
        for folder in check.orphans:
            shutil.rmtree(folder, ignore_errors=True)
        for path in check.half_written:
            path.unlink(missing_ok=True)

    def load_checkpoint(self, run_id: str, which: str) -> dict[str, torch.Tensor]:
        path = self.checkpoint_path(run_id, which)
        try:
            return load_file(str(path))
        except FileNotFoundError:
            raise StoreError(f"checkpoint missing: {path}") from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise StoreError(f"checkpoint unreadable: {path}: {exc}") from None

    def run_spec(self, run_id: str) -> RunSpec:
        row = self._connection.execute("SELECT spec_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in store {self.root}")
        return RunSpec.model_validate_json(row[0])

    def run_result(self, run_id: str) -> RunResult:
        row = self._connection.execute("SELECT result_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in store {self.root}")
        return RunResult.model_validate_json(row[0])

    def run_ids(self) -> list[str]:
        return [r[0] for r in self._connection.execute("SELECT run_id FROM runs ORDER BY created_at, run_id")]

    def iter_runs(self, run_ids: Iterable[str] | None = None) -> Iterable[tuple[RunSpec, RunResult]]:
        wanted = None if run_ids is None else set(run_ids)
        rows = self._connection.execute("SELECT run_id, spec_json, result_json FROM runs ORDER BY created_at, run_id")
        for run_id, spec_json, result_json in rows.fetchall():
            if wanted is None or run_id in wanted:
                yield RunSpec.model_validate_json(spec_json), RunResult.model_validate_json(result_json)

    def runs(self) -> pd.DataFrame:
        """One row per run: the spec's axes, then the result's numbers and facts, with the origin of
        each component in ``<component>_origin`` ("genbench 0.1.0": the distribution that registered
        the run's dataset, model, corruption, and its version; None where the run did not record it),
        then the diagnostics (``diag_<name>``)."""
        records = []
        for spec, result in self.iter_runs():
            records.append(
                {
                    "run_id": spec.run_id,
                    "dataset": spec.dataset.label(),
                    "model": spec.model.label(),
                    "corruption": spec.corruption.name,
                    "level": spec.corruption.level,
                    "seed": spec.seed,
                    "test_labels": spec.test_labels,
                    "train_config": spec.train.model_dump_json(),
                    **result.model_dump(exclude={"run_id", "loss_curve", "diagnostics", "components"}),
                    **{f"{kind}_origin": _origin_text(result, kind) for kind in RUN_COMPONENTS},
                    **{f"diag_{name}": value for name, value in result.diagnostics.items()},
                }
            )
        columns = ["run_id", "dataset", "model", "corruption", "level", "seed", "test_labels", "train_config"]
        columns += [name for name in RunResult.model_fields if name not in ("run_id", "loss_curve", "diagnostics", "components")]
        columns += [f"{kind}_origin" for kind in RUN_COMPONENTS]
        columns += sorted({key for record in records for key in record if key.startswith("diag_")})
        return pd.DataFrame.from_records(records, columns=columns)

    # ------------------------------------------------------------- measures
    def save_measure_value(self, value: MeasureValue) -> None:
        with self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO measure_values (run_id, measure, version, options_hash, options_json, "
                "value, seconds, error, created_at, details_json, status, kind, default_options, "
                "genbench_version, plugin, plugin_version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    value.run_id,
                    value.measure,
                    value.version,
                    value.options_hash,
                    json.dumps(value.options, sort_keys=True),
                    value.value,
                    value.seconds,
                    value.error,
                    time.time(),
                    json.dumps(value.details, sort_keys=True) if value.details else None,
                    value.status,
                    value.kind,
                    None if value.default_options is None else int(value.default_options),
                    value.genbench_version,
                    value.plugin,
                    value.plugin_version,
                ),
            )

    def done_values(self) -> set[tuple[str, str, str, str]]:
        """(run_id, measure, version, options_hash) of every value that need not be computed again."""
        rows = self._connection.execute(f"SELECT run_id, measure, version, options_hash FROM measure_values WHERE {DONE}")
        return {tuple(row) for row in rows}

    def has_measure_value(self, run_id: str, measure: str, version: str, options_hash: str) -> bool:
        row = self._connection.execute(
            f"SELECT 1 FROM measure_values WHERE run_id=? AND measure=? AND version=? AND options_hash=? AND {DONE}",
            (run_id, measure, version, options_hash),
        ).fetchone()
        return row is not None

    def measure_values(self) -> pd.DataFrame:
        """One row per (run, measure, version, options), in the order they were stored: ``options``
        and ``details`` as dicts, ``value`` (NaN unless ``status`` is "ok"), ``seconds``, ``error``,
        ``status``, ``kind``, ``default_options`` and the provenance ``genbench_version``, ``plugin`` (the
        distribution that registered the measure) and ``plugin_version`` (None where an older store did
        not record them)."""
        frame = pd.read_sql_query(
            "SELECT run_id, measure, version, options_hash, options_json, value, seconds, error, status, kind, "
            "default_options, details_json, created_at, genbench_version, plugin, plugin_version "
            "FROM measure_values ORDER BY created_at",
            self._connection,
        )
        return measure_value_frame(frame)

    # ------------------------------------------------------------- raw rows
    def raw_rows(self) -> tuple[list[dict], list[dict]]:
        """Every ``runs`` row and every ``measure_values`` row as stored (dicts of ``RUN_ROW_COLUMNS``
        and ``VALUE_ROW_COLUMNS``), read in one transaction, so that they agree with each other."""
        run_columns, value_columns = ", ".join(RUN_ROW_COLUMNS), ", ".join(VALUE_ROW_COLUMNS)
        self._connection.execute("BEGIN")
        try:
            runs = self._connection.execute(f"SELECT {run_columns} FROM runs ORDER BY created_at, run_id").fetchall()
            values = self._connection.execute(
                f"SELECT {value_columns} FROM measure_values ORDER BY created_at, run_id, measure, version, options_hash"
            ).fetchall()
        finally:
            self._connection.rollback()
        return [dict(zip(RUN_ROW_COLUMNS, row)) for row in runs], [dict(zip(VALUE_ROW_COLUMNS, row)) for row in values]

    def add_raw_run(self, row: dict, checkpoints: dict[str, bytes]) -> bool:
        """Add a run from its raw ``runs`` row and the bytes of its checkpoint files, unless the store
        has the run already (then nothing is written). The bytes must have the sha256 the row records
        (when it records them); each file is written under a temporary name and renamed into place
        (as ``save_run_files`` writes them), and the row is committed after both exist. Returns
        whether the run was added."""
        run_id = row["run_id"]
        if set(checkpoints) != set(CHECKPOINTS):
            raise StoreError(f"run {run_id} needs the checkpoints {', '.join(CHECKPOINTS)}, got {', '.join(sorted(checkpoints))}")
        if self.has_run(run_id):
            return False
        recorded = json.loads(row["checksums_json"]) if row["checksums_json"] else {}
        for which in CHECKPOINTS:
            if which in recorded and hashlib.sha256(checkpoints[which]).hexdigest() != recorded[which]:
                raise StoreError(f"run {run_id}: the {which} checkpoint's sha256 differs from the recorded one")
        remove_dead_temporaries(self.checkpoint_path(run_id, CHECKPOINTS[0]).parent)
        for which in CHECKPOINTS:
            self._write_checkpoint_bytes(self.checkpoint_path(run_id, which), checkpoints[which])
        columns, marks = ", ".join(RUN_ROW_COLUMNS), ", ".join("?" * len(RUN_ROW_COLUMNS))
        with self._connection:
            cursor = self._connection.execute(
                f"INSERT INTO runs ({columns}) VALUES ({marks}) ON CONFLICT(run_id) DO NOTHING",
                tuple(row[name] for name in RUN_ROW_COLUMNS),
            )
        return cursor.rowcount == 1

    def add_raw_values(self, rows: Iterable[dict]) -> int:
        """Insert raw ``measure_values`` rows in one transaction, keeping any value the store already
        has under the same (run_id, measure, version, options_hash); returns how many were added."""
        columns, marks = ", ".join(VALUE_ROW_COLUMNS), ", ".join("?" * len(VALUE_ROW_COLUMNS))
        added = 0
        with self._connection:
            for row in rows:
                cursor = self._connection.execute(
                    f"INSERT INTO measure_values ({columns}) VALUES ({marks}) "
                    "ON CONFLICT(run_id, measure, version, options_hash) DO NOTHING",
                    tuple(row[name] for name in VALUE_ROW_COLUMNS),
                )
                added += cursor.rowcount
        return added


VALUE_COLUMNS = [
    "run_id", "measure", "version", "options_hash", "options", "value", "seconds", "error", "status", "kind",
    "default_options", "details", "created_at", *PROVENANCE_COLUMNS,
]


def measure_value_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The store's measure_values rows as the API's frame (see ``Store.measure_values``)."""
    out = frame.drop(columns=["options_json", "details_json"])
    out["options"] = [json.loads(text) for text in frame["options_json"]]
    out["details"] = [json.loads(text) if isinstance(text, str) else {} for text in frame["details_json"]]
    out["value"] = frame["value"].astype(float)
    failed = frame["error"].notna() | frame["value"].isna()
    out["status"] = [s if isinstance(s, str) else ("failed" if f else "ok") for s, f in zip(frame["status"], failed)]
    out["default_options"] = [None if pd.isna(d) else bool(d) for d in frame["default_options"]]
    out["kind"] = [k if isinstance(k, str) else None for k in frame["kind"]]
    out["error"] = [e if isinstance(e, str) else None for e in frame["error"]]
    for column in PROVENANCE_COLUMNS:
        out[column] = [text if isinstance(text, str) else None for text in frame[column]] if column in frame else None
    return out[VALUE_COLUMNS]


def _origin_text(result: RunResult, component: str) -> str | None:
    """The recorded origin of a run's component as "distribution version" (None: not recorded)."""
    origin = result.components.get(component)
    return None if origin is None else str(origin)


def remove_dead_temporaries(folder: Path) -> None:
    """Delete the temporary checkpoint files in ``folder`` (``<which>.<pid>.<hex>.tmp``) whose writer
    is no longer running. A process killed (SIGKILL, power loss) between writing one and renaming it
    into place leaves it behind, and nothing else would remove it: ``save_run_files`` calls this
    before writing a run's files again, so the rerun that trains the run leaves its folder clean. A
    running writer's file is kept (two processes may train one run at once); the store's writers
    share one host, as SQLite's WAL mode requires, so the process id says who wrote it."""
    if os.name != "posix" or not folder.is_dir():  # os.kill(pid, 0) tests a process on POSIX only
        return
    for path in folder.glob("*.tmp"):
        parts = path.name.split(".")
        try:
            pid = int(parts[-3])
        except (IndexError, ValueError):
            continue
        if pid <= 0 or pid == os.getpid():  # not a process id; this process's own write, in flight
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:  # e.g. PermissionError: the process exists, another user's
            pass


def checkpoint_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """A state dict serialized as a safetensors file (its tensors on the CPU, contiguous)."""
    return save({k: v.detach().to("cpu").contiguous() for k, v in state.items()})


def checkpoint_from_bytes(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """The state dict of a safetensors file's bytes; StoreError naming ``name`` when unreadable."""
    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise StoreError(f"checkpoint unreadable: {name}: {exc}") from None
