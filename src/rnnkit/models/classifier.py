"""Many-to-one: one prediction per sequence (sentiment, spam, forecasting, classification).

    x_1 … x_T ──encoder──▶ o_1 … o_T, h_T ──pooling──▶ p ──head──▶ ŷ = g(V·p + c)

The model is composed from its parts (an input layer, a :class:`~rnnkit.Recurrent`
encoder, a pooling and a head); :func:`rnnkit.models.build_model` is the one place
that maps configuration names to those parts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from rnnkit.cells import GATED_CELL_NAMES
from rnnkit.configuration import (
    MAX_LAYERS,
    check_dropout,
    check_positive_ints,
    check_range,
    check_sizes,
)
from rnnkit.losses import LossSum
from rnnkit.models.heads import Head
from rnnkit.recurrent import Recurrent, Regularisers
from rnnkit.unrolling import length_mask

MAX_GATE_BIAS = 100.0  # see ClassifierConfig.gate_bias
# Each head's losses, its default first.
Loss = Literal["cross_entropy", "log_loss", "mse", "huber"]
HEAD_LOSSES: dict[str, tuple[Loss, ...]] = {"multiclass": ("cross_entropy",),
                                           "binary": ("log_loss",),
                                           "regression": ("mse", "huber")}  # fmt: skip


@dataclass(frozen=True)
class ClassifierConfig(Regularisers):
    """A many-to-one model.

    Attributes:
        vocab_size: token inputs through an embedding of size ``embed``; ``None``
            for real-valued inputs of ``input_size`` features per step.
        input_size: features per step when ``vocab_size`` is None.
        embed: embedding size for token inputs (at most 2^16).
        hidden, layers, cell, bidirectional, dropout, backend: the encoder
            (:class:`~rnnkit.Recurrent`); ``hidden`` at most 2^16, ``layers`` at
            most 64 (:data:`rnnkit.configuration.MAX_LAYERS`).
        pooling: ``last`` (final state), ``mean``, ``max`` or ``attention``.
        head: ``binary`` (σ + log loss), ``multiclass`` (softmax + cross-entropy) or
            ``regression`` (linear + ``loss``).
        num_classes: classes of a ``multiclass`` head.
        outputs: values of a ``regression`` head (the forecast horizon × series).
        loss: the loss the head trains with: ``cross_entropy`` for ``multiclass``,
            ``log_loss`` for ``binary`` (each head has one), ``mse`` or ``huber`` for
            ``regression``; None: the head's own (``mse`` for regression). The tasks
            resolve it (:meth:`resolved`), so a saved configuration names the loss
            that was used.
        pad_id: the padding token id (its embedding row stays zero).
        gate_bias: added at initialisation to the LSTM's forget-gate bias or the
            GRU's update-gate bias (:func:`rnnkit.cells.init.gate_bias_`; Keras'
            ``unit_forget_bias`` is 1), so the cell starts out remembering; the tanh
            RNN has no gate, and a non-zero value for it is refused. Finite, within
            ±100: σ(±20) is already 0 or 1 in float32.
        locked_dropout, weight_drop, zoneout: the stack's regularisers
            (:class:`~rnnkit.recurrent.Regularisers`), keyword-only.
    """

    vocab_size: int | None = None
    input_size: int | None = None
    embed: int = 64
    hidden: int = 128
    layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = False
    dropout: float = 0.0
    pooling: Literal["last", "mean", "max", "attention"] = "last"
    head: Literal["binary", "multiclass", "regression"] = "multiclass"
    num_classes: int = 2
    outputs: int = 1
    loss: Loss | None = None
    pad_id: int = 0
    backend: str = "auto"
    gate_bias: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gate_bias != 0 and self.cell not in GATED_CELL_NAMES:
            raise ValueError(
                f"gate_bias: only the gated cells ({', '.join(GATED_CELL_NAMES)}) have a gate "
                f"to bias, got cell "
                f"{self.cell!r} (set gate_bias = 0)"
            )
        if (self.vocab_size is None) == (self.input_size is None):
            raise ValueError(
                "vocab_size, input_size: expected exactly one (tokens or real-valued features)"
            )
        allowed = HEAD_LOSSES[self.head]
        if self.loss is not None and self.loss not in allowed:
            raise ValueError(f"loss: a {self.head} head trains with {' or '.join(allowed)}, "
                             f"got {self.loss!r}")  # fmt: skip
        check_positive_ints(self, "vocab_size", "input_size", "num_classes", "outputs")
        check_sizes(self, "embed", "hidden")
        check_sizes(self, "layers", at_most=MAX_LAYERS)
        # σ(±20) is already 0 or 1 in float32: a larger bias only saturates the gate.
        check_range(self, "gate_bias", -MAX_GATE_BIAS, MAX_GATE_BIAS)
        check_dropout(self.dropout)

    def resolved(self) -> ClassifierConfig:
        """This configuration with ``loss`` set to the one its head trains with."""
        return self if self.loss is not None else replace(self, loss=HEAD_LOSSES[self.head][0])


@dataclass(frozen=True)
class SequenceBatch:
    """Sequences and one target each.

    Attributes:
        inputs: ``(B, T)`` token ids, or ``(B, T, F)`` real-valued features.
        lengths: ``(B,)`` real steps per row (the rest is padding).
        targets: ``(B,)`` class ids / 0–1 labels, or ``(B, K)`` regression values.
    """

    inputs: Tensor
    lengths: Tensor
    targets: Tensor

    @property
    def mask(self) -> Tensor:
        return length_mask(self.lengths, self.inputs.shape[1])


class SequenceClassifier(nn.Module):
    """Input layer → recurrent encoder → pooling → head."""

    def __init__(
        self, inputs: nn.Module, encoder: Recurrent, pooling: nn.Module, head: Head
    ) -> None:
        super().__init__()
        self.inputs = inputs
        self.encoder = encoder
        self.pooling = pooling
        self.head = head

    def encode(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(outputs ``(B, T, D·H)``, final state of the last layer ``(B, D·H)``, mask)."""
        mask = length_mask(lengths, inputs.shape[1])  # (B, T)
        outputs, state = self.encoder(self.inputs(inputs), lengths=lengths)
        directions = self.encoder.num_directions
        h = state.h[-directions:]  # (D, B, H): the last layer's directions
        final = h.transpose(0, 1).reshape(h.shape[1], -1)  # (B, D·H)
        return outputs, final, mask.to(outputs.device)

    def pooled(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        outputs, final, mask = self.encode(inputs, lengths)
        return self.pooling(outputs, final, mask)  # type: ignore[no-any-return]

    def forward(self, batch: SequenceBatch, state: None = None) -> tuple[LossSum, None]:
        """The head's loss summed over the batch; a classifier carries no state."""
        return self.head.loss(self.pooled(batch.inputs, batch.lengths), batch.targets), None

    @torch.no_grad()
    def predict(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """The head's prediction: P(y = 1) ``(B,)``, P(y) ``(B, C)`` or ŷ ``(B, K)``."""
        was_training = self.training
        self.eval()
        try:
            return self.head.predict(self.pooled(inputs, lengths))
        finally:
            self.train(was_training)

    def probabilities(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """P(class) ``(B, C)`` from a binary (σ, C = 2) or multiclass (softmax) head."""
        probs = self.predict(inputs, lengths).float()
        if probs.dim() == 1:  # binary head: P(y = 1)
            probs = torch.stack([1.0 - probs, probs], dim=-1)
        return probs
