"""Table 5 ablation: the paper's text, it plus each ingredient, the recipe, the recipe less each.

    python scripts/coloc_ablation.py [--digits 0 3 8] [--seeds 1] [--columns T TC]
                                     [--variants NAME ...] [OVERRIDE=VALUE ...]

e.g. `python scripts/coloc_ablation.py schedule=fast` (the default digits 0 3 8, seed 1, T and
TC). Runs go to outputs/runs/table5_ablation/ (finished ones are reused), the table to
outputs/tables/table5_ablation.{md,csv}. Variants: stn_repro/coloc_ablation.py (VARIANTS).
"""

import argparse
import sys

from hydra import compose

from stn_repro.coloc_ablation import COLUMNS, VARIANTS, run_ablation, write_ablation
from stn_repro.schema import hydra_initialised

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, nargs="+", default=[0, 3, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--columns", nargs="+", default=list(COLUMNS), choices=list(COLUMNS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        metavar="NAME")
    # Hydra overrides (KEY=VALUE) may stand anywhere on the line, e.g. schedule=fast.
    overrides = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
    args = parser.parse_args([a for a in sys.argv[1:] if a not in overrides])
    with hydra_initialised():
        cfg = compose("config", overrides=[*overrides, "experiment=table5_coloc_t"])
        results = run_ablation(overrides, args.variants, args.columns, args.digits,
                               args.seeds)  # fmt: skip
        print(write_ablation(cfg.paths.output_dir, results, cfg.schedule.name))
