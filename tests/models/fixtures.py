"""Readers for the small real-data files in tests/fixtures, and a one-batch overfit loop."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.losses import LossSum

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def lines(name: str) -> list[str]:
    """The lines of a fixture file without its '#' provenance header."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if not line.startswith("#")]


def reviews() -> list[tuple[str, str]]:
    """(label, text) pairs of the rotten-tomatoes sample."""
    rows = lines("models_rotten_tomatoes_sample.tsv")[1:]
    return [tuple(row.split("\t", 1)) for row in rows]  # type: ignore[misc]


def air_passengers() -> Tensor:
    return torch.tensor([float(row.split(",")[1]) for row in lines("models_airpassengers.csv")[1:]])


def chorale_roll(low: int = 36, high: int = 88) -> Tensor:
    """``(T, P)`` 0/1 piano roll of BWV 66.6 on a 16th-note grid, MIDI low … high."""
    frames = lines("models_bwv66_6_roll.txt")
    roll = torch.zeros(len(frames), high - low + 1)
    for t, frame in enumerate(frames):
        for pitch in frame.split():
            roll[t, int(pitch) - low] = 1.0
    return roll


def char_ids(
    texts: list[str], extra: tuple[str, ...] = ("<pad>", "<bos>", "<eos>")
) -> dict[str, int]:
    chars = sorted({c for text in texts for c in text})
    return {symbol: i for i, symbol in enumerate([*extra, *chars])}


def overfit(model: nn.Module, batch: object, steps: int, lr: float = 0.02) -> float:
    """Adam on one batch; returns the final loss per target.

    The learning rate decays linearly to zero and the gradient norm is clipped at 1:
    at a constant rate Adam's loss spikes now and then late in an overfit (0.25 to
    0.79 within 50 steps on the chorale), and where a spike lands depends on
    float rounding, so on the machine's kernels and thread count. Decayed, the last
    steps only refine, and the final loss is the same kind of number everywhere.
    """
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    value = float("nan")
    for _ in range(steps):
        result = model(batch)
        # (LossSum, state) on the one protocol; a bare LossSum from a model not yet on it.
        out: LossSum = result if isinstance(result, LossSum) else result[0]
        loss = out.total / out.n_targets
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        value = float(loss.detach())
    return value
