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
