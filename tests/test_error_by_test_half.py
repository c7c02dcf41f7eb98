"""scripts/error_by_test_half.py: a run's error on each half of the test digits and on its
validation digits, against a model whose mistakes are known."""

from __future__ import annotations

import runpy
from types import SimpleNamespace

import torch
from torch import nn
from torch.utils.data import TensorDataset

from stn_repro.config import PACKAGE_ROOT

HALVES = runpy.run_path(str(PACKAGE_ROOT / "scripts" / "error_by_test_half.py"))


def feed_reading(answers: dict[str, tuple[list[int], list[int]]]):
    """A feed whose split ``name`` has labels ``answers[name][0]`` and whose inputs are the
    one-hot codes of ``answers[name][1]``: an identity model reads those."""
    splits = {name: TensorDataset(nn.functional.one_hot(torch.tensor(read), 10).float(),
                                  torch.tensor(labels))
              for name, (labels, read) in answers.items()}  # fmt: skip
    return SimpleNamespace(splits=splits, batch=lambda split, idx: split[idx])


def test_each_half_counts_its_own_mistakes(monkeypatch):
    monkeypatch.setitem(HALVES["wrong"].__globals__, "BATCH", 3)  # batches cross the halves
    labels = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    read = [9, 9, 2, 3, 4, 5, 6, 7, 8, 0]  # two of the first five wrong, one of the last five
    feed = feed_reading({"test": (labels, read), "val": ([1, 2, 3, 4], [1, 2, 3, 3])})
    found = HALVES["halves"](nn.Identity(), feed)
    assert found == {"test 1-5": 40.0, "test 6-10": 20.0, "test": 30.0, "validation": 25.0}


def test_a_run_without_validation_digits_has_no_validation_error():
    feed = feed_reading({"test": ([3, 3], [3, 4])})
    assert HALVES["halves"](nn.Identity(), feed) == {"test 1-1": 0.0, "test 2-2": 100.0,
                                                     "test": 50.0}  # fmt: skip
