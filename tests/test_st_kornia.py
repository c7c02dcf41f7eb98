"""Cross-checks against kornia, an implementation written elsewhere (dev dependency only).

Conventions converted explicitly:
- kornia's ``warp_perspective`` takes a homography ``M`` mapping *input* pixel coordinates to
  *output* pixel coordinates; with ``align_corners=True`` its pixel ``u`` is exactly pixel ``u``
  of the image. Ours maps *output* normalised coordinates (align_corners=False, pixel ``u`` at
  ``(2u + 1) / n - 1``) to *input* normalised coordinates. So ``M = (N_in^-1 H N_out)^-1`` where
  ``N`` takes pixel coordinates to our normalised ones.
- kornia's thin plate spline (``get_tps_transform(a, b)`` then ``warp_points_tps``) interpolates
  ``a_k -> b_k`` but centres its kernels on the *targets* ``b_k``; the standard (Bookstein) spline
  that we and the paper use centres them on the output control points ``a_k``. The two agree
  exactly whenever the map is affine, and they have the same derivative with respect to the
  targets at the identity (there the kernel weights are zero, so where the kernels sit does not
  matter to first order); for larger warps they are different splines.
"""

import pytest
import torch

from stn_repro.st import Projective, ThinPlateSpline, sample

kornia_transform = pytest.importorskip("kornia.geometry.transform")


def pixel_to_normalised(size, dtype=torch.float64):
    """3x3 matrix N: pixel (u, v, 1) -> our normalised (x, y, 1) for an image of (H, W)."""
    h, w = size
    return torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], dtype=dtype)


@pytest.mark.parametrize("in_size,out_size", [((24, 20), (24, 20)), ((30, 30), (18, 22))])
def test_projective_matches_kornia_warp_perspective(in_size, out_size):
    torch.manual_seed(0)
    theta = Projective().identity_params().double()[None].repeat(3, 1)
    theta = theta + torch.cat([0.15 * torch.randn(3, 6), 0.2 * torch.randn(3, 2)], 1).double()
    x = torch.rand(3, 2, *in_size, dtype=torch.float64)
    ours = sample(x, Projective().grid(theta, out_size))

    h = Projective().matrix(theta)  # (B, 3, 3): output normalised -> input normalised
    pix = torch.linalg.inv(pixel_to_normalised(in_size)) @ h @ pixel_to_normalised(out_size)
    m = torch.linalg.inv(pix)  # input pixels -> output pixels, what kornia takes
    theirs = kornia_transform.warp_perspective(
        x, m, out_size, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    # Stated tolerance: float64 round-off through two matrix inversions.
    torch.testing.assert_close(ours, theirs, atol=1e-9, rtol=0)


def test_tps_matches_kornia_on_affine_warps():
    torch.manual_seed(1)
    tps = ThinPlateSpline(16).double()
    ctrl = tps.control_points.double()[None].repeat(2, 1, 1)  # (B, K, 2) output points
    a = torch.eye(2, 3, dtype=torch.float64) + 0.25 * torch.randn(2, 2, 3, dtype=torch.float64)
    moved = torch.einsum("bij,bkj->bki", a[:, :, :2], ctrl) + a[:, None, :, 2]  # input points
    x = torch.rand(2, 3, 20, 20, dtype=torch.float64)
    ours = sample(x, tps.grid(moved.reshape(2, -1), (20, 20)))

    kernel_w, affine_w = kornia_transform.get_tps_transform(ctrl, moved)
    theirs = kornia_transform.warp_image_tps(x, moved, kernel_w, affine_w, align_corners=False)
    torch.testing.assert_close(ours, theirs, atol=1e-9, rtol=0)


def test_tps_derivative_at_identity_matches_kornia():
    tps = ThinPlateSpline(16).double()
    ctrl = tps.control_points.double()[None]  # (1, K, 2)
    size = (11, 13)
    points = tps.grid(ctrl.reshape(1, -1), size).reshape(1, -1, 2)  # output pixel centres

    def kornia_grid(targets):  # (1, K, 2) -> (1, HW, 2), kornia's spline
        kernel_w, affine_w = kornia_transform.get_tps_transform(ctrl, targets)
        return kornia_transform.warp_points_tps(points, targets, kernel_w, affine_w)

    def our_grid(targets):
        return tps.grid(targets.reshape(1, -1), size).reshape(1, -1, 2)

    theirs = torch.autograd.functional.jacobian(kornia_grid, ctrl)
    ours = torch.autograd.functional.jacobian(our_grid, ctrl)
    assert ours.abs().max() > 0.5  # a real, non-trivial Jacobian
    torch.testing.assert_close(ours, theirs, atol=1e-9, rtol=0)
