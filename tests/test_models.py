"""The model registry: every model runs forward and backward, every parameter learns, and the
models of one experiment have about the same number of parameters."""

import pytest
import torch
from hydra import compose

from stn_repro.errors import UserError
from stn_repro.models import MODELS, DataSpec, build_model, count_params

SHAPES = {
    "mnist_r": (1, 28, 28),
    "mnist_rts": (1, 42, 42),
    "mnist_p": (1, 28, 28),
    "mnist_e": (1, 28, 28),
    "mnist_tc": (1, 60, 60),
    "mnist_addition": (2, 42, 42),
    "mnist3d": (1, 60, 60, 60),
}
EXPERIMENTS = [
    "table1_r", "table1_rts", "table1_p", "table1_e", "table1_tc", "table4_addition", "fig_3d"
]  # fmt: skip


def row_models(compose_cfg, experiment):
    cfg = compose_cfg(f"experiment={experiment}")
    classes = cfg.dataset.get("num_classes", 10)
    spec = DataSpec(SHAPES[cfg.dataset.name], classes, cfg.dataset.st_pool)
    for row in cfg.experiment.rows:
        run = compose("config", overrides=[f"experiment={experiment}", *row.overrides])
        yield row.name, build_model(run.model, spec), spec


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_row_trains_and_counts_match(compose_cfg, experiment):
    counts = {}
    for name, model, spec in row_models(compose_cfg, experiment):
        x = torch.rand(3, *spec.shape)
        logits = model(x)
        assert logits.shape == (3, spec.num_classes), name
        # Nudge the regression layer off its zero init so the localisation net gets gradients.
        for layer in model.st.regression_layers() if model.st is not None else []:
            torch.nn.init.normal_(layer.weight, std=1e-3)
        torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2])).backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: {pname} has no grad"
        counts[name] = count_params(model)
    low, high = min(counts.values()), max(counts.values())
    assert high <= 1.1 * low, counts
    assert all(abs(c - 400_000) < 0.02 * 400_000 for c in counts.values()), counts


def test_registry_and_model_configs_name_the_same_models():
    """Every registered model has a config (``conf/model/*.yaml``) and every config a model."""
    from omegaconf import OmegaConf

    from stn_repro.config import CONF_DIR

    configs = {OmegaConf.load(p).name for p in (CONF_DIR / "model").glob("*.yaml")}
    assert configs == set(MODELS)


def test_two_transformers_feed_four_channels(compose_cfg):
    cfg = compose_cfg("experiment=table4_addition", "model=st2_fcn", "model/transform=tps")
    model = build_model(cfg.model, DataSpec((2, 42, 42), 19, 2))
    assert model.st.num_transformers == 2
    assert model.head[1].in_features == 4 * 21 * 21  # 2 transformers x 2 channels, pooled
    with torch.no_grad():  # one transformer zooms on the left half, the other on the right
        model.st.regression_layers()[0].bias[:32][0::2] -= 0.5
    out, theta = model.st(torch.rand(3, 2, 42, 42))
    assert out.shape == (3, 2, 2, 42, 42) and theta.shape == (3, 2, 32)
    assert not torch.allclose(out[:, 0], out[:, 1])


def test_projection_baseline_sums_over_depth(compose_cfg):
    cfg = compose_cfg("experiment=fig_3d", "model=proj_cnn")
    model = build_model(cfg.model, DataSpec((1, 60, 60, 60), 10, 2))
    vol = torch.rand(2, 1, 60, 60, 60)
    out, _ = model.st(vol)
    torch.testing.assert_close(out, vol.sum(2), atol=1e-4, rtol=1e-5)
    assert list(model.st.parameters()) == []


def test_models_refuse_data_they_cannot_take(compose_cfg):
    cfg = compose_cfg("model=cnn")
    with pytest.raises(UserError, match="takes images but the data are volumes"):
        build_model(cfg.model, DataSpec((1, 60, 60, 60), 10, 2))
    cfg = compose_cfg("model=st_cnn", "model/transform=affine")
    with pytest.raises(UserError, match="transform affine is 2D but the data are 3D volumes"):
        build_model(cfg.model, DataSpec((1, 60, 60, 60), 10, 2))


def test_st_models_start_at_identity(compose_cfg):
    cfg = compose_cfg("model=st_cnn", "model/transform=tps", "dataset=mnist_rts")
    model = build_model(cfg.model, DataSpec((1, 42, 42), 10, 2))
    x = torch.rand(2, 1, 42, 42)
    out, _ = model.st(x)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
