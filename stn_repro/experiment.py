"""An experiment: a list of rows (Hydra overrides) times seeds, plus the table it fills.

``run_experiment(cfg, overrides)`` composes each run's config from the command line's
overrides plus the row's, trains (or resumes, or skips) it, then writes the table.
"""

from __future__ import annotations

from omegaconf import DictConfig

from .config import run_dir
from .engine import train_run
from .errors import UserError
from .tables import write_tables

# Command-line keys that choose among an experiment's runs rather than configure them.
SELECTORS = ("row", "seed", "table_only", "run_dir")


def select_rows(cfg: DictConfig) -> list[tuple[int, DictConfig]]:
    rows = list(enumerate(cfg.experiment.rows))
    if cfg.row is None:
        return rows
    chosen = [(i, r) for i, r in rows if str(cfg.row) in (str(i), r.name)]
    if not chosen:
        names = ", ".join(f"{i}={r.name!r}" for i, r in rows)
        raise UserError(f"experiment {cfg.experiment.name} has no row {cfg.row!r}; rows: {names}")
    return chosen


def compose_run(overrides: list[str], row: DictConfig, seed: int) -> DictConfig:
    from hydra import compose

    base = [o for o in overrides if o.split("=")[0].lstrip("+~") not in SELECTORS]
    return compose("config", overrides=[*base, *row.overrides, f"seed={seed}"])


def run_experiment(cfg: DictConfig, overrides: list[str]) -> None:
    """Run the rows x seeds of ``cfg.experiment`` (one row and seed with ``row=``), then write
    its table (all rows: ``table_only=true`` skips training)."""
    exp = cfg.experiment
    rows = select_rows(cfg)
    seeds = [cfg.seed] if cfg.row is not None else list(exp.seeds)
    if not cfg.table_only:
        # Compose every run first, so a bad override stops before any training.
        runs = [(i, row, seed, compose_run(overrides, row, seed)) for i, row in rows
                for seed in seeds]  # fmt: skip
        for i, row, seed, run_cfg in runs:
            meta = {"experiment": exp.name, "table": exp.table, "column": exp.column,
                    "row": row.name, "row_index": i}  # fmt: skip
            where = run_dir(run_cfg, exp.name, row.name)
            print(f"[{exp.name}] {row.name} seed {seed} -> {where}")
            metrics = train_run(run_cfg, where, meta)
            print(f"[{exp.name}] {row.name} seed {seed}: {metrics['test_error']:.2f}% error, "
                  f"{metrics['params']:,} params")  # fmt: skip
    if cfg.row is None or cfg.table_only:
        path = write_tables(cfg.paths.output_dir, exp.table, cfg.schedule.name)
        print(f"[{exp.name}] table written: {path}")
