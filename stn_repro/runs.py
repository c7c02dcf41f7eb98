"""A run directory's state: finished or not, its checkpoints, who may train it, which code.

A run directory holds ``config.yaml`` (the resolved config), ``checkpoint.pt`` (sealed with a
checksum; the one before it kept as ``checkpoint.prev.pt``), ``tb/`` and, once finished,
``metrics.json`` (with a checksum). Every file is written atomically.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .config import PACKAGE_ROOT, config_hash, identity
from .errors import UserError, warn
from .files import CorruptFile, read_json, seal, unseal, write_atomic

CHECKPOINTS = ("checkpoint.pt", "checkpoint.prev.pt")


def git(*args: str) -> str:
    """The output of a git command in this package's checkout."""
    done = subprocess.run(["git", "-C", str(PACKAGE_ROOT), *args], capture_output=True,
                          text=True, timeout=10, check=True)  # fmt: skip
    return done.stdout.strip()


@cache
def code_version() -> dict:
    """The package version and, in a git checkout, its commit (``+dirty`` with local edits)."""
    try:
        found = {"version": version("stn-repro")}
    except PackageNotFoundError:
        found = {"version": "unknown"}
    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        found["commit"] = commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        found["commit"] = None
    return found


def note_other_code(written_by: dict | None, what: Path) -> None:
    """Warn when ``what`` was written by another version of this code."""
    here = code_version()
    if written_by and written_by.get("commit") and here["commit"]:
        if written_by["commit"] != here["commit"]:
            warn(f"{what} was written by stn-repro commit {written_by['commit']}; this is "
                 f"{here['commit']}; add overwrite=true to redo it with this code")  # fmt: skip


def flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        return {
            k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}{key}.").items()
        }
    return {prefix.rstrip("."): tree}


def differences(run_dir: Path, cfg: DictConfig) -> str:
    """``key: old -> new`` for what differs between the run's saved config and ``cfg``."""
    try:
        old = flatten(identity(OmegaConf.load(run_dir / "config.yaml")))
    except Exception:  # noqa: BLE001 (an unreadable config.yaml only loses the detail)
        return "its config.yaml is unreadable"
    new = flatten(identity(cfg))
    diff = [f"{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)]  # fmt: skip
    return "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")


def refuse_other_config(run_dir: Path, cfg: DictConfig, what: Path, recorded: str | None) -> None:
    """Stop: ``what`` (a run's metrics or checkpoint) was written for config ``recorded``."""
    found = differences(run_dir, cfg) or (
        f"its config.yaml matches this config, but {what.name} was written for config "
        f"{recorded}, not {config_hash(cfg)}: it was copied from another run"
    )
    raise UserError(
        f"{run_dir} holds a run of another config ({found}); add overwrite=true to replace it, "
        "or choose another run_dir=..."
    )


def read_metrics(run_dir: Path, if_corrupt: str) -> dict | None:
    """A run's metrics.json, or None when there is none or it is corrupt (then a warning
    ending in ``if_corrupt``, what happens next)."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return None
    try:
        return read_json(path)
    except CorruptFile as err:
        warn(f"{path} is corrupt ({err}); {if_corrupt}")
        return None


def refuse_other_data(run_dir: Path, cfg: DictConfig, recorded: str | None, key: str | None,
                      what: Path) -> None:  # fmt: skip
    """Stop when ``what`` (a run's metrics or checkpoint) was made from other files than
    ``cfg.paths.<source>_dir`` holds now (their stores' keys differ); nothing when either is
    unknown (generated MNIST data, or a run recorded before data keys were)."""
    if recorded is None or key is None or recorded == key:
        return
    source = cfg.dataset.source
    raise UserError(
        f"{what} was made from other {source} files than {cfg.paths[f'{source}_dir']} holds "
        f"now (data key {recorded} vs {key}): add overwrite=true to train it again on these, "
        "or paths.output_dir=... to keep both results"
    )


def finished_metrics(run_dir: Path, cfg: DictConfig, chash: str,
                     data_key: str | None = None) -> dict | None:  # fmt: skip
    """The metrics of a finished run of this config, or None. A corrupt metrics.json counts as
    unfinished (the run is redone from its checkpoint); another config's, or one made from
    other data than ``data_key`` names, is an error."""
    done = read_metrics(run_dir, "redoing the run from its last checkpoint")
    if done is None:
        return None
    if done.get("config_hash") != chash:
        refuse_other_config(Path(run_dir), cfg, Path(run_dir) / "metrics.json",
                            done.get("config_hash"))  # fmt: skip
    refuse_other_data(run_dir, cfg, done.get("data_key"), data_key, run_dir / "metrics.json")
    note_other_code(done.get("code"), Path(run_dir) / "metrics.json")
    return done


def finished_run(run_dir: Path, chash: str) -> dict | None:
    """The metrics of a finished run of config ``chash``, or None (unfinished, corrupt: with a
    warning, another config), for the table step."""
    done = read_metrics(run_dir, "the table leaves it out until the run is redone")
    return done if done is not None and done.get("config_hash") == chash else None


def read_checkpoint(path: Path) -> dict:
    """A sealed checkpoint file's contents, on the CPU (raises CorruptFile, OSError, or torch's
    RuntimeError / EOFError on a damaged file)."""
    return torch.load(io.BytesIO(unseal(Path(path).read_bytes())), map_location="cpu")


def scored_weights(ckpt: dict) -> dict:
    """The weights a run is scored with: its moving average's when it kept one
    (``schedule.ema_decay``, stored by ``AveragedModel`` under ``module.``), else the trained."""
    if "averaged" not in ckpt:
        return ckpt["model"]
    prefix = "module."
    return {k[len(prefix):]: v for k, v in ckpt["averaged"].items() if k.startswith(prefix)}


def checkpoint_iteration(run_dir: Path, chash: str) -> int:
    """The iteration an unfinished run of config ``chash`` has checkpointed (0: none readable),
    for the tables' progress; quiet: a damaged checkpoint is the run's own business."""
    try:
        ckpt = read_checkpoint(Path(run_dir) / CHECKPOINTS[0])
    except (CorruptFile, RuntimeError, EOFError, OSError, ValueError):
        return 0
    return int(ckpt.get("iteration", 0)) if ckpt.get("config_hash") == chash else 0


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Write ``checkpoint.pt`` (sealed), keeping the previous one as ``checkpoint.prev.pt``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    blob = seal(buf.getvalue())  # serialised before anything on disk changes
    latest, previous = (Path(run_dir) / name for name in CHECKPOINTS)
    if latest.exists():
        latest.replace(previous)
    write_atomic(latest, blob)


def load_checkpoint(run_dir: Path, cfg: DictConfig, chash: str,
                    data_key: str | None = None) -> dict | None:  # fmt: skip
    """The newest intact checkpoint of this run (None if there is none yet); a corrupt latest
    one is skipped, with a warning, for the one before it. One of another config, or made from
    other data than ``data_key`` names, is an error."""
    found = [Path(run_dir) / name for name in CHECKPOINTS if (Path(run_dir) / name).exists()]
    problems = []
    for path in found:
        try:
            ckpt = read_checkpoint(path)
        except (CorruptFile, RuntimeError, EOFError, OSError) as err:
            problems.append(f"{path} is unusable ({err})")
            continue
        if ckpt.get("config_hash") != chash:
            refuse_other_config(Path(run_dir), cfg, path, ckpt.get("config_hash"))
        refuse_other_data(run_dir, cfg, ckpt.get("data_key"), data_key, path)
        for problem in problems:
            warn(f"{problem}; resuming from {path.name} instead")
        note_other_code(ckpt.get("code"), path)
        return ckpt
    if found:
        raise UserError(
            f"no usable checkpoint in {run_dir} (each is truncated or altered); add "
            "overwrite=true to train this run again from the start"
        )
    return None


def save_snapshot(run_dir: Path, iteration: int, transformer_states: list[dict]) -> None:
    """Keep the weights of the model's spatial transformers at ``iteration``
    (``snapshots/<iteration>.pt``, for animations of training: ``schedule.log.snapshot_every``;
    the classifier is left out, the transformers' outputs do not need it)."""
    buf = io.BytesIO()
    torch.save({"iteration": iteration, "transformers": transformer_states}, buf)
    write_atomic(Path(run_dir) / "snapshots" / f"{iteration:08d}.pt", buf.getvalue())


def load_snapshots(run_dir: Path) -> list[dict]:
    """Every snapshot of the run (``{"iteration", "transformers"}``), in training order."""
    found = sorted((Path(run_dir) / "snapshots").glob("*.pt"))
    return [torch.load(path, map_location="cpu") for path in found]


def clear_run(run_dir: Path) -> None:
    """Delete what a run wrote (``overwrite=true``)."""
    run_dir = Path(run_dir)
    for name in ("metrics.json", "config.yaml", *CHECKPOINTS):
        (run_dir / name).unlink(missing_ok=True)
    for folder in ("tb", "snapshots"):
        shutil.rmtree(run_dir / folder, ignore_errors=True)
