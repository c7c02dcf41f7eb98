"""Speed levers on Table 1 RTS models: one training step (forward, loss, backward, Adam) on
random 42x42 inputs, per model and lever, as a ratio to the plain fp32 step measured in the
same process (interleaved rounds, medians).

    python scripts/time_levers.py [--models cnn st_cnn fcn st_fcn] [--batch 128]
                                  [--levers plain channels_last bf16 ...] [--rounds 3]

Levers: plain; channels_last; bf16 (autocast); channels_last+bf16; compile (torch.compile;
its compile time is printed apart); threads1 (one intra-op thread instead of torch's default);
batch64 and batch256 (images/s against the plain batch). The engine applies the same settings
(``speed.*``, ``schedule.precision``) through ``stn_repro.speed``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from stn_repro import speed
from stn_repro.models import DataSpec, build_model
from stn_repro.schema import hydra_initialised, validate

MODELS = {
    "cnn": {"name": "cnn"},
    "st_cnn": {"name": "st_cnn", "transform": {"name": "affine"}},
    "fcn": {"name": "fcn"},
    "st_fcn": {"name": "st_fcn", "transform": {"name": "affine"}},
}
LEVERS = ["plain", "channels_last", "bf16", "channels_last+bf16", "compile", "threads1",
          "batch64", "batch256"]  # fmt: skip
SIDE = 42  # RTS canvas


def model_config(name: str):
    from hydra import compose

    overrides = [f"model={MODELS[name]['name']}", "dataset=mnist_rts"]
    if "transform" in MODELS[name]:
        overrides.append(f"model/transform={MODELS[name]['transform']['name']}")
    with hydra_initialised():
        return validate(compose("config", overrides=overrides))  # fills dataset.st_pool


class Setup:
    """One model under one lever: a step function and the images per step."""

    def __init__(self, name: str, lever: str, batch: int):
        cfg = model_config(name)
        self.batch = {"batch64": 64, "batch256": 256}.get(lever, batch)
        parts = lever.split("+")
        knobs = OmegaConf.create({"compile": "compile" in parts, "threads": None,
                                  "channels_last": "channels_last" in parts})  # fmt: skip
        self.threads = 1 if lever == "threads1" else torch.get_num_threads()
        torch.manual_seed(0)
        model = build_model(cfg.model, DataSpec((1, SIDE, SIDE), 10, int(cfg.dataset.st_pool)))
        speed.prepare(model, knobs)
        self.net, self.knobs = speed.compiled(model, knobs, torch.device("cpu")), knobs
        self.precision = "bf16" if "bf16" in parts else "fp32"
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        self.x = torch.rand(self.batch, 1, SIDE, SIDE)
        self.y = torch.randint(0, 10, (self.batch,))
        tic = time.perf_counter()
        self.step()  # warm-up (and, for compile, the compilation)
        self.first_s = time.perf_counter() - tic
        self.step()

    def step(self) -> None:
        default = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        with speed.autocast(self.precision, torch.device("cpu")):
            loss = F.cross_entropy(self.net(speed.layout(self.x, self.knobs)), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        torch.set_num_threads(default)

    def seconds(self, steps: int) -> float:
        tic = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - tic) / steps


def main(models: list[str], levers: list[str], batch: int, rounds: int, steps: int) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, "
          f"{rounds} rounds of {steps} steps; images/s, ratio to plain (one process)")
    print("| Model | Lever | images/s | x plain | first step s |\n|---|---|---:|---:|---:|")
    for name in models:
        setups = {lever: Setup(name, lever, batch) for lever in ["plain", *levers]}
        times = {lever: [] for lever in setups}
        for _ in range(rounds):
            for lever, setup in setups.items():
                times[lever].append(setup.seconds(steps))
        plain = setups["plain"].batch / statistics.median(times["plain"])
        for lever, setup in setups.items():
            rate = setup.batch / statistics.median(times[lever])
            print(f"| {name} | {lever} | {rate:,.0f} | {rate / plain:.2f} | "
                  f"{setup.first_s:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--levers", nargs="+", choices=LEVERS, default=LEVERS[1:])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    opts = parser.parse_args()
    main(opts.models, [lever for lever in opts.levers if lever != "plain"], opts.batch,
         opts.rounds, opts.steps)  # fmt: skip
