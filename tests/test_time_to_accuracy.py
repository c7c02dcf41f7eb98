"""The time-to-accuracy figure of a table column, from the curves its runs record."""

from __future__ import annotations

import json
import runpy
import shutil

import pytest

from stn_repro.config import PACKAGE_ROOT
from stn_repro.experiment import row_run_dirs
from stn_repro.report.time_to_accuracy import RowCurve, column_curves, read_record, write_record


def test_minutes_to_the_paper_are_read_off_the_first_point_at_or_below_it():
    points = [{"iteration": i, "seconds": 60.0 * i, "images": 256 * i, "error": e}
              for i, e in ((1, 9.0), (2, 4.0), (3, 5.5), (4, 3.0))]  # fmt: skip
    assert RowCurve("FCN", 5.2, "val", points, True).minutes_to_paper() == 2.0
    assert RowCurve("FCN", 1.0, "val", points, True).minutes_to_paper() is None
    assert RowCurve("X", None, "val", points, True).minutes_to_paper() is None


def test_a_smoke_column_draws_its_figure_and_table(compose_cfg, smoke, tmp_path):
    from hydra import compose

    from stn_repro.cli import run

    overrides = [*smoke, "experiment=table1_tc", "experiment.seeds=[1]", "dataset.validation=20",
                 "schedule.log.eval_every=2"]  # fmt: skip
    run(compose("config", overrides=overrides), overrides)
    outputs = tmp_path / "outputs"
    exp, seed_dirs = row_run_dirs(overrides, 1)
    curves = column_curves(exp, seed_dirs)
    assert [c.row for c in curves] == ["FCN", "CNN", "ST-FCN Aff", "ST-CNN Aff"]
    assert all(c.split == "val" and len(c.points) == 3 and c.finished for c in curves)
    assert curves[0].paper == 13.2  # Sect. 4.1's TC FCN
    # A run of another config of the same row, written later, is not the row's run.
    fcn = seed_dirs["FCN"]
    other = fcn.parents[1] / "0therc0f" / "seed1"
    shutil.copytree(fcn, other)
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["curve"] = [{**p, "error": 99.0} for p in metrics["curve"]]
    (other / "metrics.json").write_text(json.dumps(metrics))
    script = runpy.run_path(str(PACKAGE_ROOT / "scripts" / "time_to_accuracy.py"))
    out = script["main"](["table1_tc", "--schedule", "smoke", "--outputs", str(outputs),
                          "dataset.validation=20", "schedule.log.eval_every=2"])  # fmt: skip
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = out.with_suffix(".md").read_text()
    assert "| ST-CNN Aff | 1.7 |" in table and "| val | 6 |" in table
    assert "99.00" not in table
    (fcn / "metrics.json").unlink()  # as if still training: read from its checkpoint
    curves = column_curves(exp, seed_dirs)
    assert (curves[0].split, curves[0].finished, len(curves[0].points)) == ("val", False, 2)


@pytest.mark.slow  # `make test-slow`
def test_the_curve_record_draws_rows_whose_runs_are_elsewhere(compose_cfg, smoke, tmp_path):
    from hydra import compose

    from stn_repro.cli import run

    overrides = [*smoke, "experiment=table1_tc", "experiment.seeds=[1]", "dataset.validation=20",
                 "schedule.log.eval_every=2"]  # fmt: skip
    for row in ("row=FCN", "row=CNN"):
        run(compose("config", overrides=[*overrides, row]), [*overrides, row])
    outputs = tmp_path / "outputs"
    args = ["table1_tc", "--schedule", "smoke", "--outputs", str(outputs),
            "dataset.validation=20", "schedule.log.eval_every=2"]  # fmt: skip
    script = runpy.run_path(str(PACKAGE_ROOT / "scripts" / "time_to_accuracy.py"))
    record = script["main"](args).with_suffix(".json")
    exp, seed_dirs = row_run_dirs(overrides, 1)
    # Another seed's curve in the record survives a redraw of seed 1.
    other_seed = RowCurve("FCN", 13.2, "val", [{"iteration": 1, "seconds": 1.0, "images": 1,
                          "error": 50.0}], True, "table1_tc/smoke/fcn/abcd1234/seed2")  # fmt: skip
    write_record([other_seed], record)
    script["main"](args)
    assert [c.run for c in read_record(record)][0] == other_seed.run
    assert len(read_record(record)) == 3
    shutil.rmtree(seed_dirs["CNN"])  # the CNN's run went with another machine
    curves = column_curves(exp, seed_dirs, record)
    assert [(c.row, c.recorded) for c in curves] == [("FCN", False), ("CNN", True)]
    assert curves[1].points == {c.run: c for c in read_record(record)}[curves[1].run].points
    # Another config of the row (here: an edited hash) is never taken from the record.
    data = json.loads(record.read_text())
    data["curves"][2]["run"] = data["curves"][2]["run"].replace("/seed1", "x/seed1")
    data.pop("checksum")
    from stn_repro.files import write_json

    write_json(record, data)
    assert [c.row for c in column_curves(exp, seed_dirs, record)] == ["FCN"]
    record.write_text(record.read_text().replace("FCN", "XXX"))  # altered by hand
    with pytest.raises(SystemExit, match="time_to_accuracy: error: curve record .* checksum"):
        script["main"](args)


def test_an_unknown_experiment_is_one_line(tmp_path):
    script = runpy.run_path(str(PACKAGE_ROOT / "scripts" / "time_to_accuracy.py"))
    with pytest.raises(SystemExit, match="no experiment 'table1_xx' .choose from fig_3d"):
        script["main"](["table1_xx", "--outputs", str(tmp_path)])
    with pytest.raises(SystemExit, match="dataset.validatoin: (not a|no such) setting"):
        script["main"](["table1_rts", "--outputs", str(tmp_path), "dataset.validatoin=20"])
    with pytest.raises(SystemExit, match="schedule=paper: give the schedule as --schedule"):
        script["main"](["table1_rts", "--outputs", str(tmp_path), "schedule=paper"])
