"""Pictures for TensorBoard: the transformer's sampling grid drawn over its input."""

from __future__ import annotations

import torch
from torch import Tensor


def draw_grid(images: Tensor, grid: Tensor, lines: int = 5) -> Tensor:
    """Draw a sampling grid over the images it samples, in red.

    Args:
        images: ``(B, C, H, W)`` in [0, 1] (C = 1 or 3): the transformer's inputs.
        grid: ``(B, Ho, Wo, 2)`` normalised sampling grid (``stn_repro.st`` convention).
        lines: grid lines drawn in each direction, the output's border included.

    Returns:
        ``(B, 3, H, W)`` RGB images.
    """
    b, c, h, w = images.shape
    rgb = images.expand(b, 3, h, w).clone() if c == 1 else images[:, :3].clone()
    ho, wo = grid.shape[1:3]
    rows = torch.linspace(0, ho - 1, lines).round().long()
    cols = torch.linspace(0, wo - 1, lines).round().long()
    points = torch.cat([grid[:, rows].flatten(1, 2), grid[:, :, cols].flatten(1, 2)], 1)
    # Normalised (align_corners=False) -> pixel indices of the input.
    x = ((points[..., 0] + 1) * w - 1) / 2
    y = ((points[..., 1] + 1) * h - 1) / 2
    xi, yi = x.round().long(), y.round().long()
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    batch = torch.arange(b)[:, None].expand_as(xi)
    bi, yi, xi = batch[inside], yi[inside], xi[inside]
    for channel, value in enumerate((1.0, 0.0, 0.0)):
        rgb[bi, channel, yi, xi] = value
    return rgb
