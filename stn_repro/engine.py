"""One run: data, model and optimiser from the config; train; evaluate; log; checkpoint.

``train_run(cfg, run_dir, meta)`` trains exactly one model and writes, in ``run_dir``:
``config.yaml`` (the resolved config), ``tb/`` (TensorBoard), ``checkpoint.pt`` (atomic, for
resuming) and ``metrics.json`` (atomic, written last: a run is finished when it exists).
Under ``torchrun`` every process runs ``train_run`` for the same run and they train it as
one (``distributed``): rank 0 writes, the others compute.
"""

from __future__ import annotations

import math
import platform
import time
from contextlib import nullcontext
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from . import distributed, signals, speed
from .config import config_hash, model_label
from .data.feeds import make_feed, source_inputs
from .distributed import ALONE, Ranks, pick_device
from .errors import UserError
from .files import write_atomic, write_json
from .models import DataSpec, build_model, count_params
from .runs import (
    clear_run,
    code_version,
    finished_metrics,
    load_checkpoint,
    save_checkpoint,
    save_snapshot,
)
from .st.inspect import traced, transformers
from .tasks import TASKS
from .terminal import teed
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
    if schedule.optimizer == "adam":
        return torch.optim.Adam(groups, lr=schedule.lr, weight_decay=schedule.weight_decay)
    raise UserError(f"unknown schedule.optimizer {schedule.optimizer!r}; use sgd or adam")


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


def log_pose(writer, model: nn.Module, feed, dataset: DictConfig, step: int) -> None:
    """How much of the test digits' known distortions each transformer removes, per input
    channel (``pose``; generated MNIST only): ``pose/<measure>_removed/t<k>_ch<c>``, in %."""
    from .pose import measure_model

    if dataset.source != "mnist" or not transformers(model):
        return
    for row in measure_model(model, feed, dataset, limit=POSE_IMAGES):
        tag = f"pose/{row['measure']}_removed/t{row['transformer']}_ch{row['channel']}"
        writer.add_scalar(tag, row["removed_pct"], step)


POSE_IMAGES = 2000  # test images the pose is measured on during training


class NoWriter:
    """What ranks other than 0 log to: nothing (every SummaryWriter method does nothing)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def point(iteration: int, seconds: float, schedule: DictConfig, error: float) -> dict:
    """One point of a run's time-to-accuracy curve (``metrics.json``'s ``curve``): training
    seconds so far (periodic evaluations included), images seen, the watched split's error."""
    return {"iteration": iteration, "seconds": round(seconds, 2),
            "images": iteration * int(schedule.batch_size), "error": error}  # fmt: skip


ERROR_CHART = {"errors": {"train / val / test error (%)": [
    "Multiline", ["train/error", "val/error", "test/error"]]}}  # fmt: skip
"""TensorBoard's Custom Scalars layout of every run: its three error curves on one chart."""


def train_run(cfg: DictConfig, run_dir: str | Path, meta: dict | None = None) -> dict:
    """Train, or resume, or skip (when finished) the run ``cfg`` describes; return its metrics.

    ``meta`` (experiment, table, column, row) is stored in ``metrics.json`` for the tables.
    """
    run_dir = Path(run_dir)
    chash = config_hash(cfg)
    where = distributed.ranks()  # alone, or one of several processes training this run
    if cfg.get("overwrite") and where.main:
        clear_run(run_dir)
    distributed.barrier(where)  # rank 0 holds the run's lock (and has cleared it): read it
    inputs = source_inputs(cfg)  # the original files, read (None: generated MNIST sets) ...
    data_key = inputs[0] if inputs else None  # ... and their identity
    done = finished_metrics(run_dir, cfg, chash, data_key)
    if done is not None:
        return done
    with teed(run_dir / "log.txt") if where.main else nullcontext():  # what the terminal shows
        return train(cfg, run_dir, meta, chash, where, inputs)


def train(cfg: DictConfig, run_dir: Path, meta: dict | None, chash: str, where: Ranks,
          inputs) -> dict:  # fmt: skip
    """Train (from scratch, or on from its checkpoint) the unfinished run ``cfg``."""
    data_key = inputs[0] if inputs else None
    schedule = cfg.schedule
    if schedule.batch_size % where.world:
        raise UserError(f"schedule.batch_size={schedule.batch_size} does not split evenly over "
                        f"{where.world} processes; choose a multiple of {where.world}")  # fmt: skip
    device = pick_device(cfg.device, where)
    precision = speed.resolve_precision(schedule.precision, device)  # auto: bf16 or fp32
    ckpt = load_checkpoint(run_dir, cfg, chash, data_key)

    # ---- data and task ---------------------------------------------------------------------
    feed = make_feed(cfg, device, inputs)  # in memory (generated MNIST) or HDF5 + DataLoader
    task = TASKS[cfg.dataset.task]
    watch = "val" if "val" in feed.splits else "test"  # evaluated during training
    spec = DataSpec(feed.sample_shape, int(cfg.dataset.num_classes),
                    int(cfg.dataset.st_pool), int(cfg.dataset.positions))  # fmt: skip

    # ---- model and optimiser --------------------------------------------------------------
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg.model, spec).to(device)
    speed.prepare(model, cfg.speed)  # memory layout
    speed.set_precision(precision)
    optimizer = make_optimizer(model, schedule)
    start, elapsed = 0, 0.0
    curve: list[dict] = []  # the watched split's error against training time and images seen
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, elapsed = ckpt["iteration"], ckpt["elapsed"]
        curve = ckpt.get("curve", [])
    net = model  # what the training step calls: with several ranks, the gradient-averaging DDP
    if where.several:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        torch.manual_seed(int(cfg.seed) * 1_000 + where.rank)  # each rank its own dropout draws
    net = speed.compiled(net, cfg.speed, device)
    forward_precision = speed.autocast(precision, device)

    writer = NoWriter()
    if where.main:
        write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        from torch.utils.tensorboard import SummaryWriter

        # On resume, drop the events logged after the checkpoint (steps > start), keep the rest.
        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1 if start else None)
        writer.add_custom_scalars(ERROR_CHART)  # train, val and test error on one chart
    log = schedule.log
    preview, _ = feed.preview(32)

    def checkpoint(iteration: int) -> None:
        check_weights(model, iteration, run_dir, schedule.lr)  # (identical on every rank)
        states = distributed.gathered(rng_state(), where)  # every rank's dropout draws
        if where.main:
            save_checkpoint(run_dir, {
                "config_hash": chash, "data_key": data_key, "iteration": iteration,
                "elapsed": elapsed, "curve": curve,
                "spec": asdict(spec), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "code": code_version(), "rng": states[0],
                **({"rng_ranks": states} if where.several else {}),
            })  # fmt: skip
        distributed.barrier(where)  # no rank leaves (and may stop) before it is written

    if ckpt is not None:  # dropout draws continue as if never interrupted
        states = ckpt.get("rng_ranks", [ckpt.get("rng")])
        if len(states) == where.world and states[where.rank] is not None:
            set_rng_state(states[where.rank])  # (resumed on another number of ranks: new draws)

    # ---- training loop ----------------------------------------------------------------------
    snapshots = bool(log.snapshot_every and where.main and transformers(model))
    if snapshots and start == 0:
        save_snapshot(run_dir, 0, [st.state_dict() for st in transformers(model)])  # untrained
    model.train()
    tic = time.perf_counter()
    bar = tqdm(range(start, schedule.iterations), initial=start, total=schedule.iterations,
               disable=not (cfg.progress and where.main),
               desc=f"{(meta or {}).get('row') or model_label(cfg)} seed {cfg.seed}")  # fmt: skip
    batches = feed.train_batches(start, where)
    finite = FiniteWatch()
    with signals.deferred() as stop:  # a stop signal: checkpoint after this step, then exit
        # x (B, C, H, W) or (B, C, D, H, W); y (B,) or (B, L): this rank's share of the batch.
        # The feed's batches never end.
        for it, (x, y) in zip(bar, batches, strict=False):
            factor = lr_factor(schedule, it)
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr * factor * group["lr_scale"]
            if len(y) * where.world != schedule.batch_size:
                raise RuntimeError(f"the feed gave {len(y)} samples, not this process's share "
                                   f"of {schedule.batch_size}")  # fmt: skip
            with forward_precision:
                logits = net(speed.layout(x, cfg.speed))  # (B, classes) or (B, L, classes)
                loss = task.loss(logits, y)
            if where.several:  # the ranks agree on the batch's mean loss and on stopping
                shared = distributed.total(
                    torch.stack([loss.detach().float(), loss.new_tensor(stop.requested)]), where
                )  # (a signal arriving after this is seen at the next step, or after the loop)
                batch_loss, stopping = shared[0] / where.world, bool(shared[1])
            else:
                batch_loss, stopping = loss.detach(), stop.requested
            finite.see(batch_loss, it)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step = it + 1
            last = step == schedule.iterations
            due = {  # what this step does besides training (the same on every rank)
                "log": step % log.every == 0 or last,
                "images": step % log.image_every == 0 or last,
                "snapshot": bool(log.snapshot_every) and step % log.snapshot_every == 0,
                "eval": step % log.eval_every == 0 and not last,
                "checkpoint": step % log.checkpoint_every == 0 or last or stopping,
            }
            if any(due.values()):
                finite.check(run_dir, schedule.lr)  # before logging, evaluating, checkpointing
            if due["log"]:
                wrong = distributed.total(torch.stack([task.wrong(logits, y),
                                                       y.new_tensor(len(y))]), where)  # fmt: skip
                writer.add_scalar("train/loss", batch_loss.item(), step)
                writer.add_scalar("train/error", 100.0 * wrong[0].item() / wrong[1].item(), step)
                writer.add_scalar("train/lr", schedule.lr * factor, step)
                bar.set_postfix(loss=f"{batch_loss.item():.3f}")
            if where.main and due["images"]:
                log_images(writer, model, preview, step)
            if snapshots and due["snapshot"]:
                save_snapshot(run_dir, step, [st.state_dict() for st in transformers(model)])
            if due["eval"]:
                error = evaluate(model, feed, watch, task, where)
                writer.add_scalar(f"{watch}/error", error, step)
                curve.append(point(step, elapsed + time.perf_counter() - tic, schedule, error))
                if where.main:
                    log_pose(writer, model, feed, cfg.dataset, step)
            if due["checkpoint"]:
                elapsed += time.perf_counter() - tic
                tic = time.perf_counter()
                checkpoint(step)
                writer.flush()
            if stopping:
                stop.request()  # the ranks that got no signal stop with the one that did
                stop.check(f" at iteration {step} of {run_dir}, after saving its checkpoint")
        # A signal during the last step's logging or checkpoint: stop before evaluating.
        if distributed.total(torch.tensor([float(stop.requested)], device=device), where).item():
            stop.request()
            stop.check(f" at iteration {schedule.iterations} of {run_dir}, after saving its "
                       "checkpoint")  # fmt: skip
    del batches  # stops DataLoader workers
    elapsed += time.perf_counter() - tic

    # ---- evaluation and metrics ----------------------------------------------------------
    val_error = evaluate(model, feed, "val", task, where) if "val" in feed.splits else None
    test_error = evaluate(model, feed, "test", task, where)
    params = count_params(model)
    if where.main:
        log_pose(writer, model, feed, cfg.dataset, schedule.iterations)
    if val_error is not None:
        writer.add_scalar("val/error", val_error, schedule.iterations)
    end = schedule.iterations
    curve.append(point(end, elapsed, schedule, val_error if watch == "val" else test_error))
    writer.add_scalar("test/error", test_error, schedule.iterations)
    transform = cfg.model.transform.name if cfg.model.get("transform") else None
    hparams = {"model": cfg.model.name, "transform": str(transform), "dataset": cfg.dataset.name,
               "schedule": schedule.name, "seed": int(cfg.seed), "params": params}  # fmt: skip
    writer.add_hparams(hparams, {"hparam/test_error": test_error}, run_name=".")
    writer.close()
    metrics = {
        **(meta or {}),
        "test_error": test_error,
        "val_error": val_error,
        "metric": task.caption,
        "params": params,
        "iterations": int(schedule.iterations),
        "wall_time_s": round(elapsed, 2),
        "curve_split": watch,  # the split ``curve`` follows (val when one is held out)
        "curve": curve,
        "images_per_s": round(schedule.iterations * schedule.batch_size / max(elapsed, 1e-9), 1),
        "train_images": feed.train_size,
        **{f"{split}_images": len(data) for split, data in feed.splits.items()},
        "dataset": cfg.dataset.name,
        "data": feed.description,
        "model": cfg.model.name,
        "transform": transform,
        "width": cfg.model.width,  # SVHN models (1: the paper's width)
        "schedule": schedule.name,
        "seed": int(cfg.seed),
        "config_hash": chash,
        "data_key": data_key,  # the original files' identity (None: generated MNIST sets)
        "device": str(device),
        "precision": precision,  # as computed (schedule.precision=auto: bf16 or fp32)
        "processes": where.world,  # training it together (torchrun)
        "torch": torch.__version__,
        "code": code_version(),
        "host": platform.node(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if where.main:
        metrics = write_json(run_dir / "metrics.json", metrics)
    distributed.barrier(where)  # the run is finished for every rank
    return metrics
