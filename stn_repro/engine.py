"""One run: data, model and optimiser from the config; train; evaluate; log; checkpoint.

``train_run(cfg, run_dir, meta)`` trains exactly one model. Its files (``config.yaml``,
``tb/``, ``checkpoint.pt``, ``metrics.json`` written last) and its skip / resume / finish are
the run's life (``lifecycle``); here are the step, read top to bottom in ``train``, and the
periodic jobs it runs after a step (``Job``: log, images, snapshot, evaluate, checkpoint).
Under ``torchrun`` every process runs ``train_run`` for the same run and they train it as
one (``distributed``): rank 0 writes, the others compute.
"""

from __future__ import annotations

import math
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import distributed, signals, speed
from .config import model_label
from .data.feeds import make_feed, source_inputs
from .distributed import ALONE, Ranks, pick_device
from .errors import UserError
from .lifecycle import Clock, RunLife, live
from .models import DataSpec, build_model, count_params
from .runs import save_snapshot
from .st.inspect import traced, transformers
from .tasks import TASKS
from .viz import tiles


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class FiniteWatch:
    """Keeps the losses of the steps since the last check, on the device, so the training step
    never waits for it; ``check`` (one synchronisation) raises ``TrainingDiverged`` naming the
    first NaN or infinite one. The engine checks before anything is logged, evaluated or
    checkpointed."""

    def __init__(self):
        self.losses: list[Tensor] = []
        self.first = 0  # the iteration of losses[0]

    def see(self, loss: Tensor, iteration: int) -> None:
        if not self.losses:
            self.first = iteration
        self.losses.append(loss.detach())

    def check(self, run_dir, lr: float) -> None:
        if not self.losses:
            return
        losses, self.losses = torch.stack(self.losses).float(), []
        bad = (~torch.isfinite(losses)).nonzero().flatten()
        if len(bad):
            k = int(bad[0])
            raise diverged(f"the loss became {losses[k].item()} at iteration {self.first + k}",
                           run_dir, lr)  # fmt: skip


def check_weights(model: nn.Module, iteration: int, run_dir, lr: float) -> None:
    """Raise ``TrainingDiverged`` if a weight is NaN or infinite (a finite loss can still give
    a non-finite gradient), so that no such model is saved."""
    if not torch.stack([p.isfinite().all() for p in model.parameters()]).all():
        raise diverged(f"the weights became NaN or infinite by iteration {iteration}", run_dir, lr)


def diverged(what: str, run_dir, lr: float) -> TrainingDiverged:
    """The error for a run that diverged, with the advice that fixes it."""
    return TrainingDiverged(
        f"{what} of {run_dir}; rerun with a lower learning rate, e.g. schedule.lr={lr / 10:g} "
        "(a new run, in its own directory)"
    )


def lr_factor(schedule: DictConfig, iteration: int) -> float:
    """Learning-rate multiplier at ``iteration``: step decays or a cosine to zero."""
    if schedule.lr_policy == "step":
        return schedule.lr_decay ** sum(iteration >= s for s in schedule.lr_steps)
    if schedule.lr_policy == "cosine":
        return 0.5 * (1 + math.cos(math.pi * iteration / schedule.iterations))
    raise UserError(f"unknown schedule.lr_policy {schedule.lr_policy!r}; use step or cosine")


def make_optimizer(model: nn.Module, schedule: DictConfig) -> torch.optim.Optimizer:
    """One parameter group per spatial transformer's localisation network (each at
    lr * loc_lr_scale), and one for the rest (lr)."""
    loc_groups = [list(st.localisation_parameters()) for st in transformers(model)]
    loc_ids = {id(p) for group in loc_groups for p in group}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    groups = [{"params": rest, "lr_scale": 1.0}]
    groups += [{"params": g, "lr_scale": float(schedule.loc_lr_scale)} for g in loc_groups if g]
    if schedule.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=schedule.lr, momentum=schedule.momentum,
            weight_decay=schedule.weight_decay,
        )  # fmt: skip
    if schedule.optimizer == "adam":  # weight decay as an L2 term of the gradient
        return torch.optim.Adam(groups, lr=schedule.lr, weight_decay=schedule.weight_decay)
    if schedule.optimizer == "adamw":  # decoupled: each step shrinks weights by lr * decay
        return torch.optim.AdamW(groups, lr=schedule.lr, weight_decay=schedule.weight_decay)
    raise UserError(f"unknown schedule.optimizer {schedule.optimizer!r}; use sgd, adam or adamw")


@torch.no_grad()
def evaluate(model: nn.Module, feed, split: str, task, where: Ranks = ALONE) -> float:
    """% of the samples of ``split`` the model gets wrong (the task decides what is wrong);
    with several ranks, each scores its share and the counts are summed."""
    distributed.share_buffers(model, where)  # rank 0's batch-norm statistics: one model
    model.eval()
    device = next(model.parameters()).device
    wrong, seen = torch.zeros((), dtype=torch.int64, device=device), 0  # counted on the device
    for x, y in feed.eval_batches(split, where):
        wrong += task.wrong(model(x), y)
        seen += len(y)
    model.train()
    wrong, seen = distributed.total(torch.stack([wrong, wrong.new_tensor(seen)]), where).tolist()
    if seen != len(feed.splits[split]):
        raise RuntimeError(f"evaluated {seen} of the {len(feed.splits[split])} {split} samples")
    return 100.0 * wrong / max(seen, 1)


def log_images(writer, model: nn.Module, x: Tensor, step: int) -> None:
    """Inputs (volumes: their max projection along depth) and, for each spatial transformer
    (``st``, or ``st1``, ``st2``, ... when there are several): its output, its sampling grid
    drawn on its input (2D), its windows' boxes in one colour per parallel transformer
    (attention and translation windows, e.g. CUB), theta histograms. Several affine
    transformers in a row (SVHN ST-CNN Multi) also get ``st_composite``: their transforms
    multiplied out, drawn on the input."""
    from torchvision.utils import make_grid

    from .st.transforms import Affine, Attention, Translation, compose_affine
    from .viz import draw_boxes, draw_grid, window_boxes

    shown = x.amax(2) if x.dim() == 5 else x  # (B, C, H, W)
    writer.add_image("images/input", make_grid(tiles(shown), nrow=8, pad_value=0.5), step)
    found = traced(model, x)
    for i, (st, seen, out, theta) in enumerate(found):
        name = "st" if len(found) == 1 else f"st{i + 1}"
        theta = theta.reshape(-1, st.transform.num_params)  # (B * N, P)
        writer.add_image(f"images/{name}_output", make_grid(tiles(out), nrow=8, pad_value=0.5),
                         step)  # fmt: skip
        if seen.dim() == 4:
            grid = st.transform.grid(theta, st.output_size).cpu()
            one = seen if seen.shape[1] in (1, 3) else seen.mean(1, keepdim=True)  # per sample
            under = tiles(one).repeat_interleave(st.num_transformers, 0)
            writer.add_image(f"images/{name}_grid", make_grid(draw_grid(under, grid), nrow=8),
                             step)  # fmt: skip
        windows = isinstance(st.transform, Attention | Translation)
        if windows and seen.dim() == 4 and seen.shape[1] in (1, 3):  # images, not feature maps
            boxes = window_boxes(st.transform.matrix(theta), seen.shape[-2:])
            boxes = boxes.view(len(seen), st.num_transformers, 4).cpu()
            writer.add_image(f"images/{name}_boxes", make_grid(draw_boxes(tiles(seen), boxes),
                                                               nrow=8), step)  # fmt: skip
        for k, param in enumerate(st.transform.param_names):  # e.g. theta/a11, theta/st2_tx
            tag = f"theta/{param}" if len(found) == 1 else f"theta/{name}_{param}"
            writer.add_histogram(tag, theta[:, k], step)
    if len(found) > 1 and all(isinstance(st.transform, Affine) for st, *_ in found):
        composite = compose_affine([theta for *_, theta in found])  # (B, 6)
        grid = Affine().grid(composite, shown.shape[-2:]).cpu()
        writer.add_image("images/st_composite",
                         make_grid(draw_grid(tiles(shown), grid), nrow=8), step)  # fmt: skip


def rng_state() -> dict:
    """torch's random state (dropout masks draw from it) on the CPU and the current GPU."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def resume_draws(ckpt: dict, where: Ranks) -> None:
    """Continue the dropout draws of a resumed checkpoint as if never interrupted (resumed on
    another number of ranks, or from scratch: new draws)."""
    states = ckpt.get("rng_ranks", [ckpt.get("rng")])
    if ckpt and len(states) == where.world and states[where.rank] is not None:
        set_rng_state(states[where.rank])


def log_pose(writer, model: nn.Module, feed, dataset: DictConfig, step: int) -> None:
    """How much of the test digits' known distortions each transformer removes, per input
    channel (``pose``; generated MNIST only): ``pose/<measure>_removed/t<k>_ch<c>``, in %."""
    from .report.pose import measure_model

    if dataset.source != "mnist" or not transformers(model):
        return
    for row in measure_model(model, feed, dataset, limit=POSE_IMAGES):
        tag = f"pose/{row['measure']}_removed/t{row['transformer']}_ch{row['channel']}"
        writer.add_scalar(tag, row["removed_pct"], step)


POSE_IMAGES = 2000  # test images the pose is measured on during training


def point(iteration: int, seconds: float, schedule: DictConfig, error: float) -> dict:
    """One point of a run's time-to-accuracy curve (``metrics.json``'s ``curve``): training
    seconds so far (periodic evaluations included), images seen, the watched split's error."""
    return {"iteration": iteration, "seconds": round(seconds, 2),
            "images": iteration * int(schedule.batch_size), "error": error}  # fmt: skip


ERROR_CHART = {"errors": {"train / val / test error (%)": [
    "Multiline", ["train/error", "val/error", "test/error"]]}}  # fmt: skip
"""TensorBoard's Custom Scalars layout of every run: its three error curves on one chart."""


@dataclass
class Step:
    """What one training step leaves for the periodic jobs."""

    step: int  # iterations done
    last: bool  # the schedule's last iteration
    stopping: bool  # a stop signal reached some rank: checkpoint now, then stop
    logits: Tensor  # (B, classes) or (B, L, classes): this rank's share of the batch
    y: Tensor  # (B,) or (B, L)
    loss: Tensor  # the batch's mean loss over every rank, on the device
    lr: float  # the base learning rate of this step


class Job:
    """A periodic job of the training loop (after detectron2's hooks): due every ``every``
    steps (0: never) and, with ``at_end``, at the last; ``due`` is the same on every rank
    (a job may be collective), then ``run`` does it."""

    every: int = 0
    at_end: bool = False

    def due(self, now: Step) -> bool:
        return (self.every > 0 and now.step % self.every == 0) or (self.at_end and now.last)

    def run(self, now: Step) -> None:
        raise NotImplementedError


class LogTraining(Job):
    """``train/loss``, ``train/error`` (the step's batch, over every rank) and ``train/lr``;
    the loss on the progress bar."""

    at_end = True

    def __init__(self, every: int, writer, task, where: Ranks, bar):
        self.every, self.writer, self.task, self.where, self.bar = every, writer, task, where, bar

    def run(self, now: Step) -> None:
        counts = torch.stack([self.task.wrong(now.logits, now.y), now.y.new_tensor(len(now.y))])
        wrong = distributed.total(counts, self.where)
        self.writer.add_scalar("train/loss", now.loss.item(), now.step)
        self.writer.add_scalar("train/error", 100.0 * wrong[0].item() / wrong[1].item(), now.step)
        self.writer.add_scalar("train/lr", now.lr, now.step)
        self.bar.set_postfix(loss=f"{now.loss.item():.3f}")


class LogImages(Job):
    """The transformers' outputs, grids and thetas on a fixed preview batch (``log_images``)."""

    at_end = True

    def __init__(self, every: int, writer, model: nn.Module, preview: Tensor, where: Ranks):
        self.every, self.writer, self.model, self.preview = every, writer, model, preview
        self.where = where

    def run(self, now: Step) -> None:
        if self.where.main:
            log_images(self.writer, self.model, self.preview, now.step)


class Snapshot(Job):
    """The spatial transformers' weights (``snapshots/``, for animations); rank 0, and only
    for a model that has transformers."""

    def __init__(self, every: int, run_dir: Path, model: nn.Module, where: Ranks):
        self.every, self.run_dir, self.where = every, run_dir, where
        self.sts = transformers(model)

    def save(self, step: int) -> None:
        if self.every and self.sts and self.where.main:
            save_snapshot(self.run_dir, step, [st.state_dict() for st in self.sts])

    def run(self, now: Step) -> None:
        self.save(now.step)


class Evaluate(Job):
    """The watched split's error (val when held out, else test) to TensorBoard and the
    time-to-accuracy curve, and the pose the transformers remove; not at the last step (the
    run's final evaluation follows it)."""

    def __init__(self, every: int, cfg: DictConfig, writer, model, feed, task, where: Ranks,
                 clock: Clock, curve: list[dict]):  # fmt: skip
        self.every, self.cfg, self.writer, self.model = every, cfg, writer, model
        self.feed, self.task, self.where, self.clock, self.curve = feed, task, where, clock, curve
        self.watch = watched_split(feed)

    def due(self, now: Step) -> bool:
        return super().due(now) and not now.last

    def run(self, now: Step) -> None:
        error = evaluate(self.model, self.feed, self.watch, self.task, self.where)
        self.writer.add_scalar(f"{self.watch}/error", error, now.step)
        self.curve.append(point(now.step, self.clock.seconds(), self.cfg.schedule, error))
        if self.where.main:
            log_pose(self.writer, self.model, self.feed, self.cfg.dataset, now.step)


class Checkpoint(Job):
    """Model (and its moving average, if kept), optimiser, every rank's random state, the clock
    and the curve, checked finite first; also at the last step and when stopping."""

    at_end = True

    def __init__(self, every: int, life: RunLife, model, averaged, optimizer, spec: DataSpec,
                 clock: Clock, curve: list[dict], lr: float):  # fmt: skip
        self.every, self.life, self.model, self.optimizer = every, life, model, optimizer
        self.averaged, self.spec, self.clock, self.curve, self.lr = averaged, spec, clock, curve, lr

    def due(self, now: Step) -> bool:
        return super().due(now) or now.stopping

    def run(self, now: Step) -> None:
        where = self.life.where
        check_weights(self.model, now.step, self.life.run_dir, self.lr)  # (same on every rank)
        states = distributed.gathered(rng_state(), where)  # every rank's dropout draws
        self.life.save({
            "iteration": now.step, "elapsed": self.clock.seconds(), "curve": self.curve,
            "spec": asdict(self.spec), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "rng": states[0],
            **({"averaged": self.averaged.state_dict()} if self.averaged else {}),
            **({"rng_ranks": states} if where.several else {}),
        })  # fmt: skip
        self.life.writer.flush()


def watched_split(feed) -> str:
    """The split evaluated during training: val when one is held out, else test."""
    return "val" if "val" in feed.splits else "test"


def agree(loss: Tensor, stop: signals.Stop, where: Ranks) -> tuple[Tensor, bool]:
    """The batch's mean loss over every rank, and whether a stop signal reached any rank (a
    signal arriving after this is seen at the next step, or after the loop)."""
    if not where.several:
        return loss.detach(), stop.requested
    shared = distributed.total(torch.stack([loss.detach().float(),
                                            loss.new_tensor(stop.requested)]), where)  # fmt: skip
    return shared[0] / where.world, bool(shared[1])


def train_run(cfg: DictConfig, run_dir: str | Path, meta: dict | None = None) -> dict:
    """Train, or resume, or skip (when finished) the run ``cfg`` describes; return its metrics.

    ``meta`` (experiment, table, column, row) is stored in ``metrics.json`` for the tables.
    """
    where = distributed.ranks()  # alone, or one of several processes training this run
    inputs = source_inputs(cfg)  # the original files, read (None: generated MNIST sets) ...
    data_key = inputs[0] if inputs else None  # ... and their identity
    return live(cfg, run_dir, lambda life: train(cfg, life, meta or {}, inputs), where, data_key)


def train(cfg: DictConfig, life: RunLife, meta: dict, inputs) -> dict:
    """Train (from scratch, or on from its checkpoint) the unfinished run ``cfg``."""
    schedule, log, where = cfg.schedule, cfg.schedule.log, life.where
    if schedule.batch_size % where.world:
        raise UserError(f"schedule.batch_size={schedule.batch_size} does not split evenly over "
                        f"{where.world} processes; choose a multiple of {where.world}")  # fmt: skip
    device = pick_device(cfg.device, where)
    precision = speed.resolve_precision(schedule.precision, device)  # auto: bf16 or fp32
    ckpt = life.resume() or {}

    # ---- data, task, model, optimiser -------------------------------------------------------
    feed = make_feed(cfg, device, inputs)  # in memory (generated MNIST) or HDF5 + DataLoader
    task = TASKS[cfg.dataset.task]
    spec = DataSpec(feed.sample_shape, int(cfg.dataset.num_classes),
                    int(cfg.dataset.st_pool), int(cfg.dataset.positions))  # fmt: skip
    model = new_model(cfg, spec, device, precision)
    optimizer = make_optimizer(model, schedule)
    averaged = averaged_model(model, schedule)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if averaged:
            averaged.load_state_dict(ckpt["averaged"])
    scored = averaged.module if averaged else model  # evaluated, shown and kept as the result
    start, curve = ckpt.get("iteration", 0), ckpt.get("curve", [])  # curve: val error vs time
    net = trained_net(model, cfg, device, where)  # what the step calls (DDP, compiled)
    forward_precision = speed.autocast(precision, device)
    writer = life.start(start)
    writer.add_custom_scalars(ERROR_CHART)  # train, val and test error on one chart
    preview, _ = feed.preview(32)
    resume_draws(ckpt, where)

    # ---- the periodic jobs, and the training loop ----------------------------------------------
    clock = Clock(ckpt.get("elapsed", 0.0))
    bar = tqdm(range(start, schedule.iterations), initial=start, total=schedule.iterations,
               disable=not (cfg.progress and where.main),
               desc=f"{meta.get('row') or model_label(cfg)} seed {cfg.seed}")  # fmt: skip
    snapshot = Snapshot(log.snapshot_every, life.run_dir, scored, where)
    jobs = [LogTraining(log.every, writer, task, where, bar),
            LogImages(log.image_every, writer, scored, preview, where), snapshot,
            Evaluate(log.eval_every, cfg, writer, scored, feed, task, where, clock, curve),
            Checkpoint(log.checkpoint_every, life, model, averaged, optimizer, spec, clock, curve,
                       schedule.lr)]  # fmt: skip
    if start == 0:
        snapshot.save(0)  # the untrained transformers
    model.train()
    batches = feed.train_batches(start, where)  # never ends
    finite = FiniteWatch()
    with signals.deferred() as stop:  # a stop signal: checkpoint after this step, then exit
        # x (B, C, H, W) or (B, C, D, H, W); y (B,) or (B, L): this rank's share of the batch
        for it, (x, y) in zip(bar, batches, strict=False):
            lr = schedule.lr * lr_factor(schedule, it)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            if len(y) * where.world != schedule.batch_size:
                raise RuntimeError(f"the feed gave {len(y)} samples, not this process's share "
                                   f"of {schedule.batch_size}")  # fmt: skip
            with forward_precision:
                logits = net(speed.layout(x, cfg.speed))  # (B, classes) or (B, L, classes)
                loss = task.loss(logits, y, schedule.label_smoothing)
            batch_loss, stopping = agree(loss, stop, where)
            finite.see(batch_loss, it)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if averaged:
                averaged.update_parameters(model)
            now = Step(it + 1, it + 1 == schedule.iterations, stopping, logits, y, batch_loss, lr)
            due = [job for job in jobs if job.due(now)]
            if due:
                finite.check(life.run_dir, schedule.lr)  # before logging, evaluating, saving
            for job in due:
                job.run(now)
            if stopping:
                stop.request()  # the ranks that got no signal stop with the one that did
                stop.check(f" at iteration {now.step} of {life.run_dir}, after saving its "
                           "checkpoint")  # fmt: skip
        # A signal during the last step's logging or checkpoint: stop before evaluating.
        if distributed.total(torch.tensor([float(stop.requested)], device=device), where).item():
            stop.request()
            stop.check(f" at iteration {schedule.iterations} of {life.run_dir}, after saving its "
                       "checkpoint")  # fmt: skip
    del batches  # stops DataLoader workers
    seconds = clock.seconds()
    return finish(cfg, life, meta, scored, feed, task, curve, seconds, device, precision)


def new_model(cfg: DictConfig, spec: DataSpec, device: torch.device, precision: str
              ) -> nn.Module:  # fmt: skip
    """The run's model, initialised from ``cfg.seed``, in the memory layout and matmul
    precision ``cfg.speed`` and ``precision`` ask for."""
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg.model, spec).to(device)
    speed.prepare(model, cfg.speed)  # memory layout
    speed.set_precision(precision)
    return model


def averaged_model(model: nn.Module, schedule: DictConfig) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers, decay
    ``schedule.ema_decay`` per iteration (torch's ``AveragedModel``); None when it is 0."""
    if not schedule.ema_decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(schedule.ema_decay),
                         use_buffers=True)  # fmt: skip


def trained_net(model: nn.Module, cfg: DictConfig, device: torch.device, where: Ranks):
    """What the training step calls: ``model``, or with several ranks the gradient-averaging
    DDP around it (each rank then draws its own dropout masks); compiled when asked."""
    net = model
    if where.several:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        torch.manual_seed(int(cfg.seed) * 1_000 + where.rank)
    return speed.compiled(net, cfg.speed, device)


def finish(cfg: DictConfig, life: RunLife, meta: dict, model: nn.Module, feed, task,
           curve: list[dict], seconds: float, device: torch.device, precision: str
           ) -> dict:  # fmt: skip
    """The scored model's (the trained weights, or their moving average) val and test error,
    logged, and the run's ``metrics.json``."""
    schedule, where, writer, end = cfg.schedule, life.where, life.writer, cfg.schedule.iterations
    watch = watched_split(feed)
    val_error = evaluate(model, feed, "val", task, where) if "val" in feed.splits else None
    test_error = evaluate(model, feed, "test", task, where)
    params = count_params(model)
    if where.main:
        log_pose(writer, model, feed, cfg.dataset, end)
    if val_error is not None:
        writer.add_scalar("val/error", val_error, end)
    curve.append(point(end, seconds, schedule, val_error if watch == "val" else test_error))
    writer.add_scalar("test/error", test_error, end)
    transform = cfg.model.transform.name if cfg.model.get("transform") else None
    hparams = {"model": cfg.model.name, "transform": str(transform), "dataset": cfg.dataset.name,
               "schedule": schedule.name, "seed": int(cfg.seed), "params": params}  # fmt: skip
    writer.add_hparams(hparams, {"hparam/test_error": test_error}, run_name=".")
    return life.finish({
        **meta,
        "test_error": test_error,
        "val_error": val_error,
        "metric": task.caption,
        "params": params,
        "iterations": int(end),
        "wall_time_s": round(seconds, 2),
        "curve_split": watch,  # the split ``curve`` follows (val when one is held out)
        "curve": curve,
        "images_per_s": round(end * schedule.batch_size / max(seconds, 1e-9), 1),
        "train_images": feed.train_size,
        **{f"{split}_images": len(data) for split, data in feed.splits.items()},
        "dataset": cfg.dataset.name,
        "data": feed.description,
        "model": cfg.model.name,
        "transform": transform,
        "width": cfg.model.get("width"),  # SVHN models (1: the paper's width)
        "schedule": schedule.name,
        "seed": int(cfg.seed),
        "device": str(device),
        "precision": precision,  # as computed (schedule.precision=auto: bf16 or fp32)
        "processes": where.world,  # training it together (torchrun)
        "torch": torch.__version__,
        "host": platform.node(),
    })
