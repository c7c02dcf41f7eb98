"""SVHN (Table 2): digitStruct parsing, crop geometry, the task, the models, the data feed, the
experiments end to end on a tiny dataset built from the sample, and the offline message."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from svhn_files import need_sample, tiny_svhn, write_digit_struct
from torch import nn

from stn_repro.data import svhn
from stn_repro.data.svhn import crop_box, crop_image, entries, read_digit_struct, sequence_labels
from stn_repro.engine import make_optimizer
from stn_repro.errors import UserError
from stn_repro.models import DataSpec, build_model, count_params
from stn_repro.st.inspect import transformers
from stn_repro.tasks import TASKS


def naive_digit_struct(path: Path) -> tuple[list[str], list[np.ndarray]]:
    """The obvious high-level h5py reading, as a reference for the fast parser."""
    names, boxes = [], []
    with h5py.File(path, "r") as f:
        for name_ref, box_ref in zip(f["digitStruct/name"][:, 0], f["digitStruct/bbox"][:, 0],
                                     strict=True):  # fmt: skip
            names.append("".join(chr(c) for c in f[name_ref][:, 0]))
            group = f[box_ref]
            columns = []
            for field in ("label", "left", "top", "width", "height"):
                ds = group[field]
                if ds.shape[0] == 1:
                    columns.append([ds[0, 0]])
                else:
                    columns.append([f[r][0, 0] for r in ds[:, 0]])
            boxes.append(np.array(columns).T)
    return names, boxes


# ---- digitStruct.mat ----------------------------------------------------------------------------


def test_sample_digit_structs_parse_to_the_documented_facts():
    sample = need_sample()
    train = read_digit_struct(sample / "train" / "digitStruct.mat")
    assert train.names[0] == "1.png"
    np.testing.assert_array_equal(train.digits(0), [[1, 246, 77, 81, 219], [9, 323, 81, 96, 219]])
    test = read_digit_struct(sample / "test" / "digitStruct.mat")
    assert test.names[0] == "1.png" and test.digits(0)[:, 0].tolist() == [5]
    for part in ("train", "test", "extra"):
        parsed = read_digit_struct(sample / part / "digitStruct.mat")
        names, boxes = naive_digit_struct(sample / part / "digitStruct.mat")
        assert 39 <= len(parsed) <= 40 and parsed.names == names
        for i, expected in enumerate(boxes):
            np.testing.assert_array_equal(parsed.digits(i), expected)
        assert (parsed.counts == 1).any() and (parsed.counts > 1).any()  # both storage cases


def test_a_number_of_more_than_five_digits_is_parsed_then_dropped(tmp_path):
    six = [(d + 1, 10 * d, 5, 9, 20) for d in range(6)]
    one = [(10, 3, 4, 5, 6)]  # the digit 0, stored as 10, inline
    write_digit_struct(tmp_path / "digitStruct.mat", [("1.png", six), ("2.png", one)])
    parsed = read_digit_struct(tmp_path / "digitStruct.mat")
    assert parsed.names == ["1.png", "2.png"] and parsed.counts.tolist() == [6, 1]
    np.testing.assert_array_equal(parsed.digits(0), six)
    kept, dropped = entries(tmp_path, parsed, positions=5)
    assert dropped == 1 and [p.name for p, _ in kept] == ["2.png"]
    assert sequence_labels(kept[0][1][:, 0]).tolist() == [0, 10, 10, 10, 10]


def test_sequence_labels_map_ten_to_zero_and_pad_with_no_digit():
    assert sequence_labels(np.array([1, 10, 3])).tolist() == [1, 0, 3, 10, 10]


# ---- crops --------------------------------------------------------------------------------------


def test_crop_box_against_hand_computed_boxes():
    digits = np.array([[1, 10, 20, 30, 40]], float)  # union (10, 20)-(40, 60), centre (25, 40)
    # grown 30%: 39 x 52 -> x 25 -+ 19.5 = [5.5, 44.5] -> [6, 45]; y 40 -+ 26 = [14, 66]
    assert crop_box(digits, 0.3, 1.0) == (6, 14, 45, 66)
    # loose (x2): 78 x 104 -> x [-14, 64], y [-12, 92]: past the image edges
    assert crop_box(digits, 0.3, 2.0) == (-14, -12, 64, 92)
    two = np.array([[1, 0, 0, 10, 10], [2, 20, 5, 10, 10]], float)  # union (0, 0)-(30, 15)
    assert crop_box(two, 0.0, 1.0) == (0, 0, 30, 15)


def test_crop_past_the_image_edge_is_black_there():
    image = Image.fromarray(np.full((50, 50, 3), 200, np.uint8))
    crop = crop_image(image, (-10, -5, 40, 45), 50)  # 50 x 50: no resampling
    assert crop.shape == (3, 50, 50) and crop.dtype == np.uint8
    assert (crop[:, :, :10] == 0).all() and (crop[:, :5, :] == 0).all()
    assert (crop[:, 5:, 10:] == 200).all()


# ---- task ---------------------------------------------------------------------------------------


def test_sequence_error_counts_a_sample_right_only_if_every_position_is():
    labels = torch.tensor([[1, 2, 10, 10, 10], [3, 4, 5, 10, 10], [7, 10, 10, 10, 10]])
    predicted = labels.clone()
    predicted[1, 4] = 6  # one position wrong: the whole number is wrong
    logits = F.one_hot(predicted, 11).float()  # (3, 5, 11)
    task = TASKS["sequence"]
    assert int(task.wrong(logits, labels)) == 1
    expected = sum(F.cross_entropy(logits[:, k], labels[:, k]) for k in range(5))
    torch.testing.assert_close(task.loss(logits, labels), expected)


# ---- models -------------------------------------------------------------------------------------


def model_cfg(name: str, width: float = 1.0, layers: str = "a5"):
    from omegaconf import OmegaConf

    transform = None if name == "svhn_cnn" else {"name": "affine"}
    return OmegaConf.create({"name": name, "width": width, "dropout": 0.5, "layers": layers,
                             "transform": transform})  # fmt: skip


def conv(cin: int, cout: int, k: int = 5) -> int:
    return cin * cout * k * k + cout


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


A5_CONVS = [48, 64, 128, 160, 192, 192, 192]  # A.5's list, as printed
ELEVEN_CONVS = [48, 64, 128, 160, 192, 192, 192, 192]  # Sect. 4.2's "11 hidden layers"


def cnn_params(size: int, convs: list[int] = A5_CONVS) -> int:
    """By hand: the convolutions, 4 poolings, three FC 3072, five 11-way heads."""
    widths = [3, *convs]
    total = sum(conv(a, b) for a, b in zip(widths, widths[1:], strict=False))
    flat = 192 * (size // 16) ** 2
    return total + fc(flat, 3072) + 2 * fc(3072, 3072) + fc(3072, 55)


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("layers", ["a5", "eleven_hidden"])
def test_parameter_counts_and_head_shapes(size, layers):
    spec = DataSpec((3, size, size), 11, positions=5)
    cnn = cnn_params(size, A5_CONVS if layers == "a5" else ELEVEN_CONVS)
    # A.5: conv[32,5,1,2]-max[2]-conv[32,5,1,2]-fc[32]-fc[32]: one pooling
    single_loc = conv(3, 32) + conv(32, 32) + fc(32 * (size // 2) ** 2, 32) + fc(32, 32)
    multi_inputs = [3 * size**2, 48 * (size // 2) ** 2, 64 * (size // 2) ** 2,
                    128 * (size // 4) ** 2]  # fmt: skip
    multi_loc = sum(fc(n, 32) + fc(32, 32) + fc(32, 6) for n in multi_inputs)
    expected = {
        "svhn_cnn": cnn,
        "svhn_st_single": cnn + single_loc + fc(32, 6),
        "svhn_st_multi": cnn + multi_loc,
    }
    x = torch.rand(2, 3, size, size)
    for name, count in expected.items():
        model = build_model(model_cfg(name, layers=layers), spec)
        assert count_params(model) == count, name
        assert model(x).shape == (2, 5, 11)
    if size == 64:  # printed for the record (pytest -s)
        print({name: f"{count:,}" for name, count in expected.items()})


def layer_sequence(module: nn.Module) -> list[str]:
    """The CNN's layers in order, as A.5 writes them: conv[N], max[2], fc[N], drop."""
    names = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            names.append(f"conv[{m.out_channels},{m.kernel_size[0]},{m.stride[0]},{m.padding[0]}]")
        elif isinstance(m, nn.MaxPool2d):
            names.append(f"max[{m.kernel_size}]")
        elif isinstance(m, nn.Linear):
            names.append(f"fc[{m.out_features}]")
        elif isinstance(m, nn.Dropout):
            names.append(f"drop[{m.p}]")
    return names


def test_the_cnn_is_a5s_layer_list_with_dropout_on_every_layer_but_the_first_conv():
    """A.5: "conv[48,5,1,2]-max[2]-conv[64,5,1,2]-conv[128,5,1,2]-max[2]-conv[160,5,1,2]-
    conv[192,5,1,2]-max[2]-conv[192,5,1,2]-max[2]-conv[192,5,1,2]-fc[3072]-fc[3072]-fc[3072]",
    then five fc[11]; "dropout at 0.5 for all layers except the first convolutional layer"."""
    model = build_model(model_cfg("svhn_cnn"), DataSpec((3, 64, 64), 11, positions=5))
    a5 = ("conv[48,5,1,2]-max[2]-conv[64,5,1,2]-conv[128,5,1,2]-max[2]-conv[160,5,1,2]-"
          "conv[192,5,1,2]-max[2]-conv[192,5,1,2]-max[2]-conv[192,5,1,2]-fc[3072]-fc[3072]-"
          "fc[3072]-fc[55]").split("-")  # fmt: skip
    found = layer_sequence(model)
    assert [n for n in found if not n.startswith("drop")] == a5
    weight_layers = [i for i, n in enumerate(found) if n.startswith(("conv", "fc"))]
    for k, i in enumerate(weight_layers):  # dropout right before every weight layer but the 1st
        assert (found[i - 1] == "drop[0.5]") == (k > 0), (k, found[i - 1 : i + 1])
    assert found.count("drop[0.5]") == len(weight_layers) - 1


def test_localisation_networks_have_a5s_layers_and_no_dropout():
    spec = DataSpec((3, 64, 64), 11, positions=5)
    single = build_model(model_cfg("svhn_st_single"), spec)
    [st] = single.transformers.values()
    assert layer_sequence(st) == ["conv[32,5,1,2]", "max[2]", "conv[32,5,1,2]", "fc[32]",
                                  "fc[32]", "fc[6]"]  # fmt: skip
    multi = build_model(model_cfg("svhn_st_multi"), spec)
    assert sorted(multi.transformers) == ["0", "1", "2", "3"]  # before the first four convs
    for st in multi.transformers.values():
        assert layer_sequence(st) == ["fc[32]", "fc[32]", "fc[6]"]


def test_st_multi_at_its_identity_start_computes_exactly_the_cnn():
    spec = DataSpec((3, 64, 64), 11, positions=5)
    torch.manual_seed(0)
    cnn = build_model(model_cfg("svhn_cnn", 0.25), spec).eval()
    multi = build_model(model_cfg("svhn_st_multi", 0.25), spec).eval()
    missing, unexpected = multi.load_state_dict(cnn.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("transformers.") for k in missing)
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():  # float32: the identity grid's round-off (~1e-6 of a pixel) only
        torch.testing.assert_close(multi(x), cnn(x), atol=1e-6, rtol=0)
        cnn, multi, x = cnn.double(), multi.double(), x.double()  # float64: exact
        torch.testing.assert_close(multi(x), cnn(x), atol=1e-13, rtol=0)


def test_every_transformer_gets_its_own_localisation_group(compose_cfg):
    cfg = compose_cfg("experiment=table2_svhn64", "schedule=paper", "model=svhn_st_multi",
                      "schedule=paper_svhn")  # fmt: skip
    model = build_model(cfg.model, DataSpec((3, 64, 64), 11, positions=5))
    groups = make_optimizer(model, cfg.schedule).param_groups
    sts = transformers(model)
    assert len(sts) == 4 and len(groups) == 5
    assert [g["lr_scale"] for g in groups] == [1.0] + [0.1] * 4
    for st, group in zip(sts, groups[1:], strict=True):
        assert {id(p) for p in group["params"]} == {id(p) for p in st.localisation_parameters()}
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each once


# ---- data on disk ------------------------------------------------------------------------------


@pytest.fixture
def tiny(tmp_path) -> Path:
    return tiny_svhn(tmp_path / "SVHN")


def svhn_overrides(tiny: Path, *extra: str) -> list[str]:
    return [f"paths.svhn_dir={tiny}", "dataset.params.validation=10", "workers=0", *extra]


def test_preprocessing_writes_train_val_test_stores_once(compose_cfg, tiny, monkeypatch):
    from stn_repro.data.feeds import FileFeed

    cfg = compose_cfg("dataset=svhn64", "model=svhn_cnn", *svhn_overrides(tiny))
    feed = FileFeed(cfg, torch.device("cpu"))
    # 40 + 40 train/extra images (one 6-digit number dropped from each part), 40 test
    assert feed.info["counts"] == {"train": 70, "val": 10, "test": 40}
    assert feed.info["dropped"] == {"train": 1, "extra": 1, "test": 1}
    image, label = feed.stores["test"][0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
    assert label.tolist() == [5, 10, 10, 10, 10]  # test/1.png is "5"
    calls = []
    monkeypatch.setattr(svhn, "Crops", lambda *a: calls.append(a))
    FileFeed(cfg, torch.device("cpu"))  # the stores exist: nothing is preprocessed again
    assert calls == []


def test_train_batches_resume_where_they_left_off_with_workers(compose_cfg, tiny):
    from stn_repro.data.feeds import FileFeed

    extra = ("workers=2", "dataset.params.random_crop=54")
    cfg = compose_cfg("dataset=svhn64", "model=svhn_cnn", *svhn_overrides(tiny, *extra))
    feed = FileFeed(cfg, torch.device("cpu"))
    first = feed.train_batches(0)
    batches = [next(first) for _ in range(4)]
    del first
    x, y = next(feed.train_batches(3))
    assert x.shape == (16, 3, 54, 54) and y.shape == (16, 5)
    assert torch.equal(x, batches[3][0]) and torch.equal(y, batches[3][1])
    assert 0 <= x.min() and x.max() <= 1
    # random crops differ between two draws of one image; evaluation takes the centre
    store = feed.stores["train"]
    assert not torch.equal(store[(0, 1)][0], store[(0, 2)][0])
    full = torch.from_numpy(h5py.File(store.path)["images"][0])
    assert torch.equal(store[0][0], full[:, 5:59, 5:59])


def test_archives_are_extracted_and_checked_against_their_first_download(tmp_path, tiny):
    root = tmp_path / "archives"
    root.mkdir()
    with tarfile.open(root / "test.tar.gz", "w:gz") as tar:
        tar.add(tiny / "test", arcname="test")
    assert svhn.part_dir(root, "test") == root / "test"
    assert "test.tar.gz" in (root / "archives.json").read_text()
    (root / "test" / "digitStruct.mat").unlink()  # extract again, from a different archive
    with tarfile.open(root / "test.tar.gz", "w:gz") as tar:
        tar.add(tiny / "train", arcname="test")
    with pytest.raises(UserError, match="differs from the copy first extracted"):
        svhn.part_dir(root, "test")


def test_a_damaged_archive_is_not_recorded_and_leaves_no_folder(tmp_path):
    root = tmp_path / "archives"
    root.mkdir()
    (root / "train.tar.gz").write_bytes(b"\x1f\x8b not really gzip")  # e.g. a cut download
    with pytest.raises(UserError, match="could not be extracted.*delete it and rerun"):
        svhn.part_dir(root, "train")
    assert not (root / "archives.json").exists() and not (root / "train").exists()
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [
        "train.tar.gz"
    ]


def test_missing_files_offline_give_one_sentence_naming_where_to_put_them(invoke, tmp_path,
                                                                         offline):  # fmt: skip
    code, out, err = invoke([
        "dataset=svhn64", "model=svhn_cnn", "schedule=smoke", "progress=false",
        f"paths.svhn_dir={tmp_path / 'nothing'}", f"paths.output_dir={tmp_path / 'out'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ])  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert "train.tar.gz, test.tar.gz and extra.tar.gz" in err and str(tmp_path / "nothing") in err


def test_a_classify_model_on_svhn_is_refused_before_work(compose_cfg):
    with pytest.raises(UserError, match="model=cnn is a classify model.*svhn_cnn"):
        compose_cfg("dataset=svhn64", "model=cnn")


# ---- experiments --------------------------------------------------------------------------------


@pytest.mark.parametrize("px, rows, references", [
    (64, 3, 2), pytest.param(128, 2, 1, marks=pytest.mark.slow),  # `make test-slow`
])  # fmt: skip
def test_smoke_experiment_writes_table2(compose_cfg, smoke, tmp_path, tiny, px, rows, references):
    from hydra import compose

    from stn_repro.cli import run

    overrides = [*smoke, f"experiment=table2_svhn{px}", "experiment.seeds=[1]",
                 *svhn_overrides(tiny)]  # fmt: skip
    run(compose("config", overrides=overrides), overrides)
    table = (tmp_path / "outputs" / "tables" / "table2-smoke.md").read_text()
    assert "% sequence error" in table and "| DRAM* | (reference) |" in table
    assert f"| Model | {px}px: ours | {px}px: paper |" in table
    # our rows + the other papers' (Maxout CNN has no 128px number)
    assert len([line for line in table.splitlines() if line.startswith("| ")]) - 1 == (
        rows + references)
    assert "width x0.125" in table
    found = list((tmp_path / "outputs" / "runs" / f"table2_svhn{px}").glob("smoke/*/*/seed1"))
    assert len(found) == rows
    metrics = json.loads((found[0] / "metrics.json").read_text())
    assert metrics["val_images"] == 10 and metrics["test_images"] == 40
    assert 0 <= metrics["val_error"] <= 100 and 0 <= metrics["test_error"] <= 100
    if px == 64:  # ST-CNN Multi: each transformer and their product, in TensorBoard and a figure
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        from stn_repro.report.figures import svhn_figure

        [multi] = [f for f in found if f.parts[-3] == "st-cnn-multi"]
        acc = EventAccumulator(str(multi / "tb"))
        acc.Reload()
        shown = {"images/input", "images/st_composite", "images/st1_grid"}
        shown |= {f"images/st{k}_output" for k in range(1, 5)}
        assert shown <= set(acc.Tags()["images"])
        assert {"val/error", "test/error"} <= set(acc.Tags()["scalars"])
        figure = svhn_figure(multi, tmp_path / "svhn.png", examples=3)
        assert Image.open(figure).size[0] > 5 * 64  # input + 4 transformer columns
