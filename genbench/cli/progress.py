"""Rich progress bars for training and evaluation (on stderr): runs trained or values computed,
the groups and members training now, the time elapsed and an estimate of the time left. The same
events arrive from every executor (from a dask cluster, a unit's runs when it finishes)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from genbench.schemas import RunResult, RunSpec


class RichReporter:
    """Shows how many runs are trained and measure values computed."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task = None
        self.step_count = 0
        self.groups: dict[str, int] = {}  # each started group (its first run id): members not yet stored
        self.group_of: dict[str, str] = {}  # run id -> its group

    def _start(self, description: str, total: int) -> None:
        self.stop()
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
        self.task = self.progress.add_task(description, total=total, detail="")

    def start_training(self, runs: int, steps: int) -> None:
        self._start("training runs", runs)

    def group_started(self, runs: list[RunSpec]) -> None:
        self.step_count = 0
        self.groups[runs[0].run_id] = len(runs)
        self.group_of.update({run.run_id: runs[0].run_id for run in runs})
        if self.progress is not None:
            run = runs[0]
            self.progress.update(self.task, detail=self._training(f"{run.model.name} on {run.dataset.name}"))

    def _training(self, what: str) -> str:
        groups = [members for members in self.groups.values() if members]
        if len(groups) <= 1:
            return f"{what}: {sum(groups)} members"
        return f"{len(groups)} groups, {sum(groups)} members training"

    def steps(self, members: int) -> None:
        self.step_count += 1
        if self.progress is not None and self.step_count % 50 == 0 and len([m for m in self.groups.values() if m]) <= 1:
            self.progress.update(self.task, detail=f"step {self.step_count}, {members} members training")

    def run_done(self, run: RunSpec, result: RunResult) -> None:
        group = self.group_of.pop(run.run_id, None)
        if group in self.groups:
            self.groups[group] -= 1
        if self.progress is not None:
            self.progress.advance(self.task)

    def start_evaluation(self, total: int) -> None:
        self._start("evaluating measures", total)

    def evaluating(self, measure: str, run: RunSpec) -> None:
        if self.progress is not None:
            self.progress.update(self.task, detail=f"{measure} on {run.model.name} p_c={run.corruption.level:g}")

    def evaluated(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
