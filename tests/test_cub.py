"""CUB-200-2011 (Table 3): the metadata, the sample's subset, RGB conversion, the archive's checks
and extraction, augmentation, the offline messages, the models' shapes and start, the window
boxes, and a smoke experiment writing the table (random weights)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from urllib.error import URLError

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from stn_repro.config import PACKAGE_ROOT, config_hash
from stn_repro.data import cub
from stn_repro.data.cub import cub_inputs, read_metadata
from stn_repro.errors import UserError
from stn_repro.models import DataSpec, build_model

SAMPLE = PACKAGE_ROOT.parent / "shared" / "data" / "cub_200_2011_sample"


def need_sample() -> Path:
    if not (SAMPLE / "CUB_200_2011" / "images.txt").exists():
        pytest.skip(f"the CUB sample is absent ({SAMPLE}); it ships beside the project only")
    return SAMPLE


def test_metadata_counts_and_the_samples_subset():
    folder = need_sample() / "CUB_200_2011"
    meta = cub.read_metadata(folder)
    assert len(meta) == 11_788 and meta.train.sum() == 5_994 and (~meta.train).sum() == 5_794
    assert meta.labels.min() == 0 and meta.labels.max() == 199
    assert meta.paths[0] == "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
    first5 = meta.labels < 5  # the sample holds the images of classes 001-005 only
    assert (meta.train & first5).sum() == 150 and (~meta.train & first5).sum() == 132
    kept = [path for path, keep in zip(meta.paths, first5, strict=True) if keep]
    assert all((folder / "images" / path).exists() for path in kept)


def test_greyscale_photographs_become_rgb(tmp_path):
    grey = np.tile(np.arange(40, dtype=np.uint8)[None, :] * 5, (30, 1))  # 40 x 30, a ramp
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.jpg")
    image = cub.bird_image(tmp_path / "grey.jpg", 16, keep_aspect=False)
    assert image.shape == (3, 16, 16) and image.dtype == np.uint8
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()
    assert image[0, :, -1].mean() > image[0, :, 0].mean()  # the ramp kept its direction


def test_the_shorter_side_is_resized_and_the_aspect_ratio_kept(tmp_path):
    """A.6: crops "from 256 x S": 40 x 30 at size 16 -> 16 high, 40 * 16 / 30 = 21.3 -> 21
    wide; a portrait 30 x 40 -> 21 high, 16 wide."""
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "wide.jpg")
    Image.new("RGB", (30, 40), (200, 10, 10)).save(tmp_path / "tall.jpg")
    assert cub.bird_image(tmp_path / "wide.jpg", 16).shape == (3, 16, 21)
    assert cub.bird_image(tmp_path / "tall.jpg", 16).shape == (3, 21, 16)


def fake_archive(tmp_path: Path, monkeypatch) -> Path:
    """A tiny CUB_200_2011.tgz (two classes, one image each), made the published one."""
    src = tmp_path / "src" / "CUB_200_2011"
    for i, name in enumerate(["001.A/a_1.jpg", "002.B/b_1.jpg"], 1):
        (src / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (30, 20), (i * 60, 0, 0)).save(src / "images" / name)
    (src / "images.txt").write_text("1 001.A/a_1.jpg\n2 002.B/b_1.jpg\n")
    (src / "image_class_labels.txt").write_text("1 1\n2 2\n")
    (src / "train_test_split.txt").write_text("1 1\n2 0\n")
    root = tmp_path / "CUB"
    root.mkdir()
    archive = root / cub.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="CUB_200_2011")
    data = archive.read_bytes()
    monkeypatch.setattr(cub, "ARCHIVE_SIZE", len(data))
    monkeypatch.setattr(cub, "ARCHIVE_MD5", hashlib.md5(data).hexdigest())
    return root


def test_the_archive_is_checked_then_extracted_whole(tmp_path, monkeypatch):
    root = fake_archive(tmp_path, monkeypatch)
    folder = cub.dataset_dir(root)
    assert folder == root / "CUB_200_2011"
    meta = cub.read_metadata(folder)
    assert meta.labels.tolist() == [0, 1] and meta.train.tolist() == [True, False]
    assert not list(root.glob(".*extracting"))


def test_an_archive_that_is_not_the_published_one_is_refused(tmp_path, monkeypatch):
    root = fake_archive(tmp_path, monkeypatch)
    with open(root / cub.ARCHIVE, "ab") as f:
        f.write(b"x")  # one byte more: e.g. another copy
    with pytest.raises(UserError, match="is not the published CUB_200_2011.tgz.*delete it"):
        cub.dataset_dir(root)
    assert not (root / "CUB_200_2011").exists()


def test_missing_files_offline_give_one_sentence_naming_where_to_put_them(invoke, tmp_path,
                                                                         offline):  # fmt: skip
    code, out, err = invoke([
        "dataset=cub", "model=cnn", "schedule=smoke", "progress=false",
        f"paths.cub_dir={tmp_path / 'nothing'}", f"paths.output_dir={tmp_path / 'out'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ])  # fmt: skip
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "CUB_200_2011.tgz" in err and str(tmp_path / "nothing") in err
    assert "paths.cub_dir" in err


def test_missing_images_name_the_classes_way_out(compose_cfg, tmp_path):
    from stn_repro.data.feeds import FileFeed

    need_sample()
    cfg = compose_cfg("dataset=cub", "model=cnn", f"paths.cub_dir={SAMPLE}", "workers=0")
    way_out = r"dataset.params.first_class=1 dataset.params.classes=5\)$"
    with pytest.raises(UserError, match="11506 CUB images .* missing.*" + way_out):
        FileFeed(cfg, torch.device("cpu"))


def test_a_class_range_keeps_only_those_classes(compose_cfg):
    """Classes 3-5 of the sample (first_class=3, classes=3): their images only, labels 2-4."""
    from stn_repro.data.feeds import FileFeed

    need_sample()
    cfg = compose_cfg("dataset=cub", "model=cnn", f"paths.cub_dir={SAMPLE}", "workers=0",
                      "dataset.params.first_class=3", "dataset.params.classes=3",
                      "dataset.params.size=16", "dataset.params.random_crop=12")  # fmt: skip
    feed = FileFeed(cfg, torch.device("cpu"))
    meta = read_metadata(SAMPLE / "CUB_200_2011")
    wanted = (meta.labels >= 2) & (meta.labels <= 4)
    assert feed.info["counts"]["train"] == int((wanted & meta.train).sum())
    assert feed.info["counts"]["test"] == int((wanted & ~meta.train).sum())
    labels = h5py.File(feed.stores["train"].path)["labels"][...]
    assert set(labels.tolist()) == {2, 3, 4}


def test_a_class_range_past_200_is_refused(compose_cfg):
    cfg = compose_cfg("dataset=cub", "dataset.params.first_class=190", "dataset.params.classes=20")
    with pytest.raises(UserError, match="first_class=190 .* past class 200: take at most 11"):
        cub_inputs(cfg.dataset, SAMPLE)


def test_new_data_options_leave_earlier_runs_identities_alone(compose_cfg):
    """first_class=1, keep_aspect=false and no exclusion list are "as before": a run made
    before these options keeps its hash (dataset, model and schedule as then)."""
    before = ["dataset=cub", "model=cub_cnn", "schedule=paper_cub", "model.dropout=0.5",
              "schedule.iterations=35000", "schedule.lr_steps=[10000,20000,25000,30000]"]
    cfg = compose_cfg(*before, "dataset.params.keep_aspect=false")
    assert config_hash(cfg) == "ccbbd4ae794e7d6d"
    for change in ("dataset.params.first_class=2", "dataset.params.keep_aspect=true",
                   "dataset.params.exclude_test=list.txt"):  # fmt: skip
        changed = compose_cfg(*before, "dataset.params.keep_aspect=false", change)
        assert config_hash(changed) != "ccbbd4ae794e7d6d", change


def test_training_crops_and_flips_follow_the_draw_and_testing_takes_the_centre(compose_cfg):
    from stn_repro.data.feeds import FileFeed

    need_sample()
    cfg = compose_cfg("dataset=cub", "model=cnn", f"paths.cub_dir={SAMPLE}", "workers=0",
                      "dataset.params.classes=5", "dataset.params.size=64",
                      "dataset.params.random_crop=56",
                      "dataset.params.keep_aspect=false")  # fmt: skip
    feed = FileFeed(cfg, torch.device("cpu"))
    assert feed.info["counts"] == {"train": 150, "val": 0, "test": 132}
    assert "val" not in feed.splits
    train, test = feed.stores["train"], feed.stores["test"]
    assert train.augmented and train[(0, 7)][0].shape == (3, 56, 56)
    full = torch.from_numpy(h5py.File(train.path)["images"][0])
    flipped = unflipped = 0
    for draw in range(40):
        crop = train[(0, draw)][0]
        g = torch.Generator().manual_seed(draw)
        top, left = (int(torch.randint(9, (), generator=g)) for _ in range(2))
        window = full[:, top : top + 56, left : left + 56]
        flipped += torch.equal(crop, window.flip(-1))
        unflipped += torch.equal(crop, window)
    assert flipped + unflipped == 40 and 5 < flipped < 35
    image, label = test[0]
    stored = torch.from_numpy(h5py.File(test.path)["images"][0])
    assert torch.equal(image, stored[:, 4:60, 4:60]) and label.shape == ()


# ---- models ------------------------------------------------------------------------------------


def cub_model(name: str, side: int, n: int = 2, part_size: int = 224):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"name": name, "num_transformers": n, "part_size": part_size,
                            "pretrained": False, "dropout": 0.5,
                            "transform": {"name": "translation", "scale": 0.5}})  # fmt: skip
    return build_model(cfg, DataSpec((3, side, side), 200))


def test_the_inception_trunk_gives_1024_maps_of_7x7_at_224():
    from stn_repro.models.cub import inception_trunk

    with torch.no_grad():
        assert inception_trunk(pretrained=False).eval()(torch.rand(1, 3, 224, 224)).shape == (
            1, 1024, 7, 7)  # fmt: skip
    model = cub_model("cub_cnn", 224).eval()
    assert model(torch.rand(2, 3, 224, 224)).shape == (2, 200) and len(model.parts) == 1


def test_at_448_the_localisation_network_sees_224():
    model = cub_model("cub_st", 448, n=4).eval()
    seen = []
    model.st.localisation[1].register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    with torch.no_grad():
        assert model(torch.rand(1, 3, 448, 448)).shape == (1, 200)
    assert seen == [(1, 3, 224, 224)]


def test_four_transformers_start_on_the_image_quadrants_exactly():
    model = cub_model("cub_st", 64, n=4, part_size=32).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        crops, theta = model.st(x)  # (2, 4, 3, 32, 32)
    assert theta.shape == (2, 4, 2)
    quadrants = [x[..., :32, :32], x[..., :32, 32:], x[..., 32:, :32], x[..., 32:, 32:]]
    for k, quadrant in enumerate(quadrants):
        torch.testing.assert_close(crops[:, k], quadrant, atol=1e-5, rtol=0)


def test_the_localisation_networks_train_at_1e_4_of_the_rate(compose_cfg):
    from stn_repro.engine import make_optimizer

    cfg = compose_cfg("experiment=table3_cub", "schedule=paper_cub", "model=cub_st",
                      "model.pretrained=false")  # fmt: skip
    model = cub_model("cub_st", 224)
    groups = make_optimizer(model, cfg.schedule).param_groups
    assert [g["lr_scale"] for g in groups] == [1.0, 1e-4]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in
                                                    model.st.localisation_parameters()}  # fmt: skip


def test_weights_that_cannot_be_fetched_give_one_sentence(invoke, tmp_path, monkeypatch):
    import torch.hub

    need_sample()

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached weights
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    code, out, err = invoke([
        "dataset=cub", "model=cub_cnn", "schedule=smoke", "progress=false",
        f"paths.cub_dir={SAMPLE}", "dataset.params.classes=5", "dataset.params.size=72",
        "dataset.params.random_crop=64", f"paths.output_dir={tmp_path / 'out'}",
        f"paths.cache_dir={tmp_path / 'cache'}", "workers=0",
    ])  # fmt: skip
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "googlenet-1378be20.pth" in err and "model.pretrained=false" in err


@pytest.mark.parametrize("rows", [
    pytest.param(["row='4xST-CNN (448px)'"], id="one-row",
                 marks=pytest.mark.slow),  # 55-104 s on 2 cores: `make test-slow`
    pytest.param([], id="all-rows", marks=pytest.mark.slow),  # about 100 s
])  # fmt: skip
def test_smoke_experiment_writes_table3(compose_cfg, smoke, tmp_path, rows):
    from hydra import compose

    from stn_repro.cli import run

    need_sample()
    overrides = [*smoke, "experiment=table3_cub", "experiment.seeds=[1]", f"paths.cub_dir={SAMPLE}",
                 "dataset.params.classes=2", "workers=0", *rows]  # fmt: skip
    run(compose("config", overrides=overrides), overrides)
    table = (tmp_path / "outputs" / "tables" / "table3-smoke.md").read_text()
    [four] = [line for line in table.splitlines() if line.startswith("| 4xST-CNN (448px) |")]
    assert four.endswith("| 15.90 (acc. 84.10) |")  # the paper's 84.1% accuracy
    assert "| Lin '15 | (reference) | 19.10 (acc. 80.90) |" in table  # a reference row
    found = list((tmp_path / "outputs" / "runs" / "table3_cub").glob("smoke/*/*/seed1"))
    assert len(found) == (1 if rows else 4)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from stn_repro.report.figures import cub_figure

    [four] = [f for f in found if f.parts[-3] == "4xst-cnn-448px"]
    acc = EventAccumulator(str(four / "tb"))
    acc.Reload()
    assert {"images/st_boxes", "images/st_grid", "images/st_output"} <= set(acc.Tags()["images"])
    figure = cub_figure(four, tmp_path / "cub.png", examples=2)
    assert Image.open(figure).size[0] > 2 * 448 and (tmp_path / "cub_centres.png").exists()


def test_window_boxes_of_the_quadrant_start():
    from stn_repro.st import build_transform
    from stn_repro.viz import draw_boxes, window_boxes

    theta = torch.tensor([[-0.5, -0.5], [0.5, 0.5]])
    boxes = window_boxes(build_transform("translation", scale=0.5).matrix(theta), (448, 448))
    assert boxes.tolist() == [[0, 0, 224, 224], [224, 224, 448, 448]]
    drawn = draw_boxes(torch.zeros(1, 3, 448, 448), boxes[None])
    assert drawn[0, :, 100, 0].tolist() == pytest.approx([230 / 255, 25 / 255, 75 / 255])  # red
    assert drawn[0, :, 300, 224].tolist() == pytest.approx([60 / 255, 180 / 255, 75 / 255])
    assert drawn[0, :, 100, 100].sum() == 0  # inside: untouched
    assert drawn[0, :, 100, 223].tolist() == pytest.approx([230 / 255, 25 / 255, 75 / 255])
    assert drawn[0, :, 100, 224].sum() == 0  # the first box ends at pixel 223


def test_two_transformers_start_on_the_left_and_right_halves_centres():
    model = cub_model("cub_st", 64, n=2, part_size=32).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        crops, _ = model.st(x)
    torch.testing.assert_close(crops[:, 0], x[..., 16:48, :32], atol=1e-5, rtol=0)
    torch.testing.assert_close(crops[:, 1], x[..., 16:48, 32:], atol=1e-5, rtol=0)


def test_window_boxes_are_drawn_for_grey_mnist_attention_models(compose_cfg, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from stn_repro.engine import log_images

    cfg = compose_cfg("dataset=mnist_rts", "model=st_cnn", "model/transform=attention")
    model = build_model(cfg.model, DataSpec((1, 42, 42), 10, 2))
    writer = SummaryWriter(str(tmp_path / "tb"))
    log_images(writer, model, torch.rand(4, 1, 42, 42), 1)  # grey input: no crash
    writer.close()


def test_the_data_key_follows_the_metadata_files(compose_cfg, tmp_path):
    """A run records the key of the files it read (``source_inputs``); an edited split file (here
    one image moved to the test split) is other data."""
    import shutil

    from stn_repro.data.feeds import source_inputs

    def source_key(cfg):
        return source_inputs(cfg)[0]

    need_sample()
    folder = tmp_path / "CUB" / "CUB_200_2011"
    folder.mkdir(parents=True)
    for name in cub.METADATA:
        shutil.copy(SAMPLE / "CUB_200_2011" / name, folder / name)
    cfg = compose_cfg("dataset=cub", f"paths.cub_dir={tmp_path / 'CUB'}")
    before = source_key(cfg)
    assert before == source_key(cfg) and before is not None
    split = folder / "train_test_split.txt"
    lines = split.read_text().splitlines(keepends=True)
    assert lines[1] == "2 1\n"
    split.write_text("".join([lines[0], "2 0\n", *lines[2:]]))
    assert source_key(cfg) != before
    assert source_inputs(compose_cfg("dataset=mnist_rts")) is None


def test_stores_keep_each_photographs_aspect_and_crops_come_from_all_of_it(compose_cfg):
    """keep_aspect (the default, A.6's "224x224 from 256xS"): each stored image has its shorter
    side at ``size`` and its own longer side, checked by the store's checksum on reopening;
    training crops reach the far end of the longer side, tests take the centre crop."""
    from stn_repro.data.feeds import FileFeed
    from stn_repro.data.stored import check_store

    need_sample()
    cfg = compose_cfg("dataset=cub", "model=cnn", f"paths.cub_dir={SAMPLE}", "workers=0",
                      "dataset.params.classes=2", "dataset.params.size=32",
                      "dataset.params.random_crop=28")  # fmt: skip
    feed = FileFeed(cfg, torch.device("cpu"))
    meta = read_metadata(SAMPLE / "CUB_200_2011")
    first = SAMPLE / "CUB_200_2011" / "images" / meta.paths[int(np.flatnonzero(meta.train)[0])]
    w, h = Image.open(first).size
    with h5py.File(feed.stores["train"].path) as f:
        shapes = f["shapes"][...]
    assert (shapes[:, 0] == 3).all()
    assert (shapes[:, 1:].min(axis=1) == 32).all() and shapes[:, 1:].max() > 32
    long_side = round(max(w, h) * 32 / min(w, h))
    assert sorted(shapes[0, 1:].tolist()) == [32, long_side]
    train, test = feed.stores["train"], feed.stores["test"]
    with h5py.File(train.path) as f:
        whole = f["images"][0].reshape(shapes[0])
    lefts = set()
    for draw in range(60):
        crop = train[(0, draw)][0].numpy()
        assert crop.shape == (3, 28, 28)
        hits = [(t, left) for t in range(shapes[0, 1] - 27) for left in range(shapes[0, 2] - 27)
                if (whole[:, t : t + 28, left : left + 28] == crop).all()
                or (whole[:, t : t + 28, left : left + 28][:, :, ::-1] == crop).all()]  # fmt: skip
        assert hits
        lefts.add(max(hits)[1] if shapes[0, 2] > shapes[0, 1] else max(hits)[0])
    assert max(lefts) > 4  # crops move along the longer side, not only within a square
    assert test[0][0].shape == (3, 28, 28)
    assert check_store(Path(cfg.paths.cache_dir) / feed.info["stores"]["train"],
                       feed.info["key"]) == len(train)  # fmt: skip


def test_test_images_listed_for_exclusion_are_left_out(compose_cfg, tmp_path):
    """Sect. 4.3's 84.0% protocol: a file names test images to leave out (the paper does not
    list the 22); a training image or an unknown name in it is refused with its line."""
    from stn_repro.data.feeds import FileFeed

    need_sample()
    meta = read_metadata(SAMPLE / "CUB_200_2011")
    tests = [meta.paths[i] for i in np.flatnonzero(~meta.train & (meta.labels < 2))]
    listing = tmp_path / "imagenet_overlap.txt"
    listing.write_text(f"# overlap\n{tests[0]}\n\n{tests[3]}  # another\n")
    base = ["dataset=cub", "model=cnn", f"paths.cub_dir={SAMPLE}", "workers=0",
            "dataset.params.classes=2", "dataset.params.size=16",
            "dataset.params.random_crop=12"]  # fmt: skip
    feed = FileFeed(compose_cfg(*base, f"dataset.params.exclude_test={listing}"),
                    torch.device("cpu"))  # fmt: skip
    assert feed.info["counts"]["test"] == len(tests) - 2
    assert "less the images listed in" in feed.description
    train_image = meta.paths[int(np.flatnonzero(meta.train)[0])]
    listing.write_text(f"{tests[0]}\n{train_image}\n")
    with pytest.raises(UserError, match=r"imagenet_overlap.txt, line 2: .* is a training image"):
        cub_inputs(compose_cfg(*base, f"dataset.params.exclude_test={listing}").dataset, SAMPLE)
    with pytest.raises(UserError, match="exclude_test=.*nothing.txt: no such file"):
        cub_inputs(compose_cfg(*base, f"dataset.params.exclude_test={tmp_path}/nothing.txt")
                   .dataset, SAMPLE)  # fmt: skip


@pytest.mark.parametrize("name", ["cub_cnn", "cub_st"])
def test_dropout_07_sits_right_before_the_200_way_classifier(compose_cfg, name):
    """A.6: "dropout of 0.7 was used before the 200-way classification layer", in every row."""
    cfg = compose_cfg("dataset=cub", f"model={name}", "model.pretrained=false",
                      "model.part_size=32")  # fmt: skip
    assert cfg.model.dropout == 0.7
    model = build_model(cfg.model, DataSpec((3, 64, 64), 200))
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert [d.p for d in drops if d is model.dropout] == [0.7]
    assert model.classifier.out_features == 200
    seen = []
    model.dropout.register_forward_hook(lambda *_: seen.append("dropout"))
    model.classifier.register_forward_hook(lambda *_: seen.append("classifier"))
    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert seen == ["dropout", "classifier"]
