"""Inspecting a model's spatial transformers: which there are, and what each saw and did on a
batch (for logs, figures and pose measures)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .module import SpatialTransformer


def transformers(model: nn.Module) -> list[SpatialTransformer]:
    """Every spatial transformer in ``model``, in the order they run."""
    return [m for m in model.modules() if isinstance(m, SpatialTransformer)]



def traced(model: nn.Module, x: Tensor) -> list[tuple[SpatialTransformer, Tensor, Tensor, Tensor]]:
    """Run ``model`` on ``x`` and return, for each spatial transformer, ``(st, its input,
    its output, theta)``."""
    seen = []
    hooks = [st.register_forward_hook(lambda m, args, out: seen.append((m, args[0], *out)))
             for st in transformers(model)]  # fmt: skip
    try:
        was_training = model.training
        with torch.no_grad():
            model.eval()
            model(x)
        model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return seen
