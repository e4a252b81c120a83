"""Pooling: one vector per sequence from a recurrent encoder's outputs (many-to-one).

Every pooling takes the encoder outputs ``(B, T, F)``, the final hidden state of the
last layer ``(B, F)`` (directions concatenated) and the mask of real steps
``(B, T)``, and returns ``(B, F)``. Padded steps never contribute: their outputs
may be anything (they are masked before any reduction).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LastPooling(nn.Module):
    """The state after each sequence's last real step: the classic many-to-one read-out.

    For a bidirectional encoder this is [→h at the last step, ←h at the first step],
    the final states of both directions.
    """

    def forward(self, outputs: Tensor, final: Tensor, mask: Tensor) -> Tensor:
        return final  # (B, F)


class MeanPooling(nn.Module):
    """The mean of the outputs over real steps: Σ_t m_t·o_t / Σ_t m_t."""

    def forward(self, outputs: Tensor, final: Tensor, mask: Tensor) -> Tensor:
        weights = mask.to(outputs.dtype).unsqueeze(-1)  # (B, T, 1)
        return (outputs * weights).sum(1) / weights.sum(1)  # (B, F)


class MaxPooling(nn.Module):
    """The elementwise maximum of the outputs over real steps."""

    def forward(self, outputs: Tensor, final: Tensor, mask: Tensor) -> Tensor:
        hidden = outputs.masked_fill(~mask.unsqueeze(-1), float("-inf"))  # (B, T, F)
        return hidden.max(dim=1).values  # (B, F)


class AttentionPooling(nn.Module):
    """Additive attention with a learned query (Bahdanau-style, as in attentive pooling).

        s_t = vᵀ tanh(W·o_t + b),   α = softmax over real steps of s,   pooled = Σ_t α_t·o_t

    Parameters: ``proj`` (W, b) ``(A, F)``, ``score`` (v) ``(1, A)``.
    """

    def __init__(self, features: int, attention_size: int = 64) -> None:
        super().__init__()
        self.proj = nn.Linear(features, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def weights(self, outputs: Tensor, mask: Tensor) -> Tensor:
        """α ``(B, T)``: sums to 1 over real steps, exactly 0 on padding."""
        scores = self.score(torch.tanh(self.proj(outputs))).squeeze(-1)  # (B, T)
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)

    def forward(self, outputs: Tensor, final: Tensor, mask: Tensor) -> Tensor:
        # Zero the padded outputs too: 0·NaN would still be NaN.
        clean = outputs.masked_fill(~mask.unsqueeze(-1), 0.0)  # (B, T, F)
        return torch.einsum("bt,btf->bf", self.weights(clean, mask), clean)  # (B, F)
