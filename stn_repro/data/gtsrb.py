"""GTSRB, the German Traffic Sign Recognition Benchmark (Stallkamp et al., 2012): 43 classes.

Layouts read under ``root`` (``paths.gtsrb_dir``, by default ``datasets/GTSRB``), each part found
on its own:

- the original archives, extracted: ``[GTSRB/]Final_Training/Images/000NN/*.ppm`` with one
  ``GT-000NN.csv`` per class, and ``[GTSRB/]Final_Test/Images/*.ppm`` with ``GT-final_test.csv``
  (from ``GTSRB_Final_Test_GT.zip``, holding the test labels) in ``root`` or beside the images;
- torchvision's download (``torchvision.datasets.GTSRB``): ``gtsrb/GTSRB/Training/000NN/`` and
  ``gtsrb/GTSRB/Final_Test/Images/`` with ``gtsrb/GT-final_test.csv``. When a part is missing
  it is downloaded this way.

An annotation CSV (``;``-separated) has one row per image: ``Filename``, ``Width``,
``Height``, ``Roi.X1``, ``Roi.Y1``, ``Roi.X2``, ``Roi.Y2`` (the sign's box, pixels from the
top-left, both corners inside the box) and ``ClassId``. A class folder without its CSV is read
from its file names (class = the folder's name). Training images are named ``TTTTT_NNNNN.ppm``:
track ``TTTTT`` is one physical sign seen ~30 times, so splits are drawn by track, never by
image.
"""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..checks import at_least, checked, fraction
from ..errors import UserError
from ..files import locked
from .registry import Generator, register_generator

NUM_CLASSES = 43
TRAIN_DIRS = ("Final_Training/Images", "GTSRB/Final_Training/Images", "gtsrb/GTSRB/Training",
              "GTSRB/Training")  # fmt: skip
TEST_DIRS = ("Final_Test/Images", "GTSRB/Final_Test/Images", "gtsrb/GTSRB/Final_Test/Images")
TEST_CSV = "GT-final_test.csv"
TEST_CSV_PLACES = (".", "gtsrb", "GTSRB")  # besides the test images' folder and its parent
COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")
SITE = "https://benchmark.ini.rub.de/gtsrb_dataset.html"


@dataclass
class GtsrbSigns:
    """``dataset.params`` of the ``gtsrb_signs`` generator (conf/dataset/gtsrb.yaml)."""

    size: int = checked(at_least(8))  # side of the stored images
    roi_crop: bool = False  # cut each image to its annotated sign box first
    val_fraction: float = checked(fraction)  # of each class's tracks, held out for validation
    test_fraction: float = checked(fraction)  # > 0: test on held-out tracks, not the test set
    normalize: bool = True  # (x - mean) / std, one mean and std over all training pixels
    local_contrast: int = checked(
        lambda v: None if v == 0 or (v >= 3 and v % 2) else "must be 0 (off) or odd >= 3"
    )  # Gaussian kernel side of the input's local contrast normalisation

    def problem(self) -> str | None:
        """What is wrong across the fields (None: nothing)."""
        if self.val_fraction + self.test_fraction >= 1:
            return (f"dataset.params.val_fraction={self.val_fraction} and dataset.params."
                    f"test_fraction={self.test_fraction}: together they must leave tracks to "
                    "train on")  # fmt: skip
        return None


register_generator("gtsrb_signs", Generator(GtsrbSigns, "gtsrb", NUM_CLASSES))


@dataclass(frozen=True)
class Sign:
    """One annotated image. ``roi`` ``(x1, y1, x2, y2)``: pixels, both corners inclusive;
    ``None`` when no CSV listed the image. ``track``: None for test images."""

    path: Path
    class_id: int
    track: int | None
    roi: tuple[int, int, int, int] | None = None


def read_annotations(path: Path, folder: Path, tracks: bool) -> list[Sign]:
    """The signs a ``GT-*.csv`` lists, their images in ``folder``; ``tracks``: their names are
    ``TTTTT_NNNNN.ppm`` (training images)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
    if not rows or any(c not in rows[0] for c in COLUMNS):
        raise UserError(f"{path} is not a GTSRB annotation file: it needs the columns "
                        f"{';'.join(COLUMNS)}")  # fmt: skip
    signs = []
    for line, row in enumerate(rows, 2):  # line 1 is the header
        name = row["Filename"].strip()
        roi = tuple(whole(row, f"Roi.{c}", path, line) for c in ("X1", "Y1", "X2", "Y2"))
        signs.append(Sign(folder / name, whole(row, "ClassId", path, line),
                          track_of(name) if tracks else None, roi))  # fmt: skip
    return signs


def whole(row: dict, column: str, path: Path, line: int) -> int:
    """The whole number in ``row[column]``; ``UserError`` naming the file, line and column."""
    try:
        return int(row[column])
    except (TypeError, ValueError):
        raise UserError(f"{path}, line {line}: {column}={row[column]!r} is not a whole number; "
                        "correct that line or extract the archive again") from None


def track_of(name: str) -> int:
    """``"00012_00029.ppm"`` -> 12."""
    try:
        return int(name.split("_")[0])
    except ValueError:
        raise UserError(f"{name}: GTSRB training images are named TTTTT_NNNNN.ppm "
                        "(track, image)") from None  # fmt: skip


def training_signs(train_dir: Path) -> list[Sign]:
    """Every training image under ``train_dir``'s class folders ``000NN``, in class order."""
    signs = []
    for folder in sorted(p for p in train_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        annotations = folder / f"GT-{folder.name}.csv"
        if annotations.exists():
            found = read_annotations(annotations, folder, tracks=True)
        else:
            found = [Sign(path, int(folder.name), track_of(path.name))
                     for path in sorted(folder.glob("*.ppm"))]  # fmt: skip
        wrong = [s for s in found if s.class_id != int(folder.name)]
        if wrong:
            raise UserError(f"{wrong[0].path.name} is listed as class {wrong[0].class_id} in "
                            f"folder {folder}: the folder names the class")  # fmt: skip
        signs += found
    return signs


def find_train_dir(root: Path) -> Path | None:
    return next((root / d for d in TRAIN_DIRS if (root / d).is_dir()), None)


def find_test(root: Path) -> tuple[Path, Path] | None:
    """``(images folder, GT-final_test.csv)`` of the test set, or None."""
    for d in TEST_DIRS:
        images = root / d
        if images.is_dir():
            for place in (images, images.parent, *(root / p for p in TEST_CSV_PLACES)):
                if (place / TEST_CSV).exists():
                    return images, place / TEST_CSV
    return None


def offline_message(root: Path, split: str) -> str:
    what = {
        "train": "the training images (GTSRB_Final_Training_Images.zip, extracted: "
                 "Final_Training/Images/000NN/)",
        "test": "the test images (GTSRB_Final_Test_Images.zip, extracted: Final_Test/Images/) and "
                "their labels (GT-final_test.csv, from GTSRB_Final_Test_GT.zip)",
    }[split]  # fmt: skip
    tail = (", or set dataset.params.test_fraction (e.g. 0.25) to test on held-out training "
            "tracks") if split == "test" else ""  # fmt: skip
    return (f"the GTSRB {split} files are missing from {root} and downloading them failed: put "
            f"{what} from {SITE} into {root}, or point paths.gtsrb_dir=... at the folder that "
            f"holds them{tail}")  # fmt: skip


def download(root: Path, split: str) -> None:
    """Download ``split`` with torchvision (archives checked by MD5) into a staging folder,
    then move its folders into ``root/gtsrb`` whole, so an interrupted download leaves no
    partial dataset behind. The archives stay in the staging folder for the next try; what an
    earlier try extracted there is deleted first (torchvision would trust it)."""
    from torchvision.datasets import GTSRB

    staging = root / ".gtsrb-downloading"
    if (staging / "gtsrb").is_dir():
        for path in (staging / "gtsrb").iterdir():
            if path.suffix != ".zip":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    try:
        GTSRB(str(staging), split=split, download=True)
    except (OSError, HTTPException, RuntimeError) as err:  # URLError is an OSError
        raise UserError(f"{offline_message(root, split)} ({type(err).__name__})") from None
    got, final = staging / "gtsrb", root / "gtsrb"
    moves = ["GTSRB/Training"] if split == "train" else ["GTSRB/Final_Test", TEST_CSV]
    for name in moves:
        (final / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(final / name, ignore_errors=True)
        (got / name).rename(final / name)


def located(root: str | Path, need_test: bool) -> tuple[Path, tuple[Path, Path] | None]:
    """The training folder and (when ``need_test``) the test set under ``root``, downloading
    what is missing."""
    root = Path(root)
    train_dir = find_train_dir(root)
    test = find_test(root) if need_test else None
    if train_dir is None or (need_test and test is None):
        root.mkdir(parents=True, exist_ok=True)
        with locked(root / "download"):
            if find_train_dir(root) is None:
                download(root, "train")
            if need_test and find_test(root) is None:
                download(root, "test")
        train_dir, test = find_train_dir(root), find_test(root) if need_test else None
        if train_dir is None or (need_test and test is None):
            split = "train" if train_dir is None else "test"
            raise UserError(f"the GTSRB download into {root} did not give the expected folders: "
                            f"{offline_message(root, split)}")  # fmt: skip
    return train_dir, test


# ---- splits ------------------------------------------------------------------------------------


def held_out(tracks: int, fraction: float) -> int:
    """Tracks of a class held out for ``fraction``: rounded half up, at least one when > 0."""
    return 0 if fraction == 0 else max(1, math.floor(fraction * tracks + 0.5))


def split_by_track(signs: list[Sign], val_fraction: float, test_fraction: float,
                   seed: int) -> dict[str, list[Sign]]:  # fmt: skip
    """Training signs -> ``{"train", "val"[, "test"]}``: per class, ``test_fraction`` then
    ``val_fraction`` of its tracks (drawn with ``seed``) held out whole, so no physical sign is
    in two splits. ``test`` only when ``test_fraction > 0``."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[Sign]] = {"train": [], "val": []}
    if test_fraction > 0:
        parts["test"] = []
    for c in sorted({s.class_id for s in signs}):
        mine = [s for s in signs if s.class_id == c]
        tracks = sorted({s.track for s in mine})
        n_test, n_val = held_out(len(tracks), test_fraction), held_out(len(tracks), val_fraction)
        if n_test + n_val >= len(tracks):
            raise UserError(
                f"GTSRB class {c} has {len(tracks)} tracks: holding out {n_test} for testing and "
                f"{n_val} for validation leaves none to train on; lower "
                "dataset.params.test_fraction or dataset.params.val_fraction"
            )
        order = [tracks[i] for i in rng.permutation(len(tracks))]
        chosen = {t: "test" for t in order[:n_test]}
        chosen |= {t: "val" for t in order[n_test : n_test + n_val]}
        for s in mine:
            parts[chosen.get(s.track, "train")].append(s)
    return parts


# ---- preprocessing into stores -----------------------------------------------------------------


def sign_image(path: Path, size: int, roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The image (cut to ``roi`` when given) resized to ``size x size`` (bilinear,
    antialiased): ``(3, size, size)`` uint8 RGB."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if roi is not None:
            x1, y1, x2, y2 = roi
            image = image.crop((x1, y1, x2 + 1, y2 + 1))
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1).copy()


class Signs(Dataset):
    """Preprocessed samples ``(image (3, size, size) uint8, class () int64)``."""

    def __init__(self, signs: list[Sign], size: int, roi_crop: bool):
        self.signs, self.size, self.roi_crop = signs, size, roi_crop

    def __len__(self) -> int:
        return len(self.signs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        sign = self.signs[i]
        image = sign_image(sign.path, self.size, sign.roi if self.roi_crop else None)
        return image, np.int64(sign.class_id)

    def source(self, i: int) -> Path:
        return self.signs[i].path


def gtsrb_inputs(cfg, root: str | Path) -> tuple[str, list, list | None]:
    """``(key, signs, tests)``: the key of the stores made from ``root`` with ``cfg`` (it
    changes with the config, the list of training images and each annotation CSV; image
    contents are not hashed), the training signs, and the official test signs (None when the
    test split is held-out training tracks)."""
    from .cache import config_key
    from .sources import md5sum

    p = cfg.params
    train_dir, test = located(root, need_test=p.test_fraction == 0)
    signs = training_signs(train_dir)
    if not signs:
        raise UserError(f"{train_dir} holds no GTSRB class folders (000NN) with .ppm images")
    tests = None if test is None else read_annotations(test[1], test[0], tracks=False)
    if p.roi_crop and any(s.roi is None for s in signs):
        raise UserError(f"dataset.params.roi_crop=true needs the GT-000NN.csv files in "
                        f"{train_dir}'s class folders")  # fmt: skip
    classes = {s.class_id for s in signs + (tests or [])}
    if not classes <= set(range(NUM_CLASSES)):
        raise UserError(f"GTSRB has classes 0-{NUM_CLASSES - 1}; {root} has {max(classes)}")
    key = config_key({
        "source": "gtsrb", "size": p.size, "roi_crop": p.roi_crop,
        "val_fraction": p.val_fraction, "test_fraction": p.test_fraction, "seed": cfg.seed,
        "images": sorted(str(s.path.relative_to(train_dir)) for s in signs),
        "annotations": sorted(md5sum(csv) for csv in train_dir.glob("*/GT-*.csv")),
        "test_labels": None if test is None else md5sum(test[1]),
    })  # fmt: skip
    return key, signs, tests


def prepare_gtsrb(cfg, root: str | Path, cache_dir: str | Path, workers: int,
                  inputs: tuple | None = None) -> dict:
    """Preprocess GTSRB once into stores (``train``, ``val``, ``test``) and return their info
    (``stored.prepared_stores``). The stores are remade when ``gtsrb_inputs``'s key changes.

    ``cfg`` is the dataset config: ``params`` (size, roi_crop, val_fraction, test_fraction)
    and ``seed`` (which tracks are held out). The test split is the official test set, or with
    ``test_fraction > 0`` held-out training tracks.
    """
    from .stored import prepared_stores

    p = cfg.params
    key, signs, tests = inputs or gtsrb_inputs(cfg, root)  # (already read: ``inputs``)

    def build() -> tuple[dict, dict]:
        splits = split_by_track(signs, p.val_fraction, p.test_fraction, cfg.seed)
        if tests is not None:
            splits["test"] = tests
        missing = [s.path for found in splits.values() for s in found if not s.path.exists()]
        if missing:
            raise UserError(f"{len(missing)} GTSRB images listed in the CSV files are missing, "
                            f"e.g. {missing[0]}: extract the archives again")  # fmt: skip
        where = "official test set" if tests is not None else "held-out training tracks"
        return ({split: Signs(found, p.size, p.roi_crop) for split, found in splits.items()},
                {"test_from": where})  # fmt: skip

    return prepared_stores(cache_dir, cfg.name, key, build, workers, (3, p.size, p.size))
