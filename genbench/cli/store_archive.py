"""``genbench store export ARCHIVE`` and ``genbench store import ARCHIVE [--into STORE]``: a store
as one archive (a model zoo), and an archive merged into a store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genbench.cli.common import handle_errors, stdout, with_default


def register(store_app: typer.Typer) -> None:
    """Add the ``export`` and ``import`` commands to the ``store`` group."""

    @store_app.command("export")
    @handle_errors
    def export(
        archive: Path = typer.Argument(..., help="the archive to write: a tar file, gzip-compressed when its name ends in .gz or .tgz"),
        store: Optional[Path] = typer.Option(
            None, "--store", envvar="GENBENCH_STORE", help=with_default("store folder", "./genbench-results")
        ),
    ) -> None:
        """Write the store as one archive: runs and measure values as Parquet tables, checkpoints as
        safetensors, and a manifest with every file's sha256 and the versions of genbench and the
        plugins. Exit 5 when a run's checkpoint is missing or damaged (`genbench store check`)."""
        from genbench import api  # here, not at the top: `genbench --help` does not import torch

        summary = api.export_store(archive, store=store)
        stdout.print(
            f"wrote {summary.path}: {summary.runs} runs, {summary.values} measure values, {summary.checkpoints} checkpoints",
            markup=False,
            highlight=False,
        )

    @store_app.command("import")
    @handle_errors
    def import_(
        archive: Path = typer.Argument(..., help="an archive written by `genbench store export`"),
        into: Optional[Path] = typer.Option(
            None, "--into", "--store", envvar="GENBENCH_STORE",
            help=with_default("store folder to merge into (created when missing)", "./genbench-results"),
        ),
    ) -> None:
        """Merge an archive into a store: runs the store lacks are added with their checkpoints,
        values it lacks are added, and what it has is kept. The whole archive is checked first; a
        damaged one (a missing, extra or altered file, a bad manifest, an unsafe member path, not a
        tar file) is refused with exit code 5 and the store is left as it was."""
        from genbench import api  # here, not at the top: `genbench --help` does not import torch

        summary = api.import_store(archive, into=into)
        stdout.print(
            f"imported {summary.runs_added} runs and {summary.values_added} measure values into {summary.root} "
            f"({summary.runs_present} runs and {summary.values_present} values were there already)",
            markup=False,
            highlight=False,
        )
