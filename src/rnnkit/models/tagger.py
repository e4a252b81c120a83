"""Many-to-many aligned tagging: one tag per token (POS, NER), optionally with a CRF.

    x_t = E[w_t]                                    embedding         (B, T, E)
    h_t = [h→_t ; h←_t] = Recurrent(x)_t            bidirectional     (B, T, D·H)
    e_t = W_o · dropout(h_t) + b_o                  tag scores        (B, T, C)

Without a CRF each step is an independent softmax over the C tags and the loss is the
cross-entropy summed over real tokens. With a CRF (:mod:`rnnkit.models.crf`) e_t are
its emissions, the loss is the sequence NLL log Z − S(y) summed over sentences, and
prediction is the Viterbi path; both losses count real tokens as their targets, so
the Trainer reports a per-token loss either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.cells import CELL_NAMES
from rnnkit.configuration import MAX_LAYERS, check_dropout, check_positive_ints, check_sizes
from rnnkit.losses import LossSum, masked_cross_entropy
from rnnkit.models.crf import CRF
from rnnkit.recurrent import BACKENDS, Recurrent, Regularisers
from rnnkit.unrolling import length_mask


@dataclass(frozen=True)
class TaggerConfig(Regularisers):
    """Everything that defines a :class:`Tagger`.

    Attributes:
        vocab_size: V, token ids are 0 … V−1.
        num_tags: C, tag ids are 0 … C−1.
        embed: E, the embedding width.
        hidden: H per direction; the tag layer reads D·H features.
        layers: L recurrent layers.
        cell: ``"lstm"``, ``"gru"``, ``"rnn"`` or ``"rnn_relu"``.
        bidirectional: read the whole sentence on both sides of each token (D = 2);
            false gives a causal tagger whose tag at t sees only tokens 0 … t.
        dropout: on the recurrent outputs before the tag layer, and between
            recurrent layers when L > 1; only in training mode.
        crf: score whole tag paths with a CRF (learns which tags may follow which,
            e.g. I-x only after B-x or I-x) instead of independent per-token softmaxes.
        pad_id: the padding token id; its embedding row is zero and gets no gradient.
        backend: the :class:`~rnnkit.recurrent.Recurrent` backend.
        char_vocab_size, char_embed, char_hidden: character-aware words (Lample et al.
            2016): each word's characters (ids 0 … char_vocab_size − 1, 0 padding)
            embedded (char_embed) and read by a BiLSTM of char_hidden units per
            direction; its two final states are concatenated to the word embedding,
            so a word the vocabulary lacks is still seen by its spelling. char_embed
            0 (the default) turns it off.
        locked_dropout, weight_drop, zoneout: the stack's regularisers
            (:class:`~rnnkit.recurrent.Regularisers`), keyword-only.
    """

    vocab_size: int
    num_tags: int
    embed: int = 64
    hidden: int = 128
    layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = True
    dropout: float = 0.0
    crf: bool = False
    pad_id: int = 0
    backend: str = "auto"
    char_vocab_size: int = 0
    char_embed: int = 0
    char_hidden: int = 25

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "vocab_size", "num_tags")
        check_sizes(self, "char_hidden")
        for name in ("char_vocab_size", "char_embed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**16:
                raise ValueError(f"{name}: expected an int in 0 … 65,536, got {value!r}")
        check_sizes(self, "embed", "hidden")
        check_sizes(self, "layers", at_most=MAX_LAYERS)
        if self.cell not in CELL_NAMES:
            raise ValueError(f"cell: expected one of {', '.join(CELL_NAMES)}, got {self.cell!r}")
        for name in ("bidirectional", "crf"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        check_dropout(self.dropout)
        if (
            isinstance(self.pad_id, bool)
            or not isinstance(self.pad_id, int)
            or not 0 <= self.pad_id < self.vocab_size
        ):
            raise ValueError(
                f"pad_id: expected an int in 0..{self.vocab_size - 1} (vocab_size − 1), "
                f"got {self.pad_id!r}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )


@dataclass(frozen=True)
class TagBatch:
    """A padded batch of tagged sentences.

    Attributes:
        tokens: ``(B, T)`` int64 token ids, any id past each row's end.
        tags: ``(B, T)`` int64 gold tag ids, any value past each row's end or where
            ``scored`` is false.
        lengths: ``(B,)`` int64 sentence lengths in 1 … T.
        scored: ``(B, T)`` bool, true at the steps that have a target (selective
            copying's markers); None: every real token has one.
        chars: ``(B, T, W)`` int64 character ids of each word, 0 past its end (and
            for padding steps); None without character-aware words.
    """

    tokens: Tensor
    tags: Tensor
    lengths: Tensor
    scored: Tensor | None = None
    chars: Tensor | None = None

    def __post_init__(self) -> None:
        if self.tokens.dim() != 2 or self.tokens.dtype != torch.int64:
            raise ValueError(
                f"tokens: expected an int64 tensor (B, T), got {self.tokens.dtype} "
                f"{tuple(self.tokens.shape)}"
            )
        if self.tags.shape != self.tokens.shape or self.tags.dtype != torch.int64:
            raise ValueError(
                f"tags: expected an int64 tensor {tuple(self.tokens.shape)} like tokens, "
                f"got {self.tags.dtype} {tuple(self.tags.shape)}"
            )
        if self.lengths.shape != self.tokens.shape[:1] or self.lengths.dtype != torch.int64:
            raise ValueError(
                f"lengths: expected an int64 tensor ({self.tokens.shape[0]},), "
                f"got {self.lengths.dtype} {tuple(self.lengths.shape)}"
            )
        if self.chars is not None and (
            self.chars.dim() != 3
            or self.chars.shape[:2] != self.tokens.shape
            or self.chars.dtype != torch.int64
        ):
            raise ValueError(
                f"chars: expected None or an int64 tensor {tuple(self.tokens.shape)} + (W,) "
                f"like tokens, got {self.chars.dtype} {tuple(self.chars.shape)}"
            )
        if self.scored is not None and (
            self.scored.shape != self.tokens.shape or self.scored.dtype != torch.bool
        ):
            raise ValueError(
                f"scored: expected None or a bool tensor {tuple(self.tokens.shape)} like "
                f"tokens, got {self.scored.dtype} {tuple(self.scored.shape)}"
            )

    @property
    def mask(self) -> Tensor:
        """``(B, T)`` bool, true on each row's first ``lengths`` steps."""
        return length_mask(self.lengths, self.tokens.shape[1])

    @property
    def target_mask(self) -> Tensor:
        """``(B, T)`` bool, true at the steps with a target: real and ``scored``."""
        mask = self.mask
        return mask if self.scored is None else mask & self.scored


class CharWords(nn.Module):
    """Each word from its characters: embedding → BiLSTM → [h→_last ; h←_first].

    ``chars (B, T, W)`` (0 = padding) and the real words' mask ``(B, T)`` →
    ``(B, T, 2·H_c)``, zeros at padding steps. Only the real words run, as one batch of
    N words with their own lengths (a word of no characters reads one padding id).
    """

    def __init__(self, vocab_size: int, embed: int, hidden: int, *, backend: str) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.rnn = Recurrent("lstm", embed, hidden, bidirectional=True, backend=backend)
        self.hidden = hidden

    def forward(self, chars: Tensor, words: Tensor) -> Tensor:
        spelled = self.embedding.weight.new_zeros(*words.shape, 2 * self.hidden)  # (B, T, 2·H_c)
        flat = chars[words]  # (N, W): the real words
        if flat.shape[0] == 0:
            return spelled
        lengths = (flat != 0).sum(1).clamp(min=1).cpu()  # (N,)
        _, final = self.rnn(self.embedding(flat), lengths=lengths)  # h: (2, N, H_c)
        spelled[words] = torch.cat([final.h[0], final.h[1]], dim=-1)  # (N, 2·H_c)
        return spelled


class Tagger(nn.Module):
    """Embedding → :class:`~rnnkit.recurrent.Recurrent` → dropout → linear tag scores,
    with an optional :class:`~rnnkit.models.crf.CRF` on top (module docstring)."""

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed, padding_idx=config.pad_id)
        width = config.embed
        self.chars: CharWords | None = None
        if config.char_embed:
            self.chars = CharWords(config.char_vocab_size, config.char_embed,
                                   config.char_hidden, backend=config.backend)  # fmt: skip
            width += 2 * config.char_hidden
        self.recurrent = Recurrent(
            config.cell,
            width,
            config.hidden,
            num_layers=config.layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
            backend=config.backend,
            **config.regularisers(),
        )
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        self.output = nn.Linear(directions * config.hidden, config.num_tags)
        self.crf = CRF(config.num_tags) if config.crf else None

    def emissions(self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None) -> Tensor:
        """Per-token tag scores e_t ``(B, T, C)`` for ``tokens (B, T)`` and ``lengths (B,)``
        (and ``chars (B, T, W)`` for a character-aware tagger).

        Past a row's end the recurrent outputs are zero, so the scores there are the
        bias b_o alone: they depend on no padded token, and every consumer masks them.
        """
        embedded = self.embedding(tokens)  # (B, T, E)
        if self.chars is not None:
            if chars is None:
                raise ValueError("chars: a character-aware tagger needs each word's "
                                 "characters (TagBatch.chars), got None")  # fmt: skip
            spelled = self.chars(chars, length_mask(lengths.to(tokens.device), tokens.shape[1]))
            embedded = torch.cat([embedded, spelled], dim=-1)  # (B, T, E + 2·H_c)
        hidden, _ = self.recurrent(embedded, lengths=lengths)  # (B, T, D·H)
        scores: Tensor = self.output(self.dropout(hidden))  # (B, T, C)
        return scores

    def forward(self, batch: TagBatch, state: None = None) -> tuple[LossSum, None]:
        """The loss summed over the batch's real tokens, and their number; a tagger
        carries no state from batch to batch.

        Without a CRF: Σ_t −log softmax(e_t)[y_t], over the ``scored`` steps alone when
        the batch marks some. With one: Σ_rows (log Z − S(y)), which is the NLL of
        whole sentences; ``n_targets`` is the token count in both. Both are sums over
        rows, so a batch cut in parts sums to the whole batch's loss.
        """
        scores = self.emissions(batch.tokens, batch.lengths, batch.chars)  # (B, T, C)
        if self.crf is None:
            return masked_cross_entropy(scores, batch.tags, batch.target_mask), None
        if batch.scored is not None:
            raise ValueError("scored: a CRF scores every step's tag; a batch with unscored "
                             "steps needs the softmax tagger (crf = false)")  # fmt: skip
        return self.crf.nll(_at_least_float32(scores), batch.tags, batch.mask), None

    @torch.no_grad()
    def predict(self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None) -> Tensor:
        """The predicted tags ``(B, T)`` int64, 0 past each row's end: the per-token
        arg max without a CRF, the Viterbi path with one. Dropout still applies in
        training mode: call ``eval()`` first for deterministic tags."""
        mask = length_mask(lengths.to(tokens.device), tokens.shape[1])  # (B, T)
        scores = self.emissions(tokens, lengths, chars)  # (B, T, C)
        if self.crf is None:
            return scores.argmax(dim=2).masked_fill(~mask, 0)
        tags, _ = self.crf.viterbi(_at_least_float32(scores), mask)
        return tags


def _at_least_float32(scores: Tensor) -> Tensor:
    # bf16/fp16 emissions (autocast): sums of T scores lose whole units in 8 mantissa
    # bits, so the CRF's recursions run in float32; float64 stays float64.
    return scores if scores.dtype in (torch.float32, torch.float64) else scores.float()
