"""How a run computes: numerical precision (``schedule.precision``, part of a run's identity)
and the settings that change only speed (``speed``: compile, channels_last, threads).
``set_precision`` and ``set_threads`` set process-wide torch flags."""

from __future__ import annotations

import contextlib

import torch
from omegaconf import DictConfig
from torch import Tensor, nn


def set_precision(precision: str) -> None:
    """Matmul and convolution precision on a GPU: ``fp32`` is true float32 (no TF32; torch's
    own default lets cuDNN convolutions use TF32), ``tf32`` and ``bf16`` allow TF32. On a CPU
    these flags change nothing."""
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def autocast(precision: str, device: torch.device):
    """The context the forward pass and loss run in: bfloat16 autocast for ``bf16``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def layout(x: Tensor, speed: DictConfig) -> Tensor:
    """``x`` in the memory layout the model was put in (images only: 4D)."""
    if speed.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def set_threads(speed: DictConfig) -> None:
    """torch's intra-op CPU threads for this process (``speed.threads``; None: torch's own)."""
    if speed.threads:
        torch.set_num_threads(int(speed.threads))


def prepare(model: nn.Module, speed: DictConfig) -> None:
    """Put a built model's 2D convolutions in channels-last layout (``speed.channels_last``),
    in place (``speed.compile`` wraps the model the training step calls: ``compiled``)."""
    if speed.channels_last:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)


def compiled(net: nn.Module, speed: DictConfig) -> nn.Module:
    """``net`` or its ``torch.compile`` wrapper (sharing its parameters)."""
    return torch.compile(net) if speed.compile else net
