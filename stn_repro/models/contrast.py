"""Local contrast normalisation (Jarrett et al., 2009), as Torch7's
``nn.SpatialContrastiveNormalization`` computes it (the GTSRB networks use it).

For maps ``x`` ``(B, C, H, W)`` and a kernel ``w`` ``(k, k)``:

- subtractive: ``v = x - m``, ``m`` the ``w``-weighted mean of ``x`` over a ``k x k``
  neighbourhood and all channels;
- divisive: ``y = v / max(s, eps)``, ``s = sqrt(w-weighted mean of v**2)`` over the same.

At the borders the weighted means use only the kernel taps inside the map (they are divided
by the sum of those taps), so a constant map gives 0 everywhere and ``y`` does not change
when ``x`` is scaled by ``a > 0`` and shifted by ``b`` (where ``s > eps``).
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

    def local_mean(self, x: Tensor) -> Tensor:
        """The kernel-weighted mean of ``x`` over channels and the neighbourhood ``(B, 1, H, W)``,
        divided by the weight inside the map."""
        pad = self.kernel.shape[-1] // 2
        kernel = self.kernel.to(x.dtype)
        ones = torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
        inside = F.conv2d(ones, kernel, padding=pad)  # (1, 1, H, W): 1 away from the borders
        return F.conv2d(x.mean(1, keepdim=True), kernel, padding=pad) / inside

    def forward(self, x: Tensor) -> Tensor:
        v = x - self.local_mean(x)
        # max(sqrt(q), eps) as sqrt(max(q, eps**2)): no infinite gradient where q = 0
        s = self.local_mean(v * v).clamp(min=self.eps**2).sqrt()
        return v / s

    def extra_repr(self) -> str:
        return f"kernel={self.kernel.shape[-1]}x{self.kernel.shape[-1]}, eps={self.eps}"
