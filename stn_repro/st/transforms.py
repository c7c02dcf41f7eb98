"""Parameterisations of the spatial transformer: theta -> normalised sampling grid.

Coordinate convention (one for the whole library)
-------------------------------------------------
Every grid is in PyTorch's normalised coordinates with ``align_corners=False``: along an axis of
``n`` pixels, ``-1`` is the outer edge of the first pixel, ``+1`` the outer edge of the last, and
pixel ``i`` has its centre at ``(2 * i + 1) / n - 1``. ``x`` runs along the width (left to right),
``y`` along the height (top to bottom) and, in 3D, ``z`` along the depth. A grid has shape
``(B, H, W, 2)`` holding ``(x, y)`` (2D) or ``(B, D, H, W, 3)`` holding ``(x, y, z)`` (3D), exactly
what :func:`torch.nn.functional.grid_sample` takes.

Every transform maps the coordinates of an *output* pixel to the point of the *input* it samples
(the paper's ``(x^s, y^s) = T_theta(x^t, y^t)``, Eq. 1). The output and input may have different
sizes: both live in the same ``[-1, 1]`` square.

Each transform is an ``nn.Module`` with the same small interface:

* ``num_params``: length of one theta vector;
* ``dim``: 2 for images, 3 for volumes;
* ``identity_params()``: the theta (shape ``(num_params,)``) whose grid reproduces the input;
* ``grid(theta, size)``: theta ``(B, num_params)`` and output size ``(H, W)`` or ``(D, H, W)``
  -> the sampling grid above.

Transforms built on a matrix (affine, attention, rotation, projective, 3D affine) also have
``matrix(theta)``, the ``(B, 2, 3)``, ``(B, 3, 3)`` or ``(B, 3, 4)`` matrix it stands for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALIGN_CORNERS = False
"""The library's one ``align_corners`` choice (see the module docstring)."""


def base_grid(size: Sequence[int], device=None, dtype=None) -> Tensor:
    """Homogeneous coordinates of the pixel centres of an output of ``size``.

    Args:
        size: ``(H, W)`` or ``(D, H, W)``.

    Returns:
        ``(H, W, 3)`` holding ``(x, y, 1)`` or ``(D, H, W, 4)`` holding ``(x, y, z, 1)``, in the
        library's normalised convention.
    """
    eye = torch.eye(len(size), len(size) + 1, device=device, dtype=dtype)
    grid = F.affine_grid(eye[None], [1, 1, *size], align_corners=ALIGN_CORNERS)[0]
    return torch.cat([grid, torch.ones_like(grid[..., :1])], dim=-1)


class Transform(nn.Module):
    """Base class: checks shapes, then defers to ``_grid``."""

    num_params: int
    dim: int = 2

    @property
    def param_names(self) -> list[str]:
        """A name per theta entry, in order (e.g. ``a11 ... a23``), for logs and plots."""
        return [f"p{k}" for k in range(self.num_params)]

    def identity_params(self) -> Tensor:
        raise NotImplementedError

    def _grid(self, theta: Tensor, size: tuple[int, ...]) -> Tensor:
        raise NotImplementedError

    def check_theta(self, theta: Tensor) -> None:
        """Raise a ``ValueError`` unless ``theta`` has shape ``(B, num_params)``."""
        if theta.dim() != 2 or theta.shape[1] != self.num_params:
            raise ValueError(
                f"{type(self).__name__} expects theta of shape (B, {self.num_params}), "
                f"got {tuple(theta.shape)}"
            )

    def grid(self, theta: Tensor, size: Sequence[int]) -> Tensor:
        """Sampling grid for theta ``(B, num_params)`` at output ``size`` (see module doc)."""
        self.check_theta(theta)
        size = tuple(int(s) for s in size)
        if len(size) != self.dim or min(size) < 1:
            want = "(H, W)" if self.dim == 2 else "(D, H, W)"
            raise ValueError(f"{type(self).__name__} needs an output size {want}, got {size}")
        return self._grid(theta, size)

    def forward(self, theta: Tensor, size: Sequence[int]) -> Tensor:
        return self.grid(theta, size)


class MatrixTransform(Transform):
    """A transform given by an affine matrix ``(B, dim, dim + 1)`` built from theta."""

    def matrix(self, theta: Tensor) -> Tensor:
        raise NotImplementedError

    def _grid(self, theta: Tensor, size: tuple[int, ...]) -> Tensor:
        return F.affine_grid(
            self.matrix(theta), [theta.shape[0], 1, *size], align_corners=ALIGN_CORNERS
        )


class Affine(MatrixTransform):
    """General 2D affine transform, 6 parameters (paper Eq. 1).

    theta ``(B, 6)`` is the row-major ``2 x 3`` matrix ``A``;
    ``(x_in, y_in) = A @ (x_out, y_out, 1)``. Identity: ``(1, 0, 0, 0, 1, 0)``.
    """

    num_params = 6

    @property
    def param_names(self) -> list[str]:
        return [f"a{r}{c}" for r in (1, 2) for c in (1, 2, 3)]

    def identity_params(self) -> Tensor:
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def matrix(self, theta: Tensor) -> Tensor:
        self.check_theta(theta)
        return theta.view(-1, 2, 3)


def compose_affine(thetas: Sequence[Tensor]) -> Tensor:
    """The one affine theta ``(B, 6)`` equal to affine transformers applied in a row.

    ``thetas[0]`` is the first transformer (on the input), ``thetas[-1]`` the last; each is
    ``(B, 6)``. An output point ``p`` of the last samples ``A_1 A_2 ... A_n p`` of the first's
    input (``A_k`` the ``3 x 3`` homogeneous matrix of ``thetas[k - 1]``). This holds exactly for
    transformers in a row; between them, layers that keep the normalised frame (convolutions
    with "same" padding, pooling) leave it approximately true.
    """
    last = torch.tensor([0.0, 0.0, 1.0])
    total = None
    for theta in thetas:
        a = torch.cat([theta.reshape(-1, 2, 3), last.to(theta).expand(len(theta), 1, 3)], 1)
        total = a if total is None else total @ a
    return total[:, :2].reshape(-1, 6)


class Attention(MatrixTransform):
    """Isotropic scale and translation, 3 parameters (paper Eq. 2).

    theta ``(B, 3)`` is ``(s, t_x, t_y)``: ``x_in = s * x_out + t_x``, ``y_in = s * y_out + t_y``.
    ``s = 0.5`` samples a window half the input's side centred at ``(t_x, t_y)``.
    Identity: ``(1, 0, 0)``.
    """

    num_params = 3

    @property
    def param_names(self) -> list[str]:
        return ["s", "tx", "ty"]

    def identity_params(self) -> Tensor:
        return torch.tensor([1.0, 0.0, 0.0])

    def matrix(self, theta: Tensor) -> Tensor:
        self.check_theta(theta)
        s, tx, ty = theta.unbind(1)
        zero = torch.zeros_like(s)
        return torch.stack([s, zero, tx, zero, s, ty], dim=1).view(-1, 2, 3)


class BoundedAttention(Attention):
    """Attention whose window always lies inside the input, 3 unconstrained parameters.

    theta ``(B, 3)`` is ``(a, b_x, b_y)``, mapped to the window ``(s, t_x, t_y)`` of
    :class:`Attention` by ``s = min_scale + (max_scale - min_scale) * sigmoid(a)`` and
    ``t = (1 - s) * tanh(b)``: ``min_scale < s < max_scale <= 1`` and ``|t| < 1 - s``, so the
    window's edges never pass the input's (and it is never empty of input, whatever the
    regressor outputs). No theta gives the identity exactly, so, unlike the other transforms,
    ``identity_params()`` is only the nearest start: the centred window of scale
    ``max(max_scale - 0.05, (max_scale + min_scale) / 2)`` (``params_for`` gives any other).
    Not in ``TRANSFORMS``: build it directly.
    """

    def __init__(self, min_scale: float = 0.1, max_scale: float = 1.0):
        super().__init__()
        if not 0 < min_scale < max_scale <= 1:
            raise ValueError("BoundedAttention needs 0 < min_scale < max_scale <= 1, got "
                             f"min_scale={min_scale}, max_scale={max_scale}")  # fmt: skip
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def window(self, theta: Tensor) -> Tensor:
        """theta ``(B, 3)`` -> the window ``(s, t_x, t_y)`` ``(B, 3)`` it stands for."""
        self.check_theta(theta)
        span = self.max_scale - self.min_scale
        s = self.min_scale + span * torch.sigmoid(theta[:, :1])
        return torch.cat([s, (1 - s) * torch.tanh(theta[:, 1:])], dim=1)

    def params_for(self, window: Tensor) -> Tensor:
        """The theta ``(..., 3)`` of windows ``(s, t_x, t_y)`` ``(..., 3)`` inside the input
        (``min_scale < s < max_scale``, ``|t| < 1 - s``): the inverse of ``window``."""
        window = torch.as_tensor(window, dtype=torch.float32)
        s, t = window[..., :1], window[..., 1:]
        inside = (s > self.min_scale) & (s < self.max_scale)
        if not inside.all() or not (t.abs() < 1 - s).all():
            raise ValueError(f"windows {window.tolist()} are not strictly inside the input "
                             f"with a scale between {self.min_scale} and {self.max_scale}")
        span = self.max_scale - self.min_scale
        return torch.cat([torch.logit((s - self.min_scale) / span),
                          torch.atanh(t / (1 - s))], dim=-1)  # fmt: skip

    def identity_params(self) -> Tensor:
        scale = max(self.max_scale - 0.05, (self.max_scale + self.min_scale) / 2)
        return self.params_for(torch.tensor([scale, 0.0, 0.0]))

    def matrix(self, theta: Tensor) -> Tensor:
        return super().matrix(self.window(theta))


class Translation(MatrixTransform):
    """Translation with a scale fixed at construction, 2 parameters.

    theta ``(B, 2)`` is ``(t_x, t_y)``: ``x_in = scale * x_out + t_x`` (same for y). The CUB
    experiment of the paper fixes ``scale = 0.5``. Identity: ``(0, 0)`` (a centred window).
    """

    num_params = 2

    def __init__(self, scale: float = 1.0):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"Translation scale must be positive, got {scale}")
        self.scale = float(scale)

    @property
    def param_names(self) -> list[str]:
        return ["tx", "ty"]

    def identity_params(self) -> Tensor:
        return torch.zeros(2)

    def matrix(self, theta: Tensor) -> Tensor:
        self.check_theta(theta)
        tx, ty = theta.unbind(1)
        s = torch.full_like(tx, self.scale)
        zero = torch.zeros_like(tx)
        return torch.stack([s, zero, tx, zero, s, ty], dim=1).view(-1, 2, 3)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class Rotation(MatrixTransform):
    """A rotation by a regressed angle, optionally with isotropic scale and translation.

    theta ``(B, P)`` is ``(alpha[, s][, t_x, t_y])`` with ``P`` = 1, 2, 3 or 4 depending on
    ``with_scale`` and ``with_translation``; alpha in radians. The matrix
    ``[[s cos a, -s sin a, t_x], [s sin a, s cos a, t_y]]`` is always a (scaled) rotation, never a
    shear. With y pointing down, a positive alpha samples the input rotated clockwise, so the
    output shows the input turned anticlockwise on screen: ``alpha = pi/2`` equals
    ``torch.rot90(x, k=1, dims=(-2, -1))``. Identity: alpha 0, scale 1, translation 0.
    """

    def __init__(self, with_scale: bool = False, with_translation: bool = False):
        super().__init__()
        self.with_scale = with_scale
        self.with_translation = with_translation
        self.num_params = 1 + int(with_scale) + 2 * int(with_translation)

    @property
    def param_names(self) -> list[str]:
        return ["angle"] + ["s"] * self.with_scale + ["tx", "ty"] * self.with_translation

    def identity_params(self) -> Tensor:
        return torch.tensor([0.0] + [1.0] * self.with_scale + [0.0, 0.0] * self.with_translation)

    def matrix(self, theta: Tensor) -> Tensor:
        self.check_theta(theta)
        alpha = theta[:, 0]
        s = theta[:, 1] if self.with_scale else torch.ones_like(alpha)
        if self.with_translation:
            tx, ty = theta[:, -2], theta[:, -1]
        else:
            tx = ty = torch.zeros_like(alpha)
        cos, sin = s * torch.cos(alpha), s * torch.sin(alpha)
        return torch.stack([cos, -sin, tx, sin, cos, ty], dim=1).view(-1, 2, 3)

    def extra_repr(self) -> str:
        return f"with_scale={self.with_scale}, with_translation={self.with_translation}"


class Projective(MatrixTransform):
    """Plane projective transform (homography), 8 parameters.

    theta ``(B, 8)`` is ``(h11, h12, h13, h21, h22, h23, h31, h32)`` with ``h33 = 1``; the
    homography maps output to input coordinates:
    ``(u, v, w) = H @ (x_out, y_out, 1)``, ``(x_in, y_in) = (u / w, v / w)``.
    The division is guarded: ``|w|`` is clamped to at least ``eps`` keeping its sign (a ``w`` of
    exactly 0 counts as positive), so no NaN or inf arises as a point nears the horizon; such
    points land far outside the input and sample zeros. Identity: ``(1, 0, 0, 0, 1, 0, 0, 0)``.
    """

    num_params = 8

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    @property
    def param_names(self) -> list[str]:
        return [f"h{r}{c}" for r in (1, 2, 3) for c in (1, 2, 3)][:8]

    def identity_params(self) -> Tensor:
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])

    def matrix(self, theta: Tensor) -> Tensor:
        self.check_theta(theta)
        return torch.cat([theta, torch.ones_like(theta[:, :1])], dim=1).view(-1, 3, 3)

    def _grid(self, theta: Tensor, size: tuple[int, ...]) -> Tensor:
        points = base_grid(size, theta.device, theta.dtype)  # (H, W, 3)
        uvw = torch.einsum("bij,hwj->bhwi", self.matrix(theta), points)  # (B, H, W, 3)
        w = uvw[..., 2:]
        sign = torch.where(w < 0, -torch.ones_like(w), torch.ones_like(w))
        w = sign * w.abs().clamp(min=self.eps)
        return uvw[..., :2] / w


class ThinPlateSpline(Transform):
    """Thin plate spline warp with ``K`` control points on a regular grid (paper Sec. 3.1).

    The control points ``P_k`` sit on a ``sqrt(K) x sqrt(K)`` grid spanning ``[-span, span]^2``
    of the *output* (default 4 x 4 = 16, as in the paper, over the whole output). theta
    ``(B, 2K)`` holds the source position ``(x_k, y_k)`` in the *input* of every control point,
    flattened ``(x_1, y_1, x_2, y_2, ...)`` with points in row-major order (y outer, x inner).
    The warp is the thin plate spline interpolant through those K correspondences, with kernel
    ``U(r) = r^2 log r^2`` and ``U(0) = 0``. Identity: theta equal to the control points.

    The ``(K + 3) x (K + 3)`` system is inverted once at construction; for each output size the
    product ``M`` of the kernel features with that inverse is cached, so a forward pass is one
    matrix product, linear in theta. It is evaluated as ``base + M @ (theta - P)`` (equal to
    ``M @ theta``, since the spline reproduces affine maps) so the identity gives exactly the
    same grid as the identity affine transform.
    """

    def __init__(self, num_control_points: int = 16, span: float = 1.0):
        super().__init__()
        side = math.isqrt(num_control_points)
        if num_control_points < 4 or side * side != num_control_points:
            raise ValueError(
                "ThinPlateSpline needs a square number of control points >= 4 (e.g. 16 = 4x4), "
                f"got {num_control_points}"
            )
        self.num_control_points = num_control_points
        self.num_params = 2 * num_control_points
        # Control points rounded to float32 so every dtype sees the very same points.
        lin = torch.linspace(-span, span, side).double()
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        points = torch.stack([xx.flatten(), yy.flatten()], dim=1)  # (K, 2) as (x, y)
        k = num_control_points
        system = torch.zeros(k + 3, k + 3, dtype=torch.float64)
        system[:k, :k] = self.kernel(torch.cdist(points, points))
        system[:k, k] = 1.0
        system[:k, k + 1 :] = points
        system[k, :k] = 1.0
        system[k + 1 :, :k] = points.T
        self.register_buffer("control_points", points.float(), persistent=False)  # (K, 2)
        # Columns of the inverse that multiply the K target values (the last 3 right-hand sides
        # are zeros): (K + 3, K). Kept in float64 off the module's buffers, so casting the model
        # to a lower precision never degrades it; the per-size cache is built from it.
        self._inverse = torch.linalg.inv(system)[:, :k]
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    @staticmethod
    def kernel(r: Tensor) -> Tensor:
        """``U(r) = r^2 log r^2`` with ``U(0) = 0``."""
        r2 = r * r
        return torch.where(r2 > 0, r2 * torch.log(r2.clamp(min=1e-30)), torch.zeros_like(r2))

    @property
    def param_names(self) -> list[str]:
        return [f"tps_{axis}{k:02d}" for k in range(self.num_control_points) for axis in "xy"]

    def identity_params(self) -> Tensor:
        return self.control_points.detach().cpu().flatten().clone()

    def interpolation_matrix(self, size: tuple[int, int], device, dtype) -> tuple[Tensor, Tensor]:
        """``(H * W, K)`` matrix M with ``grid = M @ source_points`` and the identity grid
        ``(H * W, 2)``, both cached per size."""
        key = (size, device, dtype)
        if key not in self._cache:
            points = base_grid(size, device, torch.float64).view(-1, 3)  # (HW, 3)
            ctrl = self.control_points.to(device, torch.float64)
            features = torch.cat(
                [self.kernel(torch.cdist(points[:, :2], ctrl)), points[:, 2:], points[:, :2]],
                dim=1,
            )  # (HW, K + 3): U(|p - P_k|), 1, x, y
            inverse = self._inverse.to(device)
            identity = base_grid(size, device, dtype).view(-1, 3)[:, :2]
            self._cache[key] = ((features @ inverse).to(dtype), identity)
        return self._cache[key]

    def _apply(self, fn, recurse=True):
        self._cache = {}
        return super()._apply(fn, recurse)

    def _grid(self, theta: Tensor, size: tuple[int, ...]) -> Tensor:
        m, identity = self.interpolation_matrix(size, theta.device, theta.dtype)  # (HW, K)
        ctrl = self.control_points.to(theta.dtype)
        shift = theta.view(-1, self.num_control_points, 2) - ctrl  # (B, K, 2)
        return (identity + torch.matmul(m, shift)).view(-1, *size, 2)

    def extra_repr(self) -> str:
        return f"num_control_points={self.num_control_points}"


class Affine3D(MatrixTransform):
    """General 3D affine transform, 12 parameters (paper Eq. 10).

    theta ``(B, 12)`` is the row-major ``3 x 4`` matrix ``A``;
    ``(x_in, y_in, z_in) = A @ (x_out, y_out, z_out, 1)``. The grid is ``(B, D, H, W, 3)``.
    Identity: ``(1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0)``.
    """

    num_params = 12
    dim = 3

    @property
    def param_names(self) -> list[str]:
        return [f"a{r}{c}" for r in (1, 2, 3) for c in (1, 2, 3, 4)]

    def identity_params(self) -> Tensor:
        return torch.eye(3, 4).flatten()

    def matrix(self, theta: Tensor) -> Tensor:
        self.check_theta(theta)
        return theta.view(-1, 3, 4)


TRANSFORMS: dict[str, type[Transform]] = {
    "affine": Affine,
    "attention": Attention,
    "translation": Translation,
    "rotation": Rotation,
    "projective": Projective,
    "tps": ThinPlateSpline,
    "affine3d": Affine3D,
}
"""Transforms by the short name the configs use."""


def build_transform(name: str, **kwargs) -> Transform:
    """Build a transform by its short name (see ``TRANSFORMS``)."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; choose one of {sorted(TRANSFORMS)}")
    return TRANSFORMS[name](**kwargs)
