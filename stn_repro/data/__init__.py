"""Datasets: base sources, vectorised generators and their HDF5 cache.

The engine uses two functions: ``load_split(cfg, split, data_dir, cache_dir)`` gives a split as
stored (uint8), ``make_inputs(cfg)`` turns a stored batch into float model inputs.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from ..errors import UserError, warn
from ..files import CorruptFile, locked
from .cache import Split, cache_path, config_key, read_split, write_split
from .generators import generate, mnist_generators, seed_for
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
    key = config_key(
        {
            "source": MNIST_MD5,
            "generator": cfg.generator,
            "params": params,
            "seed": seed,
            "limit": limit,
        }
    )
    if epoch is not None:  # fresh draws are not cached
        return make_split(cfg, split, data_dir, seed, params, limit)
    path = cache_path(cache_dir, cfg.name, split, key)
    with locked(path):  # one process generates, the others wait and read
        if path.exists():
            try:
                return read_split(path, key)
            except CorruptFile as err:
                warn(f"the dataset cache {path} is corrupt ({err}); regenerating it")
        data = make_split(cfg, split, data_dir, seed, params, limit)
        write_split(path, data, key)
    return data


def make_split(cfg: DictConfig, split: str, data_dir, seed: int, params: dict, limit) -> Split:
    digits, labels = load_mnist(data_dir, split)
    digits, labels = digits[:limit], labels[:limit]
    try:
        return Split(*generate(cfg.generator, digits, labels, seed, params))
    except (TypeError, ValueError) as err:
        raise UserError(f"dataset {cfg.name}: bad generator parameters ({err})") from None


for _module in pkgutil.iter_modules(__path__):  # every module: the image sources (cub, gtsrb,
    importlib.import_module(f"{__name__}.{_module.name}")  # svhn) register their generators
