"""Synthetic long-range tasks generated from a seed: the adding problem.

The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le, Jaitly &
Hinton 2015) needs memory across the whole sequence: each step carries a random
value in [0, 1) and a marker; exactly two steps are marked, one in each half, and
the target is the sum of the two marked values. Predicting the constant 1 gives
an MSE of 1/6 ≈ 0.167, the baseline a model must beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class AddingBatch:
    """One batch of the adding problem.

    Attributes:
        inputs: ``(B, T, 2)``: channel 0 the values, channel 1 the two markers.
        targets: ``(B,)``, the sum of the two marked values.
    """

    inputs: Tensor
    targets: Tensor


def adding_problem(
    batch: int, steps: int, seed: int = 0, dtype: torch.dtype = torch.float32
) -> AddingBatch:
    """A reproducible batch of the adding problem with ``steps`` ≥ 2 steps."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected a positive int, got {batch!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps: expected an int ≥ 2, got {steps!r}")
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(batch, steps, generator=generator, dtype=dtype)  # (B, T)
    half = steps // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, steps, (batch,), generator=generator)
    markers = torch.zeros(batch, steps, dtype=dtype)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]  # (B,)
    return AddingBatch(torch.stack([values, markers], dim=2), targets)
