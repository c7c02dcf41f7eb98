"""Shared fixtures: the real Hydra configs, composed with a smoke budget and temp paths."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from stn_repro import cli, signals
from stn_repro.config import CONF_DIR, PACKAGE_ROOT
from stn_repro.schema import validate

DATA_DIR = PACKAGE_ROOT / "datasets"


def smoke_overrides(tmp_path: Path) -> list[str]:
    """A CPU smoke budget, writing only under tmp_path."""
    return [
        "schedule=smoke",
        "progress=false",
        f"paths.data_dir={DATA_DIR}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'outputs'}",
    ]


def only(folder: Path, pattern: str) -> Path:
    """The one path under ``folder`` matching ``pattern`` (run directories hold a config hash:
    ``runs/<experiment>/<schedule>/<row>/<hash>/seed<k>``)."""
    [found] = folder.glob(pattern)
    return found


def finished_cells(tmp_path: Path, column: str, table: str = "table1",
                   schedule: str = "smoke") -> int:
    """How many (row, column) cells of ``outputs/tables/<table>-<schedule>.csv`` under
    ``tmp_path`` have at least one finished seed."""
    import csv

    path = tmp_path / "outputs" / "tables" / f"{table}-{schedule}.csv"
    with path.open() as f:
        return sum(1 for line in csv.DictReader(f) if line["column"] == column
                   and int(line["n"]) > 0)  # fmt: skip


@pytest.fixture
def smoke(tmp_path: Path) -> list[str]:
    """The overrides of ``compose_cfg``, for code that composes its own configs."""
    return smoke_overrides(tmp_path)


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """compose_cfg(*overrides) -> the validated config the CLI would run, writing under tmp_path.

    Hydra stays initialised for the whole test, so code under test may compose too."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        yield lambda *overrides: validate(
            compose("config", overrides=[*smoke_overrides(tmp_path), *overrides])
        )
    GlobalHydra.instance().clear()


@pytest.fixture
def invoke(capsys, monkeypatch):
    """invoke(args) -> (exit code, stdout, stderr) of ``stn-repro *args``."""
    monkeypatch.setattr(signals, "install", lambda: None)  # keep pytest's own Ctrl-C
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # restored after the test

    def run(args: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["stn-repro", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as stop:
            code = stop.code or 0
        return code, *capsys.readouterr()

    return run


@pytest.fixture
def offline(monkeypatch):
    """No network: torchvision's ``download_url``, through which every dataset download here
    goes, raises the ``URLError`` an offline machine gives."""
    from urllib.error import URLError

    import torchvision.datasets.utils as tv_utils

    def refuse(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tv_utils, "download_url", refuse)
