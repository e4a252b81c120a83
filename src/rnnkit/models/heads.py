"""Output heads: ŷ = g(V·h + c) for one vector per sequence, with their loss and prediction.

Each head is the seeds' output map V, c (``self.out``) followed by g, paired with
the loss that g implies:

==============  =========================  ===============================
head            g and prediction           loss (summed, with the count)
==============  =========================  ===============================
BinaryHead      σ: P(y = 1)  ``(B,)``      log loss
ClassHead       softmax: P(y)  ``(B, C)``  softmax cross-entropy
RegressionHead  identity: ŷ  ``(B, K)``    MSE or Huber over K outputs
==============  =========================  ===============================

A regression head with K = horizon × series predicts several future steps at once
(direct multi-step forecasting).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from rnnkit.losses import LossSum, huber, log_loss, masked_cross_entropy, mse


class BinaryHead(nn.Module):
    """One logit per sequence; targets ``(B,)`` in {0, 1}."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out = nn.Linear(features, 1)

    def logits(self, pooled: Tensor) -> Tensor:
        z: Tensor = self.out(pooled)
        return z.squeeze(-1)  # (B,)

    def loss(self, pooled: Tensor, targets: Tensor) -> LossSum:
        z = self.logits(pooled)
        return log_loss(z, targets.to(z.dtype), torch.ones_like(z, dtype=torch.bool))

    def predict(self, pooled: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(pooled))  # (B,) P(y = 1)


class ClassHead(nn.Module):
    """C logits per sequence; targets ``(B,)`` class indices."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes: expected ≥ 2, got {num_classes}")
        self.out = nn.Linear(features, num_classes)

    def logits(self, pooled: Tensor) -> Tensor:
        z: Tensor = self.out(pooled)
        return z  # (B, C)

    def loss(self, pooled: Tensor, targets: Tensor) -> LossSum:
        z = self.logits(pooled)
        return masked_cross_entropy(z, targets, torch.ones_like(targets, dtype=torch.bool))

    def predict(self, pooled: Tensor) -> Tensor:
        return torch.softmax(self.logits(pooled), dim=-1)  # (B, C)


class RegressionHead(nn.Module):
    """K real outputs per sequence; targets ``(B, K)``."""

    def __init__(
        self, features: int, outputs: int, loss: Literal["mse", "huber"] = "mse", delta: float = 1.0
    ) -> None:
        super().__init__()
        if outputs < 1:
            raise ValueError(f"outputs: expected ≥ 1, got {outputs}")
        if loss not in ("mse", "huber"):
            raise ValueError(f"loss: expected 'mse' or 'huber', got {loss!r}")
        self.out = nn.Linear(features, outputs)
        self.kind = loss
        self.delta = delta

    def loss(self, pooled: Tensor, targets: Tensor) -> LossSum:
        y_hat = self.predict(pooled)
        targets = targets.reshape(y_hat.shape).to(y_hat.dtype)
        mask = torch.ones(y_hat.shape[0], dtype=torch.bool, device=y_hat.device)
        if self.kind == "huber":
            return huber(y_hat, targets, mask, self.delta)
        return mse(y_hat, targets, mask)

    def predict(self, pooled: Tensor) -> Tensor:
        y_hat: Tensor = self.out(pooled)
        return y_hat  # (B, K)


Head = BinaryHead | ClassHead | RegressionHead
