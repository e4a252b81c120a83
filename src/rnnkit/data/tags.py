"""Tagged sentences: their tag set, their ids, their scores and the entities their tags mark.

A sentence is ``[(token, tag), ...]`` (:class:`~rnnkit.data.forms.TaggedSentences`).
The tag set of a run comes from every part of its data, ``O`` first, so that a tag
only the test part holds still has an output; its scheme (BIO, BIOES or none, for
plain labels such as part-of-speech tags) is detected from the tags
(:func:`rnnkit.data.formats.conll.detect_scheme`). Entities are read from tags with
conlleval's rules, the same rules :func:`rnnkit.metrics.span_scores` counts with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.data.errors import DataError
from rnnkit.data.formats.conll import Scheme, detect_scheme
from rnnkit.data.vocab import Vocabulary
from rnnkit.metrics import accuracy, span_scores

Sentence = list[tuple[str, str]]
Span = tuple[str, int, int]  # (type, first token, last token)
UNSCORED = -1
"""The tag id of a step that is read but has no target (selective copying's stretch
before the markers): the tagger neither trains on it nor scores it."""


@dataclass(frozen=True)
class TagSet:
    """The tags in id order (``O`` first when present) and their scheme (None: plain labels)."""

    tags: tuple[str, ...]
    scheme: Scheme | None

    @staticmethod
    def build(sentences: Sequence[Sentence]) -> TagSet:
        found = {tag for sentence in sentences for _, tag in sentence}
        ordered = sorted(found, key=lambda tag: (tag != "O", tag))
        return TagSet(tuple(ordered), detect_scheme(sentences))

    def to_json(self) -> bytes:
        return (
            json.dumps({"tags": list(self.tags), "scheme": self.scheme}, indent=1) + "\n"
        ).encode()

    @staticmethod
    def from_json(data: bytes, *, path: Path | str) -> TagSet:
        try:
            document = json.loads(data.decode("utf-8"))
            tags, scheme = document["tags"], document["scheme"]
        except (ValueError, KeyError, TypeError):
            raise DataError("expected {'tags': [...], 'scheme': ...}", path=path) from None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags) or not tags:
            raise DataError("expected a non-empty list of tags", path=path)
        if scheme not in ("BIO", "BIOES", None):
            raise DataError(f"unknown scheme {scheme!r}", path=path)
        return TagSet(tuple(tags), scheme)

    def ids(self, tags: Sequence[str], *, where: str) -> list[int]:
        index = {tag: i for i, tag in enumerate(self.tags)}
        for tag in tags:
            if tag not in index:
                raise DataError(f"{where}: tag {tag!r} is not one the run knows "
                                f"(expected one of {', '.join(self.tags)})")  # fmt: skip
        return [index[tag] for tag in tags]

    def names(self, ids: Sequence[int]) -> list[str]:
        return [self.tags[i] for i in ids]


def scores(predicted: list[list[str]], gold: list[list[str]], scheme: Scheme | None
           ) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """Span P/R/F1 (when the tags have a scheme), token accuracy and ``exact``, the share
    of sentences whose every tag is right; per-type details."""
    flat_p = [t for s in predicted for t in s]
    flat_g = [t for s in gold for t in s]
    exact = accuracy([tuple(s) for s in predicted], [tuple(s) for s in gold])
    metrics = {"accuracy": accuracy(flat_p, flat_g), "exact": exact}
    details: dict[str, Any] = {}
    if scheme is not None:
        spans = span_scores(predicted, gold, scheme)
        metrics = {"span_f1": spans.micro.f1, "span_precision": spans.micro.precision,
                   "span_recall": spans.micro.recall, **metrics,
                   "spans": float(spans.micro.support)}  # fmt: skip
        details["per_type"] = {
            name: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}
            for name, s in spans.per_type.items()
        }
    metrics["tokens"], metrics["sequences"] = float(len(flat_g)), float(len(gold))
    return metrics, details


def words(sentence: Sequence[str], lowercase: bool) -> list[str]:
    """The words as the vocabulary sees them."""
    return [word.lower() for word in sentence] if lowercase else list(sentence)


#: Characters kept per word for character-aware tagging: longer tokens (URLs) are cut.
MAX_WORD_CHARS = 24


def spellings(tokens: Sequence[str], chars: Vocabulary) -> list[list[int]]:
    """Each word's character ids (as written, case kept), at most MAX_WORD_CHARS."""
    return [chars.encode(token[:MAX_WORD_CHARS]) for token in tokens]


def encode(sentences: Sequence[Sentence], vocab: Vocabulary, tagset: TagSet, lowercase: bool,
           *, where: str, chars: Vocabulary | None = None) -> list[Any]:  # fmt: skip
    """(word ids, tag ids) per sentence, and each word's character ids when ``chars`` is
    given; unknown words become ``<unk>``, an unknown tag is refused naming ``where`` and
    the sentence."""
    encoded: list[Any] = []
    for i, s in enumerate(sentences):
        tokens = [w for w, _ in s]
        item = (vocab.encode(words(tokens, lowercase)),
                tagset.ids([t for _, t in s], where=f"{where}, sentence {i + 1}"))  # fmt: skip
        encoded.append(item if chars is None else (*item, spellings(tokens, chars)))
    return encoded


def entity_spans(tags: Sequence[str]) -> list[Span]:
    """The entities of one tagged sentence, read with conlleval's rules (as
    :func:`rnnkit.metrics.span_scores` reads them): an ``I-X`` or ``E-X`` that does
    not continue an open X entity starts one, and a change of type ends one."""
    spans: list[Span] = []
    prev_prefix, prev_type, start = "O", "", 0
    for j, tag in enumerate([*tags, "O"]):
        prefix, kind = (
            ("O", "") if tag == "O" or len(tag) < 3 or tag[1] != "-" else (tag[0], tag[2:])
        )
        ends = (prev_prefix in "ES" or (prev_prefix in "BI" and prefix in "BSO")
                or (prev_prefix != "O" and prev_type != kind))  # fmt: skip
        starts = (prefix in "BS" or (prev_prefix in "OES" and prefix in "IE")
                  or (prefix != "O" and prev_type != kind))  # fmt: skip
        if ends:
            spans.append((prev_type, start, j - 1))
        if starts:
            start = j
        prev_prefix, prev_type = prefix, kind
    return spans


def entities(tokens: Sequence[str], tags: Sequence[str]) -> list[dict[str, Any]]:
    """The entities as JSON records: ``{"type", "start", "end" (exclusive), "text"}``."""
    return [{"type": kind, "start": first, "end": last + 1,
             "text": " ".join(tokens[first : last + 1])}
            for kind, first, last in entity_spans(tags)]  # fmt: skip


def marked(tokens: Sequence[str], tags: Sequence[str], scheme: Scheme | None) -> str:
    """A tagged sentence for people: its entities bracketed, ``[John Smith]PER visited
    [Paris]LOC``; plain labels (no scheme, e.g. part of speech) as ``word/TAG`` pairs."""
    if scheme is None:
        return " ".join(f"{token}/{tag}" for token, tag in zip(tokens, tags, strict=True))
    out = list(tokens)
    for kind, first, last in entity_spans(tags):
        out[first] = "[" + out[first]
        out[last] = out[last] + "]" + kind
    return " ".join(out)
