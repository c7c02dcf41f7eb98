"""The model registry: every registered model runs forward and backward and every parameter
learns; the models of one MNIST table have about the same number of parameters (the FCN
rows' widths held to A.4's range); every model's config is typed by its family's schema."""

from functools import cache

import pytest
import torch
from omegaconf import OmegaConf

from stn_repro.config import CONF_DIR
from stn_repro.errors import UserError
from stn_repro.experiment import compose_run
from stn_repro.models import MODEL_PARAMS, MODELS, DataSpec, build_model, count_params
from stn_repro.st.inspect import transformers
from stn_repro.tasks import TASKS

MNIST_SHAPES = {"mnist_r": (1, 28, 28), "mnist_rts": (1, 42, 42), "mnist_p": (1, 28, 28),
                "mnist_e": (1, 28, 28), "mnist_tc": (1, 60, 60), "mnist_addition": (2, 42, 42),
                "mnist3d": (1, 60, 60, 60)}  # fmt: skip
"""Input shapes of the generated sets (the image sources' come from their ``params``)."""


def spec_of(cfg) -> DataSpec:
    data = cfg.dataset
    if data.name in MNIST_SHAPES:
        shape = MNIST_SHAPES[data.name]
    else:  # images of params.size, cropped to params.random_crop where set
        side = data.params.get("random_crop") or data.params.size
        shape = (3, side, side)
    return DataSpec(shape, int(data.num_classes), int(data.st_pool), int(data.positions))


def experiments() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


@cache
def rows_by_model() -> dict[str, list]:
    """Model name -> [(experiment, row name, the row's validated config)], every experiment's
    rows composed as ``stn-repro experiment=<name> schedule=smoke`` would (Hydra initialised)."""
    from hydra import compose

    found: dict[str, list] = {}
    for experiment in experiments():
        given = ["schedule=smoke", f"experiment={experiment}"]
        for row in compose("config", overrides=given).experiment.rows:
            cfg = compose_run(given, row, seed=1)
            found.setdefault(cfg.model.name, []).append((experiment, row.name, cfg))
    return found


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_trains(compose_cfg, name):
    """Forward with the output shape its task scores, backward, a gradient in every parameter:
    on the first experiment row that uses the model."""
    compose_cfg()  # Hydra initialised for compose_run
    found = rows_by_model()
    assert name in found, f"no experiment row uses model {name}"
    experiment, row, cfg = found[name][0]
    if "pretrained" in cfg.model:
        cfg.model.pretrained = False  # no ImageNet weights offline
    spec = spec_of(cfg)
    torch.manual_seed(0)  # dropout and ReLUs may silence a small batch's path: one fixed draw
    model = build_model(cfg.model, spec)
    x = torch.rand(4, *spec.shape)
    logits = model(x)
    expected = (4, spec.num_classes) if spec.positions == 1 else (4, spec.positions,
                                                                 spec.num_classes)
    assert logits.shape == expected, (experiment, row)
    for layer in (layer for st in transformers(model) for layer in st.regression_layers()):
        torch.nn.init.normal_(layer.weight, std=1e-3)  # off the identity: the localisation learns
    targets = torch.zeros(expected[:-1], dtype=torch.long)
    TASKS[cfg.dataset.task].loss(model(x), targets).backward()
    silent = [p for p, w in model.named_parameters() if w.grad is None or not w.grad.abs().sum()]
    assert not silent, f"{experiment} {row}: no gradient in {silent}"


MNIST_TABLES = [e for e in experiments() if e.startswith(("table1", "table4", "fig_3d"))]


def hidden_width(model) -> int:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Linear)).out_features


@pytest.mark.parametrize("experiment", MNIST_TABLES)
def test_the_models_of_an_mnist_table_have_about_400k_parameters(compose_cfg, experiment):
    """A.4: "around 400k" parameters for every network; the FCN rows' hidden layers are held to
    A.4's "between 128 and 256 units per layer": the width 400k gives, or the nearer bound."""
    compose_cfg()
    rows = [(row, cfg) for rows in rows_by_model().values()
            for exp, row, cfg in rows if exp == experiment]  # fmt: skip
    counts = {row: count_params(build_model(cfg.model, spec_of(cfg)))
              for row, cfg in rows if row != "FCN"}  # fmt: skip
    assert counts and max(counts.values()) <= 1.1 * min(counts.values()), counts
    assert all(abs(c - 400_000) < 0.02 * 400_000 for c in counts.values()), counts
    for cfg in (cfg for row, cfg in rows if row == "FCN"):
        at_400k = build_model(OmegaConf.merge(cfg.model, {"target_params": 400_000}), spec_of(cfg))
        held = min(max(hidden_width(at_400k), 128), 256)
        assert hidden_width(build_model(cfg.model, spec_of(cfg))) == held, experiment


@pytest.mark.parametrize("path", sorted((CONF_DIR / "model").glob("*.yaml")),
                         ids=lambda p: p.stem)  # fmt: skip
def test_every_model_config_is_typed_by_its_familys_schema(compose_cfg, path):
    """conf/model/<name>.yaml names its family's schema first: Hydra composes it as that
    dataclass, the one the model registered with."""
    from hydra import compose

    compose_cfg()
    cfg = compose("config", overrides=[f"model={path.stem}"])
    assert OmegaConf.get_type(cfg.model) is MODEL_PARAMS[cfg.model.name]


def test_registry_and_model_configs_name_the_same_models():
    """Every registered model has a config (``conf/model/*.yaml``) and every config a model."""
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


def test_the_pooling_after_a_transformer_is_the_generators_unless_set(compose_cfg):
    """A.4: "Spatial transformer networks for TC and RTS datasets have average pooling after
    the spatial transformer to downsample the output of the transformer by a factor of 2"."""
    pooled = {name: compose_cfg(f"dataset={name}").dataset.st_pool
              for name in ("mnist_r", "mnist_rts", "mnist_p", "mnist_e", "mnist_tc")}
    assert pooled == {"mnist_r": 1, "mnist_rts": 2, "mnist_p": 1, "mnist_e": 1, "mnist_tc": 2}
    assert compose_cfg("dataset=mnist_rts", "dataset.st_pool=1").dataset.st_pool == 1


@pytest.mark.parametrize("model", ["st_fcn", "cnn"])
def test_mnist_dropout_is_off_by_default_and_only_drops_in_training(compose_cfg, model):
    """A.4 trains with "no dropout": by default the head has no dropout layer (the state dict
    and the run's identity are those of models trained before the key existed); with
    ``model.dropout`` the head drops units in training only, with the same parameters."""
    from stn_repro.config import config_hash

    spec = DataSpec((1, 42, 42), 10, 2)
    plain = compose_cfg(f"model={model}", "dataset=mnist_rts")
    dropping = compose_cfg(f"model={model}", "dataset=mnist_rts", "model.dropout=0.5")
    assert plain.model.dropout is None
    assert config_hash(plain) != config_hash(dropping)
    torch.manual_seed(0)
    a = build_model(plain.model, spec)
    b = build_model(dropping.model, spec)
    assert not any(isinstance(m, torch.nn.Dropout) for m in a.modules())
    older = OmegaConf.create(OmegaConf.to_container(plain.model))  # a run saved before the key
    del older["dropout"]
    assert count_params(build_model(older, spec)) == count_params(a)
    layers = {"st_fcn": [1, 3, 5], "cnn": [0, 3, 7]}[model]  # the layout before the key
    assert sorted({int(k.split(".")[1]) for k in a.state_dict() if k.startswith("head.")}) \
        == layers  # fmt: skip
    assert count_params(a) == count_params(b)
    x = torch.rand(8, 1, 42, 42)
    b.train()
    assert not torch.equal(b(x), b(x))  # a fresh mask each call
    b.eval()
    torch.testing.assert_close(b(x), b(x))
    with pytest.raises(UserError, match="dropout"):
        compose_cfg(f"model={model}", "dataset=mnist_rts", "model.dropout=1.0")
