"""What the finished runs of one schedule learnt: the pose table, the paper's figures and
training animations (``python scripts/analyse.py``, part of ``make report``).

Writes, under ``output_dir``: ``tables/pose.{md,csv}`` (``pose``: every finished ST run of
Table 1 R, RTS, P and of Table 4), and under ``figures/``: ``table1_<column>.png`` (Table 1
right: ST-CNN Aff against the CNN of its column), ``table4.png`` (Table 4 right), ``fig5_3d.png``,
``table2_svhn.png``, ``gtsrb.png``, ``table3_cub.png``, ``fig4_coloc_{t,tc}.{png,gif}`` (digit 0's
co-localisation over its steps), and ``animation_<experiment>_<row>.gif``
for each run that kept snapshots of a transformer. Every PNG also goes to TensorBoard
(``figures/tb``). A figure whose runs are not finished is skipped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..config import runs_dir, slug
from ..errors import UserError
from ..files import write_json
from .figures import (
    addition_figure,
    coloc_figure,
    cub_figure,
    gtsrb_figure,
    svhn_figure,
    table1_figure,
    training_animation,
    volume_figure,
)
from .pose import finished_runs, measure_run, write_pose_table

TABLE1 = {"table1_r": "r", "table1_rts": "rts", "table1_p": "p", "table1_e": "e",
          "table1_tc": "tc"}  # fmt: skip
# (experiment, row, figure function, file name): figures of one run.
ONE_RUN = [
    ("table4_addition", "2xST-FCN TPS", addition_figure, "table4.png"),
    ("fig_3d", "3D ST-CNN", volume_figure, "fig5_3d.png"),
    ("table2_svhn64", "ST-CNN Multi", svhn_figure, "table2_svhn.png"),
    ("gtsrb", "CNN + 2 ST", gtsrb_figure, "gtsrb.png"),
    ("table3_cub", "4xST-CNN (448px)", cub_figure, "table3_cub.png"),
    ("table5_coloc_t", "0", coloc_figure, "fig4_coloc_t.png"),
    ("table5_coloc_tc", "0", coloc_figure, "fig4_coloc_tc.png"),
]
# Rows whose training is animated, per experiment.
ANIMATED = {**{e: ["ST-CNN Aff", "ST-FCN Aff"] for e in TABLE1},
            "table4_addition": ["2xST-FCN Aff", "2xST-FCN TPS"]}  # fmt: skip


def first_run(output_dir: Path, experiment: str, schedule: str, row: str) -> Path | None:
    """The finished run of ``row`` with the lowest seed (the newest, if an edited config left
    older ones), or None."""
    found = runs_dir(output_dir, experiment, schedule, row).glob("*/seed*/metrics.json")
    found = sorted(found, key=lambda p: (int(p.parent.name[4:]), -p.stat().st_mtime))
    return found[0].parent if found else None


def analyse(output_dir: str | Path, schedule: str) -> list[Path]:
    """Write the pose table and every figure the finished runs allow; return their paths."""
    out = Path(output_dir)
    rows = [row for run in finished_runs(out, schedule) for row in measure_run(run)]
    written = [write_pose_table(rows, out, schedule)]
    figures = out / "figures"
    drawings = []  # (what, draw): each figure whose runs are finished
    skipped = []  # (figure, why not drawn)

    def missing(name: str, experiment: str, row: str) -> None:
        skipped.append((name, f"no finished {row} run of {experiment} with `{schedule}`"))

    for experiment, column in TABLE1.items():
        st, cnn = (first_run(out, experiment, schedule, r) for r in ("ST-CNN Aff", "CNN"))
        path = figures / f"table1_{column}.png"
        if st and cnn and st.name == cnn.name:  # the same seed
            drawings.append((path, lambda st=st, cnn=cnn, path=path: table1_figure(st, cnn, path)))
        else:
            missing(path.name, experiment, "ST-CNN Aff and CNN (same seed)")
    for experiment, row, draw, name in ONE_RUN:
        if run := first_run(out, experiment, schedule, row):
            drawings.append((figures / name, lambda d=draw, r=run, n=name: d(r, figures / n)))
        else:
            missing(name, experiment, row)
    for experiment, names in ANIMATED.items():
        for row in names:
            run = first_run(out, experiment, schedule, row)
            gif = figures / f"animation_{experiment}_{slug(row)}.gif"
            if run and (run / "snapshots").is_dir():
                drawings.append((gif, lambda r=run, g=gif: training_animation(r, g)))
            elif run:
                skipped.append((gif.name, f"{run} kept no weight snapshots"))
            else:
                missing(gif.name, experiment, row)
    for path, draw in drawings:
        try:
            written.append(draw())
        except UserError as err:  # e.g. no digit the ST-CNN gets right and the CNN wrong
            print(f"{path.name} skipped: {err}")
            skipped.append((path.name, str(err)))
    figures.mkdir(parents=True, exist_ok=True)
    write_json(figures / "skipped.json", {"schedule": schedule, "skipped": skipped})
    to_tensorboard([p for p in written if p.suffix == ".png"], figures / "tb")
    return written


def to_tensorboard(pictures: list[Path], log_dir: Path) -> None:
    """Each PNG as an image of its own name in one TensorBoard log."""
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(log_dir, ignore_errors=True)  # each figure once, as drawn now
    with SummaryWriter(str(log_dir)) as writer:
        for picture in pictures:
            pixels = np.asarray(Image.open(picture).convert("RGB"))
            writer.add_image(f"figures/{picture.stem}", pixels, 0, dataformats="HWC")
