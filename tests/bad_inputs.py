"""Bad inputs a new user can give ``stn-repro``, each with the outcome expected of it.

Kept apart from the test so that ``python tests/bad_inputs.py [CHECKOUT]`` can run the same list
through any checkout's ``stn-repro`` as whole processes and print a table of outcomes (used to
measure the list before and after the reliability work).

Each case is command-line arguments (``{tmp}`` is a fresh folder, ``{data}`` the bundled data
folder), an optional ``setup(tmp, invoke)`` that prepares damaged files first, and what must
happen: ``error`` (exit 2, one line on stderr, no traceback, no run recorded; ``message`` is in
that line) or ``recovered`` (exit 0, the run finished, a warning names what was repaired).
A case may also set environment variables (``env``) or a file-size limit in bytes
(``file_limit``, as ``ulimit -f`` does). Cases on real files copy the samples beside the project
(``../shared/data``) and are skipped (in pytest) when those are absent.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
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
    env: dict[str, str] = field(default_factory=dict)
    file_limit: int | None = None


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


# ---- setups: damaged copies of the real samples ----------------------------------------------

SVHN = ["dataset=svhn64", "model=svhn_cnn", "model.width=0.125", "paths.svhn_dir={tmp}/SVHN",
        "dataset.params.validation=2", "workers=0"]  # fmt: skip
GTSRB = ["dataset=gtsrb", "model=gtsrb_cnn", "model.width=0.125", "paths.gtsrb_dir={tmp}/GTSRB",
         "workers=0"]  # fmt: skip
CUB = ["dataset=cub", "model=cnn", "paths.cub_dir={tmp}/CUB", "dataset.params.classes=1",
       "dataset.params.size=16", "dataset.params.random_crop=12", "workers=0"]  # fmt: skip


def svhn_copy(damage: Callable[[Path], None]):
    """A tiny SVHN folder (``svhn_files.tiny_svhn``) in ``{tmp}/SVHN``, then ``damage(root)``."""

    def setup(tmp: Path, invoke) -> None:
        from svhn_files import tiny_svhn

        damage(tiny_svhn(tmp / "SVHN", per_part=4))

    return setup


def truncate(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def garbage(path: Path) -> None:
    """2 KB of garbage in the middle of the file."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at : at + 2048] = bytes((i * 37 + 11) % 256 for i in range(2048))
    path.write_bytes(bytes(data))


def without_bbox(root: Path) -> None:
    import h5py

    with h5py.File(root / "train" / "digitStruct.mat", "r+") as f:
        del f["digitStruct/bbox"]


def svhn_cache(damage: Callable[[Path], None]):
    """A finished SVHN run, its stores deleted (so the next run parses the labels again from
    the cache), then ``damage`` to the parsed-labels cache of ``train``."""

    def setup(tmp: Path, invoke) -> None:
        from svhn_files import tiny_svhn

        tiny_svhn(tmp / "SVHN", per_part=4)
        args = [a.format(tmp=tmp) for a in SVHN]
        assert invoke([*base_args(tmp), *args])[0] == 0, "the setup run failed"
        shutil.rmtree(tmp / "outputs" / "runs")
        for path in (tmp / "cache").iterdir():
            if path.suffix != ".npz":
                path.unlink()
        [cache] = (tmp / "cache").glob("svhn-train-digitstruct-*.npz")
        damage(cache)

    return setup


def gtsrb_copy(damage: Callable[[Path], None]):
    def setup(tmp: Path, invoke) -> None:
        from gtsrb_files import tiny_gtsrb

        damage(tiny_gtsrb(tmp / "GTSRB"))

    return setup


def csv_value(column: str, value: str) -> Callable[[Path], None]:
    """Set ``column`` of the first sign of class 0's annotation CSV (its line 2) to ``value``."""

    def damage(root: Path) -> None:
        path = root / "Final_Training/Images/00000/GT-00000.csv"
        lines = path.read_text().splitlines()
        header = lines[0].split(";")
        row = lines[1].split(";")
        row[header.index(column)] = value
        path.write_text("\n".join([lines[0], ";".join(row), *lines[2:]]) + "\n")

    return damage


def first_ppm_truncated(root: Path) -> None:
    truncate(sorted((root / "Final_Training/Images/00000").glob("*.ppm"))[0], 0.3)


def cub_copy(damage: Callable[[Path], None]):
    """CUB's metadata and class 1's images from the sample in ``{tmp}/CUB``, then damage."""

    def setup(tmp: Path, invoke) -> None:
        sample = DATA.parents[1] / "shared" / "data" / "cub_200_2011_sample" / "CUB_200_2011"
        if not (sample / "images.txt").exists():
            import pytest

            pytest.skip(f"the CUB sample is absent ({sample}); it ships beside the project only")
        folder = tmp / "CUB" / "CUB_200_2011"
        folder.mkdir(parents=True)
        for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt"):
            shutil.copy(sample / name, folder / name)
        first = sorted((sample / "images").iterdir())[0]
        shutil.copytree(first, folder / "images" / first.name)
        damage(folder)

    return setup


def cub_label_abc(folder: Path) -> None:
    path = folder / "image_class_labels.txt"
    lines = path.read_text().splitlines()
    lines[4] = "5 abc"
    path.write_text("\n".join(lines) + "\n")


def first_jpeg_truncated(folder: Path) -> None:
    truncate(sorted((folder / "images").glob("*/*.jpg"))[0], 0.3)


def checkpoint_of_another_config(tmp: Path, invoke) -> None:
    """Run folder ``mine`` holds its own config.yaml but a checkpoint copied from another run."""
    assert invoke([*base_args(tmp), *QUICK, f"run_dir={tmp}/mine"])[0] == 0
    assert invoke([*base_args(tmp), *QUICK, "schedule.lr=0.02", f"run_dir={tmp}/other"])[0] == 0
    (tmp / "mine" / "metrics.json").unlink()
    shutil.copy(tmp / "other" / "checkpoint.pt", tmp / "mine" / "checkpoint.pt")
    (tmp / "mine" / "checkpoint.prev.pt").unlink(missing_ok=True)


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
    Case("label-smoothing-one", ["schedule.label_smoothing=1"],
         "schedule.label_smoothing=1.0: must lie in [0, 1)"),
    Case("ema-decay-one", ["schedule.ema_decay=1"], "schedule.ema_decay=1.0: must lie in [0, 1)"),
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
        ["dataset.num_classes=5"],
        "dataset.num_classes=5: the rts generator's labels take 10 classes",
    ),
    # a setting of the schema is overridden without + (Hydra's own advice, in one line)
    Case("plus-on-a-setting", ["+dataset.num_classes=5"], "Either remove + prefix"),
    Case("dataset-unknown", ["dataset=foo"], "dataset=foo: no such dataset"),
    # model
    Case("model-unknown", ["model=resnet"], "model=resnet: no such model"),
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
        "model/transform=foo: no such model/transform",
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
    Case("experiment-unknown", ["experiment=table1_foo"], "experiment=table1_foo: no such"),
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
    Case("schedule-unknown", ["schedule=foo"], "schedule=foo: no such schedule"),
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
    # real files, damaged (issue 31): each names the file (and line) and the fix
    Case("svhn-digitstruct-truncated", SVHN, "digitStruct.mat is damaged or not SVHN's",
         setup=svhn_copy(lambda root: truncate(root / "train" / "digitStruct.mat"))),
    Case("svhn-digitstruct-garbage", SVHN, "digitStruct.mat is damaged or not SVHN's",
         setup=svhn_copy(lambda root: garbage(root / "train" / "digitStruct.mat"))),
    Case("svhn-digitstruct-no-bbox", SVHN, "digitStruct.mat is damaged or not SVHN's",
         setup=svhn_copy(without_bbox)),
    Case("svhn-png-truncated", SVHN, "1.png cannot be read",
         setup=svhn_copy(lambda root: truncate(root / "train" / "1.png", 0.3))),
    Case("svhn-labels-cache-flipped", SVHN, "are damaged", "recovered",
         svhn_cache(lambda path: path.write_bytes(flip(path.read_bytes(), 0.9)))),
    Case("svhn-labels-cache-truncated", SVHN, "are damaged", "recovered",
         svhn_cache(truncate)),
    Case("gtsrb-classid-abc", GTSRB, "GT-00000.csv, line 2: ClassId='abc' is not a whole number",
         setup=gtsrb_copy(csv_value("ClassId", "abc"))),
    Case("gtsrb-roi-empty", GTSRB, "GT-00000.csv, line 2: Roi.X1='' is not a whole number",
         setup=gtsrb_copy(csv_value("Roi.X1", ""))),
    Case("gtsrb-ppm-truncated", GTSRB, "00000_00000.ppm cannot be read",
         setup=gtsrb_copy(first_ppm_truncated)),
    Case("cub-label-abc", CUB, "image_class_labels.txt: image 5 has 'abc'",
         setup=cub_copy(cub_label_abc)),
    Case("cub-jpeg-truncated", CUB, ".jpg cannot be read", setup=cub_copy(first_jpeg_truncated)),
    Case("torchrun-half-set-up", QUICK, "WORLD_SIZE=2 is set but MASTER_ADDR, MASTER_PORT are not",
         env={"WORLD_SIZE": "2", "RANK": "0"}),
    Case("file-size-limit", QUICK, "the file-size limit stopped writing", file_limit=300 * 1024),
    # silent before: now refused
    Case("width-on-an-mnist-model", ["+model.width=0.5"], "model.width: model cnn does not use it"),
    Case("width-without-plus", ["model.width=0.5"], "model.width: no such setting (known in model"),
    Case("dropout-out-of-range", ["model=svhn_cnn", "dataset=svhn64", "model.dropout=1.5"],
         "model.dropout=1.5: must lie in [0, 1)"),
    Case("coloc-without-coloc", ["coloc.lr=0.1"], "coloc.lr: the chosen config has no coloc"),
    Case("coloc-on-table1", ["experiment=table1_rts", "experiment.seeds=[1]", "coloc.lr=0.1"],
         "coloc.lr: experiment table1_rts has no coloc"),
    Case("encoder-on-table1", ["experiment=table1_rts", "experiment.encoder.seed=3"],
         "experiment.encoder.seed: experiment table1_rts has no experiment.encoder"),
    Case("model-null", ["model=null"], "model=null: every run needs a model (choose from cnn"),
    Case("experiment-null", ["experiment=null"], "experiment=null: leave it out"),
    Case("sweep-overwrite-two", ["-m", "overwrite=true,2"], "overwrite=2: not a valid bool"),
    Case("seeds-without-experiment", ["experiment.seeds=[1]"],
         "experiment.seeds: the chosen config has no experiment (add experiment="),
    Case("overwrite-two", ["overwrite=2"], "overwrite=2: not a valid bool"),
    Case("sweep-given-twice", ["-m", "model=fcn,cnn", "model=st_fcn"], "model is given twice"),
    Case("sweep-values-given-twice", ["-m", "schedule.iterations=2,3", "schedule.iterations=4,5"],
         "schedule.iterations is given twice"),
    # misleading before: now the right advice
    Case("output-dir-non-ascii", ["paths.output_dir={tmp}/été"], "quote the value"),
    Case("run-dir-unwritable", [*QUICK, "run_dir=/proc/stn-repro-run"], "run_dir=..."),
    Case("checkpoint-of-another-config", [*QUICK, "run_dir={tmp}/mine"],
         "checkpoint.pt was written for config", setup=checkpoint_of_another_config),
    Case("sweep-unknown-experiment", ["-m", "experiment=table1_tc,nosuch"],
         "experiment=nosuch: no such experiment"),
]  # fmt: skip


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


def measure(checkout: Path, only: list[str] | None = None) -> int:
    import os
    import subprocess
    import sys
    import tempfile

    def invoke_in(tmp: Path, case: Case | None = None):
        env = {**os.environ, "PYTHONPATH": str(checkout), "STN_REPRO_ROOT": str(tmp)}

        def invoke(args: list[str]) -> tuple[int, str, str]:
            done = subprocess.run([sys.executable, "-m", "stn_repro.cli", *args], cwd=checkout,
                                  capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
            return done.returncode, done.stdout, done.stderr

        def invoke_case(args: list[str]) -> tuple[int, str, str]:  # its env and file limit
            limit = None if case.file_limit is None else file_limit(case.file_limit)
            done = subprocess.run([sys.executable, "-m", "stn_repro.cli", *args], cwd=checkout,
                                  capture_output=True, text=True, env={**env, **case.env},
                                  timeout=600, preexec_fn=limit)  # fmt: skip
            return done.returncode, done.stdout, done.stderr

        return invoke if case is None else invoke_case

    print("| case | arguments | outcome |\n|---|---|---|")
    good = skipped = 0
    unknown = set(only or ()) - {c.id for c in CASES}
    if unknown:
        raise SystemExit(f"no such case: {', '.join(sorted(unknown))}")
    cases = [c for c in CASES if not only or c.id in only]
    for case in cases:
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            invoke = invoke_in(tmp)
            try:
                if case.setup is not None:
                    case.setup(tmp, invoke)
            except BaseException as err:  # an older checkout may not get that far; a skip
                if isinstance(err, KeyboardInterrupt):
                    raise
                if type(err).__name__ == "Skipped":  # pytest.skip: its sample is absent here
                    skipped += 1
                    print(f"| {case.id} | | skipped: {err} |")
                else:
                    print(f"| {case.id} | | setup failed ({type(err).__name__}) |")
                continue
            runs = tmp / "outputs" / "runs"
            before = set(runs.rglob("metrics.json")) if runs.exists() else set()
            args = [a.format(tmp=tmp) for a in case.args]
            code, _, err = invoke_in(tmp, case)([*base_args(tmp), *args])
            recorded = runs.exists() and set(runs.rglob("metrics.json")) != before
            shown = " ".join(a.replace(str(tmp), "TMP") for a in args)
            found = outcome(case, code, err, recorded)
            good += found == ("recovered" if case.expect == "recovered" else "clear error")
            print(f"| {case.id} | `{shown}` | {found} |", flush=True)
    failed = len(cases) - good - skipped
    print(f"\n{good} passed, {failed} failed, {skipped} skipped")
    return failed


def file_limit(size: int) -> Callable[[], None]:
    """A ``preexec_fn`` setting the file-size limit (``ulimit -f``) to ``size`` bytes."""
    import resource

    def apply() -> None:
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
        )

    return apply


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the bad inputs through a checkout's CLI.")
    parser.add_argument("checkout", nargs="?", type=Path, default=Path(__file__).parents[1])
    parser.add_argument("--only", nargs="+", metavar="ID", help="these cases only")
    args = parser.parse_args()
    raise SystemExit(1 if measure(args.checkout.resolve(), args.only) else 0)
