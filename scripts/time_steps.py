"""Training speed of a table's rows: images/s of one SGD step (forward, backward, update) on
random inputs (no data loading), per row, batch size and width; on a GPU also the peak memory.

    python scripts/time_steps.py gtsrb [--device cpu|cuda] [--batches 50 256] [--widths 1 0.5]
    python scripts/time_steps.py cub [--device cpu|cuda] [--batches 32]

Default batches: 50 and 256 for gtsrb, 32 for cub.

On a GPU the steps are synchronised before timing. Each figure is the median of --repeats
timed steps after two warm-up steps. CUB models start from random weights (timing only).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from stn_repro.models import DataSpec, build_model

AFFINE = {"name": "affine"}
WINDOW = {"name": "translation", "scale": 0.5}
ROWS = {  # table -> row -> (model config, input side, classes)
    "gtsrb": {
        "CNN": ({"name": "gtsrb_cnn"}, 48, 43),
        "CNN + 1 ST": ({"name": "gtsrb_st1", "transform": AFFINE}, 48, 43),
        "CNN + 2 ST": ({"name": "gtsrb_st2", "transform": AFFINE}, 48, 43),
    },
    "cub": {
        "CNN (224px)": ({"name": "cub_cnn"}, 224, 200),
        "2xST-CNN (224px)": ({"name": "cub_st", "num_transformers": 2, "transform": WINDOW},
                             224, 200),  # fmt: skip
        "2xST-CNN (448px)": ({"name": "cub_st", "num_transformers": 2, "transform": WINDOW},
                             448, 200),  # fmt: skip
        "4xST-CNN (448px)": ({"name": "cub_st", "num_transformers": 4, "transform": WINDOW},
                             448, 200),  # fmt: skip
    },
}
DEFAULTS = {"width": 1.0, "pretrained": False, "part_size": 224, "dropout": 0.5,
            "num_transformers": 1, "transform": None}  # fmt: skip


def step_seconds(model_cfg: dict, side: int, classes: int, width: float, batch: int,
                 device: torch.device, repeats: int) -> tuple[float, float]:  # fmt: skip
    """(median seconds per step, peak GPU memory in GiB or nan on a CPU)."""
    cfg = OmegaConf.create({**DEFAULTS, **model_cfg, "width": width})
    model = build_model(cfg, DataSpec((3, side, side), classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(batch, 3, side, side, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(repeats + 2):
        if cuda:
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - tic)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else float("nan")
    return statistics.median(times), peak


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=sorted(ROWS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    batches = args.batches or {"gtsrb": [50, 256], "cub": [32]}[args.table]
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| Model | width | batch | images/s | peak GPU GiB |\n|---|---:|---:|---:|---:|")
    for width in args.widths:
        for batch in batches:
            for row, (model_cfg, side, classes) in ROWS[args.table].items():
                seconds, peak = step_seconds(model_cfg, side, classes, width, batch, device,
                                             args.repeats)  # fmt: skip
                print(f"| {row} | {width:g} | {batch} | {batch / seconds:,.1f} | {peak:.2f} |",
                      flush=True)  # fmt: skip
