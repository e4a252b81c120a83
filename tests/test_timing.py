"""Interleaved timing: round-robin order, warm-up excluded, min and median right."""

from __future__ import annotations

import pytest
import torch

from rnnkit import Recurrent
from rnnkit.timing import Timing, time_interleaved, training_step


def test_candidates_run_round_robin_after_warm_up() -> None:
    calls: list[str] = []
    timings = time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=2
    )
    assert calls == ["a", "b"] * 5  # 2 warm-up rounds, then 3 timed rounds, interleaved
    assert set(timings) == {"a", "b"}
    assert all(len(t.samples) == 3 for t in timings.values())


def test_min_and_median() -> None:
    timing = Timing((3.0, 1.0, 2.0, 10.0))
    assert timing.min == 1.0
    assert timing.median == 2.5
    with pytest.raises(ValueError, match="repeats: expected a positive int, got 0"):
        time_interleaved({"a": lambda: None}, repeats=0)


def test_training_step_fills_every_gradient_and_resets_between_calls() -> None:
    torch.manual_seed(0)
    for module in (torch.nn.GRU(3, 4, batch_first=True), Recurrent("gru", 3, 4)):
        step = training_step(module, torch.randn(2, 5, 3))
        step()
        first = [p.grad.clone() for p in module.parameters() if p.grad is not None]
        assert len(first) == 4
        step()  # gradients are replaced, not accumulated
        for before, p in zip(first, module.parameters(), strict=True):
            torch.testing.assert_close(p.grad, before)
