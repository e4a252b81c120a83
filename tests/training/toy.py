"""A small tagger and ragged data for the Trainer's tests (importable by subprocess scripts)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit import Recurrent
from rnnkit.losses import LossSum, masked_cross_entropy

VOCAB, TAGS = 11, 4


@dataclass(frozen=True)
class Batch:
    tokens: Tensor  # (B, T) int64, 0 = padding
    tags: Tensor  # (B, T) int64
    mask: Tensor  # (B, T) bool
    lengths: Tensor  # (B,) int64
    poison: Tensor  # (B,) bool: a NaN is injected into this example's loss


class Tagger(nn.Module):
    """Embedding → GRU → dropout → linear, per-step softmax cross-entropy."""

    def __init__(self, dropout: float = 0.0, hidden: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 6)
        self.rnn = Recurrent("gru", 6, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, TAGS)

    def forward(self, batch: Batch, state: None = None) -> tuple[LossSum, None]:
        x = self.embed(batch.tokens)  # (B, T, E)
        h, _ = self.rnn(x, lengths=batch.lengths)  # (B, T, H)
        logits = self.out(self.drop(h))  # (B, T, C)
        loss = masked_cross_entropy(logits, batch.tags, batch.mask)
        if bool(batch.poison.any()):
            loss = LossSum(loss.total * float("nan"), loss.n_targets)
        return loss, None


def examples(n: int, seed: int = 0, poison: frozenset[int] = frozenset()) -> list[dict]:
    """n sequences of lengths 1–9; the tag is a function of the token and its neighbour."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for i in range(n):
        length = int(torch.randint(1, 10, (), generator=g))
        tokens = torch.randint(1, VOCAB, (length,), generator=g)
        tags = (tokens + torch.roll(tokens, 1)) % TAGS
        data.append({"tokens": tokens, "tags": tags, "poison": i in poison})
    return data


def collate(items: list[dict]) -> Batch:
    lengths = torch.tensor([len(item["tokens"]) for item in items])
    steps = int(lengths.max())
    tokens = torch.zeros(len(items), steps, dtype=torch.long)
    tags = torch.zeros(len(items), steps, dtype=torch.long)
    for row, item in enumerate(items):
        tokens[row, : len(item["tokens"])] = item["tokens"]
        tags[row, : len(item["tags"])] = item["tags"]
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    poison = torch.tensor([bool(item["poison"]) for item in items])
    return Batch(tokens, tags, mask, lengths, poison)


def weights_of(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
