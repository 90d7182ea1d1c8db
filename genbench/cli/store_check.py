"""``genbench store check [--repair]``: every stored run checked against its checkpoint files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genbench.cli import store_archive
from genbench.cli.common import handle_errors, stdout, with_default
from genbench.errors import StoreError


def register(app: typer.Typer) -> None:
    store_app = typer.Typer(help="Check, repair, export and import the store.", no_args_is_help=True)
    app.add_typer(store_app, name="store")

    @store_app.command("check")
    @handle_errors
    def check(
        store: Optional[Path] = typer.Option(
            None, "--store", envvar="GENBENCH_STORE", help=with_default("store folder", "./genbench-results")
        ),
        repair: bool = typer.Option(False, "--repair", help="remove the damaged runs (the next run trains them again), orphans and half-written files"),
    ) -> None:
        """Check every run's checkpoints: they exist, load as safetensors, match the recorded sha256 and
        agree in their tensors; list checkpoint folders no run owns and half-written files. Exit 5 when
        something is wrong and --repair was not given."""
        from genbench import api  # here, not at the top: `genbench --help` does not import torch

        target = api.open_store(store, create=False)
        found = target.check()
        for run_id, problems in found.damaged.items():
            stdout.print(f"damaged run {run_id}: {'; '.join(problems)}", markup=False, highlight=False)
        for folder in found.orphans:
            stdout.print(f"orphan checkpoint folder (no run row): {folder}", markup=False, highlight=False)
        for path in found.half_written:
            stdout.print(f"half-written file: {path}", markup=False, highlight=False)
        if found.clean:
            stdout.print(f"store {target.root}: {found.runs} runs, every checkpoint sound", markup=False, highlight=False)
            return
        summary = f"{len(found.damaged)} damaged runs, {len(found.orphans)} orphan folders, {len(found.half_written)} half-written files"
        if not repair:
            raise StoreError(f"store {target.root}: {summary}; `genbench store check --repair` removes them")
        target.repair(found)
        stdout.print(f"removed {summary}; the next `genbench run` trains the removed runs again", markup=False, highlight=False)

    store_archive.register(store_app)
