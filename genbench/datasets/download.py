"""Fetching the file-backed datasets: the only code in genbench that reaches the network.

Used by ``genbench data download NAME``; loaders never call it. Each file is
streamed to a temporary name in the data folder, its MD5 checked against the
published checksum BEFORE anything is unpacked or moved into place, and only then
unpacked (CIFAR-10's tar archive) or renamed (the gzipped IDX files, which the
loaders read as they are). A failed or mismatching download leaves nothing behind.

Sources (the table ``SOURCES`` below; MD5s as published by the dataset authors and
used by torchvision):

=============  =========================================================  ================================
dataset        URL                                                        md5
=============  =========================================================  ================================
cifar10        https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz    c32a1d4ab5d03f1284b67883e8d87530
mnist          https://ossci-datasets.s3.amazonaws.com/mnist/ +
                 train-images-idx3-ubyte.gz                               f68b3c2dcbeaaa9fbdd348bbdeb94873
                 train-labels-idx1-ubyte.gz                               d53e105ee54ea40749a09fcbcd1e9432
                 t10k-images-idx3-ubyte.gz                                9fb629c4189551a2d022fa330f9573f3
                 t10k-labels-idx1-ubyte.gz                                ec29112dd5afa0611ce80d1b7f02629c
fashion-mnist  http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ +
                 train-images-idx3-ubyte.gz                               8d4fb7e6c68d591d4c3dfef9ec88bf0d
                 train-labels-idx1-ubyte.gz                               25c81989df183df01b3e8a0aad5dffbe
                 t10k-images-idx3-ubyte.gz                                bef4ecab320f06d8554ea6380940ec79
                 t10k-labels-idx1-ubyte.gz                                bb300cfdad3c16e7a12a480ee83cd310
=============  =========================================================  ================================

Fashion-MNIST falls back to the same files in Zalando's GitHub repository
(https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/).
Files land in ``<data dir>/cifar-10-batches-bin/``, ``<data dir>/mnist/`` and
``<data dir>/fashion-mnist/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from genbench.datasets.base import resolve_data_dir
from genbench.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name, its MD5, and the URLs to try in order."""

    filename: str
    md5: str
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and where its files go.

    ``folder`` is the folder (under the data dir) the loader reads; ``archive`` says the
    remote file is a tar.gz unpacked into the data dir (it creates ``folder``);
    ``expected`` are the files the loader needs, relative to ``folder``.
    """

    name: str
    folder: str
    files: tuple[RemoteFile, ...]
    expected: tuple[str, ...]
    archive: bool = False


_IDX = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", "25c81989df183df01b3e8a0aad5dffbe"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", "bef4ecab320f06d8554ea6380940ec79"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", "bb300cfdad3c16e7a12a480ee83cd310"),
)

SOURCES: dict[str, Source] = {
    "cifar10": Source(
        name="cifar10",
        folder="cifar-10-batches-bin",
        files=(
            RemoteFile(
                "cifar-10-binary.tar.gz",
                "c32a1d4ab5d03f1284b67883e8d87530",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            ),
        ),
        expected=tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",),
        archive=True,
    ),
    "mnist": Source(
        name="mnist",
        folder="mnist",
        files=tuple(RemoteFile(name, md5, (MNIST_MIRROR + name,)) for name, md5, _ in _IDX),
        expected=tuple(name for name, _, _ in _IDX),
    ),
    "fashion-mnist": Source(
        name="fashion-mnist",
        folder="fashion-mnist",
        files=tuple(RemoteFile(name, md5, tuple(m + name for m in FASHION_MIRRORS)) for name, _, md5 in _IDX),
        expected=tuple(name for name, _, _ in _IDX),
    ),
}

Opener = Callable[..., Any]
#: ``progress(filename, bytes_done, bytes_total_or_None)``
Progress = Callable[[str, int, "int | None"], None]


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, destination: Path, opener: Opener, progress: Progress | None, filename: str) -> str:
    """Stream ``url`` into ``destination``; the MD5 of what arrived."""
    digest = hashlib.md5(usedforsecurity=False)
    with opener(url, timeout=TIMEOUT_S) as response, destination.open("wb") as out:
        length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
        total = int(length) if length and str(length).isdigit() else None
        done = 0
        while chunk := response.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(filename, done, total)
        if total is not None and done < total:
            raise OSError(f"connection closed after {done:,} of {total:,} bytes")
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def fetch_verified(
    remote: RemoteFile, destination: Path, opener: Opener, progress: Progress | None, by_hand: str
) -> None:
    """Download ``remote`` to ``destination`` (mirrors in order) with a matching MD5, or raise.

    Nothing is left at ``destination`` when this fails.
    """
    failures, mismatches = [], []
    for url in remote.urls:
        try:
            got = _fetch(url, destination, opener, progress, remote.filename)
        except (urllib.error.URLError, OSError, ValueError, TimeoutError) as exc:
            destination.unlink(missing_ok=True)
            failures.append((url, _reason(exc)))
            continue
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
        if got == remote.md5:
            return
        destination.unlink(missing_ok=True)  # a bad copy: try the next mirror
        mismatches.append((url, got))
    if mismatches:
        url, got = mismatches[0]
        raise DataError(f"checksum mismatch for {url}: md5 {got}, expected {remote.md5}; nothing was kept or unpacked")
    url, reason = failures[0]
    raise DataError(f"cannot reach {url} ({reason}); download it by hand to {by_hand} (md5 {remote.md5})")


def _safe_member(name: str, folder: str) -> PurePosixPath | None:
    """The member's relative path when it is a plain path inside ``folder``, else None."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != folder:
        return None
    return path


def unpack_tar(archive: Path, root: Path, folder: str) -> list[Path]:
    """Extract the regular files under ``folder/`` of a tar.gz into ``root`` (nothing else:
    no links, no absolute or ``..`` paths); the paths written."""
    written = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                relative = _safe_member(member.name, folder)
                if relative is None or not member.isfile():
                    continue
                target = root.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.part")
                source = tar.extractfile(member)
                assert source is not None
                with source, partial.open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
                os.replace(partial, target)
                written.append(target)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"cannot unpack {archive}: {_reason(exc)}") from None
    return written


def is_present(name: str, data_dir: str | Path | None = None) -> bool:
    """Whether every file the loader of ``name`` needs is in the data folder."""
    source = SOURCES[name]
    folder = resolve_data_dir(data_dir) / source.folder
    return all((folder / f).is_file() or (folder / f.removesuffix(".gz")).is_file() for f in source.expected)


def download(
    name: str,
    data_dir: str | Path | None = None,
    *,
    force: bool = False,
    opener: Opener | None = None,
    progress: Progress | None = None,
    report: Callable[[str], None] | None = None,
) -> Path:
    """Fetch dataset ``name`` into the data folder; the folder its loader reads.

    Files already present are kept unless ``force``. ``opener`` defaults to
    ``urllib.request.urlopen`` (called as ``opener(url, timeout=...)``).
    """
    if name not in SOURCES:
        raise DataError(f"nothing to download for '{name}'; downloadable: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    opener = urllib.request.urlopen if opener is None else opener
    say = report or (lambda message: None)
    root = resolve_data_dir(data_dir)
    folder = root / source.folder
    if not force and is_present(name, root):
        say(f"{name} is already in {folder} (use --force to fetch it again)")
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {folder}: {exc.strerror or exc}") from None
    for remote in source.files:
        final = folder / remote.filename
        if not source.archive and not force and final.is_file() and md5_of(final) == remote.md5:
            say(f"{final} is already there")
            continue
        partial = root / f".{remote.filename}.part"
        by_hand = f"{root} and unpack it there" if source.archive else str(final)
        say(f"downloading {remote.filename}")
        fetch_verified(remote, partial, opener, progress, by_hand)
        say(f"md5 {remote.md5} verified")
        if source.archive:
            try:
                unpack_tar(partial, root, source.folder)
            finally:
                partial.unlink(missing_ok=True)
            missing = [f for f in source.expected if not (folder / f).is_file()]
            if missing:
                raise DataError(f"{remote.filename} did not contain {source.folder}/{missing[0]}")
        else:
            os.replace(partial, final)
    say(f"{name} is ready in {folder}")
    return folder
