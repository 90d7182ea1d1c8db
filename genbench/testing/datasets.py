"""``check_dataset``: a dataset factory's metadata and what its ``load`` returns; and tiny files
in the standard formats of the file-backed built-ins (CIFAR-10 binary, IDX) to load them from."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.datasets import Dataset
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


def _check_dataset_metadata_own_rules(dataset: Any) -> None:
    """Check the metadata of ``dataset`` (a factory instance or its class): a kebab-case name
    that no other distribution has registered, a one-line description, Options with defaults
    that survive JSON, and a ``load`` that takes (options, data_dir), ``data_dir`` also by
    keyword."""
    dataset = instance(dataset)
    name = getattr(dataset, "name", None)
    label = f"dataset {name!r}"
    check_name(label, name, "my-dataset")
    check_name_free("datasets", label, dataset)
    check_description(label, dataset)
    check_options_type(label, dataset)
    load = getattr(dataset, "load", None)
    if not callable(load):
        fail(label, "has no load(options, data_dir) method")
    try:
        signature = inspect.signature(load)
    except (TypeError, ValueError):  # a callable whose signature cannot be read: the calls tell
        return
    try:
        signature.bind("options", None)
        signature.bind("options", data_dir=None)
    except TypeError:
        fail(label, "load must take (options, data_dir), data_dir also by keyword")


def check_dataset_metadata(dataset: Any) -> None:
    """The kit's own rules for the metadata of ``dataset`` (above), then the registry's protocol
    (``genbench.protocols``), so that what passes here also registers."""
    dataset = instance(dataset)
    _check_dataset_metadata_own_rules(dataset)
    check_protocol("datasets", f"dataset {getattr(dataset, 'name', None)!r}", dataset)


def check_dataset(dataset: Any, options: Options | dict | None = None, data_dir: str | Path | None = None) -> None:
    """Check ``dataset`` (a factory instance, as registered, or its class) against the dataset
    contract, loading with ``options`` (an Options instance or a dict; default the defaults)
    from ``data_dir`` (for a dataset read from files: a folder that holds them). Beyond the
    metadata (``check_dataset_metadata``), ``load(options, data_dir)`` must:

    - reach no network while it loads (downloads belong to ``genbench data download``);
    - return a Dataset whose inputs ``x_train`` / ``x_test`` are float32 tensors of shape
      [n, *input_shape], the same input shape in both splits, all finite;
    - hold int64 label vectors ``y_train`` / ``y_test`` with one label per example
      (``num_train`` / ``num_test`` examples, both splits non-empty), in [0, num_classes);
    - declare ``num_classes`` (an int ≥ 2) that the training labels use: every class in
      range(num_classes) appears among them (a class that never appears means a wrong count);
    - be uncorrupted: ``y_train_clean`` / ``y_test_clean`` None or equal to the labels;
    - be deterministic: a second load gives an equal dataset."""
    dataset = instance(dataset)
    check_dataset_metadata(dataset)
    label = f"dataset {dataset.name!r}"
    options = resolve_options(label, dataset, options)
    first = _checked_load(label, dataset, options, data_dir)
    _check_loaded(label, first)
    second = _checked_load(label, dataset, options, data_dir)
    for field in dataclasses.fields(Dataset):
        a, b = getattr(first, field.name), getattr(second, field.name)
        same = _equal(a, b) if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) else a == b
        if not same:
            fail(label, f"two loads with the same options give different {field.name}; seed every random draw")


def _equal(a: Any, b: Any) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and torch.equal(a, b)
    )


def _checked_load(label: str, dataset: Any, options: Options, data_dir: str | Path | None) -> Dataset:
    attempts: list[str] = []
    try:
        with _no_network(attempts):
            loaded = dataset.load(options, data_dir)
    except ConformanceError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        if attempts:
            loaded = None
        else:
            hint = "" if data_dir is not None else "; pass data_dir= a folder that holds its files"
            fail(label, f"load raised {first_line(exc)}{hint}")
    if attempts:
        fail(label, f"load reached for the network ({attempts[0]}); loading must never download")
    if not isinstance(loaded, Dataset):
        fail(label, f"load must return a genbench.datasets.Dataset, got {type(loaded).__name__}")
    return loaded


def _check_loaded(label: str, data: Dataset) -> None:
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() < 2:
            got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            fail(label, f"x_{split} must be a float32 tensor of shape [n, *input_shape], got {got}")
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
            got = f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            fail(label, f"y_{split} must be an int64 vector of labels, got {got}")
        if y.shape[0] != x.shape[0]:
            fail(label, f"x_{split} holds {x.shape[0]} examples but y_{split} {y.shape[0]} labels")
        if x.shape[0] == 0:
            fail(label, f"its {split} split is empty")
        if not bool(torch.isfinite(x).all()):
            fail(label, f"x_{split} holds non-finite values")
    if data.x_test.shape[1:] != data.x_train.shape[1:]:
        fail(label, f"test inputs are {tuple(data.x_test.shape[1:])}, training inputs {data.input_shape}")
    classes = data.num_classes
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        fail(label, f"num_classes must be an int of at least 2, got {classes!r}")
    for split in ("train", "test"):
        y = getattr(data, f"y_{split}")
        if int(y.min()) < 0 or int(y.max()) >= classes:
            fail(label, f"y_{split} holds labels outside [0, {classes}) (num_classes = {classes})")
    missing = sorted(set(range(classes)) - set(data.y_train.unique().tolist()))
    if missing:
        fail(label, f"declares {classes} classes but class {missing[0]} never appears in the training labels")
    for split in ("train", "test"):
        clean = getattr(data, f"y_{split}_clean")
        if clean is not None and not _equal(clean, getattr(data, f"y_{split}")):
            fail(label, f"a loaded dataset is uncorrupted: y_{split}_clean must be None or equal y_{split}")


@contextlib.contextmanager
def _no_network(attempts: list[str]) -> Iterator[None]:
    """While the block runs, every connection or name lookup through ``socket`` fails and is
    noted in ``attempts``; afterwards ``socket`` is as it was."""
    patched = [
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
    ]
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name in patched]

    def refuse(what: str):
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(what)
            raise OSError(f"genbench.testing: {what} refused while a dataset loads")

        return refused

    for owner, name in patched:
        setattr(owner, name, refuse(f"socket.{name}"))
    try:
        yield
    finally:
        for owner, name, original in saved:
            if original is None:
                delattr(owner, name)  # it was inherited
            else:
                setattr(owner, name, original)


# --------------------------------------------------------------------------- tiny files
def write_tiny_cifar10(root: str | Path, per_file: int = 10, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 in its binary format under ``root/cifar-10-batches-bin/``:
    ``data_batch_1.bin`` … ``data_batch_5.bin`` with ``per_file`` records each and
    ``test_batch.bin`` with ``per_file`` records; every class appears in each file when
    ``per_file`` ≥ 10. Returns ``root``."""
    root = Path(root)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = (np.arange(per_file) % 10).astype(np.uint8)
        images = rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], images], axis=1).tobytes())
    return root


def write_tiny_idx(folder: str | Path, train: int = 20, test: int = 10, seed: int = 0) -> Path:
    """Write the four IDX files of an MNIST-like dataset (uint8 28×28 images, labels 0–9 in
    turn, so every class appears when ``train`` ≥ 10) into ``folder``. Returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (train, 28, 28)), 0x00000803),
        "train-labels-idx1-ubyte": (np.arange(train) % 10, 0x00000801),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (test, 28, 28)), 0x00000803),
        "t10k-labels-idx1-ubyte": (np.arange(test) % 10, 0x00000801),
    }
    for name, (array, magic) in arrays.items():
        header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
        (folder / name).write_bytes(header + array.astype(np.uint8).tobytes())
    return folder


def write_tiny_data_dir(root: str | Path) -> Path:
    """A data folder holding tiny files of every file-backed built-in dataset (``cifar10``,
    ``mnist``, ``fashion-mnist``) in their standard formats. Returns ``root``."""
    root = Path(root)
    write_tiny_cifar10(root)
    write_tiny_idx(root / "mnist")
    write_tiny_idx(root / "fashion-mnist", seed=1)
    return root
