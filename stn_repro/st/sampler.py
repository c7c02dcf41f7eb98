"""Differentiable sampling of a map at a grid (paper Sec. 3.3), over ``F.grid_sample``.

Grids follow the library's convention (``stn_repro.st.transforms``): normalised coordinates with
``align_corners=False``; points outside the input sample zeros. ``bilinear`` is differentiable in
both the input and the grid (Eq. 6-7; trilinear for volumes), ``nearest`` is the integer sampling
kernel of Eq. 4 (differentiable in the input only).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .transforms import ALIGN_CORNERS

MODES = ("bilinear", "nearest")


def sample(input: Tensor, grid: Tensor, mode: str = "bilinear") -> Tensor:
    """Sample ``input`` at ``grid``.

    Args:
        input: ``(B, C, H_in, W_in)`` or ``(B, C, D_in, H_in, W_in)``.
        grid: ``(B, H, W, 2)`` or ``(B, D, H, W, 3)``, matching the input's dimensionality.
        mode: ``"bilinear"`` (trilinear for volumes) or ``"nearest"``.

    Returns:
        ``(B, C, H, W)`` or ``(B, C, D, H, W)``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; choose one of {MODES}")
    spatial = input.dim() - 2
    if spatial not in (2, 3):
        raise ValueError(f"input must be (B, C, H, W) or (B, C, D, H, W), got {tuple(input.shape)}")
    if grid.dim() != spatial + 2 or grid.shape[-1] != spatial:
        want = "(B, H, W, 2)" if spatial == 2 else "(B, D, H, W, 3)"
        raise ValueError(f"a {spatial}D input needs a grid {want}, got {tuple(grid.shape)}")
    if grid.shape[0] != input.shape[0]:
        raise ValueError(f"batch sizes differ: input {input.shape[0]}, grid {grid.shape[0]}")
    return F.grid_sample(
        input, grid.to(input.dtype), mode=mode, padding_mode="zeros", align_corners=ALIGN_CORNERS
    )
