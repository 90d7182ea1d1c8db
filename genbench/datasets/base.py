"""What every dataset shares: the Dataset record, the factory protocol, the common
options (``subset``), seeded splits, standardization and the data folder.

A dataset plugin provides ``name``, ``description``, an ``Options`` model and
``load(options, data_dir) -> Dataset``. ``load`` returns the full dataset;
:func:`load_dataset` is what the engine calls, and it applies the ``subset``
option of :class:`DatasetOptions` on top, so a plugin whose Options inherit
:class:`DatasetOptions` gets ``subset`` for free. Loading must be deterministic
in the options (seeded splits) and must never download anything: downloads
happen only in ``genbench data download``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pydantic import Field, model_serializer

from genbench.choices import DATA_ENV  # the environment variable naming the data folder
from genbench.errors import DataError
from genbench.schemas import Options


@dataclass(frozen=True)
class Dataset:
    """A train/test split held as CPU tensors.

    ``x_*`` are float32 with a channel axis for images ((C, H, W) per example);
    ``y_*`` are int64 class indices. ``y_train`` are the labels to train on
    (possibly corrupted); ``y_train_clean`` the labels before any corruption.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    y_train_clean: torch.Tensor | None = None
    y_test_clean: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    def clean_train_labels(self) -> torch.Tensor:
        return self.y_train if self.y_train_clean is None else self.y_train_clean

    def clean_test_labels(self) -> torch.Tensor:
        return self.y_test if self.y_test_clean is None else self.y_test_clean

    def with_changes(self, **changes: object) -> "Dataset":
        return replace(self, **changes)


class DatasetFactory(Protocol):
    name: str
    description: str
    Options: type[Options]

    def load(self, options: Options, data_dir: Path | None) -> Dataset: ...


class DatasetOptions(Options):
    """Options every built-in dataset has: train on a seeded subset of the training set.

    When ``subset`` is None (the default) neither field appears in the options'
    serialized form, so run ids of specs written before ``subset`` existed stay the same.
    """

    subset: int | None = Field(
        None,
        gt=0,
        description="train on this many training examples only: the first n after a shuffle seeded with "
        "subset_seed (None = all); preprocessing statistics still come from the full training set",
    )
    subset_seed: int = Field(0, description="seed of the shuffle that picks the subset")

    @model_serializer(mode="wrap")
    def _omit_unused_subset(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict) and self.subset is None:
            data.pop("subset", None)
            data.pop("subset_seed", None)
        return data


def seeded_split(num_examples: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random train/test split drawn with ``seed`` (numpy PCG64)."""
    order = np.random.default_rng(seed).permutation(num_examples)
    num_test = int(round(num_examples * test_fraction))
    return np.sort(order[num_test:]), np.sort(order[:num_test])


def subset_indices(num_examples: int, size: int, seed: int) -> np.ndarray:
    """The first ``size`` indices of a permutation seeded with ``seed``, in increasing order.

    Subsets drawn with one seed are nested: a smaller one is part of every larger one.
    """
    return np.sort(np.random.default_rng(seed).permutation(num_examples)[:size])


def take_subset(dataset: Dataset, size: int, seed: int = 0) -> Dataset:
    """``dataset`` with only ``size`` seeded training examples (the test set is untouched)."""
    if size > dataset.num_train:
        raise DataError(
            f"dataset '{dataset.name}': subset={size} is larger than its {dataset.num_train} training examples"
        )
    index = torch.from_numpy(subset_indices(dataset.num_train, size, seed))
    clean = None if dataset.y_train_clean is None else dataset.y_train_clean[index]
    return dataset.with_changes(x_train=dataset.x_train[index], y_train=dataset.y_train[index], y_train_clean=clean)


def load_dataset(factory: DatasetFactory, options: Options, data_dir: str | Path | None = None) -> Dataset:
    """``factory.load(options, data_dir)``, then the ``subset`` option applied when it is set."""
    dataset = factory.load(options, data_dir)
    size = getattr(options, "subset", None)
    if size is None:
        return dataset
    return take_subset(dataset, int(size), int(getattr(options, "subset_seed", 0)))


def default_data_dir() -> Path:
    """``$GENBENCH_DATA`` when set, else ``$XDG_CACHE_HOME/genbench``, else ``~/.cache/genbench``."""
    explicit = os.environ.get(DATA_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "genbench"


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The folder that holds downloaded datasets: ``data_dir``, or :func:`default_data_dir`."""
    if data_dir is None or str(data_dir) == "":
        return default_data_dir()
    return Path(data_dir).expanduser()


def download_hint(name: str, root: Path) -> str:
    """The command that fetches dataset ``name`` into ``root``."""
    return f"genbench data download {name} --data-dir {root}"


def standardize(
    x_train: np.ndarray, x_test: np.ndarray, axes: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the training mean and divide by the training std, both taken over ``axes``
    (all axes = one scalar each; (0, 2, 3) = per channel of (N, C, H, W)), in place, float32."""
    mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    for x in (x_train, x_test):
        x -= mean
        x /= std
    return x_train, x_test


def as_dataset(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, num_classes: int
) -> Dataset:
    """A Dataset of float32 inputs and int64 labels (contiguous CPU tensors)."""
    return Dataset(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_test, dtype=np.int64)),
        num_classes=num_classes,
    )


def file_stamps(*paths: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of each file: part of the cache key of file-backed loaders,
    so a file replaced on disk is read again."""
    stamps = []
    for path in paths:
        stat = path.stat()
        stamps.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)
