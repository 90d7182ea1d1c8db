"""``mnist1d``: the procedurally generated 1-D analogue of MNIST (built locally, no download)."""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from genbench.datasets.base import Dataset, DatasetOptions, as_dataset
from genbench.errors import DataError


class MNIST1DOptions(DatasetOptions):
    seed: int = Field(42, description="seed of the generator (42 = the published MNIST-1D dataset)")
    num_samples: int = Field(5000, ge=10, description="examples generated in all, 1/10 per class")
    train_split: float = Field(0.8, gt=0, lt=1, description="fraction of the examples used for training")
    shuffle_seq: bool = Field(
        False, description="apply one fixed random permutation to the 40 positions (the paper's shuffled variant)"
    )

    @model_validator(mode="after")
    def _both_splits_nonempty(self) -> "MNIST1DOptions":
        generated = (self.num_samples // 10) * 10
        train = int(generated * self.train_split)
        if train == 0 or train == generated:
            raise ValueError(
                f"num_samples={self.num_samples} with train_split={self.train_split} leaves an empty train or test set"
            )
        return self


class MNIST1D:
    """MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024).

    Source: the ``mnist1d`` package, built with
    ``mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())`` — identical to the
    published file with the default options, a few seconds on a laptop CPU, no network
    (``get_dataset()`` is never called: it downloads and pickles). Each example is one
    of ten 12-point digit templates, padded, scaled, sheared, translated, with
    correlated and i.i.d. noise, resampled to 40 points. Defaults: 5,000 examples,
    4,000 train / 1,000 test, 10 classes.

    Preprocessing: the package's own (the whole set centred and scaled to unit std);
    nothing more. Inputs have shape (1, 40): one channel of 40 positions, ready for a
    1-D convolution (an MLP flattens it). The global ``random`` and ``numpy.random``
    states, which the package reseeds, are restored afterwards.
    """

    name: ClassVar[str] = "mnist1d"
    description: ClassVar[str] = "MNIST-1D: procedurally generated 40-point 1-D digits, 4,000/1,000 (built locally)"
    Options = MNIST1DOptions

    def load(self, options: MNIST1DOptions, data_dir: str | Path | None = None) -> Dataset:
        return _build(options.seed, options.num_samples, options.train_split, options.shuffle_seq)


@functools.lru_cache(maxsize=4)
def _build(seed: int, num_samples: int, train_split: float, shuffle_seq: bool) -> Dataset:
    try:
        import mnist1d.data as mnist1d_data
    except ImportError as exc:
        raise DataError(f"dataset 'mnist1d' needs the mnist1d package: pip install mnist1d ({exc})") from None
    args = mnist1d_data.get_dataset_args()
    args.seed, args.num_samples, args.train_split, args.shuffle_seq = seed, num_samples, train_split, shuffle_seq
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = mnist1d_data.make_dataset(args)
    except Exception as exc:  # the package is third-party code
        raise DataError(f"dataset 'mnist1d' could not be built: {type(exc).__name__}: {exc}") from None
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return as_dataset(
        "mnist1d", data["x"][:, None], data["y"], data["x_test"][:, None], data["y_test"], num_classes=10
    )
