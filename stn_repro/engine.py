"""One run: data, model and optimiser from the config; train; evaluate; log; checkpoint.

``train_run(cfg, run_dir, meta)`` trains exactly one model and writes, in ``run_dir``:
``config.yaml`` (the resolved config), ``tb/`` (TensorBoard), ``checkpoint.pt`` (atomic, for
resuming) and ``metrics.json`` (atomic, written last: a run is finished when it exists).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from . import signals
from .config import config_hash
from .data import Split, load_split, make_inputs
from .errors import UserError
from .files import write_atomic, write_json
from .models import DataSpec, build_model, count_params
from .runs import clear_run, code_version, finished_metrics, load_checkpoint, save_checkpoint


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda was asked for but no GPU is visible; use device=cpu")
    return torch.device(name)


def lr_factor(schedule: DictConfig, iteration: int) -> float:
    """Learning-rate multiplier at ``iteration``: step decays or a cosine to zero."""
    if schedule.lr_policy == "step":
        return schedule.lr_decay ** sum(iteration >= s for s in schedule.lr_steps)
    if schedule.lr_policy == "cosine":
        return 0.5 * (1 + math.cos(math.pi * iteration / schedule.iterations))
    raise UserError(f"unknown schedule.lr_policy {schedule.lr_policy!r}; use step or cosine")


def make_optimizer(model: nn.Module, schedule: DictConfig) -> torch.optim.Optimizer:
    """Two parameter groups: the localisation network (lr * loc_lr_scale) and the rest."""
    st = getattr(model, "st", None)
    loc = list(st.localisation_parameters()) if st is not None else []
    loc_ids = {id(p) for p in loc}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if loc:
        groups.append({"params": loc, "lr_scale": float(schedule.loc_lr_scale)})
    if schedule.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=schedule.lr, momentum=schedule.momentum,
            weight_decay=schedule.weight_decay,
        )  # fmt: skip
    if schedule.optimizer == "adam":
        return torch.optim.Adam(groups, lr=schedule.lr, weight_decay=schedule.weight_decay)
    raise UserError(f"unknown schedule.optimizer {schedule.optimizer!r}; use sgd or adam")


def batch_indices(n: int, batch_size: int, iteration: int, seed: int) -> Tensor:
    """Indices of the batch at ``iteration``: epochs are seeded permutations of the n images,
    so the batch order depends on (seed, iteration) only and a resumed run sees the same."""
    epoch, offset = divmod(iteration * batch_size, n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    idx = perm[offset : offset + batch_size]
    if len(idx) < batch_size:  # wrap into the next epoch
        nxt = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch + 1))
        idx = torch.cat([idx, nxt[: batch_size - len(idx)]])
    return idx


def batch(data: Split, idx, inputs, device: torch.device) -> tuple[Tensor, Tensor]:
    """Model inputs ``(B, C, ...)`` float and labels ``(B,)`` of ``data[idx]`` on ``device``."""
    x = inputs(data.images[idx].to(device), data.params[idx].to(device))
    return x, data.labels[idx].to(device)


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, inputs, device: torch.device, size: int = 500) -> float:
    """Test error in percent over the whole split."""
    model.eval()
    wrong = 0
    for start in range(0, len(data), size):
        x, y = batch(data, slice(start, start + size), inputs, device)
        wrong += (model(x).argmax(1) != y).sum().item()
    model.train()
    return 100.0 * wrong / len(data)


def tiles(images: Tensor) -> Tensor:
    """Any ``(B, ..., H, W)`` batch -> ``(M, 1, H, W)`` grey tiles, each scaled to [0, 1]."""
    flat = images.reshape(-1, 1, *images.shape[-2:]).detach().float().cpu()
    return flat / flat.amax((1, 2, 3), keepdim=True).clamp(min=1e-6)


def log_images(writer, model: nn.Module, x: Tensor, step: int) -> None:
    """Inputs (volumes: their max projection along depth), the transformer's outputs (one tile
    per transformer and channel), its sampling grid over 2D inputs, theta histograms."""
    from torchvision.utils import make_grid

    from .viz import draw_grid

    shown = x.amax(2) if x.dim() == 5 else x  # (B, C, H, W)
    writer.add_image("images/input", make_grid(tiles(shown), nrow=8, pad_value=0.5), step)
    st = getattr(model, "st", None)
    if st is None:
        return
    with torch.no_grad():
        out, theta = st(x)
    theta = theta.reshape(-1, st.transform.num_params)  # (B * N, P)
    writer.add_image("images/st_output", make_grid(tiles(out), nrow=8, pad_value=0.5), step)
    if x.dim() == 4:
        grid = st.transform.grid(theta, st.output_size).cpu()
        under = shown[:, :1].repeat_interleave(st.num_transformers, 0).cpu()
        writer.add_image("images/st_grid", make_grid(draw_grid(under, grid), nrow=8), step)
    for k in range(theta.shape[1]):
        writer.add_histogram(f"theta/{k}", theta[:, k], step)


def load_trained(cfg: DictConfig, run_dir: str | Path) -> nn.Module:
    """The model a finished run trained (from its final checkpoint), in eval mode."""
    ckpt = load_checkpoint(Path(run_dir), cfg, config_hash(cfg))
    if ckpt is None:
        raise UserError(f"{run_dir} has no checkpoint; train that run first")
    model = build_model(cfg.model, DataSpec(**ckpt["spec"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def train_run(cfg: DictConfig, run_dir: str | Path, meta: dict | None = None) -> dict:
    """Train, or resume, or skip (when finished) the run ``cfg`` describes; return its metrics.

    ``meta`` (experiment, table, column, row) is stored in ``metrics.json`` for the tables.
    """
    run_dir = Path(run_dir)
    chash = config_hash(cfg)
    if cfg.get("overwrite"):
        clear_run(run_dir)
    done = finished_metrics(run_dir, cfg, chash)
    if done is not None:
        return done
    schedule = cfg.schedule
    device = pick_device(cfg.device)
    ckpt = load_checkpoint(run_dir, cfg, chash)

    # ---- data: uint8 tensors in memory --------------------------------------------------
    paths = cfg.paths
    fresh = bool(cfg.dataset.fresh_each_epoch)  # new distortions of the training digits each epoch
    train = load_split(cfg.dataset, "train", paths.data_dir, paths.cache_dir,
                       epoch=0 if fresh else None, limit=schedule.train_limit)  # fmt: skip
    test = load_split(cfg.dataset, "test", paths.data_dir, paths.cache_dir,
                      limit=schedule.test_limit)  # fmt: skip
    inputs = make_inputs(cfg.dataset)
    spec = DataSpec(
        tuple(inputs(train.images[:1], train.params[:1]).shape[1:]),
        int(cfg.dataset.get("num_classes", 10)),
        int(cfg.dataset.get("st_pool", 1)),
    )

    # ---- model and optimiser --------------------------------------------------------------
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg.model, spec).to(device)
    optimizer = make_optimizer(model, schedule)
    start, elapsed = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, elapsed = ckpt["iteration"], ckpt["elapsed"]

    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    from torch.utils.tensorboard import SummaryWriter

    # On resume, drop the events logged after the checkpoint (steps > start), keep the rest.
    writer = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1 if start else None)
    log = schedule.log
    preview, _ = batch(test, slice(0, 32), inputs, device)

    def checkpoint(iteration: int) -> None:
        save_checkpoint(run_dir, {
            "config_hash": chash, "iteration": iteration, "elapsed": elapsed,
            "spec": asdict(spec), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "code": code_version(),
        })  # fmt: skip

    # ---- training loop ----------------------------------------------------------------------
    model.train()
    epoch_seen, epoch_data = 0, train
    tic = time.perf_counter()
    bar = tqdm(range(start, schedule.iterations), initial=start, total=schedule.iterations,
               disable=not cfg.progress, desc=str(run_dir.parent.name), leave=False)  # fmt: skip
    with signals.deferred() as stop:  # a stop signal: checkpoint after this step, then exit
        for it in bar:
            if fresh:
                epoch = it * schedule.batch_size // len(train)
                if epoch != epoch_seen:
                    epoch_data = load_split(cfg.dataset, "train", paths.data_dir,
                                            paths.cache_dir, epoch=epoch,
                                            limit=schedule.train_limit)  # fmt: skip
                    epoch_seen = epoch
            factor = lr_factor(schedule, it)
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr * factor * group["lr_scale"]
            idx = batch_indices(len(train), schedule.batch_size, it, int(cfg.seed))
            x, y = batch(epoch_data, idx, inputs, device)  # (B, C, H, W) or (B, C, D, H, W); (B,)
            logits = model(x)  # (B, 10)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss.item()} at iteration {it} of {run_dir}; rerun with a "
                    f"lower learning rate, e.g. schedule.lr={schedule.lr / 10:g} (a new run, in "
                    "its own directory)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step = it + 1
            if step % log.every == 0 or step == schedule.iterations:
                error = 100.0 * (logits.argmax(1) != y).float().mean().item()
                writer.add_scalar("train/loss", loss.item(), step)
                writer.add_scalar("train/error", error, step)
                writer.add_scalar("train/lr", schedule.lr * factor, step)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % log.image_every == 0 or step == schedule.iterations:
                log_images(writer, model, preview, step)
            if step % log.eval_every == 0 and step != schedule.iterations:
                writer.add_scalar("test/error", evaluate(model, test, inputs, device), step)
            if step % log.checkpoint_every == 0 or step == schedule.iterations or stop.requested:
                elapsed += time.perf_counter() - tic
                tic = time.perf_counter()
                checkpoint(step)
                writer.flush()
            stop.check(f" at iteration {step} of {run_dir}, after saving its checkpoint")
    elapsed += time.perf_counter() - tic

    # ---- evaluation and metrics ----------------------------------------------------------
    test_error = evaluate(model, test, inputs, device)
    params = count_params(model)
    writer.add_scalar("test/error", test_error, schedule.iterations)
    transform = cfg.model.transform.name if cfg.model.get("transform") else None
    hparams = {"model": cfg.model.name, "transform": str(transform), "dataset": cfg.dataset.name,
               "schedule": schedule.name, "seed": int(cfg.seed), "params": params}  # fmt: skip
    writer.add_hparams(hparams, {"hparam/test_error": test_error}, run_name=".")
    writer.close()
    metrics = {
        **(meta or {}),
        "test_error": test_error,
        "params": params,
        "iterations": int(schedule.iterations),
        "wall_time_s": round(elapsed, 2),
        "images_per_s": round(schedule.iterations * schedule.batch_size / max(elapsed, 1e-9), 1),
        "train_images": len(train),
        "test_images": len(test),
        "dataset": cfg.dataset.name,
        "data": f"{cfg.dataset.source} -> {cfg.dataset.generator} "
        f"{json.dumps(OmegaConf.to_container(cfg.dataset.params))}, data seed {cfg.dataset.seed}"
        + (", fresh distortions each epoch" if fresh else ""),
        "model": cfg.model.name,
        "transform": transform,
        "schedule": schedule.name,
        "seed": int(cfg.seed),
        "config_hash": chash,
        "device": str(device),
        "torch": torch.__version__,
        "code": code_version(),
        "host": platform.node(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return write_json(run_dir / "metrics.json", metrics)
