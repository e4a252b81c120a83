"""Which examples make each optimizer step, and how a step is cut into micro-batches.

The Trainer owns batching. A task hands it a list of examples and, at most, a
length for each; :class:`Sampler` decides everything else:

1. **Global batches first.** An epoch is cut into global batches of
   ``G = batch_size · accumulate · world_size`` examples, one per optimizer step.
   With lengths, the examples are bucketed (:func:`bucket`): shuffled, sorted by
   length within chunks of ``50 · G``, cut into global batches, and the batches
   shuffled. Without lengths, the (shuffled) examples are cut in order.
2. **Then micro-batches.** A global batch is cut into ``accumulate`` consecutive
   slices of ``batch_size · world_size`` examples; process ``r`` of ``N`` takes
   every N-th example of a slice, starting at ``r`` (DistributedSampler's
   interleaving, per slice).

Because the global batches depend on G alone, ``batch_size 8, accumulate 4``,
``batch_size 32`` and 4 processes of ``batch_size 8`` see the same examples at
every step; the Trainer's division by the step's real target count then makes
their updates equal (:mod:`rnnkit.training.trainer`).

The order is a function of (seed, epoch) only, as DistributedSampler's
``set_epoch``: no generator state is saved, and a resumed run skips the steps it
already took by index. A process left without an example in a slice (the last,
short global batch) gets a stand-in marked ``weight = 0``, which runs forward and
backward like the others (DDP needs every process in every reduction) and counts
nothing.

**Continuous examples** (a language model's streams) are laid out by the task so
that global batch k holds chunk k of every stream, always in the same row order;
they are never shuffled, so micro-batch slot j of process r holds the same rows at
every step, and the Trainer carries each slot's state into the next step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

E = TypeVar("E")

# Global batches per sorted chunk: a larger multiplier pads less and shuffles less.
BUCKET_MULTIPLIER = 50


@dataclass(frozen=True)
class Shard:
    """One process's micro-batch: example indices and whether it counts."""

    indices: list[int]
    weight: float  # 1.0, or 0.0 for a stand-in that contributes nothing


@dataclass(frozen=True)
class Examples(Generic[E]):
    """What a task gives the Trainer for one split: its examples, and how they batch.

    Attributes:
        items: the examples (anything the task's ``collate`` turns into a batch).
        lengths: each example's length, to bucket by; None: no bucketing.
        continuous: the examples are streams laid out chunk by chunk (global batch k
            holds chunk k of every row, in the same row order): never shuffled, and
            the model's state is carried from each step into the next.
    """

    items: Sequence[E]
    lengths: Sequence[int] | None = None
    continuous: bool = False

    def __post_init__(self) -> None:
        if self.lengths is not None and len(self.lengths) != len(self.items):
            raise ValueError(
                f"lengths: expected one per example ({len(self.items)}), got {len(self.lengths)}"
            )

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Geometry:
    """The shape of one optimizer step: micro-batch size, micro-batches, processes.

    Attributes:
        batch_size: examples per micro-batch per process (b).
        accumulate: micro-batches per optimizer step (k).
        world_size: processes (N).
    """

    batch_size: int
    accumulate: int = 1
    world_size: int = 1

    @property
    def global_size(self) -> int:
        """Examples per optimizer step, all processes together: G = b · k · N."""
        return self.batch_size * self.accumulate * self.world_size


def bucket(
    lengths: Sequence[int],
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    multiplier: int = BUCKET_MULTIPLIER,
) -> list[list[int]]:
    """Batches of indices whose lengths are alike, so little of a batch is padding.

    The indices are shuffled (when ``shuffle``), cut into chunks of
    ``batch_size · multiplier``, each chunk sorted by length, longest first (a
    stable sort: ties keep the shuffled order), and cut into batches; then the
    batches are shuffled. Every index appears exactly once; only the last batch of
    a chunk may be short; within a batch the lengths decrease.
    """
    if batch_size < 1 or multiplier < 1:
        raise ValueError(f"batch_size, multiplier: expected ≥ 1, got {batch_size}, {multiplier}")
    n = len(lengths)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    chunk = batch_size * multiplier
    batches: list[list[int]] = []
    for start in range(0, n, chunk):
        ranked = sorted(order[start : start + chunk], key=lambda i: -lengths[i])
        batches.extend(ranked[b : b + batch_size] for b in range(0, len(ranked), batch_size))
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


class Sampler:
    """The global batches of each epoch and each process's micro-batches of them.

    Args:
        examples: the split's examples (their lengths and continuity).
        geometry: b, k and N.
        seed: seeds the order; epoch e draws from (seed, e).
        shuffle: reshuffle every epoch (False: the examples' order; continuous
            examples are never shuffled).
        rank: this process.
    """

    def __init__(
        self,
        examples: Examples[Any],
        geometry: Geometry,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
    ) -> None:
        if len(examples) < 1:
            raise ValueError("the data is empty: expected at least one example")
        self.size = len(examples)
        self.geometry = geometry
        self.lengths = examples.lengths
        self.seed = seed
        self.continuous = examples.continuous
        self.shuffle = shuffle and not examples.continuous
        self.rank = rank

    def __len__(self) -> int:
        """Optimizer steps (global batches) per epoch, the same on every process."""
        return -(-self.size // self.geometry.global_size)

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every global batch of ``epoch``, in order."""
        g = self.geometry.global_size
        # Shuffled orders come from (seed, epoch) alone, so a resumed run recomputes them.
        seed = self.seed * 1_000_003 + epoch
        if self.lengths is not None:
            return bucket(self.lengths, g, seed=seed, shuffle=self.shuffle)
        if self.shuffle:
            generator = torch.Generator().manual_seed(seed)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        return [order[start : start + g] for start in range(0, self.size, g)]

    def micro_batches(self, batch: list[int]) -> list[Shard]:
        """This process's micro-batches of one global batch, in order.

        Every process gets the same number (DDP reduces once per backward): the
        slices of ``b · N`` examples that the global batch fills, at least one.
        """
        b, n = self.geometry.batch_size, self.geometry.world_size
        slices = [batch[start : start + b * n] for start in range(0, len(batch), b * n)] or [[]]
        shards = []
        for piece in slices:
            mine = piece[self.rank :: n]
            shards.append(Shard(mine, 1.0) if mine else Shard(batch[:1], 0.0))
        return shards

    def steps(self, epoch: int, start: int = 0) -> Iterator[list[Shard]]:
        """This process's micro-batches for each step of ``epoch`` from step ``start`` on."""
        for batch in self.global_batches(epoch)[start:]:
            yield self.micro_batches(batch)
