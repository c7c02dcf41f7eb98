"""A finished run's model and data, for what reads runs after training (Table 5's encoder,
figures, pose measures)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .config import config_hash
from .data.feeds import make_feed
from .errors import UserError
from .models import DataSpec, build_model
from .runs import load_checkpoint, scored_weights


def load_trained(cfg: DictConfig, run_dir: str | Path) -> nn.Module:
    """The model a finished run trained and scored (from its final checkpoint), in eval mode."""
    ckpt = load_checkpoint(Path(run_dir), cfg, config_hash(cfg))
    if ckpt is None:
        raise UserError(f"{run_dir} has no checkpoint; train that run first")
    model_cfg = cfg.model
    if model_cfg.get("pretrained"):  # the checkpoint holds every weight: fetch none
        model_cfg = OmegaConf.merge(model_cfg, {"pretrained": False})
    model = build_model(model_cfg, DataSpec(**ckpt["spec"]))
    model.load_state_dict(scored_weights(ckpt))
    return model.eval()


def load_run(run_dir: str | Path):
    """A finished run's model and its data feed (on the CPU); ``feed.preview(n)`` gives test
    inputs and labels."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").exists():
        raise UserError(f"{run_dir} holds no finished run (no metrics.json); train it first")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    return load_trained(cfg, run_dir), make_feed(cfg, torch.device("cpu"))
