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
    flat = logits.reshape(-1, logits.shape[-1])[mask.reshape(-1)]  # (N, C) real positions only
    picked = targets.reshape(-1)[mask.reshape(-1)]  # (N,)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # bf16/fp16 logits: sum the loss in float32
    total = F.cross_entropy(flat, picked, reduction="sum")
    return LossSum(total, mask.sum())
