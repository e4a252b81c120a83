"""Losses: sums over real targets with their count, equal to torch's on the unmasked part."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnkit.losses import bernoulli_nll, huber, log_loss, masked_cross_entropy, mse

MASK = torch.tensor([[True, True, False], [True, False, False]])


def test_masked_cross_entropy_sums_over_real_positions() -> None:
    logits, targets = torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    out = masked_cross_entropy(logits, targets, MASK)
    expected = F.cross_entropy(logits[MASK], targets[MASK], reduction="sum")
    torch.testing.assert_close(out.total, expected)
    assert int(out.n_targets) == 3


def test_log_loss_and_bernoulli_nll_match_torch() -> None:
    z, y = torch.randn(2, 3), torch.randint(0, 2, (2, 3)).float()
    out = log_loss(z, y, MASK)
    torch.testing.assert_close(
        out.total, F.binary_cross_entropy_with_logits(z[MASK], y[MASK], reduction="sum")
    )
    rolls_z, rolls_y = torch.randn(2, 3, 4), torch.randint(0, 2, (2, 3, 4)).float()
    out = bernoulli_nll(rolls_z, rolls_y, MASK)
    expected = F.binary_cross_entropy_with_logits(rolls_z[MASK], rolls_y[MASK], reduction="sum")
    torch.testing.assert_close(out.total, expected)
    assert int(out.n_targets) == 3  # frames, not pitches


def test_mse_and_huber_count_every_value() -> None:
    p, y = torch.randn(2, 3, 2) * 3, torch.randn(2, 3, 2)
    out = mse(p, y, MASK)
    torch.testing.assert_close(out.total, ((p[MASK] - y[MASK]) ** 2).sum())
    assert int(out.n_targets) == 6
    out = huber(p, y, MASK, delta=0.5)
    torch.testing.assert_close(
        out.total, F.huber_loss(p[MASK], y[MASK], reduction="sum", delta=0.5)
    )


def test_nan_in_padding_reaches_neither_loss_nor_gradient() -> None:
    logits = torch.randn(2, 3, 5)
    logits[~MASK] = float("nan")
    logits.requires_grad_()
    out = masked_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long), MASK)
    out.total.backward()
    assert torch.isfinite(out.total) and torch.all(logits.grad[~MASK] == 0)


def test_shape_errors_name_the_loss() -> None:
    with pytest.raises(ValueError, match="mse: predictions"):
        mse(torch.zeros(2, 3), torch.zeros(2, 2), MASK)
    with pytest.raises(ValueError, match="delta"):
        huber(torch.zeros(2, 3), torch.zeros(2, 3), MASK, delta=0.0)
