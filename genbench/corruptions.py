"""The randomization tests of Zhang et al. (ICLR 2017, §2.1) as corruptions.

A corruption plugin provides ``name``, ``description``, an ``Options`` model and
``apply(dataset, level, seed, options, test_labels) -> Dataset``, a pure function
of its arguments: the corruption is drawn once from ``seed`` and stays fixed.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Protocol

import torch

from genbench.datasets import Dataset
from genbench.hookspecs import hookimpl
from genbench.schemas import Options

TEST_LABEL_SEED_OFFSET = 1_000_003


class Corruption(Protocol):
    name: str
    description: str
    Options: type[Options]

    def apply(
        self,
        dataset: Dataset,
        level: float,
        seed: int,
        options: Options,
        test_labels: Literal["clean", "corrupted"] = "clean",
    ) -> Dataset: ...


def corrupt_labels(labels: torch.Tensor, num_classes: int, level: float, seed: int) -> torch.Tensor:
    """Each label independently, with probability ``level``, replaced by a class drawn
    uniformly from all ``num_classes`` (possibly the true one, so at level 1 about
    1/K of the labels stay right by chance). Zhang et al. 2017, §2.1."""
    generator = torch.Generator().manual_seed(int(seed))
    chosen = torch.rand(labels.shape[0], generator=generator) < level
    replacement = torch.randint(0, num_classes, (labels.shape[0],), generator=generator)
    return torch.where(chosen, replacement, labels)


class LabelsOptions(Options):
    pass


class PartiallyCorruptedLabels:
    """Partially corrupted labels (Zhang et al. 2017, §2.1): each training label,
    with probability p = level, replaced by a uniformly random class. Test labels
    stay clean unless ``test_labels = "corrupted"``, in which case the same
    process (with a seed derived from ``seed``) is applied to them."""

    name: ClassVar[str] = "labels"
    description: ClassVar[str] = "each training label with probability p replaced by a uniform random class"
    Options = LabelsOptions

    def apply(self, dataset, level, seed, options, test_labels="clean") -> Dataset:
        y_train = corrupt_labels(dataset.y_train, dataset.num_classes, level, seed)
        y_test = dataset.y_test
        if test_labels == "corrupted":
            y_test = corrupt_labels(dataset.y_test, dataset.num_classes, level, seed + TEST_LABEL_SEED_OFFSET)
        return dataset.with_changes(
            y_train=y_train,
            y_test=y_test,
            y_train_clean=dataset.clean_train_labels(),
            y_test_clean=dataset.clean_test_labels(),
        )


@hookimpl
def register_corruptions(register) -> None:
    register(PartiallyCorruptedLabels())
