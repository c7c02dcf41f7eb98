"""Multirun bookkeeping: each job appends its outcome to ``<sweep dir>/jobs.jsonl``; at the end
of the sweep ``SweepSummary`` (a Hydra callback, in ``conf/config.yaml``) prints how many jobs
succeeded and which failed, and the CLI exits with 2 if any did."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

FAILED: list[dict] = []
"""The failed jobs of the sweep this process ran (filled at its end)."""


def record(sweep_dir: Path, num: int, overrides: list[str], status: str) -> None:
    """Append one job's outcome (``ok`` or its error): one short write, safe from several
    processes."""
    job = {"num": num, "overrides": overrides, "status": status}
    with open(sweep_dir / "jobs.jsonl", "a") as f:
        f.write(json.dumps(job) + "\n")


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        path = Path(config.hydra.sweep.dir) / "jobs.jsonl"
        jobs = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        FAILED[:] = [j for j in jobs if j["status"] != "ok"]
        print(f"stn-repro: sweep: {len(jobs) - len(FAILED)} of {len(jobs)} jobs succeeded"
              + "".join(f"; job {j['num']} ({' '.join(j['overrides'])}) failed" for j in FAILED),
              file=sys.stderr if FAILED else sys.stdout)  # fmt: skip
