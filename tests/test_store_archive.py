"""Stores as model zoos: `genbench store export` writes one archive of a store, `genbench store
import` merges one into a store without duplicates, and a damaged archive is refused with one line
and exit code 5, the target store left byte for byte as it was."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from measure_helpers import TINY_GRID
from typer.testing import CliRunner

import genbench
from genbench.api import Engine, load_spec, resolve_runs
from genbench.cli.main import app
from genbench.errors import ExitCode
from genbench.store import CHECKPOINTS

SPEC = TINY_GRID


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, one_thread):
    """A store of three trained runs with their `params` values, and its gzip archive."""
    root = tmp_path_factory.mktemp("zoo")
    source = root / "source"
    genbench.run(SPEC, store=source)
    archive = root / "zoo.tar.gz"
    exported = CliRunner().invoke(app, ["store", "export", str(archive), "--store", str(source)])
    assert exported.exit_code == 0, exported.output
    assert f"wrote {archive}: 3 runs, 3 measure values, 6 checkpoints" in exported.stdout
    return source, archive


def import_into(archive: Path, target: Path):
    return CliRunner().invoke(app, ["store", "import", str(archive), "--into", str(target)])


def folder_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (and every subfolder) with its sha256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        for path in sorted(folder.rglob("*"))
    }


def archive_files(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


def write_archive(path: Path, files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def with_manifest(files: dict[str, bytes], change) -> dict[str, bytes]:
    manifest = json.loads(files["manifest.json"])
    change(manifest)
    return {**files, "manifest.json": json.dumps(manifest).encode()}


def test_an_imported_zoo_is_the_store_bit_for_bit_and_takes_a_new_measure_without_training(zoo, tmp_path):
    source, archive = zoo
    target = tmp_path / "other-store"
    imported = import_into(archive, target)
    assert imported.exit_code == 0, imported.output
    assert "imported 3 runs and 3 measure values" in imported.stdout
    original, copy = genbench.open_store(source, create=False), genbench.open_store(target, create=False)
    assert copy.raw_rows() == original.raw_rows()  # every run row and every value row, column for column
    pd.testing.assert_frame_equal(copy.runs(), original.runs())
    pd.testing.assert_frame_equal(copy.measure_values(), original.measure_values())
    for run_id in original.run_ids():
        for which in CHECKPOINTS:
            before, after = original.checkpoint_path(run_id, which), copy.checkpoint_path(run_id, which)
            assert hashlib.sha256(after.read_bytes()).hexdigest() == hashlib.sha256(before.read_bytes()).hexdigest()
            assert hashlib.sha256(after.read_bytes()).hexdigest() == copy.checksums(run_id)[which]
            old, new = original.load_checkpoint(run_id, which), copy.load_checkpoint(run_id, which)
            assert old.keys() == new.keys() and all(torch.equal(old[name], new[name]) for name in old)
    assert copy.check().clean

    summary = Engine(copy).train(resolve_runs(load_spec(SPEC)))  # the zoo's runs count as trained
    assert summary.trained == [] and summary.already_done == 3
    assert "dist-from-init" not in set(original.measure_values()["measure"])
    values = genbench.evaluate(["dist-from-init"], store=copy)  # a measure the original never computed
    assert len(values) == 3 and (values["status"] == "ok").all() and values["value"].notna().all()
    assert sorted(copy.run_ids()) == sorted(original.run_ids())  # nothing trained, nothing added
    assert len(copy.measure_values()) == 6


def test_importing_twice_or_from_a_plain_tar_adds_nothing_the_second_time(zoo, tmp_path):
    source, archive = zoo
    target = tmp_path / "store"
    assert import_into(archive, target).exit_code == 0
    rows = genbench.open_store(target, create=False).raw_rows()
    again = import_into(archive, target)
    assert again.exit_code == 0, again.output
    assert "imported 0 runs and 0 measure values" in again.stdout and "(3 runs and 3 values were there already)" in again.stdout
    plain = tmp_path / "zoo.tar"
    assert CliRunner().invoke(app, ["store", "export", str(plain), "--store", str(source)]).exit_code == 0
    with tarfile.open(plain, "r:") as tar:  # uncompressed
        assert "manifest.json" in tar.getnames()
    assert import_into(plain, target).exit_code == 0
    after = genbench.open_store(target, create=False)
    assert after.raw_rows() == rows
    assert len(after.run_ids()) == 3 and len(after.measure_values()) == 3


def test_importing_into_a_store_that_has_some_of_the_runs_merges_and_keeps_its_own_rows(zoo, tmp_path):
    source, archive = zoo
    target = tmp_path / "store"
    genbench.run({**SPEC, "levels": [0.0], "measures": ["params", "param-norm"]}, store=target)
    store = genbench.open_store(target, create=False)
    (shared,) = store.run_ids()
    own_runs, own_values = store.raw_rows()
    imported = import_into(archive, target)
    assert imported.exit_code == 0, imported.output
    assert "imported 2 runs and 2 measure values" in imported.stdout
    assert "(1 runs and 1 values were there already)" in imported.stdout
    runs, values = store.raw_rows()
    assert sorted(store.run_ids()) == sorted(genbench.open_store(source, create=False).run_ids())
    assert [row for row in runs if row["run_id"] == shared] == own_runs  # the store's own run is kept
    assert all(row in values for row in own_values)  # and its own values, params included
    assert len(values) == 4 and not pd.DataFrame(values).duplicated(["run_id", "measure", "version", "options_hash"]).any()
    source_runs, source_values = genbench.open_store(source, create=False).raw_rows()
    assert all(row in runs for row in source_runs if row["run_id"] != shared)
    assert all(row in values for row in source_values if row["run_id"] != shared)
    assert store.check().clean


def test_an_import_killed_between_files_leaves_whole_runs_and_the_next_import_finishes(zoo, tmp_path, monkeypatch):
    _, archive = zoo
    target = tmp_path / "store"
    calls, real_fsync = [], os.fsync

    def fsync(descriptor):
        calls.append(descriptor)
        if len(calls) == 3:  # the second run's first checkpoint: a kill before it is renamed into place
            raise KeyboardInterrupt
        return real_fsync(descriptor)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        with pytest.raises(KeyboardInterrupt):
            genbench.api.import_store(archive, into=target)
    store = genbench.open_store(target, create=False)
    assert len(store.run_ids()) == 1
    found = store.check()
    assert not found.damaged  # no half run: the one stored is whole
    assert len(found.half_written) == 1  # the file being written when it was killed, never renamed
    assert import_into(archive, target).exit_code == 0
    found = store.check()
    assert len(store.run_ids()) == 3 and not found.damaged and not found.orphans


def damaged_archives(archive: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of damaged archive, with a part of the line that refuses it."""
    files = archive_files(archive)
    run_id = min(name.split("/")[1] for name in files if name.startswith("checkpoints/"))
    final = f"checkpoints/{run_id}/final.safetensors"
    flipped = bytearray(files[final])
    flipped[-1] ^= 0xFF
    link = tarfile.TarInfo("checkpoints/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    escaping = tarfile.TarInfo("../x")
    escaping.size = 1
    absolute = tarfile.TarInfo("/tmp/x")
    absolute.size = 1
    bare_runs = b"PAR1 not really"
    kinds = {
        "missing file": ({name: data for name, data in files.items() if name != final}, [], "is listed in the manifest but missing"),
        "extra file": ({**files, "notes.txt": b"hello"}, [], "unexpected file 'notes.txt'"),
        "extra checkpoint": ({**files, "checkpoints/0123456789abcdef/init.safetensors": b"x"}, [], "not listed in the manifest"),
        "sha256 mismatch": ({**files, final: bytes(flipped)}, [], "sha256 differs from the manifest's"),
        "no manifest": ({name: data for name, data in files.items() if name != "manifest.json"}, [], "no manifest.json"),
        "manifest not json": ({**files, "manifest.json": b"{not json"}, [], "bad manifest: not JSON"),
        "manifest of another format": (with_manifest(files, lambda m: m.update(format="zip")), [], "bad manifest"),
        "manifest with a bad sha256": (with_manifest(files, lambda m: m["files"].update({final: "abc"})), [], "bad manifest"),
        "table not parquet": (
            with_manifest({**files, "runs.parquet": bare_runs},
                          lambda m: m["files"].update({"runs.parquet": hashlib.sha256(bare_runs).hexdigest()})),
            [], "runs.parquet is not a Parquet table",
        ),
        "parent path": (files, [escaping], "unsafe member path '../x'"),
        "absolute path": (files, [absolute], "unsafe member path '/tmp/x'"),
        "symbolic link": (files, [link], "is not a regular file"),
    }
    made = {}
    for kind, (content, extra, message) in kinds.items():
        made[kind] = (write_archive(folder / f"{kind.replace(' ', '-')}.tar.gz", content, extra), message)
    (folder / "random.tar.gz").write_bytes(os.urandom(2048))
    made["not an archive"] = (folder / "random.tar.gz", "not a readable tar file")
    (folder / "empty.tar").write_bytes(b"")
    made["empty file"] = (folder / "empty.tar", "not a readable tar file")
    (folder / "cut.tar.gz").write_bytes(archive.read_bytes()[: len(archive.read_bytes()) // 2])
    made["truncated"] = (folder / "cut.tar.gz", "")
    made["no such file"] = (folder / "absent.tar.gz", "no archive at")
    return made


def test_every_kind_of_damaged_archive_is_refused_with_one_line_and_the_store_untouched(zoo, tmp_path):
    _, archive = zoo
    existing = tmp_path / "existing"
    genbench.api.import_store(archive, into=existing)
    with genbench.open_store(existing, create=False) as store:  # closed: nothing of the test holds the store open
        store.remove_runs(store.run_ids()[:1])
    before = folder_digest(existing)
    assert "genbench.sqlite" in before and len(before) > 3
    damaged = damaged_archives(archive, tmp_path)
    for kind, (path, message) in damaged.items():
        for target in (existing, tmp_path / "not-yet"):
            result = import_into(path, target)
            assert result.exit_code == ExitCode.STORE_ERROR, (kind, result.output)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (kind, result.stderr)
            assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), kind
        assert folder_digest(existing) == before, kind
        assert not (tmp_path / "not-yet").exists(), kind


def test_a_refused_archive_is_one_line_from_the_real_command_too(zoo, tmp_path):
    _, archive = zoo
    escaping = tarfile.TarInfo("../x")
    escaping.size = 1
    path = write_archive(tmp_path / "bad.tar.gz", archive_files(archive), [escaping])
    command = [sys.executable, "-c", "from genbench.cli.main import main; main()", "store", "import", str(path),
               "--into", str(tmp_path / "target")]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "GENBENCH_LOAD_PLUGINS": ""}, timeout=120, check=False)
    assert done.returncode == ExitCode.STORE_ERROR
    assert len(done.stderr.strip().splitlines()) == 1 and "unsafe member path" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "target").exists()


def test_export_refuses_a_store_with_a_damaged_run_and_writes_no_archive(zoo, tmp_path):
    _, archive = zoo
    store = tmp_path / "store"
    genbench.api.import_store(archive, into=store)
    target = genbench.open_store(store, create=False)
    target.checkpoint_path(target.run_ids()[0], "final").unlink()
    out = tmp_path / "zoo.tar.gz"
    result = CliRunner().invoke(app, ["store", "export", str(out), "--store", str(store)])
    assert result.exit_code == ExitCode.STORE_ERROR
    assert len(result.stderr.strip().splitlines()) == 1 and "genbench store check" in result.stderr
    assert not out.exists() and not list(tmp_path.glob("zoo.tar.gz*"))
    missing = CliRunner().invoke(app, ["store", "export", str(out), "--store", str(tmp_path / "none")])
    assert missing.exit_code == ExitCode.STORE_ERROR and "no genbench store" in missing.stderr
    assert not (tmp_path / "none").exists()


def test_the_manifest_records_every_file_and_the_versions_of_genbench_and_the_plugins(zoo):
    source, archive = zoo
    files = archive_files(archive)
    manifest = json.loads(files.pop("manifest.json"))
    assert manifest["format"] == "genbench-store-archive" and manifest["format_version"] == 2
    assert manifest["genbench_version"] == genbench.__version__
    assert manifest["runs_trained_with_genbench"] == [genbench.__version__]
    assert manifest["values_computed_with_genbench"] == [genbench.__version__]
    recorded = [f"genbench {genbench.__version__}"]  # what the rows recorded when they were written
    assert manifest["recorded_components"] == {
        "datasets": {"digits": recorded}, "models": {"mlp": recorded}, "corruptions": {"labels": recorded},
        "measures": {"params": recorded},
    }
    assert manifest["files"] == {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    listed = CliRunner().invoke(app, ["plugins", "--json"])
    assert listed.exit_code == 0
    installed = [(p["name"], p["distribution"], p["version"], p["status"]) for p in json.loads(listed.stdout)]
    assert [(p["name"], p["distribution"], p["version"], p["status"]) for p in manifest["plugins"]] == installed
    assert manifest["plugins"][0]["name"] == "genbench" and manifest["plugins"][0]["version"] == genbench.__version__
    origin = {"plugin": "genbench", "distribution": "genbench", "version": genbench.__version__}
    assert manifest["components"] == {
        "datasets": {"digits": origin}, "models": {"mlp": origin}, "corruptions": {"labels": origin},
        "measures": {"params": origin},
    }
    store = genbench.open_store(source, create=False)
    for run_id in store.run_ids():
        for which, digest in store.checksums(run_id).items():
            assert manifest["files"][f"checkpoints/{run_id}/{which}.safetensors"] == digest


def test_an_archive_of_format_version_1_imports_with_the_provenance_of_its_values_empty(zoo, tmp_path):
    """An archive written before values recorded their provenance: its measure_values table lacks
    the columns genbench_version, plugin and plugin_version; they import empty (not recorded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genbench.store import PROVENANCE_COLUMNS

    _, archive = zoo
    files = archive_files(archive)
    table = pq.read_table(pa.BufferReader(files["measure_values.parquet"])).drop_columns(list(PROVENANCE_COLUMNS))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    older = sink.getvalue().to_pybytes()

    def downgrade(manifest):
        manifest["format_version"] = 1
        manifest["files"]["measure_values.parquet"] = hashlib.sha256(older).hexdigest()

    path = write_archive(tmp_path / "v1.tar.gz", with_manifest({**files, "measure_values.parquet": older}, downgrade))
    imported = import_into(path, tmp_path / "store")
    assert imported.exit_code == 0, imported.output
    values = genbench.open_store(tmp_path / "store", create=False).measure_values()
    assert len(values) == 3 and (values["status"] == "ok").all()
    assert all(values[column].isna().all() for column in PROVENANCE_COLUMNS)

    # a version 2 archive must have the columns; an unknown version is refused
    mixed = write_archive(tmp_path / "mixed.tar.gz", with_manifest({**files, "measure_values.parquet": older},
                          lambda m: m["files"].update({"measure_values.parquet": hashlib.sha256(older).hexdigest()})))
    refused = import_into(mixed, tmp_path / "other")
    assert refused.exit_code == ExitCode.STORE_ERROR and "does not have the columns" in refused.stderr
    future = write_archive(tmp_path / "v3.tar.gz", with_manifest(files, lambda m: m.update(format_version=3)))
    refused = import_into(future, tmp_path / "other")
    assert refused.exit_code == ExitCode.STORE_ERROR and "format version 3; this genbench reads 1 and 2" in refused.stderr
