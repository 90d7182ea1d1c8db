"""Entry point of the ``genbench`` command."""

from __future__ import annotations

import typer

from genbench.version import __version__
from genbench.cli import data, experiments, info
from genbench.cli import runs
from genbench.cli import leaderboard
from genbench.cli import store_check
from genbench.cli import report

app = typer.Typer(
    name="genbench",
    help="Benchmark generalization measures on the randomization tests of Zhang et al. (2017).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"genbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """genbench: train under corruption, measure, score, rank."""


experiments.register(app)
leaderboard.register(app)
runs.register(app)
info.register(app)
data.register(app)
store_check.register(app)
report.register(app)


def main() -> None:
    app()
