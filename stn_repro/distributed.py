"""Data-parallel training over several processes (``torchrun``), one GPU (or CPU) each.

``torchrun --nproc_per_node=K -m stn_repro.cli ...`` starts K copies of the command; each
reads its place from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), and ``start``
joins them into one process group (NCCL on GPUs, gloo on CPUs). The engine then trains each
run as one: every iteration's batch is the same global batch as in a single process
(``schedule.batch_size``), each rank takes its slice (``shard``), and DistributedDataParallel
averages the gradients, so K processes compute what one would, up to float round-off (and
batch normalisation, whose statistics are per process). Evaluation is split over the ranks
and summed. Rank 0 alone holds the run's lock and writes (config, TensorBoard, checkpoints,
metrics, tables); the others read the same files, so several machines need a shared
filesystem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import UserError

# Rank 0 may evaluate and write while the others wait at a barrier; allow it time.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` processes training together (1: alone)."""

    rank: int = 0
    world: int = 1
    local: int = 0  # the rank on this machine: the GPU it uses

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1


ALONE = Ranks()  # a process training on its own


def ranks() -> Ranks:
    """This process's place, from the process group if one was started, else alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return ALONE
    rank = dist.get_rank()
    return Ranks(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))


TORCHRUN_VARS = ("RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun sets beside WORLD_SIZE, and init_process_group reads."""


def start(device: str) -> Ranks:
    """Join the process group torchrun's environment describes (nothing to do without one).
    ``device`` (the config's: auto, cuda, cpu) picks NCCL for GPUs, gloo else."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        missing = [v for v in TORCHRUN_VARS if not os.environ.get(v)]
        if missing:
            raise UserError(
                f"WORLD_SIZE={world} is set but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: start several processes with "
                "torchrun (it sets them all), or unset WORLD_SIZE to run as one process"
            )
        gpus = device != "cpu" and torch.cuda.is_available()
        if gpus:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if gpus else "gloo", timeout=TIMEOUT)
    return ranks()


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(where: Ranks) -> None:
    if where.several:
        dist.barrier()


def shard(items: list, where: Ranks) -> list:
    """This rank's slice of one global batch: items ``rank, rank + world, ...``."""
    return items[where.rank :: where.world]


def total(values: Tensor, where: Ranks) -> Tensor:
    """``values`` summed over the ranks (every rank gets the sum)."""
    if where.several:
        values = values.clone()
        dist.all_reduce(values)
    return values


def from_main(flag: bool, where: Ranks) -> bool:
    """Rank 0's ``flag``, on every rank."""
    if not where.several:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([float(flag)], device=device)
    dist.broadcast(value, 0)
    return bool(value.item())


def share_buffers(model: torch.nn.Module, where: Ranks) -> None:
    """Copy rank 0's buffers (batch normalisation statistics, which each rank updates from its
    own share) to every rank."""
    if where.several:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def gathered(obj, where: Ranks) -> list:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not where.several:
        return [obj]
    found = [None] * where.world
    dist.all_gather_object(found, obj)
    return found


def pick_device(name: str, where: Ranks = ALONE) -> torch.device:
    """The device ``name`` (auto, cpu, cuda, cuda:N) means. Among several ranks, auto and
    cuda mean this machine's ``where.local``-th GPU."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} was asked for but no GPU is visible; use device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda:") and where.several:
        raise UserError(f"device={name} would put every process on one GPU; under torchrun "
                        "use device=cuda (each process takes its own)")  # fmt: skip
    if name == "cuda" and where.several:
        return torch.device("cuda", where.local)
    return torch.device(name)
