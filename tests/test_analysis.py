"""The analysis and the report on smoke runs: the pose table (per transformer and channel for
Table 4), Table 1 right, training animations, TensorBoard, and report.md with provenance."""

from __future__ import annotations

import csv

from hydra import compose
from PIL import Image

from stn_repro.cli import run
from stn_repro.report.analysis import analyse
from stn_repro.report.document import write_report


def test_smoke_runs_give_the_pose_table_figures_animations_and_report(compose_cfg, smoke,
                                                                       tmp_path):  # fmt: skip
    for experiment, row in [("table1_r", "CNN"), ("table1_r", "ST-CNN Aff"),
                            ("table4_addition", "2xST-FCN Aff")]:  # fmt: skip
        overrides = [*smoke, f"experiment={experiment}", f"row={row}", "seed=1"]
        run(compose("config", overrides=overrides), overrides)
    out = tmp_path / "outputs"
    written = analyse(out, "smoke")

    rows = list(csv.DictReader((out / "tables" / "pose.csv").open()))
    r = [x for x in rows if x["row"] == "ST-CNN Aff"]
    assert [x["measure"] for x in r] == ["rotation_deg"]
    assert 40 < float(r[0]["input"]) < 70  # U(-90, 90): 54 degrees, on 128 test digits
    # A smoke run barely moved from the identity: it removes almost nothing.
    assert abs(float(r[0]["removed_pct"])) < 10
    addition = {(x["transformer"], x["channel"]) for x in rows if x["row"] == "2xST-FCN Aff"}
    assert addition == {("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")}
    # The same measure logged to TensorBoard while training (the 2,000 first test images)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [tb] = (out / "runs" / "table4_addition" / "smoke" / "2xst-fcn-aff").glob("*/seed1/tb")
    acc = EventAccumulator(str(tb))
    acc.Reload()
    assert {f"pose/translation_px_removed/t{k}_ch{c}" for k in (1, 2) for c in (0, 1)} <= set(
        acc.Tags()["scalars"])  # fmt: skip
    pose_md = (out / "tables" / "pose.md").read_text()
    assert "| R | ST-CNN Aff | 1 | 128 | 1 | 0 | rotation_deg |" in pose_md

    figures = out / "figures"
    assert figures / "table1_r.png" in written
    gif = Image.open(figures / "animation_table1_r_st-cnn-aff.gif")
    assert gif.n_frames == 3  # iterations 0, 3 and 6 (smoke: snapshot_every 3)
    assert (figures / "animation_table4_addition_2xst-fcn-aff.gif").exists()
    assert list((figures / "tb").glob("events.*"))
    assert not list((out / "runs" / "table1_r" / "smoke" / "cnn").glob("*/seed1/snapshots"))

    report = write_report(out).read_text()
    assert "Not the paper's schedule:** table1 R (`smoke`)" in report
    assert "| table1 | R | smoke (CPU) | 2 | 1 | 6 | cpu |" in report
    assert "## Pose recovery (`smoke` runs)" in report and "## table1: % test error" in report
    assert "![table1_r](figures/table1_r.png)" in report
    assert "| CNN | " in report and "| 1.2 |" in report  # the paper's number, its own column
    assert "## table1:" not in write_report(out, "paper").read_text()  # only `paper`'s
    html = (out / "report.html").read_text()
    assert "<table>" in html and '<img alt="table1_r" src="figures/table1_r.png"' in html
    assert "<style>" in html and "border-collapse" in html
    # a figure whose runs are missing is named, with why (this test trains no RTS run)
    assert "### Not drawn" in report and "- `table1_rts.png`: no finished" in report
