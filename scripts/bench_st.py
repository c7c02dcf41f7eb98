"""Benchmark the spatial transformer layers: grid generation + sampling, forward and backward.

Prints, per transform and batch shape, the median time of one forward+backward pass (theta and
input both require gradients), and the thin plate spline against kornia's ``warp_image_tps`` on
the same batch as a ratio measured in this run. Timings on shared machines are noisy: read the
ratios, not the absolute numbers.

    python scripts/bench_st.py [--device cpu|cuda] [--min-run-time 1.0]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils import benchmark

from stn_repro.st import (
    Affine,
    Affine3D,
    Attention,
    Projective,
    Rotation,
    ThinPlateSpline,
    sample,
)

SHAPES_2D = [(256, 1, 42, 42), (32, 3, 224, 224)]


def time_it(fn, min_run_time: float) -> float:
    """Median seconds per call of ``fn``."""
    fn()  # warm up (and fill caches, e.g. the TPS interpolation matrix)
    return (
        benchmark.Timer(stmt="fn()", globals={"fn": fn})
        .blocked_autorange(min_run_time=min_run_time)
        .median
    )


def row(name: str, shape, seconds: float, pixels: int) -> str:
    shape = "x".join(map(str, shape))
    return f"{name:<24}{shape:<20}{1e3 * seconds:>12.2f}{pixels / seconds / 1e6:>10.1f}"


def fwd_bwd(transform, shape, device):
    b, _, *size = shape
    x = torch.rand(shape, device=device, requires_grad=True)
    theta = transform.identity_params().to(device)[None].repeat(b, 1)
    theta = (theta + 0.05 * torch.randn_like(theta)).requires_grad_()

    def step():
        out = sample(x, transform.grid(theta, size))
        out.sum().backward()

    return step


def kornia_tps_fwd_bwd(shape, device, solve: bool):
    """kornia's TPS on the same batch: with the weights solved per call, or given."""
    from kornia.geometry.transform import get_tps_transform, warp_image_tps

    b = shape[0]
    x = torch.rand(shape, device=device, requires_grad=True)
    ctrl = ThinPlateSpline(16).control_points.to(device)[None].repeat(b, 1, 1)
    targets = (ctrl + 0.05 * torch.randn_like(ctrl)).requires_grad_()
    weights = [w.detach().requires_grad_() for w in get_tps_transform(ctrl, targets)]

    def step():
        kernel_w, affine_w = get_tps_transform(ctrl, targets) if solve else weights
        out = warp_image_tps(x, targets, kernel_w, affine_w, align_corners=False)
        out.sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-run-time", type=float, default=1.0)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"{'transform':<24}{'batch':<20}{'fwd+bwd ms':>12}{'Mpix/s':>10}")
    transforms = {
        "affine": Affine(),
        "attention": Attention(),
        "rotation+scale+transl.": Rotation(with_scale=True, with_translation=True),
        "projective": Projective(),
        "tps (16 points)": ThinPlateSpline(16).to(device),
    }
    results = {}
    for shape in SHAPES_2D:
        pixels = shape[0] * shape[2] * shape[3]
        for name, transform in transforms.items():
            t = time_it(fwd_bwd(transform, shape, device), args.min_run_time)
            results[name, shape] = t
            print(row(name, shape, t, pixels))
    for shape in [(64, 1, 40, 40, 40), (8, 1, 60, 60, 60)]:
        t = time_it(fwd_bwd(Affine3D(), shape, device), args.min_run_time)
        voxels = shape[0] * shape[2] * shape[3] * shape[4]
        print(row("affine3d", shape, t, voxels))

    try:
        import kornia  # noqa: F401
    except ImportError:
        print("kornia not installed: skipping the TPS comparison (pip install -e '.[dev]')")
        return
    print("\nThin plate spline, 16 points, forward+backward: ours vs kornia (same batch, this run)")
    for shape in SHAPES_2D:
        ours = results["tps (16 points)", shape]
        warp_only = time_it(kornia_tps_fwd_bwd(shape, device, solve=False), args.min_run_time)
        solved = time_it(kornia_tps_fwd_bwd(shape, device, solve=True), args.min_run_time)
        print(
            f"{'x'.join(map(str, shape)):<20} ours {1e3 * ours:8.2f} ms | kornia warp_image_tps "
            f"{1e3 * warp_only:8.2f} ms ({warp_only / ours:5.1f}x ours) | kornia solve+warp "
            f"{1e3 * solved:8.2f} ms ({solved / ours:5.1f}x ours)"
        )


if __name__ == "__main__":
    main()
