"""A finished Table 1 run's error on each half of the MNIST test digits and on its validation set.

    python scripts/error_by_test_half.py RUN_DIR [RUN_DIR ...]

MNIST's 10,000 test digits are not one population: its documentation has them drawn 5,000
from each of two NIST collections written by different people, and our models err about
twice as often on the first 5,000 as on the last. The validation digits
(``dataset.validation``: the last training digits, distorted once) fall between the two, so
the validation error underestimates the test error. Prints, per run, the % error of one
forward pass on test digits 1-5,000, 5,001-10,000, all 10,000, and on the validation digits
(when the run held some out).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from stn_repro.trained import load_run

BATCH = 1000


@torch.no_grad()
def error(model: nn.Module, feed, split: str, start: int, stop: int) -> float:
    """% of samples ``start:stop`` of ``feed``'s split ``split`` that ``model`` misreads."""
    data = feed.splits[split]
    stop = min(stop, len(data))
    wrong = 0
    for first in range(start, stop, BATCH):
        x, y = feed.batch(data, slice(first, min(first + BATCH, stop)))
        wrong += (model(x).argmax(1) != y).sum().item()
    return 100 * wrong / (stop - start)


def halves(model: nn.Module, feed) -> dict[str, float]:
    """The errors this script prints, by name."""
    n = len(feed.splits["test"])  # 10,000 but with schedule.test_limit
    found = {f"test 1-{n // 2:,}": error(model, feed, "test", 0, n // 2),
             f"test {n // 2 + 1:,}-{n:,}": error(model, feed, "test", n // 2, n),
             "test": error(model, feed, "test", 0, n)}  # fmt: skip
    if "val" in feed.splits:
        found["validation"] = error(model, feed, "val", 0, len(feed.splits["val"]))
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="finished runs (a seed<k> directory each)")
    for run_dir in parser.parse_args().run_dirs:
        model, feed = load_run(run_dir)
        said = ", ".join(f"{name} {value:.2f}" for name, value in halves(model, feed).items())
        print(f"{run_dir}: {said}")
