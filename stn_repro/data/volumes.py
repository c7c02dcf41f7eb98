"""3D extruded MNIST (Appendix A.3): a digit extruded into a voxel slab, randomly rotated and
translated inside a cubic volume.

Stored compactly: a split keeps the 28x28 digits (uint8) and, per image, the 3x4 affine that
places the slab in the volume; volumes are rendered on the fly, a batch at a time, on the
training device (60,000 float volumes of 60^3 would take 52 GB).

Recipe (the paper gives no more than "extruded, rotated and translated in 3D"):
- the slab is the digit repeated over ``depth`` voxels (28 x 28 x depth voxels, one voxel per
  pixel), centred at the origin;
- it is rotated by Euler angles about x, then y, then z, each uniform in its range (degrees);
- its centre is moved by a translation uniform in ``[-translation, translation]`` voxels per
  axis; ranges are checked so that the slab's bounding sphere stays inside the volume;
- the volume (``size`` voxels a side) samples the slab trilinearly (zeros outside).
Coordinates follow ``stn_repro.st``: normalised, ``align_corners=False``, ``(x, y, z)`` along
(width, height, depth), volumes ``(B, C, D, H, W)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..st import Affine3D, sample
from .draws import uniform
from .sources import DIGIT


def rotation_matrices(angles_deg: Tensor) -> Tensor:
    """``(N, 3)`` Euler angles (about x, then y, then z; degrees) -> ``(N, 3, 3)`` R = Rz Ry Rx."""
    a = torch.deg2rad(angles_deg)
    c, s = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def mat(*rows):
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    rx = mat((one, zero, zero), (zero, c[:, 0], -s[:, 0]), (zero, s[:, 0], c[:, 0]))
    ry = mat((c[:, 1], zero, s[:, 1]), (zero, one, zero), (-s[:, 1], zero, c[:, 1]))
    rz = mat((c[:, 2], -s[:, 2], zero), (s[:, 2], c[:, 2], zero), (zero, zero, one))
    return rz @ ry @ rx


def placement_theta(rotation: Tensor, shift_vox: Tensor, size: int, depth: int) -> Tensor:
    """``(N, 12)`` affine taking volume coordinates to slab coordinates (both normalised).

    A volume point p (voxels from the centre: ``p = size / 2 * x``) samples the slab at
    ``R^T (p - t)``, divided by the slab's half sides (14, 14, depth / 2).
    """
    half = torch.tensor([DIGIT / 2, DIGIT / 2, depth / 2], dtype=rotation.dtype)
    inv = rotation.transpose(1, 2) / half[:, None]  # (N, 3, 3): D^-1 R^T
    linear = inv * (size / 2)
    offset = -(inv @ shift_vox[..., None])[..., 0]
    return torch.cat([linear, offset[..., None]], dim=2).flatten(1)


def extrude_3d(
    digits: Tensor,
    labels: Tensor,
    rng: torch.Generator,
    size: int,
    depth: int,
    rotation: tuple[tuple[float, float], ...],
    translation: float,
) -> tuple:
    """Placement parameters for each digit (volumes are rendered later by ``render_volumes``).

    Returns the digits ``(N, 1, 28, 28)``, their labels and parameters ``(N, 18)``: the 12
    values of ``placement_theta``, the 3 angles (degrees) and the 3 shifts (voxels).
    """
    n = len(digits)
    radius = math.sqrt(2 * (DIGIT / 2) ** 2 + (depth / 2) ** 2)
    if translation + radius > size / 2:
        raise ValueError(
            f"a {DIGIT}x{DIGIT}x{depth} slab shifted by {translation} voxels leaves a {size}^3 "
            "volume: lower the translation"
        )
    angles = torch.stack([uniform(rng, n, *r) for r in rotation], dim=1)  # (N, 3)
    shift = (2 * torch.rand(n, 3, generator=rng, dtype=torch.float64) - 1) * translation
    theta = placement_theta(rotation_matrices(angles), shift, size, depth)
    return digits[:, None], labels, torch.cat([theta, angles, shift], dim=1)


def render_volumes(digits: Tensor, params: Tensor, size: int, depth: int) -> Tensor:
    """Render ``(B, 1, 28, 28)`` uint8 digits with their parameters into float volumes
    ``(B, 1, size, size, size)`` in [0, 1], on the digits' device."""
    slab = digits.float().div(255)[:, :, None].expand(-1, -1, depth, -1, -1)  # (B, 1, d, 28, 28)
    theta = params[:, :12].to(slab.device, slab.dtype)
    return sample(slab, Affine3D().grid(theta, (size, size, size)))
