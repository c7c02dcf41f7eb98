"""An experiment: a list of rows (Hydra overrides) times seeds, plus the table it fills.

``run_experiment(cfg, overrides)`` composes each run's config from the command line's
overrides plus the row's, runs it (train, resume or skip; or, for Table 5, co-localise), then
writes the table.
"""

from __future__ import annotations

from omegaconf import DictConfig

from .config import run_dir
from .engine import load_trained, train_run
from .errors import UserError
from .tables import write_tables

# Command-line keys that choose among an experiment's runs rather than configure them.
SELECTORS = ("row", "seed", "table_only", "run_dir")
# Command-line settings an experiment shares with the run whose model it reuses (the Table 5
# encoder); the rest (dataset, model, coloc, ...) configure the experiment's own runs.
SHARED = ("paths", "schedule", "device", "progress")


def select_rows(exp: DictConfig, row) -> list[tuple[int, DictConfig]]:
    """All rows, or the one named (or numbered) ``row``."""
    rows = list(enumerate(exp.rows))
    if row is None:
        return rows
    chosen = [(i, r) for i, r in rows if str(row) in (str(i), r.name)]
    if not chosen:
        names = ", ".join(f"{i}={r.name!r}" for i, r in rows)
        raise UserError(f"experiment {exp.name} has no row {row!r}; rows: {names}")
    return chosen


def base_overrides(overrides: list[str]) -> list[str]:
    return [o for o in overrides if o.split("=")[0].lstrip("+~") not in SELECTORS]


def compose_run(overrides: list[str], row: DictConfig, seed: int) -> DictConfig:
    """The run's config: the command line's overrides (less the selectors), the row's, the
    seed, and the experiment's own overrides for the chosen schedule (``per_schedule``)."""
    from hydra import compose

    run = [*base_overrides(overrides), *row.overrides, f"seed={seed}"]
    cfg = compose("config", overrides=run)
    extra = cfg.experiment.get("per_schedule", {}).get(cfg.schedule.name)
    return compose("config", overrides=[*run, *extra]) if extra else cfg


def meta(exp: DictConfig, index: int, row: DictConfig) -> dict:
    """What a run's metrics.json records of its place in a table."""
    return {"experiment": exp.name, "table": exp.table, "column": exp.column, "row": row.name,
            "row_index": index}  # fmt: skip


def train_encoder(cfg: DictConfig, overrides: list[str]):
    """Train (or reuse, when finished) the run ``cfg.experiment.encoder`` names, e.g. the
    Table 1 CNN of the R column, and return its model. Of the command line, only the
    ``SHARED`` settings (paths, schedule, device, progress) reach that run."""
    from hydra import compose

    spec = cfg.experiment.encoder
    shared = [o for o in overrides if o.split("=")[0].lstrip("+~").split(".")[0] in SHARED]
    base = [*shared, f"experiment={spec.experiment}"]
    exp = compose("config", overrides=base).experiment
    [(index, row)] = select_rows(exp, spec.row)
    enc_cfg = compose_run(base, row, spec.seed)
    where = run_dir(enc_cfg, exp.name, row.name)
    print(f"[{cfg.experiment.name}] encoder: {exp.name} {row.name} seed {spec.seed} -> {where}")
    train_run(enc_cfg, where, meta(exp, index, row))
    return load_trained(enc_cfg, where)


def run_experiment(cfg: DictConfig, overrides: list[str]) -> None:
    """Run the rows x seeds of ``cfg.experiment`` (one row and seed with ``row=``), then write
    its table (all rows: ``table_only=true`` skips training)."""
    exp = cfg.experiment
    rows = select_rows(exp, cfg.row)
    seeds = [cfg.seed] if cfg.row is not None else list(exp.seeds)
    if not cfg.table_only:
        # Compose every run first, so a bad override stops before any training.
        runs = [(i, row, seed, compose_run(overrides, row, seed)) for i, row in rows
                for seed in seeds]  # fmt: skip
        coloc = exp.get("runner", "classify") == "coloc"
        if coloc:
            from .coloc import colocalise_run

            head = train_encoder(cfg, overrides).head
        for i, row, seed, run_cfg in runs:
            where = run_dir(run_cfg, exp.name, row.name)
            print(f"[{exp.name}] {row.name} seed {seed} -> {where}")
            if coloc:
                metrics = colocalise_run(run_cfg, where, head, meta(exp, i, row))
                result = f"{metrics['localised_pct']:.0f}% localised"
            else:
                metrics = train_run(run_cfg, where, meta(exp, i, row))
                result = f"{metrics['test_error']:.2f}% error"
            print(f"[{exp.name}] {row.name} seed {seed}: {result}, {metrics['params']:,} params")
    if cfg.row is None or cfg.table_only:
        path = write_tables(cfg.paths.output_dir, exp.table, cfg.schedule.name)
        print(f"[{exp.name}] table written: {path}")
