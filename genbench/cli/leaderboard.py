"""``genbench leaderboard``: every measure in the store scored against the gap, with intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genbench.choices import LEADERBOARD_FORMATS as FORMATS, REPLICATES, SLICE_AXES, SORT_KEYS
from genbench.cli.common import check_choice, handle_errors, stdout


def check_format(fmt: str) -> str:
    """``fmt`` when it is a leaderboard format, else one UsageError line."""
    return check_choice(fmt, FORMATS, "--format")


def print_board(board, fmt: str, sort: str = "tau", measures: list[str] | None = None) -> None:
    """The board, its rows chosen and ordered (``sort``: a key of ``SORT_KEYS``), on stdout in ``fmt``."""
    from genbench.report.leaderboard import filter_measures, render, sort_board

    board = sort_board(filter_measures(board, measures), sort)
    stdout.print(render(board, fmt), markup=False, highlight=False, end="", soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def leaderboard(
        store: Optional[Path] = typer.Option(
            None, "--store", envvar="GENBENCH_STORE", help="store folder \\[default: ./genbench-results]"
        ),
        fmt: str = typer.Option("table", "--format", "-f", help=" | ".join(FORMATS)),
        sort: str = typer.Option("tau", "--sort", help=f"order of the rows: {' | '.join(SORT_KEYS)}"),
        measure: Optional[list[str]] = typer.Option(
            None, "--measure", "-m", help="only measures matching this shell pattern, e.g. 'pacbayes-*' (repeatable)"
        ),
        where: Optional[list[str]] = typer.Option(
            None, "--where", "-w",
            help="only runs with KEY=VALUE (or !=, <, <=, >, >=), e.g. model=mlp, level<=0.6, train.lr=0.05 (repeatable)",
        ),
        by: Optional[str] = typer.Option(None, "--by", help=f"one board per {' | '.join(SLICE_AXES)}"),
        bootstrap: int = typer.Option(
            REPLICATES, "--bootstrap", min=0, help="bootstrap replicates of the intervals, 0 for none"
        ),
    ) -> None:
        """Score every measure in the store against the generalization gap and print the board."""
        from genbench import api

        check_format(fmt)
        check_choice(sort, SORT_KEYS, "--sort")  # before the board is scored
        if by is not None:
            check_choice(by, SLICE_AXES, "--by")
        target = api.open_store(store, create=False)
        board = api.leaderboard(target, where=where or (), by=by, bootstrap=bootstrap)
        print_board(board, fmt, sort, measure)
