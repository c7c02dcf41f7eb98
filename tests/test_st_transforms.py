"""The parameterisations and the sampler against known answers (CPU, float32 and float64)."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from stn_repro.st import (
    TRANSFORMS,
    Affine,
    Affine3D,
    Attention,
    Projective,
    Rotation,
    ThinPlateSpline,
    Translation,
    build_transform,
    compose_affine,
    sample,
)

TRANSFORMS_2D = [
    Affine(),
    Attention(),
    Translation(scale=1.0),
    Rotation(),
    Rotation(with_scale=True, with_translation=True),
    Projective(),
    ThinPlateSpline(16),
    ThinPlateSpline(9),
]
IDS_2D = [f"{type(t).__name__}-{t.num_params}" for t in TRANSFORMS_2D]


def batch_identity(transform, batch, dtype=torch.float32):
    return transform.identity_params().to(dtype)[None].repeat(batch, 1)


@pytest.mark.parametrize("transform", TRANSFORMS_2D, ids=IDS_2D)
@pytest.mark.parametrize("size", [(7, 7), (8, 12), (9, 4)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_identity_reproduces_input_2d(transform, size, mode):
    x = torch.rand(2, 3, *size)
    grid = transform.grid(batch_identity(transform, 2), size)
    assert grid.shape == (2, *size, 2)
    out = sample(x, grid, mode)
    if mode == "nearest":
        assert torch.equal(out, x)
    else:  # the only error is float32 round-off in the grid coordinates
        torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(5, 6, 7), (8, 8, 8)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_identity_reproduces_input_3d(size, mode):
    t = Affine3D()
    x = torch.rand(2, 2, *size)
    grid = t.grid(batch_identity(t, 2), size)
    assert grid.shape == (2, *size, 3)
    out = sample(x, grid, mode)
    if mode == "nearest":
        assert torch.equal(out, x)
    else:
        torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_identity_exact_in_float64():
    x = torch.rand(1, 2, 9, 10, dtype=torch.float64)
    for t in TRANSFORMS_2D:
        out = sample(x, t.grid(batch_identity(t, 1, torch.float64), (9, 10)))
        torch.testing.assert_close(out, x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("size", [(6, 6), (7, 7)])
def test_rotation_90_degrees_is_rot90(size):
    x = torch.rand(2, 3, *size)
    theta = torch.full((2, 1), math.pi / 2)
    out = sample(x, Rotation().grid(theta, size), "bilinear")
    torch.testing.assert_close(out, torch.rot90(x, k=1, dims=(-2, -1)), atol=1e-5, rtol=0)
    # The same matrix through the general affine transform.
    affine = torch.tensor([[0.0, -1.0, 0.0, 1.0, 0.0, 0.0]]).repeat(2, 1)
    out = sample(x, Affine().grid(affine, size), "nearest")
    assert torch.equal(out, torch.rot90(x, k=1, dims=(-2, -1)))


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -3), (1, 2), (-4, -1)])
def test_integer_translation_is_a_shift_with_zero_fill(dx, dy):
    h, w = 10, 12
    x = torch.rand(1, 2, h, w)
    # Output pixel (i, j) samples input pixel (i + dy, j + dx): one pixel is 2 / size.
    theta = torch.tensor([[1.0, 0.0, 2 * dx / w, 0.0, 1.0, 2 * dy / h]])
    out = sample(x, Affine().grid(theta, (h, w)))
    expected = torch.zeros_like(x)
    ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    ys_in, xs_in = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
    expected[..., ys, xs] = x[..., ys_in, xs_in]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # The attention and translation parameterisations say the same thing.
    out_att = sample(x, Attention().grid(torch.tensor([[1.0, 2 * dx / w, 2 * dy / h]]), (h, w)))
    torch.testing.assert_close(out_att, expected, atol=1e-5, rtol=0)


def test_attention_half_scale_samples_centre_crop():
    x = torch.rand(3, 2, 16, 20)
    theta = torch.tensor([[0.5, 0.0, 0.0]]).repeat(3, 1)
    out = sample(x, Attention().grid(theta, (8, 10)))
    torch.testing.assert_close(out, x[..., 4:12, 5:15], atol=1e-5, rtol=0)
    # The fixed-scale translation transform of the CUB experiment, at its identity.
    t = Translation(scale=0.5)
    out = sample(x, t.grid(batch_identity(t, 3), (8, 10)))
    torch.testing.assert_close(out, x[..., 4:12, 5:15], atol=1e-5, rtol=0)


def test_projective_with_affine_last_row_equals_affine():
    torch.manual_seed(0)
    a = torch.eye(2, 3).flatten()[None] + 0.2 * torch.randn(4, 6)
    h = torch.cat([a, torch.zeros(4, 2)], dim=1)
    size = (11, 13)
    torch.testing.assert_close(
        Projective().grid(h, size), Affine().grid(a, size), atol=1e-6, rtol=0
    )


def test_projective_division_is_guarded():
    # h31 = 1 puts the horizon w = x + 1 = 0 on the left edge region of the output.
    theta = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]], requires_grad=True)
    size = (8, 8)
    points = Projective().grid(theta, size)
    x = torch.rand(1, 1, *size)
    out = sample(x, points)
    out.sum().backward()
    assert torch.isfinite(points).all() and torch.isfinite(out).all()
    assert torch.isfinite(theta.grad).all()
    # w = 0 exactly: still finite.
    theta0 = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0]])
    assert torch.isfinite(Projective().grid(theta0, size)).all()


def test_tps_reproduces_affine_maps_exactly():
    torch.manual_seed(1)
    tps = ThinPlateSpline(16).double()
    ctrl = tps.control_points.double()  # (K, 2)
    a = torch.eye(2, 3, dtype=torch.float64) + 0.3 * torch.randn(2, 3, dtype=torch.float64)
    moved = ctrl @ a[:, :2].T + a[:, 2]  # control points mapped by the affine map
    size = (13, 17)
    grid = tps.grid(moved.reshape(1, -1), size)
    torch.testing.assert_close(grid, Affine().grid(a.reshape(1, 6), size), atol=1e-10, rtol=0)


def test_tps_interpolates_its_control_points():
    # With span 0.75 the 4x4 control points are exactly the pixel centres of a 4x4 output
    # (align_corners=False: centres at -3/4, -1/4, 1/4, 3/4), so the grid there is theta itself.
    torch.manual_seed(2)
    tps = ThinPlateSpline(16, span=0.75).double()
    moved = tps.control_points.double() + 0.1 * torch.randn(16, 2, dtype=torch.float64)
    grid = tps.grid(moved.reshape(1, -1), (4, 4))
    torch.testing.assert_close(grid.reshape(16, 2), moved, atol=1e-12, rtol=0)


def test_tps_forward_is_linear_in_theta():
    tps = ThinPlateSpline(16)
    t1, t2 = torch.randn(1, 32), torch.randn(1, 32)
    g = lambda t: tps.grid(t, (10, 10))  # noqa: E731
    torch.testing.assert_close(g(2 * t1 - t2), 2 * g(t1) - g(t2), atol=1e-4, rtol=0)


def test_tps_cache_follows_dtype_and_size():
    tps = ThinPlateSpline(16)
    tps.grid(torch.randn(2, 32), (5, 5))
    tps.grid(torch.randn(2, 32), (6, 5))
    assert len(tps._cache) == 2
    tps.double()  # moving the module empties the cache
    assert len(tps._cache) == 0
    assert tps.grid(torch.randn(2, 32, dtype=torch.float64), (5, 5)).dtype == torch.float64


def test_affine3d_known_answers():
    x = torch.rand(2, 1, 6, 6, 6)
    # Swap x and z: the volume transposed between its width and depth axes.
    swap = torch.tensor([[0.0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0]]).repeat(2, 1)
    out = sample(x, Affine3D().grid(swap, (6, 6, 6)), "nearest")
    assert torch.equal(out, x.transpose(2, 4))
    # Shift by one voxel along depth.
    shift = Affine3D().identity_params().clone()
    shift[11] = 2 / 6
    out = sample(x, Affine3D().grid(shift[None].repeat(2, 1), (6, 6, 6)))
    torch.testing.assert_close(out[:, :, :-1], x[:, :, 1:], atol=1e-5, rtol=0)
    assert out[:, :, -1].abs().max() < 1e-6


def random_theta(transform, batch, dtype=torch.float64, scale=0.1):
    base = transform.identity_params().to(dtype)[None].repeat(batch, 1)
    return base + scale * torch.randn(batch, transform.num_params, dtype=dtype)


@pytest.mark.parametrize("transform", [*TRANSFORMS_2D, Affine3D()], ids=[*IDS_2D, "Affine3D"])
def test_gradcheck_theta_and_input(transform):
    torch.manual_seed(3)
    transform = transform.double()
    size = (5, 6) if transform.dim == 2 else (4, 5, 3)
    theta = random_theta(transform, 2).requires_grad_()
    x = torch.rand(2, 2, *size, dtype=torch.float64, requires_grad=True)

    def warp(theta, x):
        return sample(x, transform.grid(theta, size), "bilinear")

    assert gradcheck(warp, (theta, x), eps=1e-6, atol=1e-5)


def test_nearest_is_differentiable_in_input():
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([[0.9, 0.1, 0.05, -0.1, 1.1, 0.0]], dtype=torch.float64)
    grid = Affine().grid(theta, (5, 5))
    assert gradcheck(lambda x: sample(x, grid, "nearest"), (x,))


@pytest.mark.parametrize(
    "transform,theta_shape", [(Affine(), (2, 5)), (Projective(), (2, 6)), (Affine(), (6,))]
)
def test_wrong_theta_shape_is_rejected(transform, theta_shape):
    with pytest.raises(ValueError, match="expects theta of shape"):
        transform.grid(torch.zeros(theta_shape), (4, 4))


def test_wrong_size_and_dimensionality_are_rejected():
    with pytest.raises(ValueError, match=r"output size \(D, H, W\)"):
        Affine3D().grid(torch.zeros(1, 12), (4, 4))
    with pytest.raises(ValueError, match=r"output size \(H, W\)"):
        Affine().grid(torch.zeros(1, 6), (4, 4, 4))
    grid3d = Affine3D().grid(batch_identity(Affine3D(), 1), (4, 4, 4))
    with pytest.raises(ValueError, match="2D input needs a grid"):
        sample(torch.rand(1, 1, 4, 4), grid3d)
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 4, 4, 2), "bicubic")


@pytest.mark.parametrize("k", [15, 10, 1, 0])
def test_tps_needs_a_square_number_of_points(k):
    with pytest.raises(ValueError, match="square number of control points"):
        ThinPlateSpline(k)


def test_registry_builds_every_transform():
    for name in TRANSFORMS:
        t = build_transform(name)
        assert t.identity_params().shape == (t.num_params,)
    assert build_transform("tps", num_control_points=9).num_params == 18
    with pytest.raises(ValueError, match="unknown transform 'shear'"):
        build_transform("shear")


def test_compose_affine_multiplies_the_matrices_out():
    def rotation(angle: float) -> torch.Tensor:
        c, s = math.cos(angle), math.sin(angle)
        return torch.tensor([[c, -s, 0.0, s, c, 0.0]])

    # two rotations: one rotation by the sum
    torch.testing.assert_close(compose_affine([rotation(0.3), rotation(0.5)]), rotation(0.8))
    # first a zoom by 0.5 about the centre, then a shift of 0.4 in its frame: 0.2 in the input's
    zoom = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.5, 0.0]])
    shift = torch.tensor([[1.0, 0.0, 0.4, 0.0, 1.0, 0.0]])
    torch.testing.assert_close(compose_affine([zoom, shift]),
                               torch.tensor([[0.5, 0.0, 0.2, 0.0, 0.5, 0.0]]))  # fmt: skip
    # where the second transformer samples the first's grid (bilinear interpolation of an
    # affine map is exact), it finds the composite's grid
    first = Affine().grid(rotation(0.2), (16, 16)).permute(0, 3, 1, 2)  # (1, 2, 16, 16)
    followed = sample(first, Affine().grid(zoom, (16, 16))).permute(0, 2, 3, 1)
    composite = Affine().grid(compose_affine([rotation(0.2), zoom]), (16, 16))
    torch.testing.assert_close(followed, composite, atol=1e-5, rtol=0)
