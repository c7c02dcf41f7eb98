"""Tiny GTSRB folders for tests, written in either layout (the original zips', torchvision's),
and the 2,000-image sample beside the project (``../shared/data/gtsrb_sample``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stn_repro.config import PACKAGE_ROOT

SAMPLE = PACKAGE_ROOT.parent / "shared" / "data" / "gtsrb_sample"
HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"


def need_sample() -> Path:
    if not (SAMPLE / "Final_Training" / "Images").is_dir():
        pytest.skip(f"the GTSRB sample is absent ({SAMPLE}); it ships beside the project only")
    return SAMPLE


def write_sign(path: Path, size: tuple[int, int], roi: tuple[int, int, int, int],
               colour: tuple[int, int, int]) -> None:  # fmt: skip
    """A PPM of ``size`` (w, h): grey, with the ROI box (corners inclusive) in ``colour``."""
    w, h = size
    pixels = np.full((h, w, 3), 90, np.uint8)
    x1, y1, x2, y2 = roi
    pixels[y1 : y2 + 1, x1 : x2 + 1] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def class_colour(c: int) -> tuple[int, int, int]:
    return (40 + 50 * (c % 4), 200 - 40 * (c % 5), 30 * (c % 7))


def tiny_gtsrb(root: Path, layout: str = "original", classes: int = 3, tracks: int = 5,
               per_track: int = 3, test: int = 4, csv: bool = True) -> Path:  # fmt: skip
    """Write ``classes`` x ``tracks`` x ``per_track`` training images and ``test`` test images
    per class under ``root``; ``layout`` "original" (``Final_Training/Images``,
    ``Final_Test/Images``, ``GT-final_test.csv`` in root) or "torchvision" (``gtsrb/GTSRB/
    Training``, ``gtsrb/GTSRB/Final_Test/Images``, ``gtsrb/GT-final_test.csv``). ``csv=False``
    leaves out the per-class CSVs. Sizes vary (30-41 px); the ROI is filled with the class's
    colour."""
    if layout == "original":
        train, test_dir, test_csv = (root / "Final_Training/Images", root / "Final_Test/Images",
                                     root / "GT-final_test.csv")  # fmt: skip
    else:
        base = root / "gtsrb"
        train, test_dir = base / "GTSRB/Training", base / "GTSRB/Final_Test/Images"
        test_csv = base / "GT-final_test.csv"
    rng = np.random.default_rng(0)
    test_rows = [HEADER]
    for c in range(classes):
        rows = [HEADER]
        for t in range(tracks):
            for k in range(per_track):
                w, h = (int(v) for v in rng.integers(30, 42, 2))
                roi = (5, 5, w - 6, h - 6)
                name = f"{t:05d}_{k:05d}.ppm"
                write_sign(train / f"{c:05d}" / name, (w, h), roi, class_colour(c))
                rows.append(f"{name};{w};{h};{';'.join(map(str, roi))};{c}")
        if csv:
            (train / f"{c:05d}" / f"GT-{c:05d}.csv").write_text("\n".join(rows) + "\n")
        for k in range(test):
            name = f"{c * test + k:05d}.ppm"
            write_sign(test_dir / name, (36, 34), (5, 5, 30, 28), class_colour(c))
            test_rows.append(f"{name};36;34;5;5;30;28;{c}")
    test_csv.parent.mkdir(parents=True, exist_ok=True)
    test_csv.write_text("\r\n".join(test_rows) + "\r\n")  # the official files end lines CRLF
    return root
