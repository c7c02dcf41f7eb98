"""Measure the Table 5 triplet loss at fixed windows: why the co-localisation finds empty canvas.

    python scripts/coloc_landscape.py [OVERRIDE=VALUE ...] [DIGIT ...]    (default: digits 3 8)

e.g. `python scripts/coloc_landscape.py dataset=coloc_tc 0 3 8` for the cluttered images.

For the 100 images of each class, the mean hinge loss of docs/reproduction-notes.md is
evaluated, without any training, with the transformer's window held at:
  true   the digit's own 28x28 box,
  blank  a digit-sized corner window that misses the digit (always exists on an 84x84 canvas),
  whole  the whole canvas (the identity transform).
Each line gives the mean squared distances to the positive and to the random crop, the
loss with the encoder's features divided by sqrt(k) for k = 1, 100, 1000 (k = 1 is the loss as
written), and the gradient of that loss reaching the windows' thetas: its mean size and the %
of windows it does not reach at all (every blank window: bilinear sampling of black canvas
does not change when the window moves a little).

A second table holds the window centred on each digit and varies its side (pixels of the
canvas; the digit's box is 28): the mean squared distances to the other images' crops (pos)
and to the random crops (neg), and pos - neg, the loss (less alpha) when the hinge stays
active as in the recipe (alpha = 4000). Its minimum is the side the recipe's windows settle
at; IoU > 0.5 with the 28-pixel box needs a side below 39.6 even when perfectly centred.
The loss settings are `coloc=as_written` unless overridden; the encoder is the experiment's
(trained first if its run is missing).
"""

from __future__ import annotations

import sys

import torch
from hydra import compose

from stn_repro.coloc import Encoder, class_images, random_crops, triplet_hinge
from stn_repro.data.sources import DIGIT
from stn_repro.experiment import train_encoder
from stn_repro.schema import hydra_initialised
from stn_repro.speed import set_threads
from stn_repro.st import Attention, sample

SCALES = (1, 100, 1000)
SIDES = (20, 24, 28, 32, 36, 40, 48, 56)  # window sides of the scale sweep, canvas pixels


def windows(boxes: torch.Tensor, canvas: int) -> dict[str, torch.Tensor]:
    """Attention thetas ``(N, 3)`` of the true, blank and whole-canvas windows."""
    n, s = len(boxes), DIGIT / canvas
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    true = torch.cat([torch.full((n, 1), s), centre / (canvas / 2) - 1], dim=1)
    # The corner column (row) on the far side of the digit never overlaps it.
    far = torch.where(boxes[:, :2] + DIGIT <= canvas - DIGIT, 1 - s, s - 1)
    blank = torch.cat([torch.full((n, 1), s), far], dim=1)
    whole = torch.tensor([[1.0, 0.0, 0.0]]).repeat(n, 1)
    return {"true": true, "blank": blank, "whole": whole}


def main(overrides: list[str], digits: list[int]) -> None:
    base = ["experiment=table5_coloc_t", "coloc=as_written", "schedule=fast", "progress=false",
            *overrides]  # fmt: skip
    with hydra_initialised():
        cfg = compose("config", overrides=base)
        set_threads(cfg.speed)
        encoder = Encoder(train_encoder(cfg, base).head)
    gen = torch.Generator().manual_seed(0)
    print(f"{cfg.dataset.name}: mean loss (alpha = {cfg.coloc.margin}) at fixed windows")
    header = "".join(f"{f'k={k}':>9}" for k in SCALES)
    print(f"{'class':>5} {'window':>6} {'pos':>8} {'neg':>8}{header} {'|dL/dθ|':>9} {'zero':>5}")
    for digit in digits:
        images, boxes = class_images(cfg, digit, int(cfg.coloc.images_per_class))
        n = len(images)
        partner = (torch.arange(n) + torch.randint(1, n, (n,), generator=gen)) % n
        with torch.no_grad():
            rand = encoder(random_crops(images, cfg.coloc.random_crop_scale, gen))
        for name, theta in windows(boxes, images.shape[-1]).items():
            theta.requires_grad_(True)
            e = encoder(sample(images, Attention().grid(theta, (DIGIT, DIGIT))))
            pos = (e - e[partner]).pow(2).sum(1)
            neg = (e - rand).pow(2).sum(1)
            # Dividing the features by sqrt(k) divides both squared distances by k.
            losses = [triplet_hinge(e / k**0.5, e[partner] / k**0.5, rand / k**0.5,
                                    cfg.coloc.margin) for k in SCALES]  # fmt: skip
            # The gradient reaching each window's theta through the loss as written (k = 1):
            # its mean size, and the % of windows it does not reach at all.
            (grad,) = torch.autograd.grad(losses[0], theta)
            size = grad.abs().sum(1)
            print(f"{digit:>5} {name:>6} {pos.mean():8.1f} {neg.mean():8.1f}"
                  + "".join(f"{loss:9.3f}" for loss in losses)
                  + f" {size.mean():9.2e} {100 * (size == 0).float().mean():4.0f}%")  # fmt: skip
        sweep(encoder, images, boxes, partner, rand, digit)


@torch.no_grad()
def sweep(encoder, images, boxes, partner, rand, digit: int) -> None:
    """pos, neg and pos - neg with the window centred on the digit, for each side in SIDES."""
    canvas = images.shape[-1]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / (canvas / 2) - 1
    print(f"{digit:>5} centred window, side in pixels: pos / neg / pos - neg")
    for side in SIDES:
        theta = torch.cat([torch.full((len(images), 1), side / canvas), centre], dim=1)
        e = encoder(sample(images, Attention().grid(theta, (DIGIT, DIGIT))))
        pos, neg = (e - e[partner]).pow(2).sum(1).mean(), (e - rand).pow(2).sum(1).mean()
        print(f"{'':>5} {side:>6} {pos:8.1f} {neg:8.1f} {pos - neg:9.1f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    overrides = [a for a in args if "=" in a]
    digits = [int(a) for a in args if "=" not in a] or [3, 8]
    main(overrides, digits)
