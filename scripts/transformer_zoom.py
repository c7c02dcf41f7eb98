"""How far a finished run's spatial transformer zooms, and how large the digit is in its output.

    python scripts/transformer_zoom.py RUN_DIR [RUN_DIR ...]

For each transformer (the run's first spatial transformer module; two for 2xST models), over
the run's test images: its magnification at the output's centre (``1 / sqrt|det J|`` of its
output -> input map; above 1 it zooms in), and per input channel the side of the upright
digit's 28x28 frame as a fraction of the output's side (1: the frame fills the output), mean
and sd. Reads the distortion each test image was generated with, so it applies to the
generators the pose measure knows (R, RTS, P, Table 4's pairs; ``stn_repro/report/pose.py``).
"""

from __future__ import annotations

import argparse

from omegaconf import OmegaConf

from stn_repro.report.pose import magnification, measured, transforms_on_test
from stn_repro.trained import load_run


def zoom_rows(found) -> list[str]:
    """Printed lines for ``transforms_on_test``'s ``[(T, [D per channel])]``."""
    lines = []
    for k, (t, ds) in enumerate(found, start=1):
        m = magnification(t)
        lines.append(f"  transformer {k}: magnification {m.mean():.3f} +- {m.std():.3f}")
        for channel, d in enumerate(ds):
            side = magnification(d @ t)  # output -> digit: the frame's side over the output's
            lines.append(f"    channel {channel}: digit frame / output side "
                         f"{side.mean():.3f} +- {side.std():.3f}")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finished run directories")
    for run in parser.parse_args().runs:
        cfg = OmegaConf.load(f"{run}/config.yaml")
        print(run)
        if not measured(cfg.dataset.generator):
            print(f"  its generator {cfg.dataset.generator!r} keeps no distortions to measure by")
            continue
        model, feed = load_run(run)
        print("\n".join(zoom_rows(transforms_on_test(model, feed, cfg.dataset))
                        or ["  no spatial transformer"]))  # fmt: skip


if __name__ == "__main__":
    main()
