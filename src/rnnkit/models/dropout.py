"""Dropout around a text classifier's parts: on its words, its embeddings, its pooled vector.

From scratch on a few thousand short texts a classifier overfits within epochs; these
three, with weight decay, are what hold it back (:func:`regularised`). Each is the
identity in eval mode, so evaluation and prediction see the plain model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.models.classifier import SequenceClassifier


class WordDropout(nn.Module):
    """In training, replace each real token id by ``unk_id`` with probability ``p``
    (Iyyer et al. 2015's word dropout; ``pad_id`` is never replaced)."""

    def __init__(self, p: float, *, pad_id: int, unk_id: int) -> None:
        super().__init__()
        self.p, self.pad_id, self.unk_id = p, pad_id, unk_id

    def forward(self, ids: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return ids
        drop = (torch.rand(ids.shape, device=ids.device) < self.p) & (ids != self.pad_id)
        return ids.masked_fill(drop, self.unk_id)


class PooledDropout(nn.Module):
    """Dropout after a pooling: on the pooled vector, before the output layer."""

    def __init__(self, inner: nn.Module, p: float) -> None:
        super().__init__()
        self.inner = inner
        self.dropout = nn.Dropout(p)

    def forward(self, outputs: Tensor, final: Tensor, mask: Tensor) -> Tensor:
        pooled: Tensor = self.dropout(self.inner(outputs, final, mask))  # (B, F)
        return pooled


def regularised(model: SequenceClassifier, *, word: float, embed: float, pooled: float,
                pad_id: int, unk_id: int) -> SequenceClassifier:  # fmt: skip
    """``model`` with dropout around its parts: words → embedding → units, and the pooled
    vector. Only the input layer and the pooling are wrapped, so the weights keep their
    names under ``inputs.1`` (the embedding) and ``pooling.inner``."""
    model.inputs = nn.Sequential(WordDropout(word, pad_id=pad_id, unk_id=unk_id), model.inputs,
                                 nn.Dropout(embed))  # fmt: skip
    model.pooling = PooledDropout(model.pooling, pooled)
    return model


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, the same at every step (Gal & Ghahramani 2016).

    In training, ``x (B, T, F)`` is multiplied by ``m / (1 − p)`` with ``m (B, 1, F)``
    drawn once per call: each row drops the same features at every step ("variational"
    dropout), which an RNN's weights shared over time can learn around far less than
    fresh noise per step. The identity in eval mode and at p = 0.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - self.p)  # (B, 1, F)
        return x * keep / (1.0 - self.p)


def embedding_dropout(
    weight: Tensor, ids: Tensor, p: float, training: bool, padding_idx: int | None = None
) -> Tensor:
    """Embeddings of ``ids`` with whole words dropped (Gal & Ghahramani 2016; AWD-LSTM).

    In training each row of E (a word type) is zeroed with probability p and the kept
    rows are scaled by 1/(1 − p), one draw per call: every occurrence of a dropped word
    in the batch reads zeros. ``weight (V, E)``, ``ids (B, T)`` → ``(B, T, E)``;
    ``padding_idx``'s row gets no gradient, as in ``nn.Embedding``.
    """
    if training and p > 0.0:
        keep = weight.new_empty(weight.shape[0], 1).bernoulli_(1.0 - p)  # (V, 1)
        weight = weight * keep / (1.0 - p)
    return torch.nn.functional.embedding(ids, weight, padding_idx)
