"""``mnist`` and ``fashion-mnist``: IDX files read from the data folder."""

from __future__ import annotations

import functools
import gzip
import math
import zlib
from pathlib import Path
from typing import ClassVar

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

#: IDX magic numbers: two zero bytes, the type code (0x08 = unsigned byte), the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_bytes(path: Path, hint: str) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}; fetch it with `{hint}`") from None
    except EOFError:
        raise DataError(
            f"IDX file {path} is truncated (the gzip stream ends early); fetch it again with `{hint}`"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"IDX file {path} is corrupted: not a valid gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc.strerror or exc}") from None


def read_idx(path: str | Path, magic: int, hint: str = "genbench data download") -> np.ndarray:
    """The uint8 array stored in an IDX file (plain or ``.gz``), checked against ``magic``.

    Format: a big-endian 32-bit magic number ``0x000008NN`` (NN = number of
    dimensions), NN big-endian 32-bit sizes, then the bytes row-major.
    """
    path = Path(path)
    raw = _read_bytes(path, hint)
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes, no header; fetch it again with `{hint}`")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"IDX file {path} is corrupted: magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header; fetch it again with `{hint}`")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)
    payload = len(raw) - header
    if payload < expected:
        raise DataError(
            f"IDX file {path} is truncated: {payload:,} data bytes, its header {shape} promises {expected:,}; "
            f"fetch it again with `{hint}`"
        )
    if payload > expected:
        raise DataError(
            f"IDX file {path} is corrupted: {payload - expected:,} bytes beyond the {expected:,} "
            f"its header {shape} promises"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx(folder: Path, stem: str, hint: str) -> Path:
    """``folder/stem``, else ``folder/stem.gz``; a DataError naming both when neither exists."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"IDX file not found: {folder / stem} (or {stem}.gz); fetch it with `{hint}`")


def read_idx_split(
    images_path: Path, labels_path: Path, hint: str, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, rows, cols) and labels int64 (N,), checked against each other."""
    images = read_idx(images_path, IMAGES_MAGIC, hint)
    labels = read_idx(labels_path, LABELS_MAGIC, hint).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(
            f"IDX files disagree: {images_path} holds {len(images):,} images, {labels_path} {len(labels):,} labels"
        )
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise DataError(
            f"IDX file {labels_path} is corrupted: label {int(labels[bad[0]])} at index {int(bad[0])} "
            f"is outside 0–{num_classes - 1} ({bad.size} such labels)"
        )
    return images, labels


class MNISTOptions(DatasetOptions):
    standardize: bool = Field(
        True, description="scale pixels to [0, 1], then subtract the training mean and divide by the training std"
    )


class FashionMNISTOptions(MNISTOptions):
    """Options of ``fashion-mnist``: the same as ``mnist``'s."""


class _IDXImages:
    """Shared loader of a 10-class IDX dataset kept in ``data_dir/<folder>/``."""

    name: ClassVar[str]
    folder: ClassVar[str]
    title: ClassVar[str]

    def load(self, options: MNISTOptions, data_dir: str | Path | None = None) -> Dataset:
        root = resolve_data_dir(data_dir)
        hint = download_hint(self.name, root)
        folder = root / self.folder
        paths = {key: find_idx(folder, stem, hint) for key, stem in FILES.items()}
        stamps = file_stamps(*paths.values())
        return _load_idx(self.name, tuple(sorted(paths.items())), hint, options.standardize, stamps)


@functools.lru_cache(maxsize=4)
def _load_idx(name: str, paths: tuple[tuple[str, Path], ...], hint: str, standardize_: bool, stamps: tuple) -> Dataset:
    files = dict(paths)
    train_images, y_train = read_idx_split(files["train_images"], files["train_labels"], hint)
    test_images, y_test = read_idx_split(files["test_images"], files["test_labels"], hint)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"IDX files disagree: training images are {train_images.shape[1:]}, test images {test_images.shape[1:]}"
        )
    x_train = train_images[:, None].astype(np.float32) / 255.0
    x_test = test_images[:, None].astype(np.float32) / 255.0
    if standardize_:
        x_train, x_test = standardize(x_train, x_test, axes=(0, 1, 2, 3))
    return as_dataset(name, x_train, y_train, x_test, y_test, num_classes=10)


class MNIST(_IDXImages):
    """MNIST (LeCun et al. 1998): 70,000 28×28 grey handwritten digits, 60,000 / 10,000.

    Source: the four IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each plain or ``.gz``) in
    ``<data dir>/mnist/``, as published (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/).
    Fetch them with ``genbench data download mnist``; loading never downloads. The IDX
    header is checked (magic 0x00000803 images, 0x00000801 labels, big-endian sizes).

    Preprocessing: pixels /255 into [0, 1], then standardized with the training set's
    scalar mean and std (option ``standardize``). Inputs have shape (1, 28, 28).
    """

    name: ClassVar[str] = "mnist"
    folder: ClassVar[str] = "mnist"
    description: ClassVar[str] = "MNIST IDX files from the data folder: 60,000/10,000 28×28 handwritten digits"
    Options = MNISTOptions


class FashionMNIST(_IDXImages):
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 28×28 grey clothing images, 60,000 / 10,000.

    Source: the four IDX files (same names and format as MNIST, each plain or ``.gz``) in
    ``<data dir>/fashion-mnist/``, as published by Zalando Research
    (http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/). Fetch them with
    ``genbench data download fashion-mnist``; loading never downloads.

    Preprocessing: pixels /255 into [0, 1], then standardized with the training set's
    scalar mean and std (option ``standardize``). Inputs have shape (1, 28, 28).
    """

    name: ClassVar[str] = "fashion-mnist"
    folder: ClassVar[str] = "fashion-mnist"
    description: ClassVar[str] = "Fashion-MNIST IDX files from the data folder: 60,000/10,000 28×28 clothing images"
    Options = FashionMNISTOptions
