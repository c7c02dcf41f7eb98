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

from stn_repro.tasks import TASKS
from stn_repro.trained import load_run

BATCH = 1000
CLASSIFY = TASKS["classify"]  # Table 1's task: a sample is wrong when its arg-max is not its label


@torch.no_grad()
def wrong(model: nn.Module, feed, split: str, start: int, stop: int) -> int:
    """How many of samples ``start:stop`` of ``feed``'s split ``split`` ``model`` misreads."""
    data, count = feed.splits[split], 0
    for first in range(start, stop, BATCH):
        x, y = feed.batch(data, slice(first, min(first + BATCH, stop)))
        count += int(CLASSIFY.wrong(model(x), y))
    return count


def halves(model: nn.Module, feed) -> dict[str, float]:
    """The % errors this script prints, by name (the whole test split's from its halves')."""
    n = len(feed.splits["test"])  # 10,000 but with schedule.test_limit
    first, second = wrong(model, feed, "test", 0, n // 2), wrong(model, feed, "test", n // 2, n)
    found = {f"test 1-{n // 2:,}": 100 * first / (n // 2),
             f"test {n // 2 + 1:,}-{n:,}": 100 * second / (n - n // 2),
             "test": 100 * (first + second) / n}  # fmt: skip
    if "val" in feed.splits:
        held = len(feed.splits["val"])
        found["validation"] = 100 * wrong(model, feed, "val", 0, held) / held
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="finished runs (a seed<k> directory each)")
    for run_dir in parser.parse_args().run_dirs:
        model, feed = load_run(run_dir)
        said = ", ".join(f"{name} {value:.2f}" for name, value in halves(model, feed).items())
        print(f"{run_dir}: {said}")
