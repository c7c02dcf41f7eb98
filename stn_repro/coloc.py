"""Co-localisation (Appendix A.2, Table 5): find the digit in 100 images of one class, with no
labels and no boxes, by training an attention transformer with a triplet hinge loss.

For images ``I_n`` of one class, the transformer crops ``I_n^T``; a frozen encoder ``e()`` (the
Table 1 CNN: its hidden layers and pre-softmax outputs, concatenated) should map crops of
different images close together and a crop far from a random crop ``I_n^rand`` of the same
image:

    L = sum over pairs (n, m) of max(0, ||e(I_n^T) - e(I_m^T)||^2 - ||e(I_n^T) - e(I_n^rand)||^2
                                        + alpha)

Written this way the loss has a degenerate minimum (windows of empty canvas look alike in every
image, and a window wholly on black background gets exactly zero gradient through bilinear
sampling). ``conf/coloc/as_written.yaml`` is the loss above; the other options of
``cfg.coloc`` are the ingredients docs/reproduction-notes.md describes (each off in
``as_written``): ``stop_partner_gradient``, ``inside_canvas``, ``blur_sigma``, ``negatives``,
``negative_scale``, ``normalise_features``, ``pairing``, ``margin`` (large: the hinge
stays active), ``min_scale``, ``max_scale``, ``lr_decay``, ``leaky_localisation``,
``localisation_units``, ``encoder_input``, ``window_negatives_from``, ``starts``, ``select``.

A digit counts as localised when the transformer's box overlaps its true box with IoU > 0.5.
Boxes are ``(x0, y0, x1, y1)`` in pixels of the canvas (edges, not centres: a box covering
pixel columns 0..27 is ``x0 = 0, x1 = 28``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchvision.ops import box_iou
from torchvision.transforms.functional import gaussian_blur

from . import signals
from .data import load_split
from .data.sources import DIGIT
from .distributed import pick_device
from .errors import UserError
from .files import write_atomic
from .lifecycle import Clock, RunLife, live
from .st import Attention, BoundedAttention, SpatialTransformer, sample


def triplet_hinge(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Mean over the batch of ``max(0, |a - p|^2 - |a - n|^2 + margin)``; inputs ``(B, F)``."""
    pos = (anchor - positive).pow(2).sum(1)
    neg = (anchor - negative).pow(2).sum(1)
    return (pos - neg + margin).clamp(min=0).mean()


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """``|a_i - b_j|^2`` for every pair of rows, ``(I, F), (J, F) -> (I, J)``, without the
    ``(I, J, F)`` difference tensor."""
    return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None] - 2 * a @ b.T).clamp(min=0)


def attention_boxes(theta: Tensor, size: tuple[int, int], transform: Attention | None = None
                    ) -> Tensor:  # fmt: skip
    """Thetas ``(B, 3)`` of ``transform`` (default: :class:`Attention`, theta = (s, tx, ty))
    -> the sampled windows ``(B, 4)`` in pixels."""
    from .viz import window_boxes

    return window_boxes((transform or Attention()).matrix(theta), size)


def digit_boxes(params: Tensor, canvas: int) -> Tensor:
    """True boxes ``(B, 4)`` of the 28x28 digits from the clutter generator's offsets."""
    centre = params[:, :2].double() + canvas / 2  # (x, y) pixels from the canvas corner
    return torch.cat([centre - DIGIT / 2, centre + DIGIT / 2], dim=1).float()


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of ``a[i]`` with ``b[i]``, boxes ``(B, 4)``."""
    return box_iou(a, b).diagonal()


class Encoder(nn.Module):
    """e(): a frozen classifier's hidden layers (after each max-pool) and its logits,
    flattened and concatenated, ``(B, C, 28, 28) -> (B, F)``. A classifier of larger images
    (``input_size``, e.g. 60 for Table 1's TC column) sees each crop at the centre of an
    ``input_size`` square of black canvas, at the crop's own resolution."""

    def __init__(self, head: nn.Sequential, input_size: int = DIGIT):
        super().__init__()
        self.head = head.eval().requires_grad_(False)
        before = (input_size - DIGIT) // 2
        self.padding = (before, input_size - DIGIT - before) * 2  # left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, self.padding)
        features = []
        for layer in self.head:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                features.append(x.flatten(1))
        return torch.cat([*features, x], dim=1)


def localisation_net(shape: tuple[int, int, int], leaky: bool = False, units: int = 8
                     ) -> tuple[nn.Module, int]:  # fmt: skip
    """A.2: conv 8 filters 9x9 stride 4, max-pool 2, two fully connected layers of ``units``
    ("two 8-unit fully-connected layers"; 128 gives the "100k parameter CNN" the same sentence
    counts, with the 3-unit regressor); ReLUs, or with ``leaky`` LeakyReLUs (slope 0.01),
    which cannot all die."""
    c, h, w = shape
    oh, ow = ((h - 9) // 4 + 1) // 2, ((w - 9) // 4 + 1) // 2
    act = nn.LeakyReLU if leaky else nn.ReLU
    return nn.Sequential(
        nn.Conv2d(c, 8, 9, stride=4), act(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * oh * ow, units), act(),
        nn.Linear(units, units), act(),
    ), units  # fmt: skip


def random_crops(x: Tensor, scale: float | Tensor, generator: torch.Generator) -> Tensor:
    """A crop of each image ``(B, C, H, W)``, of side ``scale`` (one number, or ``(B,)``) of
    the image, at a uniform random place inside it, sampled to ``DIGIT x DIGIT``."""
    b = x.shape[0]
    scale = torch.as_tensor(scale, dtype=torch.float32).expand(b).cpu()[:, None]  # (B, 1)
    t = (2 * torch.rand(b, 2, generator=generator) - 1) * (1 - scale)
    theta = torch.cat([scale, t], dim=1).to(x)
    return sample(x, Attention().grid(theta, (DIGIT, DIGIT)))


def make_transformer(co: DictConfig, shape: tuple[int, int, int]) -> SpatialTransformer:
    """The attention transformer of A.2, its window starting centred at ``co.initial_scale``;
    with ``co.inside_canvas`` a :class:`BoundedAttention` (never leaves the canvas)."""
    loc, features = localisation_net(shape, co.leaky_localisation, co.localisation_units)
    start = torch.tensor([co.initial_scale, 0.0, 0.0])
    transform = Attention()
    if co.inside_canvas:
        transform = BoundedAttention(co.min_scale, co.max_scale)
        start = transform.params_for(start)
    return SpatialTransformer(transform, (DIGIT, DIGIT), loc, features, initial_theta=start)


def window_crops(st: SpatialTransformer, images: Tensor, blurred: Tensor | None
                 ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The transformer's crops ``(B, C, DIGIT, DIGIT)`` of ``images`` and its thetas ``(B, 3)``.

    With ``blurred`` (a blurred copy of ``images``) the crops' values are the sharp ones but
    their gradient with respect to theta is that of the same windows on the blurred copy, which
    is not zero on a blank window near a digit."""
    crops, theta = st(images)
    if blurred is not None:
        soft = sample(blurred, st.transform.grid(theta, (DIGIT, DIGIT)))
        crops = soft + (crops - soft).detach()
    return crops, theta


def negative_scales(co: DictConfig, windows: Tensor, generator: torch.Generator,
                    rule: str | None = None) -> Tensor:  # fmt: skip
    """Side ``(B,)`` of each anchor's random crops by ``rule`` (default ``co.negative_scale``):
    ``fixed`` (``co.random_crop_scale``), ``window`` (the anchor window's own scale) or
    ``random`` (uniform in [min_scale, 1])."""
    b, rule = windows.shape[0], rule or co.negative_scale
    if rule == "window":
        return windows[:, 0].detach().clamp(co.min_scale, 1.0).cpu()
    if rule == "random":
        return co.min_scale + (1 - co.min_scale) * torch.rand(b, generator=generator)
    return torch.full((b,), float(co.random_crop_scale))


def features(co: DictConfig, encoder: nn.Module, x: Tensor) -> Tensor:
    """e(x): the encoder's features ``(B, F)``, unit length with ``co.normalise_features``."""
    f = encoder(x)
    return F.normalize(f, dim=1) if co.normalise_features else f


def hinge(co: DictConfig, encoder: nn.Module, anchor: Tensor, pos: Tensor, images: Tensor,
          windows: Tensor, generator: torch.Generator, negatives: int,
          negative_scale: str | None = None, all_pairs: bool = False) -> Tensor:  # fmt: skip
    """A.2's hinge ``max(0, pos - neg + margin)``, averaged: ``anchor`` (A, F) the features of
    the windows ``windows`` (A, 3) on ``images`` (A, C, H, W), ``pos`` (A, M) their squared
    distances to the partners' features, ``neg`` those to ``negatives`` random crops of the
    same images (sides by ``negative_scale``, default ``co.negative_scale``). With
    ``all_pairs`` the partners are the anchors themselves (``pos`` (A, A)) and the pairs
    ``(n, n)`` are left out."""
    scales = negative_scales(co, windows, generator, negative_scale)
    neg = torch.stack([(anchor - features(co, encoder, random_crops(images, scales, generator))
                        ).pow(2).sum(1) for _ in range(negatives)], dim=1)  # (A, R)  # fmt: skip
    terms = (pos[:, :, None] - neg[:, None, :] + co.margin).clamp(min=0)  # (A, M, R)
    if all_pairs:
        return terms[~torch.eye(len(anchor), dtype=torch.bool, device=terms.device)].mean()
    return terms.mean()


def windows_of(st: SpatialTransformer, theta: Tensor) -> Tensor:
    """The windows ``(B, 3)`` (scale, x, y) that thetas stand for."""
    return st.transform.window(theta) if isinstance(st.transform, BoundedAttention) else theta


def coloc_loss(co: DictConfig, st: SpatialTransformer, encoder: nn.Module, images: Tensor,
               blurred: Tensor | None, generator: torch.Generator,
               negative_scale: str | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """One step's triplet hinge (mean over pairs and negatives) and the anchors' thetas (whose
    gradient the caller may read); the random crops' sides by ``negative_scale`` (default
    ``co.negative_scale``: ``negative_scales``). ``co.pairing``: ``random`` draws ``co.batch`` pairs
    ``n != m``; ``all`` draws ``co.batch`` images (all of them, if fewer) and takes every
    ordered pair of them (the paper's sum over all ``m != n``, within the batch)."""
    n = len(images)

    def crop(i: Tensor) -> tuple[Tensor, Tensor]:
        return window_crops(st, images[i], None if blurred is None else blurred[i])

    if co.pairing == "all":
        a = torch.randperm(n, generator=generator)[: min(co.batch, n)]
        crops, theta = crop(a)
        anchor = features(co, encoder, crops)  # (K, F)
        partner = anchor.detach() if co.stop_partner_gradient else anchor
        pos = squared_distances(anchor, partner)  # (K, K): pair (n, m)
    else:
        a = torch.randint(0, n, (co.batch,), generator=generator)
        b = (a + torch.randint(1, n, (co.batch,), generator=generator)) % n  # b != a
        crops, theta = crop(a)
        anchor = features(co, encoder, crops)
        with torch.set_grad_enabled(not co.stop_partner_gradient):
            partner = features(co, encoder, crop(b)[0])
        pos = (anchor - partner).pow(2).sum(1, keepdim=True)  # (P, 1)
    loss = hinge(co, encoder, anchor, pos, images[a], windows_of(st, theta), generator,
                 co.negatives, negative_scale, all_pairs=co.pairing == "all")  # fmt: skip
    return loss, theta


def negative_rule(co: DictConfig, step: int, end: int) -> str | None:
    """The random crops' sides at ``step`` of ``end``: the window's after the fraction
    ``co.window_negatives_from`` of the steps, else ``co.negative_scale`` (None)."""
    return "window" if step > co.window_negatives_from * end else None


@torch.no_grad()
def class_loss(co: DictConfig, st: SpatialTransformer, encoder: nn.Module, images: Tensor,
               seed: int, negatives: int = 4, negative_scale: str | None = None
               ) -> float:  # fmt: skip
    """The loss over the whole class, one seeded draw of random crops for every start of a
    run: A.2's hinge for every ordered pair ``n != m`` of ``images``, with ``negatives``
    random crops per image (sides by ``negative_scale``, default as at the last step:
    ``negative_rule``), averaged, on the features the optimisation uses. It reads no box or
    label, so it may choose between optimisations of the class (``coloc.starts``)."""
    generator = torch.Generator().manual_seed(seed)
    crops, theta = st(images)
    anchor = features(co, encoder, crops)  # (N, F)
    pos = squared_distances(anchor, anchor)  # (N, N)
    end = int(co.iterations)
    rule = negative_scale or negative_rule(co, end, end)
    return hinge(co, encoder, anchor, pos, images, windows_of(st, theta), generator, negatives,
                 rule, all_pairs=True).item()  # fmt: skip


def coloc_optimizer(co: DictConfig, params) -> tuple[torch.optim.Optimizer, object | None]:
    """``co.optimizer`` at ``co.lr`` (``sgd``: A.2's stochastic gradient descent, momentum 0.9
    as for the MNIST schedule; ``adam``), and with ``co.lr_decay: cosine`` a scheduler
    (stepped once per step) taking the rate to 0 over ``co.iterations`` steps (else None)."""
    if co.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=co.lr, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(params, lr=co.lr)
    if co.lr_decay == "cosine":
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, int(co.iterations))
    return optimizer, None


def class_images(cfg: DictConfig, digit: int, count: int):
    """The first ``count`` training images of class ``digit`` and their true boxes."""
    co = cfg.coloc
    data = load_split(cfg.dataset, "train", cfg.paths.data_dir, cfg.paths.cache_dir,
                      limit=co.pool_digits)  # fmt: skip
    idx = (data.labels == digit).nonzero()[:, 0][:count]
    if len(idx) < count:
        raise UserError(
            f"only {len(idx)} images of class {digit} among the first {co.pool_digits} digits; "
            "raise coloc.pool_digits"
        )
    canvas = data.images.shape[-1]
    return data.images[idx].float().div(255), digit_boxes(data.params[idx], canvas)


def colocalise_run(cfg: DictConfig, run_dir: Path, encoder_head: nn.Sequential,
                   meta: dict | None = None) -> dict:  # fmt: skip
    """Optimise one co-localisation (class ``cfg.coloc.digit``), or resume it, or skip it when
    finished (the run's life as for training: ``lifecycle``); return its metrics."""
    return live(cfg, run_dir, lambda life: colocalise(cfg, life, encoder_head, meta or {}))


def colocalise(cfg: DictConfig, life: RunLife, encoder_head: nn.Sequential, meta: dict) -> dict:
    """Optimise the unfinished co-localisation ``cfg`` from the start or from its checkpoint
    (saved with every Fig. 4 frame, every ``coloc.log_every`` steps, at the end of each start,
    and on a stop signal). With ``coloc.starts`` > 1 the class is optimised that many times
    from different seeds, one after another, and the start with the lowest loss over the whole
    class (``class_loss``, its random crops by ``coloc.select``: no box or label) gives the
    result; TensorBoard's steps run on through the starts (start k's step s is logged at
    ``k * iterations + s``)."""
    co, end = cfg.coloc, int(cfg.coloc.iterations)
    device = pick_device(cfg.device)
    images, true_boxes = class_images(cfg, int(co.digit), int(co.images_per_class))
    images = images.to(device)  # (N, 1, canvas, canvas)
    blurred = None
    if co.blur_sigma > 0:  # a kernel of +-3 sigma, at most the image's size
        kernel = min(2 * round(3 * co.blur_sigma) + 1, 2 * (images.shape[-1] // 2) - 1)
        blurred = gaussian_blur(images, [kernel, kernel], [co.blur_sigma, co.blur_sigma])
    encoder = Encoder(encoder_head, co.encoder_input).to(device)
    try:
        encoder(images[:1, :, :DIGIT, :DIGIT])
    except RuntimeError as err:
        raise UserError(f"the encoder does not take crops padded to {co.encoder_input}x"
                        f"{co.encoder_input} (coloc.encoder_input): set it to the size of "
                        f"the images its run trained on ({err})") from None  # fmt: skip
    shown = images[:FIG4_IMAGES]
    ckpt = life.resume() or {}
    finished = ckpt.get("starts", [])  # per finished start: its weights and Fig. 4 boxes
    writer = life.start(ckpt.get("iteration", 0))
    clock = Clock(ckpt.get("elapsed", 0.0))

    def optimise(k: int, stop) -> dict:
        """Start ``k`` (seed ``cfg.seed + 1000 k``), from its checkpoint when it has one."""
        seed = int(cfg.seed) + START_SEED_STRIDE * k
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)  # pairs and random crops
        st = make_transformer(co, tuple(images.shape[1:])).to(device)
        optimizer, decay = coloc_optimizer(co, st.parameters())
        history = {"steps": [0], "boxes": [current_boxes(st, shown)]}  # the paper's Fig. 4
        first = 0
        if ckpt.get("transformer") is not None and ckpt.get("start", 0) == k:  # mid-start
            st.load_state_dict(ckpt["transformer"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if decay is not None:
                decay.load_state_dict(ckpt["decay"])
            gen.set_state(ckpt["generator"])
            history = ckpt["history"]
            first = ckpt["iteration"] - k * end

        def checkpoint(step: int) -> None:
            life.save({"iteration": k * end + step, "start": k, "starts": finished,
                       "elapsed": clock.seconds(), "transformer": st.state_dict(),
                       "optimizer": optimizer.state_dict(),
                       "decay": None if decay is None else decay.state_dict(),
                       "generator": gen.get_state(), "history": history})  # fmt: skip
            writer.flush()

        for step in range(first + 1, end + 1):
            logged = k * end + step
            loss, theta = coloc_loss(co, st, encoder, images, blurred, gen,
                                     negative_rule(co, step, end))  # fmt: skip
            if not torch.isfinite(loss):
                raise UserError(f"the co-localisation loss became {loss.item()}; lower coloc.lr")
            theta.retain_grad()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if decay is not None:
                decay.step()
            log_step(writer, loss, theta, logged)
            if step % co.eval_every == 0 or step == end:
                localised, iou = localisation(st, images, true_boxes)
                writer.add_scalar("coloc/localised_pct", localised, logged)
                writer.add_scalar("coloc/mean_iou", iou.mean().item(), logged)
            framed = step % co.log_every == 0 or step == end
            if framed:
                log_boxes(writer, st, images[:8], true_boxes[:8], logged)
                history["steps"].append(step)
                history["boxes"].append(current_boxes(st, shown))
            if framed or stop.requested:
                checkpoint(step)
            stop.check(f" at step {step} of {life.run_dir}, after saving its checkpoint")
        return {"transformer": st.state_dict(), "history": history}

    with signals.deferred() as stop:  # a stop signal: checkpoint after this step, then exit
        for k in range(len(finished), int(co.starts)):
            finished.append(optimise(k, stop))
            life.save({"iteration": (k + 1) * end, "start": k + 1, "starts": finished,
                       "elapsed": clock.seconds()})  # fmt: skip
    seconds = clock.seconds()
    st = make_transformer(co, tuple(images.shape[1:])).to(device)
    scores = []  # per start: each whole-class loss (no box or label); % localised only scores
    for start in finished:
        st.load_state_dict(start["transformer"])
        losses = {name: class_loss(co, st, encoder, images, int(cfg.seed), negative_scale=rule)
                  for name, rule in SELECTION.items()}  # fmt: skip
        localised, iou = localisation(st, images, true_boxes)
        scores.append({**losses, "localised": localised, "iou": iou})
    chosen = min(range(len(finished)), key=lambda k: scores[k][co.select])
    localised, iou = scores[chosen]["localised"], scores[chosen]["iou"]  # the run's result
    save_box_history(life.run_dir, shown, true_boxes[:FIG4_IMAGES], finished[chosen]["history"])
    return life.finish({
        **meta,
        "localised_pct": localised,
        "mean_iou": round(iou.mean().item(), 4),
        "digit": int(co.digit),
        "images": len(images),
        "iterations": end,
        "starts": int(co.starts),
        "start_losses": [round(s["loss"], 2) for s in scores],
        "start_window_losses": [round(s["window"], 2) for s in scores],
        "start_localised_pct": [round(s["localised"], 2) for s in scores],
        "chosen_start": chosen,
        "wall_time_s": round(seconds, 2),
        "dataset": cfg.dataset.name,
        "data": f"{cfg.dataset.generator} {OmegaConf.to_container(cfg.dataset.params)}",
        "schedule": cfg.schedule.name,
        "seed": int(cfg.seed),
        "params": sum(p.numel() for p in st.parameters()),
    })


START_SEED_STRIDE = 1000  # start k of seed s draws with seed s + 1000 k (start 0: seed s)
# ``coloc.select``: which whole-class loss (``class_loss``) picks the start, by the sides of its
# random crops: ``loss`` as at the last step (None: ``negative_rule``), ``window`` each window's
# own side (a window the size of the canvas then has its own crop as negative: no reward for
# growing to it)
SELECTION = {"loss": None, "window": "window"}


def log_step(writer, loss: Tensor, theta: Tensor, step: int) -> None:
    """The step's loss, and how much each window's theta is pushed (``theta.grad``, ``(B,
    3)``): zero for a blank window, and for one whose hinges are all inactive (with
    inside_canvas: theta's unconstrained parameters)."""
    writer.add_scalar("coloc/loss", loss.item(), step)
    grad = theta.grad.abs().sum(1)  # (B,)
    writer.add_scalar("coloc/theta_grad_mean", grad.mean().item(), step)
    writer.add_scalar("coloc/theta_grad_zero_pct", 100.0 * (grad == 0).float().mean().item(), step)


FIG4_IMAGES = 3  # images whose boxes are kept at every logged step (the paper's Fig. 4)


@torch.no_grad()
def current_boxes(st: SpatialTransformer, images: Tensor) -> Tensor:
    """The transformer's boxes ``(B, 4)`` on ``images`` now, in canvas pixels."""
    _, theta = st(images)
    return attention_boxes(theta.cpu(), tuple(images.shape[-2:]), st.transform)


def localisation(st: SpatialTransformer, images: Tensor, true_boxes: Tensor
                 ) -> tuple[float, Tensor]:  # fmt: skip
    """% of ``images`` whose box has IoU > 0.5 with its true box, and the IoUs ``(B,)``."""
    iou = paired_iou(current_boxes(st, images), true_boxes)
    return 100.0 * (iou > 0.5).float().mean().item(), iou


def save_box_history(run_dir: Path, images: Tensor, true_boxes: Tensor, history: dict) -> None:
    """``boxes.pt``: ``images`` ``(B, 1, H, W)``, their true boxes ``(B, 4)``, and the
    transformer's boxes ``(S, B, 4)`` at ``steps`` ``(S,)`` (0: the start)."""
    import io

    buf = io.BytesIO()
    torch.save({"images": images.cpu(), "true": true_boxes.cpu(),
                "steps": torch.tensor(history["steps"]),
                "boxes": torch.stack(history["boxes"])}, buf)  # fmt: skip
    write_atomic(run_dir / "boxes.pt", buf.getvalue())


def log_boxes(writer, st: SpatialTransformer, images: Tensor, true_boxes: Tensor, step: int):
    """The transformer's boxes (and the true ones) drawn on the images (the paper's Fig. 4)."""
    boxes = current_boxes(st, images)
    for i, image in enumerate(images.cpu()):
        writer.add_image_with_boxes(
            f"coloc/boxes/{i}", image.expand(3, -1, -1),
            torch.stack([boxes[i], true_boxes[i]]), step, labels=["ST", "true"],
        )  # fmt: skip
