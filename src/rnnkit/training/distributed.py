"""Several processes (torchrun), and what the Trainer needs to stay exact across them.

Under ``torchrun`` every process sees ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
:func:`setup` then joins the process group (gloo on the CPU, nccl on CUDA) and
picks this process's device. Without them it is a world of one and every
collective below is the identity, so the Trainer has one code path.

The collectives are sums of a few numbers per optimizer step (the target-token
count of the accumulation window, the loss for logging), which is what keeps the
loss normalisation exact: DistributedDataParallel averages gradients over the
processes, and the Trainer rescales them by world_size / (all tokens of the window
on all processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one training run."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the only process that logs and saves."""
        return self.rank == 0


def world_size() -> int:
    """Processes training together (torchrun's ``WORLD_SIZE``; 1 alone), known before
    :func:`setup` joins them: a task sizes its streams by it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "auto") -> World:
    """Join the torchrun process group if there is one; choose this process's device.

    ``device``: ``auto`` (CUDA if available, one GPU per local rank, else CPU),
    ``cpu``, ``cuda`` or ``cuda:N``.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    cuda = torch.cuda.is_available()
    if chosen.type == "cuda" and not cuda:
        raise ValueError("device: cuda was asked for but torch sees no CUDA device")
    if chosen.type == "cuda":
        if ":" not in device:  # one GPU per local process
            chosen = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(chosen)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return World(rank=rank, local_rank=local_rank, size=size, device=chosen)


def all_sum(world: World, values: list[float]) -> list[float]:
    """Elementwise sum over all processes (float64, so token counts stay exact)."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_comm_device(world))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.cpu()]


def gather_objects(world: World, value: Any) -> list[Any]:
    """Every process's ``value``, in rank order, on every process."""
    if not world.distributed:
        return [value]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def broadcast_object(world: World, value: Any) -> Any:
    """Rank 0's ``value`` on every process."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _comm_device(world: World) -> torch.device:
    # nccl reduces CUDA tensors only; gloo CPU tensors.
    return world.device if world.device.type == "cuda" else torch.device("cpu")
