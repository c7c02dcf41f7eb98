"""Training speed of the GTSRB rows: images/s of one SGD step (forward, backward, update) on
random 48x48 inputs (no data loading), per model, batch size and width.

    python scripts/time_gtsrb.py [--device cpu|cuda] [--batches 50 256] [--widths 1 0.5]

On a GPU the steps are synchronised before timing. Each figure is the median of --repeats
timed steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from stn_repro.models import DataSpec, build_model

ROWS = {"CNN": "gtsrb_cnn", "CNN + 1 ST": "gtsrb_st1", "CNN + 2 ST": "gtsrb_st2"}


def step_seconds(name: str, width: float, batch: int, device: torch.device, repeats: int) -> float:
    transform = None if name == "gtsrb_cnn" else {"name": "affine"}
    cfg = OmegaConf.create({"name": name, "width": width, "transform": transform})
    model = build_model(cfg, DataSpec((3, 48, 48), 43)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 48, 48, device=device)
    y = torch.randint(0, 43, (batch,), device=device)
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - tic)
    return statistics.median(times)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[50, 256])
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| Model | width | batch | images/s |\n|---|---:|---:|---:|")
    for width in args.widths:
        for batch in args.batches:
            for row, name in ROWS.items():
                seconds = step_seconds(name, width, batch, device, args.repeats)
                print(f"| {row} | {width:g} | {batch} | {batch / seconds:,.0f} |", flush=True)
