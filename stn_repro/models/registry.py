"""The model registry: name -> builder and typed parameters. ``build_model(cfg, spec)`` is what
the engine calls.

A builder takes the model config and a ``DataSpec`` and returns an ``nn.Module`` mapping images
``(B, C, H, W)`` to logits ``(B, num_classes)``. Models with a spatial transformer expose it as
``model.st`` (for logging and for its own learning rate).

A model family (MNIST, SVHN, GTSRB, CUB) declares its parameters once, as a dataclass derived
from ``ModelParams`` and decorated with ``@family("name")``: that stores it in Hydra's
ConfigStore as ``schema/model/<name>``, which each of the family's conf/model/*.yaml names first
in its defaults, so Hydra types the model's settings as it composes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig
from torch import nn

from ..checks import at_least, checked
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


@dataclass
class ModelParams:
    """What every model's config holds; a family adds its own fields."""

    name: str = MISSING  # the registered builder
    localisation: str | None = None  # the localisation network's kind (None: no transformer)
    num_transformers: int = checked(at_least(1), 1)
    transform: Any = None  # conf/model/transform/*.yaml; checked by building it


FAMILIES: dict[str, type[ModelParams]] = {}
"""Family name -> its parameters (``schema/model/<name>`` in Hydra's ConfigStore)."""
MODELS: dict[str, Callable[[DictConfig, DataSpec], nn.Module]] = {}
MODEL_TASKS: dict[str, str] = {}
"""The task (``stn_repro.tasks``) each model's outputs serve."""
MODEL_PARAMS: dict[str, type[ModelParams]] = {}
"""The parameters each model's config holds (its family's)."""


def family(name: str):
    """Class decorator: register a family's parameters, as ``schema/model/<name>``."""

    def add(params: type[ModelParams]) -> type[ModelParams]:
        FAMILIES[name] = params
        ConfigStore.instance().store(group="schema/model", name=name, node=params)
        return params

    return add


def register(name: str, params: type[ModelParams], task: str = "classify"):
    """Function decorator: register a model's builder, with its family's ``params``."""

    def add(builder):
        MODELS[name] = builder
        MODEL_TASKS[name] = task
        MODEL_PARAMS[name] = params
        return builder

    return add


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    """Build the registered model ``cfg.name`` for data of ``spec``."""
    if cfg.name not in MODELS:
        raise UserError(f"unknown model {cfg.name!r}; choose one of {sorted(MODELS)}")
    return MODELS[cfg.name](cfg, spec)
