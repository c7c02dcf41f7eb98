"""Figures drawn from finished runs: what each transformer does (MNIST addition, 3D MNIST,
SVHN, GTSRB, CUB).

python scripts/figures.py addition outputs/runs/table4_addition/fast/2xst-fcn-tps/*/seed1
python scripts/figures.py 3d outputs/runs/fig_3d/fast/3d-st-cnn/*/seed1
python scripts/figures.py svhn outputs/runs/table2_svhn64/fast/st-cnn-multi/*/seed1
python scripts/figures.py gtsrb outputs/runs/gtsrb/fast/cnn-2-st/*/seed1
python scripts/figures.py cub outputs/runs/table3_cub/paper/4xst-cnn-448px/*/seed1
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor
from torchvision.utils import make_grid, save_image

from .data.feeds import make_feed
from .engine import load_trained, tiles, traced
from .errors import UserError


def load_run(run_dir: str | Path):
    """A finished run's model and its data feed (on the CPU); ``feed.preview(n)`` gives test
    inputs and labels."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").exists():
        raise UserError(f"{run_dir} holds no finished run (no metrics.json); train it first")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    return load_trained(cfg, run_dir), make_feed(cfg, torch.device("cpu"))


def scaled(images: Tensor) -> Tensor:
    """Each ``(1, H, W)`` tile scaled to [0, 1] for display."""
    return images / images.amax((-1, -2, -3), keepdim=True).clamp(min=1e-6)


def addition_figure(run_dir: str | Path, out: str | Path, examples: int = 6) -> Path:
    """One row per test example: input channels 0 and 1, then each transformer's output per
    channel (a 2xST model that learnt the task shows each transformer taking one digit)."""
    model, feed = load_run(run_dir)
    x, labels = feed.preview(examples)
    if model.st is None:
        raise UserError("this run has no spatial transformer to show")
    with torch.no_grad():
        warped, _ = model.st(x)  # (B, N, 2, H, W) or (B, 2, H, W)
    warped = warped.reshape(len(x), -1, *x.shape[-2:])  # (B, N * 2, H, W)
    rows = torch.cat([x, warped], dim=1)  # (B, 2 + 2N, H, W)
    tiles = scaled(rows.reshape(-1, 1, *x.shape[-2:]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=rows.shape[1], pad_value=0.5), out)
    print(f"{out}: columns = input ch0, ch1, then transformer k's ch0, ch1; sums {labels.tolist()}")
    return out


def volume_figure(run_dir: str | Path, out: str | Path, examples: int = 6) -> Path:
    """The paper's Fig. 5: per test example, the input volume summed along depth, height and
    width, then the 3D transformer's 2D output (its volume summed over depth)."""
    model, feed = load_run(run_dir)
    x, labels = feed.preview(examples)
    with torch.no_grad():
        projected, _ = model.st(x)  # (B, 1, H, W)
    views = [x.sum(2), x.sum(3), x.sum(4), projected]  # each (B, 1, 60, 60)
    tiles = scaled(torch.stack(views, dim=1).flatten(0, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=len(views), pad_value=0.5), out)
    print(f"{out}: columns = input summed over depth, height, width; ST output; "
          f"labels {labels.tolist()}")  # fmt: skip
    return out


def svhn_figure(run_dir: str | Path, out: str | Path, examples: int = 8) -> Path:
    """The paper's Table 2 (right): per test example, the input crop with the sampling grid of
    its transformers drawn on it (for ST-CNN Multi their affine transforms multiplied out,
    ``compose_affine``), then each transformer's output (feature maps: their channel mean)."""
    from .st import Affine, compose_affine
    from .viz import draw_grid

    model, feed = load_run(run_dir)
    x, labels = feed.preview(examples)
    found = traced(model, x)
    if not found or not all(isinstance(st.transform, Affine) for st, *_ in found):
        raise UserError("this figure needs a run with affine transformers (ST-CNN Single/Multi)")
    composite = compose_affine([theta for *_, theta in found])  # (B, 6)
    drawn = draw_grid(tiles(x), Affine().grid(composite, x.shape[-2:]))  # (B, 3, H, W)
    columns = [drawn] + [F.interpolate(tiles(out), size=x.shape[-2:]).expand(-1, 3, -1, -1)
                         for _, _, out, _ in found]  # fmt: skip
    grid = torch.stack(columns, 1).flatten(0, 1)  # (B * columns, 3, H, W)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(grid, nrow=len(columns), pad_value=0.5), out)
    numbers = ["".join(str(d) for d in row if d < 10) for row in labels.tolist()]
    print(f"{out}: columns = input with the composite transform, then transformer 1..{len(found)}"
          f" outputs; numbers {numbers}")  # fmt: skip
    return out


def gtsrb_figure(run_dir: str | Path, out: str | Path, examples: int = 8) -> Path:
    """Per test sign: the input as the network sees it (normalised, shown min-max scaled), the
    first transformer's sampling grid drawn on it, and that transformer's output."""
    from .viz import draw_grid

    model, feed = load_run(run_dir)
    x, labels = feed.preview(examples)
    found = traced(model, x)
    if not found:
        raise UserError("this figure needs a run with a transformer (CNN + 1 ST or CNN + 2 ST)")
    st, _, warped, theta = found[0]  # the transformer on the input
    shown = tiles(x)  # (B, 3, H, W)
    drawn = draw_grid(shown, st.transform.grid(theta, st.output_size))
    grid = torch.stack([shown, drawn, tiles(warped)], 1).flatten(0, 1)  # (B * 3, 3, H, W)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(grid, nrow=3, pad_value=0.5), out)
    print(f"{out}: columns = input, the first transformer's grid on it, its output; classes "
          f"{labels.tolist()}")  # fmt: skip
    return out


def cub_figure(run_dir: str | Path, out: str | Path, examples: int = 8) -> Path:
    """The paper's Table 3 (right): test images with each transformer's window drawn in its
    colour (``viz.COLOURS``: 1st red, 2nd green, ...); and, beside ``out``, ``*_centres.png``:
    the window centres over the whole test split, one dot per image and transformer."""
    from PIL import Image, ImageDraw

    from .viz import COLOURS, draw_boxes, window_boxes

    model, feed = load_run(run_dir)
    x, labels = feed.preview(examples)
    if model.st is None:
        raise UserError("this figure needs a run with transformers (2xST-CNN or 4xST-CNN)")
    [(st, seen, _, theta)] = traced(model, x)
    n = st.num_transformers
    boxes = window_boxes(st.transform.matrix(theta.reshape(-1, 2)), seen.shape[-2:])
    drawn = draw_boxes(tiles(seen), boxes.view(len(x), n, 4))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(drawn, nrow=4, pad_value=1.0), out)
    side = 256
    canvas = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(canvas)
    with torch.no_grad():
        for images, _ in feed.eval_batches("test"):
            [(_, _, _, theta)] = traced(model, images)  # centres in [-1, 1]
            for k, centres in enumerate(theta.view(len(images), n, 2).unbind(1)):
                for cx, cy in ((centres + 1) * side / 2).tolist():
                    draw.ellipse((cx - 1.5, cy - 1.5, cx + 1.5, cy + 1.5), fill=COLOURS[k])
    centres = out.with_name(f"{out.stem}_centres.png")
    canvas.save(centres)
    print(f"{out}: test images with each transformer's window (red, green, blue, orange); "
          f"{centres}: window centres over the test set, the image's frame; classes "
          f"{labels.tolist()}")  # fmt: skip
    return out
