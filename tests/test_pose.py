"""Pose recovery measures against known answers: exact inverses leave nothing, the identity
leaves the input's spread, the generators' distortions undo their images, TPS warps read at
the output's centre."""

from __future__ import annotations

import math
import runpy

import pytest
import torch

from stn_repro.config import PACKAGE_ROOT
from stn_repro.data.generators import generate
from stn_repro.data.sources import load_mnist
from stn_repro.report.pose import (
    apply,
    centre_jacobian,
    distortions,
    magnification,
    pose_recovery,
    spreads,
    to_homogeneous,
    tps_at_centre,
    transform_matrices,
)
from stn_repro.st import Affine, Projective, ThinPlateSpline, sample

RTS = {"rotation": (-45.0, 45.0), "scale": (0.7, 1.2), "canvas": 42}
PROJECTIVE = {"scale": (0.75, 1.0), "corner_sd": 5.0}
PROJECTIVE_FRAME = {**PROJECTIVE, "moved": "frame"}


@pytest.fixture(scope="module")
def digits():
    images, labels = load_mnist(PACKAGE_ROOT / "datasets", "train")
    return images[:400], labels[:400]


def params_of(generator: str, kwargs: dict, digits) -> torch.Tensor:
    return generate(generator, *digits, seed=5, params=kwargs)[2]


def test_rotation_spread_of_uniform_45_degrees_is_its_circular_sd():
    angles = torch.linspace(-45, 45, 100_001)[:, None]
    d = distortions("rotate", angles)[0]
    expected = math.degrees(math.sqrt(-2 * math.log(math.sin(math.pi / 4) / (math.pi / 4))))
    assert expected == pytest.approx(26.26, abs=0.01)  # the "26 degrees"
    found = pose_recovery("rotate", d, torch.eye(3, dtype=torch.float64).expand_as(d))
    assert found["rotation_deg"]["input"] == pytest.approx(expected, rel=1e-4)
    assert found["rotation_deg"]["residual"] == found["rotation_deg"]["input"]  # identity T
    assert found["rotation_deg"]["removed_pct"] == 0


ROTATE = {"rotation": (-45.0, 45.0)}


@pytest.mark.parametrize("generator, kwargs", [("rotate", ROTATE), ("rts", RTS),
                                               ("projective", PROJECTIVE),
                                               ("projective", PROJECTIVE_FRAME)])
def test_an_exact_inverse_leaves_no_spread_whatever_the_canonical_pose(digits, generator, kwargs):
    d = distortions(generator, params_of(generator, kwargs, digits), kwargs)[0]
    pose = torch.tensor([[0.8, -0.3, 0.1], [0.3, 0.8, -0.2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    found = pose_recovery(generator, d, torch.linalg.inv(d) @ pose)  # R = pose for every image
    for measure, values in found.items():
        assert values["input"] > 0.01, measure
        assert values["residual"] < 1e-6, measure
        assert values["removed_pct"] == pytest.approx(100)
    every = spreads(torch.linalg.inv(d) @ pose)
    assert {"rotation_deg", "log_scale", "translation_px", "corners_px"} == set(every)


@pytest.mark.parametrize("generator, kwargs", [("rts", RTS), ("projective", PROJECTIVE),
                                               ("projective", PROJECTIVE_FRAME)])
def test_the_distortions_undo_the_generators_images(digits, generator, kwargs):
    """Sampling an image at D^-1 (output -> canvas) gives back the upright digit: D really maps
    canvas coordinates onto the digit's, as the generator drew it."""
    images, _, params = generate(generator, *digits, seed=5, params=kwargs)
    d = distortions(generator, params, kwargs)[0]
    t = torch.linalg.inv(d)
    theta = (t / t[:, 2:, 2:]).flatten(1)[:, :8]
    grid = Projective().grid(theta, (28, 28))
    restored = sample(images.double(), grid)[:, 0]
    upright = digits[0].double()
    inside = grid.abs().amax(-1) < 0.9  # away from the canvas edge
    error = (restored - upright).abs()[inside.expand_as(upright)]
    assert error.mean() < 12  # two bilinear resamplings of 0-255 digits
    shuffled = (restored - upright.roll(1, 0)).abs()[inside.expand_as(upright)]
    assert shuffled.mean() > 3 * error.mean()


def test_the_addition_channels_get_their_own_digits_distortions(digits):
    images, _, params = generate("addition", *digits, seed=5, params=RTS)
    partner = params[:, 8].long()
    for channel, upright in enumerate([digits[0], digits[0][partner]]):
        t = torch.linalg.inv(distortions("addition", params, RTS)[channel])
        grid = Affine().grid(t[:, :2].flatten(1), (28, 28))
        restored = sample(images[:, channel : channel + 1].double(), grid)[:, 0]
        assert (restored - upright.double()).abs().mean() < 12
        assert (restored - upright.roll(1, 0).double()).abs().mean() > 20


def test_the_homography_jacobian_at_the_origin_against_finite_differences(digits):
    h = distortions("projective", params_of("projective", PROJECTIVE, digits))[0][:50]
    eps = 1e-6
    columns = [(apply(h, torch.tensor([[eps, 0.0]], dtype=h.dtype))
                - apply(h, torch.tensor([[-eps, 0.0]], dtype=h.dtype)))[:, 0] / (2 * eps),
               (apply(h, torch.tensor([[0.0, eps]], dtype=h.dtype))
                - apply(h, torch.tensor([[0.0, -eps]], dtype=h.dtype)))[:, 0] / (2 * eps)]
    numeric = torch.stack(columns, dim=2)
    torch.testing.assert_close(centre_jacobian(h), numeric, atol=1e-7, rtol=1e-6)


def test_corner_spread_is_finite_on_p_and_blind_to_zoom(digits):
    d = distortions("projective", params_of("projective", PROJECTIVE, digits))[0]
    zoom = torch.diag(torch.tensor([0.8, 0.8, 1.0], dtype=torch.float64)).expand_as(d)
    found = pose_recovery("projective", d, zoom)
    corners = found["corners_px"]
    assert 2 < corners["input"] < 20  # corners moved by N(0, 5 px), digits scaled U(0.75, 1)
    assert abs(corners["removed_pct"]) < 1e-6  # zooming is no alignment


def test_the_spread_of_a_known_translation_and_scale():
    n = 1000
    shift = torch.zeros(n, 3, 3, dtype=torch.float64)
    shift[:, 0, 2] = torch.where(torch.arange(n) % 2 == 0, 0.5, -0.5)  # +-7 digit pixels
    scale = torch.where(torch.arange(n) % 2 == 0, 2.0, 0.5).double()
    r = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1) + shift
    r[:, 0, 0], r[:, 1, 1] = scale, scale
    found = spreads(r)
    assert found["translation_px"] == pytest.approx(7.0)
    assert found["log_scale"] == pytest.approx(math.log(2))
    assert found["rotation_deg"] == pytest.approx(0, abs=1e-6)


def test_a_tps_through_an_affine_map_is_that_map_at_the_centre():
    tps = ThinPlateSpline(16)
    a = torch.tensor([[[0.9, -0.2, 0.1], [0.3, 1.1, -0.05]]], dtype=torch.float64)
    points = tps.control_points.double()
    theta = (points @ a[0, :, :2].T + a[0, :, 2]).flatten()[None]
    torch.testing.assert_close(tps_at_centre(tps, theta), a)
    torch.testing.assert_close(transform_matrices(tps, theta), to_homogeneous(a))
    torch.testing.assert_close(transform_matrices(Affine(), a.flatten(1)), to_homogeneous(a))


def test_a_bent_tps_at_the_centre_has_the_splines_value_and_jacobian_there():
    """Against the sampling grid itself: its middle pixel (odd side) is the output's centre, and
    central differences of its neighbours give the Jacobian."""
    torch.manual_seed(0)
    tps = ThinPlateSpline(16)
    theta = tps.identity_params().double()[None] + 0.15 * torch.randn(3, 32, dtype=torch.float64)
    side = 401
    grid = tps.grid(theta, (side, side))  # (N, H, W, 2): source (x, y) per output pixel
    mid, step = side // 2, 2.0 / side
    jacobian = torch.stack([(grid[:, mid, mid + 1] - grid[:, mid, mid - 1]) / (2 * step),
                            (grid[:, mid + 1, mid] - grid[:, mid - 1, mid]) / (2 * step)], 2)
    found = tps_at_centre(tps, theta)
    torch.testing.assert_close(found[:, :, 2], grid[:, mid, mid], atol=1e-9, rtol=0)
    torch.testing.assert_close(found[:, :, :2], jacobian, atol=1e-4, rtol=0)
    affine_part = tps._inverse[16:] @ theta.view(3, 16, 2)  # (N, 3, 2): rows for 1, x, y
    assert (found[:, :, 2] - affine_part[:, 0]).abs().max() > 0.01  # the bending counts


def test_magnification_of_a_known_zoom_and_of_rts_digits_in_their_canvas(digits):
    """A transformer sampling a centred box of half the input's side (a rotated one too)
    shows it twice as large; with T the identity, an RTS digit's 28 px frame at scale s fills
    28 s / 42 of the canvas' side."""
    half = torch.tensor([[[0.5, 0.0, 0.1], [0.0, 0.5, -0.2], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    turn = math.radians(30)
    rotated = half.clone()
    rotated[0, :2, :2] = 0.5 * torch.tensor([[math.cos(turn), -math.sin(turn)],
                                             [math.sin(turn), math.cos(turn)]])  # fmt: skip
    assert magnification(torch.cat([half, rotated])).tolist() == pytest.approx([2.0, 2.0])
    params = params_of("rts", RTS, digits)
    d = distortions("rts", params, RTS)[0]
    scale = params[:, 1].double()  # the RTS generator's parameters: rotation, scale, x, y
    assert magnification(d).tolist() == pytest.approx((28 * scale / 42).tolist(), rel=1e-6)


def test_the_zoom_script_reports_a_known_zoom_and_the_frame_it_leaves():
    """scripts/transformer_zoom.py: a transformer that samples half the canvas' side shows an
    RTS digit of scale 0.75 (frame 0.5 of the 42 px canvas) filling its output."""
    zoom = runpy.run_path(str(PACKAGE_ROOT / "scripts" / "transformer_zoom.py"))
    d = distortions("rts", torch.tensor([[10.0, 0.75, 0.0, 0.0]] * 4), RTS)[0]
    t = torch.diag(torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64)).expand(4, 3, 3)
    lines = zoom["zoom_rows"]([(t, [d])])
    assert lines == ["  transformer 1: magnification 2.000 +- 0.000",
                     "    channel 0: digit frame / output side 1.000 +- 0.000"]  # fmt: skip
