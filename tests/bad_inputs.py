"""Bad inputs a new user can give ``stn-repro``, each with the outcome expected of it.

Kept apart from the test so that ``python tests/bad_inputs.py [CHECKOUT]`` can run the same list
through any checkout's ``stn-repro`` as whole processes and print a table of outcomes (used to
measure the list before and after the reliability work).

Each case is command-line arguments (``{tmp}`` is a fresh folder, ``{data}`` the bundled data
folder), an optional ``setup(tmp, invoke)`` that prepares damaged files first, and what must
happen: ``error`` (exit 2, one line on stderr, no traceback, no run recorded; ``message`` is in
that line) or ``recovered`` (exit 0, the run finished, a warning names what was repaired).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "datasets"
QUICK = ["model=fcn", "schedule.iterations=6"]


@dataclass
class Case:
    id: str
    args: list[str]
    message: str = ""
    expect: str = "error"  # or "recovered"
    setup: Callable | None = None


def base_args(tmp: Path, data: Path = DATA) -> list[str]:
    return ["schedule=smoke", "progress=false", f"paths.data_dir={data}",
            f"paths.cache_dir={tmp}/cache", f"paths.output_dir={tmp}/outputs"]  # fmt: skip


# ---- setups: damage what an earlier run wrote -----------------------------------------------


def finished_run(tmp: Path, invoke) -> Path:
    """A finished quick run; returns its directory."""
    code = invoke([*base_args(tmp), *QUICK])[0]
    assert code == 0, "the setup run failed"
    [metrics] = (tmp / "outputs" / "runs").rglob("metrics.json")
    return metrics.parent


def killed_after_last_checkpoint(tmp: Path, invoke) -> Path:
    run = finished_run(tmp, invoke)
    (run / "metrics.json").unlink()
    return run


def damage(name: str, how: Callable[[bytes], bytes], first=killed_after_last_checkpoint):
    def setup(tmp: Path, invoke) -> None:
        path = first(tmp, invoke) / name
        path.write_bytes(how(path.read_bytes()))

    return setup


def flip(data: bytes, at: float = 0.5) -> bytes:
    i = int(len(data) * at)
    return data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :]


def both_checkpoints_truncated(tmp: Path, invoke) -> None:
    run = killed_after_last_checkpoint(tmp, invoke)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).write_bytes((run / name).read_bytes()[:100])


def cache_file(tmp: Path, invoke, split: str = "train") -> Path:
    finished_run(tmp, invoke)
    shutil.rmtree(tmp / "outputs" / "runs")
    [path] = (tmp / "cache").glob(f"*-{split}-*.h5")
    return path


def cache_labels_flipped(tmp: Path, invoke) -> None:
    import h5py

    path = cache_file(tmp, invoke)
    with h5py.File(path, "r+") as f:
        f["labels"][3] = (f["labels"][3] + 1) % 10


def cache_truncated(tmp: Path, invoke) -> None:
    path = cache_file(tmp, invoke)
    path.write_bytes(path.read_bytes()[:5000])


def private_mnist(tmp: Path) -> Path:
    raw = tmp / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (DATA / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(gz, raw / gz.name)
    return raw


def mnist_extracted(how: Callable[[bytes], bytes]):
    def setup(tmp: Path, invoke) -> None:
        raw = private_mnist(tmp)
        assert invoke([*base_args(tmp, tmp / "data"), *QUICK])[0] == 0
        shutil.rmtree(tmp / "outputs" / "runs")
        shutil.rmtree(tmp / "cache")
        path = raw / "train-labels-idx1-ubyte"
        path.write_bytes(how(path.read_bytes()))

    return setup


def mnist_gz_corrupt(tmp: Path, invoke) -> None:
    path = private_mnist(tmp) / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(flip(path.read_bytes()))


def output_is_a_file(tmp: Path, invoke) -> None:
    (tmp / "blocker").write_text("a file, not a folder")


def other_config_in_run_dir(tmp: Path, invoke) -> None:
    assert invoke([*base_args(tmp), *QUICK, f"run_dir={tmp}/mine"])[0] == 0


def stale_temporary(tmp: Path, invoke) -> None:
    run = killed_after_last_checkpoint(tmp, invoke)
    (run / "checkpoint.pt.tmp999999").write_bytes(b"left by a dead process")


# ---- the list ---------------------------------------------------------------------------------

E = "experiment=table1_rts"
CASES = [
    # schedule: types, ranges, choices
    Case("iterations-abc", ["schedule.iterations=abc"], "schedule.iterations=abc: not a valid"),
    Case("iterations-negative", ["schedule.iterations=-5"], "schedule.iterations=-5: must be >="),
    Case("iterations-zero", ["schedule.iterations=0"], "schedule.iterations=0: must be >= 1"),
    Case("iterations-float", ["schedule.iterations=1.5"], "schedule.iterations=1.5: not a valid"),
    Case("lr-negative", ["schedule.lr=-0.1"], "schedule.lr=-0.1: must lie in (0, 1]"),
    Case("lr-zero", ["schedule.lr=0"], "schedule.lr=0.0: must lie in (0, 1]"),
    Case("lr-huge", ["schedule.lr=1e6"], "schedule.lr=1000000.0: must lie in (0, 1]"),
    Case("lr-abc", ["schedule.lr=abc"], "schedule.lr=abc: not a valid float"),
    Case("seed-abc", ["seed=abc"], "seed=abc: not a valid integer"),
    Case("seed-negative", ["seed=-1"], "seed=-1: must be >= 0"),
    Case("device-tpu", ["device=tpu"], "device=tpu: must be auto, cpu, cuda or cuda:N"),
    Case(
        "checkpoint-every-zero",
        ["schedule.log.checkpoint_every=0"],
        "schedule.log.checkpoint_every=0: must be >= 1",
    ),
    Case("log-every-zero", ["schedule.log.every=0"], "schedule.log.every=0: must be >= 1"),
    Case("eval-every-zero", ["schedule.log.eval_every=0"], "schedule.log.eval_every=0"),
    Case("image-every-negative", ["schedule.log.image_every=-1"], "schedule.log.image_every=-1"),
    Case("train-limit-zero", ["schedule.train_limit=0"], "schedule.train_limit=0: must be >= 1"),
    Case("train-limit-negative", ["schedule.train_limit=-10"], "schedule.train_limit=-10"),
    Case("test-limit-zero", ["schedule.test_limit=0"], "schedule.test_limit=0: must be >= 1"),
    Case("batch-size-zero", ["schedule.batch_size=0"], "schedule.batch_size=0: must be >= 1"),
    Case("batch-size-negative", ["schedule.batch_size=-4"], "schedule.batch_size=-4"),
    Case("batch-size-abc", ["schedule.batch_size=abc"], "schedule.batch_size=abc: not a valid"),
    Case("momentum-too-big", ["schedule.momentum=1.5"], "schedule.momentum=1.5: must lie in"),
    Case("weight-decay-negative", ["schedule.weight_decay=-1"], "schedule.weight_decay=-1.0"),
    Case("optimizer-unknown", ["schedule.optimizer=rmsprop"], "must be one of sgd, adam"),
    Case("lr-policy-unknown", ["schedule.lr_policy=linear"], "must be one of step, cosine"),
    Case("lr-decay-zero", ["schedule.lr_decay=0"], "schedule.lr_decay=0.0: must lie in (0, 1]"),
    Case("lr-steps-abc", ["schedule.lr_steps=[abc]"], "schedule.lr_steps[0]=abc: not a valid"),
    Case("lr-steps-negative", ["schedule.lr_steps=[-5]"], "schedule.lr_steps=[-5]: must hold"),
    Case("lr-steps-not-a-list", ["schedule.lr_steps=5"], "schedule.lr_steps: must be a list"),
    Case("loc-lr-scale-negative", ["schedule.loc_lr_scale=-1"], "schedule.loc_lr_scale=-1.0"),
    # unknown keys, with and without +
    Case("typo-with-plus", ["+schedule.iteratons=5"], "schedule.iteratons: no such setting"),
    Case("typo-without-plus", ["schedule.iteratons=5"], "schedule.iteratons: no such setting"),
    Case("unknown-top-level", ["+foo=1"], "foo: no such setting"),
    Case(
        "param-typo-with-plus",
        ["+dataset.params.rotaton=[0,1]"],
        "dataset.params.rotaton: no such setting (known in dataset.params: rotation, scale",
    ),
    Case(
        "param-typo-without-plus",
        ["dataset.params.rotaton=[0,1]"],
        "dataset.params.rotaton: no such setting",
    ),
    # dataset
    Case(
        "canvas-too-small",
        ["dataset.params.canvas=10"],
        "dataset.params.canvas=10: a digit scaled by up to 1.2 is 33.6 px wide",
    ),
    Case(
        "scale-reversed",
        ["dataset.params.scale=[2.0,1.0]"],
        "dataset.params.scale=[2.0, 1.0]: must be [low, high] with low <= high",
    ),
    Case("scale-zero", ["dataset.params.scale=[0,1]"], "dataset.params.scale=[0.0, 1.0]"),
    Case("rotation-one-value", ["dataset.params.rotation=[45]"], "a range [low, high] of two"),
    Case("rotation-abc", ["dataset.params.rotation=abc"], "dataset.params.rotation: must be a"),
    Case(
        "clutter-negative",
        ["dataset=mnist_tc", "dataset.params.clutter=-1"],
        "dataset.params.clutter=-1: must be >= 0",
    ),
    Case("patch-zero", ["dataset=mnist_tc", "dataset.params.patch=0"], "dataset.params.patch=0"),
    Case("patch-too-big", ["dataset=mnist_tc", "dataset.params.patch=40"], "must lie in [1, 28]"),
    Case("corner-sd-negative", ["dataset=mnist_p", "dataset.params.corner_sd=-1"], "corner_sd"),
    Case(
        "control-points-not-square",
        ["dataset=mnist_e", "dataset.params.control_points=5"],
        "dataset.params.control_points=5: must be a square >= 4",
    ),
    Case("data-seed-abc", ["dataset.seed=abc"], "dataset.seed=abc: not a valid integer"),
    Case("source-unknown", ["dataset.source=cifar"], "dataset.source=cifar: must be one of mnist"),
    Case("source-mismatch", ["dataset.source=svhn"], "dataset.source=svhn: the rts generator"),
    Case("generator-unknown", ["dataset.generator=foo"], "dataset.generator=foo: must be one of"),
    # SVHN (issue 8); the missing-archives case is in tests/test_svhn.py (it needs no network)
    Case("svhn-classify-model", ["dataset=svhn64", "model=cnn"], "model=cnn is a classify model"),
    Case("svhn-crop-too-big", ["dataset=svhn64", "model=svhn_cnn",
         "dataset.params.random_crop=80"], "dataset.params.random_crop=80: must not exceed"),
    Case("svhn-train-parts", ["dataset=svhn64", "model=svhn_cnn",
         "dataset.params.train_parts=[test]"], "dataset.params.train_parts=['test']: must list"),
    Case("svhn-width-zero", ["dataset=svhn64", "model=svhn_cnn", "model.width=0"],
         "model.width=0.0: must be > 0"),
    # GTSRB (issue 9); the missing-files case is in tests/test_gtsrb.py (it needs no network)
    Case("gtsrb-fractions", ["dataset=gtsrb", "model=gtsrb_cnn", "dataset.params.val_fraction=0.5",
         "dataset.params.test_fraction=0.5"], "together they must leave tracks to train on"),
    Case("gtsrb-contrast-even", ["dataset=gtsrb", "model=gtsrb_cnn",
         "dataset.params.local_contrast=4"], "must be 0 (off) or odd"),
    Case("gtsrb-sequence-model", ["dataset=gtsrb", "model=svhn_cnn"], "is a sequence model"),
    Case("workers-negative", ["workers=-1"], "workers=-1: must lie in"),
    Case("fresh-not-bool", ["dataset.fresh_each_epoch=maybe"], "dataset.fresh_each_epoch=maybe"),
    Case(
        "num-classes-wrong",
        ["+dataset.num_classes=5"],
        "dataset.num_classes=5: the rts generator's labels take 10 classes",
    ),
    Case("dataset-unknown", ["dataset=foo"], "Could not find 'dataset/foo'"),
    # model
    Case("model-unknown", ["model=resnet"], "Could not find 'model/resnet'"),
    Case(
        "transform-without-st",
        ["model=cnn", "+model/transform=tps"],
        "model cnn has no spatial transformer",
    ),
    Case(
        "transform-3d-on-images",
        ["model=st_cnn", "model/transform=affine3d"],
        "transform affine3d is 3D but the data are 2D images",
    ),
    Case(
        "transform-unknown",
        ["model=st_cnn", "model/transform=foo"],
        "Could not find 'model/transform/foo'",
    ),
    Case(
        "tps-points-not-square",
        ["model=st_cnn", "model/transform=tps", "model.transform.num_control_points=5"],
        "needs a square number of control points",
    ),  # fmt: skip
    Case("target-params-negative", ["model.target_params=-1"], "model.target_params=-1"),
    Case(
        "images-model-on-volumes",
        ["dataset=mnist3d", "model=cnn"],
        "model cnn takes images but the data are volumes",
    ),
    # experiments
    Case("row-without-experiment", ["row=3"], "need an experiment"),
    Case("table-only-without-experiment", ["table_only=true"], "need an experiment"),
    Case("experiment-unknown", ["experiment=table1_foo"], "Could not find 'experiment/table1_foo'"),
    Case("row-number-unknown", [E, "row=99"], "experiment table1_rts has no row 99; rows: 0='FCN'"),
    Case("row-name-unknown", [E, "row=nosuch"], "has no row 'nosuch'"),
    Case("seed-without-row", [E, "seed=5"], "seed=5 without row= would be ignored"),
    Case("seeds-empty", [E, "experiment.seeds=[]"], "experiment.seeds=[]: must list at least"),
    Case("seeds-repeated", [E, "experiment.seeds=[1,1]"], "must not repeat a seed"),
    Case("run-dir-with-experiment", [E, "run_dir={tmp}/x"], "an experiment places its runs"),
    Case(
        "coloc-digit-out-of-range",
        ["experiment=table5_coloc_t", "coloc.digit=12"],
        "coloc.digit=12: must lie in [0, 9]",
    ),
    Case(
        "coloc-margin-negative",
        ["experiment=table5_coloc_t", "coloc.margin=-1"],
        "coloc.margin=-1.0: must be >= 0",
    ),
    # other top-level keys
    Case("overwrite-not-bool", ["overwrite=maybe"], "overwrite=maybe: not a valid bool"),
    Case("progress-not-bool", ["progress=maybe"], "progress=maybe: not a valid bool"),
    Case("schedule-unknown", ["schedule=foo"], "Could not find 'schedule/foo'"),
    Case("override-unparsable", ["schedule.lr=="], "Error parsing override 'schedule.lr=='"),
    # output locations
    Case("output-dir-in-proc", ["paths.output_dir=/proc/x"], "choose a writable folder"),
    Case(
        "output-dir-is-a-file",
        ["paths.output_dir={tmp}/blocker"],
        "choose a writable folder",
        setup=output_is_a_file,
    ),
    Case("cache-dir-in-proc", ["paths.cache_dir=/proc/x"], "paths.cache_dir=/proc/x is not a"),
    # files on disk
    Case(
        "mnist-gz-corrupt",
        ["paths.data_dir={tmp}/data"],
        "t10k-labels-idx1-ubyte.gz is corrupt",
        setup=mnist_gz_corrupt,
    ),
    Case(
        "other-config-in-run-dir",
        [*QUICK, "schedule.lr=0.02", "run_dir={tmp}/mine"],
        "holds a run of another config (schedule.lr: 0.01 -> 0.02)",
        setup=other_config_in_run_dir,
    ),
    Case(
        "every-checkpoint-corrupt", QUICK, "no usable checkpoint", setup=both_checkpoints_truncated
    ),
    # damaged files that are repaired: the run goes on
    Case(
        "checkpoint-truncated",
        QUICK,
        "checkpoint.pt is unusable",
        "recovered",
        damage("checkpoint.pt", lambda b: b[: len(b) // 2]),
    ),
    Case(
        "checkpoint-empty",
        QUICK,
        "checkpoint.pt is unusable",
        "recovered",
        damage("checkpoint.pt", lambda b: b""),
    ),
    Case(
        "checkpoint-bytes-flipped",
        QUICK,
        "does not match its checksum",
        "recovered",
        damage("checkpoint.pt", flip),
    ),
    Case(
        "metrics-truncated",
        QUICK,
        "metrics.json is corrupt",
        "recovered",
        damage("metrics.json", lambda b: b[:40], first=finished_run),
    ),
    Case(
        "metrics-value-edited",
        QUICK,
        "metrics.json is corrupt",
        "recovered",
        damage(
            "metrics.json",
            lambda b: b.replace(b'"test_error": ', b'"test_error": 1'),
            first=finished_run,
        ),
    ),  # fmt: skip
    Case(
        "cache-labels-flipped",
        QUICK,
        "do not match their checksum",
        "recovered",
        setup=cache_labels_flipped,
    ),
    Case("cache-truncated", QUICK, "is corrupt", "recovered", setup=cache_truncated),
    Case(
        "mnist-extracted-truncated",
        [*QUICK, "paths.data_dir={tmp}/data"],
        "extracting again",
        "recovered",
        mnist_extracted(lambda b: b[:1000]),
    ),
    Case(
        "mnist-extracted-edited",
        [*QUICK, "paths.data_dir={tmp}/data"],
        "differ from the original",
        "recovered",
        mnist_extracted(lambda b: flip(b, 0.7)),
    ),
    Case("stale-temporary-file", QUICK, "", "recovered", setup=stale_temporary),
]


# ---- measuring a checkout: python tests/bad_inputs.py [CHECKOUT] ------------------------------


def outcome(case: Case, code: int, err: str, recorded: bool) -> str:
    """How a checkout handled a case, in the issue's words."""
    lines = err.strip().splitlines()
    if "Traceback" in err or code not in (0, 2):
        return f"traceback (exit {code})"
    if case.expect == "recovered":
        return "recovered" if code == 0 else "clear error" if len(lines) == 1 else "error"
    if code == 0 or recorded:
        return "silent wrong run"
    if len(lines) != 1:
        return f"error on {len(lines)} lines"
    return "clear error" if case.message in lines[0] else "clear error, other words"


def measure(checkout: Path) -> None:
    import os
    import subprocess
    import sys
    import tempfile

    def invoke_in(tmp: Path):
        env = {**os.environ, "PYTHONPATH": str(checkout), "STN_REPRO_ROOT": str(tmp)}

        def invoke(args: list[str]) -> tuple[int, str, str]:
            done = subprocess.run([sys.executable, "-m", "stn_repro.cli", *args], cwd=checkout,
                                  capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
            return done.returncode, done.stdout, done.stderr

        return invoke

    print("| case | arguments | outcome |\n|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            invoke = invoke_in(tmp)
            try:
                if case.setup is not None:
                    case.setup(tmp, invoke)
            except Exception as err:  # noqa: BLE001 (an older checkout may not get that far)
                print(f"| {case.id} | | setup failed ({type(err).__name__}) |")
                continue
            runs = tmp / "outputs" / "runs"
            before = set(runs.rglob("metrics.json")) if runs.exists() else set()
            args = [a.format(tmp=tmp) for a in case.args]
            code, _, err = invoke([*base_args(tmp), *args])
            recorded = runs.exists() and set(runs.rglob("metrics.json")) != before
            shown = " ".join(a.replace(str(tmp), "TMP") for a in args)
            print(f"| {case.id} | `{shown}` | {outcome(case, code, err, recorded)} |", flush=True)


if __name__ == "__main__":
    import sys

    measure(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]))
