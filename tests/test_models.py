"""The model registry: every model runs forward and backward, every parameter learns, and the
models of one experiment have about the same number of parameters."""

import pytest
import torch
from hydra import compose

from stn_repro.models import MODELS, DataSpec, build_model, count_params

SHAPES = {"mnist_r": (1, 28, 28), "mnist_rts": (1, 42, 42), "mnist_tc": (1, 60, 60)}
EXPERIMENTS = ["table1_r", "table1_rts", "table1_p", "table1_e", "table1_tc"]


def row_models(compose_cfg, experiment):
    cfg = compose_cfg(f"experiment={experiment}")
    spec = DataSpec((1, 60, 60) if cfg.dataset.name == "mnist_tc" else
                    (1, 42, 42) if cfg.dataset.name == "mnist_rts" else (1, 28, 28),
                    10, cfg.dataset.st_pool)  # fmt: skip
    for row in cfg.experiment.rows:
        run = compose("config", overrides=[f"experiment={experiment}", *row.overrides])
        yield row.name, build_model(run.model, spec), spec


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_row_trains_and_counts_match(compose_cfg, experiment):
    counts = {}
    for name, model, spec in row_models(compose_cfg, experiment):
        x = torch.rand(3, *spec.shape)
        logits = model(x)
        assert logits.shape == (3, 10), name
        # Nudge the regression layer off its zero init so the localisation net gets gradients.
        if model.st is not None:
            torch.nn.init.normal_(model.st.regressor.weight, std=1e-3)
        torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2])).backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: {pname} has no grad"
        counts[name] = count_params(model)
    low, high = min(counts.values()), max(counts.values())
    assert high <= 1.1 * low, counts
    assert all(abs(c - 400_000) < 0.02 * 400_000 for c in counts.values()), counts


def test_registry_has_the_table1_models():
    assert {"fcn", "cnn", "st_fcn", "st_cnn"} <= set(MODELS)


def test_st_models_start_at_identity(compose_cfg):
    cfg = compose_cfg("model=st_cnn", "model/transform=tps", "dataset=mnist_rts")
    model = build_model(cfg.model, DataSpec((1, 42, 42), 10, 2))
    x = torch.rand(2, 1, 42, 42)
    out, _ = model.st(x)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
