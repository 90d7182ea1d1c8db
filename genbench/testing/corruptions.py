"""``check_corruption``: a corruption's metadata, and what its ``apply`` does to 200 digits."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import random
from typing import Any

import numpy as np
import torch

from genbench.datasets import Dataset, Digits, DigitsOptions, load_dataset
from genbench.schemas import Options
from genbench.testing._common import (
    ConformanceError,
    check_description,
    check_name,
    check_name_free,
    check_options_type,
    check_protocol,
    fail,
    first_line,
    instance,
    resolve_options,
)

#: The levels whose changed training examples must be nested (same seed).
NESTED_LEVELS = (0.25, 0.5, 1.0)
#: How many digits the corruption is applied to (the whole digits test split comes with them).
CHECK_TRAIN_SIZE = 200


def _check_corruption_metadata_own_rules(corruption: Any) -> None:
    """Check the metadata of ``corruption`` (an instance or its class): a kebab-case name that
    no other distribution has registered, a one-line description, Options with defaults that
    survive JSON, ``uninformative_at_full`` a bool when given, and an ``apply`` that takes
    (dataset, level, seed, options, test_labels), ``test_labels`` also by keyword."""
    corruption = instance(corruption)
    name = getattr(corruption, "name", None)
    label = f"corruption {name!r}"
    check_name(label, name, "my-corruption")
    check_name_free("corruptions", label, corruption)
    check_description(label, corruption)
    check_options_type(label, corruption)
    flag = getattr(corruption, "uninformative_at_full", False)
    if not isinstance(flag, bool):
        fail(label, f"uninformative_at_full must be a bool, got {flag!r}")
    apply = getattr(corruption, "apply", None)
    if not callable(apply):
        fail(label, "has no apply(dataset, level, seed, options, test_labels) method")
    try:
        signature = inspect.signature(apply)
    except (TypeError, ValueError):  # a callable whose signature cannot be read: the calls tell
        return
    try:
        signature.bind("dataset", 0.5, 0, "options", "clean")
        signature.bind("dataset", 0.5, 0, "options", test_labels="clean")
    except TypeError:
        fail(label, "apply must take (dataset, level, seed, options, test_labels), test_labels also by keyword")


def check_corruption_metadata(corruption: Any) -> None:
    """The kit's own rules for the metadata of ``corruption`` (above), then the registry's protocol
    (``genbench.protocols``), so that what passes here also registers."""
    corruption = instance(corruption)
    _check_corruption_metadata_own_rules(corruption)
    check_protocol("corruptions", f"corruption {getattr(corruption, 'name', None)!r}", corruption)


def check_dataset_for_corruptions() -> Dataset:
    """The data corruptions are checked on: the first 200 of a seeded shuffle of the digits'
    training split (1 × 8 × 8, 10 classes) and the whole test split (449 digits)."""
    return load_dataset(Digits(), DigitsOptions(subset=CHECK_TRAIN_SIZE))


def check_corruption(corruption: Any, options: Options | dict | None = None, dataset: Dataset | None = None) -> None:
    """Check ``corruption`` (an instance, as registered, or its class) against the corruption
    contract, with ``options`` (an Options instance or a dict; default the defaults), on
    ``dataset`` (default: 200 digits and the digits test split). Beyond the metadata
    (``check_corruption_metadata``), every call of ``apply`` must:

    - return a Dataset with the input's number of classes, the shapes and dtypes of its
      inputs and labels, labels in [0, num_classes), and the true labels kept: its
      ``clean_train_labels()`` / ``clean_test_labels()`` (``y_train_clean`` / ``y_test_clean``)
      equal to the input's;
    - leave the input dataset and its tensors as they were, and the global random number
      generators (torch, numpy, random) untouched;
    - with ``test_labels="clean"``, return the test labels unchanged.

    Across calls: the same arguments give an equal result (pure); level 0 is the identity on
    the training and test inputs and labels (with either ``test_labels``); the training
    examples changed at level 0.25 are among those changed at 0.5, and those among the ones
    changed at 1 (same seed; an example counts as changed when its input or its label
    differs); level 1 changes some training example; ``test_labels`` leaves the training split
    alone (the same under "clean" and "corrupted"); and ``test_labels="corrupted"`` corrupts
    the test labels the way the training labels are: a corruption that changes training labels
    at level 1 changes some test labels at level 1, one that changes no training label (an
    input corruption) changes no test label. Which test inputs change is the corruption's own
    choice (an option such as ``apply_to_test``) and is not checked. Every built-in corruption
    passes."""
    corruption = instance(corruption)
    check_corruption_metadata(corruption)
    label = f"corruption {corruption.name!r}"
    options = resolve_options(label, corruption, options)
    source = _copy(check_dataset_for_corruptions() if dataset is None else dataset)

    def apply(level: float, seed: int = 0, test_labels: str = "clean") -> Dataset:
        return _checked_apply(label, corruption, source, level, seed, options, test_labels)

    first, second = apply(0.5), apply(0.5)
    different = _differing_field(first, second)
    if different is not None:
        fail(
            label, f"gave another {different} for the same arguments; draw everything from generators seeded with seed"
        )
    for test_labels in ("clean", "corrupted"):
        identity = apply(0.0, test_labels=test_labels)
        for field in ("x_train", "y_train", "x_test", "y_test"):
            if not torch.equal(getattr(identity, field), getattr(source, field)):
                fail(
                    label, f"at level 0 (test_labels={test_labels!r}) it changed {field}; level 0 must be the identity"
                )
    changed = {level: _changed_examples(source, first if level == 0.5 else apply(level)) for level in NESTED_LEVELS}
    for low, high in itertools.pairwise(NESTED_LEVELS):
        if bool((changed[low] & ~changed[high]).any()):
            fail(
                label,
                f"training examples changed at level {low} are not all changed at level {high} (seed 0); raising "
                "the level must only add examples (choose them as torch.rand(n, generator=g) < level)",
            )
    if not bool(changed[1.0].any()):
        fail(label, "at level 1 it changes no training example")
    _check_test_labels(label, source, apply(1.0), apply(1.0, test_labels="corrupted"))


def _check_test_labels(label: str, source: Dataset, clean: Dataset, corrupted: Dataset) -> None:
    """At level 1: the training split does not depend on ``test_labels``; "corrupted" changes
    test labels exactly when the corruption changes training labels."""
    for field in ("x_train", "y_train", "y_train_clean"):
        if not _same(getattr(clean, field), getattr(corrupted, field)):
            fail(
                label,
                f"{field} differs between test_labels='clean' and 'corrupted'; "
                "test_labels concerns the test split only",
            )
    labels_corrupted = bool((clean.y_train != source.y_train).any())
    test_changed = bool((corrupted.y_test != source.y_test).any())
    if labels_corrupted and not test_changed:
        fail(
            label,
            "changes training labels, but with test_labels='corrupted' at level 1 every test label stays clean; "
            "corrupt the test labels the same way",
        )
    if not labels_corrupted and test_changed:
        fail(
            label,
            "changes no training label, but with test_labels='corrupted' it changed test labels; "
            "corrupt the test labels only as the training labels are",
        )


def _checked_apply(
    label: str, corruption: Any, source: Dataset, level: float, seed: int, options: Options, test_labels: str
) -> Dataset:
    """``apply`` on a fresh copy of ``source``, with every per-call rule checked."""
    where = f"{label} at level {level} (seed {seed}, test_labels={test_labels!r})"
    given = _copy(source)
    states = _rng_states()
    try:
        if test_labels == "clean":  # as the engine calls it
            result = corruption.apply(given, level, seed, options, test_labels)
        else:
            result = corruption.apply(given, level, seed, options, test_labels=test_labels)
    except ConformanceError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        fail(where, f"apply raised {first_line(exc)}")
    if not isinstance(result, Dataset):
        fail(where, f"apply must return a genbench.datasets.Dataset, got {type(result).__name__}")
    touched = _differing_field(source, given)
    if touched is not None:
        fail(where, f"changed {touched} of the dataset it was given; return a new Dataset (dataset.with_changes(...))")
    if not _same_rng_states(states, _rng_states()):
        fail(where, "used a global random number generator; draw from a torch.Generator seeded with seed")
    _check_result(where, source, result)
    if test_labels == "clean" and not torch.equal(result.y_test, source.y_test):
        fail(where, "changed the test labels; with test_labels='clean' they stay as they are")
    return result


def _check_result(where: str, source: Dataset, result: Dataset) -> None:
    if result.num_classes != source.num_classes:
        fail(where, f"changed num_classes from {source.num_classes} to {result.num_classes}")
    for field in ("x_train", "x_test", "y_train", "y_test"):
        before, after = getattr(source, field), getattr(result, field)
        if not isinstance(after, torch.Tensor) or after.shape != before.shape or after.dtype != before.dtype:
            got = f"{tuple(after.shape)} {after.dtype}" if isinstance(after, torch.Tensor) else type(after).__name__
            fail(where, f"{field} must keep its shape {tuple(before.shape)} and dtype {before.dtype}, got {got}")
    for field in ("y_train", "y_test"):
        labels = getattr(result, field)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= source.num_classes):
            fail(where, f"{field} holds labels outside [0, {source.num_classes})")
    for split, truth in (("train", source.clean_train_labels()), ("test", source.clean_test_labels())):
        kept = getattr(result, f"clean_{split}_labels")()
        if not isinstance(kept, torch.Tensor) or kept.dtype != truth.dtype or not torch.equal(kept, truth):
            fail(
                where,
                f"y_{split}_clean must hold the input's true {split} labels "
                f"(set y_{split}_clean=dataset.clean_{split}_labels())",
            )


def _copy(dataset: Dataset) -> Dataset:
    """``dataset`` with every tensor cloned (loaders cache their tensors: they must not be spoilt)."""
    return dataset.with_changes(
        **{
            field.name: value.clone()
            for field in dataclasses.fields(dataset)
            if isinstance(value := getattr(dataset, field.name), torch.Tensor)
        }
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and torch.equal(a, b)
        )
    return a == b


def _differing_field(a: Dataset, b: Dataset) -> str | None:
    """The first field of two datasets that differs (None when they are equal)."""
    for field in dataclasses.fields(Dataset):
        if not _same(getattr(a, field.name), getattr(b, field.name)):
            return field.name
    return None


def _changed_examples(source: Dataset, result: Dataset) -> torch.Tensor:
    """Boolean mask of the training examples whose input or label differs from ``source``'s."""
    inputs = (result.x_train != source.x_train).reshape(source.num_train, -1).any(dim=1)
    return inputs | (result.y_train != source.y_train)


def _rng_states() -> tuple[Any, ...]:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _same_rng_states(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    (torch_a, numpy_a, python_a), (torch_b, numpy_b, python_b) = a, b
    numpy_same = numpy_a[0] == numpy_b[0] and np.array_equal(numpy_a[1], numpy_b[1]) and numpy_a[2:] == numpy_b[2:]
    return torch.equal(torch_a, torch_b) and numpy_same and python_a == python_b
