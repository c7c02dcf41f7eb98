"""The GPU check (scripts/gpu_check.py) on a CPU: the smoke run finishes within its budget and
writes both files; a budget too small to finish still writes what was measured."""

from __future__ import annotations

import json
import time

import pytest
import torch
from omegaconf import OmegaConf

from stn_repro import gpu_check


def test_input_shapes_are_what_the_feeds_give():
    """Checked against the shapes the engine's feeds produce (tests/test_models.py's list)."""
    data = lambda **kw: OmegaConf.create({"params": {}, "render": None, **kw})  # noqa: E731
    assert gpu_check.input_shape(data(source="mnist", generator="rts",
                                      params={"canvas": 42})) == (1, 42, 42)  # fmt: skip
    assert gpu_check.input_shape(data(source="mnist", generator="rotate")) == (1, 28, 28)
    assert gpu_check.input_shape(data(source="mnist", generator="addition",
                                      params={"canvas": 42})) == (2, 42, 42)  # fmt: skip
    assert gpu_check.input_shape(data(source="mnist", generator="extrude3d", render="volume",
                                      params={"size": 60})) == (1, 60, 60, 60)  # fmt: skip
    assert gpu_check.input_shape(data(source="cub", generator="cub",
                                      params={"size": 512, "random_crop": 448})) == (3, 448, 448)
    assert gpu_check.input_shape(data(source="svhn", generator="svhn",
                                      params={"size": 128})) == (3, 128, 128)  # fmt: skip


@pytest.mark.slow  # `make test-slow`
def test_the_smoke_check_finishes_in_budget_and_writes_both_files(tmp_path, smoke):
    paths = [o for o in smoke if o.startswith("paths.")]
    tic = time.perf_counter()
    check = gpu_check.run(torch.device("cpu"), 240, tmp_path / "out", smoke=True,
                          slice_steps=4, extra=paths)  # fmt: skip
    assert time.perf_counter() - tic < 240 and check.stopped is None
    data = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [e["row"] for e in data["speed"]] == [f"{e} / {r}" for e, r in gpu_check.SMOKE_ROWS]
    for entry in data["speed"]:
        for mode in ("fp32", "bf16", "channels_last"):
            assert entry[mode]["images_per_s"] > 0, (entry["row"], mode)
    assert [s["processes"] for s in data["sharing"]] == [1, 2]
    assert all(s["images_per_s"] > 0 for s in data["sharing"])
    assert data["slice"]["iterations"] == 4 and 0 <= data["slice"]["val_error"] <= 100
    [table1] = [p for p in data["projection"] if p["experiment"] == "table1_rts"]
    assert table1["runs"] == 24 and table1["unmeasured"] == [] and table1["gpu_hours"] > 0
    text = (tmp_path / "out" / "gpu_check.md").read_text()
    assert text.rstrip().splitlines()[-1].startswith("**`make all-tables SCHEDULE=paper`")


def test_a_budget_too_small_still_writes_what_was_measured(tmp_path):
    check = gpu_check.run(torch.device("cpu"), 4, tmp_path / "out", smoke=True)
    data = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert data["stopped"].startswith("the 4 s budget ran out")
    assert not data["slice"]  # never reached
    assert "Stopped early" in (tmp_path / "out" / "gpu_check.md").read_text()
    assert check.projection is not None


def test_a_failing_measurement_is_recorded_and_the_others_go_on():
    assert gpu_check.measured(lambda: 1 / 0)["error"].startswith("ZeroDivisionError")
    with pytest.raises(gpu_check.OutOfTime):
        gpu_check.measured(lambda: (_ for _ in ()).throw(gpu_check.OutOfTime()))


def test_the_budget_running_out_inside_a_library_that_wraps_it_still_stops_the_check():
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    OmegaConf.register_new_resolver("ring", lambda: (_ for _ in ()).throw(gpu_check.OutOfTime()),
                                    replace=True)  # fmt: skip
    cfg = OmegaConf.create({"x": "${ring:}"})
    with pytest.raises(InterpolationResolutionError) as wrapped:
        cfg.x  # noqa: B018  (resolving is the point)
    assert gpu_check.ran_out(wrapped.value) and not gpu_check.ran_out(ValueError())
    with pytest.raises(gpu_check.OutOfTime):
        gpu_check.measured(lambda: cfg.x)
    with pytest.raises(gpu_check.OutOfTime), gpu_check.deadline(60):
        cfg.x  # noqa: B018
    OmegaConf.clear_resolver("ring")
