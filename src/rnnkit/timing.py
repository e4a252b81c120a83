"""Timing that survives a shared, noisy machine: interleaved repeats, min and median.

Candidates run round-robin (A B C, A B C, …) rather than one after another, so a
slow patch of the machine hits every candidate alike and their *ratios* stay
meaningful even when absolute times drift.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one candidate over the interleaved repeats."""

    samples: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Call every candidate ``warmup`` times, then ``repeats`` rounds of one call each.

    ``clock`` reads the time (seconds); tests pass a fake one.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats}")
    for _ in range(warmup):
        for run in candidates.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            start = clock()
            run()
            samples[name].append(clock() - start)
    return {name: Timing(tuple(values)) for name, values in samples.items()}


def training_step(module: nn.Module, inputs: Tensor) -> Callable[[], None]:
    """One training step's worth of work: forward, a loss over all outputs, backward.

    Works for rnnkit's ``Recurrent`` and torch.nn's RNN modules alike, since both
    return ``(outputs, final_state)``.
    """

    def step() -> None:
        for parameter in module.parameters():
            parameter.grad = None
        outputs = module(inputs)[0]  # (B, T, D·H)
        outputs.square().mean().backward()

    return step
