"""One-to-many: a sequence generated from one input vector or label (the captioning pattern).

A condition c (a feature vector, or a label through an embedding) enters in one or
both of the ways captioning models use (Vinyals et al. 2015 set the initial state;
Karpathy's "multimodal RNN" adds it at every step):

    s_0 = tanh(W_init·c + b)                  (condition_state)
    x̃_t = [E[y_{t−1}]; W_in·c]                (condition_input)
    (o_t, s_t) = RNN(x̃_t, s_{t−1}),   P(y_t | y_<t, c) = softmax(V·o_t + b_out)

Training is teacher-forced on ``BOS y_1 … y_n EOS``, on the Trainer's protocol
``model(batch, state) -> (LossSum, None)`` (no state is carried between batches);
generation runs through :mod:`rnnkit.decoding` from :meth:`ConditionedGenerator.start`,
each step through the stack's :class:`~rnnkit.stepping.Stepper` (eval mode, no
gradients).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.configuration import MAX_LAYERS, check_dropout, check_positive_ints, check_sizes
from rnnkit.decoding import beam_search, stream
from rnnkit.losses import LossSum, masked_cross_entropy
from rnnkit.recurrent import Recurrent, Regularisers
from rnnkit.state import LSTMState, map_state
from rnnkit.stepping import Stepper, cached_stepper, stepping
from rnnkit.unrolling import length_mask


@dataclass(frozen=True)
class GeneratorConfig(Regularisers):
    """A conditioned sequence generator.

    Attributes:
        vocab_size: output tokens (with pad, BOS and EOS).
        condition_size: features of a real-valued condition vector, or
        num_labels: labels of a categorical condition (embedded to ``condition_embed``).
        condition_state: the condition sets the initial state.
        condition_input: the condition is appended to every step's input.
        embed, hidden, layers, cell, dropout, backend: token embedding and decoder.
        pad_id, bos_id, eos_id: special tokens.
        locked_dropout, weight_drop, zoneout: the stack's regularisers
            (:class:`~rnnkit.recurrent.Regularisers`), keyword-only.
    """

    vocab_size: int
    condition_size: int | None = None
    num_labels: int | None = None
    condition_embed: int = 32
    condition_state: bool = True
    condition_input: bool = True
    embed: int = 64
    hidden: int = 128
    layers: int = 1
    cell: str = "lstm"
    dropout: float = 0.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    backend: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.condition_size is None) == (self.num_labels is None):
            raise ValueError(
                "condition_size, num_labels: expected exactly one (a vector or a label)"
            )
        if not (self.condition_state or self.condition_input):
            raise ValueError("condition_state, condition_input: the condition must enter somewhere")
        check_positive_ints(self, "vocab_size", "condition_size", "num_labels")
        check_sizes(self, "embed", "hidden", "condition_embed")
        check_sizes(self, "layers", at_most=MAX_LAYERS)
        check_dropout(self.dropout)


@dataclass(frozen=True)
class ConditionedBatch:
    """``condition`` ``(B, F)`` float or ``(B,)`` label ids; ``tokens`` ``(B, T)`` =
    BOS … EOS then padding; ``lengths`` ``(B,)`` counts BOS and EOS."""

    condition: Tensor
    tokens: Tensor
    lengths: Tensor


class GeneratorState(NamedTuple):
    """The decoder's recurrent state (batch in dim 1) and the encoded condition ``(B, C)``."""

    rnn: Any
    condition: Tensor


class ConditionedGenerator(nn.Module):
    """Condition encoder → recurrent decoder with teacher forcing → token logits."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        if c.num_labels is not None:
            self.condition: nn.Module = nn.Embedding(c.num_labels, c.condition_embed)
        else:
            assert c.condition_size is not None
            self.condition = nn.Linear(c.condition_size, c.condition_embed)
        self.embedding = nn.Embedding(c.vocab_size, c.embed, padding_idx=c.pad_id)
        width = c.embed + (c.condition_embed if c.condition_input else 0)
        self.rnn = Recurrent(c.cell, width, c.hidden, num_layers=c.layers, dropout=c.dropout,
                             backend=c.backend,
                             **c.regularisers())  # fmt: skip
        fields = 2 if c.cell == "lstm" else 1
        self.init = (
            nn.Linear(c.condition_embed, fields * c.layers * c.hidden)
            if c.condition_state
            else None
        )
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden, c.vocab_size)

    def encode_condition(self, condition: Tensor) -> Tensor:
        encoded: Tensor = self.condition(condition)
        return torch.tanh(encoded)  # (B, C)

    def initial_state(self, cond: Tensor) -> Any:
        """s_0: from the condition, or zeros when it only enters the inputs."""
        batch = cond.shape[0]
        zeros = self.rnn.initial_state(batch, device=cond.device, dtype=cond.dtype)
        if self.init is None:
            return zeros
        c = self.config
        values = torch.tanh(self.init(cond))  # (B, fields·L·H)
        fields = values.view(batch, -1, c.layers, c.hidden).permute(1, 2, 0, 3)  # (fields, L, B, H)
        if isinstance(zeros, LSTMState):
            return LSTMState(fields[0].contiguous(), fields[1].contiguous())
        return type(zeros)(fields[0].contiguous())

    def _inputs(self, tokens: Tensor, cond: Tensor) -> Tensor:
        e: Tensor = self.drop(self.embedding(tokens))  # (B, T, E)
        if self.config.condition_input:
            e = torch.cat([e, cond[:, None, :].expand(-1, tokens.shape[1], -1)], dim=-1)
        return e  # (B, T, E + C)

    def forward(self, batch: ConditionedBatch, state: None = None) -> tuple[LossSum, None]:
        """The teacher-forced cross-entropy summed over the batch's targets (``<eos>``
        too); the generator carries no state from batch to batch."""
        cond = self.encode_condition(batch.condition)
        inputs, targets = batch.tokens[:, :-1], batch.tokens[:, 1:]  # predict y_t from y_<t
        lengths = batch.lengths - 1
        o, _ = self.rnn(self._inputs(inputs, cond), self.initial_state(cond), lengths)
        logits = self.out(self.drop(o))  # (B, T−1, V)
        mask = length_mask(lengths, targets.shape[1])  # (B, T−1)
        return masked_cross_entropy(logits, targets, mask), None

    # ----------------------------------------------------------------- scoring

    @torch.no_grad()
    def text_nll(self, batch: ConditionedBatch) -> Tensor:
        """``(B,)`` −log p(text | condition) of each row, summed over its targets
        (``<eos>`` too), float64 on the CPU.

        Scored by stepping the decoder (:meth:`decode_step`), the path generation
        takes; the sum over rows equals the teacher-forced loss of ``model(batch)``.
        """
        device = self.out.weight.device
        tokens, lengths = batch.tokens.to(device), batch.lengths.to(device)
        _, state = self.start(batch.condition.to(device))
        total = torch.zeros(tokens.shape[0], dtype=torch.float64, device=device)  # (B,)
        for t in range(1, tokens.shape[1]):
            logits, state = self.decode_step(tokens[:, t - 1], state)
            log_probs = torch.log_softmax(logits.double(), dim=-1)  # (B, V)
            picked = log_probs.gather(1, tokens[:, t, None]).squeeze(1)  # (B,)
            total -= torch.where(t < lengths, picked, torch.zeros_like(picked))
        return total.cpu()

    def label_nll(self, batch: ConditionedBatch) -> Tensor:
        """``(B, K)``: each row's text scored (:meth:`text_nll`) under every one of the
        K labels of a label-conditioned generator (the batch's own labels unused)."""
        if self.config.num_labels is None:
            raise ValueError("label_nll: a vector-conditioned generator has no labels")
        columns = []
        for label in range(self.config.num_labels):
            condition = torch.full_like(batch.condition, label)
            columns.append(self.text_nll(replace(batch, condition=condition)))
        return torch.stack(columns, dim=1)

    # ----------------------------------------------------------------- generation

    def start(self, condition: Tensor) -> tuple[Tensor, GeneratorState]:
        """BOS tokens ``(B,)`` and the initial decoding state for a batch of conditions."""
        cond = self.encode_condition(condition)
        bos = torch.full((cond.shape[0],), self.config.bos_id, dtype=torch.long, device=cond.device)
        return bos, GeneratorState(self.initial_state(cond), cond)

    def prime(self, condition: Tensor, prompt: Sequence[int]) -> tuple[Tensor, GeneratorState]:
        """:meth:`start`, then the ``prompt``'s tokens teacher-forced: its last token
        ``(B,)`` (BOS for no prompt) and the state that has read all before it."""
        last, state = self.start(condition)  # (B,) BOS
        for token in prompt:
            _, state = self.decode_step(last, state)
            last = torch.full_like(last, token)
        return last, state

    def tokens(self, condition: Tensor, prompt: Sequence[int], *, length: int, beam: int = 1,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None,
               banned: Sequence[int] = ()) -> Iterator[int]:  # fmt: skip
        """One text's tokens for one condition ``(1,)`` or ``(1, F)``, after the
        teacher-forced ``prompt``, each yielded as it is generated: at most ``length``,
        the last one EOS when the text ends, never a ``banned`` one.

        With ``beam`` > 1 the best of a beam search (:func:`rnnkit.decoding.beam_search`),
        else sampled one step at a time (:func:`rnnkit.decoding.stream`: temperature,
        top-k, top-p, seeded by ``generator``); both step through :meth:`decode_step`.
        """
        c = self.config
        with torch.no_grad():  # the stepper's path (a generator body runs outside callers')
            last, state = self.prime(condition, prompt)  # (1,), the state after the prompt
        if beam > 1:
            best = beam_search(self, last, state, max_length=length, beam_size=beam,
                               eos_id=c.eos_id, pad_id=c.pad_id, banned=banned).best  # fmt: skip
            yield from best.tokens[0, : int(best.lengths[0])].tolist()
            return
        for step in stream(self, last, state, max_length=length, temperature=temperature,
                           top_k=top_k, top_p=top_p, eos_id=c.eos_id, pad_id=c.pad_id,
                           generator=generator, banned=banned):  # fmt: skip
            yield int(step.tokens[0])

    def decode_step(self, tokens: Tensor, state: GeneratorState) -> tuple[Tensor, GeneratorState]:
        """Previous tokens ``(B,)`` → ``(logits (B, V), next state)``.

        In eval mode without gradients the stack steps through its
        :class:`~rnnkit.stepping.Stepper`; otherwise (dropout, autograd) through the
        ``Recurrent`` at T = 1. Both compute the same numbers.
        """
        if not stepping(self):
            o, rnn = self.rnn(self._inputs(tokens[:, None], state.condition), state.rnn)
            return self.out(o[:, 0]), GeneratorState(rnn, state.condition)
        stepper = cached_stepper(self, lambda: Stepper.from_recurrent(self.rnn))
        x = F.embedding(tokens, self.embedding.weight)  # (B, E)
        if self.config.condition_input:
            x = torch.cat([x, state.condition], dim=1)  # (B, E + C)
        o, rnn = stepper.step(x, state.rnn)  # (B, H)
        return self.out(o), GeneratorState(rnn, state.condition)

    def reorder_state(self, state: GeneratorState, index: Tensor) -> GeneratorState:
        rnn = map_state(lambda field: field.index_select(1, index), state.rnn)
        return GeneratorState(rnn, state.condition.index_select(0, index))
