"""Polyphonic music: a piano roll predicted frame by frame with multi-label Bernoulli outputs.

Each frame x_t ∈ {0, 1}^P marks the pitches sounding in one time slice. The model
reads frames and predicts every pitch of the next frame independently given the
past (Boulanger-Lewandowski et al. 2012; Chung et al. 2014's JSB experiments):

    (o_t, s_t) = RNN(W_in·x_t, s_{t−1}),   P(x_{t+1, p} = 1 | x_≤t) = σ(V·o_t + c)_p

and the loss is the Bernoulli negative log-likelihood summed over pitches, counted
per frame (:func:`rnnkit.losses.bernoulli_nll`), the "NLL per frame" of those papers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.configuration import MAX_LAYERS, check_dropout, check_positive_ints, check_sizes
from rnnkit.losses import LossSum, bernoulli_nll
from rnnkit.recurrent import Recurrent
from rnnkit.stepping import Stepper, cached_stepper, stepping
from rnnkit.unrolling import length_mask


@dataclass(frozen=True)
class MusicConfig:
    """Attributes: ``pitches`` P per frame; the recurrent stack's settings."""

    pitches: int = 53
    embed: int = 64
    hidden: int = 128
    layers: int = 1
    cell: str = "gru"
    dropout: float = 0.0
    backend: str = "auto"

    def __post_init__(self) -> None:
        check_positive_ints(self, "pitches")
        check_sizes(self, "embed", "hidden")
        check_sizes(self, "layers", at_most=MAX_LAYERS)
        check_dropout(self.dropout)


@dataclass(frozen=True)
class RollBatch:
    """``rolls`` ``(B, T, P)`` in {0, 1}; ``lengths`` ``(B,)`` frames per piece."""

    rolls: Tensor
    lengths: Tensor


class PianoRollModel(nn.Module):
    """Frame projection → :class:`~rnnkit.Recurrent` → per-pitch logits of the next frame."""

    def __init__(self, config: MusicConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.inputs = nn.Linear(c.pitches, c.embed)
        self.rnn = Recurrent(c.cell, c.embed, c.hidden, num_layers=c.layers, dropout=c.dropout,
                             backend=c.backend)  # fmt: skip
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden, c.pitches)

    def logits(
        self, rolls: Tensor, state: Any = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Any]:
        o, final = self.rnn(self.inputs(rolls), state, lengths)
        return self.out(self.drop(o)), final  # (B, T, P)

    def forward(self, batch: RollBatch) -> LossSum:
        frames = batch.rolls.to(self.inputs.weight.dtype)
        lengths = batch.lengths - 1  # frame t predicts frame t + 1
        logits, _ = self.logits(frames[:, :-1], None, lengths)
        mask = length_mask(lengths, frames.shape[1] - 1)  # (B, T−1)
        return bernoulli_nll(logits, frames[:, 1:], mask)

    def decode_step(self, frames: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One step: frames ``(B, P)`` and a state with fields ``(L, B, H)`` →
        ``(logits of the next frame (B, P), new state)``.

        In eval mode without gradients the stack steps through its
        :class:`~rnnkit.stepping.Stepper`; otherwise (dropout, autograd) through
        :meth:`logits` at T = 1. Both compute the same numbers.
        """
        if not stepping(self):
            logits, state = self.logits(frames[:, None], state)  # (B, 1, P)
            return logits[:, 0], state
        stepper = cached_stepper(self, lambda: Stepper.from_recurrent(self.rnn))
        o, state = stepper.step(self.inputs(frames), state)  # (B, H)
        return self.out(o), state

    @torch.no_grad()
    def generate(
        self,
        prime: Tensor,
        steps: int,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue piano rolls ``prime`` ``(B, P0, P)`` by ``steps`` sampled frames.

        Every pitch of a new frame is a Bernoulli draw from σ(logit / temperature).
        Returns the generated frames only, ``(B, steps, P)`` in {0, 1}.
        """
        if not temperature > 0:
            raise ValueError(f"temperature: expected > 0, got {temperature}")
        if steps < 1:
            raise ValueError(f"steps: expected ≥ 1, got {steps}")
        was_training = self.training
        self.eval()
        try:
            frames = prime.to(self.inputs.weight.dtype)
            logits, state = self.logits(frames)
            last = logits[:, -1]  # (B, P)
            out = []
            for _ in range(steps):
                p = torch.sigmoid(last / temperature)  # (B, P)
                frame = torch.bernoulli(p, generator=generator)
                out.append(frame)
                last, state = self.decode_step(frame, state)
            return torch.stack(out, dim=1)
        finally:
            self.train(was_training)
