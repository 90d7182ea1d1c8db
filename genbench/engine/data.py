"""The data a stage works on: a run's corrupted dataset, its trainer, and what a measure may see."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, TypeVar

import torch

from genbench.datasets import Dataset, load_dataset
from genbench.engine.resolve import validated_options
from genbench.errors import GenbenchError, PluginError
from genbench.errors import first_line
from genbench.plugins import origin_of, registry
from genbench.schemas import RunSpec, TrainConfig, content_hash
from genbench.training import Trainer, trainer_for

T = TypeVar("T")


class DataCache:
    """The corrupted datasets of recent runs, keyed by what they are a function of (dataset,
    corruption, test labels, data folder). Held by one engine; at most ``size`` datasets."""

    def __init__(self, data_dir: str | None = None, size: int = 64) -> None:
        self.data_dir, self.size = data_dir, size
        self._datasets: OrderedDict[str, Dataset] = OrderedDict()

    def key(self, run: RunSpec) -> str:
        return content_hash(
            {
                "dataset": run.dataset.model_dump(mode="json"),
                "corruption": run.corruption.model_dump(mode="json"),
                "test_labels": run.test_labels,
                "data_dir": self.data_dir,
            }
        )

    def prepare(self, run: RunSpec) -> Dataset:
        """The run's dataset with its corruption applied (deterministic in the spec)."""
        key = self.key(run)
        if key in self._datasets:
            self._datasets.move_to_end(key)
            return self._datasets[key]
        dataset = prepare_data(run, self.data_dir)
        self._datasets[key] = dataset
        while len(self._datasets) > self.size:
            self._datasets.popitem(last=False)
        return dataset


def guarded(kind: str, name: str, component: Any, run: RunSpec, call: Callable[[], T]) -> T:
    """``call()``, with an exception raised inside a component (a plugin's, or a built-in's) turned
    into one PluginError line naming the component, where it came from, and the run; genbench's
    own errors pass as they are (``GENBENCH_RAISE_ERRORS=1`` shows the traceback of the cause)."""
    try:
        return call()
    except GenbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, exit 7
        origin = origin_of(f"{kind}s", component)
        raise PluginError(f"{kind} {name!r}{f' ({origin})' if origin else ''} failed on run {run.run_id}: {first_line(exc)}") from exc


def prepare_data(run: RunSpec, data_dir: str | None = None) -> Dataset:
    """The run's dataset with its corruption applied (deterministic in the spec; not cached)."""
    factory = registry("datasets").get(run.dataset.name)
    options = validated_options("datasets", run.dataset)
    dataset = guarded("dataset", run.dataset.name, factory, run, lambda: load_dataset(factory, options, data_dir))
    corruption = registry("corruptions").get(run.corruption.name)
    settings = validated_options("corruptions", run.corruption)
    return guarded(
        "corruption", run.corruption.name, corruption, run,
        lambda: corruption.apply(dataset, run.corruption.level, run.corruption.seed, settings, run.test_labels),
    )


class GuardedModel:
    """A model factory whose calls into the component (``build``, and a closed-form model's
    ``fit``, ``initial`` and ``from_state``) are :func:`guarded`: an exception inside one is one
    line naming the model, its origin and ``run``. Every other attribute is the factory's."""

    CALLS = ("build", "fit", "initial", "from_state")

    def __init__(self, factory: Any, run: RunSpec) -> None:
        self._factory, self._run = factory, run

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._factory, name)
        if name not in self.CALLS or not callable(value):
            return value
        factory, run = self._factory, self._run

        def call(*args: Any, **kwargs: Any) -> Any:
            return guarded("model", factory.name, factory, run, lambda: value(*args, **kwargs))

        return call


def run_trainer(
    run: RunSpec,
    dataset: Dataset,
    device: torch.device,
    num_classes: int | None = None,
    train: TrainConfig | None = None,
) -> Trainer:
    """The trainer of the run's architecture on ``dataset``'s inputs (``num_classes`` outputs, the
    recipe ``train``; default the dataset's classes and the run's recipe)."""
    factory = registry("models").get(run.model.name)
    return trainer_for(
        GuardedModel(factory, run),
        validated_options("models", run.model),
        dataset.input_shape,
        dataset.num_classes if num_classes is None else num_classes,
        train or run.train,
        device,
    )


def uninformative_labels(run: RunSpec) -> bool:
    """Whether the run's training labels carry no information about its inputs: a corruption that
    declares ``uninformative_at_full`` at p_c = 1."""
    corruption = registry("corruptions").get(run.corruption.name)
    return bool(getattr(corruption, "uninformative_at_full", False)) and run.corruption.level == 1.0


def without_test_data(dataset: Dataset) -> Dataset:
    """``dataset`` with its test split emptied: what a measure may be handed."""
    return dataset.with_changes(x_test=dataset.x_test[:0], y_test=dataset.y_test[:0], y_test_clean=None)
