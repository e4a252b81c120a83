"""The tagging task: one tag per token (NER, POS) with a bidirectional tagger, optional CRF.

1. read tagged sentences (a bundled dataset, or the user's CoNLL/CoNLL-U files: one
   file split 80/10/10 by a seeded shuffle of its sentences, or three files for
   train, valid and test);
2. build the word vocabulary on the training sentences only (optionally lowercased;
   words seen fewer than ``min_freq`` times become ``<unk>``, so ``<unk>``'s
   embedding is trained on real rare words); the tag set comes from every part of
   the run's data, since a tag that only the test part holds still needs an output;
3. train :class:`~rnnkit.models.tagger.Tagger` (per-token softmax, or a CRF with
   Viterbi decoding), stopping early on the validation span F1;
4. score with conlleval's strict span precision/recall/F1, overall and per entity
   type (:func:`rnnkit.metrics.span_scores`), and token accuracy. Tag sets that are
   neither BIO nor BIOES (part-of-speech tags) are scored by token accuracy alone.

The checkpoint's artifacts hold the vocabulary and the tag set, so :func:`load_run`
rebuilds everything :func:`evaluate` and :func:`predict` need.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import pad, split_indices
from rnnkit.data.errors import DataError
from rnnkit.data.formats.conll import detect_scheme, read_tagged
from rnnkit.data.formats.text import read_text
from rnnkit.data.vocab import PAD_ID, Vocabulary
from rnnkit.metrics import accuracy, span_scores
from rnnkit.models import build_model
from rnnkit.models.tagger import TagBatch, Tagger, TaggerConfig
from rnnkit.tasks.task import (
    Evaluation,
    Prediction,
    PredictOptions,
    Prepared,
    artifact,
    artifact_file,
    load_into,
    load_weights,
    read_config,
)
from rnnkit.training.trainer import (
    EarlyStoppingConfig,
    OptimizerConfig,
    Trainer,
    TrainerConfig,
    TrainResult,
)

VOCAB_ARTIFACT = "vocab.json"
TAGS_ARTIFACT = "tags.json"
SPLITS = ("train", "valid", "test")

Sentence = list[tuple[str, str]]
Scheme = Literal["BIO", "BIOES"]


@dataclass(frozen=True)
class TaggingTask:
    """What to read and how to cut it.

    Attributes:
        dataset: a bundled tagged dataset (``rnnkit datasets list``), used when
            ``data`` is not given.
        data: the user's CoNLL (``.conll``, ``.txt``, …) or CoNLL-U (``.conllu``)
            files: one, split 80/10/10 by a seeded shuffle of its sentences, or
            three for train, valid and test.
        token_column, tag_column: column indices in those files (Python indices;
            None: CoNLL's first and last, CoNLL-U's FORM and UPOS).
        comment: CoNLL lines starting with this are skipped (e.g. ``"# "``).
        lowercase: lowercase words before the vocabulary sees them (fewer, denser
            words; capitals, a strong NER cue, are lost).
        min_freq: training words seen fewer times become ``<unk>``.
        split_seed: the shuffle that splits a single file.
    """

    dataset: str = "wnut16"
    data: tuple[str, ...] = ()
    token_column: int | None = None
    tag_column: int | None = None
    comment: str | None = None
    lowercase: bool = False
    min_freq: int = 2
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_positive_ints(self, "min_freq")
        if len(self.data) not in (0, 1, 3):
            raise ValueError(
                f"data: expected one file, or three (train, valid, test), got {len(self.data)}"
            )


def _model() -> TaggerConfig:
    # vocab_size and num_tags are placeholders that prepare() fills in from the data.
    return TaggerConfig(vocab_size=1, num_tags=1, embed=100, hidden=128, dropout=0.5)


def _trainer() -> TrainerConfig:
    # Lample et al. 2016-style: small batches, clipping at 5, keep the best span F1.
    stopping = EarlyStoppingConfig(monitor="val_span_f1", mode="max", patience=5)
    return TrainerConfig(epochs=30, batch_size=16, clip_norm=5.0,
                         optimizer=OptimizerConfig(lr=2e-3), early_stopping=stopping)  # fmt: skip


@dataclass(frozen=True)
class TaggingRun:
    """The resolved configuration of a tagging run (``config.toml``).

    ``model.vocab_size`` and ``model.num_tags`` are filled in from the data by :func:`prepare`.
    """

    kind: Literal["tag"] = "tag"
    task: TaggingTask = field(default_factory=TaggingTask)
    model: TaggerConfig = field(default_factory=_model)
    trainer: TrainerConfig = field(default_factory=_trainer)


Run = TaggingRun


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

    def to_json(self) -> str:
        return json.dumps({"tags": list(self.tags), "scheme": self.scheme}, indent=1) + "\n"

    @staticmethod
    def from_json(data: bytes, *, path: Path | str) -> TagSet:
        try:
            document = json.loads(data.decode("utf-8"))
            tags, scheme = document["tags"], document["scheme"]
        except (ValueError, KeyError, TypeError):
            raise DataError(
                "tags.json: expected {'tags': [...], 'scheme': ...}", path=path
            ) from None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags) or not tags:
            raise DataError("tags.json: expected a non-empty list of tags", path=path)
        if scheme not in ("BIO", "BIOES", None):
            raise DataError(f"tags.json: unknown scheme {scheme!r}", path=path)
        return TagSet(tuple(tags), scheme)

    def ids(self, tags: Sequence[str], *, where: str) -> list[int]:
        index = {tag: i for i, tag in enumerate(self.tags)}
        for tag in tags:
            if tag not in index:
                raise DataError(f"{where}: tag {tag!r} is not one the run knows "
                                f"(expected one of {', '.join(self.tags)})")  # fmt: skip
        return [index[tag] for tag in tags]


@dataclass(frozen=True)
class Corpus:
    """The task's sentences by split, with the vocabulary and tag set built from them."""

    sentences: dict[str, list[Sentence]]
    vocab: Vocabulary
    tagset: TagSet


def _read(path: str, task: TaggingTask) -> list[Sentence]:
    return read_tagged(path, token_column=task.token_column, tag_column=task.tag_column,
                       comment=task.comment)  # fmt: skip


def read_parts(task: TaggingTask) -> dict[str, list[Sentence]]:
    """The task's sentences as ``train``, ``valid`` and ``test``."""
    if len(task.data) == 3:
        return {name: _read(path, task) for name, path in zip(SPLITS, task.data, strict=True)}
    if task.data:
        sentences = _read(task.data[0], task)
        if len(sentences) < 3:
            raise DataError(f"{len(sentences)} sentences: too few to split into train, valid "
                            "and test (expected at least 3)", path=task.data[0])  # fmt: skip
        parts = split_indices(len(sentences), (0.8, 0.1, 0.1), task.split_seed)
        return {
            name: [sentences[i] for i in part] for name, part in zip(SPLITS, parts, strict=True)
        }
    from rnnkit.data.forms import TaggedSentences
    from rnnkit.data.registry import fetch

    dataset = fetch(task.dataset)
    if not isinstance(dataset, TaggedSentences):
        raise DataError(f"dataset: {task.dataset!r} is not tagged sentences "
                        f"(it is a {type(dataset).__name__})")  # fmt: skip
    return {name: dataset.splits[name] for name in SPLITS}


def words(sentence: Sequence[str], lowercase: bool) -> list[str]:
    return [word.lower() for word in sentence] if lowercase else list(sentence)


def read_corpus(task: TaggingTask) -> Corpus:
    """Read and split the sentences; the vocabulary sees the training words only."""
    parts = read_parts(task)
    for name in ("train", "valid"):
        if not parts[name]:
            raise DataError(f"data: the {name} part has no sentences")
    vocab = Vocabulary.build(
        (words([w for w, _ in s], task.lowercase) for s in parts["train"]), min_freq=task.min_freq
    )
    tagset = TagSet.build([s for part in parts.values() for s in part])
    return Corpus(parts, vocab, tagset)


Example = tuple[list[int], list[int]]


def encode(sentences: Sequence[Sentence], vocab: Vocabulary, tagset: TagSet, lowercase: bool,
           *, where: str) -> list[Example]:  # fmt: skip
    """(word ids, tag ids) per sentence; unknown words become ``<unk>``."""
    return [
        (
            vocab.encode(words([w for w, _ in s], lowercase)),
            tagset.ids([t for _, t in s], where=f"{where}, sentence {i + 1}"),
        )
        for i, s in enumerate(sentences)
    ]


def collate(examples: list[Example]) -> TagBatch:
    tokens, lengths = pad([ids for ids, _ in examples], PAD_ID)
    tags, _ = pad([tags for _, tags in examples], 0)
    return TagBatch(tokens, tags, lengths)


def _tag_names(predicted: torch.Tensor, lengths: torch.Tensor, tagset: TagSet) -> list[list[str]]:
    return [
        [tagset.tags[i] for i in row[:length]]
        for row, length in zip(predicted.tolist(), lengths.tolist(), strict=True)
    ]


def scores(predicted: list[list[str]], gold: list[list[str]], scheme: Scheme | None
           ) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """Span P/R/F1 (when the tags have a scheme) and token accuracy; per-type details."""
    flat_p = [t for s in predicted for t in s]
    flat_g = [t for s in gold for t in s]
    metrics = {"accuracy": accuracy(flat_p, flat_g)}
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
    metrics["tokens"] = float(len(flat_g))
    return metrics, details


def prepare(run: TaggingRun) -> Prepared[TaggingRun]:
    """Read the sentences, build the vocabulary and tag set; fill in their sizes."""
    corpus = read_corpus(run.task)
    model = replace(run.model, vocab_size=len(corpus.vocab), num_tags=len(corpus.tagset.tags),
                    pad_id=PAD_ID)  # fmt: skip
    trainer = run.trainer
    stopping = trainer.early_stopping
    if corpus.tagset.scheme is None and stopping is not None and "span" in stopping.monitor:
        # Plain labels (POS) have no spans: keep the best token accuracy instead.
        trainer = replace(trainer, early_stopping=replace(stopping, monitor="val_accuracy"))
    run = replace(run, model=model, trainer=trainer)
    for name, part in corpus.sentences.items():
        encode(part, corpus.vocab, corpus.tagset, run.task.lowercase, where=name)  # checks tags
    summary = [f"{name}: {len(part):,} sentences, {sum(map(len, part)):,} tokens"
               for name, part in corpus.sentences.items()]  # fmt: skip
    summary.append(f"vocabulary: {len(corpus.vocab):,} words (4 special), built on train "
                   f"(min_freq {run.task.min_freq})")  # fmt: skip
    scheme = corpus.tagset.scheme or "plain labels"
    summary.append(f"tags: {len(corpus.tagset.tags)} ({scheme})")
    return Prepared(run, summary, corpus)


def fit(prepared: Prepared[TaggingRun], out: Path | str, *, resume: bool = False) -> TrainResult:
    """Train (or resume) the prepared run into the folder ``out``."""
    run, corpus = prepared.run, prepared.data
    torch.manual_seed(run.trainer.seed)
    model = build_model(run.model)
    train_items, val_items = (
        encode(corpus.sentences[name], corpus.vocab, corpus.tagset, run.task.lowercase, where=name)
        for name in ("train", "valid")
    )
    tagset: TagSet = corpus.tagset

    def evaluate_fn(net: nn.Module, batches: Iterator[TagBatch]) -> dict[str, float]:
        assert isinstance(net, Tagger)
        predicted: list[list[str]] = []
        gold: list[list[str]] = []
        for batch in batches:
            predicted += _tag_names(net.predict(batch.tokens, batch.lengths), batch.lengths, tagset)
            gold += _tag_names(batch.tags, batch.lengths, tagset)
        return scores(predicted, gold, tagset.scheme)[0]

    trainer = Trainer(
        model,
        run.trainer,
        train_items,
        collate,
        val=val_items,
        evaluate=evaluate_fn,
        run_dir=out,
        resume=resume,
        artifacts={
            VOCAB_ARTIFACT: corpus.vocab.to_json().encode(),
            TAGS_ARTIFACT: corpus.tagset.to_json().encode(),
        },
        config_to_save=run,
    )
    return trainer.fit()


def train(run: TaggingRun, out: Path | str, *, resume: bool = False) -> TrainResult:
    """Prepare and train (or resume) a run into the folder ``out``."""
    return fit(prepare(run), out, resume=resume)


def load_run(run_dir: Path | str) -> tuple[Tagger, Vocabulary, TagSet, TaggingRun]:
    """The trained tagger (best checkpoint, else last), its vocabulary, tag set and configuration."""
    run = read_config(run_dir, TaggingRun)
    checkpoint = load_weights(run_dir)
    vocab = Vocabulary.from_json(
        artifact(checkpoint, VOCAB_ARTIFACT, run_dir),
        path=artifact_file(checkpoint, VOCAB_ARTIFACT),
    )
    tagset = TagSet.from_json(artifact(checkpoint, TAGS_ARTIFACT, run_dir), path=run_dir)
    model = build_model(run.model)
    assert isinstance(model, Tagger)
    load_into(model, checkpoint)
    model.eval()
    return model, vocab, tagset, run


def tag_sentences(model: Tagger, token_lists: Sequence[Sequence[str]], vocab: Vocabulary,
                  tagset: TagSet, lowercase: bool, batch_size: int = 64) -> list[list[str]]:  # fmt: skip
    """The predicted tags of each sentence (a list of words), in order."""
    out: list[list[str]] = []
    device = next(model.parameters()).device
    for start in range(0, len(token_lists), batch_size):
        chunk = [vocab.encode(words(s, lowercase)) for s in token_lists[start : start + batch_size]]
        tokens, lengths = pad(chunk, PAD_ID)
        out += _tag_names(model.predict(tokens.to(device), lengths), lengths, tagset)
    return out


@torch.no_grad()
def evaluate(run_dir: Path | str, *, split: str = "test", data: str | None = None) -> Evaluation:
    """Span P/R/F1 (overall; per type in ``details``), token accuracy and the loss per
    token on a split of the run's data, or on the CoNLL file ``data``."""
    model, vocab, tagset, run = load_run(run_dir)
    if data is not None:
        sentences, where = _read(data, run.task), data
    else:
        sentences, where = read_parts(run.task)[split], split
    if not sentences:
        raise DataError(f"the {where} part has no sentences")
    examples = encode(sentences, vocab, tagset, run.task.lowercase, where=where)
    predicted: list[list[str]] = []
    total = count = 0.0
    for start in range(0, len(examples), 64):
        batch = collate(examples[start : start + 64])
        loss = model(batch)
        total, count = total + float(loss.total), count + float(loss.n_targets)
        predicted += _tag_names(model.predict(batch.tokens, batch.lengths), batch.lengths, tagset)
    gold = [[t for _, t in s] for s in sentences]
    metrics, details = scores(predicted, gold, tagset.scheme)
    return Evaluation(where, {**metrics, "loss": total / count}, details)


Span = tuple[str, int, int]  # (type, first token, last token)


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


def _inputs(options: PredictOptions) -> list[str]:
    sentences = list(options.inputs)
    if options.file is not None:
        sentences += [line for line in read_text(options.file).splitlines() if line.strip()]
    if not sentences:
        raise DataError("predict: give sentences as arguments or --file (one per line)")
    for i, sentence in enumerate(sentences, start=1):
        if not sentence.split():
            raise DataError(f"predict: input {i} is empty (expected words)")
    return sentences


@torch.no_grad()
def predict(run_dir: Path | str, options: PredictOptions) -> list[Prediction]:
    """A tag per word of each sentence (words split at whitespace), and its entities."""
    model, vocab, tagset, run = load_run(run_dir)
    token_lists = [sentence.split() for sentence in _inputs(options)]
    results = []
    for tokens, tags in zip(
        token_lists,
        tag_sentences(model, token_lists, vocab, tagset, run.task.lowercase),
        strict=True,
    ):
        spans = entity_spans(tags) if tagset.scheme is not None else []
        records = [{"type": kind, "start": first, "end": last + 1,
                    "text": " ".join(tokens[first : last + 1])} for kind, first, last in spans]  # fmt: skip
        text = " ".join(f"{token}/{tag}" for token, tag in zip(tokens, tags, strict=True))
        if spans:
            text += "\n  " + "; ".join(f"{r['type']}: {r['text']!r}" for r in records)
        results.append(Prediction(text, {"tokens": tokens, "tags": tags, "spans": records}))
    return results
