"""MNIST generators: R, RTS, P, E, TC (Appendix A.4), addition (A.1), 3D extruded (A.3).

Each generator takes a batch of digits ``(N, 28, 28)`` uint8 with their labels ``(N,)``, a
seeded ``torch.Generator`` and its parameters (from ``conf/dataset/*.yaml``), and returns the
distorted images ``(N, C, H, W)`` uint8, their labels, and the per-image generation parameters
``(N, P)`` float32 (named in the registry's ``param_names``), so that tests can recover the
distributions. Each registers itself (``registry.GENERATORS``) with its ``dataset.params``
dataclass, its pose measures and the distortion ``D`` its parameters give.
Everything is vectorised over the batch: the warps reuse ``stn_repro.st`` (one grid per image,
one ``grid_sample`` call), pastes use a scatter.

Geometry follows ``stn_repro.st``: normalised coordinates (``align_corners=False``), a warp maps
output (canvas) coordinates to the digit's coordinates. Offsets are in canvas pixels measured
from the canvas centre to the digit's centre, ``x`` right and ``y`` down.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import at_least, between, checked, interval, one_of
from ..st import Affine, Projective, ThinPlateSpline, sample
from .draws import uniform
from .registry import GENERATORS, Generator, register_generator
from .sources import DIGIT
from .volumes import extrude_3d


def warp(digits: Tensor, transform, theta: Tensor, size: tuple[int, int],
         chunk: int = 256) -> Tensor:  # fmt: skip
    """Bilinear warp of uint8 digits ``(N, 28, 28)`` by ``transform`` with ``theta`` ``(N, P)``
    (float64) -> uint8 ``(N, 1, *size)``, ``chunk`` images at a time: the same bits as one
    call, 1.5-4x faster on a CPU (a whole batch's float64 grids overflow its caches)."""
    out = torch.empty(len(digits), 1, *size, dtype=torch.uint8)
    for i in range(0, len(digits), chunk):
        grid = transform.grid(theta[i : i + chunk], size).float()
        warped = sample(digits[i : i + chunk, None].float(), grid)
        out[i : i + chunk] = warped.round().clamp(0, 255).to(torch.uint8)
    return out


def similarity(angle_deg: Tensor, scale: Tensor, offset_px: Tensor, canvas: int) -> Tensor:
    """Affine thetas ``(N, 6)`` placing a digit rotated by ``angle`` (degrees, anticlockwise on
    screen), scaled by ``scale`` and centred ``offset_px`` ``(N, 2)`` from the centre of a
    ``canvas`` x ``canvas`` image (canvas -> digit coordinates)."""
    a = torch.deg2rad(angle_deg)
    k = canvas / (DIGIT * scale)  # canvas units per digit unit
    cos, sin = k * torch.cos(a), k * torch.sin(a)
    c = 2 * offset_px / canvas  # (N, 2) centre in canvas normalised coordinates
    # digit = k R(a) (p - c), R(a) = [[cos, -sin], [sin, cos]] in y-down coordinates.
    tx = -(cos * c[:, 0] - sin * c[:, 1])
    ty = -(sin * c[:, 0] + cos * c[:, 1])
    return torch.stack([cos, -sin, tx, sin, cos, ty], dim=1)


def rotate(
    digits: Tensor, labels: Tensor, rng: torch.Generator, rotation: tuple[float, float]
) -> tuple:
    """R: the digit rotated by ``U(rotation)`` degrees about its centre, 28x28."""
    n = len(digits)
    angle = uniform(rng, n, *rotation)
    theta = similarity(angle, torch.ones(n, dtype=torch.float64), torch.zeros(n, 2), DIGIT)
    return warp(digits, Affine(), theta, (DIGIT, DIGIT)), labels, angle[:, None]


def rotate_translate_scale(
    digits: Tensor,
    labels: Tensor,
    rng: torch.Generator,
    rotation: tuple[float, float],
    scale: tuple[float, float],
    canvas: int,
) -> tuple:
    """RTS: rotated by ``U(rotation)`` degrees, scaled by ``U(scale)``, placed at a uniform
    random location of a ``canvas`` square such that the scaled 28x28 frame lies inside it."""
    n = len(digits)
    angle = uniform(rng, n, *rotation)
    s = uniform(rng, n, *scale)
    reach = (canvas - DIGIT * s) / 2  # largest offset keeping the frame inside, (N,)
    if (reach < 0).any():
        raise ValueError(f"a digit scaled by {scale[1]} does not fit a {canvas}px canvas")
    offset = (2 * torch.rand(n, 2, generator=rng, dtype=torch.float64) - 1) * reach[:, None]
    theta = similarity(angle, s, offset, canvas)
    images = warp(digits, Affine(), theta, (canvas, canvas))
    return images, labels, torch.cat([angle[:, None], s[:, None], offset], dim=1)


def homographies(src: Tensor, dst: Tensor) -> Tensor:
    """Solve ``(N, 8)`` homographies (h33 = 1) mapping 4 points ``src`` to ``dst`` ``(N, 4, 2)``."""
    x, y = src.unbind(-1)
    u, v = dst.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], dim=-1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (N, 8, 8)
    b = torch.cat([u, v], dim=1)  # (N, 8)
    return torch.linalg.solve(a, b)


CORNERS = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)


def projective_maps(s: Tensor, moves: Tensor, moved: str) -> Tensor:
    """The homographies ``(N, 8)`` (output -> digit coordinates, the ``Projective`` convention)
    of P's draws: scales ``s`` ``(N,)`` and corner moves ``(N, 4, 2)`` in pixels.

    ``moved="digit"``: the digit's corners land on the scaled, moved corners (output corner
    ``s * C_k + m_k`` samples the digit's corner ``C_k``). ``moved="frame"``: the output's
    corners sample the digit at the moved corners, and the digit is scaled by ``s`` (output
    corner ``C_k`` samples ``(C_k + m_k) / s``), the way a spatial transformer's sampling grid
    is warped."""
    corners = CORNERS.expand(len(s), 4, 2)
    if moved == "digit":
        return homographies(s[:, None, None] * CORNERS + 2 * moves / DIGIT, corners)
    return homographies(corners, (CORNERS + 2 * moves / DIGIT) / s[:, None, None])


def projective(
    digits: Tensor,
    labels: Tensor,
    rng: torch.Generator,
    scale: tuple[float, float],
    corner_sd: float,
    moved: str = "digit",
    direction: str = "xy",
) -> tuple:
    """P: scaled by ``U(scale)`` about the centre and each of 4 corners moved by
    ``N(0, corner_sd)`` pixels, in x and in y (``direction="xy"``) or by one amount along the
    corner's diagonal, outwards when positive (``"diagonal"``); the digit's own corners or the
    sampling frame's (``moved``, ``projective_maps``); 28x28. Parameters: the scale, then the
    corner moves ``(4 x (x, y))`` in pixels."""
    n = len(digits)
    s = uniform(rng, n, *scale)
    if direction == "diagonal":
        amounts = corner_sd * torch.randn(n, 4, 1, generator=rng, dtype=torch.float64)
        moves = amounts * CORNERS / math.sqrt(2)  # pixels, along (+-1, +-1) / sqrt(2)
    else:
        moves = corner_sd * torch.randn(n, 4, 2, generator=rng, dtype=torch.float64)  # pixels
    theta = projective_maps(s, moves, moved)
    images = warp(digits, Projective(), theta, (DIGIT, DIGIT))
    return images, labels, torch.cat([s[:, None], moves.flatten(1)], dim=1)


def elastic(
    digits: Tensor,
    labels: Tensor,
    rng: torch.Generator,
    scale: tuple[float, float],
    control_points: int,
    point_sd: float,
) -> tuple:
    """E: scaled by ``U(scale)`` about the centre, then a thin plate spline warp whose
    ``control_points`` (a regular grid over the image) are each moved by ``N(0, point_sd)``
    pixels, 28x28."""
    n = len(digits)
    tps = ThinPlateSpline(control_points).double()
    s = uniform(rng, n, *scale)
    moves = point_sd * torch.randn(n, control_points, 2, generator=rng, dtype=torch.float64)
    # Output control point P_k samples the digit at (P_k + move_k) / s.
    theta = (tps.control_points.double() + 2 * moves / DIGIT) / s[:, None, None]
    images = warp(digits, tps, theta.flatten(1), (DIGIT, DIGIT))
    return images, labels, torch.cat([s[:, None], moves.flatten(1)], dim=1)


def paste_max(canvas: Tensor, patches: Tensor, top: Tensor, left: Tensor) -> Tensor:
    """Paste ``patches`` ``(N, M, h, w)`` into ``canvas`` ``(N, H, W)`` at integer positions
    ``(N, M)`` (top-left corners, inside the canvas), keeping the brighter pixel."""
    n, m, h, w = patches.shape
    width = canvas.shape[-1]
    rows = top[..., None, None] + torch.arange(h)[:, None]  # (N, M, h, 1)
    cols = left[..., None, None] + torch.arange(w)  # (N, M, 1, w)
    index = (rows * width + cols).reshape(n, -1)
    out = canvas.reshape(n, -1).clone()
    out.scatter_reduce_(1, index, patches.reshape(n, -1), reduce="amax")
    return out.view_as(canvas)


def translate_clutter(
    digits: Tensor,
    labels: Tensor,
    rng: torch.Generator,
    pool: tuple[Tensor, Tensor],
    canvas: int,
    clutter: int,
    patch: int,
) -> tuple:
    """TC: the digit at a uniform random (integer) location of a ``canvas`` square, fully inside,
    plus ``clutter`` random ``patch`` x ``patch`` crops of random other digits of ``pool`` at
    uniform random places; overlaps keep the brighter pixel."""
    n = len(digits)
    corner = torch.randint(0, canvas - DIGIT + 1, (n, 2), generator=rng)  # (top, left)
    images = paste_max(
        torch.zeros(n, canvas, canvas, dtype=torch.uint8),
        digits[:, None],
        corner[:, :1],
        corner[:, 1:],
    )
    pool_digits = pool[0]
    source = torch.randint(0, len(pool_digits), (n, clutter), generator=rng)
    crop = torch.randint(0, DIGIT - patch + 1, (n, clutter, 2), generator=rng)
    rows = crop[..., 0, None, None] + torch.arange(patch)[:, None]  # (N, M, p, 1)
    cols = crop[..., 1, None, None] + torch.arange(patch)  # (N, M, 1, p)
    pieces = pool_digits[source[..., None, None], rows, cols]  # (N, M, p, p)
    where = torch.randint(0, canvas - patch + 1, (n, clutter, 2), generator=rng)
    images = paste_max(images, pieces, where[..., 0], where[..., 1])
    offset = corner.flip(1).double() + DIGIT / 2 - canvas / 2  # digit centre (x, y) from centre
    return images[:, None], labels, torch.cat([offset, where.flatten(1).double()], dim=1)


def addition(
    digits: Tensor,
    labels: Tensor,
    rng: torch.Generator,
    pool: tuple[Tensor, Tensor],
    rotation: tuple[float, float],
    scale: tuple[float, float],
    canvas: int,
) -> tuple:
    """MNIST addition (A.1): two digits, each distorted independently by the RTS recipe into its
    own channel of a ``canvas`` square, ``(N, 2, canvas, canvas)``; the label is their sum
    (0-18). The first digit is the split's own, the second a uniformly drawn digit of the split.
    Parameters: the RTS parameters of each channel, then the second digit's index."""
    partner = torch.randint(0, len(pool[0]), (len(digits),), generator=rng)
    first, _, p1 = rotate_translate_scale(digits, labels, rng, rotation, scale, canvas)
    second, _, p2 = rotate_translate_scale(
        pool[0][partner], pool[1][partner], rng, rotation, scale, canvas
    )
    params = torch.cat([p1, p2, partner[:, None].double()], dim=1)
    return torch.cat([first, second], dim=1), labels + pool[1][partner], params


# ---- dataset.params, one dataclass per generator -------------------------------------------


@dataclass
class Rotate:
    rotation: list[float] = checked(interval())


@dataclass
class RTS:
    rotation: list[float] = checked(interval())
    scale: list[float] = checked(interval(0, above_low=True))
    canvas: int = checked(at_least(1))  # and the largest scaled digit must fit (problem)

    def problem(self) -> str | None:
        """What is wrong across the fields (None: nothing)."""
        wide = DIGIT * self.scale[1]
        if self.canvas < wide:
            return (f"dataset.params.canvas={self.canvas}: a digit scaled by up to "
                    f"{self.scale[1]} is {wide:g} px wide: use dataset.params.canvas="
                    f"{math.ceil(wide)} or more (or lower dataset.params.scale)")  # fmt: skip
        return None


@dataclass
class ProjectiveParams:
    scale: list[float] = checked(interval(0, above_low=True))
    corner_sd: float = checked(at_least(0))
    # A.4's "stretching each corner": whose corners move, the digit's ("digit", our first
    # reading) or the sampling frame's ("frame"), and how, N(0, corner_sd) in x and in y
    # ("xy", our first reading) or one N(0, corner_sd) amount along the corner's diagonal
    # ("diagonal"); docs/table1.md, "Column P", measures them
    moved: str = checked(one_of("digit", "frame"), default="digit")
    direction: str = checked(one_of("xy", "diagonal"), default="xy")


@dataclass
class Elastic:
    scale: list[float] = checked(interval(0, above_low=True))
    control_points: int = checked(
        lambda v: None if v >= 4 and round(v**0.5) ** 2 == v else "must be a square >= 4, e.g. 16"
    )
    point_sd: float = checked(at_least(0))


@dataclass
class Clutter:
    canvas: int = checked(at_least(28))
    clutter: int = checked(at_least(0))
    patch: int = checked(between(1, 28))


@dataclass
class Extrude3D:
    size: int = checked(at_least(28))
    depth: int = checked(at_least(1))
    rotation: list[list[float]] = checked(
        lambda v: None if len(v) == 3 and all(len(r) == 2 and r[0] <= r[1] for r in v)
        else "must be three [low, high] ranges (about x, y, z)"
    )  # fmt: skip
    translation: float = checked(at_least(0))


# ---- the distortion D (canvas -> upright digit) from the kept parameters, for pose measures --


def to_homogeneous(affine: Tensor) -> Tensor:
    """``(N, 2, 3)`` affine matrices -> ``(N, 3, 3)``."""
    last = torch.tensor([0.0, 0.0, 1.0], dtype=affine.dtype).expand(len(affine), 1, 3)
    return torch.cat([affine, last], dim=1)


def rts_distortion(params: Tensor, options: dict) -> list[Tensor]:
    n = len(params)
    canvas = options["canvas"]
    return [to_homogeneous(similarity(params[:, 0], params[:, 1], params[:, 2:4], canvas)
                           .view(n, 2, 3))]  # fmt: skip


def rotate_distortion(params: Tensor, options: dict) -> list[Tensor]:
    n = len(params)
    one, zero = torch.ones(n, dtype=torch.float64), torch.zeros(n, 2, dtype=torch.float64)
    return [to_homogeneous(similarity(params[:, 0], one, zero, DIGIT).view(n, 2, 3))]


def addition_distortion(params: Tensor, options: dict) -> list[Tensor]:
    return [*rts_distortion(params[:, 0:4], options), *rts_distortion(params[:, 4:8], options)]


def projective_distortion(params: Tensor, options: dict) -> list[Tensor]:
    n = len(params)
    moves = params[:, 1:9].view(n, 4, 2)
    theta = projective_maps(params[:, 0], moves, options.get("moved", ProjectiveParams.moved))
    return [Projective().matrix(theta)]


SIMILARITY = ("rotation_deg", "log_scale", "translation_px")
for _name, _generator in {
    "rotate": Generator(Rotate, make=rotate, param_names=("angle",),
                        measures=("rotation_deg",), distortion=rotate_distortion),
    "rts": Generator(RTS, st_pool=2, make=rotate_translate_scale,
                     param_names=("angle", "scale", "offset_x", "offset_y"),
                     measures=SIMILARITY, distortion=rts_distortion),
    "projective": Generator(ProjectiveParams, make=projective,
                            param_names=("scale", "corner_moves (4 x (x, y) px)"),
                            measures=("corners_px",), distortion=projective_distortion),
    "elastic": Generator(Elastic, make=elastic,
                         param_names=("scale", "point_moves (K x (x, y) px)")),
    "clutter": Generator(Clutter, st_pool=2, make=translate_clutter, uses_pool=True,
                         param_names=("offset_x", "offset_y",
                                      "patch_corners (M x (top, left) px)")),
    # the digits follow RTS; labels: their sum, 0-18
    "addition": Generator(RTS, classes=19, st_pool=2, make=addition, uses_pool=True,
                          param_names=("rts params of channel 0 (4)",
                                       "rts params of channel 1 (4)",
                                       "partner index (in the digits generated with it)"),
                          measures=SIMILARITY, distortion=addition_distortion),
    "extrude3d": Generator(Extrude3D, st_pool=2, make=extrude_3d,  # the 60x60 projection
                           param_names=("placement theta (12)", "angles (3, degrees)",
                                        "shift (3, voxels)")),
}.items():  # fmt: skip
    register_generator(_name, _generator)


def generate(
    name: str,
    digits: Tensor,
    labels: Tensor,
    seed: int,
    params: dict,
    chunk: int = 10_000,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run generator ``name`` over all ``digits`` in chunks, deterministically from ``seed``.

    Generators that ``uses_pool`` also draw from all of ``digits`` (``pool``: digits and
    labels): the whole split, or its part apart (``data.separate_pool``).

    Returns:
        images ``(N, C, H, W)`` uint8, labels ``(N,)`` int64, parameters ``(N, P)`` float32.
    """
    generator = GENERATORS.get(name)
    if generator is None or generator.make is None:
        raise ValueError(f"unknown MNIST generator {name!r}; choose one of {mnist_generators()}")
    rng = torch.Generator().manual_seed(seed)
    kwargs = dict(params)
    if generator.uses_pool:
        kwargs["pool"] = (digits, labels)
    outputs = [
        generator.make(digits[i : i + chunk], labels[i : i + chunk], rng, **kwargs)
        for i in range(0, len(digits), chunk)
    ]
    images, out_labels, gen_params = zip(*outputs, strict=True)
    return torch.cat(images), torch.cat(out_labels), torch.cat(gen_params).float()


def mnist_generators() -> list[str]:
    """The generators that draw from MNIST digits (the others read image files)."""
    return [name for name, generator in GENERATORS.items() if generator.make is not None]


def seed_for(seed: int, split: str, epoch: int | None = None) -> int:
    """A distinct generator seed per (data seed, split, epoch); ``epoch=None`` for a fixed split."""
    key = f"{seed}/{split}/{'fixed' if epoch is None else epoch}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)
