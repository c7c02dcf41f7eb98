"""Config helpers: the ``project_root`` and ``pid`` resolvers, a run's identity (hash) and its
directory."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PACKAGE_ROOT / "conf"


def project_root() -> str:
    """``$STN_REPRO_ROOT``, else the checkout this package was installed from."""
    return os.environ.get("STN_REPRO_ROOT", str(PACKAGE_ROOT))


if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", project_root)
if not OmegaConf.has_resolver("pid"):  # distinct Hydra output folders for concurrent launches
    OmegaConf.register_new_resolver("pid", os.getpid)


LATER_KEYS = {
    "schedule": {"precision": "fp32", "label_smoothing": 0.0, "ema_decay": 0.0},
    "dataset": {"task": "classify", "positions": 1, "validation": 0, "params.first_class": 1,
                "params.keep_aspect": False, "params.exclude_test": None, "params.moved": "digit",
                "params.direction": "xy"},
    "model": {"head": None, "target_params": None, "width": None, "dropout": None,
              "pretrained": None, "part_size": None, "layers": None,
              "independent_localisation": (None, False),
              "regressor_init_std": (None, 0.0)},
}
"""Keys added after runs were first recorded, with the value (or tuple of values) that means "as
before": left out of a run's identity at it, so earlier runs keep their hashes and directories."""
COLOC_LOGGING = ("log_every", "eval_every")  # co-localisation settings that change no result
# co-localisation keys added later, with their "as before"; "encoder" is the run whose CNN
# encodes (``experiment.encoder``), the one every run recorded before it used
COLOC_LATER = {"optimizer": "adam", "localisation_units": 8, "encoder_input": 28,
               "window_negatives_from": 1.0, "starts": 1, "max_scale": 1.0, "select": "loss",
               "encoder": {"experiment": "table1_r", "row": "CNN", "seed": 1}}


def as_before(value, before) -> bool:
    return value in before if isinstance(before, tuple) else value == before


def without_later(values: dict, later: dict) -> dict:
    """``values`` less the later keys (``a`` or nested ``a.b``) that hold their "as before"."""
    kept = {}
    for key, value in values.items():
        if key in later and as_before(value, later[key]):
            continue
        inner = {k.split(".", 1)[1]: v for k, v in later.items() if k.startswith(f"{key}.")}
        kept[key] = without_later(value, inner) if inner and isinstance(value, dict) else value
    return kept


def identity(cfg: DictConfig) -> dict:
    """What determines a run's result: data, model, schedule (less its logging), seed, and the
    co-localisation settings where there are some (with the encoder's run)."""
    groups = {}
    for group, later in LATER_KEYS.items():
        groups[group] = without_later(OmegaConf.to_container(cfg[group], resolve=True), later)
    groups["schedule"].pop("log", None)
    found = {**groups, "seed": int(cfg.seed)}
    if cfg.get("coloc") is not None:  # co-localisation runs (Table 5)
        coloc = OmegaConf.to_container(cfg.coloc, resolve=True)
        kept = {k: v for k, v in coloc.items() if k not in COLOC_LOGGING}
        encoder = OmegaConf.select(cfg, "experiment.encoder")
        if encoder is not None:
            kept["encoder"] = OmegaConf.to_container(encoder, resolve=True)
        found["coloc"] = without_later(kept, COLOC_LATER)
    return found


def config_hash(cfg: DictConfig, with_seed: bool = True) -> str:
    """A hash of ``identity(cfg)`` (16 hex digits); ``with_seed=False`` names the config that
    a row's seeds share (its run directories' parent)."""
    found = identity(cfg)
    if not with_seed:
        found.pop("seed")
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:16]


def slug(text: str) -> str:
    """ "ST-CNN Aff" -> "st-cnn-aff"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def model_label(cfg: DictConfig) -> str:
    """A readable name for an ad-hoc run: ``st_cnn-tps``."""
    transform = cfg.model.get("transform")
    return cfg.model.name + (f"-{transform.name}" if transform else "")


def runs_dir(output_dir: str | Path, experiment: str, schedule: str, row: str | None = None
             ) -> Path:  # fmt: skip
    """``<output_dir>/runs/<experiment>/<schedule>`` (and ``/<row>``): the one place that knows
    where runs live; each run is ``<config>/seed<k>`` below its row (``run_dir``)."""
    base = Path(output_dir) / "runs" / experiment / schedule
    return base / slug(row) if row else base


def run_dir(cfg: DictConfig, experiment: str = "adhoc", row: str | None = None) -> Path:
    """``outputs/runs/<experiment>/<schedule>/<row>/<config>/seed<k>`` unless ``cfg.run_dir``
    is set. ``<config>`` is 8 hex digits of the config's hash (seed aside), so a changed config
    (an override, an edited YAML) gets a directory of its own and never meets an old run."""
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    row = row or f"{cfg.dataset.name}-{model_label(cfg)}"
    return (runs_dir(cfg.paths.output_dir, experiment, cfg.schedule.name, row)
            / config_hash(cfg, with_seed=False)[:8] / f"seed{cfg.seed}")  # fmt: skip
