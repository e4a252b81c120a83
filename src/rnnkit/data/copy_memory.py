"""The copy-memory task, generated from a seed at any delay.

Arjovsky, Shah & Bengio (2016), after Hochreiter & Schmidhuber (1997): a sequence
starts with 10 symbols drawn from 8 categories, then ``T`` − 1 blanks, a
delimiter and 10 more blanks; the target is blank for ``T`` + 10 steps and then
the 10 symbols again. A model must carry them across ``T`` steps.

A memoryless strategy predicts blank for the first ``T`` + 10 targets (it knows
where the delimiter falls) and a uniform guess over the 8 categories for the last
10, so its mean cross-entropy per step is 10·ln 8 / (``T`` + 20): the baseline a
model must beat (``copy_memory_baseline``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

BLANK = 0
"""Symbol 0 is the blank; symbols 1–8 are the categories; 9 is the delimiter."""
DELIMITER = 9
CATEGORIES = 8
SYMBOLS = 10
"""How many symbols are memorised."""
VOCABULARY = CATEGORIES + 2
"""Input and output alphabet size: blank, 8 categories, delimiter."""


@dataclass(frozen=True)
class CopyMemoryBatch:
    """One batch of the copy-memory task with delay ``T``.

    Attributes:
        inputs: ``(B, T + 20)`` int64 symbols: 10 categories, ``T`` − 1 blanks,
            the delimiter, 10 blanks.
        targets: ``(B, T + 20)`` int64: ``T`` + 10 blanks, then the 10 categories.
    """

    inputs: Tensor
    targets: Tensor


def copy_memory(batch: int, steps: int, seed: int = 0) -> CopyMemoryBatch:
    """A reproducible batch of the copy-memory task with a delay of ``steps`` ≥ 1."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected a positive int, got {batch!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int ≥ 1, got {steps!r}")
    generator = torch.Generator().manual_seed(seed)
    symbols = torch.randint(1, CATEGORIES + 1, (batch, SYMBOLS), generator=generator)  # (B, 10)
    length = steps + 2 * SYMBOLS
    inputs = torch.full((batch, length), BLANK, dtype=torch.int64)  # (B, T + 20)
    inputs[:, :SYMBOLS] = symbols
    inputs[:, steps + SYMBOLS - 1] = DELIMITER
    targets = torch.full((batch, length), BLANK, dtype=torch.int64)  # (B, T + 20)
    targets[:, -SYMBOLS:] = symbols
    return CopyMemoryBatch(inputs, targets)


def copy_memory_baseline(steps: int) -> float:
    """The memoryless cross-entropy per step (nats), 10·ln 8 / (``steps`` + 20)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int ≥ 1, got {steps!r}")
    return SYMBOLS * math.log(CATEGORIES) / (steps + 2 * SYMBOLS)
