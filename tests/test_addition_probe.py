"""scripts/addition_probe.py: linear probes on a Table 4 model's features, fitted on training
digits and scored on the run's validation digits (never the test digits)."""

from __future__ import annotations

import runpy

import pytest
import torch
from conftest import DATA_DIR, only
from hydra import compose
from omegaconf import OmegaConf
from torch import nn

from stn_repro.cli import run
from stn_repro.config import PACKAGE_ROOT
from stn_repro.data.sources import load_mnist
from stn_repro.errors import UserError

PROBE = runpy.run_path(str(PACKAGE_ROOT / "scripts" / "addition_probe.py"))


def test_pairs_carry_each_channels_digit_and_their_sum(compose_cfg):
    cfg = compose_cfg("experiment=table4_addition")
    digits, labels = load_mnist(DATA_DIR, "test")
    x, y = PROBE["pairs"](cfg, digits[:50], labels[:50], 200, seed=3)
    assert x.shape == (200, 2, 42, 42) and 0 <= x.min() and x.max() <= 1
    torch.testing.assert_close(y[:, 0] + y[:, 1], y[:, 2])
    assert set(y[:, 0].tolist()) <= set(labels[:50].tolist())
    # each channel holds a digit
    assert (x[:, 0].sum((1, 2)) > 10).all() and (x[:, 1].sum((1, 2)) > 10).all()


def test_features_are_the_input_of_the_last_linear_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.randn(7, 2, 2, 2)
    features, logits = PROBE["features_and_logits"](model, x)
    torch.testing.assert_close(features, torch.relu(model[1](x.flatten(1))))
    torch.testing.assert_close(logits, model(x))
    assert not model[3]._forward_hooks  # the hook is gone afterwards


def test_features_come_from_the_head_not_a_localisation_network():
    class WithHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))
            self.localisation = nn.Linear(8, 6)  # registered last: not what the head reads

        def forward(self, x):
            self.localisation(x.flatten(1))
            return self.head(x)

    model = WithHead()
    x = torch.randn(4, 2, 2, 2)
    features, _ = PROBE["features_and_logits"](model, x)
    torch.testing.assert_close(features, torch.relu(model.head[1](x.flatten(1))))


def test_a_probe_reads_a_linearly_coded_label_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (3000,), generator=g)
    coded = nn.functional.one_hot(y, 10).float() + 0.1 * torch.randn(3000, 10, generator=g)
    noise = torch.randn(3000, 10, generator=g)
    error = PROBE["probe_error"]
    assert error(coded[:2000], y[:2000], coded[2000:], y[2000:], epochs=100) < 1
    assert error(noise[:2000], y[:2000], noise[2000:], y[2000:], epochs=100) > 80


@pytest.mark.slow  # trains a smoke run and reads all 60,000 training digits: 10-20 s
def test_a_smoke_run_is_probed_on_its_validation_digits(compose_cfg, smoke, tmp_path, capsys,
                                                        monkeypatch):  # fmt: skip
    overrides = [*smoke, "experiment=table4_addition", "row=FCN", "seed=1",
                 "dataset.validation=300"]  # fmt: skip
    run(compose("config", overrides=overrides), overrides)

    def training_digits_only(data_dir, split):
        assert split == "train", "the probes read the test digits"
        return load_mnist(data_dir, split)

    monkeypatch.setitem(PROBE["probe_run"].__globals__, "load_mnist", training_digits_only)
    run_dir = only(tmp_path / "outputs" / "runs", "table4_addition/smoke/fcn/*/seed1")
    [row] = PROBE["main"]([str(run_dir), "--pairs", "400", "--epochs", "1"])
    assert set(row) == {"run", "model sum", "probe digit ch0", "probe digit ch1", "probe sum"}
    assert all(0 <= v <= 100 for k, v in row.items() if k != "run")
    assert "| Probe: digit ch0 |" in capsys.readouterr().out


def test_a_run_without_validation_digits_is_refused(compose_cfg, tmp_path):
    cfg = compose_cfg("experiment=table4_addition", "row=FCN", "dataset.validation=0")
    OmegaConf.save(cfg, tmp_path / "config.yaml")
    with pytest.raises(UserError, match="never read the test digits"):
        PROBE["probe_run"](tmp_path, 100, 1)
