"""Datasets: tensors plus metadata, and the built-in loaders.

A dataset plugin provides ``name``, ``description``, an ``Options`` model and
``load(options, data_dir) -> Dataset``. Loading must be deterministic in the
options (seeded splits) and must never download anything.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import torch
from pydantic import Field

from genbench.errors import DataError
from genbench.hookspecs import hookimpl
from genbench.schemas import Options


@dataclass(frozen=True)
class Dataset:
    """A train/test split held as CPU tensors.

    ``y_train`` are the labels to train on (possibly corrupted);
    ``y_train_clean`` the labels before any corruption.
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


def seeded_split(num_examples: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random train/test split drawn with ``seed`` (numpy PCG64)."""
    order = np.random.default_rng(seed).permutation(num_examples)
    num_test = int(round(num_examples * test_fraction))
    return np.sort(order[num_test:]), np.sort(order[:num_test])


class DigitsOptions(Options):
    test_fraction: float = Field(0.25, gt=0, lt=1, description="fraction of the 1,797 images held out as the test set")
    split_seed: int = Field(0, description="seed of the train/test split")
    standardize: bool = Field(
        True, description="scale pixels to [0, 1], then subtract the training mean and divide by the training std"
    )


class Digits:
    """scikit-learn's handwritten digits: 1,797 real 8×8 grey images, 10 classes.

    Shipped inside scikit-learn (no download). Split with a fixed seed into train
    and test (75 % / 25 % by default: 1,348 / 449 images); inputs have shape (1, 8, 8).
    """

    name: ClassVar[str] = "digits"
    description: ClassVar[str] = "scikit-learn's 1,797 handwritten 8×8 digits, seeded train/test split (embedded)"
    Options = DigitsOptions

    def load(self, options: DigitsOptions, data_dir: Path | None = None) -> Dataset:
        return _load_digits(options.test_fraction, options.split_seed, options.standardize)


@functools.lru_cache(maxsize=8)
def _load_digits(test_fraction: float, split_seed: int, standardize: bool) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    train, test = seeded_split(len(labels), test_fraction, split_seed)
    x_train, x_test = images[train], images[test]
    if standardize:
        mean, std = float(x_train.mean()), float(x_train.std())
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return Dataset(
        name="digits",
        x_train=torch.from_numpy(np.ascontiguousarray(x_train[:, None])),
        y_train=torch.from_numpy(labels[train]),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test[:, None])),
        y_test=torch.from_numpy(labels[test]),
        num_classes=10,
    )


@hookimpl
def register_datasets(register) -> None:
    register(Digits())
