"""Shared pieces of the command line: error handling, consoles, parsing helpers."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sqlite3
import warnings
from typing import Any, Callable, Iterator, TypeVar

import typer

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape

from genbench.conditions import parse_values
from genbench.errors import ExitCode, GenbenchError, GenbenchWarning, SpecError, UsageError, raise_errors

F = TypeVar("F", bound=Callable[..., Any])

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def one_line(message: str) -> str:
    """``message`` on one line: its non-empty lines joined by "; "."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def fail(message: str, code: ExitCode) -> typer.Exit:
    """Print ``message`` as one red ``error:`` line on stderr; the Exit to raise with ``code``."""
    stderr.print(f"[bold red]error:[/] {escape(one_line(message))}", markup=True, highlight=False)
    return typer.Exit(int(code))


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Inside it, a GenbenchWarning is shown as one yellow ``warning:`` line on stderr (the
    console the progress bars draw on) and any other warning as Python shows it; Python's
    warning settings are restored on the way out."""
    with warnings.catch_warnings():
        python_show = warnings.showwarning

        def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            if issubclass(category, GenbenchWarning):
                stderr.print(f"[yellow]warning:[/] {escape(one_line(str(message)))}", highlight=False)
            else:
                python_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def handle_errors(command: F) -> F:
    """Turn a GenbenchError into one red line and its exit code
    (``GENBENCH_RAISE_ERRORS=1`` shows the traceback instead), and show the command's
    GenbenchWarnings as one line each (``one_line_warnings``)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with one_line_warnings():
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


def with_default(text: str, default: str) -> str:
    """A help string that ends in ``[default: ...]``, escaped so that the rich help keeps the brackets."""
    return f"{text} {escape(f'[default: {default}]')}"


def parse_assignment(text: str, flag: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` as the key and its values."""
    key, equals, rest = text.partition("=")
    if not equals or not key.strip():
        raise SpecError(f"{flag} expects KEY=V1,V2,..., got '{text}'")
    return key.strip(), parse_values(rest, f"{flag} {key.strip()}")


def json_ready(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, ±inf) as None, so that it prints as strict JSON."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: json_ready(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_ready(value) for value in data]
    return data


def print_json(data: Any) -> None:
    """``data`` as indented strict JSON on stdout."""
    stdout.print(json.dumps(json_ready(data), indent=2, default=str), markup=False, highlight=False)


def check_choice(value: str, choices: tuple[str, ...], flag: str) -> str:
    """``value`` when it is one of ``choices``, else one UsageError line (exit code 2)."""
    if value not in choices:
        raise UsageError(f"{flag} must be one of {', '.join(choices)}; got '{value}'")
    return value


def plain(value: Any) -> Any:
    """A table cell as plain data: NaN as None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested tables as (dotted key, value) pairs; lists and empty tables stay whole."""
    pairs: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            pairs += flatten(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A pipe table (``|`` in cells escaped)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(headers), "|" + "---|" * len(headers), *(line(row) for row in rows)]) + "\n"


def fit_columns(headers: list[str], rows: list[list[str]], ranks: list[float], keep: list[bool], width: int) -> list[int]:
    """The positions of the columns that fit ``width`` characters in a rich table (box and padding
    take 3 per column and 1) with no header or cell wrapped: the lowest-ranked columns go first,
    those marked ``keep`` never; then a dropped column that fits after all comes back."""
    widths = [max([cell_len(header), *(cell_len(row[i]) for row in rows)]) for i, header in enumerate(headers)]

    def fits(dropped: set[int]) -> bool:
        chosen = [w for i, w in enumerate(widths) if i not in dropped]
        return sum(chosen) + 3 * len(chosen) + 1 <= width

    droppable = sorted((i for i in range(len(headers)) if not keep[i]), key=lambda i: ranks[i])
    dropped: list[int] = []
    while droppable and not fits(set(dropped)):
        dropped.append(droppable.pop(0))
    for column in reversed(dropped):  # a narrower, less important column may fit where a wider one went
        if fits(set(dropped) - {column}):
            dropped.remove(column)
    return [i for i in range(len(headers)) if i not in dropped]
