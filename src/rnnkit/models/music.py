"""Polyphonic music: a piano roll predicted frame by frame with multi-label Bernoulli outputs.

Each frame x_t ∈ {0, 1}^P marks the pitches sounding in one time slice. The model
reads frames and predicts every pitch of the next frame independently given the
past (Boulanger-Lewandowski et al. 2012; Chung et al. 2014's JSB experiments):

    (o_t, s_t) = RNN(W_in·x_t, s_{t−1}),   P(x_{t+1, p} = 1 | x_≤t) = σ(V·o_t + c)_p

and the loss is the Bernoulli negative log-likelihood summed over pitches, counted
per frame (:func:`rnnkit.losses.bernoulli_nll`), the "NLL per frame" of those papers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.configuration import MAX_LAYERS, check_dropout, check_positive_ints, check_sizes
from rnnkit.losses import LossSum, bernoulli_nll
from rnnkit.recurrent import Recurrent, Regularisers
from rnnkit.stepping import Stepper, cached_stepper, stepping
from rnnkit.unrolling import length_mask


@dataclass(frozen=True)
class MusicConfig(Regularisers):
    """Attributes: ``pitches`` P per frame; the recurrent stack's settings, and its
    regularisers (:class:`~rnnkit.recurrent.Regularisers`, keyword-only)."""

    pitches: int = 53
    embed: int = 64
    hidden: int = 128
    layers: int = 1
    cell: str = "gru"
    dropout: float = 0.0
    backend: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "pitches")
        check_sizes(self, "embed", "hidden")
        check_sizes(self, "layers", at_most=MAX_LAYERS)
        check_dropout(self.dropout)


@dataclass(frozen=True)
class RollBatch:
    """``rolls`` ``(B, T, P)`` in {0, 1}; ``lengths`` ``(B,)`` frames per piece."""

    rolls: Tensor
    lengths: Tensor


def to_roll(frames: Sequence[Sequence[int]], low: int, high: int) -> Tensor:
    """``(T + 1, P)`` 0/1 frames of the pitches ``low … high``: a silent start frame (so
    that every real frame is predicted, and generation can start from silence), then
    ``frames``, each a list of MIDI pitches."""
    roll = torch.zeros(len(frames) + 1, high - low + 1)
    for t, frame in enumerate(frames, start=1):
        roll[t, [p - low for p in frame]] = 1.0
    return roll


def from_roll(roll: Tensor, low: int) -> list[list[int]]:
    """The MIDI pitches of each frame of a ``(T, P)`` 0/1 roll whose pitch 0 is ``low``."""
    return [[low + int(i) for i in torch.nonzero(frame).flatten()] for frame in roll]


def key_frequencies(frames: Tensor, smoothing: float) -> Tensor:
    """The per-key baseline, fitted: ``(P,)`` each pitch's share of the frames ``(N, P)``,
    add-k (Laplace) smoothed, (n_p + k) / (N + 2k).

    The baseline models every pitch of every frame as an independent Bernoulli with
    that probability, ignoring the past: what the model must beat.
    """
    return (frames.sum(0) + smoothing) / (frames.shape[0] + 2 * smoothing)


def baseline_nll(frames: Tensor, frequencies: Tensor) -> float:
    """The per-key baseline's NLL of the frames ``(N, P)`` (nats): Σ over frames and
    pitches of −log P(x) under independent Bernoullis of ``frequencies`` ``(P,)``."""
    x, p = frames.double(), frequencies.double()
    return float(-(x * p.log() + (1 - x) * (1 - p).log()).sum())


class PianoRollModel(nn.Module):
    """Frame projection → :class:`~rnnkit.Recurrent` → per-pitch logits of the next frame."""

    def __init__(self, config: MusicConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.inputs = nn.Linear(c.pitches, c.embed)
        self.rnn = Recurrent(c.cell, c.embed, c.hidden, num_layers=c.layers, dropout=c.dropout,
                             backend=c.backend,
                             **c.regularisers())  # fmt: skip
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden, c.pitches)

    def logits(
        self, rolls: Tensor, state: Any = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Any]:
        o, final = self.rnn(self.inputs(rolls), state, lengths)
        return self.out(self.drop(o)), final  # (B, T, P)

    def next_frames(self, batch: RollBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Each frame's logits of the frame after it: ``(logits (B, T−1, P), the frames
        they predict (B, T−1, P), mask (B, T−1))``, the mask true on real frames."""
        frames = batch.rolls.to(self.inputs.weight.dtype)
        lengths = batch.lengths - 1  # frame t predicts frame t + 1
        logits, _ = self.logits(frames[:, :-1], None, lengths)
        return logits, frames[:, 1:], length_mask(lengths, frames.shape[1] - 1).to(logits.device)

    def forward(self, batch: RollBatch, state: None = None) -> tuple[LossSum, None]:
        """The Bernoulli NLL summed over pitches and frames, counted per frame; whole
        pieces carry no state from batch to batch."""
        logits, targets, mask = self.next_frames(batch)
        return bernoulli_nll(logits, targets, mask), None

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

    @torch.no_grad()  # on a generator: no gradients inside each step, none leaked outside
    def sample(self, prime: Tensor, *, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Iterator[Tensor]:  # fmt: skip
        """Frames ``(B, P)`` in {0, 1} after the piano rolls ``prime`` ``(B, P0, P)``, one
        at a time for as long as they are asked for, the state carried.

        Every pitch of a new frame is a Bernoulli draw from σ(logit / temperature). The
        model should be in eval mode (:meth:`generate` puts it there).
        """
        logits, state = self.logits(prime.to(self.inputs.weight.dtype))
        last = logits[:, -1]  # (B, P)
        while True:
            frame = torch.bernoulli(torch.sigmoid(last / temperature), generator=generator)
            yield frame
            last, state = self.decode_step(frame, state)

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
            frames = self.sample(prime, temperature=temperature, generator=generator)
            return torch.stack([next(frames) for _ in range(steps)], dim=1)
        finally:
            self.train(was_training)
