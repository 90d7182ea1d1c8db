"""The command line's progress on stderr: a rich bar on a terminal, a plain line every few
seconds anywhere else (a log file, a cluster job's output), nothing but warnings with
``GENBENCH_PROGRESS=none``; ``GENBENCH_PROGRESS=bar|lines`` chooses the others. The reporter and
its views are ``genbench.report.progress``'s, shared with the Python API."""

from __future__ import annotations

from rich.console import Console

from genbench.report.progress import ProgressReporter, progress_reporter


def cli_reporter(console: Console) -> ProgressReporter:
    """The reporter of ``genbench run`` and ``genbench evaluate`` on ``console``: what
    ``GENBENCH_PROGRESS`` asks for, else a bar when ``console`` is a terminal and lines when not;
    warnings are shown in every case."""
    return progress_reporter("auto", console, warnings=True)


__all__ = ["cli_reporter"]
