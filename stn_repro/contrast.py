"""Local contrast normalisation (Jarrett et al., 2009), as Torch7's
``nn.SpatialContrastiveNormalization`` computes it (the GTSRB networks use it).

For maps ``x`` ``(B, C, H, W)`` and a kernel ``w`` ``(k, k)`` scaled to sum to 1, with
``conv(m)`` the ``w``-weighted sum of ``m``'s channel mean over the ``k x k`` neighbourhood
(zero outside the map) and ``inside = conv(1)`` (1 away from the borders):

- subtractive: ``v = x - conv(x) / inside`` (the weighted local mean, over all channels);
- divisive: ``y = v / max(s, eps)`` with ``s = sqrt(conv(v**2)) / inside``.

Near the borders Torch7 divides the standard deviation by ``inside`` outside the square root
(not ``sqrt(conv(v**2) / inside)``), which makes ``s`` larger there; we keep what ran. A
constant map gives 0, and ``y`` does not change when ``x`` is scaled by ``a > 0`` and shifted
by ``b`` (where ``s > eps``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gaussian_kernel(size: int) -> Tensor:
    """Torch7's ``image.gaussian(size)``: ``exp(-d**2 / 2 / (0.25 * size)**2)`` about the
    centre, ``(size, size)``, peak 1 (the normalisation divides the scale out)."""
    d = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(d**2) / 2 / (0.25 * size) ** 2)
    return (g[:, None] * g[None, :]).float()


def box_kernel(size: int) -> Tensor:
    """Equal weights ``(size, size)``: Torch7's default kernel (9 x 9 ones)."""
    return torch.ones(size, size)


class LocalContrastNorm(nn.Module):
    """Subtractive then divisive normalisation over a kernel's neighbourhood and all channels.

    Args:
        kernel: ``(k, k)`` non-negative weights, ``k`` odd.
        eps: floor of the local standard deviation (Torch7's threshold, 1e-4).
    """

    def __init__(self, kernel: Tensor, eps: float = 1e-4):
        super().__init__()
        if kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
            raise ValueError(f"kernel must be (k, k) with k odd, got {tuple(kernel.shape)}")
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None], persistent=False)
        self.eps = eps

    def conv(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> the kernel-weighted sum of the channel mean ``(B, 1, H, W)``."""
        kernel = self.kernel.to(x.dtype)
        return F.conv2d(x.mean(1, keepdim=True), kernel, padding=kernel.shape[-1] // 2)

    def forward(self, x: Tensor) -> Tensor:
        inside = self.conv(torch.ones_like(x[:1, :1]))  # (1, 1, H, W)
        v = x - self.conv(x) / inside
        # the floor inside the root: no infinite gradient where conv(v**2) = 0
        s = self.conv(v * v).clamp(min=(self.eps * inside) ** 2).sqrt() / inside
        return v / s

    def extra_repr(self) -> str:
        return f"kernel={self.kernel.shape[-1]}x{self.kernel.shape[-1]}, eps={self.eps}"
