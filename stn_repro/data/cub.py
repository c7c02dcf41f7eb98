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

from ..errors import UserError
from ..files import locked

URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
ARCHIVE = "CUB_200_2011.tgz"
ARCHIVE_SIZE = 1_150_585_339
ARCHIVE_MD5 = "97eceeb196236b17998738112f37df78"
FOLDER = "CUB_200_2011"
METADATA = ("images.txt", "image_class_labels.txt", "train_test_split.txt")
NUM_CLASSES = 200


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


def bird_image(path: Path, size: int) -> np.ndarray:
    """The photograph (greyscale ones converted to RGB) resized to ``size x size`` (bilinear,
    antialiased; the aspect ratio is not kept): ``(3, size, size)`` uint8."""
    with Image.open(path) as image:
        image = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1).copy()


class Birds(Dataset):
    """Preprocessed samples ``(image (3, size, size) uint8, class () int64)``."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: int):
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return bird_image(self.paths[i], self.size), self.labels[i]


def prepare_cub(cfg, root: str | Path, cache_dir: str | Path, workers: int) -> dict:
    """Preprocess CUB once into stores (``train``, ``val`` (empty: the paper holds none out),
    ``test``) and return their info (``stored.prepared_stores``).

    ``cfg`` is the dataset config: ``params.size`` (the stored side, e.g. 256; random crops of
    ``params.random_crop`` are cut from it while training) and ``params.classes`` (the first
    K classes only, e.g. 5 for the sample that holds the images of classes 1-5).
    """
    from .cache import config_key
    from .sources import md5sum
    from .stored import prepared_stores

    p = cfg.params
    folder = dataset_dir(root)
    meta = read_metadata(folder)
    keep = meta.labels < p.classes
    key = config_key({
        "source": "cub", "size": p.size, "classes": p.classes,
        "metadata": [md5sum(folder / name) for name in METADATA],
    })  # fmt: skip

    def build() -> tuple[dict, dict]:
        splits = {"train": keep & meta.train, "val": np.zeros_like(keep),
                  "test": keep & ~meta.train}  # fmt: skip
        paths = [folder / "images" / p for p in meta.paths]
        missing = [paths[i] for i in np.flatnonzero(keep) if not paths[i].exists()]
        if missing:
            raise UserError(
                f"{len(missing)} CUB images listed in images.txt are missing, e.g. {missing[0]}: "
                f"extract {ARCHIVE} again, or keep the classes present with "
                "dataset.params.classes=K (the first K classes)"
            )
        return ({split: Birds([paths[i] for i in np.flatnonzero(mask)], meta.labels[mask], p.size)
                 for split, mask in splits.items()}, {})  # fmt: skip

    return prepared_stores(cache_dir, cfg.name, key, build, workers, (3, p.size, p.size))
