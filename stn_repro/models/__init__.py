"""The models of every table, registered by name (``registry``): ``build_model(cfg, spec)`` is
what the engine calls. Importing this package registers them all."""

import importlib
import pkgutil

from .registry import MODEL_TASKS, MODELS, DataSpec, build_model, count_params, register

for _family in pkgutil.iter_modules(__path__):  # cub, gtsrb, mnist, svhn, volume, ...: each
    importlib.import_module(f"{__name__}.{_family.name}")  # registers its models on import

__all__ = ["MODELS", "MODEL_TASKS", "DataSpec", "build_model", "count_params", "register"]
