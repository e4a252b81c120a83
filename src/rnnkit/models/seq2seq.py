"""Encoder–decoder (sequence to sequence) with optional attention (Luong-style input feeding).

Encoder, over the ragged source x_1 … x_S::

    m_1 … m_S, s_enc = Recurrent(E_x[x])             memory (B, S, D·H), final state
    s_0 = bridge(s_enc)                              decoder initial state, per layer

Decoder, one step per target position (y_0 = BOS; h̃_0 = 0)::

    u_t = [E_y[y_{t−1}] ; h̃_{t−1}]                   input feeding          (B, E + H)
    q_t, s_t = cells(u_t, s_{t−1})                   L cells, q_t the top h (B, H)
    c_t, α_t = attention(q_t, m, source mask)        context, weights       (B, D·H), (B, S)
    h̃_t = tanh(W_c [q_t ; c_t] + b_c)               attentional state      (B, H)
    logits_t = W_o h̃_t + b_o                        next-token scores      (B, V)

This is Luong et al. (2015)'s layout: the step runs first, the top hidden state
q_t queries the memory, and h̃_t is fed into the next step's input so the decoder
knows what it attended to. Any scorer of :mod:`rnnkit.models.attention` plugs in
as ``attention``; Bahdanau's additive score then reads the current q_t rather than
s_{t−1}, which keeps one step order for every scorer. Without attention the
input is E_y[y_{t−1}] alone and h̃_t = q_t.

Bridge: a unidirectional encoder's final state of layer l initialises decoder
layer l as it is (same cell, same H). A bidirectional encoder has two final
states per layer; they are joined by a learned linear bridge per state field
(h, and c for the LSTM), shared by the layers:
s_0^l.f = tanh(W_f [→f^l ; ←f^l] + b_f), with W_f ``(H, 2H)``.

Training (:meth:`Seq2Seq.forward`, the Trainer's ``model(batch, state) → (LossSum,
state)`` with no state) predicts target token t from tokens < t for t = 1 … len−1
and sums the cross-entropy over those real positions only. The
decoder's input at step t is the gold y_{t−1} with probability
``teacher_forcing``, else the model's own greedy prediction (scheduled sampling,
Bengio et al. 2015; :func:`inverse_sigmoid_decay` gives their schedule).
Generation follows the StepDecoder protocol: :meth:`Seq2Seq.start`, then
:meth:`Seq2Seq.decode_step` per token, with :meth:`Seq2Seq.reorder_state` for beams
(:meth:`Seq2Seq.translate` runs greedy or beam search over a batch of sources);
in eval mode without gradients the decoder's cells step through one
:class:`~rnnkit.stepping.Stepper` (every layer in one call, weights packed once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells import CELL_NAMES, cell_factory
from rnnkit.configuration import MAX_LAYERS, check_dropout, check_positive_ints, check_sizes
from rnnkit.decoding import Decoded, beam_search, greedy
from rnnkit.losses import LossSum, masked_cross_entropy
from rnnkit.models.attention import AdditiveAttention, DotAttention, GeneralAttention
from rnnkit.recurrent import BACKENDS, Recurrent, Regularisers
from rnnkit.state import map_state, stack_states, unstack_state
from rnnkit.stepping import Stepper, cached_stepper, stepping
from rnnkit.unrolling import length_mask

#: The values of :attr:`Seq2SeqConfig.attention`; :func:`build_attention` maps them to classes.
ATTENTION_NAMES: tuple[str, ...] = ("none", "bahdanau", "dot", "general")

Attention = AdditiveAttention | DotAttention | GeneralAttention


@dataclass(frozen=True)
class Seq2SeqConfig(Regularisers):
    """Everything that defines a :class:`Seq2Seq`.

    Attributes:
        source_vocab: source token ids are 0 … source_vocab−1.
        target_vocab: V, target token ids are 0 … V−1 (pad, BOS and EOS included).
        embed: E, the width of both embeddings.
        hidden: H, per encoder direction and for the decoder.
        layers: L, encoder layers and decoder layers alike.
        cell: ``"lstm"``, ``"gru"``, ``"rnn"`` or ``"rnn_relu"`` (encoder and decoder).
        bidirectional_encoder: read the source both ways (D = 2); the bridge then
            joins the two final states (module docstring).
        attention: ``"none"``, ``"bahdanau"`` (additive), ``"dot"`` or ``"general"``
            (Luong). ``"dot"`` needs queries and keys of one size, so it rules out
            a bidirectional encoder (keys of 2H features).
        dropout: on the embeddings, between recurrent layers and on h̃_t before the
            output layer; only in training mode.
        teacher_forcing: in [0, 1], the probability of feeding the gold previous
            token in training (1 = always gold; see :meth:`Seq2Seq.set_teacher_forcing`).
        pad_id, bos_id, eos_id: distinct special target ids; ``pad_id`` also pads
            the source (its embedding rows stay zero).
        backend: the encoder's :class:`~rnnkit.recurrent.Recurrent` backend.
        locked_dropout, weight_drop, zoneout: the stack's regularisers
            (:class:`~rnnkit.recurrent.Regularisers`), keyword-only.
    """

    source_vocab: int
    target_vocab: int
    embed: int = 64
    hidden: int = 128
    layers: int = 1
    cell: str = "lstm"
    bidirectional_encoder: bool = False
    attention: str = "bahdanau"
    dropout: float = 0.0
    # Scheduled sampling lowers this during training; 1 is plain teacher forcing.
    teacher_forcing: float = 1.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    backend: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "source_vocab", "target_vocab")
        check_sizes(self, "embed", "hidden")
        check_sizes(self, "layers", at_most=MAX_LAYERS)
        if self.cell not in CELL_NAMES:
            raise ValueError(f"cell: expected one of {', '.join(CELL_NAMES)}, got {self.cell!r}")
        if not isinstance(self.bidirectional_encoder, bool):
            raise ValueError(
                f"bidirectional_encoder: expected True or False, got {self.bidirectional_encoder!r}"
            )
        if self.attention not in ATTENTION_NAMES:
            raise ValueError(
                f"attention: expected one of {', '.join(ATTENTION_NAMES)}, got {self.attention!r}"
            )
        if self.attention == "dot" and self.bidirectional_encoder:
            raise ValueError(
                "attention: 'dot' needs keys of the decoder's size H, but a bidirectional "
                "encoder gives 2H; use 'general' or 'bahdanau'"
            )
        check_dropout(self.dropout)
        check_teacher_forcing(self.teacher_forcing)
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: expected an int, got {value!r}")
            if not 0 <= value < self.target_vocab:
                raise ValueError(
                    f"{name}: expected an id in 0..{self.target_vocab - 1} "
                    f"(target_vocab − 1), got {value}"
                )
        if not self.pad_id < self.source_vocab:
            raise ValueError(
                f"pad_id: expected an id in 0..{self.source_vocab - 1} (source_vocab − 1), "
                f"got {self.pad_id}"
            )
        if len({self.pad_id, self.bos_id, self.eos_id}) != 3:
            raise ValueError(
                f"pad_id, bos_id, eos_id: expected three distinct ids, got "
                f"{self.pad_id}, {self.bos_id}, {self.eos_id}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )


def check_teacher_forcing(ratio: object) -> None:
    """Raise ValueError unless ``ratio`` is a number in [0, 1]."""
    if not _is_number(ratio) or not 0.0 <= ratio <= 1.0:  # type: ignore[operator]
        raise ValueError(f"teacher_forcing: expected a number in [0, 1], got {ratio!r}")


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def build_attention(name: str, query_size: int, key_size: int) -> Attention | None:
    """The one place where an ``attention`` name becomes a scorer (``None`` for ``"none"``)."""
    if name == "none":
        return None
    if name == "bahdanau":
        return AdditiveAttention(query_size, key_size)
    if name == "dot":
        return DotAttention(query_size, key_size)
    if name == "general":
        return GeneralAttention(query_size, key_size)
    raise ValueError(f"attention: expected one of {', '.join(ATTENTION_NAMES)}, got {name!r}")


def inverse_sigmoid_decay(step: int, k: float) -> float:
    """Bengio et al. (2015)'s inverse-sigmoid schedule for the teacher-forcing ratio.

    ε_i = k / (k + exp(i / k)), k ≥ 1: near k/(k+1) at step 0, 1/2 at
    i = k·ln k, then down to 0; a larger k decays later. The caller applies it
    once per optimizer step from the step counter, e.g.
    ``model.set_teacher_forcing(inverse_sigmoid_decay(trainer_step, 500))``, so
    a resumed run recomputes the same ratio from the restored counter.

    Raises:
        ValueError: ``step`` < 0 or ``k`` < 1.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: expected an int ≥ 0, got {step!r}")
    if not _is_number(k) or k < 1.0:
        raise ValueError(f"k: expected a number ≥ 1, got {k!r}")
    exponent = step / k
    if exponent > 700.0:  # exp would overflow a float; the ratio is 0 to double precision
        return 0.0
    return k / (k + math.exp(exponent))


@dataclass(frozen=True)
class PairBatch:
    """A padded batch of (source, target) pairs.

    Attributes:
        source: ``(B, S)`` int64 source ids, any id past each row's length.
        source_lengths: ``(B,)`` int64 in 1 … S.
        target: ``(B, T)`` int64: BOS, the tokens, EOS, then any id (padding).
        target_lengths: ``(B,)`` int64 in 2 … T, BOS and EOS included.
    """

    source: Tensor
    source_lengths: Tensor
    target: Tensor
    target_lengths: Tensor

    def __post_init__(self) -> None:
        for name in ("source", "target"):
            value = getattr(self, name)
            if value.dim() != 2 or value.dtype != torch.int64:
                raise ValueError(
                    f"{name}: expected an int64 tensor (B, steps), got {value.dtype} "
                    f"{tuple(value.shape)}"
                )
        batch = self.source.shape[0]
        if self.target.shape[0] != batch:
            raise ValueError(
                f"target: expected {batch} rows like source, got {tuple(self.target.shape)}"
            )
        for name in ("source_lengths", "target_lengths"):
            value = getattr(self, name)
            if value.shape != (batch,) or value.dtype != torch.int64:
                raise ValueError(
                    f"{name}: expected an int64 tensor ({batch},), got {value.dtype} "
                    f"{tuple(value.shape)}"
                )

    @property
    def source_mask(self) -> Tensor:
        """``(B, S)`` bool, true at real source positions."""
        return length_mask(self.source_lengths.to(self.source.device), self.source.shape[1])

    @property
    def target_mask(self) -> Tensor:
        """``(B, T−1)`` bool, true at the predicted positions 1 … len−1 (shifted to 0 … len−2)."""
        steps = self.target.shape[1] - 1
        return length_mask(self.target_lengths.to(self.target.device) - 1, steps)


class Seq2SeqState(NamedTuple):
    """The decoder's state between steps; every tensor has the batch first.

    Attributes:
        layers: one cell state per decoder layer (``HiddenState``/``LSTMState`` of
            ``(B, H)`` fields), s_t.
        feed: h̃_t ``(B, H)``, fed into the next step's input (zeros before the first).
        memory: the encoder outputs m ``(B, S, D·H)``, the attention's keys.
        mask: ``(B, S)`` bool, true at real source positions.
    """

    layers: tuple[Any, ...]
    feed: Tensor
    memory: Tensor
    mask: Tensor


class Seq2Seq(nn.Module):
    """Embedding → :class:`~rnnkit.recurrent.Recurrent` encoder → bridge → per-step
    decoder of rnnkit cells with attention and input feeding (module docstring)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.teacher_forcing = float(c.teacher_forcing)
        directions = 2 if c.bidirectional_encoder else 1
        memory_size = directions * c.hidden
        self.source_embedding = nn.Embedding(c.source_vocab, c.embed, padding_idx=c.pad_id)
        self.target_embedding = nn.Embedding(c.target_vocab, c.embed, padding_idx=c.pad_id)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = Recurrent(
            c.cell,
            c.embed,
            c.hidden,
            num_layers=c.layers,
            bidirectional=c.bidirectional_encoder,
            dropout=c.dropout,
            backend=c.backend,
            **c.regularisers(),
        )
        fields = len(self.encoder.initial_state(1))  # 1 (h) or 2 (h, c for the LSTM)
        self.bridge = nn.ModuleList(
            nn.Linear(2 * c.hidden, c.hidden) for _ in range(fields if directions == 2 else 0)
        )
        self.attention = build_attention(c.attention, c.hidden, memory_size)
        feed = c.hidden if self.attention is not None else 0
        factory = cell_factory(c.cell)
        self.decoder = nn.ModuleList(
            factory(c.embed + feed if layer == 0 else c.hidden, c.hidden)
            for layer in range(c.layers)
        )
        self.combine = (
            nn.Linear(c.hidden + memory_size, c.hidden) if self.attention is not None else None
        )  # W_c, b_c
        self.output = nn.Linear(c.hidden, c.target_vocab)  # W_o, b_o

    def set_teacher_forcing(self, ratio: float) -> None:
        """Set the probability of feeding the gold token in training (scheduled sampling).

        Call it per optimizer step, e.g. with :func:`inverse_sigmoid_decay`. The ratio
        is a hyperparameter, not saved with the weights: a resumed run sets it again
        from its step counter.
        """
        check_teacher_forcing(ratio)
        self.teacher_forcing = float(ratio)

    # ----------------------------------------------------------------- the StepDecoder protocol

    def start(self, source: Tensor, source_lengths: Tensor) -> tuple[Tensor, Seq2SeqState]:
        """Encode the source: (BOS tokens ``(B,)``, the decoder state before the first step).

        Args:
            source: ``(B, S)`` int64 ids; source_lengths: ``(B,)`` in 1 … S.
        """
        if source.dim() != 2 or source.dtype != torch.int64:
            raise ValueError(
                f"source: expected an int64 tensor (B, S), got {source.dtype} {tuple(source.shape)}"
            )
        batch, steps = source.shape
        embedded = self.drop(self.source_embedding(source))  # (B, S, E)
        # Recurrent checks the lengths (1 … S), so every attention row has a real position.
        memory, final = self.encoder(embedded, lengths=source_lengths)  # (B, S, D·H)
        mask = length_mask(torch.as_tensor(source_lengths, device=source.device), steps)
        feed = memory.new_zeros(batch, self.config.hidden)  # h̃_0 = 0, (B, H)
        state = Seq2SeqState(tuple(unstack_state(self._bridge(final))), feed, memory, mask)
        bos = torch.full((batch,), self.config.bos_id, dtype=torch.int64, device=source.device)
        return bos, state

    def decode_step(self, tokens: Tensor, state: Seq2SeqState) -> tuple[Tensor, Seq2SeqState]:
        """One decoder step: previous tokens ``(B,)`` → (logits ``(B, V)``, next state).

        In eval mode without gradients the decoder's cells step through their
        :class:`~rnnkit.stepping.Stepper`, all layers in one call; otherwise (dropout,
        autograd) cell by cell as in training. Both compute the same numbers.
        """
        if not stepping(self):
            logits, state, _ = self._step(tokens, state)
            return logits, state
        stepper = cached_stepper(self, lambda: Stepper.from_cells(list(self.decoder)))
        x = F.embedding(tokens, self.target_embedding.weight)  # (B, E)
        if self.attention is not None:
            x = torch.cat([x, state.feed], dim=1)  # (B, E + H): input feeding
        query, layers = stepper.step(x, stack_states(state.layers))  # q_t (B, H), (L, B, H)
        logits, attentional, _ = self._attend(query, state)
        return logits, Seq2SeqState(
            tuple(unstack_state(layers)), attentional, state.memory, state.mask
        )

    def reorder_state(self, state: Seq2SeqState, index: Tensor) -> Seq2SeqState:
        """``state`` with its batch entries selected by ``index`` ``(B',)`` int64 (beams)."""

        def pick(field: Tensor) -> Tensor:
            return field.index_select(0, index)

        return Seq2SeqState(
            tuple(map_state(pick, layer) for layer in state.layers),
            pick(state.feed),
            pick(state.memory),
            pick(state.mask),
        )

    @torch.no_grad()
    def translate(self, source: Tensor, source_lengths: Tensor, *, max_length: int,
                  beam: int = 1, length_penalty: float = 1.0) -> Decoded:  # fmt: skip
        """The outputs for a batch of sources, greedy (``beam`` 1) or the best of a beam
        search with GNMT length penalty α = ``length_penalty``, in eval mode.

        Returns:
            :class:`~rnnkit.decoding.Decoded`: tokens ``(B, max_length)``, lengths
            ``(B,)`` (the tokens before EOS) and log-probabilities ``(B,)``.
        """
        c, was_training = self.config, self.training
        self.eval()
        try:
            bos, state = self.start(source, source_lengths)
            if beam == 1:
                return greedy(self, bos, state, max_length=max_length, eos_id=c.eos_id,
                              pad_id=c.pad_id)  # fmt: skip
            return beam_search(self, bos, state, max_length=max_length, beam_size=beam,
                               length_penalty=length_penalty, eos_id=c.eos_id,
                               pad_id=c.pad_id).best  # fmt: skip
        finally:
            self.train(was_training)

    # ----------------------------------------------------------------- training and inspection

    def forward(self, batch: PairBatch, state: None = None) -> tuple[LossSum, None]:
        """Cross-entropy summed over the predicted target positions 1 … len−1; each
        pair starts from its own encoding, so no state is carried between batches.

        In training mode the input at step t ≥ 1 is the gold token y_{t−1} with
        probability ``teacher_forcing``, drawn per row and step from torch's global
        (CPU) generator, else the model's greedy prediction at t−1; ratios 1 and 0
        draw nothing. In eval mode the input is always gold, so validation losses
        are deterministic and comparable across a schedule, like dropout.
        ``target[:, 0]`` is not read: the decoder starts from ``bos_id`` as in decoding.
        """
        ratio = self.teacher_forcing if self.training else 1.0
        logits, _ = self._unroll(batch, ratio)  # (B, T−1, V)
        return masked_cross_entropy(logits, batch.target[:, 1:], batch.target_mask), None

    @torch.no_grad()
    def attention_weights(self, batch: PairBatch) -> Tensor:
        """α ``(B, T−1, S)`` of a teacher-forced pass in eval mode: row t is the
        attention while predicting target token t+1, for heatmaps.

        Each real row sums to 1 over the real source positions and is 0 on source
        padding; rows past a target's end (t ≥ len−1) are zero.

        Raises:
            ValueError: the model has ``attention = "none"``.
        """
        if self.attention is None:
            raise ValueError("attention_weights: this model has attention 'none'")
        was_training = self.training
        self.eval()
        try:
            _, weights = self._unroll(batch, 1.0)  # (B, T−1, S)
        finally:
            self.train(was_training)
        return weights.masked_fill(~batch.target_mask.unsqueeze(2), 0.0)

    # ----------------------------------------------------------------- internals

    def _bridge(self, final: Any) -> Any:
        """Encoder final state (fields ``(L·D, B, H)``) → decoder initial state ``(L, B, H)``."""
        if not len(self.bridge):
            return final  # unidirectional: layer l's state initialises decoder layer l
        layers, hidden = self.config.layers, self.config.hidden
        joined = []
        for field, bridge in zip(final, self.bridge, strict=True):
            # torch.nn's order is layer-major, direction-minor: (L·2, B, H) → (L, B, 2H).
            pair = field.reshape(layers, 2, -1, hidden).permute(0, 2, 1, 3)  # (L, B, 2, H)
            joined.append(torch.tanh(bridge(pair.reshape(layers, -1, 2 * hidden))))  # (L, B, H)
        return type(final)(*joined)

    def _step(self, tokens: Tensor, state: Seq2SeqState) -> tuple[Tensor, Seq2SeqState, Tensor]:
        """One step of the module docstring's equations: (logits, state, α_t ``(B, S)``).

        Without attention α_t is an empty ``(B, 0)`` tensor.
        """
        x = self.drop(self.target_embedding(tokens))  # (B, E)
        attentional, state, weights = self._recur(x, state)
        return self.output(self.drop(attentional)), state, weights

    def _recur(self, x: Tensor, state: Seq2SeqState) -> tuple[Tensor, Seq2SeqState, Tensor]:
        """From the embedded input y_{t−1} ``(B, E)``: (h̃_t ``(B, H)``, state, α_t).

        The recurrent part of a step: input feeding, the decoder's cells, attention
        and the combination; the output layer is left to the caller, so a
        teacher-forced pass can run it once over every step.
        """
        if self.attention is not None:
            x = torch.cat([x, state.feed], dim=1)  # (B, E + H): input feeding
        new_layers = []
        for layer, (cell, cell_state) in enumerate(zip(self.decoder, state.layers, strict=True)):
            if layer > 0:
                x = self.drop(x)
            x, new_state = cell(x, cell_state)  # (B, H)
            new_layers.append(new_state)
        attentional, weights = self._combine(x, state)  # x is q_t, (B, H)
        return (
            attentional,
            Seq2SeqState(tuple(new_layers), attentional, state.memory, state.mask),
            weights,
        )

    def _combine(self, query: Tensor, state: Seq2SeqState) -> tuple[Tensor, Tensor]:
        """From q_t ``(B, H)``: (h̃_t ``(B, H)``, α_t ``(B, S)`` or ``(B, 0)``)."""
        if self.attention is None or self.combine is None:
            return query, query.new_zeros(query.shape[0], 0)  # h̃_t = q_t, α_t (B, 0)
        context, weights = self.attention(query, state.memory, state.mask)  # (B, D·H)
        attentional = torch.tanh(self.combine(torch.cat([query, context], dim=1)))  # (B, H)
        return attentional, weights

    def _attend(self, query: Tensor, state: Seq2SeqState) -> tuple[Tensor, Tensor, Tensor]:
        """From q_t ``(B, H)``: (logits ``(B, V)``, h̃_t ``(B, H)``, α_t ``(B, S)`` or ``(B, 0)``)."""
        attentional, weights = self._combine(query, state)
        return self.output(self.drop(attentional)), attentional, weights

    def _unroll(self, batch: PairBatch, ratio: float) -> tuple[Tensor, Tensor]:
        """Decode the T−1 steps of ``batch``: (logits ``(B, T−1, V)``, α ``(B, T−1, S)``).

        Teacher-forced (``ratio`` 1) every input is known before the loop, so the
        target embedding and the output layer each run once over all steps, as one
        large operation, and only the recurrent part (:meth:`_recur`) runs per step.
        """
        _check_target_lengths(batch)
        tokens, state = self.start(batch.source, batch.source_lengths)
        batch_size, steps = batch.target.shape[0], batch.target.shape[1] - 1
        forced = ratio == 1.0
        if forced:
            inputs = torch.cat([tokens[:, None], batch.target[:, 1:steps]], dim=1)  # (B, T−1)
            embedded = self.drop(self.target_embedding(inputs))  # (B, T−1, E)
        all_attentional: list[Tensor] = []
        all_logits: list[Tensor] = []
        all_weights: list[Tensor] = []
        for t in range(steps):
            if forced:
                x = embedded[:, t]  # (B, E)
            else:
                if t > 0:
                    gold = batch.target[:, t]
                    tokens = self._next_input(gold, all_logits[-1], ratio, batch_size)
                x = self.drop(self.target_embedding(tokens))  # (B, E)
            attentional, state, weights = self._recur(x, state)
            if forced:
                all_attentional.append(attentional)
            else:  # the next input may be this step's prediction
                all_logits.append(self.output(self.drop(attentional)))
            all_weights.append(weights)
        if forced:
            logits = self.output(self.drop(torch.stack(all_attentional, dim=1)))  # (B, T−1, V)
        else:
            logits = torch.stack(all_logits, dim=1)
        return logits, torch.stack(all_weights, dim=1)

    @staticmethod
    def _next_input(gold: Tensor, logits: Tensor, ratio: float, batch_size: int) -> Tensor:
        """y_{t−1} for step t: gold with probability ``ratio``, else the greedy prediction."""
        if ratio == 1.0:
            return gold
        predicted = logits.detach().argmax(dim=1)  # (B,)
        if ratio == 0.0:
            return predicted
        # torch's global CPU generator, so the Trainer's seeding and resume cover it.
        use_gold = (torch.rand(batch_size) < ratio).to(gold.device)  # (B,)
        return torch.where(use_gold, gold, predicted)


def _check_target_lengths(batch: PairBatch) -> None:
    steps = batch.target.shape[1]
    lengths = batch.target_lengths
    if steps < 2 or int(lengths.min()) < 2 or int(lengths.max()) > steps:
        raise ValueError(
            f"target_lengths: expected values in 2..{steps} (BOS and EOS included, at most "
            f"the target's {steps} steps), got {lengths.tolist()}"
        )


__all__ = [
    "ATTENTION_NAMES",
    "PairBatch",
    "Seq2Seq",
    "Seq2SeqConfig",
    "Seq2SeqState",
    "build_attention",
    "check_teacher_forcing",
    "inverse_sigmoid_decay",
]
