"""Datasets: base sources, vectorised generators and their HDF5 cache.

The engine uses two functions: ``load_split(cfg, split, data_dir, cache_dir)`` gives a split as
stored (uint8), ``make_inputs(cfg)`` turns a stored batch into float model inputs.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from ..errors import UserError, warn
from ..files import CorruptFile, locked
from .cache import Split, cache_path, config_key, read_split, write_split
from .generators import generate, mnist_generators, seed_for
from .registry import GENERATORS
from .sources import MNIST_MD5, load_mnist
from .volumes import render_volumes

__all__ = ["Split", "load_split", "generator_config", "make_inputs"]

SPLITS = ("train", "test")


def generator_config(cfg: DictConfig) -> dict:
    """The generator's own parameters from a dataset config (what the cache key hashes)."""
    params = OmegaConf.to_container(cfg.params, resolve=True) if "params" in cfg else {}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def make_inputs(cfg: DictConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """The function turning a stored batch (uint8 images, generation parameters; both on the
    training device) into float model inputs in [0, 1]: a plain scaling for images, on-the-fly
    rendering for datasets stored compactly (``render: volume``, 3D extruded MNIST)."""
    render = cfg.get("render")
    if render is None:
        return lambda images, params: images.float().div(255)
    if render == "volume":
        size, depth = int(cfg.params.size), int(cfg.params.depth)
        return lambda images, params: render_volumes(images, params, size, depth)
    raise UserError(f"dataset {cfg.name}: unknown render {render!r}; use volume or leave it out")


def load_split(
    cfg: DictConfig,
    split: str,
    data_dir: str | Path,
    cache_dir: str | Path,
    epoch: int | None = None,
    limit: int | None = None,
) -> Split:
    """Generate (or read from the cache) one split of the dataset ``cfg`` describes.

    Args:
        cfg: a ``conf/dataset/*.yaml`` config (``name``, ``source``, ``generator``, ``params``,
            ``seed``).
        split: "train" (from the 60,000 training digits) or "test" (from the 10,000 test digits).
        epoch: ``None`` for the fixed, cached split; an epoch number draws fresh distortions
            for that epoch (not cached).
        limit: use only the first ``limit`` digits of the split (``None``: all).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if cfg.source != "mnist":
        raise UserError(f"dataset {cfg.name}: unknown source {cfg.source!r}; only 'mnist' exists")
    if cfg.generator not in mnist_generators():
        raise UserError(
            f"dataset {cfg.name}: unknown generator {cfg.generator!r}; "
            f"choose one of {mnist_generators()}"
        )
    params = generator_config(cfg)
    seed = seed_for(int(cfg.seed), split, epoch)
    held = separate_pool(cfg, split)
    key = config_key(
        {
            "source": MNIST_MD5,
            "generator": cfg.generator,
            "params": params,
            "seed": seed,
            "limit": limit,
            **({"held_out_pool": held} if held else {}),
        }
    )
    if epoch is not None:  # fresh draws are not cached
        return make_split(cfg, split, data_dir, seed, params, limit, held)
    path = cache_path(cache_dir, cfg.name, split, key)
    with locked(path):  # one process generates, the others wait and read
        if path.exists():
            try:
                return read_split(path, key)
            except CorruptFile as err:
                warn(f"the dataset cache {path} is corrupt ({err}); regenerating it")
        data = make_split(cfg, split, data_dir, seed, params, limit, held)
        write_split(path, data, key)
    return data


def separate_pool(cfg: DictConfig, split: str) -> int:
    """The held-out training digits (``dataset.validation``) that must draw their partners or
    clutter from among themselves, as the training digits from theirs: for the generators that
    draw other digits from the split (``uses_pool``: TC's clutter, addition's partners), so no
    validation digit appears in a training image; 0 otherwise."""
    if split != "train" or not GENERATORS[cfg.generator].uses_pool:
        return 0
    return int(cfg.get("validation") or 0)


def make_split(cfg: DictConfig, split: str, data_dir, seed: int, params: dict, limit,
               held: int = 0) -> Split:  # fmt: skip
    """The first ``limit`` digits of ``split`` distorted by the generator; the last ``held``
    (``separate_pool``) drawn apart, with their own pool and seed."""
    digits, labels = load_mnist(data_dir, split)
    end = len(digits) if limit is None else limit
    cut = len(digits) - held
    parts = [(slice(0, min(cut, end)), seed)]  # (the digits, the draws' seed)
    if held and end > cut:  # the held-out digits, their pool apart
        parts.append((slice(cut, end), seed_for(seed, "held out")))
    try:
        made = [generate(cfg.generator, digits[part], labels[part], part_seed, params)
                for part, part_seed in parts]  # fmt: skip
    except (TypeError, ValueError) as err:
        raise UserError(f"dataset {cfg.name}: bad generator parameters ({err})") from None
    return Split(*(torch.cat(tensors) for tensors in zip(*made, strict=True)))


for _module in pkgutil.iter_modules(__path__):  # every module: the image sources (cub, gtsrb,
    importlib.import_module(f"{__name__}.{_module.name}")  # svhn) register their generators
