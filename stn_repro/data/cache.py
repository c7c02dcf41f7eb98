"""HDF5 cache of generated splits, one file per generator config, written atomically."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import torch
from torch import Tensor

from ..atomic import write_atomic
from ..errors import UserError

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


def config_key(config: dict) -> str:
    """Stable hash of a JSON-able generator config (with the cache version)."""
    blob = json.dumps({"version": CACHE_VERSION, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(cache_dir: str | Path, name: str, split: str, key: str) -> Path:
    return Path(cache_dir) / f"{name}-{split}-{key[:12]}.h5"


def write_split(path: Path, data: Split, key: str) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["key"] = key
            f.create_dataset("images", data=data.images.numpy(), compression="gzip",
                             compression_opts=1, chunks=True)  # fmt: skip
            f.create_dataset("labels", data=data.labels.numpy())
            f.create_dataset("params", data=data.params.numpy())

    write_atomic(path, write)


def read_split(path: Path, key: str) -> Split:
    """Read a cached split; a file that is unreadable or not what ``key`` names is an error."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("key") != key:
                raise ValueError("it holds another generator config")
            data = Split(*(torch.from_numpy(f[k][...]) for k in ("images", "labels", "params")))
    except (OSError, KeyError, ValueError) as err:
        raise UserError(
            f"the dataset cache {path} is corrupt ({err}); delete it and it will be regenerated."
        ) from None
    if not (len(data.images) == len(data.labels) == len(data.params)):
        raise UserError(
            f"the dataset cache {path} is corrupt (its arrays differ in length); "
            "delete it and it will be regenerated."
        )
    return data
