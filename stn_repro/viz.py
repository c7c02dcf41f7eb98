"""Pictures for TensorBoard and figures: a transformer's sampling grid, or its windows' boxes,
drawn over its input."""

from __future__ import annotations

import numpy as np
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


COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240))  # fmt: skip
"""One colour per transformer (1st red, 2nd green, 3rd blue, 4th orange, ...)."""


def window_boxes(matrices: Tensor, size: tuple[int, int]) -> Tensor:
    """Axis-aligned windows (attention, translation) -> their boxes in input pixels.

    Args:
        matrices: ``(..., 2, 3)`` ``[[s_x, 0, t_x], [0, s_y, t_y]]`` (``stn_repro.st``
            convention: normalised coordinates, -1 and 1 the input's outer edges).
        size: the input's ``(H, W)``.

    Returns:
        ``(..., 4)`` ``(x0, y0, x1, y1)``: the window's outer edges in pixels.
    """
    h, w = size
    sx, tx = matrices[..., 0, 0], matrices[..., 0, 2]
    sy, ty = matrices[..., 1, 1], matrices[..., 1, 2]
    return torch.stack([(tx - sx + 1) * w / 2, (ty - sy + 1) * h / 2, (tx + sx + 1) * w / 2,
                        (ty + sy + 1) * h / 2], -1)  # fmt: skip


def draw_boxes(images: Tensor, boxes: Tensor, width: int = 2) -> Tensor:
    """Draw each transformer's box in its colour (``COLOURS``).

    Args:
        images: ``(B, C, H, W)`` in [0, 1], C = 1 or 3.
        boxes: ``(B, N, 4)`` ``(x0, y0, x1, y1)`` in pixels (``window_boxes``).

    Returns:
        ``(B, 3, H, W)`` RGB images.
    """
    from PIL import Image, ImageDraw

    out = []
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    for image, image_boxes in zip(images, boxes, strict=True):
        pil = Image.fromarray((image.permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy())
        draw = ImageDraw.Draw(pil)
        for k, (x0, y0, x1, y1) in enumerate(image_boxes.tolist()):  # PIL: corners inclusive
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=COLOURS[k % len(COLOURS)],
                           width=width)  # fmt: skip
        out.append(torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def tiles(images: Tensor) -> Tensor:
    """A batch of maps -> display tiles, each scaled to [0, 1]: ``(B, 3, H, W)`` images stay
    RGB; otherwise each channel of ``(B, ..., H, W)`` becomes a grey tile, and feature maps of
    more than 3 channels are shown as their channel mean."""
    images = images.detach().float().cpu()
    if images.dim() == 4 and images.shape[1] > 3:
        images = images.mean(1, keepdim=True)
    if images.dim() != 4 or images.shape[1] != 3:
        images = images.reshape(-1, 1, *images.shape[-2:])
    low = images.amin((1, 2, 3), keepdim=True)
    return (images - low) / (images.amax((1, 2, 3), keepdim=True) - low).clamp(min=1e-6)
