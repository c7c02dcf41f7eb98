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

from stn_repro.config import PACKAGE_ROOT
from stn_repro.data import cub
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
    image = cub.bird_image(tmp_path / "grey.jpg", 16)
    assert image.shape == (3, 16, 16) and image.dtype == np.uint8
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()
    assert image[0, :, -1].mean() > image[0, :, 0].mean()  # the ramp kept its direction


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
    with pytest.raises(UserError, match="missing.*dataset.params.classes=K"):
        FileFeed(cfg, torch.device("cpu"))


def test_training_crops_and_flips_follow_the_draw_and_testing_takes_the_centre(compose_cfg):
    from stn_repro.data.feeds import FileFeed

    need_sample()
    cfg = compose_cfg("dataset=cub", "model=cnn", f"paths.cub_dir={SAMPLE}", "workers=0",
                      "dataset.params.classes=5", "dataset.params.size=64",
                      "dataset.params.random_crop=56")  # fmt: skip
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


def test_smoke_experiment_writes_table3(compose_cfg, smoke, tmp_path):
    from hydra import compose

    from stn_repro.cli import run

    need_sample()
    overrides = [*smoke, "experiment=table3_cub", "experiment.seeds=[1]", f"paths.cub_dir={SAMPLE}",
                 "dataset.params.classes=5", "workers=0"]  # fmt: skip
    run(compose("config", overrides=overrides), overrides)
    table = (tmp_path / "outputs" / "tables" / "table3.md").read_text()
    assert "| CUB | 4xST-CNN (448px) | 15.90 |" in table  # the paper's 84.1% accuracy
    assert "| CUB | Lin '15 | 19.10 | - |" in table  # a reference row
    assert "Paper acc." in table
    found = list((tmp_path / "outputs" / "runs" / "table3_cub").glob("smoke/*/*/seed1"))
    assert len(found) == 4
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from stn_repro.figures import cub_figure

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
