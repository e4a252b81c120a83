"""Attention over a sequence of keys: one query in, a context vector and weights out.

Every scorer here has the same face::

    context, weights = attention(query, keys, mask)

    query    (B, Hq)     what is looking (a decoder state)
    keys     (B, S, Hk)  what is looked at (encoder outputs), also the values
    mask     (B, S)      bool, true at real positions, false at padding
    context  (B, Hk)     c = Σ_s α_s · k_s
    weights  (B, S)      α = softmax over the real positions of the scores e_s

The scorers differ only in the score e_s = score(q, k_s):

* :class:`AdditiveAttention` (Bahdanau et al. 2015): e_s = vᵀ tanh(W_q q + W_k k_s + b);
* :class:`DotAttention` (Luong et al. 2015): e_s = qᵀ k_s, no parameters, Hq = Hk;
* :class:`GeneralAttention` (Luong et al. 2015): e_s = qᵀ W k_s, W ``(Hq, Hk)``.

Padding: scores at masked positions are replaced by −∞ before the softmax, so
their weights are exactly 0 and neither the context nor any gradient depends on
the keys there. Every row must have at least one real position (a row of only
padding has no distribution to take; its weights would be NaN). The scorers do
not check this, because checking a tensor's values would synchronise a GPU on
every decoder step; models check their lengths once per batch instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis, restricted to the positions where ``mask`` is true.

    α_s = exp(e_s) / Σ_{s' real} exp(e_{s'}) at real positions, exactly 0 elsewhere.

    Args:
        scores: ``(B, S)`` e_s.
        mask: ``(B, S)`` bool; every row has at least one true entry.

    Returns:
        ``(B, S)`` weights, each row summing to 1.
    """
    # −∞ rather than a large negative number: exp(−∞) is exactly 0, and masked_fill's
    # backward gives the masked scores a zero gradient whatever their value was.
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (B, S)


def attend(scores: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Weights α = masked softmax of ``scores`` and the context c = Σ_s α_s k_s.

    Args:
        scores: ``(B, S)``; keys: ``(B, S, Hk)``; mask: ``(B, S)`` bool.

    Returns:
        ``(context (B, Hk), weights (B, S))``.
    """
    weights = masked_softmax(scores, mask)  # (B, S)
    context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)  # (B, Hk)
    return context, weights


class AdditiveAttention(nn.Module):
    """Bahdanau (additive, "concat") attention.

    e_s = vᵀ tanh(W_q q + W_k k_s + b), α = softmax(e) over real positions,
    c = Σ_s α_s k_s.

    Parameters:
        query_map: W_q, ``Linear(Hq, A, bias=False)``.
        key_map: W_k and b, ``Linear(Hk, A)``.
        score: vᵀ, ``Linear(A, 1, bias=False)``.

    Args:
        query_size: Hq.
        key_size: Hk.
        attention_size: A, the width of the hidden layer of the scorer; Hq when None.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        size = query_size if attention_size is None else attention_size
        _check_sizes(query_size=query_size, key_size=key_size, attention_size=size)
        self.query_size = query_size
        self.key_size = key_size
        self.query_map = nn.Linear(query_size, size, bias=False)  # W_q
        self.key_map = nn.Linear(key_size, size)  # W_k, b
        self.score = nn.Linear(size, 1, bias=False)  # vᵀ

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(query (B, Hq), keys (B, S, Hk), mask (B, S))`` → ``(context (B, Hk), weights (B, S))``."""
        _check_inputs(self, query, keys, mask)
        hidden = torch.tanh(self.query_map(query).unsqueeze(1) + self.key_map(keys))  # (B, S, A)
        scores = self.score(hidden).squeeze(2)  # (B, S)
        return attend(scores, keys, mask)


class DotAttention(nn.Module):
    """Luong dot attention: e_s = qᵀ k_s, α = softmax(e) over real positions, c = Σ_s α_s k_s.

    No parameters; the query and the keys must have the same size (Hq = Hk).

    Args:
        query_size: Hq.
        key_size: Hk, equal to Hq.
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        _check_sizes(query_size=query_size, key_size=key_size)
        if query_size != key_size:
            raise ValueError(
                f"DotAttention: expected query_size == key_size (qᵀk needs one size), "
                f"got {query_size} and {key_size}"
            )
        self.query_size = query_size
        self.key_size = key_size

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(query (B, H), keys (B, S, H), mask (B, S))`` → ``(context (B, H), weights (B, S))``."""
        _check_inputs(self, query, keys, mask)
        scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)  # (B, S)
        return attend(scores, keys, mask)


class GeneralAttention(nn.Module):
    """Luong general (bilinear) attention: e_s = qᵀ W k_s, then as :class:`DotAttention`.

    Parameters:
        weight: W, ``(Hq, Hk)``, initialised uniform in ±1/√Hk like a ``Linear``.

    Args:
        query_size: Hq.
        key_size: Hk.
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        _check_sizes(query_size=query_size, key_size=key_size)
        self.query_size = query_size
        self.key_size = key_size
        # Stored as Linear(Hq → Hk, no bias) so that qᵀW is one call: weight is Wᵀ (Hk, Hq).
        self.bilinear = nn.Linear(query_size, key_size, bias=False)

    @property
    def weight(self) -> Tensor:
        """W ``(Hq, Hk)``."""
        return self.bilinear.weight.t()

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(query (B, Hq), keys (B, S, Hk), mask (B, S))`` → ``(context (B, Hk), weights (B, S))``."""
        _check_inputs(self, query, keys, mask)
        projected = self.bilinear(query)  # (B, Hk): qᵀ W
        scores = torch.bmm(keys, projected.unsqueeze(2)).squeeze(2)  # (B, S)
        return attend(scores, keys, mask)


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


def _check_inputs(
    module: AdditiveAttention | DotAttention | GeneralAttention,
    query: Tensor,
    keys: Tensor,
    mask: Tensor,
) -> None:
    """Shapes and dtypes only: reading values would synchronise a GPU on every step."""
    name = type(module).__name__
    hq, hk = module.query_size, module.key_size
    if query.dim() != 2 or query.shape[1] != hq:
        raise ValueError(f"{name}: expected query of shape (B, {hq}), got {tuple(query.shape)}")
    batch = query.shape[0]
    if keys.dim() != 3 or keys.shape[0] != batch or keys.shape[2] != hk:
        raise ValueError(
            f"{name}: expected keys of shape ({batch}, S, {hk}), got {tuple(keys.shape)}"
        )
    if mask.dtype != torch.bool or mask.shape != keys.shape[:2]:
        raise ValueError(
            f"{name}: expected a bool mask of shape {tuple(keys.shape[:2])}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )


__all__ = [
    "AdditiveAttention",
    "DotAttention",
    "GeneralAttention",
    "attend",
    "masked_softmax",
]
