"""SVHN "format 1" (Netzer et al., 2011): full house-number photographs with digit boxes.

Layout under ``root`` (``paths.svhn_dir``, by default ``datasets/SVHN``): the original archives
``train.tar.gz``, ``test.tar.gz``, ``extra.tar.gz``, extracted into ``train/``, ``test/``,
``extra/``, each holding ``1.png``, ``2.png``, ... and ``digitStruct.mat``.

``digitStruct.mat`` is a MATLAB v7.3 file (HDF5): ``digitStruct/name`` and ``digitStruct/bbox``
are columns of object references, one per image. A bbox group holds five fields (``label``,
``left``, ``top``, ``width``, ``height``); with one digit each field holds its value inline
(a float64 ``(1, 1)``), with several digits each holds references to ``(1, 1)`` values. The
digit 0 is stored as label 10. Box coordinates are pixels, origin at the image's top-left.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..checks import at_least, checked, crop_problem
from ..errors import UserError, warn
from ..files import locked, write_atomic
from .registry import Generator, register_generator
from .sources import download_file, extract_folder, md5sum

URL = "http://ufldl.stanford.edu/housenumbers/{part}.tar.gz"
PARTS = ("train", "test", "extra")
FIELDS = ("label", "left", "top", "width", "height")
MAX_DIGITS = 5
NO_DIGIT = 10
"""Sequence labels: positions past the number's length hold class 10 ("no digit")."""


@dataclass
class SvhnCrop:
    """``dataset.params`` of the ``svhn_crop`` generator (conf/dataset/svhn64.yaml)."""

    size: int = checked(at_least(8))  # side of the stored crops
    expand: float = checked(at_least(0))  # growth of the digits' union box in x and y
    loose: float = checked(at_least(1))  # then the box scaled about its centre
    train_parts: list[str] = checked(
        lambda v: None if v and set(v) <= {"train", "extra"} and len(set(v)) == len(v)
        else "must list train and/or extra, e.g. [train, extra]"
    )  # fmt: skip
    validation: int = checked(at_least(1))  # training images held out
    random_crop: int | None = checked(at_least(8), None)  # training: random crop of this side

    def problem(self) -> str | None:
        """What is wrong across the fields (None: nothing)."""
        return crop_problem(self.random_crop, self.size)


register_generator("svhn_crop", Generator(SvhnCrop, "svhn", NO_DIGIT + 1))  # ten digits, "none"


@dataclass
class DigitStruct:
    """The parsed ``digitStruct.mat`` of one part.

    names: file name of each image (N,). counts: digits per image ``(N,)``. boxes: one row per
    digit, all images in order, columns ``FIELDS`` (label as stored: 10 is the digit 0)
    ``(counts.sum(), 5)`` float64. Image ``i``'s digits are rows ``offsets[i]:offsets[i + 1]``.
    """

    names: list[str]
    counts: np.ndarray
    boxes: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)])

    def digits(self, i: int) -> np.ndarray:
        """Image ``i``'s digit rows ``(k, 5)``."""
        o = self.offsets
        return self.boxes[o[i] : o[i + 1]]

    def __len__(self) -> int:
        return len(self.names)


def _read(dataset_id, dtype) -> np.ndarray:
    """A whole HDF5 dataset read through the low-level API into a new buffer."""
    buf = np.empty(dataset_id.shape, dtype=dtype)
    dataset_id.read(h5py.h5s.ALL, h5py.h5s.ALL, buf)
    return buf


def read_digit_struct(path: str | Path) -> DigitStruct:
    """Parse a ``digitStruct.mat`` (see the module docstring for its layout).

    Every object reference is dereferenced with h5py's low-level API and read into a
    preallocated buffer: the high-level ``f[ref]`` path builds a Python object per access and is
    several times slower on the 202,353 entries of ``extra`` (``scripts/time_svhn.py``).
    """
    with h5py.File(path, "r") as f:
        fid = f.id
        name_refs = f["digitStruct/name"][:, 0]
        bbox_refs = f["digitStruct/bbox"][:, 0]
        names = []
        for ref in name_refs:  # a column of uint16 character codes
            names.append(_read(h5py.h5r.dereference(ref, fid), np.uint16).ravel().tobytes()
                         .decode("utf-16-le"))  # fmt: skip
        counts = np.empty(len(bbox_refs), np.int64)
        rows: list[np.ndarray] = []
        value = np.empty((1, 1), np.float64)
        for i, ref in enumerate(bbox_refs):
            group = h5py.h5r.dereference(ref, fid)
            fields = [h5py.h5d.open(group, name.encode()) for name in FIELDS]
            k = fields[0].shape[0]
            counts[i] = k
            box = np.empty((k, len(FIELDS)), np.float64)
            for j, field in enumerate(fields):
                if field.get_type().get_class() == h5py.h5t.REFERENCE:  # several digits
                    for d, digit_ref in enumerate(_read(field, h5py.ref_dtype)[:, 0]):
                        h5py.h5r.dereference(digit_ref, fid).read(h5py.h5s.ALL, h5py.h5s.ALL, value)
                        box[d, j] = value[0, 0]
                else:  # one digit: the value inline
                    box[:, j] = _read(field, np.float64).ravel()
            rows.append(box)
    boxes = np.concatenate(rows) if rows else np.empty((0, len(FIELDS)))
    return DigitStruct(names, counts, boxes)


def sequence_labels(labels: np.ndarray, length: int = MAX_DIGITS) -> np.ndarray:
    """Stored digit labels (10 = the digit 0) -> ``(length,)`` int64 classes: digits 0-9,
    then ``NO_DIGIT`` (10) past the number's end. The caller drops numbers longer than
    ``length``."""
    out = np.full(length, NO_DIGIT, np.int64)
    digits = np.asarray(labels, np.int64) % 10
    out[: len(digits)] = digits
    return out


def crop_box(digits: np.ndarray, expand: float = 0.3, loose: float = 1.0) -> tuple[int, ...]:
    """The crop of one image, after Goodfellow et al. (2013): the union of the digit boxes,
    grown by ``expand`` (30%) in x and in y about its centre, then scaled by ``loose`` about the
    same centre (1 for the 64px set, 2 for the loosely cropped 128px set).

    Args:
        digits: ``(k, 5)`` rows ``(label, left, top, width, height)`` in pixels.

    Returns:
        ``(x0, y0, x1, y1)`` integer pixel edges (``x1``, ``y1`` exclusive), rounded to the
        nearest pixel; they may lie outside the image.
    """
    left, top = digits[:, 1].min(), digits[:, 2].min()
    right = (digits[:, 1] + digits[:, 3]).max()
    bottom = (digits[:, 2] + digits[:, 4]).max()
    cx, cy = (left + right) / 2, (top + bottom) / 2
    half_w = (right - left) * (1 + expand) * loose / 2
    half_h = (bottom - top) * (1 + expand) * loose / 2
    return tuple(int(np.floor(v + 0.5)) for v in (cx - half_w, cy - half_h, cx + half_w,
                                                  cy + half_h))  # fmt: skip


def crop_image(image: Image.Image, box: tuple[int, ...], size: int) -> np.ndarray:
    """``image`` cropped to ``box`` (black where the box leaves the image), resized to
    ``size x size`` (bilinear, antialiased): ``(3, size, size)`` uint8 RGB."""
    patch = image.convert("RGB").crop(box).resize((size, size), Image.BILINEAR)
    return np.asarray(patch).transpose(2, 0, 1).copy()


# ---- the original files ------------------------------------------------------------------------


def offline_message(root: Path) -> str:
    return (
        f"the SVHN files are missing from {root} and downloading them failed: put "
        f"train.tar.gz, test.tar.gz and extra.tar.gz from http://ufldl.stanford.edu/housenumbers/ "
        f"(or their extracted train/, test/, extra/ folders) into {root}, or point "
        "paths.svhn_dir=... at the folder that holds them"
    )


def check_archive(root: Path, archive: Path) -> dict:
    """``archive``'s size and MD5, compared with those recorded in ``root/archives.json`` after
    its first successful extraction (SVHN publishes no checksums); ``UserError`` if they
    differ."""
    record_path = root / "archives.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    seen = {"size": archive.stat().st_size, "md5": md5sum(archive)}
    known = record.get(archive.name)
    if known is not None and known != seen:
        raise UserError(
            f"{archive} differs from the copy first extracted (size {seen['size']} vs "
            f"{known['size']}, MD5 {seen['md5']} vs {known['md5']}): delete it to download it "
            f"again, or delete its entry in {record_path} if the new copy is the one to keep"
        )
    return seen


def record_archive(root: Path, archive: Path, seen: dict) -> None:
    record_path = root / "archives.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    if archive.name not in record:
        record[archive.name] = seen
        write_atomic(record_path, json.dumps(record, indent=1, sort_keys=True))


def part_dir(root: str | Path, part: str) -> Path:
    """The extracted folder of ``part`` (train, test or extra), extracting or downloading its
    archive first when needed. The folder appears whole (extracted beside it, then renamed)."""
    if part not in PARTS:
        raise ValueError(f"SVHN part must be one of {PARTS}, got {part!r}")
    root = Path(root)
    folder = root / part
    if (folder / "digitStruct.mat").exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / f"{part}-extract"):
        if (folder / "digitStruct.mat").exists():
            return folder
        archive = root / f"{part}.tar.gz"
        if not archive.exists():
            download_file(URL.format(part=part), archive, offline_message(root))
        seen = check_archive(root, archive)
        extract_folder(archive, folder, "digitStruct.mat")
        record_archive(root, archive, seen)
    return folder


def parsed_digit_struct(folder: Path, cache_dir: str | Path, md5: str) -> DigitStruct:
    """``read_digit_struct`` of ``folder/digitStruct.mat``, parsed once and then read from
    ``cache_dir`` (keyed by ``md5``, the file's MD5)."""
    source = folder / "digitStruct.mat"
    path = Path(cache_dir) / f"svhn-{folder.name}-digitstruct-{md5[:12]}.npz"
    with locked(path):
        if path.exists():
            try:
                with np.load(path) as z:
                    return DigitStruct(list(z["names"]), z["counts"], z["boxes"])
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
                warn(f"the parsed labels {path} are damaged ({type(err).__name__}); parsing "
                     f"{source} again")  # fmt: skip
        try:
            parsed = read_digit_struct(source)
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise UserError(f"{source} is damaged or not SVHN's digitStruct.mat ({err}): "
                            "delete its folder and rerun to extract its archive again") from None
        import io

        buf = io.BytesIO()
        np.savez(buf, names=np.array(parsed.names), counts=parsed.counts, boxes=parsed.boxes)
        write_atomic(path, buf.getvalue())
    return parsed


# ---- preprocessing into stores -----------------------------------------------------------------


class Crops(Dataset):
    """The preprocessed samples of a list of images: ``(image (3, size, size) uint8,
    labels (positions,) int64)``; a DataLoader spreads the decoding over workers."""

    def __init__(self, entries: list[tuple[Path, np.ndarray]], size: int, expand: float,
                 loose: float, positions: int):  # fmt: skip
        self.entries, self.size, self.expand, self.loose = entries, size, expand, loose
        self.positions = positions

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        path, digits = self.entries[i]
        with Image.open(path) as image:
            crop = crop_image(image, crop_box(digits, self.expand, self.loose), self.size)
        return crop, sequence_labels(digits[:, 0], self.positions)

    def source(self, i: int) -> Path:
        return self.entries[i][0]


def entries(folder: Path, struct: DigitStruct, positions: int) -> tuple[list, int]:
    """``(image path, digit rows)`` of the images with at most ``positions`` digits, and how
    many images had more (they are dropped)."""
    keep = [(folder / struct.names[i], struct.digits(i)) for i in range(len(struct))
            if 0 < struct.counts[i] <= positions]  # fmt: skip
    return keep, len(struct) - len(keep)


def svhn_inputs(cfg, root: str | Path) -> tuple[str, dict[str, Path], dict[str, str]]:
    """``(key, folders, md5s)``: the key of the stores made from ``root`` with ``cfg`` (it
    changes with the config and with each part's ``digitStruct.mat``), each part's folder, and
    the MD5 of each part's ``digitStruct.mat``."""
    from .cache import config_key

    p = cfg.params
    parts = list(dict.fromkeys([*p.train_parts, "test"]))
    folders = {part: part_dir(root, part) for part in parts}
    md5s = {part: md5sum(folders[part] / "digitStruct.mat") for part in parts}
    key = config_key({
        "source": "svhn", "size": p.size, "expand": p.expand, "loose": p.loose,
        "train_parts": list(p.train_parts), "validation": p.validation,
        "positions": cfg.positions, "seed": cfg.seed,
        "digitstruct": md5s,
    })  # fmt: skip
    return key, folders, md5s


def prepare_svhn(cfg, root: str | Path, cache_dir: str | Path, workers: int,
                 inputs: tuple | None = None) -> dict:
    """Preprocess SVHN once into stores (``train``, ``val``, ``test``) and return their info
    (``stored.prepared_stores``) with ``dropped`` (per part) and ``dropped_what``.

    ``cfg`` is the dataset config: ``params`` (size, expand, loose, train_parts, validation),
    ``positions`` (the longest number kept) and ``seed`` (which training images are held out
    for validation). Finished stores are reused; a corrupt one is rebuilt.
    """
    from .stored import prepared_stores

    p = cfg.params
    key, folders, md5s = inputs or svhn_inputs(cfg, root)  # (already read: ``inputs``)

    def build() -> tuple[dict, dict]:
        split_entries, dropped = {}, {}
        train = []
        for part in folders:
            struct = parsed_digit_struct(folders[part], cache_dir, md5s[part])
            found, dropped[part] = entries(folders[part], struct, cfg.positions)
            if part == "test":
                split_entries["test"] = found
            else:
                train += found
        if p.validation >= len(train):
            raise UserError(
                f"dataset.params.validation={p.validation}: only {len(train)} training images "
                f"are there; hold out fewer"
            )
        order = np.random.default_rng(cfg.seed).permutation(len(train))
        split_entries["val"] = [train[i] for i in order[: p.validation]]
        split_entries["train"] = [train[i] for i in order[p.validation :]]
        missing = [path for found in split_entries.values() for path, _ in found
                   if not path.exists()]  # fmt: skip
        if missing:
            raise UserError(
                f"{len(missing)} SVHN images listed in digitStruct.mat are missing, e.g. "
                f"{missing[0]}: extract their archive again (delete its folder and rerun)"
            )
        crops = {split: Crops(found, p.size, p.expand, p.loose, cfg.positions)
                 for split, found in split_entries.items()}  # fmt: skip
        return crops, {"dropped": dropped,
                       "dropped_what": f"numbers longer than {cfg.positions} digits"}  # fmt: skip

    return prepared_stores(cache_dir, cfg.name, key, build, workers, (3, p.size, p.size),
                           (cfg.positions,))  # fmt: skip
