"""The ``stn-repro`` console script (Hydra main): one run, or an experiment's runs and table.

Every mistake a user can make ends, before any work, in one line on stderr and exit status 2:
our checks (``UserError``, the schema), Hydra's own composition errors, unwritable or full
output folders. A stop signal (SIGINT, SIGTERM, SIGUSR1) saves a checkpoint and exits with
128 + its number; the same command then resumes. In a multirun sweep a failed job is reported
and the others still run, with a summary at the end (exit 2 if any failed).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import sys
import threading
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException, ValidationError

from . import config, distributed, signals, speed, sweep
from .engine import TrainingDiverged, train_run
from .errors import UserError
from .experiment import run_experiment, run_lock
from .schema import (
    Config,
    check_bool_overrides,
    describe,
    null_parts,
    unknown_key_message,
    validate,
)
from .terminal import teed

USAGE_ERROR = 2
FIXABLE = (UserError, TrainingDiverged)


def run(cfg: DictConfig, overrides: list[str]) -> None:
    """Validate ``cfg``, then run the experiment it names or the one run it describes (under
    ``torchrun``: as one of several processes training each run together)."""
    cfg = validate(cfg)
    FOLDERS.clear()
    FOLDERS.update({f"paths.{k}": Path(v) for k, v in cfg.paths.items() if v})
    if cfg.run_dir:
        FOLDERS["run_dir"] = Path(cfg.run_dir)
    check_writable(cfg.paths)
    speed.set_threads(cfg.speed)  # before any work, data generation included
    ranks = distributed.start(cfg.device)
    try:
        if cfg.experiment is not None:
            run_experiment(cfg, overrides)
        else:
            run_one(cfg, ranks)
    finally:
        distributed.stop()


def run_one(cfg: DictConfig, ranks: distributed.Ranks) -> None:
    if cfg.row is not None or cfg.table_only:
        raise UserError("row=... and table_only=true need an experiment=...")
    where = config.run_dir(cfg)
    with run_lock(where, ranks, wait=False) as free:
        if free:
            metrics = train_run(cfg, where)
    if not free:
        if ranks.main:
            print(f"{where}: another process is running it; waiting for it to finish")
        with run_lock(where, ranks, wait=True):
            metrics = train_run(cfg, where)
    if ranks.main:
        print(f"test error {metrics['test_error']:.2f}% ({metrics['params']:,} params) -> {where}")


def check_writable(paths: DictConfig) -> None:
    """Stop before any work when an output folder cannot be created or written."""
    for key in ("output_dir", "cache_dir"):
        folder = Path(paths[key])
        probe = folder / f".write-test-{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise UserError(
                f"paths.{key}={folder} is not a writable folder ({err.strerror}); choose "
                f"another with paths.{key}=..."
            ) from None


@hydra.main(config_path=str(config.CONF_DIR), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # What the terminal shows, kept in this launch's Hydra folder.
    with teed(Path(hydra_cfg.runtime.output_dir) / "stn-repro.log"):
        try:
            run(cfg, overrides)
            status = "ok"
        except Exception as err:  # a fixable error is reported here, before Hydra's own line
            status = explain(err)
            if status is None:
                raise
            if not multirun:
                fail(status)
            print(f"stn-repro: error: job {hydra_cfg.job.num} ({' '.join(overrides)}): "
                  f"{status}", file=sys.stderr)  # fmt: skip
    if multirun:
        sweep.record(Path(hydra_cfg.sweep.dir), hydra_cfg.job.num, overrides, status)


def explain(err: BaseException) -> str | None:
    """One line for an error a user can fix; None for anything else (a bug: traceback)."""
    if isinstance(err, FIXABLE):
        return str(err)
    if isinstance(err, HydraException | OmegaConfBaseException):
        return hydra_message(err)
    if isinstance(err, OSError):
        return os_error_message(err)
    if isinstance(err, AssertionError) and str(err).startswith("Unexpected type"):
        return unset_group_message(sys.argv[1:])  # OmegaConf's, for a setting under a null group
    return None


HINTS = {"experiment": "add experiment=<name>, e.g. experiment=table1_rts",
         "coloc": "only the co-localisation experiments have it: experiment=table5_coloc_t or "
                  "table5_coloc_tc"}  # fmt: skip


def unset_group_message(args: list[str]) -> str:
    """One line for an override under a part the composed config leaves null (``coloc.lr=``
    outside Table 5, ``experiment.seeds=`` without an experiment)."""
    given = dict(a.lstrip("+~").split("=", 1) for a in args if "=" in a and not a.startswith("-"))
    experiment = given.get("experiment")
    for key in given:
        for part in null_parts(key):
            if part != "experiment" or not experiment:  # else: an experiment is chosen
                owner = f"experiment {experiment}" if experiment else "the chosen config"
                return f"{key}: {owner} has no {part} ({HINTS.get(part, 'leave it out')})"
    return ("a setting lies under a part the chosen config leaves out (`stn-repro --cfg job` "
            "prints every setting of the composed config)")


def hydra_message(err: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line (options joined by commas)."""
    text = str(err).split("Config search path:")[0]
    unknown = re.match(r"Could not override '([\w.]+)'", text)
    if unknown:  # not Hydra's advice to add it with +: the schema refuses keys a part lacks
        key, schema = unknown.group(1), getattr(err.__cause__, "object_type", None)
        if dataclasses.is_dataclass(schema) and schema is not Config:  # e.g. the model family's
            return describe(err.__cause__, "", schema)
        return unknown_key_message(key) or (
            f"{key}: not a setting of the chosen {key.split('.')[0]} (`stn-repro --cfg job` "
            "prints every setting of the composed config)"
        )
    if "LexerNoViableAltException" in text or "token recognition error" in text:
        return (f"{text.strip().splitlines()[0]}: Hydra reads only plain ASCII values unquoted; "
                "quote the value, e.g. \"paths.output_dir='/data/été'\"")  # fmt: skip
    if isinstance(err.__cause__, ValidationError):  # the schema refused an override's value
        return describe(err.__cause__, "", Config)
    if isinstance(err.__cause__, OmegaConfBaseException):
        text += "\n" + str(err.__cause__)
    parts: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith(("full_key:", "object_type", "See http")):
            continue
        if line.startswith("\t") and parts:
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
        else:
            parts.append(line.strip())
    return "; ".join(p.rstrip(".") for p in parts)


FOLDERS: dict[str, Path] = {}
"""The run's folders by the setting that names them (``paths.data_dir``, ``run_dir``, ...):
an unwritable file's advice names the setting of the folder that holds it."""


def setting_for(where: str) -> str:
    """``key=...`` for the configured folder holding ``where`` (the deepest one), else the
    output folder's."""
    path = Path(where.removesuffix(".lock")).absolute()  # a lock beside its folder: the folder's
    holding = [(len(folder.absolute().parts), key) for key, folder in FOLDERS.items()
               if path.is_relative_to(folder.absolute())]  # fmt: skip
    return f"{max(holding)[1] if holding else 'paths.output_dir'}=..."


def os_error_message(err: OSError) -> str | None:
    """One sentence for a full, read-only or missing location, or a file-size limit; None for
    anything else."""
    where = os.fsdecode(err.filename) if err.filename else "a file"
    again = "rerun the same command (finished runs are kept, interrupted runs resume)"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device while writing {where}: free some space and {again}"
    if err.errno == errno.EFBIG:
        return (f"the file-size limit stopped writing {where} (File too large; see `ulimit -f`): "
                f"raise the limit and {again}")  # fmt: skip
    if err.errno == errno.ENOENT:  # a folder that cannot be made, or was removed mid-run
        return (f"cannot write {where} (its folder cannot be created or was removed); choose a "
                f"writable folder with {setting_for(where)} or rerun once it exists")  # fmt: skip
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        return (f"cannot write {where} ({err.strerror}); choose a writable folder with "
                f"{setting_for(where)}")  # fmt: skip
    return None


def quiet_thread_errors(args: threading.ExceptHookArgs) -> None:
    """A background writer (TensorBoard's) that hits a full disk or a vanished folder: the
    main thread reports it in one line when the writer re-raises it; no thread traceback."""
    if not (isinstance(args.exc_value, OSError) and os_error_message(args.exc_value)):
        threading.__excepthook__(args)


def fail(message: str) -> None:
    print(f"stn-repro: error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def check_arguments(args: list[str]) -> None:
    """Before Hydra: in a sweep (``-m``), a key given twice (Hydra would keep the last, dropping
    a sweep; in one run the last wins, as in Hydra); and a config group option that does not
    exist (in a sweep Hydra blames another key)."""
    sweep = "-m" in args or "--multirun" in args
    check_bool_overrides([arg for arg in args if "=" in arg and not arg.startswith("-")])
    seen: dict[str, str] = {}
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if sweep and key in seen:
            raise UserError(f"{key} is given twice ({seen[key]} and {arg}): give it once (a "
                            f"sweep lists its values in one argument: {key}=a,b)")  # fmt: skip
        seen[key] = arg
        group = config.CONF_DIR / key
        if not group.is_dir():
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        if value in ("null", ""):  # Hydra: a ValueError
            raise UserError(f"{key}={value}: leave it out (no experiment is the default)"
                            if key == "experiment" else f"{key}={value}: every run needs a "
                            f"{key} (choose from {', '.join(options)})")  # fmt: skip
        if "(" not in value:
            for option in value.split(","):
                if option and option not in options:
                    raise UserError(f"{key}={option}: no such {key} (choose from "
                                    f"{', '.join(options)})")  # fmt: skip


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors to us instead of printing
    signals.install()
    threading.excepthook = quiet_thread_errors
    try:
        check_arguments(sys.argv[1:])
        app()
    except signals.Interrupted as err:
        print(f"stn-repro: {err}; rerun the same command to resume", file=sys.stderr)
        sys.exit(err.exit_code)
    except Exception as err:  # Hydra's composition errors, before our app runs
        message = explain(err)
        if message is None:
            raise
        fail(message)
    if sweep.FAILED:
        sys.exit(USAGE_ERROR)


if __name__ == "__main__":
    main()
