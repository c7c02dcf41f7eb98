"""The models of every table, registered by name (``registry``): ``build_model(cfg, spec)`` is
what the engine calls. Importing this package registers them all."""

import importlib
import pkgutil

from .registry import (
    FAMILIES,
    MODEL_PARAMS,
    MODEL_TASKS,
    MODELS,
    DataSpec,
    ModelParams,
    build_model,
    count_params,
    family,
    register,
)

for _family in pkgutil.iter_modules(__path__):  # cub, gtsrb, mnist, svhn, volume, ...: each
    importlib.import_module(f"{__name__}.{_family.name}")  # registers its models on import

__all__ = ["FAMILIES", "MODELS", "MODEL_PARAMS", "MODEL_TASKS", "DataSpec", "ModelParams",
           "build_model", "count_params", "family", "register"]
