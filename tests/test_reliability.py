"""Reliability: advice that works as written, stop signals, concurrent launches, full disks,
damaged files, resume details (TensorBoard, throughput), code versions, multirun failures."""

from __future__ import annotations

import errno
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bad_inputs import QUICK, base_args
from conftest import finished_cells

from stn_repro import engine, files
from stn_repro.config import PACKAGE_ROOT
from stn_repro.files import Busy, CorruptFile, locked, read_json, seal, unseal, write_json

DATA = PACKAGE_ROOT / "datasets"


def metrics_files(tmp: Path) -> list[Path]:
    return sorted((tmp / "outputs" / "runs").rglob("metrics.json"))


def model_of(run: Path) -> dict:
    return torch.load(io.BytesIO(unseal((run / "checkpoint.pt").read_bytes())))["model"]


def assert_same_model(a: Path, b: Path) -> None:
    for name, value in model_of(a).items():
        assert torch.equal(value, model_of(b)[name]), name


# ---- durable files ---------------------------------------------------------------------------


def test_sealed_bytes_detect_truncation_and_flips():
    blob = seal(b"some checkpoint bytes")
    assert unseal(blob) == b"some checkpoint bytes"
    for bad in (blob[:-1], blob[:5], b"", blob[:3] + b"X" + blob[4:]):
        with pytest.raises(CorruptFile):
            unseal(bad)


def test_json_checksum_detects_an_edited_value(tmp_path):
    path = tmp_path / "m.json"
    written = write_json(path, {"test_error": 1.25})
    assert read_json(path) == written
    path.write_text(path.read_text().replace("1.25", "0.25"))
    with pytest.raises(CorruptFile, match="checksum"):
        read_json(path)


def test_write_atomic_removes_temporaries_of_dead_writers(tmp_path):
    path = tmp_path / "f.bin"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (tmp_path / f"f.bin.tmp{dead}").write_bytes(b"left over")
    files.write_atomic(path, b"new")
    assert path.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [path]


def test_a_held_lock_is_busy_for_another_process(tmp_path):
    target = tmp_path / "run"
    code = f"from stn_repro.files import locked\nwith locked({str(target)!r}):\n    input()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with locked(target, wait=False):
                    pass
                time.sleep(0.1)  # not yet taken by the holder
            except Busy:
                break
        else:
            pytest.fail("the other process never held the lock")
    finally:
        holder.communicate(b"\n", timeout=60)
    with locked(target, wait=False):  # released when the holder ends
        pass


# ---- every piece of advice works as written ----------------------------------------------------


def nan_at_lr(value: float):
    """An ``engine.lr_factor`` that makes training diverge when ``schedule.lr == value``."""
    real = engine.lr_factor
    return lambda schedule, it: float("nan") if schedule.lr == value else real(schedule, it)


@pytest.mark.parametrize(
    "first,advice",
    [
        (["schedule.lr=0.03"], "schedule.lr=0.003"),  # the loss became nan (lr_factor patched)
        (["run_dir={tmp}/mine", "schedule.lr=0.02"], "overwrite=true"),  # another config
        (["experiment=table1_tc", "seed=5"], "seed=5 -> experiment.seeds=[5]"),  # replace
        (["dataset.params.canvas=30"], "dataset.params.canvas=34"),
        (["paths.output_dir=/proc/x"], "paths.output_dir={tmp}/elsewhere"),
    ],
    ids=["diverged", "other-config", "seed-without-row", "canvas", "unwritable"],
)
def test_advice_in_an_error_works_as_written(first, advice, invoke, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "lr_factor", nan_at_lr(0.03))
    base = [*base_args(tmp_path), "model=fcn", "schedule.iterations=4"]
    if "overwrite" in advice:  # a finished run of another config in that run_dir
        assert invoke([*base, f"run_dir={tmp_path}/mine"])[0] == 0
    args = [a.format(tmp=tmp_path) for a in first]
    first_advice, advice = advice, advice.format(tmp=tmp_path)
    drop, _, advice = advice.rpartition(" -> ")
    code, _, err = invoke([*base, *args])
    shown = advice if "{tmp}" not in first_advice else advice.split("=")[0] + "=..."
    assert code == 2 and shown in err and (not drop or f"replace {drop} with" in err), err
    code, out, err = invoke([*base, *[a for a in args if a != drop], advice])
    assert code == 0, err


def test_corrupt_checkpoints_advice_overwrite_retrains(invoke, tmp_path):
    args = [*base_args(tmp_path), *QUICK]
    assert invoke(args)[0] == 0
    [run] = [m.parent for m in metrics_files(tmp_path)]
    (run / "metrics.json").unlink()
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).write_bytes(b"")
    code, _, err = invoke(args)
    assert code == 2 and "add overwrite=true" in err
    code, _, err = invoke([*args, "overwrite=true"])
    assert code == 0, err
    assert read_json(run / "metrics.json")["iterations"] == 6


# ---- resume details ------------------------------------------------------------------------------


def test_resume_keeps_the_tensorboard_point_at_the_resume_step_and_reports_throughput(
    invoke, tmp_path
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = [*base_args(tmp_path), *QUICK]  # smoke: scalars every 2 steps, checkpoints every 2
    assert invoke(args)[0] == 0
    [run] = [m.parent for m in metrics_files(tmp_path)]
    (run / "metrics.json").unlink()  # killed after its last checkpoint (step 6)
    (run / "checkpoint.pt").unlink()  # ... and before it: resumes from step 4
    code, _, err = invoke(args)
    assert code == 0, err
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == [2, 4, 6], steps  # 4 kept (logged before the checkpoint), 6 logged again
    metrics = read_json(run / "metrics.json")
    assert metrics["images_per_s"] > 0 and metrics["code"]["version"]


def test_a_run_from_other_code_is_kept_with_a_warning(invoke, tmp_path):
    args = [*base_args(tmp_path), *QUICK]
    assert invoke(args)[0] == 0
    [path] = metrics_files(tmp_path)
    metrics = read_json(path)
    if metrics["code"]["commit"] is None:
        pytest.skip("not a git checkout: no commit to compare")
    write_json(path, {**metrics, "code": {"version": "0.0.1", "commit": "0123456789ab"}})
    code, out, err = invoke(args)
    assert code == 0 and "written by stn-repro commit 0123456789ab" in err
    assert read_json(path)["test_error"] == metrics["test_error"]  # kept, not retrained


# ---- full disks -------------------------------------------------------------------------------


def enospc_for(suffix: str, real):
    def write(path, data):
        if str(path).endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    return write


def test_disk_full_while_writing_the_cache_stops_in_one_line_and_loses_nothing(
    invoke, tmp_path, monkeypatch
):
    from stn_repro.data import cache

    assert invoke([*base_args(tmp_path), *QUICK])[0] == 0
    [finished] = metrics_files(tmp_path)
    kept = finished.read_bytes()
    monkeypatch.setattr(cache, "write_atomic", enospc_for(".h5", cache.write_atomic))
    code, _, err = invoke([*base_args(tmp_path), *QUICK, "dataset=mnist_r"])
    assert code == 2 and err.count("\n") == 1
    assert "no space left on the device while writing" in err and ".h5" in err
    assert finished.read_bytes() == kept and not list((tmp_path / "cache").glob("*.tmp*"))


def test_disk_full_while_checkpointing_resumes_from_the_checkpoint_before(
    invoke, tmp_path, monkeypatch
):
    from stn_repro import runs

    real, calls = runs.write_atomic, []

    def full_on_third(path, data):
        calls.append(path)
        if len(calls) == 3:  # the checkpoint at step 6
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(runs, "write_atomic", full_on_third)
    args = [*base_args(tmp_path), *QUICK]
    code, _, err = invoke(args)
    assert code == 2 and "no space left" in err
    monkeypatch.setattr(runs, "write_atomic", real)
    code, _, err = invoke(args)
    assert code == 0 and "resuming from checkpoint.prev.pt" not in err  # checkpoint.pt was gone
    [done] = metrics_files(tmp_path)
    assert read_json(done)["iterations"] == 6


# ---- whole processes: signals, concurrency, multirun ---------------------------------------------


def cli(tmp: Path, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "STN_REPRO_ROOT": str(tmp)}
    env.pop("HYDRA_FULL_ERROR", None)
    flags = [a for a in args if a.startswith("-")]  # e.g. -m, before the overrides
    args = [*flags, *base_args(tmp), *[a for a in args if a not in flags]]
    return subprocess.Popen([sys.executable, "-m", "stn_repro.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            **popen)  # fmt: skip


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            pytest.fail("timed out")
        time.sleep(0.05)


LONG = ["model=fcn", "schedule.iterations=600", "schedule.log.checkpoint_every=100000",
        "schedule.log.image_every=100000", "schedule.log.eval_every=100000"]  # fmt: skip


@pytest.mark.parametrize("signum", [
    pytest.param(signal.SIGTERM, marks=pytest.mark.slow),  # test_gtsrb's two SIGTERM tests
    signal.SIGINT, signal.SIGUSR1,
])  # fmt: skip
def test_a_stop_signal_saves_a_checkpoint_and_the_next_launch_resumes(tmp_path, signum):
    proc = cli(tmp_path, *LONG)
    wait_for(lambda: list((tmp_path / "outputs" / "runs").rglob("tb/events*")))
    time.sleep(0.3)  # into the training loop
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert err.strip().splitlines() == [err.strip()] and "Traceback" not in err
    name = signal.Signals(signum).name
    assert f"stopped by {name} at iteration" in err and "rerun the same command to resume" in err
    [ckpt] = (tmp_path / "outputs" / "runs").rglob("checkpoint.pt")
    stopped_at = torch.load(io.BytesIO(unseal(ckpt.read_bytes())))["iteration"]
    assert 0 < stopped_at < 600 and f"at iteration {stopped_at} of" in err
    if signum != signal.SIGTERM:
        return
    proc = cli(tmp_path, *LONG)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    whole = tmp_path / "whole"
    proc = cli(whole, *LONG)
    assert proc.communicate(timeout=300) and proc.returncode == 0
    [resumed] = [m.parent for m in metrics_files(tmp_path)]
    [uninterrupted] = [m.parent for m in metrics_files(whole)]
    assert_same_model(resumed, uninterrupted)


def test_a_stopped_experiment_still_writes_its_table_with_each_cells_progress(tmp_path):
    proc = cli(tmp_path, "experiment=table1_tc", "experiment.seeds=[1]", "row=0", *LONG[1:],
               "schedule.log.checkpoint_every=50")  # fmt: skip
    wait_for(lambda: list((tmp_path / "outputs" / "runs").rglob("checkpoint.pt")))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    text = (tmp_path / "outputs" / "tables" / "table1-smoke.md").read_text()
    assert re.search(r"\| FCN \| seed 1 at \d+% \|", text), text
    assert "| CNN | seed 1 not started |" in text and "0 of 4 runs finished" in text
    assert "table written" in out


def test_four_identical_launches_train_each_run_once(tmp_path):
    args = ["experiment=table1_tc", "experiment.seeds=[1]"]
    procs = [cli(tmp_path, *args) for _ in range(4)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [r[1] for r in results]
    runs = [m.parent for m in metrics_files(tmp_path)]
    assert len(runs) == 4  # the TC column's rows
    for run in runs:  # one process wrote each run's TensorBoard events (name: ...<pid>.<n>)
        pids = {p.name.split(".")[-2] for p in (run / "tb").glob("events.out.tfevents.*")}
        assert len(pids) == 1, run
    assert finished_cells(tmp_path, "TC") == 4
    assert len(list((tmp_path / "outputs" / "hydra").iterdir())) == 4  # distinct folders


@pytest.mark.slow  # `make test-slow`
def test_jobs_start_processes_that_share_the_runs(tmp_path):
    def launch(*extra: str) -> dict:
        proc = cli(tmp_path, "experiment=table1_tc", "experiment.seeds=[1]", "jobs=3", *extra)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        trainers = {}
        for run in [m.parent for m in metrics_files(tmp_path)]:  # each trained by one process
            pids = {p.name.split(".")[-2] for p in (run / "tb").glob("events.out.tfevents.*")}
            assert len(pids) == 1, run
            trainers[run] = pids.pop()
        return trainers

    first = launch()
    assert len(first) == 4  # the TC column's rows
    assert len(list((tmp_path / "outputs" / "hydra").iterdir())) == 3  # three processes
    assert finished_cells(tmp_path, "TC") == 4
    again = launch("overwrite=true")  # cleared once, then each run retrained by one process
    assert again.keys() == first.keys() and all(again[r] != first[r] for r in first)


@pytest.mark.slow  # `make test-slow`
def test_four_launches_of_different_rows_all_reach_the_table(tmp_path):
    """One launch per row of the TC column (4 rows): the last table written holds them all."""
    procs = [cli(tmp_path, "experiment=table1_tc", f"row={row}") for row in range(4)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [r[1] for r in results]
    assert finished_cells(tmp_path, "TC") == 4


def test_a_failed_multirun_job_is_reported_and_the_others_run(tmp_path):
    proc = cli(tmp_path, "-m", "model=fcn", "schedule.iterations=4", "schedule.lr=0.01,-1,0.02")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "schedule.lr=-1.0: must lie in (0, 1]" in err
    assert "stn-repro: sweep: 2 of 3 jobs succeeded; job 1 (" in err
    assert len(metrics_files(tmp_path)) == 2  # each lr its own directory


# ---- kill -9 at random moments (slow) -----------------------------------------------------------


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_bit_exact(tmp_path):
    """Kill a run (cache generation, training, checkpoint writes) at random moments until it
    finishes; the result equals an uninterrupted run's, bit for bit."""
    args = ["model=st_fcn", "dataset=mnist_r", "schedule.iterations=300",
            "schedule.log.checkpoint_every=7", "schedule.train_limit=2000"]  # fmt: skip
    whole = tmp_path / "whole"
    tic = time.perf_counter()
    proc = cli(whole, *args)
    proc.communicate(timeout=600)
    took = time.perf_counter() - tic  # one launch from nothing: kill times scale with it
    rng = random.Random(0)
    killed = 0
    for _ in range(60):
        proc = cli(tmp_path / "killed", *args)
        try:
            proc.wait(timeout=rng.uniform(0.05, 0.35) * took)
            break
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed += 1
    assert proc.returncode == 0 and killed >= 5, (killed, took, proc.stderr.read())
    [resumed] = [m.parent for m in metrics_files(tmp_path / "killed")]
    [uninterrupted] = [m.parent for m in metrics_files(whole)]
    assert_same_model(resumed, uninterrupted)
    assert (
        read_json(resumed / "metrics.json")["test_error"]
        == read_json(uninterrupted / "metrics.json")["test_error"]
    )
    assert not list((tmp_path / "killed").rglob("*.tmp[0-9]*"))
    print(json.dumps({"kills": killed, "uninterrupted_s": round(took, 1)}))


@pytest.mark.parametrize(("failing", "setting"), [
    ("data/MNIST/raw/train-labels-idx1-ubyte", "paths.data_dir=..."),
    ("out/runs/adhoc/x/seed1/config.yaml", "paths.output_dir=..."),
    ("mine/config.yaml", "run_dir=..."),
    ("mine.lock", "run_dir=..."),
    ("cache/mnist-rts-train.h5", "paths.cache_dir=..."),
    ("elsewhere/file", "paths.output_dir=..."),
])  # fmt: skip
def test_an_unwritable_file_names_the_setting_of_its_folder(tmp_path, monkeypatch, failing,
                                                           setting):  # fmt: skip
    """A read-only data folder is advised paths.data_dir=..., not paths.output_dir=... (root
    writes through permissions, so the OSError is made here rather than by a chmod)."""
    from stn_repro import cli

    monkeypatch.setattr(cli, "FOLDERS", {
        "paths.data_dir": tmp_path / "data", "paths.output_dir": tmp_path / "out",
        "paths.cache_dir": tmp_path / "cache", "run_dir": tmp_path / "mine",
    })  # fmt: skip
    for code in (errno.EACCES, errno.EROFS):
        err = OSError(code, os.strerror(code), str(tmp_path / failing))
        message = cli.os_error_message(err)
        assert message.endswith(f"choose a writable folder with {setting}"), message
    efbig = cli.os_error_message(OSError(errno.EFBIG, "File too large", "x.h5"))
    assert "file-size limit stopped writing x.h5" in efbig and "ulimit -f" in efbig
