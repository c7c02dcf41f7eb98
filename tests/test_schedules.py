"""`schedule=<name>` on an experiment's command line selects that table's own schedule of that
name (``experiment.schedules``), never another table's; another table's option is refused."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from stn_repro.config import CONF_DIR
from stn_repro.errors import UserError
from stn_repro.experiment import compose_run, schedule_owners

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
OWN = {  # the schedule files each real-data experiment trains with, by name
    "gtsrb": {"paper": "paper_gtsrb", "fast": "fast_gtsrb"},
    "gtsrb_26epochs": {"paper": "paper_gtsrb", "fast": "fast_gtsrb"},
    "gtsrb_tracks": {"paper": "paper_gtsrb", "fast": "fast_gtsrb"},
    "table2_svhn64": {"paper": "paper_svhn", "fast": "fast_svhn"},
    "table2_svhn128": {"paper": "paper_svhn", "fast": "fast_svhn"},
    "table3_cub": {"paper": "paper_cub", "fast": "fast_cub"},
}
KEYS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "lr_policy", "lr_decay",
        "loc_lr_scale")  # fmt: skip


def schedule_file(option: str) -> dict:
    """The schedule file ``option`` as Hydra composes it (schedules inherit: ``defaults``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return OmegaConf.to_container(compose("config", overrides=[f"schedule={option}"]).schedule)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return schedule_file(option)


def expected_schedule(experiment: str, name: str) -> dict:
    """The table's own schedule file of that name, with the experiment's ``per_schedule``
    changes to it (``schedule.<key>=<value>``) applied."""
    found = schedule_file(OWN.get(experiment, {}).get(name, name))
    exp = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").experiment
    for override in exp.get("per_schedule", {}).get(name) or []:
        key, value = override.split("=", 1)
        if key.startswith("schedule.") and key.count(".") == 1:
            found[key.split(".")[1]] = yaml.safe_load(value)
    return found


def composed(compose_cfg, experiment: str, *given: str):
    cfg = compose_cfg(f"experiment={experiment}", *given)
    return compose_run([f"experiment={experiment}", *given], cfg.experiment.rows[0], 1)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("name", ["paper", "fast"])
def test_an_explicit_schedule_name_selects_the_tables_own(compose_cfg, experiment, name):
    """The Makefile passes schedule=$(SCHEDULE) to every table: it must not swap in Table 1's."""
    option = OWN.get(experiment, {}).get(name, name)
    expected = expected_schedule(experiment, name)
    for given in ([f"schedule={name}"], [f"schedule={option}"]):
        schedule = composed(compose_cfg, experiment, *given).schedule
        assert {k: schedule[k] for k in KEYS} == {k: expected[k] for k in KEYS}, given
        assert schedule.name == name


def test_the_default_schedule_is_the_tables_fast(compose_cfg):
    """`experiment=gtsrb` without schedule= is the same run as with schedule=fast."""
    for experiment in ("gtsrb", "table2_svhn64", "table3_cub"):
        bare = composed(compose_cfg, experiment)
        named = composed(compose_cfg, experiment, "schedule=fast")
        assert OmegaConf.to_container(bare.schedule) == OmegaConf.to_container(named.schedule)
        assert bare.schedule.batch_size == schedule_file(OWN[experiment]["fast"])["batch_size"]


def test_the_measured_gtsrb_sample_command_trains_sgd(compose_cfg):
    """The README's `experiment=gtsrb_tracks schedule=fast`: SGD, batch 50, 367 iterations at
    half width (it composed Adam, batch 128 before)."""
    cfg = composed(compose_cfg, "gtsrb_tracks", "schedule=fast")
    assert (cfg.schedule.optimizer, cfg.schedule.batch_size) == ("sgd", 50)
    assert (cfg.schedule.iterations, cfg.model.width) == (367, 0.5)


def test_the_command_line_still_wins_over_the_tables_schedule(compose_cfg):
    cfg = composed(compose_cfg, "gtsrb", "schedule=paper", "schedule.iterations=7")
    assert (cfg.schedule.iterations, cfg.schedule.momentum) == (7, 0.0)


@pytest.mark.parametrize(("experiment", "option"), [
    ("gtsrb", "paper_svhn"), ("table2_svhn64", "fast_gtsrb"), ("table1_rts", "paper_cub"),
    ("table4_addition", "fast_svhn"),
])  # fmt: skip
def test_another_tables_schedule_is_refused_in_one_line(compose_cfg, experiment, option):
    with pytest.raises(UserError, match=rf"schedule={option} is the .* schedule of .* write "):
        composed(compose_cfg, experiment, f"schedule={option}")


@pytest.mark.parametrize("experiment", sorted(OWN))
def test_the_mnist_cpu_recipe_is_refused_by_a_table_with_schedules_of_its_own(compose_cfg,
                                                                               experiment):
    """`make all-tables SCHEDULE=cpu` must not train SVHN, CUB or GTSRB with Table 1's Adam."""
    with pytest.raises(UserError, match=rf"schedule=cpu is the CPU recipe of the MNIST tables.*"
                                        rf"experiment {experiment} has schedules of its own"):
        composed(compose_cfg, experiment, "schedule=cpu")


def test_owners_are_read_from_the_experiment_files():
    owners = schedule_owners()
    assert owners["paper_gtsrb"] == "gtsrb, gtsrb_26epochs, gtsrb_tracks"
    assert "paper" not in owners and "smoke" not in owners


@pytest.mark.parametrize("column", ["r", "rts", "p", "e", "tc"])
def test_table1s_paper_schedule_draws_distortions_anew_each_epoch(compose_cfg, column):
    """The protocol the measurements support (notes, "Data protocol"); `fast` keeps its fixed
    set, and the command line still chooses."""
    experiment = f"table1_{column}"
    assert composed(compose_cfg, experiment, "schedule=paper").dataset.fresh_each_epoch
    assert not composed(compose_cfg, experiment, "schedule=fast").dataset.fresh_each_epoch
    fixed = composed(compose_cfg, experiment, "schedule=paper", "dataset.fresh_each_epoch=false")
    assert not fixed.dataset.fresh_each_epoch


@pytest.mark.parametrize(("option", "expected"), [
    # A.4: "SGD for 150k iterations ... 256 batch size, 0.01 base learning rate, no weight decay
    # ... learning rate reduced by a factor of ten every 50k iterations"
    ("paper", {"optimizer": "sgd", "iterations": 150000, "batch_size": 256, "lr": 0.01,
               "weight_decay": 0.0, "lr_steps": [50000, 100000], "lr_decay": 0.1,
               "loc_lr_scale": 1.0}),
    # A.5: "400k iterations with SGD (128 batch size), ... base learning rate of 0.01 decreased by
    # a factor of ten every 80k iterations, weight decay set to 0.0005 ... a tenth"
    ("paper_svhn", {"optimizer": "sgd", "iterations": 400000, "batch_size": 128, "lr": 0.01,
                    "weight_decay": 0.0005, "lr_steps": [80000, 160000, 240000, 320000],
                    "lr_decay": 0.1, "loc_lr_scale": 0.1}),
    # A.6: "30k iterations with SGD (batch size 256) ... initial learning rate of 0.1, reduced by
    # a factor of 10 after 10k, 20k, and 25k ... multiplied by 10^{-4} ... 10^{-5}"
    ("paper_cub", {"optimizer": "sgd", "iterations": 30000, "batch_size": 256, "lr": 0.1,
                   "weight_decay": 0.00001, "lr_steps": [10000, 20000, 25000], "lr_decay": 0.1,
                   "loc_lr_scale": 0.0001}),
])  # fmt: skip
def test_the_paper_schedules_are_the_appendixs_numbers(option, expected):
    found = schedule_file(option)
    assert {k: found[k] for k in expected} == expected
    assert found["lr_policy"] == "step"


@pytest.mark.parametrize("column", ["r", "rts", "p", "e", "tc"])
def test_table1s_default_is_the_cpu_recipe_with_each_rows_budget(compose_cfg, column):
    """`stn-repro experiment=table1_<column>` trains with our CPU recipe: new distortions each
    epoch, 5,000 held-out digits, channels-last, and each row its own budget (the command line
    still wins, and `schedule=fast` is the same run as before)."""
    experiment = f"table1_{column}"
    exp = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").experiment
    base = {"optimizer": "adam", "batch_size": 128, "lr_policy": "cosine", "precision": "auto"}
    for row in exp.rows if column == "rts" else exp.rows[:2]:  # (composing costs ~1 s a row)
        cfg = compose_run([f"experiment={experiment}"], row, 1)
        budget = [o for o in row.per_schedule.cpu if o.startswith("schedule.iterations=")]
        assert cfg.schedule.name == "cpu" and len(budget) == 1
        assert cfg.schedule.iterations == int(budget[0].split("=")[1])
        assert {k: cfg.schedule[k] for k in base} == base
        assert cfg.dataset.fresh_each_epoch and cfg.dataset.validation == 5000
        assert cfg.speed.channels_last
        mine = compose_run([f"experiment={experiment}", "schedule.iterations=9"], row, 1)
        assert mine.schedule.iterations == 9
        fast = compose_run([f"experiment={experiment}", "schedule=fast"], row, 1)
        assert fast.schedule.iterations == 1500 and not fast.dataset.fresh_each_epoch


def test_table4s_default_is_the_cpu_recipe_with_held_out_pairs(compose_cfg):
    """`stn-repro experiment=table4_addition` trains with Table 1's CPU recipe: pairs drawn anew
    each epoch, 5,000 held-out digits paired among themselves, each row its own budget."""
    exp = OmegaConf.load(CONF_DIR / "experiment" / "table4_addition.yaml").experiment
    for row in (exp.rows[1], exp.rows[5]):  # CNN, 2xST-FCN Aff
        cfg = compose_run(["experiment=table4_addition"], row, 1)
        [budget] = [o for o in row.per_schedule.cpu if o.startswith("schedule.iterations=")]
        assert cfg.schedule.name == "cpu" and cfg.schedule.optimizer == "adam"
        assert cfg.schedule.iterations == int(budget.split("=")[1])
        assert cfg.dataset.fresh_each_epoch and cfg.dataset.validation == 5000
        fast = compose_run(["experiment=table4_addition", "schedule=fast"], row, 1)
        assert fast.schedule.iterations == 12000 and fast.dataset.validation == 0


@pytest.mark.parametrize(("experiment", "row_name", "data"), [
    ("table1_rts", "ST-FCN Aff", "fresh distortions each epoch"),
    ("table4_addition", "2xST-FCN Aff", "addition"),
])  # fmt: skip
def test_the_cpu_recipe_trains_on_a_smoke_budget(smoke, experiment, row_name, data):
    """The recipe end to end, a few iterations: validation digits watched, precision recorded
    as computed (bf16 where this CPU computes it natively, else fp32)."""
    import torch
    from hydra import initialize_config_dir

    from stn_repro import speed
    from stn_repro.config import run_dir
    from stn_repro.engine import train_run

    given = [*(o for o in smoke if not o.startswith("schedule=")), f"experiment={experiment}",
             "schedule.iterations=4", "schedule.batch_size=16", "schedule.train_limit=256",
             "schedule.test_limit=64", "schedule.log.eval_every=2"]  # fmt: skip
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        exp = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").experiment
        row = [r for r in exp.rows if r.name == row_name][0]
        cfg = compose_run(given, row, 1)
        metrics = train_run(cfg, run_dir(cfg, experiment, row.name))
    assert metrics["schedule"] == "cpu" and metrics["iterations"] == 4
    assert metrics["curve_split"] == "val" and metrics["val_images"] == 64
    assert [p["iteration"] for p in metrics["curve"]] == [2, 4]
    native = speed.bf16_native(torch.device("cpu"))
    assert metrics["precision"] == ("bf16" if native else "fp32")
    assert "fresh distortions each epoch" in metrics["data"] and data in metrics["data"]
