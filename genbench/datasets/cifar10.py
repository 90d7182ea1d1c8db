"""``cifar10``: CIFAR-10, binary version, read from the data folder."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from genbench.datasets.base import (
    Dataset,
    DatasetOptions,
    as_dataset,
    download_hint,
    file_stamps,
    resolve_data_dir,
    standardize,
)
from genbench.errors import DataError

FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
RECORD_BYTES = 1 + 3 * 32 * 32
CROP = 28


class CIFAR10Options(DatasetOptions):
    preprocessing: Literal["zhang", "standardize", "none"] = Field(
        "zhang",
        description="zhang: /255, centre crop 28×28, per-image standardization (x − mean) / max(std, 1/√2352) "
        "(Zhang et al. 2017); standardize: /255, per-channel standardization with training statistics, 32×32; "
        "none: /255 only, 32×32",
    )


class CIFAR10:
    """CIFAR-10 (Krizhevsky 2009): 60,000 32×32 colour images, 10 classes, 50,000 / 10,000.

    Source: the binary version, https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz,
    unpacked in the data folder as ``cifar-10-batches-bin/`` with ``data_batch_1.bin`` …
    ``data_batch_5.bin`` (training, in that order) and ``test_batch.bin``. Each file is a
    sequence of 3,073-byte records: one label byte (0–9), then 1,024 red, 1,024 green
    and 1,024 blue bytes, each plane row-major 32×32 (the official files hold 10,000
    records each). Fetch it with ``genbench data download cifar10``; loading never
    downloads. The data folder is ``data_dir`` (``--data-dir`` / ``$GENBENCH_DATA``),
    else ``~/.cache/genbench``.

    Preprocessing (option ``preprocessing``): ``zhang`` (default, Zhang et al. 2017 after
    TensorFlow's ``per_image_standardization``): pixels /255, centre crop to 28×28
    (rows and columns 2…29), then each image minus its own mean over all 2,352 values,
    divided by max(its std, 1/√2352) — inputs (3, 28, 28). ``standardize``: /255, then
    each channel minus the training mean and over the training std — (3, 32, 32).
    ``none``: /255 only — (3, 32, 32).
    """

    name: ClassVar[str] = "cifar10"
    description: ClassVar[str] = "CIFAR-10 binary files from the data folder; Zhang et al.'s 28×28 crop by default"
    Options = CIFAR10Options

    def load(self, options: CIFAR10Options, data_dir: str | Path | None = None) -> Dataset:
        root = resolve_data_dir(data_dir)
        folder = root / FOLDER
        paths = [folder / name for name in TRAIN_FILES + TEST_FILES]
        for path in paths:
            if not path.is_file():
                raise DataError(
                    f"CIFAR-10 file not found: {path}; fetch it with `{download_hint('cifar10', root)}`"
                )
        return _load(options.preprocessing, str(root), file_stamps(*paths))


def read_cifar_batch(path: Path, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) of one CIFAR-10 binary file."""
    hint = download_hint("cifar10", root if root is not None else path.parent.parent)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 file not found: {path}; fetch it with `{hint}`") from None
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 file {path}: {exc.strerror or exc}") from None
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataError(
            f"CIFAR-10 file {path} is truncated or corrupted: {raw.size:,} bytes is not a whole number of "
            f"{RECORD_BYTES:,}-byte records; fetch it again with `{hint} --force`"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(
            f"CIFAR-10 file {path} is corrupted: record {int(bad[0])} has label {int(labels[bad[0]])}, "
            f"outside 0–9 ({bad.size} such records)"
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def zhang_preprocess(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """/255, centre crop 28×28, per-image standardization with the 1/√n floor (float32)."""
    offset = (images.shape[-1] - CROP) // 2
    cropped = images[:, :, offset : offset + CROP, offset : offset + CROP]
    out = np.empty(cropped.shape, dtype=np.float32)
    floor = 1.0 / math.sqrt(math.prod(cropped.shape[1:]))
    for start in range(0, len(cropped), chunk):
        x = cropped[start : start + chunk].astype(np.float64) / 255.0
        flat = x.reshape(len(x), -1)
        mean = flat.mean(axis=1)
        std = np.maximum(flat.std(axis=1), floor)
        out[start : start + chunk] = (x - mean[:, None, None, None]) / std[:, None, None, None]
    return out


@functools.lru_cache(maxsize=2)
def _load(preprocessing: str, root: str, stamps: tuple) -> Dataset:
    root_path = Path(root)
    folder = root_path / FOLDER
    train = [read_cifar_batch(folder / name, root_path) for name in TRAIN_FILES]
    test = [read_cifar_batch(folder / name, root_path) for name in TEST_FILES]
    train_images = np.concatenate([images for images, _ in train])
    test_images = np.concatenate([images for images, _ in test])
    y_train = np.concatenate([labels for _, labels in train])
    y_test = np.concatenate([labels for _, labels in test])
    if preprocessing == "zhang":
        x_train, x_test = zhang_preprocess(train_images), zhang_preprocess(test_images)
    else:
        x_train = train_images.astype(np.float32) / 255.0
        x_test = test_images.astype(np.float32) / 255.0
        if preprocessing == "standardize":
            x_train, x_test = standardize(x_train, x_test, axes=(0, 2, 3))
    return as_dataset("cifar10", x_train, y_train, x_test, y_test, num_classes=10)
