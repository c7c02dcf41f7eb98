"""The models of every table, registered by name (``registry``): ``build_model(cfg, spec)`` is
what the engine calls. Importing this package registers them all."""

from . import cub, gtsrb, mnist, svhn, volume  # noqa: F401  (each registers its models)
from .registry import MODEL_TASKS, MODELS, DataSpec, build_model, count_params, register

__all__ = ["MODELS", "MODEL_TASKS", "DataSpec", "build_model", "count_params", "register"]
