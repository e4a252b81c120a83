"""Source/target pairs for sequence to sequence: splits by source, vocabularies, ids.

A pair is ``(source, target)`` text (read by :func:`rnnkit.data.formats.pairs.read_pairs`
or a bundled :class:`~rnnkit.data.forms.Pairs` dataset); each side is cut into
units by :func:`~rnnkit.data.formats.pairs.split_units` (``char`` or ``word``). A
source may come with several targets (CMUdict's ``read``: R EH1 D and R IY1 D):
splits keep all of a source's pairs together (:func:`split_by_source`), and
scoring groups them as one source's references (:func:`references`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rnnkit.data.batching import pad
from rnnkit.data.errors import DataError
from rnnkit.data.formats.pairs import Level, split_units
from rnnkit.data.splits import SPLITS, split_indices
from rnnkit.data.vocab import BOS_ID, EOS_ID, PAD_ID, Vocabulary
from rnnkit.models.seq2seq import PairBatch
from rnnkit.training.sampler import Examples

Pair = tuple[str, str]
Example = tuple[list[int], list[int]]  # source ids, BOS + target ids + EOS


@dataclass(frozen=True)
class Vocabularies:
    """A source and a target vocabulary, built on the training pairs only."""

    source: Vocabulary
    target: Vocabulary

    @staticmethod
    def build(train: Sequence[Pair], source_level: Level, target_level: Level,
              min_freq: int) -> Vocabularies:  # fmt: skip
        source = (split_units(s, source_level) for s, _ in train)
        target = (split_units(t, target_level) for _, t in train)
        return Vocabularies(Vocabulary.build(source, min_freq=min_freq),
                            Vocabulary.build(target, min_freq=min_freq))  # fmt: skip


def split_by_source(pairs: Sequence[Pair], seed: int, *, where: str) -> dict[str, list[Pair]]:
    """``train``, ``valid`` and ``test``: 80/10/10 of the distinct sources
    (:func:`~rnnkit.data.splits.split_indices`), every pair going where its source
    went, in file order; ``where`` (the file) names the error for too few sources."""
    sources = list(dict.fromkeys(source for source, _ in pairs))
    if len(sources) < 10:
        raise DataError(f"{len(sources)} distinct sources are too few to split 80/10/10 "
                        "(expected at least 10, or give three files: train, valid, test)",
                        path=where)  # fmt: skip
    parts = split_indices(len(sources), (0.8, 0.1, 0.1), seed)
    part_of = {sources[i]: name for name, part in zip(SPLITS, parts, strict=True) for i in part}
    return {name: [pair for pair in pairs if part_of[pair[0]] == name] for name in SPLITS}


def source_ids(source: str, vocab: Vocabulary, level: Level) -> list[int]:
    """A source's ids; unknown units become ``<unk>``."""
    units = split_units(source, level)
    if not units:
        raise DataError(f"source {source!r} has no {level} units")
    return vocab.encode(units)


def encode(pairs: Sequence[Pair], vocabs: Vocabularies, source_level: Level,
           target_level: Level) -> Examples[Example]:  # fmt: skip
    """One example per pair, (source ids, BOS + target ids + EOS), with the target's
    length to bucket by: the decoder's steps are most of a batch's work."""
    items = [(source_ids(source, vocabs.source, source_level),
              [BOS_ID, *vocabs.target.encode(split_units(target, target_level)), EOS_ID])
             for source, target in pairs]  # fmt: skip
    return Examples(items, lengths=[len(target) for _, target in items])


def collate(examples: list[Example]) -> PairBatch:
    """Examples as one padded batch (``<pad>`` after each source and target)."""
    source, source_lengths = pad([s for s, _ in examples], PAD_ID)
    target, target_lengths = pad([t for _, t in examples], PAD_ID)
    return PairBatch(source, source_lengths, target, target_lengths)


def references(pairs: Sequence[Pair], level: Level) -> dict[str, list[list[str]]]:
    """Each distinct source (in first-seen order) with all its targets as units, in
    file order: the references it is scored against."""
    grouped: dict[str, list[list[str]]] = {}
    for source, target in pairs:
        grouped.setdefault(source, []).append(split_units(target, level))
    return grouped


def join(units: Sequence[str], level: Level) -> str:
    """Units back into text: characters as they are, words with spaces."""
    return "".join(units) if level == "char" else " ".join(units)
