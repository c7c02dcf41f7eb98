"""Image splits too large for memory: written once to HDF5, then read one sample at a time.

A store holds ``images`` ``(N, C, H, W)`` uint8 (uncompressed, one chunk per image, so a
DataLoader worker reads an image with one seek) and ``labels`` ``(N, ...)`` int64, with attributes
``key`` (what made it) and ``sha256`` (of both arrays), checked once when a run opens it. Images
of different sizes (CUB with its aspect ratios kept) are stored flattened, one variable-length
row each, with their ``(C, H, W)`` in ``shapes`` ``(N, 3)``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError, warn
from ..files import CorruptFile, atomic_path, locked, read_json, write_json
from ..signals import held_from_children, leave_to_parent
from .cache import cache_path

CHECK_BLOCK = 4096
"""Images hashed per read when checking a store."""


def write_store(
    path: Path,
    key: str,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    count: int,
    image_shape: tuple[int, ...] | None,
    label_shape: tuple[int, ...],
) -> None:
    """Write ``count`` samples, arriving as ``(images, labels)`` batches, to ``path`` atomically
    (a crash or a full disk leaves no partial store behind). ``image_shape`` None: images of
    different sizes (batches are lists of ``(C, H, W)`` arrays)."""  # fmt: skip
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        if image_shape is None:
            images = f.create_dataset("images", (count,), h5py.vlen_dtype(np.uint8))
            shapes = f.create_dataset("shapes", (count, 3), np.int32)
        else:
            images = f.create_dataset("images", (count, *image_shape), np.uint8,
                                      chunks=(1, *image_shape) if count else None)  # fmt: skip
        labels = f.create_dataset("labels", (count, *label_shape), np.int64)
        at = 0
        for image_batch, label_batch in batches:
            n = len(image_batch)
            if image_shape is None:
                for k, image in enumerate(image_batch):
                    images[at + k], shapes[at + k] = image.ravel(), image.shape
            else:
                images[at : at + n] = image_batch
            labels[at : at + n] = label_batch
            at += n
        if at != count:
            raise RuntimeError(f"expected {count} samples for {path}, got {at}")
        f.attrs["key"] = key
        f.attrs["sha256"] = store_hash(f)


def store_hash(f: h5py.File) -> str:
    digest = hashlib.sha256()
    images = f["images"]
    for start in range(0, len(images), CHECK_BLOCK):
        block = images[start : start + CHECK_BLOCK]
        for rows in block if "shapes" in f else [block]:  # images of different sizes: one by one
            digest.update(memoryview(np.ascontiguousarray(rows)))
    if "shapes" in f:
        digest.update(memoryview(np.ascontiguousarray(f["shapes"][...])))
    digest.update(memoryview(np.ascontiguousarray(f["labels"][...])))
    return digest.hexdigest()


def check_store(path: Path, key: str) -> int:
    """The number of samples in the store at ``path``; ``CorruptFile`` when it is unreadable,
    altered, or made from another config than ``key``."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("key") != key:
                raise CorruptFile("it was made from another config")
            if f.attrs.get("sha256") != store_hash(f):
                raise CorruptFile("its arrays do not match their checksum")
            return len(f["labels"])
    except (OSError, KeyError) as err:
        raise CorruptFile(f"it is unreadable ({err})") from None


class PixelStats:
    """Mean and standard deviation of every pixel value (scaled to [0, 1]) of the image batches
    passed through ``counted`` (one number each over all images, channels and positions)."""

    def __init__(self):
        self.total = self.total_sq = 0.0  # Python floats (JSON-able)
        self.count = 0

    def counted(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]):
        for images, labels in batches:
            for image in images if isinstance(images, list) else [images]:
                values = image.astype(np.float64) / 255
                self.total += float(values.sum())
                self.total_sq += float((values**2).sum())
                self.count += values.size
            yield images, labels

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        if not self.count:
            return 1.0
        return max(self.total_sq / self.count - self.mean**2, 0.0) ** 0.5


def prepared_stores(
    cache_dir: str | Path,
    name: str,
    key: str,
    build: Callable[[], tuple[dict[str, Dataset], dict]],
    workers: int,
    image_shape: tuple[int, ...] | None,
    label_shape: tuple[int, ...] = (),
) -> dict:
    """The stores ``train``, ``val``, ``test`` of dataset ``name`` made from ``key``'s inputs:
    reused when whole, else (re)made. ``build()`` returns ``({split: Dataset of (image uint8
    (C, H, W), label) numpy pairs}, extra info)``; a DataLoader with ``workers`` decodes them.

    Returns the info saved beside the stores: ``key``, ``stores`` (file names in
    ``cache_dir``), ``counts``, ``seconds`` (preprocessing time per split), ``pixel_mean`` and
    ``pixel_std`` (of the training images in [0, 1]; absent from SVHN stores made before they
    were added, which nothing reads there), and the extra info.
    """
    info_path = cache_path(cache_dir, name, "info", key).with_suffix(".json")
    stores = {s: cache_path(cache_dir, name, s, key) for s in ("train", "val", "test")}
    with locked(info_path):
        if info_path.exists():
            try:
                info = read_json(info_path)
                for path in stores.values():
                    check_store(path, key)
                return info
            except CorruptFile as err:
                warn(f"the preprocessed {name} files in {cache_dir} are damaged ({err}); "
                     "preprocessing them again")  # fmt: skip
        datasets, extra = build()
        seconds, stats = {}, PixelStats()
        for split, dataset in datasets.items():
            tic = time.perf_counter()
            loader = DataLoader(Decoded(dataset), batch_size=64, num_workers=workers,
                                collate_fn=stack, worker_init_fn=leave_to_parent)  # fmt: skip
            with held_from_children():  # a stop signal reaches this process, not its workers
                batches = decoded(iter(loader))  # iter forks the workers
            if split == "train":
                batches = stats.counted(batches)
            write_store(stores[split], key, batches, len(dataset), image_shape, label_shape)
            seconds[split] = round(time.perf_counter() - tic, 2)
        info = {"key": key, "stores": {s: path.name for s, path in stores.items()},
                "counts": {s: len(d) for s, d in datasets.items()}, "seconds": seconds,
                "pixel_mean": stats.mean, "pixel_std": stats.std, **extra}  # fmt: skip
        return write_json(info_path, info)


class Broken(str):
    """What went wrong decoding a sample, naming its file (a ``Decoded`` sample)."""


class Decoded(Dataset):
    """``dataset``'s samples, or a ``Broken`` for one whose file cannot be decoded (a truncated
    or garbled image): DataLoader workers hand it to the main process, which stops on it in one
    line (``decoded``); an exception raised in a worker would come back as a traceback.
    ``dataset.source(i)`` names sample ``i``'s file."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.dataset[i]
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for damaged images
            return Broken(f"{self.dataset.source(i)} cannot be read ({err})")


def decoded(batches: Iterable) -> Iterator[tuple]:
    """The batches, stopping with ``UserError`` at the first ``Broken`` sample."""
    for batch in batches:
        if isinstance(batch, Broken):
            raise UserError(f"{batch}: replace that file (extract its archive again)")
        yield batch


def stack(samples: list) -> tuple[np.ndarray | list[np.ndarray], np.ndarray] | Broken:
    """Collate ``(image, label)`` numpy pairs into two arrays (the images into a list when
    their sizes differ); a batch holding a ``Broken`` sample is that sample."""
    broken = [s for s in samples if isinstance(s, Broken)]
    if broken:
        return broken[0]
    images, labels = zip(*samples, strict=True)
    same = len({image.shape for image in images}) == 1
    return np.stack(images) if same else list(images), np.stack(labels)


class StoredImages(Dataset):
    """Samples of a store: ``(image (C, H', W') uint8, label)``.

    The file is opened lazily in each process, so the dataset can be handed to DataLoader
    workers. With ``crop`` set, images are cut to ``crop x crop``: at a random place for
    training samples (indexed ``(i, draw)``: the place depends on ``draw`` only, so a resumed
    run sees the same crops), at the centre for evaluation samples (indexed ``i``). With
    ``flip``, training samples are mirrored left-right with probability 1/2 (also by ``draw``).
    """

    def __init__(self, path: str | Path, count: int, crop: int | None = None, flip: bool = False):
        self.path, self.count, self.crop, self.flip = str(path), count, crop, flip
        self.file: h5py.File | None = None

    @property
    def augmented(self) -> bool:
        """Whether training samples are drawn at random (indexed ``(i, draw)``)."""
        return self.crop is not None or self.flip

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, draw = item if isinstance(item, tuple) else (item, None)
        if self.file is None:
            self.file = h5py.File(self.path, "r")
        image = self.file["images"][index]
        if "shapes" in self.file:  # stored flattened: images of different sizes
            image = image.reshape(self.file["shapes"][index])
        image = torch.from_numpy(image)  # (C, H, W) uint8
        label = torch.from_numpy(np.asarray(self.file["labels"][index]))
        g = None if draw is None else torch.Generator().manual_seed(draw)
        if self.crop is not None:
            h, w = image.shape[-2:]
            if g is None:
                top, left = (h - self.crop) // 2, (w - self.crop) // 2
            else:
                top = int(torch.randint(h - self.crop + 1, (), generator=g))
                left = int(torch.randint(w - self.crop + 1, (), generator=g))
            image = image[:, top : top + self.crop, left : left + self.crop]
        if self.flip and g is not None and torch.rand((), generator=g) < 0.5:
            image = image.flip(-1)
        return image, label

    def __getstate__(self) -> dict:  # an open h5py handle does not cross processes
        return {**self.__dict__, "file": None}
