"""SVHN figures for the README and notes: digitStruct parsing (fast vs naive), preprocessing time
per image, parameter counts, and training images/s of each Table 2 model on this machine.

    python scripts/time_svhn.py [--entries 20000] [--steps 3] [--skip-training]

Parsing is timed on a synthetic v7.3-style digitStruct.mat (tests/svhn_files.py writes it the
way MATLAB does), preprocessing on copies of the SVHN sample's real images; both are scaled to
the full parts' sizes (train 33,402, extra 202,353, test 13,068 images).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from svhn_files import SAMPLE, tiny_svhn, write_digit_struct  # noqa: E402

from stn_repro.data.svhn import Crops, entries, read_digit_struct  # noqa: E402
from stn_repro.models import DataSpec, build_model, count_params  # noqa: E402
from stn_repro.tasks import TASKS  # noqa: E402

FULL = {"train": 33_402, "extra": 202_353, "test": 13_068}


def naive_parse(path: Path) -> int:
    """The obvious high-level h5py reading (``f[ref]`` per access); returns the values read."""
    n = 0
    with h5py.File(path, "r") as f:
        for name_ref, box_ref in zip(f["digitStruct/name"][:, 0], f["digitStruct/bbox"][:, 0],
                                     strict=True):  # fmt: skip
            "".join(chr(c) for c in f[name_ref][:, 0])
            group = f[box_ref]
            for field in ("label", "left", "top", "width", "height"):
                ds = group[field]
                values = [ds[0, 0]] if ds.shape[0] == 1 else [f[r][0, 0] for r in ds[:, 0]]
                n += len(values)
    return n


def time_parsing(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    made = []
    for i in range(count):
        k = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.5, 0.25, 0.05]))
        made.append((f"{i + 1}.png", [(d + 1, 10 + 12 * d, 5, 11, 20) for d in range(k)]))
    path = folder / "digitStruct.mat"
    write_digit_struct(path, made)
    tic = time.perf_counter()
    parsed = read_digit_struct(path)
    fast = time.perf_counter() - tic
    tic = time.perf_counter()
    digits = naive_parse(path)
    naive = time.perf_counter() - tic
    assert digits == 5 * parsed.counts.sum()  # five fields per digit
    per = {name: 1e3 * t / count for name, t in (("fast", fast), ("naive", naive))}
    print(f"digitStruct parsing, {count:,} synthetic entries: fast {fast:.2f} s "
          f"({per['fast']:.3f} ms/entry), naive {naive:.2f} s ({per['naive']:.3f} ms/entry): "
          f"{naive / fast:.1f}x faster")  # fmt: skip
    print(f"  scaled to extra (202,353 entries): fast {per['fast'] * 202.353:.0f} s, "
          f"naive {per['naive'] * 202.353:.0f} s")  # fmt: skip


def time_preprocessing(folder: Path) -> None:
    root = tiny_svhn(folder / "SVHN", per_part=120)
    for size, loose in ((64, 1.0), (128, 2.0)):
        line = []
        for part in ("train", "extra", "test"):
            found, _ = entries(root / part, read_digit_struct(root / part / "digitStruct.mat"), 5)
            crops = Crops(found, size, 0.3, loose, 5)
            tic = time.perf_counter()
            for i in range(len(crops)):
                crops[i]
            per = (time.perf_counter() - tic) / len(crops)
            line.append(f"{part} {1e3 * per:.2f} ms/image -> {per * FULL[part] / 60:.1f} min")
        print(f"preprocessing {size}px, one process: " + "; ".join(line))


def time_training(steps: int) -> None:
    torch.set_num_threads(torch.get_num_threads())
    task = TASKS["sequence"]
    for size in (64, 128):
        spec = DataSpec((3, size, size), 11, positions=5)
        for width in (1.0, 0.25):
            for name in ("svhn_cnn", "svhn_st_single", "svhn_st_multi"):
                if size == 128 and name == "svhn_st_multi":
                    continue
                from omegaconf import OmegaConf

                transform = None if name == "svhn_cnn" else {"name": "affine"}
                cfg = OmegaConf.create({"name": name, "width": width, "dropout": 0.5,
                                        "transform": transform})  # fmt: skip
                torch.manual_seed(0)
                model = build_model(cfg, spec)
                opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                x = torch.rand(128, 3, size, size)
                y = torch.randint(0, 11, (128, 5))
                times = []
                for _ in range(steps + 1):  # the first step warms up
                    tic = time.perf_counter()
                    loss = task.loss(model(x), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    times.append(time.perf_counter() - tic)
                rate = 128 / (sum(times[1:]) / steps)
                print(f"{size}px width {width:g} {name}: {count_params(model):,} params, "
                      f"{rate:.1f} training images/s (batch 128, {torch.get_num_threads()} "
                      "threads)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    if not (SAMPLE / "train" / "digitStruct.mat").exists():
        sys.exit(f"time_svhn.py: the SVHN sample is absent ({SAMPLE}): it ships beside the "
                 "project, in ../shared/data, and its real images are what is timed")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        time_parsing(Path(tmp), args.entries)
        time_preprocessing(Path(tmp))
    if not args.skip_training:
        time_training(args.steps)
