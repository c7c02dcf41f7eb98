"""How a run computes: numerical precision (``schedule.precision``, part of a run's identity)
and the settings that change only speed (``speed``: compile, channels_last, threads).
``set_precision`` and ``set_threads`` set process-wide torch flags."""

from __future__ import annotations

import contextlib
import platform
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from .errors import UserError, warn


def set_precision(precision: str) -> None:
    """Matmul and convolution precision on a GPU: ``fp32`` is true float32 (no TF32; torch's
    own default lets cuDNN convolutions use TF32), ``tf32`` and ``bf16`` allow TF32. On a CPU
    these flags change nothing."""
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (``/proc/cpuinfo``), or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return {flag for line in text.splitlines() if line.startswith("flags")
            for flag in line.split(":", 1)[1].split()}  # fmt: skip


BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""x86 instructions that compute bfloat16 natively; without them torch emulates it, slower."""


def bf16_native(device: torch.device) -> bool | None:
    """Whether ``device`` computes bfloat16 natively: a GPU with bfloat16 support, an x86 CPU
    with bfloat16 instructions (without them torch emulates it, slower than fp32); None where
    it cannot be told (another CPU, or its flags unreadable)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    flags = cpu_flags()
    return None if flags is None else bool(flags & set(BF16_FLAGS))


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run computes in on ``device``. ``auto`` (a recipe's choice) is bf16
    where the device computes bfloat16 natively, else fp32, said in one line; an explicit
    ``bf16`` the device lacks stops before work (a silent fallback would train another run
    than the one named); where it cannot be told, ``bf16`` is left to torch."""
    if precision not in ("bf16", "auto"):
        return precision
    native = bf16_native(device)
    if device.type == "cuda":
        lacking = f"{torch.cuda.get_device_name(device)} has no bfloat16 support"
    else:
        lacking = f"this CPU has no bfloat16 instructions ({' or '.join(BF16_FLAGS)})"
    if precision == "auto":
        if native:
            return "bf16"
        why = lacking if native is False else "no sign that this CPU computes bfloat16 natively"
        warn(f"schedule.precision=auto: {why}, so this run trains in fp32")
        return "fp32"
    if native is False:
        fallback = "fp32 (or tf32)" if device.type == "cuda" else "fp32"
        raise UserError(f"schedule.precision=bf16: {lacking}, so torch would emulate it, slower "
                        f"than fp32; use schedule.precision={fallback} or auto")  # fmt: skip
    return "bf16"


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


def compiled(net: nn.Module, speed: DictConfig, device: torch.device) -> nn.Module:
    """``net`` or its ``torch.compile`` wrapper (sharing its parameters). On a CPU with no C++
    compiler on the PATH (which torch.compile's CPU code needs), ``net`` with one warning:
    compiling changes only speed."""
    if not speed.compile:
        return net
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
        warn("speed.compile=true needs a C++ compiler on the PATH for CPU code (none found: "
             "c++, g++, clang++); training uncompiled")  # fmt: skip
        return net
    return torch.compile(net)
