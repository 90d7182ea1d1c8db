"""``genbench data``: fetch the datasets that live in files (the only command that downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from genbench.choices import DATA_ENV, DOWNLOADS
from genbench.cli.common import handle_errors, stderr, stdout
from genbench.errors import UnknownNameError

data_app = typer.Typer(
    help="Datasets kept in files: download them into the data folder.",
    no_args_is_help=True,
)

DataDirOption = typer.Option(
    None,
    "--data-dir",
    envvar=DATA_ENV,
    help="data folder (when neither this nor GENBENCH_DATA is set: ~/.cache/genbench)",
)


class _DownloadBars:
    """One rich progress bar per downloaded file, on stderr."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr,
        )
        self.tasks: dict[str, int] = {}
        self.started = False

    def __call__(self, filename: str, done: int, total: int | None) -> None:
        if not self.started:  # no empty live display before the first byte
            self.progress.start()
            self.started = True
        if filename not in self.tasks:
            self.tasks[filename] = self.progress.add_task(filename, total=total)
        self.progress.update(self.tasks[filename], completed=done, total=total)

    def stop(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False


@data_app.command("download")
@handle_errors
def download_command(
    name: str = typer.Argument(..., help=" | ".join(DOWNLOADS)),
    data_dir: Optional[Path] = DataDirOption,
    force: bool = typer.Option(False, "--force", help="fetch again even when the files are there"),
) -> None:
    """Download a dataset from its official source, check its MD5, unpack it into the data folder."""
    if name not in DOWNLOADS:
        raise UnknownNameError(f"nothing to download for '{name}'; choose one of {', '.join(DOWNLOADS)}")
    from genbench.datasets.download import download

    bars = _DownloadBars()
    try:
        folder = download(
            name,
            data_dir,
            force=force,
            progress=bars,
            report=lambda message: stderr.print(message, highlight=False),
        )
    finally:
        bars.stop()
    stdout.print(str(folder), highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
