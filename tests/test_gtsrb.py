"""GTSRB: both folder layouts, the annotation CSVs, track-disjoint splits, local contrast
normalisation, the networks, the experiments end to end on tiny folders, and the offline message."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gtsrb_files import HEADER, class_colour, need_sample, tiny_gtsrb
from PIL import Image

from stn_repro.contrast import LocalContrastNorm, box_kernel, gaussian_kernel
from stn_repro.data import gtsrb
from stn_repro.data.gtsrb import (
    Sign,
    held_out,
    read_annotations,
    sign_image,
    split_by_track,
    training_signs,
)
from stn_repro.errors import UserError
from stn_repro.files import read_json
from stn_repro.models import DataSpec, build_model, count_params

# ---- the files ---------------------------------------------------------------------------------


def test_sample_csvs_parse_to_the_documented_facts():
    images = need_sample() / "Final_Training" / "Images"
    signs = training_signs(images)
    assert len(signs) == 2000 and {s.class_id for s in signs} == set(range(43))
    first = read_annotations(images / "00000" / "GT-00000.csv", images / "00000", tracks=True)[0]
    assert first == Sign(images / "00000" / "00004_00001.ppm", 0, 4, (5, 5, 50, 54))
    with Image.open(first.path) as image:
        assert image.size == (56, 60)  # the CSV's Width, Height
    assert all(s.path.exists() for s in signs)


def test_annotation_rows_give_roi_class_and_track(tmp_path):
    csv = tmp_path / "GT-00007.csv"
    csv.write_text(f"{HEADER}\r\n00012_00029.ppm;53;54;6;5;47;49;7\r\n"
                   "00000_00001.ppm;30;29; 6;5;25;24;7\r\n")  # fmt: skip
    a, b = read_annotations(csv, tmp_path, tracks=True)
    assert a == Sign(tmp_path / "00012_00029.ppm", 7, 12, (6, 5, 47, 49))
    assert b.roi == (6, 5, 25, 24) and b.track == 0
    test_csv = tmp_path / "GT-final_test.csv"
    test_csv.write_text(f"{HEADER}\n00003.ppm;40;41;5;6;34;35;16\n")
    [test] = read_annotations(test_csv, tmp_path, tracks=False)
    assert test.track is None and test.class_id == 16 and test.roi == (5, 6, 34, 35)
    csv.write_text("Filename;ClassId\n00000_00000.ppm;3\n")  # e.g. the test set's .test.csv
    with pytest.raises(UserError, match="not a GTSRB annotation file.*Roi.X1"):
        read_annotations(csv, tmp_path, tracks=True)


def key(signs: list[Sign]) -> list[tuple]:
    return sorted((s.class_id, s.track, s.path.name) for s in signs)


def test_the_original_and_torchvision_layouts_give_the_same_signs(tmp_path):
    original = tiny_gtsrb(tmp_path / "a", "original")
    torchvision = tiny_gtsrb(tmp_path / "b", "torchvision", csv=False)
    train_a, (test_a, csv_a) = gtsrb.located(original, need_test=True)
    train_b, (test_b, csv_b) = gtsrb.located(torchvision, need_test=True)
    assert train_a == original / "Final_Training/Images"
    assert train_b == torchvision / "gtsrb/GTSRB/Training"
    signs_a, signs_b = training_signs(train_a), training_signs(train_b)
    assert len(signs_a) == 3 * 5 * 3 and key(signs_a) == key(signs_b)
    assert all(s.roi is not None for s in signs_a) and all(s.roi is None for s in signs_b)
    tests_a, tests_b = (read_annotations(c, d, tracks=False) for c, d in
                        ((csv_a, test_a), (csv_b, test_b)))  # fmt: skip
    assert key(tests_a) == key(tests_b) and len(tests_a) == 12


def test_a_class_listed_in_another_class_folder_is_refused(tmp_path):
    root = tiny_gtsrb(tmp_path, classes=2)
    csv = root / "Final_Training/Images/00001/GT-00001.csv"
    csv.write_text(csv.read_text().replace(";1\n", ";4\n", 1))
    with pytest.raises(UserError, match="listed as class 4 in folder"):
        training_signs(root / "Final_Training/Images")


def test_roi_crop_keeps_only_the_sign_box(tmp_path):
    root = tiny_gtsrb(tmp_path, classes=1, tracks=1, per_track=1)
    [sign] = training_signs(root / "Final_Training/Images")
    inside = sign_image(sign.path, 16, sign.roi)
    assert inside.shape == (3, 16, 16) and inside.dtype == np.uint8
    assert (inside == np.array(class_colour(0), np.uint8)[:, None, None]).all()
    whole = sign_image(sign.path, 16)
    assert (whole[:, 0, 0] == 90).all()  # the border around the box


# ---- splits ------------------------------------------------------------------------------------


def signs_of(classes: int, tracks: int, per_track: int = 3) -> list[Sign]:
    return [Sign(Path(f"{c}/{t}_{k}.ppm"), c, t) for c in range(classes) for t in range(tracks)
            for k in range(per_track)]  # fmt: skip


def test_splits_hold_out_whole_tracks_per_class():
    signs = signs_of(classes=4, tracks=10)
    parts = split_by_track(signs, val_fraction=0.1, test_fraction=0.25, seed=3)
    assert sum(len(p) for p in parts.values()) == len(signs)
    tracks = {name: {(s.class_id, s.track) for s in found} for name, found in parts.items()}
    assert not tracks["train"] & tracks["val"] and not tracks["train"] & tracks["test"]
    assert not tracks["val"] & tracks["test"]
    for c in range(4):  # 0.25 * 10 = 2.5 -> 3 test tracks, 0.1 * 10 -> 1 val track
        assert sum(1 for cc, _ in tracks["test"] if cc == c) == 3
        assert sum(1 for cc, _ in tracks["val"] if cc == c) == 1
    again = split_by_track(signs, 0.1, 0.25, seed=3)
    assert all(key(parts[p]) == key(again[p]) for p in parts)
    other = split_by_track(signs, 0.1, 0.25, seed=4)
    assert key(parts["test"]) != key(other["test"])
    assert set(split_by_track(signs, 0.0, 0.0, seed=3)) == {"train", "val"}


def test_held_out_rounds_half_up_but_keeps_at_least_one_track():
    assert [held_out(n, 0.1) for n in (1, 4, 7, 75)] == [1, 1, 1, 8]
    assert [held_out(n, 0.25) for n in (10, 14)] == [3, 4]  # 2.5 -> 3, 3.5 -> 4
    assert held_out(40, 0.0) == 0


def test_a_class_with_too_few_tracks_is_refused():
    with pytest.raises(UserError, match="class 0 has 2 tracks.*leaves none to train on"):
        split_by_track(signs_of(classes=1, tracks=2), 0.1, 0.25, seed=0)


# ---- local contrast normalisation ----------------------------------------------------------------


def direct_lcn(x: np.ndarray, kernel: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Torch7's SpatialContrastiveNormalization, pixel by pixel: weights ``w`` summing to 1;
    sums over the taps inside the map; mean = sum / inside, std = sqrt(sum of v**2) / inside."""
    c, h, wd = x.shape
    w = kernel / kernel.sum()
    r = w.shape[0] // 2

    def sums(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # m (C, H, W) -> (H, W) twice
        total, inside = np.zeros((h, wd)), np.zeros((h, wd))
        for i in range(h):
            for j in range(wd):
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        if 0 <= i + di < h and 0 <= j + dj < wd:
                            total[i, j] += w[di + r, dj + r] * m[:, i + di, j + dj].mean()
                            inside[i, j] += w[di + r, dj + r]
        return total, inside

    total, inside = sums(x)
    v = x - total / inside
    square, _ = sums(v * v)
    return v / np.maximum(np.sqrt(square) / inside, eps)


def test_local_contrast_normalisation_against_its_definition():
    torch.manual_seed(0)
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64)
    for kernel in (gaussian_kernel(3), box_kernel(5)):
        got = LocalContrastNorm(kernel)(x)[0].numpy()
        np.testing.assert_allclose(got, direct_lcn(x[0].numpy(), kernel.double().numpy()),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


def test_local_contrast_normalisation_identities():
    lcn = LocalContrastNorm(box_kernel(9)).double()
    constant = torch.full((2, 3, 12, 12), 0.7, dtype=torch.float64, requires_grad=True)
    out = lcn(constant)  # zeros, also at the borders (up to round-off times 1 / eps)
    torch.testing.assert_close(out, torch.zeros_like(out), atol=1e-9, rtol=0)
    out.sum().backward()
    assert torch.isfinite(constant.grad).all()  # no infinite gradient where the variance is 0
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(lcn(3.5 * x - 2.0), lcn(x))  # invariant to gain and offset
    g = gaussian_kernel(7)
    assert g.shape == (7, 7) and g[3, 3] == 1
    assert math.isclose(g[3, 0], math.exp(-9 / 2 / 1.75**2), rel_tol=1e-6)  # Torch7's sigma
    with pytest.raises(ValueError, match="k odd"):
        LocalContrastNorm(torch.ones(4, 4))


# ---- models ------------------------------------------------------------------------------------


def model_cfg(name: str, width: float = 1.0):
    from omegaconf import OmegaConf

    transform = None if name == "gtsrb_cnn" else {"name": "affine"}
    return OmegaConf.create({"name": name, "width": width, "transform": transform})


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# By hand from the recipe (48 -> 46 -> 23 -> 24 -> 12 -> 13 -> 6 pixels; localisation nets:
# 48 -> 24 -> 12 -> 6 on the input, 12 -> 6 -> 3 -> 1 on conv2's output).
CNN = conv(3, 150, 7) + conv(150, 200, 4) + conv(200, 300, 4) + fc(300 * 6 * 6, 350) + fc(350, 43)
LOC_INPUT = conv(3, 200, 5) + conv(200, 300, 5) + fc(300 * 6 * 6, 200) + fc(200, 6)
LOC_CONV2 = conv(200, 150, 5) + conv(150, 150, 5) + fc(150 * 1 * 1, 150) + fc(150, 6)
COUNTS = {"gtsrb_cnn": CNN, "gtsrb_st1": CNN + LOC_INPUT, "gtsrb_st2": CNN + LOC_INPUT + LOC_CONV2}


def test_parameter_counts_and_shapes():
    spec = DataSpec((3, 48, 48), 43)
    x = torch.rand(2, 3, 48, 48)
    for name, count in COUNTS.items():
        model = build_model(model_cfg(name), spec)
        assert count_params(model) == count, name
        assert model(x).shape == (2, 43)
    print({name: f"{count:,}" for name, count in COUNTS.items()})  # pytest -s prints them


@pytest.mark.parametrize("name", ["gtsrb_st1", "gtsrb_st2"])
def test_st_models_at_their_identity_start_compute_exactly_the_cnn(name):
    spec = DataSpec((3, 48, 48), 43)
    torch.manual_seed(0)
    cnn = build_model(model_cfg("gtsrb_cnn", 0.25), spec).eval()
    st = build_model(model_cfg(name, 0.25), spec).eval()
    missing, unexpected = st.load_state_dict(cnn.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("transformers.") for k in missing)
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(st(x), cnn(x), atol=1e-5, rtol=0)  # float32 round-off
        st, cnn, x = st.double(), cnn.double(), x.double()
        torch.testing.assert_close(st(x), cnn(x), atol=1e-12, rtol=0)


# ---- data feed and runs ------------------------------------------------------------------------


def gtsrb_overrides(root: Path, *extra: str) -> list[str]:
    return [f"paths.gtsrb_dir={root}", "workers=0", *extra]


def test_stores_hold_48px_images_and_the_feed_normalises_them(compose_cfg, tmp_path):
    import h5py

    from stn_repro.data.feeds import FileFeed

    root = tiny_gtsrb(tmp_path / "GTSRB")
    cfg = compose_cfg("dataset=gtsrb", "model=gtsrb_cnn", *gtsrb_overrides(
        root, "dataset.params.val_fraction=0.2", "dataset.params.local_contrast=0"))  # fmt: skip
    feed = FileFeed(cfg, torch.device("cpu"))
    # 5 tracks per class, 1 held out for validation (3 images each): 3 classes
    assert feed.info["counts"] == {"train": 36, "val": 9, "test": 12}
    assert feed.info["test_from"] == "official test set"
    image, label = feed.stores["test"][0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.uint8 and label.shape == ()
    train = torch.from_numpy(h5py.File(feed.stores["train"].path)["images"][...]).double() / 255
    assert math.isclose(feed.info["pixel_mean"], train.mean().item(), rel_tol=1e-9)
    assert math.isclose(feed.info["pixel_std"], train.std(unbiased=False).item(), rel_tol=1e-9)
    seen = torch.cat([x for x, _ in feed.batches(feed.stores["train"], batch_size=8)])
    assert abs(seen.mean().item()) < 1e-5 and abs(seen.std(unbiased=False).item() - 1) < 1e-5
    assert "(x - " in feed.description and "local contrast" not in feed.description
    # the default: then a 7x7 Gaussian local contrast normalisation (the stores are reused)
    cfg = compose_cfg("dataset=gtsrb", "model=gtsrb_cnn", *gtsrb_overrides(
        root, "dataset.params.val_fraction=0.2"))  # fmt: skip
    lcn_feed = FileFeed(cfg, torch.device("cpu"))
    assert lcn_feed.info["key"] == feed.info["key"]
    x, _ = next(lcn_feed.batches(lcn_feed.stores["train"], batch_size=8))
    torch.testing.assert_close(x, LocalContrastNorm(gaussian_kernel(7))(seen[:8]))
    assert "local contrast normalisation (7x7 Gaussian)" in lcn_feed.description


def test_preprocessing_is_done_once(compose_cfg, tmp_path, monkeypatch):
    from stn_repro.data.feeds import FileFeed

    root = tiny_gtsrb(tmp_path / "GTSRB")
    cfg = compose_cfg("dataset=gtsrb_tracks", "model=gtsrb_cnn", *gtsrb_overrides(
        root, "dataset.params.test_fraction=0.2"))  # fmt: skip
    feed = FileFeed(cfg, torch.device("cpu"))
    assert feed.info["counts"] == {"train": 27, "val": 9, "test": 9}
    assert feed.info["test_from"] == "held-out training tracks"
    calls = []
    monkeypatch.setattr(gtsrb, "Signs", lambda *a: calls.append(a))
    FileFeed(cfg, torch.device("cpu"))
    assert calls == []


def test_a_download_lands_whole_in_the_torchvision_layout(tmp_path, monkeypatch):
    import torchvision.datasets

    made = tiny_gtsrb(tmp_path / "made", "torchvision")

    class FakeGTSRB:  # what torchvision.datasets.GTSRB(root, split, download=True) leaves
        def __init__(self, root, split, download):
            import shutil

            target = "Training" if split == "train" else "Final_Test/Images"
            if (Path(root) / "gtsrb" / "GTSRB" / target).is_dir():
                return  # torchvision trusts any folder there, whole or not
            names = ["GTSRB/Training"] if split == "train" else ["GTSRB/Final_Test",
                                                                 "GT-final_test.csv"]  # fmt: skip
            for name in names:
                src, dst = made / "gtsrb" / name, Path(root) / "gtsrb" / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
            (Path(root) / "gtsrb" / f"{split}.zip").write_text("archive")

    monkeypatch.setattr(torchvision.datasets, "GTSRB", FakeGTSRB)
    root = tmp_path / "GTSRB"
    partial = root / ".gtsrb-downloading/gtsrb/GTSRB/Training/00000"  # an interrupted extraction
    partial.mkdir(parents=True)
    (partial / "00000_00000.ppm").write_bytes(b"P6 cut")
    train, (test, csv) = gtsrb.located(root, need_test=True)
    assert train == root / "gtsrb/GTSRB/Training" and len(training_signs(train)) == 45
    assert csv == root / "gtsrb" / "GT-final_test.csv" and test.is_dir()
    assert (root / ".gtsrb-downloading/gtsrb/train.zip").exists()  # kept for a retry


def test_missing_files_offline_give_one_sentence_naming_where_to_put_them(invoke, tmp_path,
                                                                         offline):  # fmt: skip
    only_train = tiny_gtsrb(tmp_path / "train-only")
    (only_train / "GT-final_test.csv").unlink()
    for root, missing in ((tmp_path / "nothing", "training images"),
                          (only_train, "test images")):  # fmt: skip
        code, out, err = invoke([
            "dataset=gtsrb", "model=gtsrb_cnn", "schedule=smoke", "progress=false",
            f"paths.gtsrb_dir={root}", f"paths.output_dir={tmp_path / 'out'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ])  # fmt: skip
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert missing in err and str(root) in err and "paths.gtsrb_dir" in err
    assert "dataset.params.test_fraction" in err  # the way out with training images only


def test_fractions_leaving_nothing_to_train_on_are_refused_before_work(compose_cfg):
    with pytest.raises(UserError, match="together they must leave tracks to train on"):
        compose_cfg("dataset=gtsrb", "model=gtsrb_cnn", "dataset.params.val_fraction=0.5",
                    "dataset.params.test_fraction=0.5")  # fmt: skip
    with pytest.raises(UserError, match="local_contrast=4: must be 0 .off. or odd"):
        compose_cfg("dataset=gtsrb", "model=gtsrb_cnn", "dataset.params.local_contrast=4")


# ---- experiments -------------------------------------------------------------------------------


@pytest.mark.parametrize("experiment, column", [("gtsrb", "GTSRB"),
                                                ("gtsrb_tracks", "Held-out tracks")])  # fmt: skip
def test_smoke_experiment_writes_the_gtsrb_table(compose_cfg, smoke, tmp_path, experiment, column):
    from hydra import compose

    from stn_repro.cli import run

    root = tiny_gtsrb(tmp_path / "GTSRB")
    overrides = [*smoke, f"experiment={experiment}", "experiment.seeds=[1]",
                 *gtsrb_overrides(root, "dataset.params.test_fraction=0.2"
                                  if experiment == "gtsrb_tracks" else "workers=0")]  # fmt: skip
    run(compose("config", overrides=overrides), overrides)
    table = (tmp_path / "outputs" / "tables" / "gtsrb-smoke.md").read_text()
    assert f"| {column}: ours | {column}: paper |" in table and "width x0.125" in table
    models = [line for line in table.splitlines() if line.startswith("| ")][1:]  # less header
    if experiment == "gtsrb":  # three rows of ours and the two reference rows
        assert len(models) == 5 and "| 0.39 (acc. 99.61) |" in models[-1]
        assert "| Human | (reference) | 1.16 (acc. 98.84) |" in table
    else:  # no published number applies
        assert len(models) == 3 and all(line.endswith("| - |") for line in models)
    assert all("; acc. " in line for line in models if "(reference)" not in line)
    csv = (tmp_path / "outputs" / "tables" / "gtsrb-smoke.csv").read_text()
    assert csv.splitlines()[0].endswith("paper_accuracy,ours_accuracy,params,seeds,unfinished")
    found = list((tmp_path / "outputs" / "runs" / experiment).glob("smoke/*/*/seed1"))
    assert len(found) == 3
    [two] = [f for f in found if f.parts[-3] == "cnn-2-st"]
    metrics = json.loads((two / "metrics.json").read_text())
    assert 0 <= metrics["test_error"] <= 100 and metrics["metric"] == "% error"
    if experiment == "gtsrb":  # both transformers in TensorBoard, the first's in the figure
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        from stn_repro.report.figures import gtsrb_figure

        acc = EventAccumulator(str(two / "tb"))
        acc.Reload()
        shown = {"images/input", "images/st1_output", "images/st1_grid", "images/st2_output"}
        assert shown <= set(acc.Tags()["images"])
        figure = gtsrb_figure(two, tmp_path / "gtsrb.png", examples=3)
        assert Image.open(figure).size[0] > 3 * 48  # input, grid, output


# ---- a run's data ------------------------------------------------------------------------------


def test_new_data_never_meets_an_old_result(invoke, tmp_path, offline):
    """The same command on changed files (a test CSV cut short) or a missing folder stops in one
    line, before printing the old result; overwrite=true trains again on the new files."""
    root = tiny_gtsrb(tmp_path / "GTSRB")
    args = ["dataset=gtsrb", "model=gtsrb_cnn", "schedule=smoke", "progress=false",
            "model.width=0.125", f"paths.output_dir={tmp_path / 'out'}",
            f"paths.cache_dir={tmp_path / 'cache'}", "workers=0"]  # fmt: skip
    code, out, err = invoke([*args, f"paths.gtsrb_dir={root}"])
    assert code == 0, err
    [metrics] = (tmp_path / "out").glob("runs/**/metrics.json")
    assert read_json(metrics)["data_key"]
    code, again, err = invoke([*args, f"paths.gtsrb_dir={root}"])
    assert code == 0 and again.splitlines()[-1] == out.splitlines()[-1]  # reused: same data

    csv = root / "GT-final_test.csv"
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:-3]))
    code, _, err = invoke([*args, f"paths.gtsrb_dir={root}"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{metrics} was made from other gtsrb files than {root} holds now" in err
    assert "overwrite=true" in err
    code, _, err = invoke([*args, f"paths.gtsrb_dir={tmp_path / 'gone'}"])
    assert code == 2 and "test error" not in err and str(tmp_path / "gone") in err

    code, out, err = invoke([*args, f"paths.gtsrb_dir={root}", "overwrite=true"])
    assert code == 0, err
    code, _, err = invoke([*args, f"paths.gtsrb_dir={root}"])
    assert code == 0, err


def test_a_checkpoint_of_other_data_is_not_resumed(compose_cfg, tmp_path):
    from stn_repro.engine import train_run

    root = tiny_gtsrb(tmp_path / "GTSRB")
    overrides = ["dataset=gtsrb", "model=gtsrb_cnn", "model.width=0.125", "workers=0",
                 f"paths.gtsrb_dir={root}"]  # fmt: skip
    where = tmp_path / "run"
    train_run(compose_cfg(*overrides), where)
    (where / "metrics.json").unlink()  # as if stopped after its last checkpoint
    csv = root / "Final_Training/Images/00000/GT-00000.csv"
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(UserError, match="checkpoint.pt was made from other gtsrb files"):
        train_run(compose_cfg(*overrides), where)


def endless_gtsrb_run(tmp_path: Path) -> list[str]:
    """The CLI arguments of a smoke run on tiny GTSRB folders, with two DataLoader workers, that
    trains until stopped, writing under ``tmp_path``."""
    root = tiny_gtsrb(tmp_path / "GTSRB")
    return ["dataset=gtsrb", "model=gtsrb_cnn", "schedule=smoke", "progress=false",
            "model.width=0.125", "schedule.iterations=100000", f"paths.gtsrb_dir={root}",
            f"paths.output_dir={tmp_path / 'out'}", f"paths.cache_dir={tmp_path / 'cache'}",
            "workers=2"]  # fmt: skip


def assert_stopped_in_one_line(proc: subprocess.Popen, err: str, tmp_path: Path) -> None:
    """The run stopped on SIGTERM in its training loop, said so in one line, and checkpointed."""
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert len(err.strip().splitlines()) == 1 and "stopped by SIGTERM at iteration" in err, err
    assert list((tmp_path / "out").rglob("checkpoint.pt"))


def test_sigterm_to_the_process_group_stops_with_workers_in_one_line(tmp_path):
    """`timeout` and SLURM signal the whole group: DataLoader workers included. The workers
    leave it to the main process, which saves a checkpoint and stops in one line."""
    args = endless_gtsrb_run(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "stn_repro.cli", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while not list((tmp_path / "out").rglob("tb/events*")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(2)  # into the training loop, its workers started
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert_stopped_in_one_line(proc, err, tmp_path)


SIGNAL_FROM_A_STARTING_WORKER = """
import os, signal, sys
import torch.utils.data._utils.signal_handling as handling
from stn_repro.cli import main

flag, sys.argv = sys.argv[1], ["stn-repro", *sys.argv[2:]]
torch_handlers = handling._set_worker_signal_handlers

def then_signal_the_group():
    torch_handlers()  # from here until worker_init_fn, torch's handler exits on a SIGTERM
    if type(sys._getframe(1).f_locals["dataset"]).__name__ != "StoredImages":
        return  # a worker preprocessing the files, or evaluating (on a Subset)
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL))  # the first training worker only
    except FileExistsError:
        return
    os.killpg(0, signal.SIGTERM)  # as `timeout` does: the whole group, this worker included

handling._set_worker_signal_handlers = then_signal_the_group
main()
"""


def test_sigterm_while_a_worker_starts_stops_in_one_line(tmp_path):
    """A SIGTERM to the group that lands while a DataLoader worker starts, before it can ignore
    the signal: the worker lives on (it was forked with the signal held), and the run still
    checkpoints and stops in one line; before, the worker died and the run ended in a traceback
    (and could hang on its other workers)."""
    script = tmp_path / "signal_from_a_starting_worker.py"
    script.write_text(SIGNAL_FROM_A_STARTING_WORKER)
    args = endless_gtsrb_run(tmp_path)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "signalled"), *args],
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        _, err = proc.communicate(timeout=120)  # before: a traceback, then a hang at exit
    finally:
        with contextlib.suppress(ProcessLookupError):  # what is left of the group, if anything
            os.killpg(proc.pid, signal.SIGKILL)
    assert (tmp_path / "signalled").exists()
    assert_stopped_in_one_line(proc, err, tmp_path)
