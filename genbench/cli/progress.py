"""Rich progress bars for training and evaluation (on stderr)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from genbench.schemas import RunResult, RunSpec


class RichReporter:
    """Shows how many runs are trained and measure values computed."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task = None
        self.step_count = 0

    def _start(self, description: str, total: int) -> None:
        self.stop()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, detail="")

    def start_training(self, runs: int, steps: int) -> None:
        self._start("training runs", runs)

    def group_started(self, runs: list[RunSpec]) -> None:
        self.step_count = 0
        if self.progress is not None:
            run = runs[0]
            self.progress.update(self.task, detail=f"{run.model.name} on {run.dataset.name}: {len(runs)} members")

    def steps(self, members: int) -> None:
        self.step_count += 1
        if self.progress is not None and self.step_count % 50 == 0:
            self.progress.update(self.task, detail=f"step {self.step_count}, {members} members training")

    def run_done(self, run: RunSpec, result: RunResult) -> None:
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
