"""The model registry: name -> builder. ``build_model(cfg, spec)`` is what the engine calls.

A builder takes the model config and a ``DataSpec`` and returns an ``nn.Module`` mapping images
``(B, C, H, W)`` to logits ``(B, num_classes)``. Models with a spatial transformer expose it as
``model.st`` (for logging and for its own learning rate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know of its data: input shape ``(C, H, W)``, classes, the
    average-pooling factor applied after a spatial transformer (2 for RTS and TC, A.4), and
    the positions classified (1: logits ``(B, classes)``; L > 1, sequences: ``(B, L, classes)``).
    """

    shape: tuple[int, int, int]
    num_classes: int
    st_pool: int = 1
    positions: int = 1


MODELS: dict[str, Callable[[DictConfig, DataSpec], nn.Module]] = {}
MODEL_TASKS: dict[str, str] = {}
"""The task (``stn_repro.tasks``) each model's outputs serve."""


def register(name: str, task: str = "classify"):
    def add(builder):
        MODELS[name] = builder
        MODEL_TASKS[name] = task
        return builder

    return add


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    """Build the registered model ``cfg.name`` for data of ``spec``."""
    if cfg.name not in MODELS:
        raise UserError(f"unknown model {cfg.name!r}; choose one of {sorted(MODELS)}")
    return MODELS[cfg.name](cfg, spec)
