"""The evaluate stage: one context per run shared by its measures, declared requirements only,
retraining batched per training group, and failures that stay where they happen."""

from __future__ import annotations

import importlib
import math
import pkgutil

import pytest
import torch
from typer.testing import CliRunner

import genbench
from genbench.cli.main import app
from genbench.engine import Engine, RetrainingBatch, resolve_measures, resolve_runs
from genbench.errors import ExitCode
from genbench.measures.base import BaseMeasure, RetrainingMeasure, RetrainJob
from genbench.schemas import ComponentRef, ExperimentSpec, TrainConfig

SPEC = ExperimentSpec(
    datasets=[ComponentRef(name="digits", options={"subset": 120})],
    models=[ComponentRef(name="mlp", options={"hidden": [16]})],
    levels=[0.0, 1.0],
    seeds=[0, 1],
    train=TrainConfig(lr=0.1, schedule="constant", max_steps=600),
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate") / "store"
    store = genbench.open_store(root)
    runs = resolve_runs(SPEC)
    Engine(store, device="cpu").train(runs)
    store.close()
    return root, runs


def fresh_copy(trained, tmp_path):
    import shutil

    root, runs = trained
    shutil.copytree(root, tmp_path / "store")
    return genbench.open_store(tmp_path / "store"), runs


class CountingContexts(BaseMeasure):
    """Records the cache object it sees on every run (the object itself, so that the caches of runs
    evaluated one after another stay alive and no two share an id)."""

    name = "counting-contexts"
    version = "1"

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def compute(self, ctx, options):
        ctx.cached("counting", lambda: len(self.seen))
        self.seen.append((ctx.spec.run_id, ctx.cache))
        return float(torch.rand(1, generator=ctx.generator))


class ReadsCache(CountingContexts):
    name = "reads-cache"


def test_the_measures_of_a_run_share_one_cache_and_each_run_has_its_own(trained, tmp_path):
    store, runs = fresh_copy(trained, tmp_path)
    first, second = CountingContexts(), ReadsCache()
    Engine(store, device="cpu").evaluate([(first, first.Options()), (second, second.Options())])
    caches = dict(first.seen)
    assert {run: id(cache) for run, cache in second.seen} == {run: id(cache) for run, cache in caches.items()}
    assert len({id(cache) for cache in caches.values()}) == len(runs)  # one per run


def test_evaluating_the_same_store_twice_in_one_process_gives_identical_values(trained, tmp_path):
    names = ["inverse-margin", "pacbayes-flatness", "pacbayes-init", "rademacher", "steps-to-fit", "vc-bound"]
    results = []
    for attempt in range(2):
        store, _ = fresh_copy(trained, tmp_path / str(attempt))
        Engine(store, device="cpu").evaluate(resolve_measures([ComponentRef(name=n) for n in names]))
        frame = store.measure_values().sort_values(["run_id", "measure"])
        results.append(list(zip(frame["run_id"], frame["measure"], frame["value"], frame["status"])))
    assert results[0] == results[1]
    assert {status for *_, status in results[0]} == {"ok"}


def test_no_module_level_mutable_state_in_the_measures_or_the_engine():
    mutable = (dict, list, set, bytearray)
    found = []
    for package in (genbench.measures, genbench.engine):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if not name.startswith("__") and isinstance(value, mutable):
                    found.append(f"{info.name}.{name}")
    assert not found


class ReadsInitial(BaseMeasure):
    name = "reads-initial"
    version = "1"

    def compute(self, ctx, options):
        return float(sum(p.sum() for p in ctx.initial_model.parameters()))


def test_an_undeclared_requirement_is_absent_in_the_engine(trained, tmp_path):
    store, runs = fresh_copy(trained, tmp_path)
    measure = ReadsInitial()
    values = Engine(store, device="cpu").evaluate([(measure, measure.Options())])
    assert {v.status for v in values} == {"failed"}
    assert "without declaring 'init_weights'" in values[0].error
    declared = type("DeclaresInitial", (ReadsInitial,), {"name": "declares-initial", "requires": frozenset({"init_weights"})})()
    values = Engine(store, device="cpu").evaluate([(declared, declared.Options())])
    assert {v.status for v in values} == {"ok"}


class Labelings(RetrainingMeasure):
    """The training accuracy of a network retrained on the run's own labels with seed 0 (identical
    jobs for runs with equal labels) and on labels shifted by the run's seed."""

    name = "labelings"
    version = "1"

    def jobs(self, ctx, options):
        labels = ctx.train_labels.cpu()
        return [RetrainJob(labels=labels, seed=0), RetrainJob(labels=(labels + 1) % ctx.num_classes, seed=ctx.spec.seed)]

    def finish(self, ctx, options, networks):
        accuracy = (ctx.retrainer.predict(networks[0].model, ctx.train_inputs).argmax(-1) == ctx.train_labels.cpu())
        return float(accuracy.double().mean())


def test_retraining_jobs_of_a_group_train_together_and_equal_jobs_alone(trained, tmp_path, monkeypatch):
    store, runs = fresh_copy(trained, tmp_path)
    chunks = []
    real = RetrainingBatch._train_chunk

    def recording(self, trainer, members):
        chunks.append(len(members))
        return real(self, trainer, members)

    monkeypatch.setattr(RetrainingBatch, "_train_chunk", recording)
    measure = Labelings()
    batched = {v.run_id: v.value for v in Engine(store, device="cpu").evaluate([(measure, measure.Options())])}
    # one ensemble per group, not per run; the two p_c = 0 runs have equal labels, so their
    # seed-0 jobs are one network: 2 × 4 jobs, 7 distinct
    assert chunks == [7]
    # each run alone (through ctx.retrainer) gives the same values: the MLP trains the same in any ensemble
    engine = Engine(store, device="cpu")
    for run, result in store.iter_runs():
        alone = measure.compute(engine.context(run, result, measure), measure.Options())
        assert alone == pytest.approx(batched[run.run_id], abs=1e-12)


def test_a_damaged_checkpoint_fails_that_runs_values_only_and_the_command_exits_non_zero(trained, tmp_path):
    store, runs = fresh_copy(trained, tmp_path)
    damaged = runs[1].run_id
    path = store.checkpoint_path(damaged, "final")
    path.write_bytes(path.read_bytes()[:50])
    result = CliRunner().invoke(app, ["evaluate", "--measure", "params", "--measure", "inverse-margin",
                                      "--store", str(tmp_path / "store")])
    assert result.exit_code == ExitCode.STORE_ERROR, result.output
    assert f"run {damaged}" in result.output and "checkpoint unreadable" in result.output
    values = store.measure_values()
    ok = values[values["status"] == "ok"]
    assert set(ok["run_id"]) == {r.run_id for r in runs} - {damaged} and len(ok) == 2 * (len(runs) - 1)
    failed = values[values["status"] == "failed"]
    assert set(failed["run_id"]) == {damaged} and failed["error"].str.contains("checkpoint unreadable").all()
    # repaired, the failed values are computed next time, and only they
    original = trained[0] / "checkpoints" / damaged / "final.safetensors"
    path.write_bytes(original.read_bytes())
    again = Engine(store, device="cpu").evaluate(resolve_measures([ComponentRef(name="params"), ComponentRef(name="inverse-margin")]))
    assert {v.run_id for v in again} == {damaged} and {v.status for v in again} == {"ok"}


class ReturnsNaN(BaseMeasure):
    name = "returns-nan"
    version = "1"

    def compute(self, ctx, options):
        return math.nan


def test_a_nan_value_is_a_failure_with_its_reason_and_is_computed_again(trained, tmp_path):
    store, runs = fresh_copy(trained, tmp_path)
    measure = ReturnsNaN()
    engine = Engine(store, device="cpu")
    values = engine.evaluate([(measure, measure.Options())])
    assert [v.status for v in values] == ["failed"] * len(runs)
    assert values[0].error == "the measure returned NaN"
    assert len(engine.evaluate([(measure, measure.Options())])) == len(runs)


def test_a_diverged_run_is_skipped_with_its_reason_and_not_retried(tmp_path):
    spec = SPEC.model_copy(update={"levels": [0.0], "seeds": [0], "train": TrainConfig(lr=1e12, schedule="constant", max_steps=30)})
    store = genbench.open_store(tmp_path / "store")
    engine = Engine(store, device="cpu")
    engine.train(resolve_runs(spec))
    [value] = engine.evaluate(resolve_measures([ComponentRef(name="params")]))
    assert value.status == "skipped" and "diverged" in value.error and math.isnan(value.value)
    assert engine.evaluate(resolve_measures([ComponentRef(name="params")])) == []


def test_values_record_their_kind_and_whether_their_options_are_the_defaults(trained, tmp_path):
    store, _ = fresh_copy(trained, tmp_path)
    engine = Engine(store, device="cpu")
    engine.evaluate(resolve_measures([ComponentRef(name="cross-validation"), ComponentRef(name="inverse-margin", options={"percentile": 5})]))
    frame = store.measure_values().drop_duplicates("measure").set_index("measure")
    assert frame.loc["cross-validation", "kind"] == "capability" and frame.loc["cross-validation", "default_options"]
    assert frame.loc["inverse-margin", "kind"] == "complexity" and not frame.loc["inverse-margin", "default_options"]


class OneBadJob(RetrainingMeasure):
    """A good job, and (on runs at p_c = 1) a job whose training indices point past the data."""

    name = "one-bad-job"
    version = "1"

    def jobs(self, ctx, options):
        n, labels = ctx.num_train, ctx.train_labels.cpu()
        jobs = [RetrainJob(labels=labels, seed=ctx.spec.seed, train_indices=torch.arange(n))]
        if ctx.spec.corruption.level == 1.0:
            jobs.append(RetrainJob(labels=labels, seed=ctx.spec.seed, train_indices=torch.arange(n) + 1))
        return jobs

    def finish(self, ctx, options, networks):
        return float(len(networks))


def test_a_job_that_cannot_train_fails_its_own_value_only(trained, tmp_path):
    store, runs = fresh_copy(trained, tmp_path)
    measure = OneBadJob()
    values = {v.run_id: v for v in Engine(store, device="cpu").evaluate([(measure, measure.Options())])}
    for run in runs:
        value = values[run.run_id]
        if run.corruption.level == 1.0:
            assert value.status == "failed" and "train_indices must be non-empty and lie in" in value.error
        else:
            assert value.status == "ok" and value.value == 1.0


def test_identical_jobs_are_one_network_whatever_their_form(trained, tmp_path):
    store, runs = fresh_copy(trained, tmp_path)
    run, result = next(iter(store.iter_runs()))
    engine = Engine(store, device="cpu")
    dataset = engine.evaluation.run_context(run, result).dataset
    batch = RetrainingBatch(torch.device("cpu"))
    labels = dataset.y_train
    batch.add(run, dataset, [RetrainJob(labels=labels, seed=3), RetrainJob(labels=labels.clone(), seed=3,
                                         train_indices=torch.arange(len(labels)), num_classes=dataset.num_classes)])
    assert batch.distinct_jobs == 1
    with pytest.raises(ValueError, match="labels must lie in"):
        batch.add(run, dataset, [RetrainJob(labels=labels, seed=4), RetrainJob(labels=labels + 100, seed=5)])
    assert batch.distinct_jobs == 1  # a job list that fails its checks adds nothing


class UnstorableDetails(BaseMeasure):
    name = "unstorable-details"
    version = "1"

    def compute(self, ctx, options):
        return genbench.Estimate(1.0, {"per_layer": [1.0, 2.0]})


class NotDefinedHere(BaseMeasure):
    name = "not-defined-here"
    version = "1"

    def compute(self, ctx, options):
        raise genbench.errors.NotApplicable("no such quantity on this run")


def test_unstorable_outcomes_fail_and_inapplicable_ones_are_skipped(trained, tmp_path):
    store, runs = fresh_copy(trained, tmp_path)
    engine = Engine(store, device="cpu")
    measures = [UnstorableDetails(), NotDefinedHere(), *[m for m, _ in resolve_measures([ComponentRef(name="params")])]]
    values = engine.evaluate([(m, m.Options()) for m in measures])
    by_measure = {}
    for value in values:
        by_measure.setdefault(value.measure, set()).add(value.status)
    assert by_measure == {"unstorable-details": {"failed"}, "not-defined-here": {"skipped"}, "params": {"ok"}}
    assert "cannot be stored" in next(v for v in values if v.measure == "unstorable-details").error
    # skipped values are not computed again, failed ones are
    again = engine.evaluate([(m, m.Options()) for m in measures])
    assert {v.measure for v in again} == {"unstorable-details"}


class ChangesWithoutDeclaring(BaseMeasure):
    name = "changes-without-declaring"
    version = "1"

    def compute(self, ctx, options):
        from genbench.measures.quantities import weight_changes

        return float(sum(w.abs().sum() for w in weight_changes(ctx)))


def test_the_run_cache_does_not_hand_undeclared_quantities_on(trained, tmp_path):
    store, runs = fresh_copy(trained, tmp_path)
    declared = type("ChangesDeclared", (ChangesWithoutDeclaring,), {"name": "changes-declared",
                                                                     "requires": frozenset({"init_weights"})})()
    undeclared = ChangesWithoutDeclaring()
    values = Engine(store, device="cpu").evaluate([(declared, declared.Options()), (undeclared, undeclared.Options())])
    statuses = {(v.measure, v.status) for v in values}
    assert statuses == {("changes-declared", "ok"), ("changes-without-declaring", "failed")}


def test_a_run_whose_data_cannot_be_prepared_fails_its_values_and_exits_with_the_data_code(trained, tmp_path, monkeypatch):
    from genbench.engine.data import DataCache
    from genbench.errors import DataError

    store, runs = fresh_copy(trained, tmp_path)
    broken = runs[0].run_id
    real = DataCache.prepare

    def prepare(self, run):
        if run.run_id == broken:
            raise DataError("dataset files changed since training")
        return real(self, run)

    monkeypatch.setattr(DataCache, "prepare", prepare)
    result = CliRunner().invoke(app, ["evaluate", "--measure", "params", "--store", str(tmp_path / "store")])
    assert result.exit_code == ExitCode.DATA_ERROR, result.output
    assert "dataset files changed since training" in result.output
    values = store.measure_values()
    assert set(values.loc[values["status"] == "failed", "run_id"]) == {broken}
    assert (values["status"] == "ok").sum() == len(runs) - 1


class AlwaysRaises(BaseMeasure):
    name = "always-raises"
    version = "1"

    def compute(self, ctx, options):
        raise RuntimeError("boom")


class Warnings:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warn(self, message: str) -> None:
        self.lines.append(message)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def test_a_failing_measure_is_summarized_in_one_line_per_measure(trained, tmp_path):
    store, runs = fresh_copy(trained, tmp_path)
    measure, reporter = AlwaysRaises(), Warnings()
    Engine(store, device="cpu", reporter=reporter).evaluate([(measure, measure.Options())])
    n = len(runs)
    [line] = reporter.lines  # one line for the measure, not one per run
    head = f"measure always-raises failed on {n} of {n} runs: RuntimeError: boom ({n} of them, first on run "
    assert line.startswith(head) and line.endswith(")")
    assert line[len(head):-1] in {run.run_id for run in runs}
