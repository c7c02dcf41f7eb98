"""Would the loss itself move a finished co-localisation run's windows onto the digits?

    python scripts/coloc_windows.py RUN_DIR [--radius 10] [--step 2]

e.g. `python scripts/coloc_windows.py outputs/runs/table5_coloc_t/fast/3/<config>/seed1`.

For each of the run's images, its final window (the start the run kept) is moved by every
shift of a (2 radius / step + 1)^2 grid of pixels, its side held, and the mean squared distance
of its features to the other images' final crops (A.2's positive term, the partners fixed as
in the recipe) is taken at each. Printed: the images whose window misses (IoU <= 0.5) and the
shift that minimises that distance, and how many windows that shift would carry onto the
digit or off it. A miss whose best shift is about zero sits where the encoder's similarity
puts it, so no refinement of the windows under this loss can fix it; only e() can.
The boxes only score; nothing here changes the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from stn_repro.coloc import (
    Encoder,
    class_images,
    current_boxes,
    make_transformer,
    paired_iou,
    squared_distances,
    windows_of,
)
from stn_repro.data.sources import DIGIT
from stn_repro.experiment import train_encoder
from stn_repro.files import read_json
from stn_repro.schema import hydra_initialised
from stn_repro.st import Attention, sample


@torch.no_grad()
def best_shifts(encoder, images: torch.Tensor, windows: torch.Tensor, radius: int, step: int
                ) -> torch.Tensor:  # fmt: skip
    """Shifts ``(N, 2)`` (x, y pixels) of each window ``(N, 3)`` (attention scale, x, y in
    [-1, 1]) within ``radius`` that minimise its crop's mean squared feature distance to the
    other windows' crops of ``images`` ``(N, C, H, W)`` (square canvases)."""
    half = images.shape[-1] / 2
    grid = torch.arange(-radius, radius + 1, step, dtype=torch.float32)
    shifts = torch.cartesian_prod(grid, grid)  # (S, 2): (x, y)
    crops = encoder(sample(images, Attention().grid(windows, (DIGIT, DIGIT))))  # (N, F)
    best = torch.empty(len(images), 2)
    for i in range(len(images)):
        moved = windows[i].repeat(len(shifts), 1)
        moved[:, 1:] += shifts / half
        e = encoder(sample(images[i : i + 1].expand(len(shifts), -1, -1, -1),
                           Attention().grid(moved, (DIGIT, DIGIT))))  # fmt: skip
        others = torch.cat([crops[:i], crops[i + 1 :]])
        best[i] = shifts[squared_distances(e, others).mean(1).argmin()]
    return best


def main(run_dir: Path, radius: int, step: int) -> None:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    with hydra_initialised():
        encoder = Encoder(train_encoder(cfg, [f"schedule={cfg.schedule.name}"]).head,
                          int(cfg.coloc.encoder_input))  # fmt: skip
    chosen = read_json(run_dir / "metrics.json")["chosen_start"]  # the start the run kept
    kept = torch.load(run_dir / "checkpoint.pt", weights_only=False)["starts"][chosen]
    images, true = class_images(cfg, int(cfg.coloc.digit), int(cfg.coloc.images_per_class))
    st = make_transformer(cfg.coloc, tuple(images.shape[1:]))
    st.load_state_dict(kept["transformer"])
    with torch.no_grad():
        windows = windows_of(st, st(images)[1])
    boxes = current_boxes(st, images)
    hit = paired_iou(boxes, true) > 0.5
    shifts = best_shifts(encoder, images, windows, radius, step)
    moved_hit = paired_iou(boxes + shifts.repeat(1, 2), true) > 0.5
    offset = (boxes[:, :2] + boxes[:, 2:] - true[:, :2] - true[:, 2:]) / 2
    print(f"{run_dir}: {int(hit.sum())} of {len(hit)} windows on the digit (IoU > 0.5)")
    print("misses: image, offset from the digit's centre (x, y), best shift within "
          f"{radius} px, IoU after it")
    for i in (~hit).nonzero()[:, 0].tolist():
        after = paired_iou(boxes[i : i + 1] + shifts[i].repeat(2), true[i : i + 1]).item()
        dx, dy = offset[i].tolist()
        sx, sy = shifts[i].tolist()
        print(f"  {i:>3}  ({dx:+.1f}, {dy:+.1f})  ({sx:+.0f}, {sy:+.0f})  {after:.2f}")
    print(f"the best shifts would carry {int((moved_hit & ~hit).sum())} misses onto the digit "
          f"and {int((hit & ~moved_hit).sum())} hits off it; median |shift| "
          f"{shifts.norm(dim=1).median():.1f} px")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--radius", type=int, default=10, help="pixels (default 10)")
    parser.add_argument("--step", type=int, default=2, help="pixels (default 2)")
    args = parser.parse_args()
    main(args.run_dir, args.radius, args.step)
