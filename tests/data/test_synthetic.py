"""The adding problem generator."""

from __future__ import annotations

import pytest
import torch

from rnnkit.data.synthetic import adding_problem


def test_adding_problem_marks_one_step_in_each_half_and_sums_them() -> None:
    data = adding_problem(64, 50, seed=3)
    assert data.inputs.shape == (64, 50, 2) and data.targets.shape == (64,)
    markers = data.inputs[:, :, 1]
    assert torch.equal(markers.sum(1), torch.full((64,), 2.0))
    assert torch.equal(markers[:, :25].sum(1), torch.ones(64))
    expected = (data.inputs[:, :, 0] * markers).sum(1)
    torch.testing.assert_close(data.targets, expected)
    assert ((data.inputs[:, :, 0] >= 0) & (data.inputs[:, :, 0] < 1)).all()


def test_adding_problem_is_reproducible_from_its_seed() -> None:
    a, b, c = adding_problem(4, 10, seed=1), adding_problem(4, 10, seed=1), adding_problem(4, 10, 2)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)


def test_adding_problem_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError, match="steps: expected an int ≥ 2, got 1"):
        adding_problem(2, 1)
    with pytest.raises(ValueError, match="batch: expected a positive int, got 0"):
        adding_problem(0, 5)
