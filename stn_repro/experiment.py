"""An experiment: a list of rows (Hydra overrides) times seeds, plus the table it fills.

``run_experiment(cfg, overrides)`` composes each run's config from the command line's
overrides plus the row's, runs it (train, resume or skip; or, for Table 5, co-localise), then
records the experiment's finished runs as its column and rewrites the table.

Concurrent launches share the work: a run another process holds (a lock per run directory) is
left for later; once the free runs are done, this launch waits for the held ones and then
finds them finished (or resumes them, if their process died). Under ``torchrun`` all ranks
take the runs in order together, and rank 0 alone takes the locks and writes the table.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack, contextmanager
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from . import distributed
from .config import CONF_DIR, config_hash, model_label, run_dir
from .engine import train_run
from .errors import UserError
from .files import Busy, locked
from .report.tables import table_lock, write_column, write_tables
from .runs import checkpoint_iteration, clear_run, finished_run
from .schema import check_bool_overrides, validate
from .trained import load_trained

# Command-line keys that choose among an experiment's runs rather than configure them.
SELECTORS = ("row", "seed", "table_only", "run_dir", "jobs")
# Command-line settings an experiment shares with the run whose model it reuses (the Table 5
# encoder); the rest (dataset, model, coloc, ...) configure the experiment's own runs.
SHARED = ("paths", "schedule", "device", "progress", "speed")


def key_of(override: str) -> str:
    return override.split("=")[0].lstrip("+~")


def settings_of(overrides: list[str]) -> list[str]:
    """The command line's overrides that change what a column's runs compute (data, model,
    schedule keys, co-localisation: ``identity``'s groups; the schedule's name titles the
    table), which its table names beside the column."""
    groups = ("dataset", "model", "schedule", "coloc")
    return [o for o in overrides
            if key_of(o) != "schedule" and re.split(r"[./]", key_of(o))[0] in groups]  # fmt: skip


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


def compose_run(overrides: list[str], row: DictConfig, seed: int) -> DictConfig:
    """The run's config, validated: the command line's overrides (less the selectors), the
    row's, the seed, the experiment's own schedule of the chosen name (``schedules``), then the
    experiment's and the row's overrides for that schedule (``per_schedule``), less any key
    the command line sets itself: the command line wins."""
    from hydra import compose

    given = [o for o in overrides if key_of(o) not in SELECTORS]
    run = [*given, *row.overrides, f"seed={seed}"]
    cfg = compose("config", overrides=run)
    chosen = [o.split("=", 1)[1] for o in run if key_of(o) == "schedule"]
    own = own_schedule(cfg.experiment, chosen[-1] if chosen else None, cfg.schedule.name)
    name = cfg.schedule.name
    extra = [*(cfg.experiment.get("per_schedule", {}).get(name) or []),
             *(row.get("per_schedule", {}).get(name) or [])]  # fmt: skip
    keys = {key_of(g) for g in given}
    extra = [o for o in extra if key_of(o) not in keys]
    if own:
        run = [*(o for o in run if key_of(o) != "schedule"), *own]
    check_bool_overrides([*row.overrides, *extra])  # the table's own, as the command line's
    return validate(compose("config", overrides=[*run, *extra]) if own or extra else cfg)


MNIST_ONLY = {"cpu": "the CPU recipe of the MNIST tables (1 and 4; Table 5 reads its encoders)"}
"""Shared schedule options made for the MNIST experiments only: an experiment with schedules of
its own (``experiment.schedules``: SVHN, CUB, GTSRB) refuses them rather than train with them."""


def own_schedule(exp: DictConfig, chosen: str | None, name: str) -> list[str]:
    """``[schedule=<option>]`` when the experiment has a schedule of its own named ``name``
    (``experiment.schedules``, e.g. fast -> fast_gtsrb) and the command line did not pick it,
    else ``[]``. ``chosen`` is the ``schedule=`` option given (None: the default); another
    table's own (``paper_svhn`` for GTSRB, or for Table 1) is refused, as is an ``MNIST_ONLY``
    option where the experiment has schedules of its own."""
    schedules = dict(exp.get("schedules") or {})
    names = ", ".join(k if v == k else f"{k} ({v})" for k, v in schedules.items())  # its own
    if schedules and name in MNIST_ONLY and name not in schedules:
        raise UserError(
            f"schedule={name} is {MNIST_ONLY[name]}; experiment {exp.name} has schedules of its "
            f"own: {names}, or smoke"
        )
    target = schedules.get(name, name)
    if chosen is None or chosen == name:
        return [] if target == name else [f"schedule={target}"]
    owner = schedule_owners().get(chosen)
    if chosen != target and owner is not None:
        raise UserError(
            f"schedule={chosen} is the {name!r} schedule of {owner}, not of experiment "
            f"{exp.name}" + (f" (its own: {names})" if names else "")
            + f": write schedule={name}"
        )
    return []  # the table's own option named directly, or a schedule file of the user's


@cache
def schedule_owners() -> dict[str, str]:
    """Schedule option -> the experiments that name it as their own (``experiment.schedules``
    of ``conf/experiment/*.yaml``), e.g. ``paper_gtsrb`` -> ``gtsrb, gtsrb_26epochs``."""
    owners: dict[str, list[str]] = {}
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        own = OmegaConf.load(path).get("experiment", {}).get("schedules") or {}
        for name, option in own.items():
            if option != name:
                owners.setdefault(option, []).append(path.stem)
    return {option: ", ".join(names) for option, names in owners.items()}


def meta(exp: DictConfig, index: int, row: DictConfig) -> dict:
    """What a run's metrics.json records of its place in a table."""
    return {"experiment": exp.name, "table": exp.table, "column": exp.column, "row": row.name,
            "row_index": index}  # fmt: skip


class Run:
    """One row x seed of an experiment: its config and directory."""

    def __init__(self, exp: DictConfig, index: int, row: DictConfig, seed: int, cfg: DictConfig):
        self.exp, self.index, self.row, self.seed, self.cfg = exp, index, row, seed, cfg
        self.where: Path = run_dir(cfg, exp.name, row.name)
        self.label = f"[{exp.name}] {row.name} seed {seed}"

    @property
    def meta(self) -> dict:
        return meta(self.exp, self.index, self.row)


def row_run_dirs(overrides: list[str], seed: int) -> tuple[DictConfig, dict[str, Path]]:
    """The experiment ``overrides`` choose (``experiment=...``) and, per row, the directory
    its run of ``seed`` trains in: the row's composed config (the command line's, the row's and
    the schedule's settings) names it, so runs of other configs beside it are never read.
    Hydra must be initialised (``schema.hydra_initialised``)."""
    from hydra import compose

    exp = compose("config", overrides=overrides).experiment
    return exp, {row.name: run_dir(compose_run(overrides, row, seed), exp.name, row.name)
                 for row in exp.rows}  # fmt: skip


def train_encoder(cfg: DictConfig, overrides: list[str]):
    """Train (or reuse, when finished) the run ``cfg.experiment.encoder`` names, e.g. the
    Table 1 CNN of the R column, and return its model. Of the command line, only the
    ``SHARED`` settings (paths, schedule, device, progress) reach that run."""
    from hydra import compose

    spec = cfg.experiment.encoder
    base = [*[o for o in overrides if key_of(o).split(".")[0] in SHARED],
            f"experiment={spec.experiment}"]  # fmt: skip
    exp = compose("config", overrides=base).experiment
    [(index, row)] = select_rows(exp, spec.row)
    enc = Run(exp, index, row, spec.seed, compose_run(base, row, spec.seed))
    print(f"[{cfg.experiment.name}] encoder: {enc.label} -> {enc.where}")
    with locked(enc.where):
        train_run(enc.cfg, enc.where, enc.meta)
    return load_trained(enc.cfg, enc.where)


def run_experiment(cfg: DictConfig, overrides: list[str]) -> None:
    """Run the rows x seeds of ``cfg.experiment`` (one row and seed with ``row=``), then write
    its table (all rows: ``table_only=true`` skips training)."""
    exp = cfg.experiment
    if cfg.run_dir is not None:
        raise UserError(
            "run_dir= names the directory of one ad-hoc run; an experiment places its runs "
            "itself: drop run_dir= (paths.output_dir=... moves them all)"
        )
    given = {key_of(o) for o in overrides}  # the keys the command line sets
    if cfg.row is None and "seed" in given:
        raise UserError(
            f"seed={cfg.seed} without row= would be ignored: add row=<name or index> to run "
            f"one row with that seed, or replace seed={cfg.seed} with "
            f"experiment.seeds=[{cfg.seed}] to run every row with it"
        )
    if cfg.row is not None and "seed" not in given and len(exp.seeds) > 1:
        print(f"[{exp.name}] row={cfg.row} trains seed {cfg.seed} only (seed=...); the table "
              f"plans seeds {list(exp.seeds)}: -m experiment={exp.name} row={cfg.row} "
              f"seed={','.join(map(str, exp.seeds))} trains them all")  # fmt: skip
    rows = select_rows(exp, cfg.row)
    # Compose every run (the table's and this launch's) first: a bad override stops here.
    table = [Run(exp, i, row, s, compose_run(overrides, row, s))
             for i, row in enumerate(exp.rows) for s in exp.seeds]  # fmt: skip
    todo = table
    if cfg.row is not None:
        todo = [
            Run(exp, i, row, cfg.seed, compose_run(overrides, row, cfg.seed)) for i, row in rows
        ]
        if cfg.seed not in exp.seeds:
            print(f"[{exp.name}] seed {cfg.seed} is not in experiment.seeds {list(exp.seeds)}: "
                  "it is trained but the table leaves it out")  # fmt: skip
    try:
        if not cfg.table_only:
            with helpers(cfg, overrides, todo):
                run_all(cfg, overrides, todo, lambda: write_table(cfg, table, overrides))
    finally:  # a stopped experiment writes its table too, unfinished cells shown as such
        if distributed.ranks().main:
            write_table(cfg, table, overrides)


def write_table(cfg: DictConfig, table: list[Run], overrides: list[str]) -> None:
    """Record the experiment's column (finished runs, every run's progress, the command line's
    settings) and rewrite its table for this schedule."""
    exp, out = cfg.experiment, cfg.paths.output_dir
    with table_lock(out, exp.table):
        finished, cells = [], []
        for run in table:
            chash = config_hash(run.cfg)
            done = finished_run(run.where, chash)
            if done is not None:
                finished.append(done)
            length = run_length(run.cfg)[0]  # what "iteration" counts to
            cells.append({"row": run.row.name, "seed": run.seed,
                          "iterations": int(run.cfg.schedule.iterations),
                          "batch": int(run.cfg.schedule.batch_size),
                          "length": length,
                          "iteration": length if done is not None
                          else checkpoint_iteration(run.where, chash)})  # fmt: skip
        write_column(out, exp, cfg.schedule.name, finished, cells, settings_of(overrides))
        path = write_tables(out, exp.table, cfg.schedule.name)
    print(f"[{exp.name}] table written: {path} ({len(finished)} of {len(table)} runs finished)")


@contextmanager
def helpers(cfg: DictConfig, overrides: list[str], runs: list[Run]):
    """With ``jobs=N`` > 1: up to N - 1 more processes of this command (with ``jobs=1``),
    started now, sharing ``runs`` through the run locks (``run_all``); waited for at the end,
    stopped (each saves a checkpoint) if this one stops first. With ``overwrite=true`` the runs
    are cleared here once, before any process starts, and then run without it."""
    count = min(cfg.jobs, len(runs)) - 1
    if count < 1:
        yield
        return
    if distributed.ranks().several:
        raise UserError("jobs= starts processes of its own; under torchrun leave it out")
    if cfg.overwrite:
        for run in runs:
            with locked(run.where):
                clear_run(run.where)
            run.cfg.overwrite = False
    given = [o for o in overrides if key_of(o) not in ("jobs", "overwrite")]
    command = [sys.executable, "-m", "stn_repro.cli", *given, "jobs=1", "overwrite=false"]
    procs = [subprocess.Popen(command) for _ in range(count)]
    try:
        yield
    except BaseException:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        raise
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for k, proc in enumerate(procs, 1):
        if proc.returncode:
            print(f"[{cfg.experiment.name}] helper process {k} of jobs={cfg.jobs} exited with "
                  f"status {proc.returncode}; its runs were finished here")  # fmt: skip


STOP_WAIT_S = 300  # how long a helper may take to save its checkpoint and stop


def run_all(cfg: DictConfig, overrides: list[str], runs: list[Run],
            trained: Callable[[], None] = lambda: None) -> None:  # fmt: skip
    """Run each run whose lock is free, then wait for (and finish) those others held; after
    each run this launch trained, ``trained()`` (the experiment rewrites its table)."""
    coloc = co_localises(cfg)
    where = distributed.ranks()
    if coloc and where.several:
        raise UserError(f"{cfg.experiment.name} co-localises (no training loop to share): run "
                        "it as one process, without torchrun")  # fmt: skip
    if coloc:
        from .coloc import colocalise_run

        head = train_encoder(cfg, overrides).head

    say = print if where.main else lambda *_: None  # once, not once per rank
    clock = Clock(runs, [r for r in runs if (r.where / "metrics.json").exists()])  # an estimate

    def run_one(run: Run) -> None:
        chash = config_hash(run.cfg)
        done = finished_run(run.where, chash)
        start = 0 if done is not None else checkpoint_iteration(run.where, chash)
        end = run_length(run.cfg)[0]
        state = ("skipped: finished" if done is not None else
                 f"resumed from iteration {start:,} of {end:,}" if start else "new")  # fmt: skip
        tic = time.perf_counter()
        say(f"{clock.place(run)}: {state} -> {run.where}")
        if coloc:
            metrics = colocalise_run(run.cfg, run.where, head, run.meta)
            result = f"{metrics['localised_pct']:.0f}% localised"
        else:
            metrics = train_run(run.cfg, run.where, run.meta)
            result = f"{metrics['test_error']:.2f}% error"
        took = clock.done(run, time.perf_counter() - tic, trained=done is None, start=start)
        say(f"{clock.place(run)}: {result}, {metrics['params']:,} params, {took}"
            f"{clock.eta()}")  # fmt: skip
        if done is None and where.main:
            trained()  # the table shows it now, not only when the launch ends

    held = []
    for run in runs:
        with run_lock(run.where, where, wait=False) as free:
            if free:
                run_one(run)
        if not free:
            say(f"{clock.place(run)}: another process is running it; coming back to it")
            held.append(run)
    for run in held:
        with run_lock(run.where, where, wait=True):
            run_one(run)


def co_localises(cfg: DictConfig) -> bool:
    """Whether ``cfg``'s experiment co-localises (Table 5) rather than trains a classifier."""
    return cfg.get("experiment", {}).get("runner", "classify") == "coloc"


def run_length(cfg: DictConfig) -> tuple[int, int]:
    """(iterations in all, images per iteration) of a run, as its checkpoint counts them: a
    co-localisation's ``coloc.starts`` optimisations of ``coloc.iterations`` steps each
    (counted as one image a step: the clock compares a model only with itself), else the
    schedule's iterations of ``batch_size``."""
    if co_localises(cfg):
        return int(cfg.coloc.iterations) * int(cfg.coloc.get("starts", 1)), 1
    return int(cfg.schedule.iterations), int(cfg.schedule.batch_size)


class Clock:
    """Where a launch is in its runs (``run k of N``) and about how long the rest will take,
    from the seconds per training image of each model this launch has trained (models cost
    20-30x apart per image; one not yet trained here is reckoned at the launch's average).
    Runs ``finished`` before the launch are not counted as left."""

    def __init__(self, runs: list[Run], finished: Iterable[Run] = ()):
        self.runs = runs
        self.left = {id(run) for run in runs} - {id(run) for run in finished}
        self.spent: dict[str, list[float]] = {}  # model -> [seconds, images] trained here

    def place(self, run: Run) -> str:
        k = next(i for i, r in enumerate(self.runs, 1) if r is run)
        return f"[{run.exp.name}] run {k} of {len(self.runs)}: {run.row.name} seed {run.seed}"

    @staticmethod
    def images_of(run: Run, start: int = 0) -> int:
        iterations, per_iteration = run_length(run.cfg)
        return (iterations - start) * per_iteration

    def done(self, run: Run, seconds: float, trained: bool, start: int) -> str:
        """Note ``run`` as done; return how long it took here."""
        self.left.discard(id(run))
        if not trained:
            return "already finished"
        spent = self.spent.setdefault(model_label(run.cfg), [0.0, 0.0])
        spent[0] += seconds
        spent[1] += self.images_of(run, start)
        return f"{seconds / 60:.1f} min"

    def eta(self) -> str:
        """``; N runs left, about M min (...)`` (nothing before a run has trained)."""
        rest = [r for r in self.runs if id(r) in self.left]
        if not rest or not self.spent:
            return ""
        average = [sum(s[0] for s in self.spent.values()), sum(s[1] for s in self.spent.values())]
        untimed = sum(model_label(r.cfg) not in self.spent for r in rest)

        def seconds(run: Run) -> float:
            spent, images = self.spent.get(model_label(run.cfg), average)
            return self.images_of(run) * spent / max(images, 1)

        minutes = sum(map(seconds, rest)) / 60
        runs = f"{len(rest)} run" + ("s" if len(rest) > 1 else "")
        basis = "each model's speed so far" + (
            f"; {untimed} of them on models not yet timed, at the average" if untimed else "")
        return f"; {runs} left, about {max(minutes, 1):.0f} min ({basis})"


POLL_S = 30  # how often ranks waiting together for a held run try its lock again


@contextmanager
def run_lock(path: Path, where: distributed.Ranks, wait: bool):
    """Hold the run's lock (``files.locked``; several ranks: rank 0 holds it for all) and
    yield True, or yield False at once when another launch holds it and ``wait`` is false.
    Several ranks waiting poll it together, so none sits in a collective meanwhile."""
    with ExitStack() as stack:
        while True:
            free = True
            if where.main:
                try:
                    stack.enter_context(locked(path, wait=wait and not where.several))
                except Busy:
                    free = False
            free = distributed.from_main(free, where)
            if free or not wait:
                break
            time.sleep(POLL_S)
        yield free
