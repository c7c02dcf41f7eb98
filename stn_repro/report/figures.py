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
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid, save_image

from ..errors import UserError
from ..st.inspect import traced
from ..trained import load_run, load_trained
from ..viz import tiles


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
    from ..st import Affine, compose_affine
    from ..viz import draw_grid

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
    from ..viz import draw_grid

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

    from ..viz import COLOURS, draw_boxes, window_boxes

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


def upscaled(images: Tensor, size: int) -> Tensor:
    """``(B, C, h, w)`` tiles resized (nearest) to ``size`` x ``size`` for display."""
    return F.interpolate(images, size=(size, size), mode="nearest")


def table1_figure(st_dir: str | Path, cnn_dir: str | Path, out: str | Path,
                  examples: int = 8) -> Path:  # fmt: skip
    """The paper's Table 1 (right): test digits the ST run classifies correctly and the CNN run
    (same data) does not. Per digit: the input, the transformer's grid T(G) on it, its output,
    and the rotation the transformer applies (degrees)."""
    from PIL import ImageDraw

    from ..viz import draw_grid
    from .pose import rotation_deg, transform_matrices

    model, feed = load_run(st_dir)
    cnn_cfg = OmegaConf.load(Path(cnn_dir) / "config.yaml")
    if cnn_cfg.dataset != OmegaConf.load(Path(st_dir) / "config.yaml").dataset:
        raise UserError(f"{st_dir} and {cnn_dir} were trained on different data")
    cnn = load_trained(cnn_cfg, cnn_dir)
    test, picked = feed.splits["test"], []
    with torch.no_grad():
        for start in range(0, len(test), 500):
            x, y = feed.batch(test, slice(start, start + 500))
            wins = (model(x).argmax(-1) == y) & (cnn(x).argmax(-1) != y)
            picked += (start + torch.nonzero(wins)[:, 0]).tolist()
            if len(picked) >= examples:
                break
    if not picked:
        raise UserError(f"no test digit that {st_dir} gets right and {cnn_dir} gets wrong")
    x, _ = feed.batch(test, torch.tensor(picked[:examples]))
    found = traced(model, x)
    if not found:
        raise UserError(f"{st_dir} has no spatial transformer")
    st, seen, warped, theta = found[0]
    size = 4 * x.shape[-1]
    shown = upscaled(tiles(seen), size)
    drawn = draw_grid(shown, st.transform.grid(theta, (size, size)))  # thin lines
    rows = torch.stack([shown.expand(-1, 3, -1, -1), drawn,
                        upscaled(tiles(warped), size).expand(-1, 3, -1, -1)], 1)  # fmt: skip
    picture = make_grid(rows.flatten(0, 1), nrow=3, pad_value=0.5)
    image = to_pil_image(picture)
    angles = rotation_deg(transform_matrices(st.transform, theta))
    draw = ImageDraw.Draw(image)
    for i, angle in enumerate(angles.tolist()):  # on each output tile, its top left corner
        where = (2 * (size + 2) + 6, i * (size + 2) + 4)
        draw.text(where, f"{round(angle):+d} deg", fill=(255, 80, 80))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    print(f"{out}: test digits {picked[:examples]}: input, grid, output (+ rotation applied)")
    return out


def training_animation(run_dir: str | Path, out: str | Path, examples: int = 8,
                       frame_ms: int = 400) -> Path:  # fmt: skip
    """An animated GIF of the run's first transformer over training, like the paper's videos:
    one frame per snapshot (``schedule.log.snapshot_every``), showing on fixed test images its
    grid on the input (top) and its output (bottom), with the iteration."""
    from PIL import ImageDraw

    from ..runs import load_snapshots
    from ..st.inspect import transformers
    from ..viz import draw_grid

    model, feed = load_run(run_dir)
    snapshots = load_snapshots(run_dir)
    if not snapshots:
        raise UserError(f"{run_dir} kept no snapshots: train it with schedule.log.snapshot_every "
                        "> 0 (fast and paper keep them)")  # fmt: skip
    x, _ = feed.preview(examples)
    frames = []
    for snapshot in snapshots:
        for st, state in zip(transformers(model), snapshot["transformers"], strict=True):
            st.load_state_dict(state)
        found = traced(model, x)
        if not found:
            raise UserError(f"{run_dir} has no spatial transformer")
        st, seen, warped, theta = found[0]
        theta = theta.reshape(-1, st.transform.num_params)  # (B * N, P)
        one = seen if seen.shape[1] in (1, 3) else seen.mean(1, keepdim=True)
        under = tiles(one).repeat_interleave(st.num_transformers, 0)
        size = 3 * x.shape[-1]
        grids = draw_grid(upscaled(under, size), st.transform.grid(theta, (size, size)))
        warped = warped.flatten(0, -4)  # (B * N, C, H, W); several channels: their mean
        shown = warped if warped.shape[1] in (1, 3) else warped.mean(1, keepdim=True)
        outputs = upscaled(tiles(shown), size).expand(-1, 3, -1, -1)
        top = make_grid(grids, nrow=len(grids), pad_value=0.5)
        bottom = make_grid(outputs, nrow=len(grids), pad_value=0.5)
        width = max(top.shape[-1], bottom.shape[-1])
        frame = torch.full((3, top.shape[1] + bottom.shape[1] + 14, width), 0.0)
        frame[:, 14 : 14 + top.shape[1], : top.shape[-1]] = top
        frame[:, 14 + top.shape[1] :, : bottom.shape[-1]] = bottom
        image = to_pil_image(frame)
        ImageDraw.Draw(image).text((4, 1), f"iteration {snapshot['iteration']}", fill="white")
        frames.append(image)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    print(f"{out}: {len(frames)} frames (iterations {snapshots[0]['iteration']} to "
          f"{snapshots[-1]['iteration']})")  # fmt: skip
    return out


def coloc_figure(run_dir: str | Path, out: str | Path, columns: int = 4) -> Path:
    """The paper's Fig. 4: a co-localisation run's box (red; the true box green) on its first
    images at ``columns`` steps spread over the optimisation (PNG), and at every logged step
    (``*.gif`` beside it)."""
    from PIL import ImageDraw

    from ..viz import draw_boxes

    path = Path(run_dir) / "boxes.pt"
    if not path.exists():
        raise UserError(f"{run_dir} kept no boxes (boxes.pt): run its co-localisation first")
    kept = torch.load(path)
    images = tiles(kept["images"].float()).expand(-1, 3, -1, -1)  # (B, 3, H, W)
    size = 3 * images.shape[-1]
    scale = size / images.shape[-1]

    def at(k: int) -> Tensor:  # (B, 3, size, size): step k's boxes and the true ones
        boxes = torch.stack([kept["boxes"][k], kept["true"]], 1) * scale  # (B, 2, 4)
        return draw_boxes(upscaled(images, size), boxes, width=2)

    steps = kept["steps"].tolist()
    chosen = torch.linspace(0, len(steps) - 1, min(columns, len(steps))).round().long().tolist()
    grid = torch.stack([at(k) for k in chosen], 1).flatten(0, 1)  # image-major rows
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(grid, nrow=len(chosen), pad_value=0.5), out)
    frames = []
    for k, step in enumerate(steps):
        frame = make_grid(at(k), nrow=len(images), pad_value=0.5)
        picture = to_pil_image(frame)
        ImageDraw.Draw(picture).text((4, 2), f"step {step}", fill="white")
        frames.append(picture)
    frames[0].save(out.with_suffix(".gif"), save_all=True, append_images=frames[1:],
                   duration=400, loop=0)  # fmt: skip
    print(f"{out}: rows = images, columns = steps {[steps[k] for k in chosen]}; red: the "
          "transformer's box, green: the digit's")  # fmt: skip
    return out
