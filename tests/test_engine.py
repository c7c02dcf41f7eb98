"""Runs and experiments end to end on the smoke schedule: tables, resume, clear errors."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import finished_cells, only

from stn_repro import engine, tasks
from stn_repro.config import PACKAGE_ROOT, config_hash, run_dir
from stn_repro.data import feeds
from stn_repro.engine import TrainingDiverged, train_run
from stn_repro.errors import UserError
from stn_repro.experiment import run_experiment


def test_one_run_writes_metrics_tensorboard_and_checkpoint(compose_cfg):
    cfg = compose_cfg("dataset=mnist_rts", "model=st_cnn", "model/transform=tps", "seed=2")
    where = run_dir(cfg)
    assert where.parts[-5:-2] == ("adhoc", "smoke", "mnist-rts-st-cnn-tps")
    assert re.fullmatch("[0-9a-f]{8}", where.parts[-2]) and where.name == "seed2"
    metrics = train_run(cfg, where)
    assert 0 <= metrics["test_error"] <= 100 and metrics["test_images"] == 128
    assert metrics["params"] > 300_000 and metrics["iterations"] == 6
    assert json.loads((where / "metrics.json").read_text()) == metrics
    assert (where / "checkpoint.pt").exists() and (where / "config.yaml").exists()
    events = list((where / "tb").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(where / "tb"))
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/error", "train/lr", "test/error"} <= set(tags["scalars"])
    assert {"images/input", "images/st_output", "images/st_grid"} <= set(tags["images"])
    assert {"theta/tps_x00", "theta/tps_y15"} <= set(tags["histograms"])  # named parameters
    [chart] = acc.Tensors("custom_scalars__config__")  # train/val/test error on one chart
    assert b"val/error" in chart.tensor_proto.string_val[0]
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    shown = HParamsPluginData.FromString(content).session_start_info.hparams  # the table's row
    assert shown["transform"].string_value == "tps" and shown["model"].string_value == "st_cnn"
    # A second call skips the finished run.
    assert train_run(cfg, where) == metrics


@pytest.mark.slow  # `make test-slow`
def test_smoke_experiment_writes_a_table_with_all_rows(compose_cfg, smoke, tmp_path,
                                                       monkeypatch):  # fmt: skip
    from stn_repro import experiment

    tables = tmp_path / "outputs" / "tables"
    seen, real = [], experiment.train_run

    def spy(cfg, where, meta):  # the table as each run starts
        md = tables / "table1-smoke.md"
        seen.append(md.read_text() if md.exists() else "")
        return real(cfg, where, meta)

    monkeypatch.setattr(experiment, "train_run", spy)
    overrides = [*smoke, "experiment=table1_rts", "experiment.seeds=[1,2]"]
    cfg = compose_cfg("experiment=table1_rts", "experiment.seeds=[1,2]")
    run_experiment(cfg, overrides)
    md = (tables / "table1-smoke.md").read_text()
    # Each finished run is in the table before the next one trains, not only at the end.
    assert len(seen) == 16 and seen[0] == "" and "1 of 16 runs finished" in seen[1]
    assert "| FCN | " in seen[2] and "(2) |" in seen[2].split("| FCN | ")[1].splitlines()[0]
    rows = [line for line in md.splitlines() if line.startswith("| ") and "(2) |" in line]
    assert len(rows) == 8 and "| Model | RTS: ours | RTS: paper |" in md
    assert rows[-1].startswith("| ST-CNN TPS | ") and rows[-1].endswith(" (2) | 0.5 |")
    csv_lines = (tables / "table1-smoke.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 9
    assert "\\begin{tabular}" in (tables / "table1-smoke.tex").read_text()
    # table_only rebuilds from finished runs without training.
    (tables / "table1-smoke.md").unlink()
    cfg.table_only = True
    run_experiment(cfg, overrides)
    assert (tables / "table1-smoke.md").read_text().count(" (2) |") == 8


def test_one_row_of_an_experiment(compose_cfg, smoke, tmp_path):
    overrides = [*smoke, "experiment=table1_tc", "row=ST-CNN Aff", "seed=3"]
    cfg = compose_cfg("experiment=table1_tc", "row=ST-CNN Aff", "seed=3")
    run_experiment(cfg, overrides)
    runs = list((tmp_path / "outputs" / "runs").glob("*/*/*/*/*/metrics.json"))
    assert [p.parts[-6:-3] + p.parts[-2:-1] for p in runs] == [
        ("table1_tc", "smoke", "st-cnn-aff", "seed3")
    ]
    metrics = json.loads(runs[0].read_text())
    assert metrics["row"] == "ST-CNN Aff" and metrics["column"] == "TC"
    cfg.row = "ST-CNN TPS"
    with pytest.raises(UserError, match="has no row 'ST-CNN TPS'"):
        run_experiment(cfg, overrides)


def test_one_row_without_seed_says_which_seed_it_trains(compose_cfg, smoke, capsys):
    # row= trains one seed; the line says so and how to train the table's other seeds.
    cfg = compose_cfg("experiment=table1_rts", "row=FCN", "experiment.seeds=[1,2,3]")
    run_experiment(cfg, [*smoke, "experiment=table1_rts", "row=FCN", "experiment.seeds=[1,2,3]"])
    out = capsys.readouterr().out
    assert "row=FCN trains seed 1 only" in out and "row=FCN seed=1,2,3 trains them all" in out
    assert "run 1 of 1: FCN seed 1" in out


def test_keys_added_later_leave_earlier_runs_their_identity(compose_cfg):
    """Hashes recorded before the SVHN keys (task, positions, width, dropout) existed."""
    assert config_hash(compose_cfg("schedule=fast")) == "1f1ac9cee9a91f30"
    assert config_hash(compose_cfg("schedule=fast", "model=fcn")) == "8931173e89e07e5d"


def test_label_smoothing_is_the_mix_of_cross_entropy_and_the_uniform_targets_loss():
    logits, labels, eps = torch.randn(5, 3, 10), torch.randint(0, 10, (5, 3)), 0.1
    for task, out, y in [(tasks.Classify(), logits[:, 0], labels[:, 0]),
                         (tasks.Sequence(), logits, labels)]:  # fmt: skip
        log_p = out.log_softmax(-1)
        nll = -log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        expected = (1 - eps) * nll + eps * -log_p.mean(-1)  # (B,) or (B, L)
        expected = expected.mean() if y.dim() == 1 else expected.sum(1).mean()
        torch.testing.assert_close(task.loss(out, y, eps), expected)


def test_adamw_decays_the_weights_apart_from_the_gradient(compose_cfg):
    """A step with a zero gradient shrinks AdamW's weights by lr * weight_decay exactly (the
    decay is decoupled from Adam's moments)."""
    cfg = compose_cfg("schedule.optimizer=adamw", "schedule.weight_decay=0.5", "schedule.lr=0.01")
    layer = torch.nn.Linear(3, 2)
    start = layer.weight.detach().clone()
    optimizer = engine.make_optimizer(layer, cfg.schedule)
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    torch.testing.assert_close(layer.weight.detach(), start * (1 - 0.01 * 0.5))


def test_training_uses_the_schedules_label_smoothing(compose_cfg, monkeypatch):
    cfg = compose_cfg("dataset=mnist_r", "model=fcn", "schedule.label_smoothing=0.2")
    seen = []
    real = tasks.Classify.loss
    monkeypatch.setattr(tasks.Classify, "loss",
                        lambda self, *a: seen.append(a[2]) or real(self, *a))  # fmt: skip
    train_run(cfg, run_dir(cfg))
    assert seen == [0.2] * cfg.schedule.iterations


def test_the_moving_average_is_what_a_run_scores_and_keeps(compose_cfg, monkeypatch):
    """With ``schedule.ema_decay=d`` the scored weights are a_1 = w_1, a_k = d a_(k-1) +
    (1 - d) w_k over the trained weights w_k after each step, computed here on their own."""
    from stn_repro.trained import load_trained

    decay = 0.7
    cfg = compose_cfg("dataset=mnist_r", "model=st_fcn", "model/transform=affine",
                      f"schedule.ema_decay={decay}")  # fmt: skip
    trained = []
    real = engine.make_optimizer

    def recording(model, schedule):
        optimizer = real(model, schedule)
        optimizer.register_step_post_hook(lambda *_: trained.append(
            {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return optimizer

    evaluated = []  # the weights each evaluation scores
    real_evaluate = engine.evaluate

    def evaluate(model, *args):
        evaluated.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real_evaluate(model, *args)

    monkeypatch.setattr(engine, "make_optimizer", recording)
    monkeypatch.setattr(engine, "evaluate", evaluate)
    where = run_dir(cfg)
    train_run(cfg, where)
    assert len(trained) == cfg.schedule.iterations
    expected = dict(trained[0])
    for weights in trained[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    ckpt = torch.load(where / "checkpoint.pt")
    scored = load_trained(cfg, where).state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(scored[name], value, msg=name)  # kept
        torch.testing.assert_close(evaluated[-1][name], value, msg=name)  # the test error's
        torch.testing.assert_close(ckpt["model"][name], trained[-1][name], msg=name)  # resumed
    assert any(not torch.equal(scored[k], trained[-1][k]) for k in scored)


@pytest.mark.parametrize("data", ["mnist", "mnist-averaged", "svhn"])
def test_resume_after_interruption_continues_from_the_checkpoint(compose_cfg, monkeypatch,
                                                                 tmp_path, data):  # fmt: skip
    if data.startswith("mnist"):
        averaged = ["schedule.ema_decay=0.5"] if data == "mnist-averaged" else []
        cfg = compose_cfg("dataset=mnist_r", "model=st_fcn", "model/transform=affine", *averaged)
    else:  # file-backed data read by DataLoader workers, dropout, four transformers
        from svhn_files import tiny_svhn

        root = tiny_svhn(tmp_path / "SVHN")
        cfg = compose_cfg("dataset=svhn64", "model=svhn_st_multi", "model.width=0.125",
                          f"paths.svhn_dir={root}", "dataset.params.validation=10", "workers=2")
    whole = train_run(cfg, run_dir(cfg) / "whole")
    expected = torch.load(run_dir(cfg) / "whole" / "checkpoint.pt")

    where = run_dir(cfg) / "interrupted"
    real = engine.lr_factor
    seen = []

    def record(schedule, iteration):  # interrupts the first run at iteration 5
        seen.append(iteration)
        if iteration == 5 and seen.count(5) == 1:
            raise KeyboardInterrupt
        return real(schedule, iteration)

    monkeypatch.setattr(engine, "lr_factor", record)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, where)
    assert torch.load(where / "checkpoint.pt")["iteration"] == 4  # checkpoint_every = 2
    assert not (where / "metrics.json").exists()
    resumed = train_run(cfg, where)
    assert seen == [0, 1, 2, 3, 4, 5, 4, 5]  # the second run starts at the checkpoint
    final = torch.load(where / "checkpoint.pt")
    for name, value in expected["model"].items():  # the same model as the uninterrupted run
        torch.testing.assert_close(final["model"][name], value, msg=name)
    for name, value in expected.get("averaged", {}).items():  # and the same moving average
        torch.testing.assert_close(final["averaged"][name], value, msg=name)
    assert ("averaged" in final) == (data == "mnist-averaged")
    assert resumed["test_error"] == whole["test_error"]


def test_fresh_each_epoch_draws_each_epoch_and_caches_only_the_test_split(
    compose_cfg, monkeypatch, tmp_path
):
    cfg = compose_cfg("dataset=mnist_r", "model=fcn", "dataset.fresh_each_epoch=true",
                      "schedule.train_limit=32")  # fmt: skip
    real, drawn = feeds.load_split, []

    def record(dataset, split, *args, epoch=None, **kwargs):
        drawn.append((split, epoch))
        return real(dataset, split, *args, epoch=epoch, **kwargs)

    monkeypatch.setattr(feeds, "load_split", record)
    metrics = train_run(cfg, run_dir(cfg))
    # 6 steps of 16 on 32 digits: epochs 0, 1 and 2, each drawn once (and 3 perhaps, drawn
    # ahead in the background); no fixed train split.
    assert drawn[:2] == [("train", 0), ("test", None)]
    epochs = [epoch for split, epoch in drawn[2:]]
    assert sorted(epochs) in ([1, 2], [1, 2, 3]) and ("test", None) not in drawn[2:]
    [cached] = (tmp_path / "cache").glob("*.h5")
    assert cached.name.startswith("mnist_r-test-")
    assert metrics["data"].endswith("fresh distortions each epoch")


@pytest.mark.parametrize("start", [1, 3])  # resumed mid-epoch 0, and in epoch 1
def test_fresh_epochs_drawn_ahead_are_the_epochs_drawn_in_place(compose_cfg, start):
    cfg = compose_cfg("dataset=mnist_r", "model=fcn", "dataset.fresh_each_epoch=true",
                      "schedule.train_limit=32", "schedule.batch_size=16")  # fmt: skip
    feed = feeds.MemoryFeed(cfg, torch.device("cpu"))
    batches = feed.train_batches(start)
    for iteration in range(start, 8):  # through epoch 3
        x, y = next(batches)
        split = feed.train_split(iteration * 16 // 32)
        idx = feeds.batch_indices(32, 16, iteration, int(cfg.seed))
        assert torch.equal(x, feed.batch(split, idx)[0]) and torch.equal(y, split.labels[idx])
    batches.close()


def test_another_config_in_an_explicit_run_dir_is_refused_naming_the_difference(
    compose_cfg, tmp_path
):
    where = tmp_path / "mine"
    train_run(compose_cfg("model=fcn", f"run_dir={where}"), where)
    changed = compose_cfg("model=fcn", f"run_dir={where}", "schedule.lr=0.02")
    with pytest.raises(UserError, match=r"another config \(schedule.lr: 0.01 -> 0.02\); add "
                       "overwrite=true"):  # fmt: skip
        train_run(changed, where)
    changed.overwrite = True
    assert train_run(changed, where)["config_hash"] == config_hash(changed)


def test_nan_loss_stops_with_a_clear_message(compose_cfg, monkeypatch):
    cfg = compose_cfg("model=fcn")
    real = tasks.F.cross_entropy
    monkeypatch.setattr(tasks.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingDiverged, match="the loss became nan at iteration 0"):
        train_run(cfg, run_dir(cfg))
    assert not (run_dir(cfg) / "checkpoint.pt").exists()  # a diverged model is never saved


def cli(*args, tmp_path):
    env = {**os.environ, "STN_REPRO_ROOT": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "stn_repro.cli", *args, "schedule=smoke",
         f"paths.data_dir={PACKAGE_ROOT / 'datasets'}"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args,message",
    [
        (["model=resnet"], "model=resnet: no such model"),
        (["model=cnn", "+model/transform=tps"], "model cnn has no spatial transformer"),
        (["model=st_cnn", "model/transform=affine3d"], "transform affine3d is 3D but the data"),
        (["row=3"], "need an experiment"),
    ],
)
def test_bad_overrides_stop_before_training(tmp_path, args, message):
    result = cli(*args, tmp_path=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs" / "runs").exists()


@pytest.mark.slow  # `make test-slow`
def test_smoke_addition_and_3d_experiments_write_their_tables(compose_cfg, smoke, tmp_path):
    for experiment, table, rows in [("table4_addition", "table4", 8), ("fig_3d", "table3d", 2)]:
        cfg = compose_cfg(f"experiment={experiment}", "experiment.seeds=[1]")
        run_experiment(cfg, [*smoke, f"experiment={experiment}", "experiment.seeds=[1]"])
        md = (tmp_path / "outputs" / "tables" / f"{table}-smoke.md").read_text()
        assert md.count(" (1) |") == rows, md
    md = (tmp_path / "outputs" / "tables" / "table4-smoke.md").read_text()
    [tps] = [line for line in md.splitlines() if line.startswith("| 2xST-FCN TPS |")]
    assert tps.endswith(" (1) | 5.8 |")
    runs = tmp_path / "outputs" / "runs"
    st3d = json.loads((only(runs, "fig_3d/smoke/3d-st-cnn/*/seed1") / "metrics.json").read_text())
    assert st3d["transform"] == "affine3d"
    # The figures draw from the finished runs.
    from PIL import Image

    from stn_repro.report.figures import addition_figure, volume_figure

    png = addition_figure(
        only(runs, "table4_addition/smoke/2xst-fcn-tps/*/seed1"), tmp_path / "a.png", 3
    )
    assert Image.open(png).size[0] > Image.open(png).size[1]  # 6 columns, 3 rows
    png = volume_figure(only(runs, "fig_3d/smoke/3d-st-cnn/*/seed1"), tmp_path / "v.png", 2)
    assert Image.open(png).size == (4 * 62 + 2, 2 * 62 + 2)


@pytest.mark.slow  # `make test-slow`
def test_multirun_fans_rows_out_then_table_only_collects_them(tmp_path):
    result = cli("-m", "experiment=table1_tc", "row=0,3", "progress=false", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    found = (tmp_path / "outputs/runs").glob("*/*/*/*/*/metrics.json")
    runs = sorted(p.parts[-4] for p in found)
    assert runs == ["fcn", "st-cnn-aff"]
    result = cli("experiment=table1_tc", "table_only=true", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert finished_cells(tmp_path, "TC") == 2


@pytest.mark.slow  # `make test-slow`
def test_held_out_digits_are_the_validation_split_and_never_trained_on(compose_cfg):
    """dataset.validation=N: the last N training digits, drawn once, are ``val``; the training
    split (fixed, or drawn anew each epoch) is the first 60,000 - N; test is untouched."""
    from stn_repro.data.sources import load_mnist

    _, labels = load_mnist(PACKAGE_ROOT / "datasets", "train")
    for fresh in ("false", "true"):
        cfg = compose_cfg("dataset=mnist_r", "dataset.validation=100",
                          "schedule.train_limit=null", "schedule.test_limit=null",
                          f"dataset.fresh_each_epoch={fresh}")  # fmt: skip
        feed = feeds.MemoryFeed(cfg, torch.device("cpu"))
        assert len(feed.train) == 59_900 and len(feed.splits["val"]) == 100
        assert torch.equal(feed.splits["val"].labels, labels[-100:])
        assert torch.equal(feed.train.labels, labels[:-100])
        assert torch.equal(feed.train_split(3).labels, labels[:-100])  # any epoch's draws
        assert len(feed.splits["test"]) == 10_000


def test_a_run_records_its_validation_error_against_time_and_images(compose_cfg):
    cfg = compose_cfg("model=fcn", "dataset.validation=40", "schedule.log.eval_every=2")
    metrics = train_run(cfg, run_dir(cfg))
    curve = metrics["curve"]
    assert metrics["curve_split"] == "val" and metrics["val_images"] == 40
    assert [p["iteration"] for p in curve] == [2, 4, 6]
    assert [p["images"] for p in curve] == [32, 64, 96]
    assert curve[-1]["error"] == metrics["val_error"]
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(curve, curve[1:], strict=False))


@pytest.fixture
def generated_sizes(monkeypatch):
    """Call it to start recording how many digits each generator call distorts (a list)."""
    import stn_repro.data as data

    def start() -> list[int]:
        sizes, real = [], data.generate

        def spy(name, digits, *args, **kwargs):
            sizes.append(len(digits))
            return real(name, digits, *args, **kwargs)

        monkeypatch.setattr(data, "generate", spy)
        return sizes

    return start


@pytest.mark.slow  # `make test-slow`
def test_held_out_addition_pairs_never_meet_a_training_digit(compose_cfg, generated_sizes):
    """Table 4's validation pairs: both digits of a held-out pair are held-out digits, both of
    a training pair (any epoch) training digits; the test pairs come from the test digits."""
    from stn_repro.data.sources import load_mnist

    _, labels = load_mnist(PACKAGE_ROOT / "datasets", "train")
    held = 300
    cfg = compose_cfg("dataset=mnist_addition", "model=fcn", f"dataset.validation={held}",
                      "schedule.train_limit=null", "schedule.test_limit=null")  # fmt: skip
    feed = feeds.MemoryFeed(cfg, torch.device("cpu"))
    generated = generated_sizes()  # what is generated from here on
    val = feed.splits["val"]
    assert len(val) == held and len(feed.train) == 60_000 - held
    partner = val.params[:, 8].long()
    assert partner.max() < held and len(partner.unique()) > held / 2  # among the held-out
    assert torch.equal(val.labels, labels[-held:] + labels[-held:][partner])
    fresh = feed.train_split(2)  # an epoch's draws: the training digits only, none wasted
    assert generated == [60_000 - held] and len(fresh) == 60_000 - held
    for split in (feed.train, fresh):
        partner = split.params[:, 8].long()
        assert partner.max() < 60_000 - held
        assert torch.equal(split.labels, labels[:-held] + labels[partner])
    _, test_labels = load_mnist(PACKAGE_ROOT / "datasets", "test")
    test = feed.splits["test"]
    assert torch.equal(test.labels, test_labels + test_labels[test.params[:, 8].long()])


@pytest.mark.parametrize(("dataset", "parts"), [("mnist_tc", [59_700, 300]),
                                                ("mnist_rts", [60_000])])  # fmt: skip
def test_only_generators_drawing_other_digits_draw_the_held_out_ones_apart(
        compose_cfg, generated_sizes, dataset, parts):  # fmt: skip
    """TC's clutter comes from the digits generated with it: the 300 held-out digits are
    generated apart (their clutter from among themselves); a generator that draws no other
    digit generates the split in one call, the same bits as before held-out pools existed."""
    import stn_repro.data as data

    calls = generated_sizes()
    cfg = compose_cfg(f"dataset={dataset}", "dataset.validation=300")
    split = data.load_split(cfg.dataset, "train", cfg.paths.data_dir, cfg.paths.cache_dir,
                            epoch=0)  # fmt: skip
    assert calls == parts and len(split) == 60_000


@pytest.mark.slow  # `make test-slow`
def test_an_experiment_says_where_it_is_and_keeps_what_the_terminal_showed(tmp_path):
    args = ["experiment=table1_tc", "experiment.seeds=[1]", "progress=false"]
    first = cli(*args, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    start, end = [line for line in first.stdout.splitlines() if "run 3 of 4" in line]
    assert start.startswith("[table1_tc] run 3 of 4: ST-FCN Aff seed 1: new -> ")
    assert re.search(r": \d+\.\d\d% error, [\d,]+ params, \d+\.\d min; 1 run left, about \d+ "
                     r"min \(each model's speed so far; 1 of them on models not yet timed, at "
                     r"the average\)$", end), end
    [log] = (tmp_path / "outputs" / "hydra").glob("*/stn-repro.log")
    assert start in log.read_text() and "table written" in log.read_text()
    logs = list((tmp_path / "outputs" / "runs").rglob("log.txt"))
    assert len(logs) == 4 and all(p.parent.name == "seed1" for p in logs)
    again = cli(*args, tmp_path=tmp_path)
    assert "run 3 of 4: ST-FCN Aff seed 1: skipped: finished" in again.stdout


def test_the_eta_reckons_each_model_at_its_own_speed():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from stn_repro.experiment import Clock

    def run(model: str, iterations: int):
        cfg = OmegaConf.create({"model": {"name": model, "transform": None},
                                "schedule": {"iterations": iterations, "batch_size": 10}})
        return SimpleNamespace(cfg=cfg, exp=SimpleNamespace(name="t"),
                               row=SimpleNamespace(name=model), seed=1)  # fmt: skip

    a, b, c, d, e = run("fcn", 1000), run("cnn", 100), run("fcn", 2000), run("cnn", 100), \
        run("st_cnn", 100)  # fmt: skip
    clock = Clock([a, b, c, d, e])
    assert clock.eta() == ""  # nothing timed yet
    clock.done(a, 10.0, trained=True, start=0)  # fcn: 1 ms per image
    clock.done(b, 100.0, trained=True, start=0)  # cnn: 100 ms per image
    # c: 20,000 images x 1 ms; d: 1,000 x 100 ms; e (untimed): 1,000 x the average 110/11,000
    assert clock.eta() == ("; 3 runs left, about 2 min (each model's speed so far; 1 of them on "
                           "models not yet timed, at the average)")  # fmt: skip
    clock.done(e, 30.0, trained=True, start=50)  # resumed halfway: 500 images, 60 ms each
    assert clock.eta().startswith("; 2 runs left, about 2 min (each model's speed so far)")
    reused = Clock([a, b, c], finished=[c])  # c finished before the launch: not left
    reused.done(a, 10.0, trained=True, start=0)
    assert reused.eta().startswith("; 1 run left, about 1 min (")  # b, not c


def test_the_eta_counts_a_colocalisation_by_its_starts():
    """A co-localisation run's checkpoint counts every start's steps (start k's step s is
    k * iterations + s), so one resumed past its first start is not reckoned negative."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from stn_repro.experiment import Clock, run_length

    def run(name: str):
        cfg = OmegaConf.create({"experiment": {"runner": "coloc"}, "model": {"name": "cnn"},
                                "coloc": {"iterations": 1000, "starts": 3},
                                "schedule": {"iterations": 20000, "batch_size": 128}})  # fmt: skip
        return SimpleNamespace(cfg=cfg, exp=SimpleNamespace(name="t"),
                               row=SimpleNamespace(name=name), seed=1)  # fmt: skip

    assert run_length(run("0").cfg) == (3000, 1)
    a, b = run("0"), run("1")
    clock = Clock([a, b])
    clock.done(a, 60.0, trained=True, start=1800)  # the last 1,200 steps of 3,000 in a minute
    assert clock.eta().startswith("; 1 run left, about 2 min (")  # 3,000 steps at 50 ms
