"""What a trainable model returns: the summed loss and the number of targets it sums.

Every loss in rnnkit is a **sum** over the real (unpadded) targets of a batch,
returned with the count of those targets. The Trainer adds both up over an
accumulation window (and over processes) and divides once, so the loss it
optimises is the mean over every real target of the window, whatever the batch
sizes and sequence lengths: k micro-batches of b then give the same gradient as
one batch of k·b.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class LossSum(NamedTuple):
    """``total``: the loss summed over the batch's targets (a scalar tensor with
    grad); ``n_targets``: how many targets that sum covers (tokens, frames, examples)."""

    total: Tensor
    n_targets: Tensor


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor) -> LossSum:
    """Softmax cross-entropy summed over the positions where ``mask`` is true.

    Args:
        logits: ``(..., C)`` unnormalised scores.
        targets: ``(...)`` class indices (any value where the mask is false).
        mask: ``(...)`` bool, true at real targets.
    """
    if logits.shape[:-1] != targets.shape or targets.shape != mask.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and mask "
            f"{tuple(mask.shape)}: expected (..., C), (...) and (...)"
        )
    flat = logits.reshape(-1, logits.shape[-1])  # (B·T, C)
    picked = targets.reshape(-1)  # (B·T,)
    if not bool(mask.all()):
        # Gathered, not ignored: a NaN in a padded position's logits must not reach
        # the gradient. With every position real (an LM's chunks), no copy is made.
        flat, picked = flat[mask.reshape(-1)], picked[mask.reshape(-1)]  # (N, C), (N,)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # bf16/fp16 logits: sum the loss in float32
    total = F.cross_entropy(flat, picked, reduction="sum")
    return LossSum(total, mask.sum())


def _check_same(name: str, a: Tensor, b: Tensor, mask: Tensor) -> None:
    if a.shape != b.shape or mask.shape != a.shape[: mask.dim()]:
        raise ValueError(
            f"{name}: predictions {tuple(a.shape)}, targets {tuple(b.shape)} and mask "
            f"{tuple(mask.shape)}: expected equal shapes (the mask may drop trailing dims)"
        )


def _select(x: Tensor, mask: Tensor) -> Tensor:
    """The entries of ``x`` at true mask positions; trailing dims kept: (N, ...)."""
    return x[mask]


def log_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> LossSum:
    """Binary log loss −[y·log σ(z) + (1 − y)·log(1 − σ(z))], summed over masked positions.

    Args:
        logits: ``(...)`` unnormalised scores z (the sigmoid is applied here, stably).
        targets: ``(...)`` in {0, 1} (or soft labels in [0, 1]).
        mask: ``(...)`` bool, true at real targets.
    """
    _check_same("log_loss", logits, targets, mask)
    z, y = _select(logits, mask), _select(targets, mask).to(logits.dtype)
    total = F.binary_cross_entropy_with_logits(_upcast(z), _upcast(y), reduction="sum")
    return LossSum(total, mask.sum())


def bernoulli_nll(logits: Tensor, targets: Tensor, mask: Tensor) -> LossSum:
    """Multi-label Bernoulli NLL: Σ over the units of each masked frame, counted per frame.

    For piano rolls: ``logits``/``targets`` ``(B, T, P)`` (P pitches, targets in {0, 1}),
    ``mask`` ``(B, T)``; ``n_targets`` counts frames, so the Trainer reports NLL per
    frame, the figure music papers quote.
    """
    _check_same("bernoulli_nll", logits, targets, mask)
    z, y = _select(logits, mask), _select(targets, mask).to(logits.dtype)  # (N, P)
    total = F.binary_cross_entropy_with_logits(_upcast(z), _upcast(y), reduction="sum")
    return LossSum(total, mask.sum())


def mse(predictions: Tensor, targets: Tensor, mask: Tensor) -> LossSum:
    """Squared error Σ (ŷ − y)² over masked positions (every trailing element counts)."""
    _check_same("mse", predictions, targets, mask)
    p, y = _select(predictions, mask), _select(targets, mask)
    total = ((_upcast(p) - _upcast(y)) ** 2).sum()
    return LossSum(total, torch.tensor(p.numel(), device=p.device))


def huber(predictions: Tensor, targets: Tensor, mask: Tensor, delta: float = 1.0) -> LossSum:
    """Huber loss (quadratic within ``delta``, linear beyond) summed over masked positions."""
    _check_same("huber", predictions, targets, mask)
    if not delta > 0:
        raise ValueError(f"delta: expected > 0, got {delta}")
    p, y = _select(predictions, mask), _select(targets, mask)
    total = F.huber_loss(_upcast(p), _upcast(y), reduction="sum", delta=delta)
    return LossSum(total, torch.tensor(p.numel(), device=p.device))


def _upcast(x: Tensor) -> Tensor:
    # bf16/fp16 activations: sum the loss in float32.
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
