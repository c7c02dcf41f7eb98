"""Distorted-MNIST generators: spec statistics, geometry, determinism, cache."""

import math

import pytest
import torch

from stn_repro.config import PACKAGE_ROOT
from stn_repro.data import generators, load_split
from stn_repro.data.generators import generate, homographies, paste_max
from stn_repro.data.sources import load_mnist
from stn_repro.errors import UserError

DATA_DIR = PACKAGE_ROOT / "datasets"

N = 2000


@pytest.fixture(scope="module")
def digits():
    images, labels = load_mnist(DATA_DIR, "train")
    return images[:N], labels[:N]


def ink_centroid(images):
    """(N, 1, H, W) uint8 -> (N, 2) centre of mass (x, y) in pixels from the image centre."""
    w = images[:, 0].double()
    h, wd = w.shape[1:]
    ys = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    xs = torch.arange(wd, dtype=torch.float64) - (wd - 1) / 2
    mass = w.sum((1, 2))
    return torch.stack([(w.sum(1) * xs).sum(1) / mass, (w.sum(2) * ys).sum(1) / mass], 1)


def test_mnist_bundled_files_load(digits):
    images, labels = load_mnist(DATA_DIR, "test")
    assert images.shape == (10_000, 28, 28) and images.dtype == torch.uint8
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels
    assert digits[1][:5].tolist() == [5, 0, 4, 1, 9]


def test_rotation_stats_and_geometry(digits):
    images, _, params = generate("rotate", *digits, 0, {"rotation": (-90.0, 90.0)})
    angle = params[:, 0]
    assert images.shape == (N, 1, 28, 28)
    assert -90 <= angle.min() < -85 and 85 < angle.max() <= 90
    assert abs(angle.mean()) < 5 and abs(angle.std() - 180 / math.sqrt(12)) < 3
    # An angle of +90 degrees is torch.rot90 (anticlockwise on screen).
    one = digits[0][:1]
    out, _, _ = generate("rotate", one, digits[1][:1], 0, {"rotation": (90.0, 90.0)})
    assert (out[0, 0].int() - torch.rot90(one[0], 1).int()).abs().max() <= 1


def test_rts_stats_and_geometry(digits):
    spec = {"rotation": (-45.0, 45.0), "scale": (0.7, 1.2), "canvas": 42}
    images, _, params = generate("rts", *digits, 1, spec)
    angle, scale, offset = params[:, 0], params[:, 1], params[:, 2:4]
    assert images.shape == (N, 1, 42, 42)
    assert -45 <= angle.min() < -43 and 43 < angle.max() <= 45
    assert 0.7 <= scale.min() < 0.72 and 1.18 < scale.max() <= 1.2
    reach = (42 - 28 * scale) / 2  # the scaled 28x28 frame stays inside the canvas
    assert (offset.abs() <= reach[:, None] + 1e-4).all()
    assert (offset.abs() > 0.9 * reach[:, None]).float().mean() > 0.05  # reaches the edges
    # Geometry: the ink's centre follows the offset (a digit's centroid sits near its frame's
    # centre, within a couple of pixels), while the offsets themselves spread much wider.
    miss = (ink_centroid(images) - offset.double()).norm(dim=1)
    assert miss.mean() < 2.0 and offset.double().norm(dim=1).mean() > 4.0
    # Ink is conserved up to the scale (area ~ s^2): nothing falls off the canvas.
    ratio = images.double().sum((1, 2, 3)) / digits[0].double().sum((1, 2)) / scale.double() ** 2
    assert (ratio - 1).abs().median() < 0.03 and ratio.min() > 0.85


def test_projective_stats(digits):
    images, _, params = generate("projective", *digits, 2, {"scale": (0.75, 1.0), "corner_sd": 5.0})
    assert images.shape == (N, 1, 28, 28)
    assert 0.75 <= params[:, 0].min() < 0.76 and 0.99 < params[:, 0].max() <= 1.0
    moves = params[:, 1:]
    assert moves.shape == (N, 8)
    assert abs(moves.mean()) < 0.2 and abs(moves.std() - 5.0) < 0.2


def test_projective_diagonal_moves_stretch_each_corner_along_its_diagonal(digits):
    """``direction=diagonal``: one N(0, corner_sd) amount per corner, along (+-1, +-1)/sqrt(2)
    from the centre (positive: outwards); kept as x and y moves like the ``xy`` draws."""
    params = {"scale": (0.75, 1.0), "corner_sd": 5.0, "direction": "diagonal"}
    _, _, drawn = generate("projective", *digits, 2, params)
    moves = drawn[:, 1:].view(-1, 4, 2).double()
    along = moves * generators.CORNERS  # both components: the amount / sqrt(2), same sign
    torch.testing.assert_close(along[..., 0], along[..., 1], rtol=0, atol=1e-4)
    amount = along[..., 0] * math.sqrt(2)
    assert abs(amount.mean()) < 0.2 and abs(amount.std() - 5.0) < 0.2


@pytest.mark.parametrize("moved", ["digit", "frame"])
def test_projective_maps_send_the_corners_where_their_reading_says(moved):
    """Known answer for both readings of A.4's P: with the digit's corners moved, output point
    ``s C_k + m_k`` samples the digit's corner ``C_k``; with the frame's, output corner ``C_k``
    samples ``(C_k + m_k) / s`` (normalised coordinates; ``m`` in pixels, 2 m / 28)."""
    g = torch.Generator().manual_seed(0)
    s = 0.75 + 0.25 * torch.rand(6, generator=g, dtype=torch.float64)
    moves = 5 * torch.randn(6, 4, 2, generator=g, dtype=torch.float64)
    m = 2 * moves / 28
    h = torch.cat([generators.projective_maps(s, moves, moved), torch.ones(6, 1)], 1).view(6, 3, 3)
    corners = generators.CORNERS.expand(6, 4, 2)
    out, digit = ((s[:, None, None] * corners + m, corners) if moved == "digit"
                  else (corners, (corners + m) / s[:, None, None]))  # fmt: skip
    mapped = torch.einsum("bij,bkj->bki", h, torch.cat([out, torch.ones(6, 4, 1)], -1))
    torch.testing.assert_close(mapped[..., :2] / mapped[..., 2:], digit)


def test_projective_readings_squeeze_fewer_digits_than_the_first(digits):
    """Measured diagnosis of column P (docs/table1.md): moving the digit's own corners by
    N(0, 5 px) in x and in y (the first reading) squeezes a few percent of the digits to a line
    or a dot (under a fifth of their ink); the sampling frame's corners keep the ink at about
    s^2, and stretching the digit's corners along their diagonals squeezes far fewer."""
    images, labels = digits
    ink = images.double().sum((1, 2))
    faint = {}
    for moved, direction in (("digit", "xy"), ("frame", "xy"), ("digit", "diagonal")):
        params = {"scale": (0.75, 1.0), "corner_sd": 5.0, "moved": moved, "direction": direction}
        warped, _, drawn = generate("projective", images, labels, 2, params)
        ratio = warped.double().sum((1, 2, 3)) / ink
        faint[moved, direction] = (ratio < 0.2).double().mean().item()
        if moved == "frame":
            assert (ratio / drawn[:, 0] ** 2).median() == pytest.approx(1, abs=0.1)
    assert faint["digit", "xy"] > 0.02 and faint["frame", "xy"] < 0.01
    assert faint["digit", "diagonal"] < faint["digit", "xy"] / 2


def test_homography_solver_maps_the_corners():
    src = torch.rand(5, 4, 2, dtype=torch.float64) + torch.tensor([[0, 0], [2, 0], [2, 2], [0, 2]])
    dst = torch.rand(5, 4, 2, dtype=torch.float64) + torch.tensor([[0, 0], [3, 0], [3, 3], [0, 3]])
    h = torch.cat([homographies(src, dst), torch.ones(5, 1, dtype=torch.float64)], 1).view(5, 3, 3)
    mapped = torch.einsum("bij,bkj->bki", h, torch.cat([src, torch.ones(5, 4, 1)], -1))
    torch.testing.assert_close(mapped[..., :2] / mapped[..., 2:], dst)


def test_elastic_stats(digits):
    spec = {"scale": (0.75, 1.0), "control_points": 16, "point_sd": 1.5}
    images, _, params = generate("elastic", *digits, 3, spec)
    assert images.shape == (N, 1, 28, 28) and params.shape == (N, 33)
    moves = params[:, 1:]
    assert abs(moves.mean()) < 0.05 and abs(moves.std() - 1.5) < 0.05
    # Scaled about the centre: less ink than the original, by about s^2 on average.
    ratio = images.double().sum((1, 2, 3)) / digits[0].double().sum((1, 2))
    assert abs(ratio.mean() - (params[:, 0].double() ** 2).mean()) < 0.05


def test_translate_clutter_geometry(digits):
    spec = {"canvas": 60, "clutter": 6, "patch": 6}
    images, _, params = generate("clutter", *digits, 4, spec)
    assert images.shape == (N, 1, 60, 60)
    offset = params[:, :2]
    assert (offset.abs() <= 16).all() and offset.abs().max() == 16  # fully inside, reaches edges
    corners = params[:, 2:].view(N, 6, 2)
    assert corners.min() >= 0 and corners.max() <= 54
    # The digit is pasted intact at its place (max-composition only brightens it).
    top = (offset[:, 1] + 16).long()
    left = (offset[:, 0] + 16).long()
    for i in range(20):
        window = images[i, 0, top[i] : top[i] + 28, left[i] : left[i] + 28]
        assert (window >= digits[0][i]).all()
    # Clutter: ink outside the digit's box in almost every image.
    outside = images[:, 0].clone()
    rows = torch.arange(60)
    in_box = (
        (rows[None, :, None] >= top[:, None, None])
        & (rows[None, :, None] < top[:, None, None] + 28)
        & (rows[None, None] >= left[:, None, None])
        & (rows[None, None] < left[:, None, None] + 28)
    )
    outside[in_box] = 0
    assert (outside.flatten(1).amax(1) > 0).float().mean() > 0.9


def test_paste_max_places_patches():
    canvas = torch.zeros(2, 5, 5, dtype=torch.uint8)
    patches = torch.full((2, 1, 2, 2), 7, dtype=torch.uint8)
    out = paste_max(canvas, patches, torch.tensor([[0], [3]]), torch.tensor([[1], [2]]))
    assert out[0, 0:2, 1:3].eq(7).all() and out[0].sum() == 28
    assert out[1, 3:5, 2:4].eq(7).all() and out[1].sum() == 28


@pytest.mark.parametrize("dataset", ["mnist_r", "mnist_rts", "mnist_p", "mnist_e", "mnist_tc"])
def test_same_seed_same_data_other_seed_other_data(compose_cfg, tmp_path, dataset):
    cfg = compose_cfg(f"dataset={dataset}")
    kw = {"data_dir": DATA_DIR, "limit": 64}
    a = load_split(cfg.dataset, "train", cache_dir=tmp_path / "a", **kw)
    b = load_split(cfg.dataset, "train", cache_dir=tmp_path / "b", **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.params, b.params)
    cfg.dataset.seed = 1
    c = load_split(cfg.dataset, "train", cache_dir=tmp_path / "a", **kw)
    assert not torch.equal(a.images, c.images)
    # Fresh distortions per epoch differ from the fixed split and between epochs.
    e0 = load_split(cfg.dataset, "train", cache_dir=tmp_path / "a", epoch=0, **kw)
    e1 = load_split(cfg.dataset, "train", cache_dir=tmp_path / "a", epoch=1, **kw)
    assert not torch.equal(e0.images, e1.images)
    assert torch.equal(e0.labels, a.labels)


def test_cache_is_written_once_and_read_back(compose_cfg, tmp_path):
    cfg = compose_cfg("dataset=mnist_rts")
    first = load_split(cfg.dataset, "test", DATA_DIR, tmp_path, limit=32)
    files = list(tmp_path.glob("mnist_rts-test-*.h5"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = load_split(cfg.dataset, "test", DATA_DIR, tmp_path, limit=32)
    assert files[0].stat().st_mtime_ns == mtime
    assert torch.equal(first.images, again.images) and again.images.dtype == torch.uint8
    files[0].write_bytes(b"not an hdf5 file")  # a corrupt cache is regenerated
    regenerated = load_split(cfg.dataset, "test", DATA_DIR, tmp_path, limit=32)
    assert torch.equal(first.images, regenerated.images)


def test_corrupt_mnist_file_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz is corrupt"):
        load_mnist(tmp_path, "train")


def test_missing_mnist_offline_gives_one_sentence(tmp_path, monkeypatch):
    from torchvision.datasets import utils

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(utils, "urlretrieve", offline, raising=False)
    monkeypatch.setattr("torchvision.datasets.utils._urlretrieve", offline, raising=False)
    with pytest.raises(UserError, match="copy the four original .gz files"):
        load_mnist(tmp_path, "train")


def test_addition_labels_are_sums_and_channels_independent(digits):
    spec = {"rotation": (-45.0, 45.0), "scale": (0.7, 1.2), "canvas": 42}
    images, labels, params = generate("addition", *digits, 5, spec)
    assert images.shape == (N, 2, 42, 42)
    partner = params[:, 8].long()
    assert torch.equal(labels, digits[1] + digits[1][partner])
    assert labels.min() == 0 and labels.max() == 18
    assert (partner != torch.arange(N)).float().mean() > 0.99
    for channel in range(2):  # each channel holds its own digit where its offset says
        offset = params[:, 4 * channel + 2 : 4 * channel + 4].double()
        miss = (ink_centroid(images[:, channel : channel + 1]) - offset).norm(dim=1)
        assert miss.mean() < 2.0
    assert not torch.allclose(params[:, 0], params[:, 4])  # independent distortions


def test_extruded_digits_stay_inside_the_volume(digits):
    from stn_repro.data.volumes import render_volumes, rotation_matrices

    spec = {"size": 60, "depth": 6, "rotation": [[-60, 60], [-60, 60], [-45, 45]],
            "translation": 9.0}  # fmt: skip
    images, labels, params = generate("extrude3d", *digits, 6, spec)
    assert images.shape == (N, 1, 28, 28) and torch.equal(labels, digits[1])
    angles, shift = params[:, 12:15], params[:, 15:18]
    assert (angles[:, :2].abs() <= 60).all() and (angles[:, 2].abs() <= 45).all()
    assert angles[:, 0].min() < -55 and angles[:, 0].max() > 55
    assert (shift.abs() <= 9).all() and shift.abs().max() > 8.5
    vol = render_volumes(images[:16], params[:16], 60, 6)
    assert vol.shape == (16, 1, 60, 60, 60)
    # Nothing falls outside: the volume holds all the slab's ink (digit ink x depth).
    ink = images[:16].double().sum((1, 2, 3)) / 255 * 6
    torch.testing.assert_close(vol.double().sum((1, 2, 3, 4)), ink, rtol=0.02, atol=0)
    # The ink's centre of mass is the shift (voxels from the volume's centre, (x, y, z)).
    w = vol[:, 0].double()
    axis = torch.arange(60, dtype=torch.float64) - 29.5
    centre = (
        torch.stack(
            [
                (w.sum((1, 2)) * axis).sum(1),
                (w.sum((1, 3)) * axis).sum(1),
                (w.sum((2, 3)) * axis).sum(1),
            ],
            1,
        )
        / w.sum((1, 2, 3))[:, None]
    )
    digit_c = ink_centroid(images[:16]).double()  # the digit's own centroid in its plane
    rot = rotation_matrices(angles[:16].double())
    expected = shift[:16].double() + (rot[:, :, :2] @ digit_c[..., None])[..., 0]
    torch.testing.assert_close(centre, expected, atol=0.3, rtol=0)


@pytest.mark.parametrize(
    "name,params",
    [
        ("rotate", {"rotation": (-90.0, 90.0)}),
        ("rts", {"rotation": (-45.0, 45.0), "scale": (0.7, 1.2), "canvas": 42}),
        ("projective", {"scale": (0.75, 1.0), "corner_sd": 5.0}),
        ("elastic", {"scale": (0.75, 1.0), "control_points": 16, "point_sd": 1.5}),
    ],
)
def test_warping_in_chunks_gives_the_same_bits(digits, name, params, monkeypatch):
    """The generators warp a few hundred images at a time (speed); the cached datasets must not
    change: the same bytes as warping the whole batch in one call."""
    images, labels = digits
    chunked = generate(name, images[:600], labels[:600], seed=3, params=params)
    real = generators.warp
    monkeypatch.setattr(generators, "warp", lambda *args: real(*args, chunk=10_000))
    whole = generate(name, images[:600], labels[:600], seed=3, params=params)
    for a, b in zip(chunked, whole, strict=True):
        assert torch.equal(a, b)
