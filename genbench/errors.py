"""Errors that reach the user as one line, and the exit codes that go with them."""

from __future__ import annotations

import enum
import os


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``genbench`` command."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    INVALID_SPEC = 3
    UNKNOWN_NAME = 4
    STORE_ERROR = 5
    DATA_ERROR = 6
    PLUGIN_ERROR = 7
    MEASURE_ERROR = 8
    INTERRUPTED = 130


class GenbenchError(Exception):
    """Base class: an error whose message is fit to show a user as one line."""

    exit_code: ExitCode = ExitCode.FAILURE


class UsageError(GenbenchError):
    """A command asked for something it needs confirmed or told differently (exit code 2)."""

    exit_code = ExitCode.USAGE


class SpecError(GenbenchError):
    """An experiment or run specification is invalid."""

    exit_code = ExitCode.INVALID_SPEC


class UnknownNameError(GenbenchError):
    """A dataset, model, corruption, measure or executor name is not registered."""

    exit_code = ExitCode.UNKNOWN_NAME


class DuplicateNameError(GenbenchError):
    """Two plugins registered the same name in one registry."""

    exit_code = ExitCode.PLUGIN_ERROR


class PluginError(GenbenchError):
    """A plugin failed to load or to register its components."""

    exit_code = ExitCode.PLUGIN_ERROR


class ExecutorError(GenbenchError):
    """An executor could not start or reach the workers it runs units on (exit code 1)."""

    exit_code = ExitCode.FAILURE


class StoreError(GenbenchError):
    """The result store is missing, unreadable or inconsistent."""

    exit_code = ExitCode.STORE_ERROR


class DataError(GenbenchError):
    """A dataset could not be built or read."""

    exit_code = ExitCode.DATA_ERROR


class MeasureError(GenbenchError):
    """A measure could not be computed on a run."""

    exit_code = ExitCode.MEASURE_ERROR


class GenbenchWarning(UserWarning):
    """A warning fit to show a user as one line: the command line prints it as one yellow
    ``warning:`` line on stderr (Python's ``warnings`` machinery shows it elsewhere)."""


class NotApplicable(MeasureError):
    """A measure has no value on this run by its definition (e.g. steps to a cross-entropy the
    retraining never reaches because it diverges): the value is stored as skipped, with this
    reason, and is not computed again."""


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception (``Type`` alone when it says nothing)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def raise_errors() -> bool:
    """Whether ``GENBENCH_RAISE_ERRORS`` asks for tracebacks instead of one-line errors."""
    return os.environ.get("GENBENCH_RAISE_ERRORS", "") not in ("", "0")
