"""``digits``: scikit-learn's handwritten 8×8 digits (shipped with scikit-learn)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from genbench.datasets.base import Dataset, DatasetOptions, as_dataset, seeded_split
from genbench.errors import DataError


class DigitsOptions(DatasetOptions):
    test_fraction: float = Field(0.25, gt=0, lt=1, description="fraction of the 1,797 images held out as the test set")
    split_seed: int = Field(0, description="seed of the train/test split")
    standardize: bool = Field(
        True, description="scale pixels to [0, 1], then subtract the training mean and divide by the training std"
    )


class Digits:
    """scikit-learn's handwritten digits: 1,797 real 8×8 grey images, 10 classes.

    Source: ``sklearn.datasets.load_digits`` (the UCI optical recognition of handwritten
    digits test set, shipped inside scikit-learn: no download). Preprocessing: pixels
    /16 into [0, 1], split with a fixed seed into train and test (75 % / 25 % by
    default: 1,348 / 449 images), then standardized with the training set's scalar
    mean and std. Inputs have shape (1, 8, 8).
    """

    name: ClassVar[str] = "digits"
    description: ClassVar[str] = "scikit-learn's 1,797 handwritten 8×8 digits, seeded train/test split (embedded)"
    Options = DigitsOptions

    def load(self, options: DigitsOptions, data_dir: str | Path | None = None) -> Dataset:
        return _load_digits(options.test_fraction, options.split_seed, options.standardize)


@functools.lru_cache(maxsize=8)
def _load_digits(test_fraction: float, split_seed: int, standardize_: bool) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    train, test = seeded_split(len(labels), test_fraction, split_seed)
    x_train, x_test = images[train], images[test]
    if standardize_:  # kept bit-for-bit as in genbench 0.1 (float32 statistics)
        mean, std = float(x_train.mean()), float(x_train.std())
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return as_dataset("digits", x_train[:, None], labels[train], x_test[:, None], labels[test], num_classes=10)
