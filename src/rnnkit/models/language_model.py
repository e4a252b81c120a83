"""Language model (many-to-many, next step): embedding → recurrent → softmax over the vocabulary.

    e_t = E[x_t],   (o_t, s_t) = RNN(e_t, s_{t−1}),   P(x_{t+1} | x_≤t) = softmax(V·o_t + c)

With ``tie_weights`` the output matrix V is the embedding E itself (Press & Wolf
2017; Inan et al. 2017); when the hidden size differs from the embedding size a
linear projection maps o_t to the embedding size first.

One protocol trains it, ``forward(batch, state) -> (LossSum, final state)``: the
state comes in (None: the initial state) and the final state goes out, so the
same module trains on padded sentences (state None, ``lengths`` given), on a long
text cut into consecutive chunks (the Trainer carries each row's state from chunk
to chunk) and by TBPTT(k1, k2) within a chunk (the Trainer cuts a
:class:`TextBatch` in time with :meth:`TextBatch.steps`).

Generation goes through :mod:`rnnkit.decoding` (``decode_step``/``reorder_state``);
in eval mode without gradients a step runs the stack through
:class:`~rnnkit.stepping.Stepper` (every layer in one call, weights packed once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.configuration import (
    MAX_LAYERS,
    check_dropout,
    check_positive_ints,
    check_range,
    check_sizes,
)
from rnnkit.losses import LossSum, masked_cross_entropy
from rnnkit.models.dropout import LockedDropout, embedding_dropout
from rnnkit.recurrent import Recurrent, Regularisers
from rnnkit.state import map_state
from rnnkit.stepping import Stepper, cached_stepper, stepping
from rnnkit.unrolling import length_mask

# AR/TAR coefficients beyond this only swamp the cross-entropy (AWD-LSTM uses 2 and 1).
MAX_PENALTY = 1e3


@dataclass(frozen=True)
class LanguageModelConfig(Regularisers):
    """A recurrent language model.

    Attributes:
        vocab_size: tokens (characters or words), padding included.
        embed: embedding size.
        hidden, layers, cell, dropout, backend: the recurrent stack.
        tie_weights: share the embedding matrix with the output layer.
        pad_id: the padding id (never a target).
        embed_dropout: in training, drop whole words: rows of E zeroed with this
            probability, once per batch (AWD-LSTM's ``dropoute``).
        input_dropout, output_dropout: locked dropout (one mask per sequence, the same
            at every step) on the embeddings and on the last layer's outputs
            (AWD-LSTM's ``dropouti`` and ``dropout``); on top of ``dropout``'s.
        ar, tar: activation regularisation α·mean(m ⊙ h_t)² on the dropped last-layer
            outputs and temporal activation regularisation β·mean(h_t − h_{t−1})² on
            the raw ones (Merity et al. 2017), added to the training loss per target;
            0 for none. Evaluation reports the cross-entropy alone.
        adaptive_cutoffs: an adaptive softmax (Grave et al. 2017;
            ``nn.AdaptiveLogSoftmaxWithLoss``, ``div_value`` 4) with these cutoffs,
            e.g. ``(2000, 10000)``: the most frequent ids (the vocabulary sorts by
            frequency) in the head, the rarer ones in smaller tail clusters. Empty
            (the default): the full softmax. The adaptive softmax is a normalised
            distribution over every token, so its loss is an exact perplexity.
        locked_dropout, weight_drop, zoneout: the stack's regularisers
            (:class:`~rnnkit.recurrent.Regularisers`), keyword-only.
    """

    vocab_size: int
    embed: int = 128
    hidden: int = 256
    layers: int = 2
    cell: str = "lstm"
    dropout: float = 0.0
    tie_weights: bool = False
    pad_id: int = 0
    backend: str = "auto"
    embed_dropout: float = 0.0
    input_dropout: float = 0.0
    output_dropout: float = 0.0
    ar: float = 0.0
    tar: float = 0.0
    adaptive_cutoffs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "vocab_size")
        check_sizes(self, "embed", "hidden")
        check_sizes(self, "layers", at_most=MAX_LAYERS)
        check_dropout(self.dropout)
        for name in ("embed_dropout", "input_dropout", "output_dropout"):
            check_range(self, name, 0.0, 1.0, open_high=True)
        check_range(self, "ar", 0.0, MAX_PENALTY)
        check_range(self, "tar", 0.0, MAX_PENALTY)
        cutoffs = self.adaptive_cutoffs
        if not isinstance(cutoffs, tuple) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in cutoffs
        ):
            raise ValueError(f"adaptive_cutoffs: expected a tuple of ints, got {cutoffs!r}")
        if cutoffs and (list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] < 1):
            raise ValueError(f"adaptive_cutoffs: expected increasing ids ≥ 1, got {cutoffs!r}")
        if cutoffs and self.tie_weights:
            raise ValueError("adaptive_cutoffs: the adaptive softmax cannot tie its weights "
                             "to the embedding; drop tie_weights")  # fmt: skip


@dataclass(frozen=True)
class TextBatch:
    """Inputs and next-token targets, ``(B, T)`` each.

    Attributes:
        inputs, targets: token ids; ``targets[:, t]`` follows ``inputs[:, t]``.
        lengths: ``(B,)`` real steps of padded rows; None: every row is T steps long
            (a stream's chunk), and the stack runs without masking.
        loss_from: targets before this step do not count (the history a TBPTT
            window re-reads); 0: all count.
    """

    inputs: Tensor
    targets: Tensor
    lengths: Tensor | None = None
    loss_from: int = 0

    @property
    def num_steps(self) -> int:
        """T, the steps of the batch."""
        return int(self.inputs.shape[1])

    @property
    def mask(self) -> Tensor:
        """``(B, T)`` bool: the targets that count."""
        B, T = self.inputs.shape
        real = (torch.ones(B, T, dtype=torch.bool, device=self.inputs.device)
                if self.lengths is None else length_mask(self.lengths, T))  # fmt: skip
        real[:, : self.loss_from] = False
        return real

    def steps(self, start: int, stop: int, loss_from: int) -> TextBatch:
        """Steps ``start … stop − 1``, the targets before step ``loss_from`` not counted:
        a window of TBPTT, which cuts full-length rows only."""
        if self.lengths is not None:
            raise ValueError("TextBatch.steps: padded rows cannot be cut in time (TBPTT "
                             "trains a stream's full-length chunks)")  # fmt: skip
        inputs, targets = self.inputs[:, start:stop], self.targets[:, start:stop]
        return TextBatch(inputs, targets, None, max(0, max(loss_from, self.loss_from) - start))


class LanguageModel(nn.Module):
    """Embedding → :class:`~rnnkit.Recurrent` → dropout → (projection) → logits."""

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed, padding_idx=c.pad_id)
        self.rnn = Recurrent(c.cell, c.embed, c.hidden, num_layers=c.layers, dropout=c.dropout,
                             backend=c.backend,
                             **c.regularisers())  # fmt: skip
        self.drop = nn.Dropout(c.dropout)
        self.locked_input = LockedDropout(c.input_dropout)
        self.locked_output = LockedDropout(c.output_dropout)
        width = c.hidden
        self.project: nn.Module = nn.Identity()
        if c.tie_weights and c.hidden != c.embed:
            self.project = nn.Linear(c.hidden, c.embed)
            width = c.embed
        self.out: nn.Module = nn.Linear(width, c.vocab_size)
        if c.adaptive_cutoffs:
            # Checked here, not in the config: a task learns vocab_size from its data.
            if c.adaptive_cutoffs[-1] >= c.vocab_size:
                raise ValueError(
                    f"adaptive_cutoffs: expected every cutoff below the vocabulary's "
                    f"{c.vocab_size:,} tokens, got {c.adaptive_cutoffs!r}"
                )
            self.out = nn.AdaptiveLogSoftmaxWithLoss(
                width, c.vocab_size, list(c.adaptive_cutoffs), div_value=4.0
            )
        if c.tie_weights:
            self.out.weight = self.embedding.weight  # V = E

    def logits(
        self, inputs: Tensor, state: Any = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Any]:
        """``(logits (B, T, V), final state)`` for token ids ``(B, T)``."""
        logits, final, _, _ = self._run(inputs, state, lengths)
        return logits, final

    def _run(
        self, inputs: Tensor, state: Any, lengths: Tensor | None
    ) -> tuple[Tensor, Any, Tensor, Tensor]:
        """(logits, final state, last-layer outputs raw and dropped, ``(B, T, H)``)."""
        final, o, dropped = self._features(inputs, state, lengths)
        return self._scores(self.project(dropped)), final, o, dropped

    def _features(
        self, inputs: Tensor, state: Any, lengths: Tensor | None
    ) -> tuple[Any, Tensor, Tensor]:
        """(final state, the last layer's outputs raw and after dropout, ``(B, T, H)``)."""
        c = self.config
        weight = self.embedding.weight
        e = embedding_dropout(weight, inputs, c.embed_dropout, self.training, c.pad_id)  # (B, T, E)
        o, final = self.rnn(self.locked_input(self.drop(e)), state, lengths)  # (B, T, H)
        return final, o, self.locked_output(self.drop(o))

    def _scores(self, x: Tensor) -> Tensor:
        """Logits ``(..., V)`` of features ``(..., W)``: the adaptive softmax's
        log-probabilities (valid logits: softmax of them is the distribution)."""
        if isinstance(self.out, nn.AdaptiveLogSoftmaxWithLoss):
            flat = self.out.log_prob(x.reshape(-1, x.shape[-1]))  # (N, V)
            return flat.view(*x.shape[:-1], flat.shape[-1])
        scores: Tensor = self.out(x)
        return scores

    def forward(self, batch: TextBatch, state: Any = None) -> tuple[LossSum, Any]:
        """The cross-entropy summed over the counted targets, and the final state.

        ``state``: the state before step 0 (None: the initial state). The loss reads
        the outputs from ``batch.loss_from`` on; the ones before only carry the state.
        """
        t0 = batch.loss_from  # sliced off, not masked: a stream's mask stays all true
        mask = batch.mask[:, t0:]  # (B, T')
        if isinstance(self.out, nn.AdaptiveLogSoftmaxWithLoss):
            final, raw, dropped, loss = self._adaptive(batch, state, mask)
        else:
            logits, final, raw, dropped = self._run(batch.inputs, state, batch.lengths)
            loss = masked_cross_entropy(logits[:, t0:], batch.targets[:, t0:], mask)
        if self.training and (self.config.ar or self.config.tar):
            loss = LossSum(
                loss.total + loss.n_targets * self._penalty(raw[:, t0:], dropped[:, t0:], mask),
                loss.n_targets,
            )
        return loss, final

    def _adaptive(
        self, batch: TextBatch, state: Any, mask: Tensor
    ) -> tuple[Any, Tensor, Tensor, LossSum]:
        """The adaptive softmax's summed NLL of the counted targets, without the full
        ``(B, T, V)`` scores: each target's log-probability from its own cluster."""
        assert isinstance(self.out, nn.AdaptiveLogSoftmaxWithLoss)
        final, o, dropped = self._features(batch.inputs, state, batch.lengths)  # (B, T, H)
        t0 = batch.loss_from
        features = self.project(dropped)[:, t0:][mask]  # (N, W)
        picked = self.out(features, batch.targets[:, t0:][mask]).output  # (N,) log p
        return final, o, dropped, LossSum(-picked.sum(), mask.sum())

    def _penalty(self, raw: Tensor, dropped: Tensor, mask: Tensor) -> Tensor:
        """α·mean(dropped²) + β·mean((h_t − h_{t−1})²) over the counted steps (AR, TAR).

        Added per target (the loss is divided by their count), as AWD-LSTM adds them to
        its mean loss."""
        c = self.config
        real = mask[:, :, None].to(raw.dtype)  # (B, T, 1)
        units = raw.shape[-1]
        penalty = raw.new_zeros(())
        if c.ar:
            penalty = penalty + c.ar * (dropped.square() * real).sum() / (real.sum() * units)
        if c.tar and raw.shape[1] > 1:
            both = real[:, 1:] * real[:, :-1]  # (B, T − 1, 1): steps with a predecessor
            step = (raw[:, 1:] - raw[:, :-1]).square() * both
            penalty = penalty + c.tar * step.sum() / (both.sum().clamp(min=1.0) * units)
        return penalty

    # ----------------------------------------------------------------- generation

    def prime(self, prompt: Tensor) -> tuple[Tensor, Any]:
        """Read a prompt ``(B, P)``, P ≥ 1: (its last token ``(B,)``, the state before it).

        Decoding then starts from the last prompt token, so its first sampled token
        is conditioned on the whole prompt. In eval mode without gradients the prompt
        is read one token at a time through the stack's
        :class:`~rnnkit.stepping.Stepper`, the path generation then takes (a prompt
        is short next to what a generation writes, and a sequence runner's first
        call pays for set-up a few steps do not); otherwise through :meth:`logits`.
        """
        if prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ValueError(
                f"prompt: expected (B, P) token ids with P ≥ 1, got {tuple(prompt.shape)}"
            )
        sequence = not stepping(self)
        if prompt.shape[1] > 1 and sequence:
            _, state = self.logits(prompt[:, :-1])
            return prompt[:, -1], state
        state = self.rnn.initial_state(prompt.shape[0], device=prompt.device,
                                       dtype=self.embedding.weight.dtype)  # fmt: skip
        if prompt.shape[1] > 1:
            stepper = cached_stepper(self, lambda: Stepper.from_recurrent(self.rnn))
            embedded = F.embedding(prompt[:, :-1], self.embedding.weight)  # (B, P − 1, E)
            for t in range(embedded.shape[1]):
                _, state = stepper.step(embedded[:, t], state)
        return prompt[:, -1], state

    def decode_step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One step: tokens ``(B,)`` and a state with fields ``(L, B, H)`` →
        ``(logits (B, V), new state)``.

        In eval mode without gradients (as :mod:`rnnkit.decoding` runs) the stack
        steps through its :class:`~rnnkit.stepping.Stepper`; otherwise (dropout,
        autograd) through :meth:`logits` at T = 1. Both compute the same numbers.
        """
        if not stepping(self):
            logits, state = self.logits(tokens[:, None], state)  # (B, 1, V)
            return logits[:, 0], state
        stepper = cached_stepper(self, lambda: Stepper.from_recurrent(self.rnn))
        e = F.embedding(tokens, self.embedding.weight)  # (B, E)
        o, state = stepper.step(e, state)  # (B, H)
        return self._scores(self.project(o)), state

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        return map_state(lambda field: field.index_select(1, index), state)  # batch is dim 1
