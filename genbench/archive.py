"""Stores as model zoos: a whole store written to one archive, and an archive merged into a store.

An archive is a tar file (gzip-compressed when its name ends in ``.gz`` or ``.tgz``) of regular
files only::

    manifest.json                            format, versions of genbench and the plugins, every other file's sha256
    runs.parquet                             the store's runs rows
    measure_values.parquet                   the store's measure_values rows
    checkpoints/<run_id>/init.safetensors    each run's checkpoints, as the store holds them
    checkpoints/<run_id>/final.safetensors

The tables hold the store's columns as they are stored, so that importing reproduces its rows
exactly: each run's result (with the genbench version and the origin of its dataset, model and
corruption) and each value's provenance (the genbench that computed it, the distribution and version
that registered its measure). Format version 2 added those value columns; an archive of version 1
imports with them empty (not recorded). Importing reads members by name and extracts nothing: the whole archive is checked first
(member names and types, the manifest, every sha256, both tables, every checkpoint readable as
safetensors) and the target store is opened only after that, so a damaged archive leaves it
untouched. Then each run the target lacks is added with ``Store.add_raw_run`` (its checkpoints
written under a temporary name and renamed, then its row) and each value the target lacks with
``Store.add_raw_values``. Nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import tarfile
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.torch import load as load_safetensors

from genbench.errors import StoreError
from genbench.plugins import Plugins, get_plugins
from genbench.schemas import RunResult, RunSpec
from genbench.store import CHECKPOINTS, PROVENANCE_COLUMNS, RUN_ROW_COLUMNS, SCHEMA_VERSION, VALUE_ROW_COLUMNS, Store
from genbench.version import __version__

FORMAT = "genbench-store-archive"
FORMAT_VERSION = 2
#: The format versions an import reads: version 1's measure_values table lacks the provenance columns.
READABLE_FORMAT_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
RUNS_TABLE = "runs.parquet"
VALUES_TABLE = "measure_values.parquet"
TABLES = (RUNS_TABLE, VALUES_TABLE)
#: The largest manifest an import reads.
MANIFEST_LIMIT = 64 * 2**20
RUN_ID = re.compile(r"[0-9a-f]{8,64}")
SHA256 = re.compile(r"[0-9a-f]{64}")
CHECKPOINT_FILE = re.compile(r"checkpoints/([0-9a-f]{8,64})/(init|final)\.safetensors")
#: The errors reading a damaged tar or gzip stream raises.
READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)

RUN_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("spec_json", pa.string(), nullable=False),
        pa.field("result_json", pa.string(), nullable=False),
        pa.field("checksums_json", pa.string()),
        pa.field("created_at", pa.float64(), nullable=False),
    ]
)
VALUE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("measure", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
        pa.field("options_hash", pa.string(), nullable=False),
        pa.field("options_json", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("created_at", pa.float64(), nullable=False),
        pa.field("details_json", pa.string()),
        pa.field("status", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("default_options", pa.int64()),
        pa.field("genbench_version", pa.string()),
        pa.field("plugin", pa.string()),
        pa.field("plugin_version", pa.string()),
    ]
)
#: The measure_values table of a format version 1 archive: without the provenance columns.
VALUE_SCHEMA_V1 = pa.schema([field for field in VALUE_SCHEMA if field.name not in PROVENANCE_COLUMNS])
assert tuple(RUN_SCHEMA.names) == RUN_ROW_COLUMNS and tuple(VALUE_SCHEMA.names) == VALUE_ROW_COLUMNS


@dataclass(frozen=True)
class ExportSummary:
    """What ``export_archive`` wrote."""

    path: Path
    runs: int
    values: int
    checkpoints: int


@dataclass(frozen=True)
class ImportSummary:
    """What ``import_archive`` merged: runs and values added, and those the store already had."""

    root: Path
    runs_added: int
    runs_present: int
    values_added: int
    values_present: int


@dataclass
class _Verified:
    """An archive that passed every check: its members by name, the manifest's sha256 of each
    file, and the tables' rows."""

    members: dict[str, tarfile.TarInfo]
    digests: dict[str, str]
    runs: list[dict[str, Any]]
    values: list[dict[str, Any]]


def checkpoint_name(run_id: str, which: str) -> str:
    """The archive member that holds checkpoint ``which`` of ``run_id``."""
    return f"checkpoints/{run_id}/{which}.safetensors"


def _first_line(exc: BaseException) -> str:
    """An exception's message as one line (its first non-empty one, else its type's name)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ------------------------------------------------------------------ export
def export_archive(store: Store, archive: str | Path) -> ExportSummary:
    """Write every run of ``store`` (its row and both checkpoints) and every value of those runs
    to the tar file ``archive``, gzip-compressed when its name ends in .gz or .tgz, with a manifest
    of every file's sha256 and of the versions of genbench and of the plugins. A run whose
    checkpoint is missing or differs from its recorded sha256 is refused (StoreError; ``genbench
    store check`` lists such runs). The archive is written under a temporary name and renamed into
    place, so a failed export leaves no archive."""
    path = Path(archive)
    runs, values = store.raw_rows()
    for row in runs:
        if not RUN_ID.fullmatch(row["run_id"]):
            raise StoreError(f"store {store.root} holds a run with the malformed id '{row['run_id']}'")
    exported = {row["run_id"] for row in runs}
    values = [row for row in values if row["run_id"] in exported]
    tables = {RUNS_TABLE: _parquet_bytes(runs, RUN_SCHEMA), VALUES_TABLE: _parquet_bytes(values, VALUE_SCHEMA)}
    mode = "w:gz" if path.name.endswith((".gz", ".tgz")) else "w"
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    stamp = int(time.time())
    digests: dict[str, str] = {}
    try:
        # the archive's own name, not the temporary one, goes into the gzip header
        with open(temporary, "wb") as handle:
            with tarfile.open(name=str(path), mode=mode, fileobj=handle) as tar:
                for name, data in tables.items():
                    digests[name] = _add_member(tar, name, data, stamp)
                for row in runs:
                    recorded = json.loads(row["checksums_json"]) if row["checksums_json"] else {}
                    for which in CHECKPOINTS:
                        name = checkpoint_name(row["run_id"], which)
                        data = _stored_checkpoint(store, row["run_id"], which, recorded.get(which))
                        digests[name] = _add_member(tar, name, data, stamp)
                manifest = _manifest(runs, values, digests)
                _add_member(tar, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode(), stamp)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise StoreError(f"cannot write archive {path}: {_first_line(exc)}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return ExportSummary(path=path, runs=len(runs), values=len(values), checkpoints=len(runs) * len(CHECKPOINTS))


def _parquet_bytes(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    """``rows`` as one Parquet file of the columns of ``schema``."""
    try:
        table = pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise StoreError(f"a store row does not fit the archive's table: {_first_line(exc)}") from None
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _stored_checkpoint(store: Store, run_id: str, which: str, recorded: str | None) -> bytes:
    """The bytes of a stored checkpoint, refused when missing or not of the recorded sha256."""
    path = store.checkpoint_path(run_id, which)
    advice = "`genbench store check` lists such runs and `--repair` removes them"
    try:
        data = path.read_bytes()
    except OSError:
        raise StoreError(f"run {run_id}: the {which} checkpoint {path} is missing or unreadable; {advice}") from None
    if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
        raise StoreError(f"run {run_id}: the {which} checkpoint's sha256 differs from the recorded one; {advice}")
    return data


def _add_member(tar: tarfile.TarFile, name: str, data: bytes, stamp: int) -> str:
    """Add ``data`` to ``tar`` as the regular file ``name``; return its sha256."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), stamp, 0o644
    tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(data).hexdigest()


def _manifest(runs: list[dict[str, Any]], values: list[dict[str, Any]], digests: dict[str, str]) -> dict[str, Any]:
    """The archive's manifest: its format, the versions of genbench (exporting, and having trained
    the runs, and having computed the values) and of every plugin (as ``genbench plugins --json``
    lists them), the plugin each component the store uses comes from (in this installation), and
    every file's sha256."""
    plugins = get_plugins()
    specs = [RunSpec.model_validate_json(row["spec_json"]) for row in runs]
    trained_with = {json.loads(row["result_json"]).get("genbench_version") for row in runs}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "store_schema_version": SCHEMA_VERSION,
        "genbench_version": __version__,
        "created_at": time.time(),
        "runs": len(runs),
        "measure_values": len(values),
        "runs_trained_with_genbench": sorted(str(version) for version in trained_with if version is not None),
        "values_computed_with_genbench": sorted({str(row["genbench_version"]) for row in values if row["genbench_version"] is not None}),
        "plugins": [dataclasses.asdict(record) for record in plugins.records],
        "components": _components(
            plugins,
            {
                "datasets": {spec.dataset.name for spec in specs},
                "models": {spec.model.name for spec in specs},
                "corruptions": {spec.corruption.name for spec in specs},
                "measures": {row["measure"] for row in values},
            },
        ),
        "recorded_components": _recorded_components(runs, values),
        "files": dict(sorted(digests.items())),
    }


def _recorded_components(runs: list[dict[str, Any]], values: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """For each kind, each name the store uses and the origins ("distribution version") its rows
    recorded when they were written: the runs' dataset, model and corruption, the values' measure
    (an empty list where no row recorded one, as in older stores)."""
    out: dict[str, dict[str, set[str]]] = {"datasets": {}, "models": {}, "corruptions": {}, "measures": {}}
    for row in runs:
        spec, result = RunSpec.model_validate_json(row["spec_json"]), RunResult.model_validate_json(row["result_json"])
        for component, name in (("dataset", spec.dataset.name), ("model", spec.model.name), ("corruption", spec.corruption.name)):
            origins = out[f"{component}s"].setdefault(name, set())
            if component in result.components:
                origins.add(str(result.components[component]))
    for row in values:
        origins = out["measures"].setdefault(row["measure"], set())
        if row["plugin"] is not None:
            origins.add(f"{row['plugin']} {row['plugin_version']}")
    return {kind: {name: sorted(origins) for name, origins in sorted(names.items())} for kind, names in out.items()}


def _components(plugins: Plugins, used: dict[str, set[str]]) -> dict[str, dict[str, dict[str, str] | None]]:
    """For each kind, each name the store uses and the installed plugin that registers it (its
    name, distribution and version; None when no installed plugin does)."""
    out: dict[str, dict[str, dict[str, str] | None]] = {}
    for kind, names in used.items():
        registry = plugins.registry(kind)
        installed = set(registry.names())
        out[kind] = {
            name: dataclasses.asdict(registry.origin(name)) if name in installed else None for name in sorted(names)
        }
    return out


# ------------------------------------------------------------------ import
def import_archive(archive: str | Path, into: Store | str | Path | None = None) -> ImportSummary:
    """Merge the archive ``archive`` into the store ``into`` (a Store, or a folder: default
    ``$GENBENCH_STORE`` or ``./genbench-results``, created when missing). The whole archive is
    checked before the store is opened; a damaged one (a missing, extra or altered file, a bad
    manifest or table, an unsafe member path, not a tar file) is refused with one StoreError and
    the store is left as it was. A run the store has already is not written again, and a value
    the store has under the same (run_id, measure, version, options_hash) is kept."""
    path = Path(archive)
    if not path.is_file():
        raise StoreError(f"no archive at {path}")
    try:
        tar = tarfile.open(path, "r:*")
    except READ_ERRORS:
        raise StoreError(f"{path} is not a genbench store archive: not a readable tar file") from None
    with tar:
        verified = _verify(tar, path)
        if isinstance(into, Store):
            return _merge(tar, path, verified, into)
        target = Store(into)
        try:
            return _merge(tar, path, verified, target)
        finally:
            target.close()


def _refuse(path: Path, what: str) -> StoreError:
    """The one-line error that refuses the archive at ``path`` for ``what``."""
    return StoreError(f"archive {path} refused, nothing imported: {what}")


def _unsafe(name: str) -> bool:
    """Whether a member name could point outside a folder it were extracted into."""
    return (
        name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or re.match(r"[A-Za-z]:", name) is not None
        or ".." in name.split("/")
    )


def _expected_name(name: str) -> bool:
    """Whether ``name`` is a file an archive may hold: the manifest, a table or a checkpoint."""
    return name == MANIFEST or name in TABLES or CHECKPOINT_FILE.fullmatch(name) is not None


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> bytes:
    """The whole content of the member ``info``, refused when unreadable or shorter than its header says."""
    try:
        handle = tar.extractfile(info)
        data = handle.read() if handle is not None else None
    except READ_ERRORS as exc:
        raise _refuse(path, f"{info.name} is unreadable ({_first_line(exc)})") from None
    if data is None or len(data) != info.size:
        raise _refuse(path, f"{info.name} is truncated")
    return data


def _check_digest(data: bytes, expected: str, name: str, path: Path) -> None:
    """Refuse the archive unless ``data`` has the sha256 ``expected``."""
    if hashlib.sha256(data).hexdigest() != expected:
        raise _refuse(path, f"{name}'s sha256 differs from the manifest's")


def _verify(tar: tarfile.TarFile, path: Path) -> _Verified:
    """Every check of an archive, reading it without writing anything; the first failure is a StoreError."""
    members = _members(tar, path)
    if MANIFEST not in members:
        raise _refuse(path, f"no {MANIFEST}")
    if members[MANIFEST].size > MANIFEST_LIMIT:
        raise _refuse(path, f"bad manifest: {MANIFEST} is larger than {MANIFEST_LIMIT} bytes")
    manifest = _manifest_of(_read(tar, members[MANIFEST], path), path)
    digests: dict[str, str] = manifest["files"]
    missing = sorted(set(digests) - set(members))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise _refuse(path, f"{missing[0]}{more} is listed in the manifest but missing")
    extra = sorted(set(members) - set(digests) - {MANIFEST})
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise _refuse(path, f"{extra[0]}{more} is not listed in the manifest")
    tables = {}
    for name in TABLES:
        tables[name] = _read(tar, members[name], path)
        _check_digest(tables[name], digests[name], name, path)
    runs = _rows(tables[RUNS_TABLE], RUNS_TABLE, RUN_SCHEMA, path)
    if manifest["format_version"] == 1:  # before values recorded their provenance: not recorded
        values = [{**row, **dict.fromkeys(PROVENANCE_COLUMNS)} for row in _rows(tables[VALUES_TABLE], VALUES_TABLE, VALUE_SCHEMA_V1, path)]
    else:
        values = _rows(tables[VALUES_TABLE], VALUES_TABLE, VALUE_SCHEMA, path)
    if (len(runs), len(values)) != (manifest["runs"], manifest["measure_values"]):
        raise _refuse(path, "the tables' row counts differ from the manifest's")
    _check_runs(runs, digests, path)
    _check_values(values, {row["run_id"] for row in runs}, path)
    _check_checkpoints(tar, members, digests, runs, path)
    return _Verified(members=members, digests=digests, runs=runs, values=values)


def _members(tar: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    """The archive's members by name: only regular files of safe, expected names, each once."""
    try:
        infos = tar.getmembers()
    except READ_ERRORS as exc:
        raise _refuse(path, f"not a readable tar file ({_first_line(exc)})") from None
    members: dict[str, tarfile.TarInfo] = {}
    for info in infos:
        if _unsafe(info.name):
            raise _refuse(path, f"unsafe member path {info.name!r}")
        if not info.isfile():
            raise _refuse(path, f"member {info.name!r} is not a regular file")
        if info.name in members:
            raise _refuse(path, f"member {info.name!r} appears twice")
        if not _expected_name(info.name):
            raise _refuse(path, f"unexpected file {info.name!r}")
        members[info.name] = info
    return members


def _manifest_of(data: bytes, path: Path) -> dict[str, Any]:
    """The manifest, checked: its format and version, the counts, and a sha256 for each file."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise _refuse(path, f"bad manifest: not JSON ({_first_line(exc)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refuse(path, f"bad manifest: not a {FORMAT} manifest")
    if manifest.get("format_version") not in READABLE_FORMAT_VERSIONS or isinstance(manifest.get("format_version"), bool):
        readable = " and ".join(str(version) for version in READABLE_FORMAT_VERSIONS)
        raise _refuse(path, f"bad manifest: format version {manifest.get('format_version')!r}; this genbench reads {readable}")
    if manifest.get("store_schema_version") != SCHEMA_VERSION:
        raise _refuse(path, f"bad manifest: store schema version {manifest.get('store_schema_version')!r}; this genbench reads {SCHEMA_VERSION}")
    for key, kind in (("genbench_version", str), ("plugins", list), ("runs", int), ("measure_values", int), ("files", dict)):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise _refuse(path, f"bad manifest: '{key}' is missing or not a {kind.__name__}")
    for name, digest in manifest["files"].items():
        if not (name in TABLES or CHECKPOINT_FILE.fullmatch(name)):
            raise _refuse(path, f"bad manifest: it lists the unexpected file {name!r}")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise _refuse(path, f"bad manifest: {name}'s sha256 is malformed")
    absent = [name for name in TABLES if name not in manifest["files"]]
    if absent:
        raise _refuse(path, f"bad manifest: it does not list {absent[0]}")
    return manifest


def _rows(data: bytes, name: str, schema: pa.Schema, path: Path) -> list[dict[str, Any]]:
    """A table's rows, refused unless it has exactly the columns of ``schema`` and no empty
    required cell."""
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _refuse(path, f"{name} is not a Parquet table ({_first_line(exc)})") from None
    if [(field.name, field.type) for field in table.schema] != [(field.name, field.type) for field in schema]:
        raise _refuse(path, f"{name} does not have the columns {', '.join(schema.names)}")
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise _refuse(path, f"{name} has empty cells in column {field.name}")
    return table.to_pylist()


def _check_runs(runs: list[dict[str, Any]], digests: dict[str, str], path: Path) -> None:
    """Each run row: a well-formed unique id that its spec hashes to and its result names, a
    finite time, and recorded checkpoint sha256 (where recorded) equal to the manifest's."""
    seen: set[str] = set()
    for row in runs:
        run_id = row["run_id"]
        if not RUN_ID.fullmatch(run_id) or run_id in seen:
            raise _refuse(path, f"{RUNS_TABLE} has a malformed or repeated run id {run_id!r}")
        seen.add(run_id)
        try:
            spec, result = RunSpec.model_validate_json(row["spec_json"]), RunResult.model_validate_json(row["result_json"])
        except ValueError as exc:
            raise _refuse(path, f"run {run_id}'s spec or result is not readable ({_first_line(exc)})") from None
        if spec.run_id != run_id or result.run_id != run_id:
            raise _refuse(path, f"run {run_id}'s spec or result belongs to another run")
        if not math.isfinite(row["created_at"]):
            raise _refuse(path, f"run {run_id} has a non-finite created_at")
        if row["checksums_json"] is None:
            continue
        try:
            recorded = json.loads(row["checksums_json"])
        except ValueError:
            recorded = None
        if not isinstance(recorded, dict) or set(recorded) - set(CHECKPOINTS):
            raise _refuse(path, f"run {run_id}'s recorded checksums are malformed")
        for which, digest in recorded.items():
            if digests.get(checkpoint_name(run_id, which)) != digest:
                raise _refuse(path, f"run {run_id}'s recorded {which} sha256 differs from the manifest's")


def _check_values(values: list[dict[str, Any]], run_ids: set[str], path: Path) -> None:
    """Each value row: of a run in the archive, a unique key, JSON options and details, and a
    known status, kind and default_options."""
    seen: set[tuple[str, str, str, str]] = set()
    for row in values:
        key = (row["run_id"], row["measure"], row["version"], row["options_hash"])
        label = f"{row['measure']} on run {row['run_id']}"
        if row["run_id"] not in run_ids:
            raise _refuse(path, f"{VALUES_TABLE} has a value of {label}, a run the archive lacks")
        if key in seen:
            raise _refuse(path, f"{VALUES_TABLE} has the value of {label} twice")
        seen.add(key)
        try:
            options = json.loads(row["options_json"])
            details = json.loads(row["details_json"]) if row["details_json"] is not None else {}
        except ValueError:
            options = details = None
        if not isinstance(options, dict) or not isinstance(details, dict):
            raise _refuse(path, f"the value of {label} has malformed options or details")
        if (
            row["status"] not in (None, "ok", "failed", "skipped")
            or row["kind"] not in (None, "complexity", "capability")
            or row["default_options"] not in (None, 0, 1)
        ):
            raise _refuse(path, f"the value of {label} has an unknown status, kind or default_options")


def _check_checkpoints(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], digests: dict[str, str], runs: list[dict[str, Any]], path: Path
) -> None:
    """Every run has both checkpoints and every checkpoint a run; each has the manifest's sha256,
    reads as safetensors, and a run's initial and final states hold the same tensors."""
    expected = {checkpoint_name(row["run_id"], which) for row in runs for which in CHECKPOINTS}
    listed = set(digests) - set(TABLES)
    if listed != expected:
        stray, lacking = sorted(listed - expected), sorted(expected - listed)
        what = f"{stray[0]} belongs to no run of {RUNS_TABLE}" if stray else f"{lacking[0]} of a run of {RUNS_TABLE} is missing"
        raise _refuse(path, what)
    shapes: dict[str, dict[str, dict[str, tuple[int, ...]]]] = {}
    for info in sorted((members[name] for name in expected), key=lambda info: info.offset_data):
        data = _read(tar, info, path)
        _check_digest(data, digests[info.name], info.name, path)
        try:
            state = load_safetensors(data)
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes: any failure to parse them is a damaged file
            raise _refuse(path, f"{info.name} is not a readable safetensors file ({_first_line(exc)})") from None
        run_id, which = CHECKPOINT_FILE.fullmatch(info.name).groups()
        shapes.setdefault(run_id, {})[which] = {key: tuple(tensor.shape) for key, tensor in state.items()}
    for run_id, states in shapes.items():
        if states["init"] != states["final"]:
            raise _refuse(path, f"run {run_id}'s initial and final checkpoints hold different tensors")


def _merge(tar: tarfile.TarFile, path: Path, verified: _Verified, target: Store) -> ImportSummary:
    """Add the verified archive's runs and values that ``target`` lacks, run by run in the order
    their checkpoints lie in the archive: a run's checkpoints and row first, then its values."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in verified.values:
        by_run.setdefault(row["run_id"], []).append(row)
    runs = sorted(verified.runs, key=lambda row: verified.members[checkpoint_name(row["run_id"], CHECKPOINTS[0])].offset_data)
    runs_added = values_added = 0
    for row in runs:
        run_id = row["run_id"]
        if not target.has_run(run_id):
            checkpoints = {}
            for which in CHECKPOINTS:
                name = checkpoint_name(run_id, which)
                try:  # read again, and checked again: the file may have changed since it was verified
                    checkpoints[which] = _read(tar, verified.members[name], path)
                    _check_digest(checkpoints[which], verified.digests[name], name, path)
                except StoreError:
                    raise StoreError(
                        f"archive {path} changed while it was imported ({name} differs from the verified one); "
                        f"{runs_added} runs were imported whole before it"
                    ) from None
            runs_added += target.add_raw_run(row, checkpoints)
        values_added += target.add_raw_values(by_run.get(run_id, []))
    return ImportSummary(
        root=target.root,
        runs_added=runs_added,
        runs_present=len(runs) - runs_added,
        values_added=values_added,
        values_present=len(verified.values) - values_added,
    )
