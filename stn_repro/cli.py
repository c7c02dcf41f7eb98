"""The ``stn-repro`` console script (Hydra main): one run, or an experiment's runs and table."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import config  # noqa: F401  (registers the project_root resolver)
from .engine import TrainingDiverged, train_run
from .errors import UserError
from .experiment import run_experiment


@hydra.main(config_path=str(config.CONF_DIR), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    try:
        if cfg.get("experiment"):
            run_experiment(cfg, list(HydraConfig.get().overrides.task))
        else:
            if cfg.row is not None or cfg.table_only:
                raise UserError("row=... and table_only=true need an experiment=...")
            metrics = train_run(cfg, config.run_dir(cfg))
            print(f"test error {metrics['test_error']:.2f}% ({metrics['params']:,} params)")
    except (UserError, TrainingDiverged) as err:
        print(f"stn-repro: error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
