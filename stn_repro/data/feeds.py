"""Feeds: the batches a run trains and evaluates on, from one of two kinds of storage.

- ``MemoryFeed`` (generated MNIST sets): whole uint8 splits held as tensors and indexed on the
  training device; fastest for small images, and fresh distortions each epoch are cheap.
- ``FileFeed`` (SVHN, GTSRB, CUB: real images): splits preprocessed once into HDF5 stores, read
  per sample by a torch DataLoader with workers, with per-sample augmentation.

Both give ``train_batches(start)``: the batches of iterations ``start, start + 1, ...`` as
``(x, y)`` on the device, x float ``(B, C, ...)`` in [0, 1] (or normalised, where the
dataset's params ask for it: ``input_normalisation``). Batch ``t`` depends only on
(seed, t), so a resumed run sees the batches it would have seen. ``eval_batches(split)`` walks
a whole evaluation split (``val`` where the dataset has one, ``test``). Given ``where`` (this
process's place among several training together, ``distributed.Ranks``), both give this
rank's share only: its slice of each global batch, and samples ``rank, rank + world, ...`` of
the split.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from ..distributed import ALONE, shard
from ..signals import held_from_children, leave_to_parent
from . import Split, load_split, make_inputs, separate_pool
from .stored import StoredImages

EVAL_BATCH = 256


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int, device: str = "cpu") -> Tensor:
    """The seeded permutation of n samples that epoch ``epoch`` visits them in, on ``device``
    (cached: drawing it every step cost 0.2 ms on an idle CPU, and a copy to a GPU per step
    would wait for the GPU). Do not modify it."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm.to(device)


def batch_indices(n: int, batch_size: int, iteration: int, seed: int,
                  device: str = "cpu") -> Tensor:  # fmt: skip
    """Indices of the batch at ``iteration`` (on ``device``): epochs are seeded permutations of
    the n samples, so the batch order depends on (seed, iteration) only and a resumed run sees
    the same."""
    epoch, offset = divmod(iteration * batch_size, n)
    idx = torch.empty(0, dtype=torch.int64, device=device)
    while len(idx) < batch_size:  # wrap into the next epochs
        perm = epoch_order(n, seed, epoch, device)
        idx = torch.cat([idx, perm[offset : offset + batch_size - len(idx)]])
        epoch, offset = epoch + 1, 0
    return idx


class MemoryFeed:
    """Generated splits held in memory (``train``, ``test`` and, with ``dataset.validation=N``,
    ``val``: the last N training digits, drawn once and never trained on), on the training
    device: a batch is an index into them, with no copy from the host."""

    def __init__(self, cfg: DictConfig, device: torch.device):
        paths, schedule = cfg.paths, cfg.schedule
        self.cfg, self.device = cfg, device
        self.fresh = bool(cfg.dataset.fresh_each_epoch)  # new distortions each epoch
        self.held = int(cfg.dataset.get("validation") or 0)
        if self.held:
            full = load_split(cfg.dataset, "train", paths.data_dir, paths.cache_dir)
            self.digits = len(full)  # the training digits, held-out ones included
            val = head(full, self.digits - self.held, tail=True)
        self.train = self.train_split(0 if self.fresh else None)
        self.splits = {"test": load_split(cfg.dataset, "test", paths.data_dir, paths.cache_dir,
                                          limit=schedule.test_limit).to(device)}  # fmt: skip
        if self.held:
            self.splits["val"] = head(val, schedule.test_limit or self.held).to(device)
        self.inputs = make_inputs(cfg.dataset)
        self.train_size = len(self.train)
        self.sample_shape = tuple(self.batch(self.train, slice(0, 1))[0].shape[1:])
        data = cfg.dataset
        self.description = (
            f"{data.source} -> {data.generator} "
            f"{json.dumps(OmegaConf.to_container(data.params))}, data seed {data.seed}"
            + (", fresh distortions each epoch" if self.fresh else "")
        )

    def batch(self, split, idx) -> tuple[Tensor, Tensor]:
        """The samples ``idx`` (a slice, or indices on the split's device) as model inputs."""
        return self.inputs(split.images[idx], split.params[idx]), split.labels[idx]

    def train_split(self, epoch: int | None) -> Split:
        """The training split (``epoch``: that epoch's fresh draws; None: the cached one), less
        the held-out digits."""
        cfg = self.cfg
        limit = cfg.schedule.train_limit
        if epoch is not None and separate_pool(cfg.dataset, "train"):  # drawn apart: skip them
            limit = min(limit or self.digits, self.digits - self.held)
        split = load_split(cfg.dataset, "train", cfg.paths.data_dir, cfg.paths.cache_dir,
                           epoch=epoch, limit=limit)  # fmt: skip
        if self.held:
            split = head(split, self.digits - self.held)
        return split.to(self.device)

    def train_batches(self, start: int, where=ALONE) -> Iterator[tuple[Tensor, Tensor]]:
        """With fresh draws each epoch, the next epoch's split is generated in a background
        thread while this one trains (torch releases the GIL while it computes)."""
        cfg, bs = self.cfg, int(self.cfg.schedule.batch_size)
        iteration = start
        seen = iteration * bs // self.train_size if self.fresh else 0  # the epoch of `data`
        data = self.train if seen == 0 else self.train_split(seen)
        ahead = ThreadPoolExecutor(1) if self.fresh else None
        coming: Future | None = None  # epoch seen + 1, being drawn
        try:
            while True:
                if self.fresh and (epoch := iteration * bs // self.train_size) != seen:
                    # (a batch larger than the split can skip an epoch)
                    data = coming.result() if epoch == seen + 1 else self.train_split(epoch)
                    seen, coming = epoch, None
                if self.fresh and coming is None:
                    coming = ahead.submit(self.train_split, seen + 1)
                idx = batch_indices(self.train_size, bs, iteration, int(cfg.seed),
                                    str(self.device))  # fmt: skip
                yield self.batch(data, shard(idx, where))
                iteration += 1
        finally:
            if ahead is not None:
                ahead.shutdown(wait=False, cancel_futures=True)

    def eval_batches(self, split: str, where=ALONE) -> Iterator[tuple[Tensor, Tensor]]:
        data = self.splits[split]
        share = torch.arange(where.rank, len(data), where.world, device=self.device)
        for start in range(0, len(share), EVAL_BATCH):
            yield self.batch(data, share[start : start + EVAL_BATCH])

    def preview(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` test samples."""
        return self.batch(self.splits["test"], slice(0, n))


def head(split: Split, n: int, tail: bool = False) -> Split:
    """The first ``n`` samples of ``split`` (``tail``: those after them)."""
    cut = slice(n, None) if tail else slice(0, n)
    return Split(split.images[cut], split.labels[cut], split.params[cut])


def quiet_worker(worker_id: int) -> None:
    """DataLoader workers leave the stop signals (Ctrl-C, and SIGTERM sent to the whole process
    group, as ``timeout`` and SLURM do) to the main process, which checkpoints and stops them
    (``FileFeed.batches`` forks them with the signals held), and open their own file handles (an
    HDF5 handle inherited through fork is not safe)."""
    leave_to_parent(worker_id)
    dataset = torch.utils.data.get_worker_info().dataset
    getattr(dataset, "dataset", dataset).file = None  # a Subset's (evaluation shards) too


class ResumedBatches:
    """A batch sampler yielding the batches of iterations ``start, start + 1, ...``: lists of
    indices, or of ``(index, draw)`` pairs when samples are augmented (``draw`` seeds that
    sample's augmentation, unique per iteration and position in the global batch); with
    ``where``, this rank's slice of each."""

    def __init__(self, n: int, batch_size: int, start: int, seed: int, augment: bool,
                 where=ALONE):  # fmt: skip
        self.n, self.batch_size, self.start, self.seed = n, batch_size, start, seed
        self.augment, self.where = augment, where

    def __iter__(self):
        iteration = self.start
        while True:
            idx = batch_indices(self.n, self.batch_size, iteration, self.seed).tolist()
            if self.augment:
                first = (self.seed * 1_000_003 + iteration) * self.batch_size
                idx = [(i, first + k) for k, i in enumerate(idx)]
            yield shard(idx, self.where)
            iteration += 1


def input_normalisation(params: DictConfig, info: dict) -> tuple[Callable | None, str]:
    """What is done to images in [0, 1] before the model sees them, and its description:
    ``params.normalize``: ``(x - mean) / std`` with one mean and std over every training pixel
    (``info``'s ``pixel_mean``, ``pixel_std``); then ``params.local_contrast`` = k > 0: local
    contrast normalisation over a k x k Gaussian (``models.contrast``)."""
    from ..contrast import LocalContrastNorm, gaussian_kernel

    steps, said = [], []
    if params.get("normalize"):
        mean, std = info["pixel_mean"], info["pixel_std"]
        steps.append(lambda x: (x - mean) / std)
        said.append(f"(x - {mean:.4f}) / {std:.4f}")
    if params.get("local_contrast"):
        lcn = LocalContrastNorm(gaussian_kernel(params.local_contrast))
        steps.append(lambda x: lcn.to(x.device)(x))
        said.append(f"local contrast normalisation ({params.local_contrast}x{params.local_contrast}"
                    " Gaussian)")  # fmt: skip
    if not steps:
        return None, ""

    def normalise(x: Tensor) -> Tensor:
        for step in steps:
            x = step(x)
        return x

    return normalise, "; input " + ", then ".join(said)


class FileFeed:
    """Splits preprocessed into HDF5 stores (``train``, ``val``, ``test``), read by DataLoader
    workers (``cfg.workers``). The source's preparation (``prepare_svhn``, ``prepare_gtsrb``, ...)
    makes the stores once from the original files in ``cfg.paths.<source>_dir`` and returns
    their info (``stored.prepared_stores``: ``stores``, ``counts``, pixel statistics, and what
    the source adds, e.g. ``dropped`` (per part) and ``dropped_what``)."""

    def __init__(self, cfg: DictConfig, device: torch.device, inputs: tuple | None = None):
        _, prepare = file_source(cfg.dataset.source)
        self.cfg, self.device = cfg, device
        data, schedule = cfg.dataset, cfg.schedule
        self.workers = int(cfg.workers)
        root = cfg.paths[f"{data.source}_dir"]  # where the source's original files are
        self.info = prepare(data, root, cfg.paths.cache_dir, self.workers, inputs)
        self.normalise, normalised = input_normalisation(data.params, self.info)
        crop, flip = data.params.get("random_crop"), bool(data.params.get("flip"))
        self.stores = {}
        for split, limit in (("train", schedule.train_limit), ("val", schedule.test_limit),
                             ("test", schedule.test_limit)):  # fmt: skip
            path = Path(cfg.paths.cache_dir) / self.info["stores"][split]
            count = self.info["counts"][split]
            self.stores[split] = StoredImages(path, min(count, limit or count), crop, flip)
        self.splits = {s: self.stores[s] for s in ("val", "test") if len(self.stores[s])}
        self.train_size = len(self.stores["train"])
        self.sample_shape = tuple(self.stores["test"][0][0].shape)
        counts = ", ".join(f"{len(self.stores[s]):,} {s}" for s in self.stores)
        if "test_from" in self.info:
            counts += f" (test: {self.info['test_from']})"
        if "dropped" in self.info:
            counts += f" ({sum(self.info['dropped'].values())} {self.info['dropped_what']} dropped)"
        self.description = (
            f"{data.source} -> {data.generator} {json.dumps(OmegaConf.to_container(data.params))}"
            f", data seed {data.seed}: {counts}{normalised}"
        )

    def batches(self, dataset, **kwargs) -> Iterator[tuple[Tensor, Tensor]]:
        """``dataset``'s batches on the device, read by ``cfg.workers`` DataLoader workers
        (``kwargs``: how the DataLoader batches)."""
        # Its own generator: creating a loader must not draw from torch's global random state
        # (dropout's), or a resumed run would draw other dropout masks.
        loader = DataLoader(dataset, num_workers=self.workers, worker_init_fn=quiet_worker,
                            pin_memory=self.device.type == "cuda", generator=torch.Generator(),
                            **kwargs)  # fmt: skip
        with held_from_children():
            batches = iter(loader)  # forks the workers
        for images, labels in batches:
            yield self.to_device(images, labels)

    def to_device(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if self.normalise is not None:
            x = self.normalise(x)
        return x, labels.to(self.device, non_blocking=True)

    def train_batches(self, start: int, where=ALONE) -> Iterator[tuple[Tensor, Tensor]]:
        sampler = ResumedBatches(
            self.train_size,
            int(self.cfg.schedule.batch_size),
            start,
            int(self.cfg.seed),
            self.stores["train"].augmented,
            where,
        )
        return self.batches(self.stores["train"], batch_sampler=sampler)

    def eval_batches(self, split: str, where=ALONE) -> Iterator[tuple[Tensor, Tensor]]:
        data = self.splits[split]
        share = Subset(data, range(where.rank, len(data), where.world))
        return self.batches(share, batch_size=EVAL_BATCH)

    def preview(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` test samples spread evenly over the test split (stores may be in class order)."""
        test = self.stores["test"]
        picked = torch.linspace(0, len(test) - 1, min(n, len(test))).round().long().tolist()
        images, labels = zip(*(test[i] for i in picked), strict=True)
        return self.to_device(torch.stack(images), torch.stack(labels))


def source_inputs(cfg: DictConfig) -> tuple | None:
    """What ``<source>_inputs`` reads of a run's original files, without preprocessing: first
    the key of the stores made from them (it changes with the config and with the files in
    ``cfg.paths.<source>_dir``), then what preparing them needs (``make_feed`` takes it, so
    they are read once); None for generated MNIST sets (the checked MNIST files and the
    config)."""
    source = cfg.dataset.source
    if source == "mnist":
        return None
    inputs, _ = file_source(source)
    return inputs(cfg.dataset, cfg.paths[f"{source}_dir"])


def file_source(source: str) -> tuple[Callable, Callable]:
    """A source of real images is the module ``stn_repro.data.<source>`` (svhn, gtsrb, cub):
    its ``<source>_inputs(dataset, root)`` reads what the original files in ``root`` hold and
    its ``prepare_<source>(dataset, root, cache_dir, workers, inputs)`` makes the HDF5 stores.
    A new source is a new module; nothing here changes."""
    module = importlib.import_module(f"{__package__}.{source}")
    return getattr(module, f"{source}_inputs"), getattr(module, f"prepare_{source}")


def make_feed(cfg: DictConfig, device: torch.device, inputs: tuple | None = None):
    """The feed for ``cfg.dataset``: in memory for generated MNIST sets, from files else
    (``inputs``: ``source_inputs(cfg)`` when already read)."""
    if cfg.dataset.source == "mnist":
        return MemoryFeed(cfg, device)
    return FileFeed(cfg, device, inputs)
