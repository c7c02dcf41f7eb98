"""Pose recovery: how much of each test image's known distortion a spatial transformer undoes.

Coordinates are normalised as in ``stn_repro.st`` (x right, y down, the image spans [-1, 1]).
The generator's distortion ``D`` maps canvas coordinates to the upright digit's (the image is
``digit(D(p))``); the transformer's ``T`` maps its output coordinates to its input's (the
canvas). Their composition ``R = D T`` maps the transformer's output onto the digit. A
transformer that brings every digit to one pose makes ``R`` the same for every image (whatever
that pose is), so what is left of the distortion is the spread of ``R`` over the test set; with
``T`` the identity, ``R = D`` and the spread is the input's. All transforms are ``(N, 3, 3)``
homogeneous float64 matrices.

Measures of the spread of ``R`` (``spreads``), in the digit's own units:
- ``rotation_deg``: circular standard deviation of the rotation of ``R``'s linear part at the
  output's centre (its Jacobian there; the angle of the nearest similarity).
- ``log_scale``: standard deviation of the log of that part's scale, ``sqrt|det|``.
- ``translation_px``: RMS distance of the output centre's place on the digit from its mean, in
  pixels of the 28px digit.
- ``corners_px``: where the digit's four corners land in the transformer's output
  (``R^-1``), their RMS spread over the test set divided by the digit's mean size there, in
  pixels of a 28px digit (every kind of distortion, projective included; zooming alone changes
  nothing, and this direction stays finite where ``R`` sends a canvas corner to infinity).
"""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf
from torch import Tensor

from ..config import runs_dir
from ..data.generators import CORNERS, to_homogeneous
from ..data.registry import GENERATORS
from ..data.sources import DIGIT
from ..st.transforms import MatrixTransform, Projective, ThinPlateSpline, Transform

PIXELS = DIGIT / 2  # digit pixels per normalised unit


def tps_at_centre(tps: ThinPlateSpline, theta: Tensor) -> Tensor:
    """Thin plate spline warps ``theta`` ``(N, 2K)`` to first order at the output's centre,
    ``(N, 2, 3)``: the affine map with the spline's value and Jacobian there. The spreads read a
    transform only there (its value and Jacobian), so for them this is the spline itself; the
    corners measure sees the spline through this linearisation."""
    targets = theta.double().view(len(theta), -1, 2)  # (N, K, 2)
    k = tps.num_control_points
    coeffs = tps._inverse.to(targets) @ targets  # (N, K + 3, 2): bending weights w_k; 1, x, y
    d = -tps.control_points.double()  # the centre minus each control point, (K, 2)
    r2 = d.square().sum(1)
    u = tps.kernel(r2.sqrt())  # U(|d|), (K,)
    slope = torch.where(r2 > 0, 2 * (torch.log(r2.clamp(min=1e-30)) + 1), 0.0)
    grad_u = slope[:, None] * d  # dU/dp, (K, 2)
    w = coeffs[:, :k]
    value = torch.einsum("k,nki->ni", u, w) + coeffs[:, k]
    jacobian = torch.einsum("nki,kj->nij", w, grad_u) + coeffs[:, k + 1 :].transpose(1, 2)
    return torch.cat([jacobian, value[..., None]], dim=2)


def transform_matrices(transform: Transform, theta: Tensor) -> Tensor:
    """A 2D transformer's ``T`` ``(N, 3, 3)`` (output -> input) for theta ``(N, P)``; thin
    plate splines to first order at the output's centre (``tps_at_centre``)."""
    theta = theta.detach().double().cpu()
    if isinstance(transform, Projective):
        return transform.matrix(theta)
    if isinstance(transform, ThinPlateSpline):
        return to_homogeneous(tps_at_centre(transform, theta))
    if isinstance(transform, MatrixTransform) and transform.dim == 2:
        return to_homogeneous(transform.matrix(theta).double())
    raise ValueError(f"no pose measure for {type(transform).__name__} transforms")


def measured(generator: str) -> bool:
    """Whether the pose recovery applies to ``generator`` (it registered measures)."""
    found = GENERATORS.get(generator)
    return found is not None and bool(found.measures)


def distortions(generator: str, params: Tensor, options: dict | None = None) -> list[Tensor]:
    """Each test image's ``D`` (canvas -> digit), one ``(N, 3, 3)`` per input channel, from the
    parameters the generator kept (its registered ``distortion``) and the ``dataset.params``
    that drew them (``options``)."""
    if not measured(generator):
        measurable = [name for name in GENERATORS if measured(name)]
        raise ValueError(f"no pose measure for the {generator!r} generator; use {measurable}")
    return GENERATORS[generator].distortion(params.double(), options or {})


def apply(h: Tensor, points: Tensor) -> Tensor:
    """Points ``(P, 2)`` through homographies ``(N, 3, 3)`` -> ``(N, P, 2)``."""
    uvw = torch.einsum("nij,pj->npi", h, torch.cat([points, torch.ones(len(points), 1)], 1))
    return uvw[..., :2] / uvw[..., 2:]


def centre_jacobian(h: Tensor) -> Tensor:
    """The ``(N, 2, 2)`` derivative of homographies ``h`` at the origin (their linear part,
    for affine ones)."""
    w = h[:, 2, 2, None, None]
    return (h[:, :2, :2] * w - h[:, :2, 2:] * h[:, 2:, :2]) / w**2


def circular_sd_deg(angles: Tensor) -> float:
    """Circular standard deviation ``sqrt(-2 ln |mean exp(i a)|)`` of angles in degrees."""
    a = torch.deg2rad(angles.double())
    mean_resultant = torch.hypot(torch.cos(a).mean(), torch.sin(a).mean()).clamp(1e-12, 1.0)
    return math.degrees(math.sqrt(-2 * math.log(mean_resultant.item())))


def rms_spread(points: Tensor) -> float:
    """RMS distance of points ``(N, ..., 2)`` from their mean over N."""
    return (points - points.mean(0)).square().sum(-1).mean().sqrt().item()


def rotation_deg(h: Tensor) -> Tensor:
    """``(N,)`` rotation in degrees of homographies ``h`` at the origin: the angle ``a`` of the
    similarity ``k [[cos a, -sin a], [sin a, cos a]]`` nearest their Jacobian there. For a
    generator's ``D`` it is the digit's rotation (anticlockwise on screen)."""
    j = centre_jacobian(h)
    return torch.rad2deg(torch.atan2(j[:, 1, 0] - j[:, 0, 1], j[:, 0, 0] + j[:, 1, 1]))


def magnification(h: Tensor) -> Tensor:
    """``(N,)`` how many times homographies ``h`` (output -> input) enlarge what they sample,
    at the output's centre: ``1 / sqrt|det J|``; above 1 the output shows the input zoomed in."""
    return torch.linalg.det(centre_jacobian(h)).abs().rsqrt()


def spreads(r: Tensor) -> dict[str, float]:
    """The spread measures (module doc) of transforms ``r`` ``(N, 3, 3)``."""
    log_scale = 0.5 * torch.log(torch.linalg.det(centre_jacobian(r)).abs())
    inverse = torch.linalg.inv(r)  # digit -> output
    digit_size = torch.linalg.det(centre_jacobian(inverse)).abs().sqrt().mean().item()
    return {
        "rotation_deg": circular_sd_deg(rotation_deg(r)),
        "log_scale": log_scale.std(unbiased=False).item(),
        "translation_px": PIXELS * rms_spread(apply(r, torch.zeros(1, 2, dtype=r.dtype))),
        "corners_px": PIXELS * rms_spread(apply(inverse, CORNERS.to(r.dtype))) / digit_size,
    }


def pose_recovery(generator: str, d: Tensor, t: Tensor) -> dict[str, dict[str, float]]:
    """For distortions ``d`` and the transformer's ``t`` (both ``(N, 3, 3)``): per measure the
    generator registered, the input's spread, the residual's, and the % removed."""
    before, after = spreads(d), spreads(d @ t)
    return {
        m: {"input": before[m], "residual": after[m],
            "removed_pct": 100.0 * (1 - after[m] / before[m]) if before[m] > 0 else math.nan}
        for m in GENERATORS[generator].measures
    }  # fmt: skip


# ---- finished runs -----------------------------------------------------------------------------

EXPERIMENTS = ("table1_r", "table1_rts", "table1_p", "table4_addition")
FIELDS = ["experiment", "column", "row", "seed", "images", "transformer", "channel", "measure",
          "input", "residual", "removed_pct"]  # fmt: skip


@torch.no_grad()
def transforms_on_test(model, feed, dataset, limit: int | None = None, batch: int = 500) -> list:
    """For each transformer of ``model``'s first spatial transformer, ``(T, [D per input
    channel])`` on the first ``limit`` (all) test images: ``(N, 3, 3)`` matrices as in the
    module doc. Empty without a transformer."""
    from ..st.inspect import traced

    test = feed.splits["test"]
    count = min(limit or len(test), len(test))
    thetas = []
    for start in range(0, count, batch):
        x, _ = feed.batch(test, slice(start, min(start + batch, count)))
        found = traced(model, x)
        if not found:
            return []
        st, _, _, theta = found[0]
        thetas.append(theta.reshape(len(x), st.num_transformers, -1).cpu())
    theta = torch.cat(thetas)  # (N, transformers, P)
    params = test.params[:count].cpu()  # (the feed may hold the split on a GPU)
    ds = distortions(dataset.generator, params, OmegaConf.to_container(dataset.params))
    return [(transform_matrices(st.transform, theta[:, k]), ds) for k in range(theta.shape[1])]


@torch.no_grad()
def measure_model(model, feed, dataset, limit: int | None = None, batch: int = 500) -> list[dict]:
    """Pose recovery of ``model``'s first spatial transformer on the first ``limit`` (all)
    test images of a generated ``feed`` (``dataset``: its config): one row per (transformer,
    input channel, measure). Empty without a transformer or for a generator with no
    registered measures."""
    if not measured(dataset.generator):
        return []
    found = transforms_on_test(model, feed, dataset, limit, batch)
    rows = []
    for k, (t, ds) in enumerate(found):
        for channel, d in enumerate(ds):
            for measure, spread in pose_recovery(dataset.generator, d, t).items():
                rows.append({"images": len(t), "transformer": k + 1, "channel": channel,
                             "measure": measure, **spread})  # fmt: skip
    return rows


def measure_run(run_dir) -> list[dict]:
    """``measure_model`` on a finished run, over its whole test set, each row labelled with the
    run's experiment, column, row and seed."""
    from omegaconf import OmegaConf

    from ..files import read_json
    from ..trained import load_run

    cfg = OmegaConf.load(f"{run_dir}/config.yaml")
    if not cfg.model.get("transform"):
        return []  # (no data is loaded for a model without a transformer)
    model, feed = load_run(run_dir)
    metrics = read_json(f"{run_dir}/metrics.json")
    where = {k: metrics[k] for k in ("experiment", "column", "row", "seed")}
    return [{**where, **row} for row in measure_model(model, feed, cfg.dataset)]


def finished_runs(output_dir, schedule: str) -> list:
    """The finished runs of ``EXPERIMENTS`` under ``output_dir`` with ``schedule``: per row and
    seed the newest (``runs/<experiment>/<schedule>/<row>/<config>/seed<k>``; an edited config
    leaves its older runs in another ``<config>`` folder)."""
    runs = []
    for experiment in EXPERIMENTS:
        base = runs_dir(output_dir, experiment, schedule)
        newest = {}
        for metrics in sorted(base.glob("*/*/seed*/metrics.json"), key=lambda p: p.stat().st_mtime):
            run = metrics.parent
            newest[(run.parent.parent.name, run.name)] = run
        runs += sorted(newest.values())
    return runs


def write_pose_table(rows: list[dict], output_dir, schedule: str):
    """``tables/pose.{md,csv}``: every row, per seed, as measured."""
    import csv
    import io
    from pathlib import Path

    from ..files import write_atomic

    tables = Path(output_dir) / "tables"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(tables / "pose.csv", buf.getvalue())
    lines = [
        f"# Pose recovery (`{schedule}` runs)", "",
        "How much of each test image's known distortion the spatial transformer removes: the "
        "spread over the test set of the distortion composed with the transformer's transform "
        "(residual), beside the distortion's own (input). Rotation: circular sd in degrees; "
        "log-scale: sd; translation and corners: RMS spread in pixels of the 28px digit. Thin "
        "plate splines: to first order at the output's centre. `stn_repro/report/pose.py` "
        "defines each measure.", "",
        "| Column | Row | Seed | Test images | Transformer | Channel | Measure | Input | Residual "
        "| Removed |",
        "|---|---|---|---:|---|---|---|---:|---:|---:|",
    ]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['column']} | {r['row']} | {r['seed']} | {r['images']:,} | "
                     f"{r['transformer']} | "
                     f"{r['channel']} | {r['measure']} | {r['input']:.3g} | {r['residual']:.3g} "
                     f"| {r['removed_pct']:.0f}% |")  # fmt: skip
    if not rows:
        lines.append("| (no finished run with a transformer) | | | | | | | | | |")
    write_atomic(tables / "pose.md", "\n".join(lines) + "\n")
    return tables / "pose.md"
