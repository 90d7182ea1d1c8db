"""The data a stage works on: a run's corrupted dataset, its trainer, and what a measure may see."""

from __future__ import annotations

from collections import OrderedDict

import torch

from genbench.datasets import Dataset, load_dataset
from genbench.engine.resolve import validated_options
from genbench.plugins import registry
from genbench.schemas import RunSpec, TrainConfig, content_hash
from genbench.training import Trainer, trainer_for


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


def prepare_data(run: RunSpec, data_dir: str | None = None) -> Dataset:
    """The run's dataset with its corruption applied (deterministic in the spec; not cached)."""
    factory = registry("datasets").get(run.dataset.name)
    dataset = load_dataset(factory, validated_options("datasets", run.dataset), data_dir)
    corruption = registry("corruptions").get(run.corruption.name)
    options = validated_options("corruptions", run.corruption)
    return corruption.apply(dataset, run.corruption.level, run.corruption.seed, options, run.test_labels)


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
        factory,
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
