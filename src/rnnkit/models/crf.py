r"""A linear-chain conditional random field over C tags, for sequence tagging.

Notation (per row of a batch; rows are independent):
    e_t(j)   emission score of tag j at step t, from the network, ``(B, T, C)``
    A_ij     transition score from tag i (at t−1) to tag j (at t), ``transitions (C, C)``
    s_j, f_j start and end scores of tag j, ``start (C,)`` and ``end (C,)``
    n        the row's length (its mask is true on steps 0 … n−1 and false after)

The score of a tag path y = (y_0 … y_{n−1}) is

    S(y) = s_{y_0} + Σ_{t=0}^{n−1} e_t(y_t) + Σ_{t=1}^{n−1} A_{y_{t−1} y_t} + f_{y_{n−1}}

and the model's distribution is p(y) = exp S(y) / Z with Z = Σ_{y'} exp S(y') over
all C^n paths. The forward algorithm computes log Z in O(n·C²):

    α_0(j) = s_j + e_0(j)
    α_t(j) = logsumexp_i(α_{t−1}(i) + A_ij) + e_t(j)          t = 1 … n−1
    log Z  = logsumexp_j(α_{n−1}(j) + f_j)

and Viterbi replaces logsumexp by max, keeping the arg max as back-pointers:

    δ_0(j) = s_j + e_0(j)
    δ_t(j) = max_i(δ_{t−1}(i) + A_ij) + e_t(j),   ψ_t(j) = argmax_i(δ_{t−1}(i) + A_ij)
    y*_{n−1} = argmax_j(δ_{n−1}(j) + f_j),       y*_{t−1} = ψ_t(y*_t)

Ragged batches: a step past a row's end leaves α (or δ) unchanged, and the
emissions there are replaced by zeros before any arithmetic, so whatever the
padded positions hold affects neither the results nor any gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.losses import LossSum


class CRF(nn.Module):
    """Linear-chain CRF with learned ``transitions (C, C)`` (row i → column j),
    ``start (C,)`` and ``end (C,)`` scores; the emissions come from outside.

    Every method takes ``emissions (B, T, C)`` float and ``mask (B, T)`` bool; each
    row of the mask is a prefix of trues with at least one true (the row's length n).

    Args:
        num_tags: C.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"num_tags: expected a positive int, got {num_tags!r}")
        self.num_tags = num_tags
        # Zeros: before training every transition is equally plausible, so the CRF
        # starts out decoding exactly as the per-token arg max of the emissions.
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log Z per row by the forward algorithm (module docstring): ``(B,)``."""
        emissions = self._checked(emissions, mask)
        alpha = self.start + emissions[:, 0]  # (B, C)
        for t in range(1, emissions.shape[1]):
            # (B, C, 1) + (C, C) → logsumexp over the previous tag i
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1)  # (B, C)
            alpha = torch.where(mask[:, t, None], step + emissions[:, t], alpha)  # (B, C)
        return torch.logsumexp(alpha + self.end, dim=1)  # (B,)

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """S(y) of the path ``tags (B, T)`` int64 (any values past each row's end): ``(B,)``."""
        emissions = self._checked(emissions, mask)
        if tags.shape != mask.shape:
            raise ValueError(
                f"tags: expected shape {tuple(mask.shape)} like the mask, got {tuple(tags.shape)}"
            )
        tags = tags.masked_fill(~mask, 0)  # padded values may be anything, even −100
        weights = mask.to(emissions.dtype)  # (B, T)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        moved = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T−1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return (
            self.start[tags[:, 0]]
            + (emitted * weights).sum(1)
            + (moved * weights[:, 1:]).sum(1)
            + self.end[last]
        )  # (B,)

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> LossSum:
        """Negative log-likelihood Σ_rows (log Z − S(y)), summed over the sequences.

        ``n_targets`` is the number of real tokens, not of sequences: the Trainer
        divides the summed loss by it, so it reports (and optimises) the NLL per
        token, comparable with a per-token cross-entropy and independent of how
        long the sentences of a batch happen to be.
        """
        total = (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).sum()
        return LossSum(total, mask.sum())

    def viterbi(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The best path of each row and its score S(y*) (module docstring).

        Returns:
            ``tags (B, T)`` int64, 0 past each row's end, and ``scores (B,)``.
        """
        emissions = self._checked(emissions, mask)
        batch, steps, _ = emissions.shape
        # Past a row's end the back-pointer is the identity, so backtracking from the
        # last step carries the row's final tag unchanged down to its real last step.
        identity = torch.arange(self.num_tags, device=emissions.device).expand(batch, -1)
        delta = self.start + emissions[:, 0]  # (B, C)
        pointers = []
        for t in range(1, steps):
            best, previous = (delta.unsqueeze(2) + self.transitions).max(dim=1)  # (B, C) each
            delta = torch.where(mask[:, t, None], best + emissions[:, t], delta)
            pointers.append(torch.where(mask[:, t, None], previous, identity))  # (B, C)
        scores, current = (delta + self.end).max(dim=1)  # (B,) each
        path = [current]
        for pointer in reversed(pointers):
            current = pointer.gather(1, current.unsqueeze(1)).squeeze(1)  # (B,)
            path.append(current)
        tags = torch.stack(path[::-1], dim=1)  # (B, T)
        return tags.masked_fill(~mask, 0), scores

    def _checked(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Validate shapes and return the emissions with zeros past each row's end."""
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            raise ValueError(
                f"emissions: expected shape (B, T, {self.num_tags}), got {tuple(emissions.shape)}"
            )
        if mask.dtype != torch.bool or mask.shape != emissions.shape[:2]:
            raise ValueError(
                f"mask: expected a bool tensor of shape {tuple(emissions.shape[:2])}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        if emissions.shape[1] < 1 or not bool(mask[:, 0].all()):
            raise ValueError("mask: expected every row to start with a true step (length ≥ 1)")
        if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError("mask: expected each row to be trues then falses (a length prefix)")
        # masked_fill, not a product: a NaN or inf in padding must not reach the sums.
        return emissions.masked_fill(~mask.unsqueeze(2), 0.0)  # (B, T, C)
