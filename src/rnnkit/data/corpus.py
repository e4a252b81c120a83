"""Running text for language models: tokenise, encode, cut into streams, detokenise.

A corpus is one long token stream per split. Training reads it as R contiguous
rows cut into chunks (:func:`stream_examples`), the layout of the classic
word-language-model example; generation turns tokens back into text one at a
time (:func:`pieces`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from rnnkit.data.batching import stream_batches
from rnnkit.data.formats.text import read_text
from rnnkit.data.vocab import (
    BOS,
    EOS,
    PAD,
    PAD_ID,
    UNK,
    CharTokenizer,
    Vocabulary,
    WordTokenizer,  # fmt: skip
)
from rnnkit.models.language_model import TextBatch
from rnnkit.training.sampler import Examples

# Word level: whitespace-separated words, and each line end a token of its own (the
# <eos> of the word-language-model recipe), so PTB's 887,521 words and 42,068 lines
# give its standard 929,589 training tokens and a pre-tokenised ``<unk>`` stays one token.
WORDS_AND_LINE_ENDS = r"[^\s]+|\n"

Chunk = tuple[Tensor, Tensor]  # one row's chunk: inputs (T,), targets (T,) = the next tokens


@dataclass(frozen=True)
class Corpus:
    """A text's splits as token ids, with the vocabulary (built on ``train``) that made them."""

    vocab: Vocabulary
    splits: dict[str, list[int]]


def tokenizer(level: str) -> CharTokenizer | WordTokenizer:
    """Characters, or words and line ends (``level`` ``char`` or ``word``)."""
    return CharTokenizer() if level == "char" else WordTokenizer(pattern=WORDS_AND_LINE_ENDS)


def detokenize(tokens: list[str], level: str) -> str:
    if level == "char":
        return "".join(tokens)
    return " ".join(tokens).replace(" \n ", "\n").replace(" \n", "\n").replace("\n ", "\n")


# A stream model meets a zero state only at the very start of the corpus, so read cold
# a prompt is nearly noise to it ("ROMEO." → 'B' 7 %); read after a blank line, as a
# new speech or paragraph starts in the text, it is what it was trained on ('\n' 70 %).
WARM_UP = "\n\n"


def prompt_ids(text: str, vocab: Vocabulary, level: str) -> list[int]:
    """A prompt's ids, read after a blank line (:data:`WARM_UP`)."""
    return vocab.encode(tokenizer(level).tokenize(WARM_UP + text))


def never_targets(vocab: Vocabulary, level: str, cut: bool) -> tuple[int, ...]:
    """Tokens a stream model never saw as targets, so never samples.

    A stream's targets are text: ``<pad>``, ``<bos>`` and ``<eos>`` never occur, and
    ``<unk>`` occurs only where the vocabulary ``cut`` rare tokens (``min_freq``,
    ``max_vocab``) or the text writes it (PTB's words).
    """
    specials = [PAD, BOS, EOS]
    if level == "char" and not cut:
        specials.append(UNK)  # every training character has its own id
    return tuple(vocab.encode(specials))


def pieces(tokens: Iterable[int], vocab: Vocabulary, level: str, start: str) -> Iterator[str]:
    """The text of ``start`` followed by ``tokens``, one piece per token as it comes:
    :func:`detokenize` one token at a time (a word is joined by a space, except
    next to a newline)."""
    joiner = "" if level == "char" or start.endswith("\n") else " "
    previous: str | None = None
    for token in tokens:
        (text,) = vocab.decode([token]) or [""]
        if previous is None:
            yield start + joiner + text
        elif level == "char" or previous.endswith("\n") or text.startswith("\n"):
            yield text
        else:
            yield " " + text
        previous = text


def read_files(data: tuple[str, ...]) -> dict[str, str]:
    """The user's text as ``train``, ``valid`` and ``test``: three files (or folders), or
    one split 90/5/5 by position (the end of the text is the held-out part)."""
    names = ("train", "valid", "test")
    if len(data) == 3:
        return dict(zip(names, map(read_text, data), strict=True))
    text = read_text(data[0])
    cuts = [0, int(len(text) * 0.90), int(len(text) * 0.95), len(text)]
    return {name: text[a:b] for name, (a, b) in zip(names, itertools.pairwise(cuts), strict=True)}


def encode(parts: dict[str, str], level: str, min_freq: int, max_vocab: int | None) -> Corpus:
    """Tokenise and encode every part; the vocabulary sees the ``train`` part only."""
    split = tokenizer(level)
    tokens = {name: split.tokenize(text) for name, text in parts.items()}
    vocab = Vocabulary.build([tokens["train"]], min_freq=min_freq, max_size=max_vocab)
    return Corpus(vocab, {name: vocab.encode(part) for name, part in tokens.items()})


def stream_examples(ids: list[int], rows: int, steps: int) -> Examples[Chunk]:
    """``rows`` contiguous streams cut into chunks of ≤ ``steps`` tokens
    (:func:`~rnnkit.data.batching.stream_batches`), laid out chunk-major: example
    ``k·rows + r`` is chunk k of row r, so ``rows`` consecutive examples are one chunk
    of every row, in the same row order each time; continuous, for the Trainer to
    carry each row's state from chunk to chunk."""
    batches = stream_batches(ids, rows, steps)
    return Examples([(x[r], y[r]) for x, y in batches for r in range(rows)], continuous=True)


def collate_chunks(chunks: list[Chunk]) -> TextBatch:
    """Chunks as one batch: one chunk of R rows (what the Trainer gives) is stacked;
    chunks of different lengths (a probe batch that reaches the last, shorter chunk)
    are padded, with their lengths."""
    inputs, targets = [x for x, _ in chunks], [y for _, y in chunks]
    if len({len(x) for x in inputs}) == 1:
        return TextBatch(torch.stack(inputs), torch.stack(targets))  # (R, T) each
    lengths = torch.tensor([len(x) for x in inputs])
    return TextBatch(pad_sequence(inputs, batch_first=True, padding_value=PAD_ID),
                     pad_sequence(targets, batch_first=True, padding_value=PAD_ID), lengths)  # fmt: skip
