"""A run's life, the same for training and co-localisation: skip it when finished, resume it
from its checkpoint, keep what the terminal shows (``log.txt``), write ``config.yaml``, log to
TensorBoard (``tb/``), save checkpoints and end with ``metrics.json`` (written last, atomically:
a run is finished when it exists).

``live(cfg, run_dir, body)`` returns a finished run's metrics, or calls ``body(life)`` with a
:class:`RunLife` to train it and returns what ``life.finish`` wrote. Under ``torchrun`` every
process lives the same run: rank 0 writes, the others compute and log to nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from . import distributed
from .config import config_hash
from .distributed import ALONE, Ranks
from .files import write_atomic, write_json
from .runs import clear_run, code_version, finished_metrics, load_checkpoint, save_checkpoint
from .terminal import teed


class NoWriter:
    """What ranks other than 0 log to: nothing (every SummaryWriter method does nothing)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


class Clock:
    """Training seconds across resumes: those the resumed checkpoint had counted plus this
    launch's since the clock was made (periodic evaluations included)."""

    def __init__(self, before: float = 0.0):
        self.before, self.tic = before, time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.tic


class RunLife:
    """One unfinished run's files. ``data_key`` names the original files a run reads (None:
    generated data): a checkpoint or result made from other files is refused."""

    def __init__(self, cfg: DictConfig, run_dir: Path, where: Ranks = ALONE,
                 data_key: str | None = None):  # fmt: skip
        self.cfg, self.run_dir, self.where, self.data_key = cfg, Path(run_dir), where, data_key
        self.chash = config_hash(cfg)
        self.writer = NoWriter()

    def finished(self) -> dict | None:
        """The metrics of this run when it is finished (``overwrite=true``: cleared first)."""
        if self.cfg.get("overwrite") and self.where.main:
            clear_run(self.run_dir)
        distributed.barrier(self.where)  # rank 0 holds the run's lock (and has cleared it)
        return finished_metrics(self.run_dir, self.cfg, self.chash, self.data_key)

    def resume(self) -> dict | None:
        """The newest intact checkpoint of this run, or None (see ``runs.load_checkpoint``)."""
        return load_checkpoint(self.run_dir, self.cfg, self.chash, self.data_key)

    def start(self, step: int):
        """Write ``config.yaml`` and open the TensorBoard writer (rank 0; others get a
        :class:`NoWriter`), dropping events logged after ``step``, the checkpoint resumed."""
        if self.where.main:
            write_atomic(self.run_dir / "config.yaml", OmegaConf.to_yaml(self.cfg, resolve=True))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"),
                                        purge_step=step + 1 if step else None)  # fmt: skip
        return self.writer

    def save(self, state: dict) -> None:
        """Checkpoint ``state`` (rank 0), stamped with the run's config, data and code; every
        rank waits until it is written (and only then may stop)."""
        if self.where.main:
            save_checkpoint(self.run_dir, {"config_hash": self.chash, "data_key": self.data_key,
                                           "code": code_version(), **state})  # fmt: skip
        distributed.barrier(self.where)

    def finish(self, metrics: dict) -> dict:
        """Close the writer and write ``metrics.json`` (rank 0), stamped like a checkpoint;
        return it as written."""
        self.writer.close()
        finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        metrics = {**metrics, "config_hash": self.chash, "data_key": self.data_key,
                   "code": code_version(), "finished": finished}  # fmt: skip
        if self.where.main:
            metrics = write_json(self.run_dir / "metrics.json", metrics)
        distributed.barrier(self.where)  # the run is finished for every rank
        return metrics


def live(cfg: DictConfig, run_dir: str | Path, body: Callable[[RunLife], dict],
         where: Ranks = ALONE, data_key: str | None = None) -> dict:  # fmt: skip
    """The metrics of the run ``cfg``: read when it is finished, else ``body(life)``'s, with
    what the terminal shows meanwhile kept in ``run_dir/log.txt``."""
    life = RunLife(cfg, Path(run_dir), where, data_key)
    done = life.finished()
    if done is not None:
        return done
    with teed(life.run_dir / "log.txt") if where.main else nullcontext():
        return body(life)
