"""Shared pieces of the command line: error handling, consoles, parsing helpers."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

import typer
import sqlite3

from rich.console import Console
from rich.markup import escape

from genbench.errors import ExitCode, GenbenchError, SpecError

F = TypeVar("F", bound=Callable[..., Any])

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def raise_errors() -> bool:
    return os.environ.get("GENBENCH_RAISE_ERRORS", "") not in ("", "0")


def fail(message: str, code: ExitCode) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(int(code))


def handle_errors(command: F) -> F:
    """Turn a GenbenchError into one red line and its exit code
    (``GENBENCH_RAISE_ERRORS=1`` shows the traceback instead)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GenbenchError as exc:
            if raise_errors():
                raise
            raise fail(str(exc), exc.exit_code) from None
        except (sqlite3.Error, OSError) as exc:
            if raise_errors():
                raise
            raise fail(f"{type(exc).__name__}: {exc}", ExitCode.STORE_ERROR) from None
        except KeyboardInterrupt:
            if raise_errors():
                raise
            raise fail("interrupted; finished runs are in the store and the next call resumes", ExitCode.INTERRUPTED)

    return wrapper  # type: ignore[return-value]


def exit_for_failed_values(statuses: list[str], stages: list[str | None]) -> None:
    """After the leaderboard is printed: one line and a non-zero exit code when values failed —
    5 (store) when a run could not be read from the store, else 6 (data) when a run's data or
    components could not be prepared, else 8 (measure). ``stages`` gives each value's failed stage
    ("store", "data" or None)."""
    failed = sum(status == "failed" for status in statuses)
    if not failed:
        return
    store, data = stages.count("store"), stages.count("data")
    if store:
        code, reason = ExitCode.STORE_ERROR, f"; {store} of them on runs the store could not read"
    elif data:
        code, reason = ExitCode.DATA_ERROR, f"; {data} of them on runs whose data could not be prepared"
    else:
        code, reason = ExitCode.MEASURE_ERROR, ""
    raise fail(f"{failed} measure values failed{reason} (they are computed again next time)", code)


def parse_floats(text: str, flag: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"{flag} expects comma-separated numbers, got '{text}'") from None


def parse_ints(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"{flag} expects comma-separated integers, got '{text}'") from None
