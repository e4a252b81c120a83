"""Tokenisers (text → tokens) and the vocabulary (tokens ↔ ids).

Text becomes ids in two steps: a tokeniser cuts it into string tokens
(:class:`CharTokenizer`, :class:`WordTokenizer`, or :class:`BPETokenizer` with
the optional ``bpe`` extra), and a :class:`Vocabulary` built from the training
tokens maps them to ids. The four special tokens always hold the same ids, so a
model, the decoder and the padding code agree on them without being told:

======  ===  ==========================================================
token   id   use
======  ===  ==========================================================
<pad>   0    fills batches to a common length; never a target
<unk>   1    stands for every token the vocabulary does not hold
<bos>   2    starts a generated sequence
<eos>   3    ends a sequence
======  ===  ==========================================================

A run saves its vocabulary as :meth:`Vocabulary.to_json` (UTF-8 bytes on disk)
and reads it back with :meth:`Vocabulary.from_json`; the round trip is exact.
"""

from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from torch import Tensor

from rnnkit.data.errors import DataError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS)

# Written into every saved vocabulary so a wrong file is named as such, and so a
# later layout can still read this one.
_FORMAT = "rnnkit-vocabulary"
_VERSION = 1


def _check_token(token: object, where: str) -> str:
    """The token itself, or a DataError: tokens are non-empty strings that UTF-8 can encode."""
    if not isinstance(token, str) or not token:
        raise DataError(f"{where}: expected a non-empty string token, got {token!r}")
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate would make the saved vocabulary unwritable as UTF-8.
        raise DataError(f"{where}: token {token!r} is not valid Unicode text") from None
    return token


class Vocabulary:
    """A fixed mapping between tokens and ids, special tokens first.

    Args:
        tokens: the ordinary tokens in id order; they get ids 4, 5, …. A special
            token among them is refused (it already has its id), as is a repeat.

    Two vocabularies are equal when they hold the same tokens in the same order.
    """

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        ordered = list(SPECIAL_TOKENS)
        index = {token: i for i, token in enumerate(ordered)}
        for position, token in enumerate(tokens):
            _check_token(token, f"vocabulary token {position}")
            if token in index:
                what = "a special token" if index[token] < len(SPECIAL_TOKENS) else "a repeat"
                raise DataError(f"vocabulary token {position}: {token!r} is {what} (expected new)")
            index[token] = len(ordered)
            ordered.append(token)
        self._tokens = tuple(ordered)
        self._index = index

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Iterable[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Count the tokens and keep the frequent ones.

        Args:
            token_lists: the tokenised training texts (never validation or test:
                the vocabulary is part of what the model learns).
            min_freq: a token seen fewer times becomes ``<unk>``.
            max_size: the most ids in all, the four special tokens included
                (what the embedding table gets); ``None``: no limit.

        Tokens are ordered by count, most frequent first, and equal counts by the
        token's string, so the same texts give the same ids on every machine.
        A special token that occurs in the text (PTB writes ``<unk>`` itself)
        keeps its fixed id and is not counted.
        """
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq: expected an int ≥ 1, got {min_freq!r}")
        if max_size is not None and (
            isinstance(max_size, bool)
            or not isinstance(max_size, int)
            or max_size < len(SPECIAL_TOKENS)
        ):
            raise ValueError(
                f"max_size: expected None or an int ≥ {len(SPECIAL_TOKENS)} "
                f"(the special tokens count), got {max_size!r}"
            )
        counts: Counter[str] = Counter()
        for number, tokens in enumerate(token_lists):
            line = list(tokens)
            for token in line:
                if not isinstance(token, str):
                    raise DataError(f"token list {number}: expected string tokens, got {token!r}")
            counts.update(line)
        for special in SPECIAL_TOKENS:
            del counts[special]
        kept = sorted(
            (token for token, count in counts.items() if count >= min_freq),
            key=lambda token: (-counts[token], token),
        )
        if max_size is not None:
            kept = kept[: max_size - len(SPECIAL_TOKENS)]
        return cls(kept)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every token in id order, the special tokens first."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        shown = ", ".join(repr(t) for t in self._tokens[len(SPECIAL_TOKENS) :][:5])
        more = ", …" if len(self) > len(SPECIAL_TOKENS) + 5 else ""
        return f"Vocabulary(size={len(self)}, tokens=[{shown}{more}])"

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """The ids of ``tokens``; a token the vocabulary lacks becomes ``<unk>`` (1)."""
        index = self._index
        return [index.get(token, UNK_ID) for token in tokens]

    def decode(self, ids: Iterable[int] | Tensor, *, strip_special: bool = True) -> list[str]:
        """The tokens of ``ids``.

        Args:
            ids: ids of this vocabulary (a list or a 1-D tensor).
            strip_special: drop ``<pad>``, ``<bos>`` and ``<eos>``. ``<unk>`` stays:
                it stands for a real token of the text.
        """
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        out: list[str] = []
        size = len(self._tokens)
        for position, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
                raise DataError(
                    f"id {position}: expected an int in [0, {size}) for this vocabulary, got {value!r}"
                )
            if strip_special and value in (PAD_ID, BOS_ID, EOS_ID):
                continue
            out.append(self._tokens[value])
        return out

    def to_json(self) -> str:
        """The vocabulary as JSON text, one token per line; :meth:`from_json` reads it back exactly."""
        document = {"format": _FORMAT, "version": _VERSION, "tokens": list(self._tokens)}
        return json.dumps(document, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, path: Path | str | None = None) -> Vocabulary:
        """Read what :meth:`to_json` wrote; anything else raises :class:`DataError`.

        Args:
            text: the JSON text, or its UTF-8 bytes as read from disk.
            path: the file it came from, named in error messages.
        """
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            # ValueError covers undecodable bytes, malformed JSON and over-long
            # integers; RecursionError, absurdly deep nesting.
            line = getattr(error, "lineno", None)
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(
                f"not a vocabulary JSON file ({detail})", path=path, line=line
            ) from None
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise DataError(f'expected a JSON object with "format": "{_FORMAT}"', path=path)
        if document.get("version") != _VERSION:
            raise DataError(
                f"vocabulary version {document.get('version')!r} (expected {_VERSION})", path=path
            )
        tokens = document.get("tokens")
        if not isinstance(tokens, list):
            raise DataError('"tokens": expected a list of strings', path=path)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise DataError(
                f'"tokens": expected to start with {list(SPECIAL_TOKENS)}, '
                f"got {tokens[: len(SPECIAL_TOKENS)]!r}",
                path=path,
            )
        try:
            return cls(tokens[len(SPECIAL_TOKENS) :])
        except DataError as error:
            raise DataError(f'"tokens": {error}', path=path) from None


class Tokenizer(Protocol):
    """What every tokeniser does: text to string tokens and back."""

    def tokenize(self, text: str) -> list[str]: ...

    def detokenize(self, tokens: Sequence[str]) -> str: ...


@dataclass(frozen=True)
class CharTokenizer:
    """One token per character (Unicode code point); ``detokenize`` joins them back exactly."""

    def tokenize(self, text: str) -> list[str]:
        """The characters of ``text``."""
        return list(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """The tokens joined with nothing between them."""
        return "".join(tokens)


@dataclass(frozen=True)
class WordTokenizer:
    """Tokens are the matches of a regular expression, left to right.

    The default pattern keeps runs of word characters together and makes each
    punctuation mark a token of its own; whitespace separates tokens and is lost,
    so ``detokenize`` joins with single spaces (``"Hi, you" → "Hi , you"``).
    Empty matches are skipped.
    """

    pattern: str = r"\w+|[^\w\s]"
    lowercase: bool = False  # fold case before matching, so "The" and "the" share an id
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            regex = re.compile(self.pattern)
        except re.error as error:
            raise DataError(
                f"pattern: {self.pattern!r} is not a valid regular expression ({error})"
            ) from None
        object.__setattr__(self, "_regex", regex)

    def tokenize(self, text: str) -> list[str]:
        """The non-empty matches of the pattern in ``text``."""
        if self.lowercase:
            text = text.lower()
        return [match.group() for match in self._regex.finditer(text) if match.group()]

    def detokenize(self, tokens: Sequence[str]) -> str:
        """The tokens joined with single spaces."""
        return " ".join(tokens)


_BPE_MISSING = "byte-pair encoding needs the 'tokenizers' package: pip install 'rnnkit[bpe]'"
# Byte-level BPE starts from all 256 bytes, so no text is ever out of vocabulary.
_BYTE_ALPHABET = 256


def _tokenizers() -> ModuleType:
    """The optional ``tokenizers`` package, or a DataError saying how to install it."""
    try:
        return importlib.import_module("tokenizers")
    except ImportError:
        raise DataError(_BPE_MISSING) from None


class BPETokenizer:
    """Byte-level byte-pair encoding, trained on the user's own text (optional ``bpe`` extra).

    Built on the ``tokenizers`` package, but only ever trained locally
    (:meth:`train`) or read from JSON this class wrote (:meth:`from_json`):
    nothing is downloaded. Tokens are byte-level strings (a leading ``Ġ`` marks a
    space), and ``detokenize`` restores the text exactly. The special tokens are
    trained in as whole tokens, so ``<eos>`` in the text stays one token.
    """

    def __init__(self, backend: Any) -> None:
        """Wrap a ``tokenizers.Tokenizer``; use :meth:`train` or :meth:`from_json` instead."""
        self._backend = backend

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn merges from ``texts`` until there are ``vocab_size`` tokens.

        ``vocab_size`` counts the 256 byte tokens and the four special tokens, so
        it is at least 260.
        """
        least = _BYTE_ALPHABET + len(SPECIAL_TOKENS)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < least:
            raise ValueError(f"vocab_size: expected an int ≥ {least}, got {vocab_size!r}")
        tk = _tokenizers()
        backend = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
        backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator((str(text) for text in texts), trainer=trainer)
        return cls(backend)

    @property
    def vocab_size(self) -> int:
        """How many tokens the trained model holds (bytes, merges and special tokens)."""
        return int(self._backend.get_vocab_size())

    def tokenize(self, text: str) -> list[str]:
        """The byte-level BPE tokens of ``text``."""
        return [str(token) for token in self._backend.encode(text).tokens]

    def detokenize(self, tokens: Sequence[str]) -> str:
        """The text the tokens came from."""
        return str(self._backend.decoder.decode(list(tokens)))

    def to_json(self) -> str:
        """The trained model as JSON text (the ``tokenizers`` format)."""
        return str(self._backend.to_str())

    @classmethod
    def from_json(cls, text: str | bytes, *, path: Path | str | None = None) -> BPETokenizer:
        """Read what :meth:`to_json` wrote; anything else raises :class:`DataError`."""
        tk = _tokenizers()
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            backend = tk.Tokenizer.from_str(text)
        except Exception as error:
            # The Rust extension raises plain Exception on a bad file; whatever it
            # is, the file is at fault, and the user should see it as such.
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(f"not a BPE tokenizer JSON file ({detail})", path=path) from None
        return cls(backend)
