"""Seeded random draws shared by the generators (float64, from an explicit torch.Generator)."""

import torch
from torch import Tensor


def uniform(rng: torch.Generator, n: int, low: float, high: float) -> Tensor:
    """``n`` draws from U(low, high)."""
    return low + (high - low) * torch.rand(n, generator=rng, dtype=torch.float64)
