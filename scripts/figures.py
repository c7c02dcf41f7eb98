"""Draw a figure from a finished run.

    python scripts/figures.py addition RUN_DIR [--out outputs/figures/addition.png]
    python scripts/figures.py 3d RUN_DIR [--out outputs/figures/fig5_3d.png]
    python scripts/figures.py svhn RUN_DIR [--out outputs/figures/table2_svhn.png]
    python scripts/figures.py gtsrb RUN_DIR [--out outputs/figures/gtsrb.png]
    python scripts/figures.py cub RUN_DIR [--out outputs/figures/table3_cub.png]
    python scripts/figures.py coloc RUN_DIR [--out outputs/figures/fig4_coloc.png]

addition: a Table 4 run with transformers (e.g. 2xST-FCN): each transformer's output per
channel. 3d: a fig_3d run of the 3D ST-CNN: input projections and the transformer's output.
svhn: a Table 2 ST-CNN run: the transformers' affine transforms multiplied out and drawn on the
input crop (the paper's Table 2, right), then each transformer's output. gtsrb: a GTSRB run with
transformers: per test sign, the input, the first transformer's grid on it and its output.
cub: a Table 3 ST run: each transformer's window on test images, and the windows' centres over
the test set (``*_centres.png``). coloc: a Table 5 run: its window (red; the true box green) on
three of its images at four logged steps (the paper's Fig. 4), and the same as a GIF.
"""

import argparse

from stn_repro.report.figures import (
    addition_figure,
    coloc_figure,
    cub_figure,
    gtsrb_figure,
    svhn_figure,
    volume_figure,
)

FIGURES = {
    "addition": (addition_figure, "outputs/figures/addition.png"),
    "3d": (volume_figure, "outputs/figures/fig5_3d.png"),
    "svhn": (svhn_figure, "outputs/figures/table2_svhn.png"),
    "gtsrb": (gtsrb_figure, "outputs/figures/gtsrb.png"),
    "cub": (cub_figure, "outputs/figures/table3_cub.png"),
    "coloc": (coloc_figure, "outputs/figures/fig4_coloc.png"),
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=sorted(FIGURES))
    parser.add_argument("run_dir")
    parser.add_argument("--out")
    parser.add_argument("--examples", type=int, help="examples shown (coloc: steps shown); "
                        "default: the figure's own (6 or 8; coloc 4)")
    args = parser.parse_args()
    draw, default_out = FIGURES[args.figure]
    draw(args.run_dir, args.out or default_out, *([args.examples] if args.examples else []))
