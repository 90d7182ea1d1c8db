"""Progress of the train and evaluate stages, shown while they run.

The engine calls a reporter (the protocol of ``genbench.engine.NullReporter``: ``start_training``,
``group_started``, ``steps``, ``run_done``, ``start_evaluation``, ``evaluating``, ``evaluated``,
``warn``, ``stop``). ``ProgressReporter`` implements it once: it counts the runs trained or the
values computed, the groups and members training now, the time elapsed and the time left (from
the rate so far), and hands each change to its views as a ``ProgressEvent``:

- ``BarView``: a rich progress bar (a terminal, a Jupyter notebook);
- ``LineView``: one plain line every ``interval`` seconds and at the start and end of each stage,
  for a log file or a cluster job's output, where a bar shows nothing until it ends;
- ``CallbackView``: every event to a callable of the caller's;
- ``WarningView``: the warnings alone.

``progress_reporter`` builds the reporter a ``progress`` setting asks for (``True``/``"auto"``,
``"bar"``, ``"lines"``, ``False``/``None``/``"none"``, or a callable), ``"auto"`` reading
``GENBENCH_PROGRESS`` and whether stderr is a terminal. The same events arrive from every
executor (from a dask cluster, a unit's runs when it finishes)."""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from genbench.errors import UsageError
from genbench.schemas import RunResult, RunSpec

#: Seconds between two lines of a ``LineView`` (besides a stage's first and last line).
LINE_INTERVAL = 10.0
#: At most one event per this many seconds from the optimizer steps of the groups training (every
#: other event, a run stored or a value computed, is passed on at once).
STEP_INTERVAL = 1.0
#: The environment variable that chooses the display of ``"auto"``: bar, lines or none.
PROGRESS_VARIABLE = "GENBENCH_PROGRESS"
DISPLAYS = ("bar", "lines", "none")

EventKind = Literal["start", "progress", "end", "warning"]


@dataclass(frozen=True)
class ProgressEvent:
    """One change of a stage's progress.

    ``stage``: "training" (``done``/``total`` count runs) or "evaluating" (measure values); ``""``
    for a warning before either started. ``kind``: "start" (``done`` 0), "progress" (a run or a
    value done, a group started, optimizer steps, the value computed now), "end" (the stage
    stopped: ``done < total`` when some of its work failed), or "warning" (``detail`` is the
    message). ``detail``: what happens now ("mlp on digits, step 120, 4 members training", "params
    on mlp p_c=0.2"). ``elapsed``: seconds since the stage started; ``eta``: seconds it still
    needs at the rate so far (None before its first unit is done). ``groups`` and ``members``: the
    training groups that started and are not yet stored, and their runs still training."""

    stage: str
    kind: EventKind
    done: int
    total: int
    detail: str = ""
    elapsed: float = 0.0
    eta: float | None = None
    groups: int = 0
    members: int = 0

    @property
    def unit(self) -> str:
        """What ``done`` and ``total`` count: "runs" or "values"."""
        return "runs" if self.stage == "training" else "values"


class View(Protocol):
    """Where a ``ProgressReporter`` shows its events."""

    def show(self, event: ProgressEvent) -> None: ...


def clock_time(seconds: float) -> str:
    """``seconds`` as h:mm:ss (``0:01:10``)."""
    return str(datetime.timedelta(seconds=int(max(0.0, seconds))))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def describe(event: ProgressEvent) -> str:
    """The one line ``LineView`` writes for ``event``: ``training: 12/40 runs, 2 groups (16
    members) training, elapsed 0:01:10, ETA 0:03:20``; ``warning: …`` for a warning."""
    if event.kind == "warning":
        return f"warning: {event.detail}"
    parts = [f"{event.stage}: {event.done}/{event.total} {event.unit}"]
    if event.groups and event.kind != "end":
        parts.append(f"{plural(event.groups, 'group')} ({plural(event.members, 'member')}) training")
    parts.append(f"elapsed {clock_time(event.elapsed)}")
    if event.kind == "end":
        left = event.total - event.done
        parts.append("finished" if left <= 0 else f"stopped with {plural(left, event.unit[:-1])} not done")
    else:
        parts.append("ETA unknown" if event.eta is None else f"ETA {clock_time(event.eta)}")
    return ", ".join(parts)


class ProgressReporter:
    """The engine's reporter: counts what each stage has done and passes every change to
    ``views`` as a ``ProgressEvent``. ``clock`` (seconds, monotonic) times the stages; a test
    passes its own. With no views it only counts."""

    def __init__(self, *views: View, clock: Callable[[], float] = time.monotonic,
                 step_interval: float = STEP_INTERVAL) -> None:
        self.views = list(views)
        self.clock = clock
        self.step_interval = step_interval
        self.stage = ""
        self.active = False
        self.done = self.total = 0
        self.started = self.last_event = 0.0
        self.step_count = 0
        self.detail = ""
        self.groups: dict[str, int] = {}  # each started group (its first run id): members not yet stored
        self.group_of: dict[str, str] = {}  # run id -> its group
        self.group_name = ""  # the model and dataset of the group that started last

    # the reporter protocol

    def start_training(self, runs: int, steps: int) -> None:
        self._begin("training", runs)

    def group_started(self, runs: list[RunSpec]) -> None:
        self.step_count = 0
        self.groups[runs[0].run_id] = len(runs)
        self.group_of.update({run.run_id: runs[0].run_id for run in runs})
        self.group_name = f"{runs[0].model.name} on {runs[0].dataset.name}"
        self.detail = self._training()
        self._emit("progress")

    def steps(self, members: int) -> None:
        self.step_count += 1
        now = self.clock()
        if now - self.last_event >= self.step_interval:
            self.detail = self._training(f"step {self.step_count}, ")
            self._emit("progress", now=now)

    def run_done(self, run: RunSpec, result: RunResult) -> None:
        group = self.group_of.pop(run.run_id, None)
        if group in self.groups:
            self.groups[group] -= 1
            if not self.groups[group]:
                del self.groups[group]
        self.done += 1
        self.detail = self._training()
        self._emit("progress")

    def start_evaluation(self, total: int) -> None:
        self._begin("evaluating", total)

    def evaluating(self, measure: str, run: RunSpec) -> None:
        self.detail = f"{measure} on {run.model.name} p_c={run.corruption.level:g}"
        self._emit("progress")

    def evaluated(self) -> None:
        self.done += 1
        self._emit("progress")

    def warn(self, message: str) -> None:
        self._emit("warning", detail=message)

    def stop(self) -> None:
        if self.active:
            self._emit("end")
            self.active = False

    # counting

    def _begin(self, stage: str, total: int) -> None:
        self.stop()
        self.stage, self.active, self.done, self.total = stage, True, 0, total
        self.started = self.clock()
        self.step_count, self.detail = 0, ""
        self.groups.clear()
        self.group_of.clear()
        self._emit("start", now=self.started)

    def _training(self, steps: str = "") -> str:
        members = sum(self.groups.values())
        if len(self.groups) == 1:
            return f"{self.group_name}, {steps}{plural(members, 'member')} training"
        if self.groups:
            return f"{len(self.groups)} groups, {plural(members, 'member')} training"
        return ""

    def event(self, kind: EventKind = "progress", detail: str | None = None, now: float | None = None) -> ProgressEvent:
        """The stage's progress at ``now`` (default: the clock's time), as an event of ``kind``."""
        now = self.clock() if now is None else now
        elapsed = now - self.started if self.stage else 0.0
        if self.done >= self.total:
            eta: float | None = 0.0
        elif self.done:
            eta = elapsed * (self.total - self.done) / self.done
        else:
            eta = None
        return ProgressEvent(
            stage=self.stage, kind=kind, done=self.done, total=self.total,
            detail=self.detail if detail is None else detail, elapsed=elapsed, eta=eta,
            groups=len(self.groups) if self.stage == "training" else 0,
            members=sum(self.groups.values()) if self.stage == "training" else 0,
        )

    def _emit(self, kind: EventKind, detail: str | None = None, now: float | None = None) -> None:
        self.last_event = self.clock() if now is None else now
        event = self.event(kind, detail, self.last_event)
        for view in self.views:
            view.show(event)


class LineView:
    """Plain lines (``describe``) on ``out``, a text stream or a rich Console: a stage's first
    line, then one whenever ``interval`` seconds have passed since the last, and its last line;
    each warning on a line of its own."""

    def __init__(self, out: TextIO | Console | None = None, interval: float = LINE_INTERVAL) -> None:
        self.out = sys.stderr if out is None else out
        self.interval = interval
        self.last_line = 0.0  # the elapsed time of the stage's last line

    def show(self, event: ProgressEvent) -> None:
        if event.kind == "start":
            self.last_line = event.elapsed
        elif event.kind == "progress":
            if event.elapsed - self.last_line < self.interval:
                return
            self.last_line = event.elapsed
        self.write(describe(event))

    def write(self, line: str) -> None:
        if isinstance(self.out, Console):
            self.out.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            self.out.write(line + "\n")
            self.out.flush()


class WarningView(LineView):
    """Only the warnings, one ``warning: …`` line each (progress itself stays silent)."""

    def show(self, event: ProgressEvent) -> None:
        if event.kind == "warning":
            self.write(describe(event))


class BarView:
    """A rich progress bar on ``console`` per stage: units done of the total, what happens now,
    the time elapsed and left; warnings printed above it."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.progress: Progress | None = None
        self.task = None

    def show(self, event: ProgressEvent) -> None:
        if event.kind == "warning":
            self.console.print(f"[yellow]warning:[/] {escape(event.detail)}", highlight=False)
        elif event.kind == "start":
            self.close()
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            label = "training runs" if event.stage == "training" else "evaluating measures"
            self.task = self.progress.add_task(label, total=event.total, detail="")
        elif self.progress is not None:
            self.progress.update(self.task, completed=event.done, detail=event.detail)
            if event.kind == "end":
                self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class CallbackView:
    """Every event to ``callback``."""

    def __init__(self, callback: Callable[[ProgressEvent], object]) -> None:
        self.callback = callback

    def show(self, event: ProgressEvent) -> None:
        self.callback(event)


ProgressLike = bool | str | Callable[[ProgressEvent], object] | None


def chosen_display(console: Console) -> str:
    """What ``"auto"`` shows on ``console``: ``$GENBENCH_PROGRESS`` (bar, lines or none) when set,
    else a bar on a terminal or in a Jupyter notebook and lines anywhere else (a file, a pipe)."""
    display = os.environ.get(PROGRESS_VARIABLE, "").strip().lower()
    if display:
        if display not in DISPLAYS:
            raise UsageError(f"{PROGRESS_VARIABLE}={display!r}: expected one of {', '.join(DISPLAYS)}")
        return display
    return "bar" if console.is_terminal or console.is_jupyter else "lines"


def progress_reporter(
    progress: ProgressLike = True,
    console: Console | None = None,
    *,
    interval: float = LINE_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    warnings: bool = False,
) -> ProgressReporter | None:
    """The reporter ``progress`` asks for, shown on ``console`` (default: a new stderr console).

    - ``True`` or ``"auto"``: ``chosen_display(console)``;
    - ``"bar"``: a rich progress bar; ``"lines"``: a line every ``interval`` seconds;
    - ``False``, ``None`` or ``"none"``: None (nothing shown), or with ``warnings`` a reporter that
      prints only the warnings;
    - a callable: called with every ``ProgressEvent``; nothing is printed."""
    if callable(progress):
        return ProgressReporter(CallbackView(progress), clock=clock)
    if progress is True:
        progress = "auto"
    if progress is False or progress is None:
        progress = "none"
    if not isinstance(progress, str) or progress.lower() not in ("auto", *DISPLAYS):
        raise UsageError(
            f"progress={progress!r}: expected True, False, None, a callable or one of auto, {', '.join(DISPLAYS)}"
        )
    console = console or Console(stderr=True, soft_wrap=True)
    display = chosen_display(console) if progress.lower() == "auto" else progress.lower()
    if display == "bar":
        return ProgressReporter(BarView(console), clock=clock)
    if display == "lines":
        return ProgressReporter(LineView(console, interval), clock=clock)
    return ProgressReporter(WarningView(console), clock=clock) if warnings else None


__all__ = [
    "BarView",
    "CallbackView",
    "LINE_INTERVAL",
    "LineView",
    "ProgressEvent",
    "ProgressLike",
    "ProgressReporter",
    "View",
    "WarningView",
    "chosen_display",
    "describe",
    "progress_reporter",
]
