"""HDF5 cache of generated splits, one file per generator config, written atomically, with a
SHA-256 of its arrays checked on every read."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import torch
from torch import Tensor

from ..files import CorruptFile, write_atomic

CACHE_VERSION = 1  # bump when a generator changes what it makes from the same config


@dataclass
class Split:
    """A generated split held in memory.

    images ``(N, C, H, W)`` uint8, labels ``(N,)`` int64, params ``(N, P)`` float32 (the
    per-image generation parameters).
    """

    images: Tensor
    labels: Tensor
    params: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Split:
        """This split with its tensors on ``device`` (itself when they are there already)."""
        return Split(self.images.to(device), self.labels.to(device), self.params.to(device))


def config_key(config: dict) -> str:
    """Stable hash of a JSON-able generator config (with the cache version)."""
    blob = json.dumps({"version": CACHE_VERSION, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(cache_dir: str | Path, name: str, split: str, key: str) -> Path:
    return Path(cache_dir) / f"{name}-{split}-{key[:12]}.h5"


def content_hash(images, labels, params) -> str:
    """SHA-256 over the three arrays' bytes (numpy arrays or tensors)."""
    digest = hashlib.sha256()
    for array in (images, labels, params):
        digest.update(memoryview(array.numpy() if isinstance(array, Tensor) else array))
    return digest.hexdigest()


def write_split(path: Path, data: Split, key: str) -> None:
    """Write ``data`` to ``path`` atomically. The file is built in memory first, so a full disk
    fails in our own write (an OSError) rather than inside HDF5."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["key"] = key
        f.attrs["sha256"] = content_hash(data.images, data.labels, data.params)
        f.create_dataset("images", data=data.images.numpy(), compression="gzip",
                         compression_opts=1, chunks=True)  # fmt: skip
        f.create_dataset("labels", data=data.labels.numpy())
        f.create_dataset("params", data=data.params.numpy())
    write_atomic(path, buf.getvalue())


def read_split(path: Path, key: str) -> Split:
    """Read a cached split; ``CorruptFile`` if it is unreadable, altered, or not what ``key``
    names."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("key") != key:
                raise CorruptFile("it holds another generator config")
            arrays = [f[k][...] for k in ("images", "labels", "params")]
            expected = f.attrs.get("sha256")
    except (OSError, KeyError) as err:
        raise CorruptFile(f"it is unreadable ({err})") from None
    if expected != content_hash(*arrays):
        raise CorruptFile("its arrays do not match their checksum")
    return Split(*(torch.from_numpy(a) for a in arrays))
