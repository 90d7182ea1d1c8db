"""The conformance kit plugin authors run on their components: one check per component kind,
and a pytest plugin with fixtures.

    # tests/test_conformance.py of a genbench-<name> package
    from genbench.testing import check_corruption, check_dataset, check_measure, check_model

    def test_my_measure_keeps_the_measure_contract():
        check_measure(MyMeasure())

    def test_my_model_keeps_the_model_contract():
        check_model(MyModel())

    def test_my_corruption_keeps_the_corruption_contract():
        check_corruption(MyCorruption())

    def test_my_dataset_keeps_the_dataset_contract(tmp_path):
        check_dataset(MyDataset(), data_dir=folder_with_its_files)

Each check raises ``ConformanceError`` (an ``AssertionError``, so pytest reports a failed
test) with one line that names the component and the first rule it breaks. Every check takes
the component as an instance (as registered) or as its class, and checks that its name is
kebab-case and not already registered by another distribution.

``check_measure(measure, options=None, rtol=1e-6, architectures=("mlp", "cnn"))`` checks the
metadata (name, kind, version, requires, Options with defaults that survive JSON, a docstring
of the class's own with the formula), then computes the measure on two small fitted runs — an
MLP and a conv net on 160 digits with half of the labels corrupted, trained once per process
into a temporary store — through the same ``MeasureContext`` the engine builds, and checks
that:

- it returns a real number or an ``Estimate`` whose details the store accepts, finite on
  these fitted networks, and in [0, 1] for a capability;
- it leaves the context as it found it: the model's weights (bit for bit), the train/eval
  mode of every submodule, the training data;
- it reads ``ctx.retrainer``, ``ctx.initial_model`` and ``ctx.training_log`` only if it
  declares ``retrain``, ``init_weights`` and ``training_log``: undeclared ones are
  stand-ins that fail on any use, also when the measure catches the error (the evaluate
  stage puts the same stand-ins in every context it builds; here their error is a
  ConformanceError). (Type tests on them, such as ``isinstance``, cannot be seen. The
  training data and its sizes are always there; ``train_data`` in ``requires`` is
  informational.) A ``RetrainingMeasure`` is computed through its ``compute``, which trains
  its jobs for the run alone.
- it gives the same value on a fresh context of the same run (random draws come from
  ``ctx.generator``, which the engine seeds per run and measure).

It returns the value on each check run, by architecture. A measure meant for some
architectures only passes ``architectures=("mlp",)`` or ``("cnn",)``.

``check_model(model, num_classes=10, input_shapes=INPUT_SHAPES)`` builds the model for several
input shapes (8×8 digits, 1 × 40 sequences as MNIST-1D gives, 28×28×3 images) and checks that
each build either gives a module whose logits are [batch, classes] and finite, or raises a
``GenbenchError`` (such as ``SpecError``) that says why. For a model that declares
``vmappable`` it checks that a vmapped pair of copies equals the copies one at a time in
eval mode, and that the pair trains under ``vmap`` in train mode as the trainer runs it
(randomness "different", gradients); where ``genbench.training.stacked_forward`` applies, that its
logits equal the copies' too. Closed-form models (``closed_form = True``) get the
metadata checks only.

``check_corruption(corruption, options=None)`` checks the metadata (a one-line description,
Options, ``uninformative_at_full`` a bool, ``apply(dataset, level, seed, options,
test_labels)`` with ``test_labels`` also by keyword), then applies it to 200 digits: each
result is a Dataset of the input's shapes, dtypes and classes that keeps the true labels in
``y_train_clean`` / ``y_test_clean``; the input and the global random generators are left
alone; equal arguments give equal results; level 0 is the identity; the examples changed
grow with the level (0.25 ⊆ 0.5 ⊆ 1); ``test_labels="clean"`` leaves the test labels as they
are, and ``"corrupted"`` changes test labels exactly when the corruption changes training
labels (see its docstring for the full list). ``dataset=`` replaces the digits.

``check_dataset(dataset, options=None, data_dir=None)`` checks the metadata (a one-line
description, Options, ``load(options, data_dir)``), then loads it twice, with every network
connection refused: float32 inputs of one shape in both splits, finite; int64 labels in
[0, num_classes), one per example, every class present in the training labels; both splits
non-empty; uncorrupted; the two loads equal. For a dataset read from files pass ``data_dir``;
``write_tiny_data_dir(folder)`` writes tiny ``cifar10``, ``mnist`` and ``fashion-mnist`` files
in their standard formats (``write_tiny_cifar10``, ``write_tiny_idx`` one format each).

The pytest plugin (``genbench.testing.pytest_plugin``, registered as the ``pytest11`` entry
point ``genbench``, so installing genbench makes its fixtures available in every test suite)
provides, all session-scoped and all lazy (importing the plugin trains nothing and loads no
genbench plugin):

- ``genbench_check``: the checks as ``.measure``, ``.model``, ``.corruption``, ``.dataset``,
  and ``.ConformanceError``;
- ``genbench_trained_run``: ``genbench_trained_run(family, level=0.5, seed=0,
  model_options=None, dataset=None, train=None) -> TrainedRun``, a tiny run of model
  ``family`` trained once per session (the built-in families — mlp, cnn, mlp-1x512,
  mlp-3x512, small-alexnet, small-inception, small-inception-nobn, interpolation, kernel —
  in seconds on 100 digits, options and recipes in ``FAMILY_RUNS``; another registered model
  with its default options). A ``TrainedRun`` has ``.spec`` (the RunSpec), ``.result`` (the
  RunResult), ``.context(measure)`` (a fresh MeasureContext built as the evaluate stage
  builds it, with the stand-ins ``check_measure`` uses) and ``.compute(measure,
  options=None)`` (the measure's value with every per-computation rule of ``check_measure``
  checked);
- ``genbench_data_dir``: a folder written by ``write_tiny_data_dir``.

    def test_my_measure_on_an_inception(genbench_trained_run):
        run = genbench_trained_run("small-inception")
        assert run.compute(MyMeasure()) > 0
"""

from __future__ import annotations

import importlib
from typing import Any

from genbench.testing._common import NAME_PATTERN, ConformanceError

#: public name -> the module of genbench.testing that defines it (imported on first use, so
#: that importing genbench.testing, as pytest does for the plugin, stays light).
_LAZY = {
    "KINDS": "measures",
    "check_measure": "measures",
    "check_measure_metadata": "measures",
    "INPUT_SHAPES": "models",
    "check_model": "models",
    "check_corruption": "corruptions",
    "check_corruption_metadata": "corruptions",
    "check_dataset": "datasets",
    "check_dataset_metadata": "datasets",
    "write_tiny_cifar10": "datasets",
    "write_tiny_idx": "datasets",
    "write_tiny_data_dir": "datasets",
    "CHECK_MODELS": "runs",
    "CHECK_TRAIN": "runs",
    "FAMILY_RUNS": "runs",
    "TrainedRun": "runs",
    "TrainedRuns": "runs",
}

__all__ = [
    "CHECK_MODELS",
    "CHECK_TRAIN",
    "FAMILY_RUNS",
    "INPUT_SHAPES",
    "KINDS",
    "NAME_PATTERN",
    "ConformanceError",
    "TrainedRun",
    "TrainedRuns",
    "check_corruption",
    "check_corruption_metadata",
    "check_dataset",
    "check_dataset_metadata",
    "check_measure",
    "check_measure_metadata",
    "check_model",
    "write_tiny_cifar10",
    "write_tiny_data_dir",
    "write_tiny_idx",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"genbench.testing.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'genbench.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
