"""Co-localisation (Table 5): the loss, the boxes, IoU, and a smoke run of the experiment."""

import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import only
from torch import nn

from stn_repro.coloc import Encoder, attention_boxes, digit_boxes, paired_iou, triplet_hinge
from stn_repro.config import PACKAGE_ROOT, config_hash
from stn_repro.data.generators import generate
from stn_repro.experiment import run_experiment
from stn_repro.models import DataSpec, build_model
from stn_repro.st import Attention, sample


def test_triplet_hinge_against_hand_computed_values():
    anchor = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    positive = torch.tensor([[1.0, 0.0], [1.0, 3.0]])  # squared distances 1 and 4
    negative = torch.tensor([[0.0, 3.0], [1.0, 2.0]])  # squared distances 9 and 1
    # max(0, 1 - 9 + 1) = 0 and max(0, 4 - 1 + 1) = 4: mean 2.
    assert triplet_hinge(anchor, positive, negative, margin=1.0).item() == 2.0
    assert triplet_hinge(anchor, positive, negative, margin=9.0).item() == (1 + 12) / 2


def test_attention_boxes_and_iou_against_hand_computed_boxes():
    # s = 1/3 centred on an 84 canvas: pixels 28..56; shifted by tx = 1/3: 42..70.
    theta = torch.tensor([[1 / 3, 0.0, 0.0], [1 / 3, 1 / 3, 0.0], [1.0, 0.0, 0.0]])
    boxes = attention_boxes(theta, (84, 84))
    expected = torch.tensor([[28.0, 28, 56, 56], [42, 28, 70, 56], [0, 0, 84, 84]])
    torch.testing.assert_close(boxes, expected, atol=1e-4, rtol=0)
    truth = torch.tensor([[28.0, 28, 56, 56], [28, 28, 56, 56], [28, 28, 56, 56]])
    # identical: 1; overlap 14x28 over union 42x28: 1/3; 28^2 inside 84^2: 1/9.
    torch.testing.assert_close(paired_iou(boxes, truth), torch.tensor([1.0, 1 / 3, 1 / 9]))


def test_true_boxes_hold_the_digit():
    digits = torch.zeros(4, 28, 28, dtype=torch.uint8)
    digits[:, 0, 0] = digits[:, 27, 27] = 255  # mark the frame's corners
    spec = {"canvas": 84, "clutter": 0, "patch": 6}
    images, _, params = generate("clutter", digits, torch.zeros(4, dtype=torch.long), 0, spec)
    boxes = digit_boxes(params, 84).long()
    for image, (x0, y0, x1, y1) in zip(images[:, 0], boxes, strict=True):
        assert image[y0, x0] == 255 and image[y1 - 1, x1 - 1] == 255
        assert image.sum() == 2 * 255


def script(name: str):
    """The module of ``scripts/<name>.py``."""
    spec = importlib.util.spec_from_file_location(name, PACKAGE_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_landscape_windows_hit_the_digit_or_miss_it():
    landscape = script("coloc_landscape")
    digits = torch.full((64, 28, 28), 255, dtype=torch.uint8)  # solid frames
    gen_spec = {"canvas": 84, "clutter": 0, "patch": 6}
    images, _, params = generate("clutter", digits, torch.zeros(64, dtype=torch.long), 3, gen_spec)
    boxes = digit_boxes(params, 84)
    wins = landscape.windows(boxes, 84)
    torch.testing.assert_close(paired_iou(attention_boxes(wins["true"], (84, 84)), boxes),
                               torch.ones(64))  # fmt: skip
    assert paired_iou(attention_boxes(wins["blank"], (84, 84)), boxes).max() == 0
    blank = sample(images.float(), Attention().grid(wins["blank"], (28, 28)))
    assert blank.abs().max() == 0  # the blank window sees only empty canvas


def test_window_sweep_finds_the_shift_back_onto_a_moved_window():
    sweep = script("coloc_windows")
    digits = torch.zeros(6, 28, 28, dtype=torch.uint8)
    digits[:, 4:24, 10:18] = 255  # the same bar in every image, at different places
    gen_spec = {"canvas": 84, "clutter": 0, "patch": 6}
    images, _, params = generate("clutter", digits, torch.zeros(6, dtype=torch.long), 5, gen_spec)
    centre = (digit_boxes(params, 84)[:, :2] + 14) / 42 - 1
    windows = torch.cat([torch.full((6, 1), 1 / 3), centre], dim=1)
    windows[0, 1:] += torch.tensor([6.0, -4.0]) / 42  # image 0's window 6 px right, 4 px up
    shifts = sweep.best_shifts(nn.Flatten(), images.float(), windows, radius=8, step=2)
    assert shifts[0].tolist() == [-6.0, 4.0]  # back onto the bar, as every other crop
    assert shifts[1:].abs().max() == 0  # the others already sit on their bars


def test_encoder_concatenates_hidden_layers_and_logits(compose_cfg):
    cfg = compose_cfg("model=cnn")
    model = build_model(cfg.model, DataSpec((1, 28, 28), 10, 1))
    features = Encoder(model.head)(torch.rand(2, 1, 28, 28))
    width = model.head[0].out_channels
    assert features.shape == (2, width * 10 * 10 + width * 2 * 2 + 10)
    assert not any(p.requires_grad for p in model.head.parameters())


def test_smoke_coloc_experiment_writes_table5(compose_cfg, smoke, tmp_path):
    # Co-localisation settings on the command line configure the co-localisation runs only,
    # not the encoder's Table 1 run (which has no `coloc`).
    coloc = ["coloc.lr=0.002", "coloc.margin=2.0"]
    cfg = compose_cfg("experiment=table5_coloc_tc", "experiment.seeds=[1]", *coloc)
    run_experiment(cfg, [*smoke, "experiment=table5_coloc_tc", "experiment.seeds=[1]", *coloc])
    outputs = tmp_path / "outputs"
    # The encoder is the Table 1 R-column CNN, trained first and counted in Table 1.
    encoder = json.loads(
        (only(outputs, "runs/table1_r/smoke/cnn/*/seed1") / "metrics.json").read_text()
    )
    assert encoder["table"] == "table1" and encoder["row"] == "CNN"
    md = (outputs / "tables" / "table5-smoke.md").read_text()
    assert "% of digits localised" in md and "| Model | TC: ours | TC: paper |" in md
    lines = [line for line in md.splitlines() if line[:4] in {f"| {d} " for d in range(10)}]
    assert len(lines) == 10 and lines[3].startswith("| 3 | ") and lines[3].endswith("| 75.0 |")
    metrics = json.loads(
        (only(outputs, "runs/table5_coloc_tc/smoke/3/*/seed1") / "metrics.json").read_text()
    )
    assert metrics["images"] == 8 and 0 <= metrics["localised_pct"] <= 100
    config = (only(outputs, "runs/table5_coloc_tc/smoke/3/*/seed1") / "config.yaml").read_text()
    assert "lr: 0.002" in config and "margin: 2.0" in config
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(only(outputs, "runs/table5_coloc_tc/smoke/3/*/seed1") / "tb"))
    acc.Reload()
    assert "coloc/boxes/0" in acc.Tags()["images"]
    # Per-step localisation (the paper's Fig. 4 as curves) and the gradient reaching theta.
    assert {"coloc/localised_pct", "coloc/mean_iou", "coloc/theta_grad_mean",
            "coloc/theta_grad_zero_pct"} <= set(acc.Tags()["scalars"])  # fmt: skip
    assert [e.step for e in acc.Scalars("coloc/localised_pct")] == [3]  # eval_every 10 > 3 steps
    # The paper's Fig. 4: the boxes kept at every logged step (smoke: 0, 2, 3), drawn
    import torch

    from stn_repro.coloc import attention_boxes
    from stn_repro.report.figures import coloc_figure

    run = only(outputs, "runs/table5_coloc_tc/smoke/3/*/seed1")
    kept = torch.load(run / "boxes.pt")
    assert kept["steps"].tolist() == [0, 2, 3] and kept["boxes"].shape == (3, 3, 4)
    size = kept["images"].shape[-2:]
    start = attention_boxes(torch.tensor([[cfg.coloc.initial_scale, 0.0, 0.0]]), size)
    torch.testing.assert_close(kept["boxes"][0], start.expand(3, 4))  # the configured start
    figure = coloc_figure(run, tmp_path / "fig4.png")
    from PIL import Image

    assert Image.open(figure.with_suffix(".gif")).n_frames == 3


def coloc_options(**changes):
    """The as-written co-localisation settings with ``changes``."""
    from omegaconf import OmegaConf

    from stn_repro.config import CONF_DIR

    co = OmegaConf.load(CONF_DIR / "coloc" / "as_written.yaml")
    return OmegaConf.merge(co, changes)


def digit_images(n: int = 6, canvas: int = 84, seed: int = 0):
    """``n`` canvases with a solid 28x28 square (the 'digit') at random places, and its boxes."""
    digits = torch.full((n, 28, 28), 255, dtype=torch.uint8)
    spec = {"canvas": canvas, "clutter": 0, "patch": 6}
    images, _, params = generate("clutter", digits, torch.zeros(n, dtype=torch.long), seed, spec)
    return images.float() / 255, digit_boxes(params, canvas)


class Flat(torch.nn.Module):  # a stand-in encoder: the crop's pixels
    def forward(self, x):
        return x.flatten(1)


def test_stop_gradient_leaves_the_partner_crops_without_gradient():
    from stn_repro.coloc import make_transformer, window_crops

    images, _ = digit_images()
    co = coloc_options(stop_partner_gradient=True, initial_scale=0.95, inside_canvas=True)
    st = make_transformer(co, (1, 84, 84))
    for stop in (False, True):
        anchor, theta_a = window_crops(st, images[:3], None)
        partner, theta_p = window_crops(st, images[3:], None)
        theta_a.retain_grad(), theta_p.retain_grad()
        target = partner.detach() if stop else partner
        (anchor - target).pow(2).sum().backward()
        assert theta_a.grad.abs().sum() > 0
        assert (theta_p.grad is None) == stop  # no path from the loss to the partner's window
        st.zero_grad()


def test_inside_canvas_window_never_leaves_the_canvas():
    from stn_repro.coloc import make_transformer
    from stn_repro.st import BoundedAttention

    transform = BoundedAttention(min_scale=0.2)
    theta = torch.cat([torch.randn(1000, 3) * 20, torch.tensor([[50.0, 50, -50], [-50, -50, 50]])])
    boxes = attention_boxes(theta, (84, 84), transform)
    assert boxes.min() >= 0 and boxes.max() <= 84
    sides = boxes[:, 2] - boxes[:, 0]
    assert sides.min() >= 0.2 * 84 - 1e-3 and sides.max() <= 84
    window = torch.tensor([[0.5, 0.2, -0.3], [0.95, 0.0, 0.0]])
    torch.testing.assert_close(transform.window(transform.params_for(window)), window)
    # The transformer starts at the configured window whatever its input.
    st = make_transformer(coloc_options(inside_canvas=True, initial_scale=0.95), (1, 84, 84))
    _, theta = st(torch.rand(2, 1, 84, 84))
    torch.testing.assert_close(transform.window(theta), torch.tensor([[0.95, 0, 0]] * 2))


def test_max_scale_caps_the_window_and_a_start_above_it_stops_in_one_line(compose_cfg):
    from stn_repro.coloc import make_transformer
    from stn_repro.errors import UserError
    from stn_repro.st import BoundedAttention

    transform = BoundedAttention(min_scale=0.333, max_scale=0.6)
    theta = torch.cat([torch.randn(1000, 3) * 20, torch.tensor([[50.0, 50, -50]])])
    boxes = attention_boxes(theta, (84, 84), transform)
    sides = boxes[:, 2] - boxes[:, 0]
    assert boxes.min() >= 0 and boxes.max() <= 84
    assert sides.min() >= 0.333 * 84 - 1e-3 and sides.max() <= 0.6 * 84 + 1e-3
    assert sides.max() > 0.59 * 84  # the cap is reached, not a tighter one
    window = torch.tensor([[0.5, 0.2, -0.3]])
    torch.testing.assert_close(transform.window(transform.params_for(window)), window)
    with pytest.raises(ValueError, match="between 0.333 and 0.6"):
        transform.params_for(torch.tensor([[0.7, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="min_scale < max_scale"):
        BoundedAttention(min_scale=0.5, max_scale=0.4)
    st = make_transformer(coloc_options(inside_canvas=True, min_scale=0.333, max_scale=0.6,
                                        initial_scale=0.5), (1, 84, 84))  # fmt: skip
    _, theta = st(torch.rand(2, 1, 84, 84))
    torch.testing.assert_close(st.transform.window(theta), torch.tensor([[0.5, 0, 0]] * 2))
    with pytest.raises(UserError, match="coloc.max_scale=0.5"):
        compose_cfg("experiment=table5_coloc_t", "coloc.max_scale=0.5")  # recipe starts at 0.6


def test_a_blank_window_gets_no_gradient_unless_through_the_blurred_copy():
    from torchvision.transforms.functional import gaussian_blur

    from stn_repro.coloc import make_transformer, window_crops

    images = torch.zeros(1, 1, 84, 84)
    images[..., 28:56, 28:56] = 1.0  # the digit in the middle; the window in the corner
    st = make_transformer(coloc_options(initial_scale=0.3), (1, 84, 84))
    with torch.no_grad():
        st.regressor.bias.copy_(torch.tensor([0.3, -0.65, -0.65]))  # pixels 1..26: blank
    blurred = gaussian_blur(images, [19, 19], [3.0, 3.0])
    for copy, moves in ((None, False), (blurred, True)):
        crops, theta = window_crops(st, images, copy)
        assert crops.abs().max() == 0  # the crop itself is blank either way
        theta.retain_grad()
        (crops - 1).pow(2).sum().backward()  # any loss of the crop
        assert (theta.grad.abs().sum() > 0) == moves


def test_each_option_runs_and_the_loss_is_finite():
    from stn_repro.coloc import coloc_loss, make_transformer

    images, _ = digit_images(8)
    options = [{}, {"stop_partner_gradient": True}, {"inside_canvas": True, "initial_scale": 0.9},
               {"blur_sigma": 2.0}, {"negatives": 3}, {"negative_scale": "window"},
               {"negative_scale": "random"}, {"normalise_features": True},
               {"pairing": "all"}, {"pairing": "all", "stop_partner_gradient": True},
               {"leaky_localisation": True}]  # fmt: skip
    for changes in options:
        co = coloc_options(**{"batch": 4, **changes})
        st = make_transformer(co, (1, 84, 84))
        blurred = images if co.blur_sigma else None
        loss, theta = coloc_loss(co, st, Flat(), images, blurred, torch.Generator().manual_seed(0))
        theta.retain_grad()
        loss.backward()
        assert torch.isfinite(loss) and theta.shape == (4, 3), changes
        assert all(torch.isfinite(p.grad).all() for p in st.parameters() if p.grad is not None)


def test_ablation_table_gives_the_mean_per_variant_and_column(tmp_path):
    from stn_repro.coloc_ablation import write_ablation

    results = [
        {"variant": "as written", "column": "T", "digit": 0, "seed": 1, "localised_pct": 0.0,
         "mean_iou": 0.01},
        {"variant": "as written", "column": "T", "digit": 3, "seed": 1, "localised_pct": 10.0,
         "mean_iou": 0.1},
        {"variant": "full recipe", "column": "T", "digit": 0, "seed": 1, "localised_pct": 90.0,
         "mean_iou": 0.7},
        {"variant": "full recipe", "column": "TC", "digit": 0, "seed": 1, "localised_pct": 75.0,
         "mean_iou": 0.6},
    ]  # fmt: skip
    md = write_ablation(tmp_path, results, "fast").read_text()
    assert "| as written | 5.0 ± 7.1 | - |" in md
    assert "| full recipe | 90.0 | 75.0 |" in md
    assert md.index("as written |") < md.index("full recipe |")
    rows = (tmp_path / "tables" / "table5_ablation.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("variant,column,digit,seed")


def test_ablation_runs_with_the_experiments_schedule_settings(compose_cfg, smoke, tmp_path):
    from stn_repro.coloc_ablation import run_ablation

    compose_cfg("experiment=table5_coloc_t")  # keeps Hydra initialised for the runner
    results = run_ablation(smoke, ["as written", "full recipe"], ["T"], [3], [1])
    assert [r["variant"] for r in results] == ["as written", "full recipe"]
    runs = sorted((tmp_path / "outputs" / "runs" / "table5_ablation").glob("smoke/*/*/seed1"))
    assert [r.parts[-3] for r in runs] == ["as-written-t-3", "full-recipe-t-3"]
    config = (runs[0] / "config.yaml").read_text()
    assert "iterations: 3" in config and "images_per_class: 8" in config  # smoke per_schedule
    assert "stop_partner_gradient: false" in config
    assert "stop_partner_gradient: true" in (runs[1] / "config.yaml").read_text()
    again = run_ablation(smoke, ["as written"], ["T"], [3], [1])  # finished: reused
    assert again[0] == results[0]


def test_ablation_honours_speed_threads(compose_cfg, smoke, tmp_path):
    """The ablation sets torch's threads as ``stn-repro`` does: ``speed.threads`` on its
    command line was once ignored, and the thread count changes a run's result."""
    from stn_repro.coloc_ablation import run_ablation

    compose_cfg("experiment=table5_coloc_t")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run_ablation([*smoke, "speed.threads=1"], ["full recipe"], ["T"], [3], [1])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_squared_distances_match_the_pairwise_differences():
    from stn_repro.coloc import squared_distances

    a, b = torch.randn(5, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    brute = (a[:, None] - b[None]).pow(2).sum(2)
    torch.testing.assert_close(squared_distances(a, b), brute)
    assert squared_distances(a, a).diagonal().abs().max() < 1e-12


def test_cosine_decay_takes_the_rate_to_zero_over_the_iterations():
    from stn_repro.coloc import coloc_optimizer

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer, decay = coloc_optimizer(coloc_options(lr=0.002, iterations=10), [weight])
    assert decay is None and optimizer.param_groups[0]["lr"] == 0.002
    optimizer, decay = coloc_optimizer(coloc_options(lr=0.002, iterations=10, lr_decay="cosine"),
                                      [weight])  # fmt: skip
    rates = []
    for _ in range(10):
        optimizer.step()
        decay.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert abs(rates[4] - 0.001) < 1e-12 and abs(rates[-1]) < 1e-12  # half way: half the rate


def test_leaky_localisation_keeps_a_gradient_where_relus_are_dead():
    from stn_repro.coloc import localisation_net

    for leaky in (False, True):
        net, _ = localisation_net((1, 84, 84), leaky)
        with torch.no_grad():
            for layer in net:
                if isinstance(layer, torch.nn.Linear):
                    layer.bias.fill_(-100.0)  # every unit's input negative: a dead ReLU layer
        x = torch.rand(2, 1, 84, 84, requires_grad=True)
        out = net(x)
        out.sum().backward()
        assert (out.abs().sum() > 0) == leaky and (x.grad.abs().sum() > 0) == leaky


def test_a_stopped_colocalisation_resumes_from_its_checkpoint_to_the_same_result(
        compose_cfg, smoke, tmp_path, monkeypatch):  # fmt: skip
    # The run's life is training's (lifecycle): a stop signal checkpoints after its step, and
    # the next launch goes on from there to what one uninterrupted run gives, bit for bit.

    from stn_repro import coloc, signals
    from stn_repro.experiment import compose_run
    from stn_repro.runs import checkpoint_iteration

    cfg = compose_cfg("experiment=table5_coloc_t")
    row = cfg.experiment.rows[3]
    run_cfg = compose_run([*smoke, "experiment=table5_coloc_t", "coloc.iterations=7",
                           "coloc.log_every=3", "coloc.lr_decay=cosine"], row, 1)  # fmt: skip
    torch.manual_seed(0)
    head = build_model(compose_cfg("model=cnn").model, DataSpec((1, 28, 28), 10, 1)).head
    whole = coloc.colocalise_run(run_cfg, tmp_path / "whole", head)

    real_loss, steps = coloc.coloc_loss, []

    def stop_at_step_5(*args):
        steps.append(1)
        if len(steps) == 5:
            signals.STOP.request()  # as the handler does when a signal arrives mid-step
        return real_loss(*args)

    monkeypatch.setattr(coloc, "coloc_loss", stop_at_step_5)
    with pytest.raises(signals.Interrupted, match="at step 5 of"):
        coloc.colocalise_run(run_cfg, tmp_path / "stopped", head)
    assert not (tmp_path / "stopped" / "metrics.json").exists()
    assert checkpoint_iteration(tmp_path / "stopped", whole["config_hash"]) == 5
    resumed = coloc.colocalise_run(run_cfg, tmp_path / "stopped", head)
    assert len(steps) == 7  # steps 6 and 7 only: resumed, not redone
    same = ("localised_pct", "mean_iou", "iterations", "config_hash")
    assert {k: resumed[k] for k in same} == {k: whole[k] for k in same}
    kept = [torch.load(tmp_path / d / "boxes.pt") for d in ("whole", "stopped")]
    assert kept[0]["steps"].tolist() == kept[1]["steps"].tolist() == [0, 3, 6, 7]
    torch.testing.assert_close(kept[1]["boxes"], kept[0]["boxes"], rtol=0, atol=0)


def test_the_loss_as_written_is_a2s_formula_on_a_hand_made_batch(monkeypatch):
    """A.2: sum over n and m != n of max(0, ||e(I_n^T) - e(I_m^T)||^2 - ||e(I_n^T) -
    e(I_n^rand)||^2 + alpha), with hand-made embeddings of each image's window and random crop."""
    from types import SimpleNamespace

    from stn_repro import coloc

    n, alpha = 5, 1.5
    g = torch.Generator().manual_seed(1)
    window = torch.randn(n, 3, generator=g)  # e(I_n^T)
    rand = torch.randn(n, 3, generator=g)  # e(I_n^rand)
    images = torch.arange(n).float().view(n, 1, 1, 1).expand(n, 1, 4, 4)  # image n holds n

    def which(x):
        return x[:, 0, 0, 0].long()

    monkeypatch.setattr(coloc, "window_crops",
                        lambda st, x, blurred: (window[which(x)], torch.zeros(len(x), 3)))
    monkeypatch.setattr(coloc, "random_crops", lambda x, scale, generator: rand[which(x)])
    terms = torch.tensor([[max(0.0, (window[i] - window[j]).pow(2).sum()
                               - (window[i] - rand[i]).pow(2).sum() + alpha) for j in range(n)]
                          for i in range(n)])  # fmt: skip
    st = SimpleNamespace(transform=Attention())
    # Every pair m != n of the images (pairing=all): the formula's mean term.
    co = coloc_options(pairing="all", batch=n, margin=alpha)
    loss, _ = coloc.coloc_loss(co, st, Flat(), images, None, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(terms[~torch.eye(n, dtype=torch.bool)].mean().item())
    # As written: `batch` random pairs (n, m != n), each one term of the same sum.
    co = coloc_options(batch=7, margin=alpha)
    drawn = torch.Generator().manual_seed(3)
    a = torch.randint(0, n, (7,), generator=drawn)
    b = (a + torch.randint(1, n, (7,), generator=drawn)) % n
    loss, _ = coloc.coloc_loss(co, st, Flat(), images, None, torch.Generator().manual_seed(3))
    assert (a != b).all() and loss.item() == pytest.approx(terms[a, b].mean().item())


def test_the_whole_class_loss_is_the_optimised_formula_over_every_pair(monkeypatch):
    """``class_loss`` (which chooses between starts) is A.2's mean term over every pair m != n,
    on the same features the optimisation uses (unit length with ``normalise_features``)."""
    from types import SimpleNamespace

    from stn_repro import coloc

    n, alpha = 5, 1.5
    g = torch.Generator().manual_seed(1)
    window, rand = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)
    images = torch.arange(n).float().view(n, 1, 1, 1).expand(n, 1, 4, 4)  # image n holds n

    def which(x):
        return x[:, 0, 0, 0].long()

    class Windows(SimpleNamespace):  # the transformer: image n's window embeds as window[n]
        def __call__(self, x):
            return window[which(x)], torch.zeros(len(x), 3)

    monkeypatch.setattr(coloc, "random_crops", lambda x, scale, generator: rand[which(x)])
    for unit in (False, True):
        w, r = (F.normalize(window, dim=1), F.normalize(rand, dim=1)) if unit else (window, rand)
        terms = ((w[:, None] - w[None]).pow(2).sum(2) - (w - r).pow(2).sum(1)[:, None]
                 + alpha).clamp(min=0)  # fmt: skip
        co = coloc_options(margin=alpha, normalise_features=unit)
        loss = coloc.class_loss(co, Windows(transform=Attention()), Flat(), images, 0, 2)
        assert loss == pytest.approx(terms[~torch.eye(n, dtype=torch.bool)].mean().item())


def test_window_selection_gives_a_whole_canvas_window_no_negative_distance():
    """``class_loss`` with random crops at the window's side: a window over the whole canvas
    is its own negative (distance 0), so its loss is the mean positive distance + alpha, where
    digit-sized random crops (the training loss's) lie away from it and lower the loss."""
    from stn_repro.coloc import class_loss, make_transformer, squared_distances

    images, _ = digit_images()
    co = coloc_options(initial_scale=1.0, margin=2.0)
    st = make_transformer(co, (1, 84, 84))  # a fresh transformer: every window the canvas
    with torch.no_grad():
        crops = Flat()(st(images)[0])
    pos = squared_distances(crops, crops)[~torch.eye(len(images), dtype=torch.bool)].mean()
    window = class_loss(co, st, Flat(), images, 0, negative_scale="window")
    assert window == pytest.approx(pos.item() + 2.0)
    assert class_loss(co, st, Flat(), images, 0) < window - 1


@pytest.mark.parametrize(("starts", "select"), [(1, "loss"), (3, "loss"), (3, "window")])
def test_the_windows_never_depend_on_the_true_boxes(compose_cfg, smoke, tmp_path, monkeypatch,
                                                    starts, select):  # fmt: skip
    """Nothing may read a true box during the optimisation, nor in choosing between starts:
    shuffling the boxes before they are handed over changes the score, never the windows."""
    from stn_repro import coloc
    from stn_repro.experiment import compose_run

    cfg = compose_cfg("experiment=table5_coloc_tc")
    run_cfg = compose_run([*smoke, "experiment=table5_coloc_tc", "coloc.iterations=6",
                           "coloc.log_every=3", f"coloc.starts={starts}",
                           f"coloc.select={select}"],
                          cfg.experiment.rows[3], 1)  # fmt: skip
    head = build_model(compose_cfg("model=cnn").model, DataSpec((1, 28, 28), 10, 1)).head
    torch.manual_seed(0)
    chosen = coloc.colocalise_run(run_cfg, tmp_path / "true", head)["chosen_start"]
    real = coloc.class_images

    def shuffled_boxes(*args):
        images, boxes = real(*args)
        return images, boxes.flip(0)

    monkeypatch.setattr(coloc, "class_images", shuffled_boxes)
    torch.manual_seed(0)
    assert coloc.colocalise_run(run_cfg, tmp_path / "shuffled", head)["chosen_start"] == chosen
    kept = [torch.load(tmp_path / d / "boxes.pt") for d in ("true", "shuffled")]
    torch.testing.assert_close(kept[1]["boxes"], kept[0]["boxes"], rtol=0, atol=0)
    assert not torch.equal(kept[1]["true"], kept[0]["true"])


def test_the_localisation_net_counts_a2s_parameters():
    # A.2: "a 100k parameter CNN consisting of a convolutional layer with eight 9x9 filters and
    # a 4 pixel stride, followed by 2x2 max pooling with stride 2 and then two 8-unit
    # fully-connected layers before the final 3-unit fully-connected layer". On 84x84: conv
    # 8*81+8 = 656, 9*9*8 = 648 inputs to the first layer, then the 3-unit regressor.
    from stn_repro.coloc import make_transformer

    def count(units: int) -> int:
        co = coloc_options(localisation_units=units)
        return sum(p.numel() for p in make_transformer(co, (1, 84, 84)).parameters())

    assert count(8) == 656 + (648 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3) == 5_947
    assert count(128) == 656 + (648 * 128 + 128) + (128 * 128 + 128) + (128 * 3 + 3) == 100_627


def test_an_encoder_of_larger_images_sees_the_crop_centred_on_black_canvas(compose_cfg):
    cfg = compose_cfg("model=cnn")
    model = build_model(cfg.model, DataSpec((1, 60, 60), 10, 1))
    crops = torch.rand(2, 1, 28, 28)
    canvas = torch.zeros(2, 1, 60, 60)
    canvas[..., 16:44, 16:44] = crops  # 16 columns of black either side
    features, x = [], canvas
    for layer in model.head:
        x = layer(x)
        if isinstance(layer, torch.nn.MaxPool2d):
            features.append(x.flatten(1))
    assert torch.allclose(Encoder(model.head, 60)(crops), torch.cat([*features, x], dim=1))


def test_an_encoder_that_cannot_take_the_padded_crops_stops_in_one_line(
        compose_cfg, smoke, tmp_path):  # fmt: skip

    from stn_repro import coloc
    from stn_repro.errors import UserError
    from stn_repro.experiment import compose_run

    cfg = compose_cfg("experiment=table5_coloc_t")
    run_cfg = compose_run([*smoke, "experiment=table5_coloc_t", "coloc.encoder_input=60"],
                          cfg.experiment.rows[3], 1)  # fmt: skip
    head = build_model(compose_cfg("model=cnn").model, DataSpec((1, 28, 28), 10, 1)).head
    with pytest.raises(UserError, match="coloc.encoder_input"):
        coloc.colocalise_run(run_cfg, tmp_path / "run", head)


def test_late_negatives_take_the_windows_side(compose_cfg, smoke, tmp_path, monkeypatch):
    from stn_repro import coloc
    from stn_repro.experiment import compose_run

    images, _ = digit_images(8)
    co = coloc_options(batch=4, initial_scale=0.6)  # windows larger than the random crops
    st = coloc.make_transformer(co, (1, 84, 84))

    def loss(options, rule=None):
        gen = torch.Generator().manual_seed(0)
        return coloc.coloc_loss(options, st, Flat(), images, None, gen, rule)[0]

    window = loss(coloc_options(batch=4, initial_scale=0.6, negative_scale="window"))
    assert torch.equal(loss(co, "window"), window) and not torch.equal(loss(co), window)
    # In a run, the steps after window_negatives_from x iterations use the window's side.
    cfg = compose_cfg("experiment=table5_coloc_t")
    late = [*smoke, "experiment=table5_coloc_t", "coloc.iterations=4",
            "coloc.window_negatives_from=0.5"]  # fmt: skip
    run_cfg = compose_run(late, cfg.experiment.rows[3], 1)
    rules, real_loss = [], coloc.coloc_loss

    def recording(*args):
        rules.append(args[-1])
        return real_loss(*args)

    monkeypatch.setattr(coloc, "coloc_loss", recording)
    head = build_model(compose_cfg("model=cnn").model, DataSpec((1, 28, 28), 10, 1)).head
    coloc.colocalise_run(run_cfg, tmp_path / "run", head)
    assert rules == [None, None, "window", "window"]


@pytest.mark.slow  # `make test-slow`
def test_several_starts_keep_the_lowest_class_loss_and_resume_mid_start(
        compose_cfg, smoke, tmp_path, monkeypatch):  # fmt: skip
    from stn_repro import coloc, signals
    from stn_repro.experiment import compose_run

    cfg = compose_cfg("experiment=table5_coloc_t")
    given = [*smoke, "experiment=table5_coloc_t", "coloc.iterations=4", "coloc.log_every=2"]

    def run_cfg(starts: int, *more: str):
        return compose_run([*given, f"coloc.starts={starts}", *more], cfg.experiment.rows[3], 1)

    head = build_model(compose_cfg("model=cnn").model, DataSpec((1, 28, 28), 10, 1)).head
    whole = coloc.colocalise_run(run_cfg(3), tmp_path / "whole", head)
    losses = whole["start_losses"]
    assert len(set(losses)) == 3 and whole["chosen_start"] == losses.index(min(losses))
    # Start 0 is the single-start run: several starts only add optimisations after it.
    single = coloc.colocalise_run(run_cfg(1), tmp_path / "single", head)
    assert single["start_losses"] == losses[:1] and single["chosen_start"] == 0
    # Stopped in the middle of start 1 (its step 2, the run's 6th), resumed: the same result.
    real_loss, steps = coloc.coloc_loss, []

    def stop_at_step_6(*args):
        steps.append(1)
        if len(steps) == 6:
            signals.STOP.request()
        return real_loss(*args)

    monkeypatch.setattr(coloc, "coloc_loss", stop_at_step_6)
    with pytest.raises(signals.Interrupted, match="at step 2 of"):
        coloc.colocalise_run(run_cfg(3), tmp_path / "stopped", head)
    resumed = coloc.colocalise_run(run_cfg(3), tmp_path / "stopped", head)
    assert len(steps) == 12  # the remaining 6 steps only
    same = ("localised_pct", "mean_iou", "start_losses", "chosen_start")
    assert {k: resumed[k] for k in same} == {k: whole[k] for k in same}
    # The choice is the class loss's alone: with coloc.select=window, the loss with random
    # crops at the windows' own sides.
    monkeypatch.setattr(coloc, "coloc_loss", real_loss)
    for select, kept in (("loss", 1), ("window", 2)):
        fake = {None: iter([3.0, 1.0, 2.0]), "window": iter([1.0, 2.0, 0.5])}
        monkeypatch.setattr(coloc, "class_loss",
                            lambda *args, negative_scale, fake=fake: next(fake[negative_scale]))
        chosen = coloc.colocalise_run(run_cfg(3, f"coloc.select={select}"),
                                      tmp_path / f"fake-{select}", head)  # fmt: skip
        assert chosen["start_losses"] == [3.0, 1.0, 2.0]
        assert chosen["start_window_losses"] == [1.0, 2.0, 0.5]
        assert chosen["chosen_start"] == kept, select


def test_recipe_less_each_ingredient_differs_from_the_recipe_only_in_its_keys(compose_cfg):
    """Each "recipe less X" row is the recipe with X's keys at the text's values, and the
    ingredients cover every key the recipe changes, so the rows ablate the whole recipe."""
    from stn_repro.coloc_ablation import RECIPE_INGREDIENTS, VARIANTS

    def coloc(*overrides):
        return dict(compose_cfg("experiment=table5_coloc_t", *overrides).coloc)

    text, recipe = coloc("coloc=as_written"), coloc()
    changed = {key for key in recipe if recipe[key] != text[key]}
    assert changed == {key for keys in RECIPE_INGREDIENTS.values() for key in keys}
    for name, keys in RECIPE_INGREDIENTS.items():
        less = coloc(*VARIANTS[f"recipe less {name}"])
        assert {key for key in less if less[key] != recipe[key]} == set(keys), name
        assert all(less[key] == text[key] for key in keys), name


def test_the_encoders_run_is_part_of_a_colocalisations_identity(compose_cfg):
    # Another encoder is another run (before, it reused the R-column encoder's results); the
    # encoder every recorded run used keeps their hashes (this one: T class 3, seed 1, `fast`).
    base = ("experiment=table5_coloc_t", "schedule=fast", "coloc.digit=3", "seed=1")
    default = config_hash(compose_cfg(*base))
    assert default == "44c6ce9fa15a72c2"
    assert config_hash(compose_cfg(*base, "experiment.encoder.row=CNN")) == default
    other = config_hash(compose_cfg(*base, "experiment.encoder.experiment=table1_e"))
    assert other != default
    assert config_hash(compose_cfg(*base, "experiment.encoder.seed=2")) not in (default, other)
