"""Base datasets read from their original files: MNIST (bundled in ``datasets/MNIST/raw``)."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path
from urllib.error import URLError

import torch
from torch import Tensor

from ..errors import UserError, warn
from ..files import locked

DIGIT = 28
"""Side of an MNIST digit in pixels."""

MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""MD5 of the four original MNIST files (the same as torchvision's)."""

DECODED_SHA256 = {
    "train": "d18cfd466eb143ac1097fde604dba9eec4116885869d04cc648b510949f9e88c",
    "test": "a0863a96c44e5666edbb30c4071ee79ca0514c621e6349c5967fc78e7305c891",
}
"""SHA-256 of each split as read (uint8 images, then int64 labels): the extracted ``*-ubyte``
files are what torchvision reads, so they are checked too, not only the archives."""


def md5sum(path: Path, block: int = 1 << 22) -> str:
    """MD5 of a file, read in blocks (archives of several GB)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


SAFE_EXTRACT = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
"""Refuse archive members that would land outside the folder (Python >= 3.10.12)."""


def download_file(url: str, path: Path, offline: str) -> None:
    """Download ``url`` to ``path`` (whole or not at all, via torchvision's ``download_url``);
    ``UserError(offline)`` naming the failure when it cannot be fetched."""
    from http.client import HTTPException

    from torchvision.datasets.utils import download_url

    from ..files import atomic_path

    with atomic_path(path) as tmp:
        try:
            download_url(url, str(tmp.parent), filename=tmp.name)
        except (OSError, HTTPException) as err:  # URLError is an OSError
            raise UserError(f"{offline} ({type(err).__name__})") from None


def extract_folder(archive: Path, folder: Path, marker: str) -> None:
    """Extract the tar archive ``archive`` and put its top folder ``folder.name`` at ``folder``
    whole: extracted into a staging folder beside it, checked to hold ``marker`` (a path inside
    the folder), then renamed into place. ``UserError`` when the archive is damaged or lacks
    it; nothing is left behind then."""
    staging = folder.parent / f".{folder.name}-extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, **SAFE_EXTRACT)
    except (tarfile.TarError, OSError, EOFError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{archive} could not be extracted ({type(err).__name__}: it is "
                        "damaged or not a tar.gz); delete it and rerun to download it "
                        "again") from None  # fmt: skip
    if not (staging / folder.name / marker).exists():
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{archive} did not hold {folder.name}/{marker}; is it the right "
                        "archive? Delete it and rerun to download it again")  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder left by hand
    (staging / folder.name).rename(folder)
    shutil.rmtree(staging, ignore_errors=True)


def mnist_raw_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def verify_mnist(data_dir: str | Path) -> bool:
    """True when all four files are present with their MD5s; raise if one is corrupt."""
    raw = mnist_raw_dir(data_dir)
    present = 0
    for name, md5 in MNIST_MD5.items():
        path = raw / name
        if path.exists():
            if md5sum(path) != md5:
                raise UserError(
                    f"{path} is corrupt (its MD5 is not {md5}): restore it with "
                    f"`git checkout -- {path}` or delete it so that it is downloaded again."
                )
            present += 1
    return present == len(MNIST_MD5)


def load_mnist(data_dir: str | Path, split: str) -> tuple[Tensor, Tensor]:
    """The MNIST ``split`` ("train": 60,000 digits, "test": 10,000) as uint8 images and labels.

    Reads the original ``.gz`` files in ``<data_dir>/MNIST/raw`` after checking their MD5s; when
    they are missing, torchvision downloads them there.

    Returns:
        images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64.
    """
    from torchvision.datasets import MNIST

    if split not in ("train", "test"):
        raise ValueError(f"MNIST split must be 'train' or 'test', got {split!r}")
    if not verify_mnist(data_dir):
        try:
            MNIST(str(data_dir), train=split == "train", download=True)
        except (RuntimeError, URLError, OSError) as err:
            raise UserError(
                f"the MNIST files are missing from {mnist_raw_dir(data_dir)} and downloading them "
                f"failed ({type(err).__name__}); copy the four original .gz files "
                f"({', '.join(MNIST_MD5)}) into that folder."
            ) from None
    raw = mnist_raw_dir(data_dir)
    with locked(raw / "extract"):
        for again in (False, True):
            try:
                # With the verified .gz files present, torchvision only extracts (no network).
                ds = MNIST(str(data_dir), train=split == "train", download=True)
                images, labels = ds.data.to(torch.uint8), ds.targets.to(torch.int64)
                if decoded_sha256(images, labels) == DECODED_SHA256[split]:
                    return images, labels
                problem = "differ from the original"
            except (RuntimeError, ValueError) as err:  # e.g. a truncated extracted file
                problem = f"are unreadable ({err})"
            if not again:
                warn(f"the extracted MNIST {split} files in {raw} {problem}; extracting again")
                for extracted in raw.glob("*-ubyte"):
                    extracted.unlink()
    raise UserError(
        f"the MNIST {split} files extracted in {raw} {problem} even after extracting them "
        "again from the verified archives; delete that folder's *-ubyte files and rerun"
    )


def decoded_sha256(images: Tensor, labels: Tensor) -> str:
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(labels.numpy().tobytes())
    return digest.hexdigest()
