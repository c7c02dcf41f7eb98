"""Tiny SVHN "format 1" folders for tests: a v7.3-style digitStruct.mat writer, and copies of
the sample's images (``../shared/data/svhn_format1_sample``) under a few hundred names."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from stn_repro.config import PACKAGE_ROOT

SAMPLE = PACKAGE_ROOT.parent / "shared" / "data" / "svhn_format1_sample"


def need_sample() -> Path:
    if not (SAMPLE / "train" / "digitStruct.mat").exists():
        pytest.skip(f"the SVHN sample is absent ({SAMPLE}); it ships beside the project only")
    return SAMPLE


def write_digit_struct(path: Path, entries: list[tuple[str, list[tuple[float, ...]]]]) -> None:
    """Write ``entries`` (file name, digits as (label, left, top, width, height)) the way
    MATLAB v7.3 stores the SVHN struct: references into ``#refs#``, a field's value inline for
    one digit and as references to ``(1, 1)`` values for several."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        count = iter(range(10**9))

        def store(data) -> h5py.Reference:
            return refs.create_dataset(f"r{next(count)}", data=data).ref

        names = np.empty((len(entries), 1), dtype=h5py.ref_dtype)
        boxes = np.empty((len(entries), 1), dtype=h5py.ref_dtype)
        for i, (name, digits) in enumerate(entries):
            names[i, 0] = store(np.array([[ord(c)] for c in name], np.uint16))
            group = refs.create_group(f"g{i}")
            for field in ("height", "label", "left", "top", "width"):
                column = {"label": 0, "left": 1, "top": 2, "width": 3, "height": 4}[field]
                values = [float(d[column]) for d in digits]
                if len(values) == 1:
                    group.create_dataset(field, data=np.array([[values[0]]]))
                else:
                    ids = np.empty((len(values), 1), dtype=h5py.ref_dtype)
                    for k, v in enumerate(values):
                        ids[k, 0] = store(np.array([[v]]))
                    group.create_dataset(field, data=ids)
            boxes[i, 0] = group.ref
        f.create_dataset("digitStruct/name", data=names)
        f.create_dataset("digitStruct/bbox", data=boxes)


def tiny_svhn(root: Path, per_part: int = 40) -> Path:
    """``root/{train,extra,test}``: ``per_part`` images each, copies of the sample's three
    images of that part with their real boxes, plus one 6-digit number per part (dropped)."""
    from stn_repro.data.svhn import read_digit_struct

    sample = need_sample()
    for part in ("train", "extra", "test"):
        struct = read_digit_struct(sample / part / "digitStruct.mat")
        folder = root / part
        folder.mkdir(parents=True)
        entries = []
        for i in range(per_part):
            k = i % 3
            shutil.copy(sample / part / struct.names[k], folder / f"{i + 1}.png")
            entries.append((f"{i + 1}.png", [tuple(row) for row in struct.digits(k)]))
        long_number = [(d % 10 + 1, 2 + 8 * d, 2, 8, 12) for d in range(6)]
        entries.append(("1.png", long_number))  # six digits: dropped
        write_digit_struct(folder / "digitStruct.mat", entries)
    return root
