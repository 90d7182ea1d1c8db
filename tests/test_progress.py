"""Progress while the stages run: plain lines where stderr is no terminal, a bar on one, events
to a callable from the Python API, nothing with GENBENCH_PROGRESS=none."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

import genbench
from genbench import api
from genbench.cli.progress import cli_reporter
from genbench.engine import resolve_runs
from genbench.errors import UsageError
from genbench.report.progress import (
    BarView,
    CallbackView,
    LineView,
    ProgressEvent,
    ProgressReporter,
    WarningView,
    describe,
    progress_reporter,
)
from genbench.schemas import RunResult

#: Two levels × two seeds of a small MLP on a synthetic Gaussian mixture: no dataset files, and
#: every run converges within a few hundred steps.
SPEC = {
    "datasets": [{"name": "gaussian-mixture", "n_train": 200, "n_test": 200, "separation": 1.0}],
    "models": [{"name": "mlp", "hidden": [16]}],
    "levels": [0.0, 1.0],
    "seeds": [0, 1],
    "measures": ["params", "dist-from-init"],
    "train": {"lr": 0.1, "schedule": "constant", "max_steps": 300},
}
SPEC_TOML = """
datasets = [{ name = "gaussian-mixture", n_train = 200, n_test = 200, separation = 1.0 }]
models = [{ name = "mlp", hidden = [16] }]
levels = [0.0, 1.0]
seeds = [0, 1]
measures = ["params"]
[train]
lr = 0.1
schedule = "constant"
max_steps = 300
"""


class Clock:
    """A clock the test sets."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def runs():
    return resolve_runs(api.load_spec(SPEC))


def result(run) -> RunResult:
    return RunResult.model_construct(run_id=run.run_id)  # the reporter reads nothing of it


def test_the_line_view_writes_counts_groups_and_eta_at_the_start_every_interval_and_the_end(runs):
    clock, out = Clock(), io.StringIO()
    reporter = ProgressReporter(LineView(out, interval=10), clock=clock)
    first, second = runs[:2], runs[2:]
    start = clock.now

    def at(seconds: float) -> None:
        clock.now = start + seconds

    reporter.start_training(4, 1200)
    at(1), reporter.group_started(first)
    at(2), reporter.group_started(second)
    at(5), reporter.steps(4)  # within the interval: no line
    at(12), reporter.steps(4)  # 12 s since the first line
    at(20), reporter.run_done(first[0], result(first[0]))
    at(30), reporter.steps(3)
    at(35), reporter.run_done(first[1], result(first[1]))
    at(38), reporter.run_done(second[0], result(second[0]))
    at(45), reporter.steps(1)
    at(50), reporter.run_done(second[1], result(second[1]))
    reporter.stop()
    reporter.warn("measure x failed on 1 of 4 runs")

    start = clock.now = 2000.0
    reporter.start_evaluation(300)
    for second_ in range(1, 26):
        at(second_)
        reporter.evaluating("params", runs[0])
        reporter.evaluated()
    at(30), reporter.stop()

    assert out.getvalue().splitlines() == [
        "training: 0/4 runs, elapsed 0:00:00, ETA unknown",
        "training: 0/4 runs, 2 groups (4 members) training, elapsed 0:00:12, ETA unknown",
        "training: 1/4 runs, 2 groups (3 members) training, elapsed 0:00:30, ETA 0:01:30",  # 30 s per run
        "training: 3/4 runs, 1 group (1 member) training, elapsed 0:00:45, ETA 0:00:15",
        "training: 4/4 runs, elapsed 0:00:50, finished",
        "warning: measure x failed on 1 of 4 runs",
        "evaluating: 0/300 values, elapsed 0:00:00, ETA unknown",
        "evaluating: 9/300 values, elapsed 0:00:10, ETA 0:05:23",  # 10 s × 291 / 9
        "evaluating: 19/300 values, elapsed 0:00:20, ETA 0:04:55",  # 20 s × 281 / 19
        "evaluating: 25/300 values, elapsed 0:00:30, stopped with 275 values not done",
    ]


def test_events_carry_the_stage_counts_and_what_happens_now(runs):
    clock, events = Clock(), []
    reporter = ProgressReporter(CallbackView(events.append), clock=clock, step_interval=1.0)
    reporter.start_training(2, 600)
    reporter.group_started(runs[:2])
    for _ in range(5):  # no time passes: the steps make no event
        reporter.steps(2)
    clock.now += 1.5
    reporter.steps(2)
    clock.now += 0.5
    reporter.run_done(runs[0], result(runs[0]))
    reporter.stop()
    reporter.stop()  # a second stop adds nothing

    assert [(e.kind, e.done, e.total) for e in events] == [
        ("start", 0, 2), ("progress", 0, 2), ("progress", 0, 2), ("progress", 1, 2), ("end", 1, 2)
    ]
    assert events[1].detail == "mlp on gaussian-mixture, 2 members training"
    assert events[2].detail == "mlp on gaussian-mixture, step 6, 2 members training"
    assert (events[2].groups, events[2].members, events[2].elapsed, events[2].eta) == (1, 2, 1.5, None)
    assert (events[3].members, events[3].elapsed, events[3].eta) == (1, 2.0, 2.0)
    assert events[3].unit == "runs"


def test_warnings_alone_and_a_bar_on_a_terminal(runs):
    out = io.StringIO()
    quiet = ProgressReporter(WarningView(out))
    quiet.start_training(1, 100)
    quiet.run_done(runs[0], result(runs[0]))
    quiet.warn("a [b] c")
    quiet.stop()
    assert out.getvalue() == "warning: a [b] c\n"

    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    bar = ProgressReporter(BarView(terminal))
    bar.start_evaluation(2)
    bar.evaluating("params", runs[0])
    bar.evaluated()
    bar.warn("a [b] c")
    bar.evaluated()
    bar.stop()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.file.getvalue())
    assert "evaluating measures" in shown and "2/2" in shown and "warning: a [b] c" in shown


def test_auto_chooses_lines_off_a_terminal_a_bar_on_one_and_the_variable_overrides(monkeypatch):
    monkeypatch.delenv("GENBENCH_PROGRESS", raising=False)
    pipe, terminal = Console(file=io.StringIO()), Console(file=io.StringIO(), force_terminal=True)

    def views(reporter):
        return None if reporter is None else [type(view) for view in reporter.views]

    assert views(progress_reporter(True, pipe)) == views(progress_reporter("auto", pipe)) == [LineView]
    assert views(progress_reporter(True, terminal)) == [BarView]
    assert views(progress_reporter("lines", terminal)) == [LineView]
    assert progress_reporter(False, terminal) is None and progress_reporter(None, pipe) is None
    assert views(progress_reporter(print, terminal)) == [CallbackView]
    assert views(cli_reporter(pipe)) == [LineView] and views(cli_reporter(terminal)) == [BarView]
    monkeypatch.setenv("GENBENCH_PROGRESS", "bar")
    assert views(progress_reporter(True, pipe)) == views(cli_reporter(pipe)) == [BarView]
    monkeypatch.setenv("GENBENCH_PROGRESS", "none")
    assert progress_reporter(True, terminal) is None
    assert views(cli_reporter(terminal)) == [WarningView]  # the command line still shows warnings
    assert views(progress_reporter("lines", terminal)) == [LineView]  # only "auto" reads the variable
    monkeypatch.setenv("GENBENCH_PROGRESS", "fancy")
    with pytest.raises(UsageError, match="GENBENCH_PROGRESS"):
        progress_reporter(True, pipe)
    with pytest.raises(UsageError, match="progress="):
        progress_reporter("loud", pipe)


def test_the_api_callback_gets_increasing_counts_and_the_stages_totals(tmp_path, capfd):
    events: list[ProgressEvent] = []
    store = genbench.open_store(tmp_path / "store")
    genbench.run(SPEC, store=store, device="cpu", progress=events.append)
    assert all(isinstance(e, ProgressEvent) for e in events)
    for stage, total in (("training", 4), ("evaluating", 4 * 2)):
        staged = [e for e in events if e.stage == stage and e.kind != "warning"]
        assert staged[0].kind == "start" and staged[0].done == 0 and staged[0].eta is None
        assert staged[-1].kind == "end" and staged[-1].done == total
        assert {e.total for e in staged} == {total}
        done = [e.done for e in staged]
        assert done == sorted(done) and set(done) == set(range(total + 1))
        elapsed = [e.elapsed for e in staged]
        assert elapsed == sorted(elapsed)
    assert [e.stage for e in events if e.kind == "start"] == ["training", "evaluating"]
    assert "training:" not in capfd.readouterr().err  # a callable replaces the printed progress

    # progress=False is silent; the default prints lines (stderr is no terminal here)
    assert len(genbench.evaluate(["param-norm"], store=store, device="cpu", progress=False)) == 4
    assert capfd.readouterr().err == ""
    assert len(genbench.evaluate(["cross-entropy"], store=store, device="cpu")) == 4
    lines = capfd.readouterr().err.splitlines()
    assert lines[0] == "evaluating: 0/4 values, elapsed 0:00:00, ETA unknown"
    assert re.fullmatch(r"evaluating: 4/4 values, elapsed 0:00:\d\d, finished", lines[-1]), lines

    # a reporter of the caller's replaces any progress setting
    mine: list[ProgressEvent] = []
    genbench.evaluate(["path-norm"], store=store, device="cpu", reporter=ProgressReporter(CallbackView(mine.append)),
                      progress=lambda event: pytest.fail("the progress callable was called"))
    assert [(e.kind, e.done, e.total) for e in mine if e.kind != "progress"] == [("start", 0, 4), ("end", 4, 4)]
    assert capfd.readouterr().err == ""


def _cli(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GENBENCH_")}
    environment.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GENBENCH_LOAD_PLUGINS": "", **env})
    script = "import sys\nfrom genbench.cli.main import main\nsys.argv[0] = 'genbench'\nmain()\n"
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, env=environment,
                          timeout=300, check=False)


def test_the_command_line_prints_lines_when_stderr_is_a_pipe_and_none_with_none(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC_TOML)
    store = str(tmp_path / "store")
    done = _cli(["run", str(spec), "--store", store, "--format", "csv", "--device", "cpu"])
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert "training: 0/4 runs, elapsed 0:00:00, ETA unknown" in lines
    assert any(re.fullmatch(r"training: 4/4 runs, elapsed \d+:\d\d:\d\d, finished", line) for line in lines), lines
    assert "evaluating: 0/4 values, elapsed 0:00:00, ETA unknown" in lines
    assert any(re.fullmatch(r"evaluating: 4/4 values, elapsed \d+:\d\d:\d\d, finished", line) for line in lines), lines
    # the lines come in order, the training ones before the evaluation's
    progress = [line.split(":")[0] for line in lines if line.startswith(("training:", "evaluating:"))]
    assert progress == ["training", "training", "evaluating", "evaluating"]
    assert "\x1b[" not in done.stderr  # plain text: no escape codes of a bar

    quiet = _cli(["evaluate", "-m", "dist-from-init", "--store", store, "--device", "cpu", "--format", "csv"],
                 GENBENCH_PROGRESS="none")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "computed 4 new measure values" in quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if line.startswith(("training:", "evaluating:"))]


def test_describe_a_warning_and_an_unfinished_training():
    assert describe(ProgressEvent("training", "warning", 1, 4, detail="x")) == "warning: x"
    event = ProgressEvent("training", "end", 3, 4, elapsed=3725.0, groups=1, members=1)
    assert describe(event) == "training: 3/4 runs, elapsed 1:02:05, stopped with 1 run not done"
