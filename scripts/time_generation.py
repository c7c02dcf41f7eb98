"""Time the generation of every distorted-MNIST dataset (train + test splits, no cache).

    python scripts/time_generation.py [mnist_r mnist_rts ...] [--whole]

Prints, per dataset, the seconds to generate both splits (70,000 images) and to write the HDF5
cache, and the cache's size. Uses a temporary cache folder. ``--whole`` also times the warps
done on each 10,000-image chunk in one call (as before they went 256 images at a time) and
prints the ratio, from the same process.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose

from stn_repro.config import PACKAGE_ROOT
from stn_repro.data import generator_config, generators, load_mnist
from stn_repro.data.cache import Split, write_split
from stn_repro.data.generators import generate, seed_for
from stn_repro.schema import hydra_initialised

DATASETS = ["mnist_r", "mnist_rts", "mnist_p", "mnist_e", "mnist_tc"]


def main(names: list[str]) -> float:
    """Print the table; return the seconds generating took in all."""
    data_dir = PACKAGE_ROOT / "datasets"
    mnist = {split: load_mnist(data_dir, split) for split in ("train", "test")}
    total = writes = 0.0
    print(f"{'dataset':<12}{'generate s':>12}{'write s':>10}{'cache MB':>10}  shape")
    with (
        hydra_initialised(),
        tempfile.TemporaryDirectory() as tmp,
    ):
        for name in names:
            cfg = compose("config", overrides=[f"dataset={name}"]).dataset
            gen = write = size = 0.0
            for split, (digits, labels) in mnist.items():
                tic = time.perf_counter()
                seed = seed_for(cfg.seed, split)
                images, _, params = generate(
                    cfg.generator, digits, labels, seed, generator_config(cfg)
                )
                gen += time.perf_counter() - tic
                tic = time.perf_counter()
                path = Path(tmp) / f"{name}-{split}.h5"
                write_split(path, Split(images, labels, params), "timing")
                write += time.perf_counter() - tic
                size += path.stat().st_size / 2**20
            total, writes = total + gen, writes + write
            print(f"{name:<12}{gen:>12.2f}{write:>10.2f}{size:>10.1f}  {tuple(images.shape[1:])}")
    print(f"{'all':<12}{total:>12.2f}{writes:>10.2f}")
    return total


if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if a != "--whole"] or DATASETS
    if unknown := [n for n in names if n not in DATASETS]:
        sys.exit(f"time_generation.py: {unknown[0]}: not a generated MNIST set; usage: "
                 f"python scripts/time_generation.py [{' '.join(DATASETS)}] [--whole]")
    chunked = main(names)
    if "--whole" in sys.argv:
        generators.warp = functools.partial(generators.warp, chunk=10**9)
        print("warping each 10,000-image chunk in one call:")
        print(f"generation, whole chunks / 256 at a time: {main(names) / chunked:.2f}")
