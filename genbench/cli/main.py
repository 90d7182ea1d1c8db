"""Entry point of the ``genbench`` command."""

from __future__ import annotations

import sys

import typer

from genbench.version import __version__
from genbench.cli import data, experiments, info
from genbench.cli import runs
from genbench.cli import leaderboard
from genbench.cli import store_check
from genbench.cli import report
from genbench.cli import plugin_new
from genbench.cli.common import fail
from genbench.errors import ExitCode, raise_errors

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
plugin_new.register(app)


def main() -> None:
    """Run the ``genbench`` command and exit with its code. A usage error that click finds while
    parsing (an unknown flag, a value of the wrong type, a missing argument) is one red line on
    stderr naming the problem and the command's ``--help``, with exit code 2, like genbench's own
    errors (``GENBENCH_RAISE_ERRORS=1`` shows the traceback instead)."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # typer's click exceptions: usage errors, a bad parameter
        if type(exc).__name__ == "NoArgsIsHelpError":  # `genbench` alone: the help is printed already
            code = exc.exit_code
        elif raise_errors():
            raise
        else:
            message = " ".join(exc.format_message().split())
            context = getattr(exc, "ctx", None)
            if context is not None:
                message += f" (see `{context.command_path} --help`)"
            code = fail(message, exc.exit_code).exit_code
    except typer.Abort:
        code = fail("aborted", ExitCode.FAILURE).exit_code
    sys.exit(code if isinstance(code, int) else 0)
