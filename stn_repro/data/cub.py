"""CUB-200-2011 (Wah et al., 2011): 11,788 photographs of 200 bird species, 5,994 for training
and 5,794 for testing. Only the class labels are used (no boxes, no parts).

Layout under ``root`` (``paths.cub_dir``, by default ``datasets/CUB``): the archive
``CUB_200_2011.tgz``, extracted into ``CUB_200_2011/`` holding ``images/<class>/<name>.jpg``
and the metadata files, one line per image, keyed by image id (1-based):
``images.txt`` (``id path``), ``image_class_labels.txt`` (``id class``, classes 1-200) and
``train_test_split.txt`` (``id 1`` for training, ``id 0`` for testing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..checks import at_least, between, checked, crop_problem
from ..errors import UserError
from ..files import locked
from .registry import Generator, register_generator

URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
ARCHIVE = "CUB_200_2011.tgz"
ARCHIVE_SIZE = 1_150_585_339
ARCHIVE_MD5 = "97eceeb196236b17998738112f37df78"
FOLDER = "CUB_200_2011"
METADATA = ("images.txt", "image_class_labels.txt", "train_test_split.txt")
NUM_CLASSES = 200


@dataclass
class CubImages:
    """``dataset.params`` of the ``cub_images`` generator (conf/dataset/cub.yaml)."""

    size: int = checked(at_least(8))  # side of the stored images (256; 512 for 448px rows)
    random_crop: int | None = checked(at_least(8), None)  # training: random crop (centre: eval)
    flip: bool = True  # training: random horizontal flips
    classes: int = checked(between(1, 200), 200)  # this many classes (the sample: 5) ...
    first_class: int = checked(between(1, 200), 1)  # ... from this one (numbered 1-200)
    keep_aspect: bool = False  # resize the shorter side to ``size`` (A.6), else stretch
    exclude_test: str | None = None  # a file listing test images to leave out

    def problem(self) -> str | None:
        """What is wrong across the fields (None: nothing)."""
        return crop_problem(self.random_crop, self.size)


register_generator("cub_images", Generator(CubImages, "cub", NUM_CLASSES))  # bird species


@dataclass
class Metadata:
    """Every image of the dataset, in id order: ``paths`` (relative to ``images/``),
    ``labels`` ``(N,)`` int64 classes 0-199, ``train`` ``(N,)`` bool."""

    paths: list[str]
    labels: np.ndarray
    train: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def read_column(path: Path) -> dict[int, str]:
    """``id value`` lines -> {id: value}."""
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                key, value = line.split(maxsplit=1)
                found[int(key)] = value.strip()
            except ValueError:
                raise UserError(f"{path}, line {number}: expected 'id value', got "
                                f"{line!r}") from None  # fmt: skip
    return found


def read_metadata(folder: Path) -> Metadata:
    """The metadata files of an extracted ``CUB_200_2011`` folder."""
    paths, labels, split = (read_column(folder / name) for name in METADATA)
    if not (paths.keys() == labels.keys() == split.keys()):
        raise UserError(f"the metadata files in {folder} list different image ids")
    ids = sorted(paths)
    for name, column, allowed in (("image_class_labels.txt", labels, range(1, NUM_CLASSES + 1)),
                                  ("train_test_split.txt", split, ("0", "1"))):  # fmt: skip
        values = set(map(str, allowed))
        bad = next((i for i in ids if column[i] not in values), None)
        if bad is not None:
            raise UserError(f"{folder / name}: image {bad} has {column[bad]!r}, not one of "
                            f"{allowed[0]}-{allowed[-1]}; correct that line or extract "
                            f"{ARCHIVE} again")  # fmt: skip
    return Metadata(
        [paths[i] for i in ids],
        np.array([int(labels[i]) - 1 for i in ids], np.int64),
        np.array([split[i] == "1" for i in ids]),
    )


def offline_message(root: Path) -> str:
    return (f"the CUB-200-2011 files are missing from {root} and downloading them failed: put "
            f"{ARCHIVE} from {URL} (or its extracted {FOLDER}/ folder) into {root}, or point "
            "paths.cub_dir=... at the folder that holds it")  # fmt: skip


def check_archive(archive: Path) -> None:
    """``UserError`` unless ``archive`` has the published size and MD5."""
    from .sources import md5sum

    size = archive.stat().st_size
    if size != ARCHIVE_SIZE or md5sum(archive) != ARCHIVE_MD5:
        raise UserError(f"{archive} is not the published {ARCHIVE} (size {size:,}, expected "
                        f"{ARCHIVE_SIZE:,} bytes with MD5 {ARCHIVE_MD5}): delete it and rerun "
                        "to download it again")  # fmt: skip


def dataset_dir(root: str | Path) -> Path:
    """The extracted ``CUB_200_2011`` folder under ``root``, extracting (after checking its
    size and MD5) or downloading the archive first when needed."""
    from .sources import download_file, extract_folder

    root = Path(root)
    folder = root / FOLDER
    if (folder / METADATA[0]).exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / "extract"):
        if not (folder / METADATA[0]).exists():
            archive = root / ARCHIVE
            if not archive.exists():
                download_file(URL, archive, offline_message(root))
            check_archive(archive)
            extract_folder(archive, folder, METADATA[0])
    return folder


# ---- preprocessing into stores -----------------------------------------------------------------


def bird_image(path: Path, size: int, keep_aspect: bool = True) -> np.ndarray:
    """The photograph (greyscale ones converted to RGB) resized (bilinear, antialiased) so that
    its shorter side is ``size``, the aspect ratio kept: ``(3, size, S)`` or ``(3, S, size)``
    uint8 with ``S >= size`` (A.6's "256 x S"); with ``keep_aspect=False``, stretched to
    ``(3, size, size)``."""
    with Image.open(path) as image:
        w, h = image.size
        if keep_aspect:
            scale = size / min(w, h)
            w, h = max(size, round(w * scale)), max(size, round(h * scale))
        else:
            w, h = size, size
        image = image.convert("RGB").resize((w, h), Image.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1).copy()


class Birds(Dataset):
    """Preprocessed samples ``(image (3, H, W) uint8, class () int64)`` (``bird_image``)."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: int, keep_aspect: bool):
        self.paths, self.labels, self.size, self.keep_aspect = paths, labels, size, keep_aspect

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return bird_image(self.paths[i], self.size, self.keep_aspect), self.labels[i]

    def source(self, i: int) -> Path:
        return self.paths[i]


def cub_inputs(cfg, root: str | Path) -> tuple[str, Path, Metadata, dict[str, np.ndarray]]:
    """``(key, folder, meta, splits)``: the key of the stores made from ``root`` with ``cfg``
    (it changes with the config, the metadata files and the exclusion list; image contents are
    not hashed), the extracted folder, its metadata and each split's images (``train``,
    ``val`` (none: the paper holds none out), ``test``: boolean masks over ``meta``) among the
    chosen classes, less the test images ``params.exclude_test`` lists."""
    from .cache import config_key
    from .sources import md5sum

    p = cfg.params
    first, last = p.first_class, p.first_class + p.classes - 1
    if last > NUM_CLASSES:
        raise UserError(f"dataset.params.first_class={first} with dataset.params.classes="
                        f"{p.classes} runs past class {NUM_CLASSES}: take at most "
                        f"{NUM_CLASSES - first + 1} classes from there")  # fmt: skip
    if p.keep_aspect and p.random_crop is None:
        raise UserError("dataset.params.keep_aspect=true stores images of different sizes: set "
                        "dataset.params.random_crop=N (training crops, centre crops for "
                        "testing) or dataset.params.keep_aspect=false")  # fmt: skip
    folder = dataset_dir(root)
    meta = read_metadata(folder)
    keep = (meta.labels >= first - 1) & (meta.labels <= last - 1)
    excluded = excluded_tests(p.exclude_test, meta)
    key = config_key({
        "source": "cub", "size": p.size, "classes": p.classes,
        **({"first_class": first} if first != 1 else {}),
        **({"keep_aspect": True} if p.keep_aspect else {}),
        **({"exclude_test": md5sum(Path(p.exclude_test))} if p.exclude_test else {}),
        "metadata": [md5sum(folder / name) for name in METADATA],
    })  # fmt: skip
    splits = {"train": keep & meta.train, "val": np.zeros_like(keep),
              "test": keep & ~meta.train & ~excluded}  # fmt: skip
    return key, folder, meta, splits


def excluded_tests(listing: str | None, meta: Metadata) -> np.ndarray:
    """Which images the file ``listing`` names (one path per line as in ``images.txt``; blank
    lines and ``#`` comments skipped), e.g. the 22 test images that are also in ImageNet's
    training set (Sect. 4.3's 84.0% protocol). Every name must be a test image."""
    excluded = np.zeros(len(meta), bool)
    if not listing:
        return excluded
    path = Path(listing)
    if not path.is_file():
        raise UserError(f"dataset.params.exclude_test={listing}: no such file (one test image "
                        "path per line, as in images.txt)")  # fmt: skip
    where = {name: i for i, name in enumerate(meta.paths)}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        name = line.split("#")[0].strip()
        if not name:
            continue
        i = where.get(name)
        if i is None or meta.train[i]:
            what = "not in images.txt" if i is None else "a training image"
            raise UserError(f"{path}, line {number}: {name!r} is {what}; list test images "
                            "only, as images.txt names them")  # fmt: skip
        excluded[i] = True
    return excluded


def present_classes(meta: Metadata, present: np.ndarray) -> str:
    """The runs of classes (1-based) whose every image is present, as the options that keep
    each: ``first_class=1 classes=5``, ..."""
    whole = [c for c in range(NUM_CLASSES) if present[meta.labels == c].all()]
    runs: list[list[int]] = []
    for c in whole:
        if runs and runs[-1][-1] == c - 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return ", ".join(f"dataset.params.first_class={r[0] + 1} dataset.params.classes={len(r)}"
                     for r in runs[:3])  # fmt: skip


def prepare_cub(cfg, root: str | Path, cache_dir: str | Path, workers: int,
                inputs: tuple | None = None) -> dict:
    """Preprocess CUB once into stores (``train``, ``val`` (empty), ``test``) and return their
    info (``stored.prepared_stores``).

    ``cfg`` is the dataset config: ``params.size`` (the stored shorter side, e.g. 256; random
    crops of ``params.random_crop`` are cut from it while training), ``params.keep_aspect``,
    ``params.first_class`` and ``params.classes`` (classes first_class .. first_class +
    classes - 1, numbered 1-200 as the folders are; e.g. 1 and 5 for the sample, which holds
    the images of classes 1-5) and ``params.exclude_test`` (``excluded_tests``).
    """
    from .stored import prepared_stores

    p = cfg.params
    key, folder, meta, splits = inputs or cub_inputs(cfg, root)  # (already read: ``inputs``)

    def build() -> tuple[dict, dict]:
        paths = [folder / "images" / p for p in meta.paths]
        present = np.array([path.exists() for path in paths])
        wanted = splits["train"] | splits["test"]
        missing = [paths[i] for i in np.flatnonzero(wanted & ~present)]
        if missing:
            whole = present_classes(meta, present) or "none"
            raise UserError(
                f"{len(missing)} CUB images listed in images.txt are missing, e.g. {missing[0]}: "
                f"extract {ARCHIVE} again, or keep classes whose images are all there ({whole})"
            )
        stores = {split: Birds([paths[i] for i in np.flatnonzero(mask)], meta.labels[mask],
                               p.size, p.keep_aspect)
                  for split, mask in splits.items()}  # fmt: skip
        extra = {}
        if p.exclude_test:
            extra["test_from"] = f"test split less the images listed in {p.exclude_test}"
        return stores, extra

    shape = None if p.keep_aspect else (3, p.size, p.size)
    return prepared_stores(cache_dir, cfg.name, key, build, workers, shape)
