"""Training under torchrun: each rank's share of a batch, and two gloo processes on the CPU
training a run exactly as one process does (same weights to float round-off, same errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from gtsrb_files import tiny_gtsrb

from stn_repro.data.feeds import ResumedBatches, batch_indices
from stn_repro.distributed import Ranks, shard
from stn_repro.runs import load_checkpoint


def test_the_ranks_shares_make_up_the_global_batch_exactly():
    batch = batch_indices(100, 16, iteration=7, seed=3)
    shares = [shard(batch, Ranks(r, 4)) for r in range(4)]
    assert all(len(s) == 4 for s in shares)
    assert sorted(torch.cat(shares).tolist()) == sorted(batch.tolist())
    # augmentation draws belong to the position in the global batch, not in the share
    alone = next(iter(ResumedBatches(100, 16, 7, 3, augment=True)))
    two = [next(iter(ResumedBatches(100, 16, 7, 3, True, Ranks(r, 2)))) for r in range(2)]
    assert sorted(two[0] + two[1]) == sorted(alone) and two[1][0] == alone[1]


def assert_each_rank_gets_its_share(feed, start: int) -> None:
    """Of two ranks, rank r gets items r, r + 2, ... of the batch at ``start`` and of the test
    split."""
    x, y = next(feed.train_batches(start))
    for r in range(2):
        x_r, y_r = next(feed.train_batches(start, Ranks(r, 2)))
        assert torch.equal(x_r, x[r::2]) and torch.equal(y_r, y[r::2])
    whole = torch.cat([y for _, y in feed.eval_batches("test")])
    shares = [torch.cat([y for _, y in feed.eval_batches("test", Ranks(r, 2))]) for r in range(2)]
    assert torch.equal(shares[0], whole[0::2]) and torch.equal(shares[1], whole[1::2])


def test_feeds_give_each_rank_its_share_of_batches_and_evaluation(compose_cfg, tmp_path):
    from stn_repro.data.feeds import FileFeed

    root = tiny_gtsrb(tmp_path / "GTSRB")
    feed = FileFeed(compose_cfg("dataset=gtsrb", "model=gtsrb_cnn", "workers=0",
                                f"paths.gtsrb_dir={root}"), torch.device("cpu"))  # fmt: skip
    assert_each_rank_gets_its_share(feed, start=5)


def test_memory_feeds_give_each_rank_its_share_too(compose_cfg):
    from stn_repro.data.feeds import MemoryFeed

    feed = MemoryFeed(compose_cfg("experiment=table1_rts"), torch.device("cpu"))
    assert_each_rank_gets_its_share(feed, start=3)


def test_two_gloo_processes_train_the_run_one_process_trains(compose_cfg, smoke, tmp_path):
    """The IDSIA CNN (no dropout, no batch normalisation, so nothing differs per process)."""
    from hydra import compose

    from stn_repro.cli import run

    root = tiny_gtsrb(tmp_path / "GTSRB")
    common = [*smoke, "experiment=gtsrb", "row=CNN", "experiment.seeds=[1]", "workers=1",
              f"paths.gtsrb_dir={root}", "schedule.log.eval_every=3"]  # fmt: skip
    alone_out, two_out = tmp_path / "alone", tmp_path / "two"
    overrides = [*common, f"paths.output_dir={alone_out}"]
    run(compose("config", overrides=overrides), overrides)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*torchrun, "-m", "stn_repro.cli", *common, f"paths.output_dir={two_out}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    [alone] = alone_out.glob("runs/gtsrb/smoke/cnn/*/seed1")
    [two] = two_out.glob("runs/gtsrb/smoke/cnn/*/seed1")
    assert alone.relative_to(alone_out) == two.relative_to(two_out)  # the same run
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (alone, two))
    assert (first["processes"], second["processes"]) == (1, 2)
    assert second["test_error"] == first["test_error"]
    assert second["val_error"] == first["val_error"]
    cfg = compose_cfg(*common[len(smoke):], f"paths.output_dir={alone_out}")
    weights = [load_checkpoint(d, cfg, first["config_hash"])["model"] for d in (alone, two)]
    assert weights[0].keys() == weights[1].keys()
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=1e-5, atol=1e-6, msg=name)
    # rank 0 alone wrote: TensorBoard's files (events.out.tfevents.<time>.<host>.<pid>.<n>)
    # come from one process, and the table
    assert len({f.name.split(".")[-2] for f in (two / "tb").glob("events.*")}) == 1
    assert "| CNN | " in (two_out / "tables" / "gtsrb-smoke.md").read_text()
