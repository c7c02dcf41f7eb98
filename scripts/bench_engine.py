"""Engine overhead: a whole `stn-repro` run against a bare PyTorch loop training the same model
on the same cached data, each a fresh process on the CPU, start-up included.

    python scripts/bench_engine.py [dataset=mnist_rts model=cnn schedule.iterations=1500 ...]
                                   [--repeats 2]

The bare loop (this script with --bare) imports torch and the model and data code only, reads
the same cached splits, builds the same model from the same seed, and takes the same batches
with the same optimiser and learning-rate curve; then scores the test split once. The run adds
Hydra, config checks, TensorBoard (scalars, images, histograms), checkpoints, snapshots and the
evaluations its schedule asks for. Prints wall seconds, CPU seconds and peak memory of each (the
median over --repeats, the two interleaved) and run / bare ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULTS = ["dataset=mnist_rts", "model=cnn", "schedule=fast", "device=cpu"]


def measured(cmd: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak resident GiB) of the process ``cmd``."""
    tic = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - tic
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**20


def bare(config: str) -> None:
    """Train the model ``config`` (a resolved run config) with a plain loop."""
    import math

    import torch
    from omegaconf import OmegaConf

    from stn_repro.data import load_split, make_inputs
    from stn_repro.data.feeds import batch_indices
    from stn_repro.models import DataSpec, build_model

    cfg = OmegaConf.load(config)
    data, schedule = cfg.dataset, cfg.schedule
    train = load_split(data, "train", cfg.paths.data_dir, cfg.paths.cache_dir)
    test = load_split(data, "test", cfg.paths.data_dir, cfg.paths.cache_dir)
    inputs = make_inputs(data)
    torch.manual_seed(cfg.seed)
    spec = DataSpec(tuple(train.images.shape[1:]), data.num_classes, data.st_pool, data.positions)
    model = build_model(cfg.model, spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    for it in range(schedule.iterations):
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr * 0.5 * (1 + math.cos(math.pi * it / schedule.iterations))
        idx = batch_indices(len(train), schedule.batch_size, it, cfg.seed)
        loss = torch.nn.functional.cross_entropy(
            model(inputs(train.images[idx], train.params[idx])), train.labels[idx]
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        wrong = sum(int((model(inputs(test.images[i : i + 256], test.params[i : i + 256]))
                         .argmax(1) != test.labels[i : i + 256]).sum())
                    for i in range(0, len(test), 256))  # fmt: skip
    print(f"bare loop: {100 * wrong / len(test):.2f}% test error")


def main(overrides: list[str], repeats: int) -> None:
    from hydra import compose
    from omegaconf import OmegaConf

    from stn_repro.schema import hydra_initialised, validate

    with tempfile.TemporaryDirectory() as tmp:
        given = {o.split("=")[0] for o in overrides}
        args = [*[d for d in DEFAULTS if d.split("=")[0] not in given], *overrides,
                "progress=false"]  # fmt: skip
        with hydra_initialised():
            cfg = validate(compose("config", overrides=args))
        if cfg.schedule.optimizer != "adam" or cfg.schedule.lr_policy != "cosine":
            raise SystemExit("the bare loop follows the fast schedule: adam, cosine")
        config = Path(tmp) / "config.yaml"
        config.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        found = {"stn-repro run": [], "bare loop": []}
        for k in range(repeats):
            run = [sys.executable, "-m", "stn_repro.cli", *args, f"run_dir={tmp}/run{k}",
                   f"paths.output_dir={tmp}"]  # fmt: skip
            found["stn-repro run"].append(measured(run))
            found["bare loop"].append(measured([sys.executable, __file__, "--bare", str(config)]))
    print(f"{' '.join(args)}, {repeats} interleaved repeats (medians)")
    print(f"{'':<16}{'wall s':>9}{'CPU s':>9}{'peak GiB':>10}")
    medians = {}
    for name, rows in found.items():
        medians[name] = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"{name:<16}" + "".join(f"{v:>9.2f}" for v in medians[name][:2])
              + f"{medians[name][2]:>10.2f}")  # fmt: skip
    ratio = [r / b for r, b in zip(medians["stn-repro run"], medians["bare loop"], strict=True)]
    print(f"{'run / bare':<16}" + "".join(f"{v:>9.2f}" for v in ratio[:2]) + f"{ratio[2]:>10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="stn-repro overrides (default: "
                        + " ".join(DEFAULTS) + ")")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bare", metavar="CONFIG", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.bare:
        bare(opts.bare)
    else:
        main(opts.overrides, opts.repeats)
