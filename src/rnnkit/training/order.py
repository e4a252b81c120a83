"""Which examples each process reads, batch by batch, in each epoch.

The order is a function of (seed, epoch) only: epoch e shuffles the dataset with a
generator seeded from the seed and e (as DistributedSampler's ``set_epoch``), so
no generator state needs saving, and a resumed run skips the batches it already
used by arithmetic, without loading them.

Sharding keeps N processes with batch b equal to one process with batch N·b:
global batch k is the permutation's items [k·N·b, (k+1)·N·b), and process r takes
every N-th of them starting at r (DistributedSampler's interleaving, applied per
global batch and without padding). The last global batch of an epoch may hold
fewer than N items; a process left without one gets a stand-in item marked
``weight = 0``: it runs forward and backward like the others (DDP needs every
process in every reduction) but adds nothing to the loss or the token count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shard:
    """One process's micro-batch: dataset indices and whether it counts."""

    indices: list[int]
    weight: float  # 1.0, or 0.0 for a stand-in that contributes nothing


class EpochOrder:
    """Micro-batches of one process, per epoch."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if size < 1:
            raise ValueError("the training data is empty: expected at least one example")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected ≥ 1, got {batch_size}")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        """Micro-batches per epoch (the same on every process)."""
        per_step = self.batch_size * self.world_size
        return -(-self.size // per_step)

    def permutation(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def batches(self, epoch: int, start: int = 0) -> Iterator[Shard]:
        """This process's micro-batches of ``epoch``, from micro-batch ``start`` on."""
        order = self.permutation(epoch)
        per_step = self.batch_size * self.world_size
        for k in range(start, len(self)):
            chunk = order[k * per_step : (k + 1) * per_step]
            mine = chunk[self.rank :: self.world_size]
            if mine:
                yield Shard(mine, 1.0)
            else:
                yield Shard(chunk[:1], 0.0)
