"""genbench on an accelerator agrees with genbench on the CPU (marker ``gpu``).

These tests train and evaluate on ``cuda`` and compare with the same work on the CPU. They skip
where CUDA is absent, unless ``GENBENCH_GPU_TEST_DEVICE`` names another device to stand in for
it (``benchmarks/device_check.py --smoke`` sets ``cpu``, so that the comparisons themselves run
in CI, trivially equal). ``GENBENCH_GPU_TEST_SMOKE=1`` shrinks them to a few steps and measures.

Tolerances: a run trained on the device has the same status as on the CPU, its final training
and test accuracy within 1e-3 and its steps within 2 % (kernels sum in another order, so
trajectories drift in the last bits); a measure's value on the device is within ``rel 1e-3`` of
its value on the CPU for the weight and output measures, and within ``rel 0.25`` for the
families that draw Monte-Carlo noise or bisect on it (their draws run through other kernels).
"""

from __future__ import annotations

import math
import os
import shutil

import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from genbench.engine import Engine
from genbench.measures import builtin_measures
from genbench.models.cnn import CNNOptions, SmallConvNet
from genbench.models.mlp import MLPOptions, MultilayerPerceptron
from genbench.schemas import ComponentRef, CorruptionSpec, RunSpec, TrainConfig
from genbench.store import Store
from genbench.training.stacked_forward import stacked_forward, stacked_plan

DEVICE = os.environ.get("GENBENCH_GPU_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else None)
SMOKE = os.environ.get("GENBENCH_GPU_TEST_SMOKE", "") not in ("", "0")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE is None, reason="no CUDA device (GENBENCH_GPU_TEST_DEVICE names a stand-in)"),
]

#: The measure families that draw from ``ctx.generator`` (directly or through the shared
#: perturbation helpers): random perturbations, probes, retraining, bisections on them.
STOCHASTIC_FAMILIES = ("capability", "capacity", "curvature", "memorization", "optimization", "pacbayes", "sharpness", "stability")
#: The measures of a smoke run: one or two of each kind of computation.
SMOKE_MEASURES = ("param-norm", "dist-from-init", "path-norm", "pacbayes-flatness")


def _runs() -> list[RunSpec]:
    train = TrainConfig(lr=0.05, schedule="constant", max_steps=40 if SMOKE else 1500)
    models = [("mlp", {"hidden": [64]}), ("cnn", {"channels": [8, 16]})]
    return [
        RunSpec(
            dataset=ComponentRef(name="digits", options={"subset": 200 if SMOKE else 600}),
            model=ComponentRef(name=model, options=options),
            corruption=CorruptionSpec(name="labels", level=level),
            train=train,
            seed=seed,
        )
        for model, options in models
        for level in ((0.5,) if SMOKE else (0.0, 0.5))
        for seed in (0,)
    ]


def _measures():
    measures = builtin_measures()
    if SMOKE:
        measures = [m for m in measures if m.name in SMOKE_MEASURES]
    return [(measure, measure.Options()) for measure in measures]


def _tolerance(measure) -> float:
    module = type(measure).__module__.rsplit(".", 1)[-1]
    return 0.25 if module in STOCHASTIC_FAMILIES else 1e-3


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The same runs trained and evaluated on the device and on the CPU, and the runs the device
    trained evaluated on the CPU: {"device": values, "cpu": values, "device-on-cpu": values},
    and each store's runs {"device": {run id: result}, "cpu": …}."""
    root = tmp_path_factory.mktemp("gpu")
    runs, measures = _runs(), _measures()
    values, results = {}, {}
    for label, device in (("device", DEVICE), ("cpu", "cpu")):
        trained = Store(root / f"{label}-trained")
        with Engine(trained, device=device) as engine:
            engine.train(runs)
        results[label] = {spec.run_id: result for spec, result in trained.iter_runs([run.run_id for run in runs])}
        trained.close()
        shutil.copytree(root / f"{label}-trained", root / label)
        with Engine(Store(root / label), device=device) as engine:
            values[label] = engine.evaluate(measures)
    with Engine(Store(root / "device-trained"), device="cpu") as engine:
        values["device-on-cpu"] = engine.evaluate(measures)
    return runs, measures, values, results


def test_a_small_grid_trains_on_the_device_as_on_the_cpu(stores):
    runs, _, _, results = stores
    on_device, on_cpu = results["device"], results["cpu"]
    assert set(on_device) == set(on_cpu) == {run.run_id for run in runs}
    for run_id, result in on_device.items():
        reference = on_cpu[run_id]
        assert result.status == reference.status, run_id
        assert result.train_accuracy == pytest.approx(reference.train_accuracy, abs=1e-3)
        assert result.test_accuracy == pytest.approx(reference.test_accuracy, abs=1e-3)
        assert abs(result.steps - reference.steps) <= max(1, 0.02 * reference.steps)
        assert result.device.startswith(DEVICE.split(":")[0])


def _far_apart(values, references, measures) -> list[str]:
    """The values that differ from their references by more than their family's tolerance."""
    key = lambda value: (value.run_id, value.measure)  # noqa: E731
    ours = {key(value): value for value in values}
    theirs = {key(value): value for value in references}
    assert set(ours) == set(theirs) and ours
    by_name = {measure.name: measure for measure, _ in measures}
    far = []
    for k, value in ours.items():
        reference = theirs[k]
        if value.status != reference.status:
            far.append(f"{value.measure} on {value.run_id[:8]}: {value.status} ({value.error}) vs {reference.status} ({reference.error})")
            continue
        if value.status != "ok":
            continue
        tolerance = _tolerance(by_name[value.measure])
        if not math.isclose(value.value, reference.value, rel_tol=tolerance, abs_tol=1e-9):
            far.append(f"{value.measure} on {value.run_id[:8]}: {value.value} vs {reference.value} (rel {tolerance})")
    return far


def test_every_measure_on_the_device_agrees_with_the_cpu(stores):
    _, measures, values, _ = stores
    far = _far_apart(values["device"], values["cpu"], measures)
    assert not far, "\n".join(far)


def test_a_store_written_on_the_device_evaluates_on_the_cpu(stores):
    _, measures, values, _ = stores
    far = _far_apart(values["device-on-cpu"], values["device"], measures)
    assert not far, "\n".join(far)


@pytest.mark.parametrize("model, options, shape", [
    (MultilayerPerceptron(), MLPOptions(hidden=[64, 32]), (1, 8, 8)),
    (SmallConvNet(), CNNOptions(channels=[8, 16]), (3, 16, 16)),
])
def test_the_stacked_forward_equals_vmapped_functional_call_on_the_device(model, options, shape):
    import copy

    torch.manual_seed(0)
    copies = [model.build(shape, 10, options).to(DEVICE).eval() for _ in range(4)]
    plan = stacked_plan(copies[0])
    assert plan is not None  # both are plain Sequentials the stacked forward covers
    params, buffers = stack_module_state(copies)
    base = copy.deepcopy(copies[0]).to("meta")
    x = torch.randn(4, 32, *shape, device=DEVICE)
    with torch.no_grad():
        reference = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)))(params, buffers, x)
        ours = stacked_forward(plan, {k: v.detach() for k, v in params.items()}, x)
        alone = torch.stack([member(x[i]) for i, member in enumerate(copies)])
    assert torch.allclose(reference, alone, rtol=1e-4, atol=1e-5)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's synchronization debug mode needs CUDA")
def test_no_training_step_synchronizes_the_device():
    """On CUDA itself: a few ensemble training steps under ``torch.cuda.set_sync_debug_mode
    ("error")``, which raises on any host synchronization torch makes (a ``.item()``, a
    ``nonzero``, a masked index, a copy to the host); an epoch's first step (its data order is
    drawn on the host) and its end may synchronize."""
    from genbench.training import ensemble
    from genbench.training.ensemble import EnsembleTrainer

    model, options = MultilayerPerceptron(), MLPOptions(hidden=[64])
    x = torch.randn(512, 1, 8, 8)
    y = torch.randint(0, 10, (512,)).expand(4, -1).clone()
    config = TrainConfig(lr=0.05, schedule="constant", batch_size=64, max_steps=24)
    original = ensemble._Fit.train_step

    strict = []

    def strict_step(self):
        if self.step % self.steps_per_epoch == 0:  # an epoch's first step draws its data order on the host
            return original(self)
        strict.append(self.step)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(self)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ensemble._Fit, "train_step", strict_step)
        outcomes = EnsembleTrainer(config, DEVICE, model.vmappable).fit(
            lambda: model.build((1, 8, 8), 10, options), x, y, [0, 1, 2, 3]
        )
    assert all(outcome.steps == 24 for outcome in outcomes) and len(strict) == 21  # 24 steps, 3 epochs of 8
