"""The tagging task: one tag per token (NER, POS) with a bidirectional tagger, optional CRF.

1. read tagged sentences (a bundled dataset, or the user's CoNLL/CoNLL-U files: one
   file split 80/10/10 by a seeded shuffle of its sentences, or three files for
   train, valid and test);
2. build the word vocabulary on the training sentences only (optionally lowercased;
   words seen fewer than ``min_freq`` times become ``<unk>``, so ``<unk>``'s
   embedding is trained on real rare words); the tag set comes from every part of
   the run's data, since a tag that only the test part holds still needs an output
   (:class:`~rnnkit.data.tags.TagSet`);
3. hand the Trainer one example per sentence, with its length, and train
   :class:`~rnnkit.models.tagger.Tagger` (per-token softmax, or a CRF with Viterbi
   decoding), stopping early on the validation span F1;
4. score with conlleval's strict span precision/recall/F1, overall and per entity
   type (:func:`rnnkit.metrics.span_scores`), and token accuracy. Tag sets that are
   neither BIO nor BIOES (part-of-speech tags) are scored by token accuracy alone.

The checkpoint keeps the vocabulary and the tag set (:class:`TagAssets`).

``--dataset selective-copying`` tags the selective-copying task of Mamba
(:mod:`rnnkit.data.selective_copying`): k data symbols scattered among noise in
``length`` steps, then k markers, and at the j-th marker the tag is the j-th data
symbol. Train, valid and test are generated from seeds ``data_seed``, +1 and +2;
the loss and the metrics count the markers alone (the other steps are read, never
scored), the tagger is causal (it reads left to right, as the paper's models do; a
CRF, which scores every step, is refused), and ``evaluate`` reports the accuracy on
the copied tokens, the share of sequences copied exactly, and chance (1/V).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import pad
from rnnkit.data.errors import DataError
from rnnkit.data.formats.conll import read_tagged
from rnnkit.data.forms import TaggedSentences
from rnnkit.data.registry import fetch_splits
from rnnkit.data.selective_copying import (
    LENGTH,
    MARKER_NAME,
    SYMBOLS,
    TOKENS,
    CopyingExamples,
    selective_copying_chance,
    tag_names,
    vocabulary,
)
from rnnkit.data.splits import SPLITS, check_data_paths, check_parts, split_files
from rnnkit.data.tags import (
    MAX_WORD_CHARS,
    UNSCORED,
    Sentence,
    TagSet,
    encode,
    entities,
    marked,
    scores,
    spellings,
    words,
)
from rnnkit.data.vocab import PAD_ID, Vocabulary
from rnnkit.models.tagger import TagBatch, Tagger, TaggerConfig
from rnnkit.report.page import Section
from rnnkit.tasks.options import PredictOptions
from rnnkit.tasks.task import Evaluation, Loaded, Prediction, Prepared, Task
from rnnkit.training.sampler import Examples
from rnnkit.training.trainer import EarlyStoppingConfig, OptimizerConfig, TrainerConfig

SELECTIVE_COPYING = "selective-copying"


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
        length: selective copying: the steps the data tokens are scattered in (the
            markers follow them).
        tokens: selective copying: data tokens to copy, k (as many markers).
        symbols: selective copying: data symbols V (the paper's vocabulary of 16
            counts the noise and the marker besides).
        train_size, valid_size, test_size: selective copying: sequences per split.
        data_seed: selective copying: train, valid and test come from seeds
            data_seed, +1 and +2.
    """

    dataset: str = "wnut16"
    data: tuple[str, ...] = ()
    token_column: int | None = None
    tag_column: int | None = None
    comment: str | None = None
    lowercase: bool = False
    min_freq: int = 2
    split_seed: int = 0
    length: int = LENGTH
    tokens: int = TOKENS
    symbols: int = SYMBOLS
    train_size: int = 20_000
    valid_size: int = 1_000
    test_size: int = 1_000
    data_seed: int = 0

    def __post_init__(self) -> None:
        check_positive_ints(self, "min_freq", "length", "tokens", "train_size", "valid_size",
                            "test_size")  # fmt: skip
        check_data_paths(self.data)
        symbols = self.symbols
        if isinstance(symbols, bool) or not isinstance(symbols, int) or symbols < 2:
            raise ValueError(f"symbols: expected an int ≥ 2, got {symbols!r}")

    @property
    def copying(self) -> bool:
        return not self.data and self.dataset == SELECTIVE_COPYING


@dataclass(frozen=True)
class TaggingRun:
    """The resolved configuration of a tagging run (``config.toml``)."""

    kind: Literal["tag"] = "tag"
    task: TaggingTask = field(default_factory=TaggingTask)
    # vocab_size and num_tags are placeholders that prepare() fills in from the data.
    model: TaggerConfig = field(default_factory=lambda: TaggerConfig(
        vocab_size=1, num_tags=1, embed=100, hidden=128, dropout=0.5))  # fmt: skip
    # Lample et al. 2016-style: small batches, clipping at 5, keep the best span F1.
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=30, batch_size=16, clip_norm=5.0, optimizer=OptimizerConfig(lr=2e-3),
        early_stopping=EarlyStoppingConfig(monitor="val_span_f1", mode="max", patience=5)))  # fmt: skip


# Word ids, tag ids; and each word's character ids for a character-aware tagger.
Example = tuple[list[int], list[int]] | tuple[list[int], list[int], list[list[int]]]


Parts = dict[str, list[Sentence]]  # the task's sentences by split
Copies = dict[str, CopyingExamples]  # selective copying's generated splits


@dataclass(frozen=True)
class TagAssets:
    """What a trained tagger keeps: its word vocabulary, its tag set, and the characters
    of the training words (for character-aware words; a run saved before it had them
    reads an empty one)."""

    vocab: Vocabulary
    tagset: TagSet
    chars: Vocabulary = field(default_factory=lambda: Vocabulary([]))


def read_parts(task: TaggingTask) -> Parts:
    """The task's sentences as ``train``, ``valid`` and ``test``."""
    if task.copying:
        raise DataError("dataset: selective-copying is generated from a seed, not read")
    if task.data:
        return split_files(task.data, lambda path: _read(path, task), seed=task.split_seed,
                           least=3, what="sentences")  # fmt: skip
    return fetch_splits(task.dataset, TaggedSentences, "tagged sentences")


def copying_split(task: TaggingTask, split: str) -> CopyingExamples:
    """Selective copying's ``split``, generated from seed ``data_seed`` + its index."""
    size = {"train": task.train_size, "valid": task.valid_size, "test": task.test_size}[split]
    seed = task.data_seed + SPLITS.index(split)
    return CopyingExamples.generate(size, task.length, task.tokens, task.symbols, seed)


def _read(path: str, task: TaggingTask) -> list[Sentence]:
    return read_tagged(path, token_column=task.token_column, tag_column=task.tag_column,
                       comment=task.comment)  # fmt: skip


DEFAULT_STOPPING = TaggingRun().trainer.early_stopping


class Tag(Task[TaggingRun, Parts | Copies, TagAssets, Example, TagBatch, Tagger]):
    """``rnnkit train tag``: tagged sentences → a tag per token (softmax or CRF), or
    selective copying → the copied symbol at each marker."""

    name = "tag"

    def prepare(self, run: TaggingRun) -> Prepared[TaggingRun, TagAssets, Parts | Copies]:
        """Read the sentences, build the vocabulary and tag set; fill in their sizes."""
        if run.task.copying:
            return self._prepare_copying(run)
        task, parts = run.task, read_parts(run.task)
        check_parts(parts, "sentences", ("train", "valid"))
        # The vocabulary sees the training words only, the tag set every part's tags.
        vocab = Vocabulary.build((words([w for w, _ in s], task.lowercase) for s in parts["train"]),
                                 min_freq=task.min_freq)  # fmt: skip
        tagset = TagSet.build([s for part in parts.values() for s in part])
        chars = Vocabulary.build(
            (list(w[:MAX_WORD_CHARS]) for s in parts["train"] for w, _ in s)
        )  # the characters of the training words, as written
        model = replace(run.model, vocab_size=len(vocab), num_tags=len(tagset.tags),
                        pad_id=PAD_ID, char_vocab_size=len(chars))  # fmt: skip
        trainer, stopping = run.trainer, run.trainer.early_stopping
        if tagset.scheme is None and stopping is not None and "span" in stopping.monitor:
            # Plain labels (POS) have no spans: keep the best token accuracy instead.
            trainer = replace(trainer, early_stopping=replace(stopping, monitor="val_accuracy"))
        run = replace(run, model=model, trainer=trainer)
        summary = [f"{name}: {len(part):,} sentences, {sum(map(len, part)):,} tokens"
                   for name, part in parts.items()]  # fmt: skip
        summary.append(f"vocabulary: {len(vocab):,} words (4 special), built on train "
                       f"(min_freq {run.task.min_freq})")  # fmt: skip
        summary.append(f"tags: {len(tagset.tags)} ({tagset.scheme or 'plain labels'})")
        if run.model.char_embed:
            summary.append(f"characters: {len(chars):,} (4 special), each word read by a "
                           f"BiLSTM of {run.model.char_hidden} units per direction")  # fmt: skip
        return Prepared(run, summary, TagAssets(vocab, tagset, chars), parts)

    def _prepare_copying(self, run: TaggingRun) -> Prepared[TaggingRun, TagAssets, Parts | Copies]:
        """Generate the three splits; the symbols' vocabulary, the data symbols as tags."""
        task = run.task
        if task.length < task.tokens:  # checked here: flags are checked one by one first
            raise DataError(f"task.length: expected at least tokens ({task.tokens}) steps to "
                            f"scatter them in, got {task.length}")  # fmt: skip
        if run.model.crf:
            raise DataError("model.crf: selective copying scores the markers alone; a CRF "
                            "scores every step (drop --crf)")  # fmt: skip
        if run.model.char_embed:
            raise DataError("model.char_embed: selective copying's tokens are symbols, not "
                            "words to spell (drop --char-embed)")  # fmt: skip
        copies: Parts | Copies = {name: copying_split(task, name) for name in SPLITS}
        vocab, tagset = vocabulary(task.symbols), TagSet(tag_names(task.symbols), None)
        # Causal, as the paper's models: what a marker asks for is all in the steps before it.
        model = replace(run.model, vocab_size=len(vocab), num_tags=len(tagset.tags),
                        pad_id=PAD_ID, bidirectional=False)  # fmt: skip
        trainer = run.trainer
        if trainer.early_stopping == DEFAULT_STOPPING:
            # A fixed budget is the experiment (accuracy sits at chance for a while before
            # it climbs): no early stop unless one was asked for.
            trainer = replace(trainer, early_stopping=None)
        elif trainer.early_stopping is not None and "span" in trainer.early_stopping.monitor:
            trainer = replace(trainer, early_stopping=replace(trainer.early_stopping,
                                                              monitor="val_accuracy"))  # fmt: skip
        steps = task.length + task.tokens
        summary = [f"{name}: {len(copies[name]):,} sequences of {steps:,} steps (seed "
                   f"{task.data_seed + SPLITS.index(name)})" for name in SPLITS]  # fmt: skip
        chance = selective_copying_chance(task.symbols)
        summary.append(f"selective copying: {task.tokens} data tokens of {task.symbols} symbols "
                       f"among noise in {task.length:,} steps, then {task.tokens} markers; loss "
                       f"and accuracy on the markers alone (chance {chance:.1%}); a causal "
                       "tagger")  # fmt: skip
        run = replace(run, model=model, trainer=trainer)
        return Prepared(run, summary, TagAssets(vocab, tagset), copies)

    def load_assets(self, run: TaggingRun, files: Mapping[str, bytes], where: Path) -> TagAssets:
        if "chars.json" not in files:  # a run saved before character-aware words
            files = {**files, "chars.json": Vocabulary([]).to_json().encode()}
        return super().load_assets(run, files, where)

    def examples(self, prepared: Prepared[TaggingRun, TagAssets, Parts | Copies],
                 split: str) -> Examples[Example]:  # fmt: skip
        part = prepared.data[split]
        if isinstance(part, CopyingExamples):
            return Examples(part)  # one length: nothing to bucket
        return self._examples(prepared.run, prepared.assets, part, split)

    def _examples(self, run: TaggingRun, assets: TagAssets, sentences: Sequence[Sentence],
                  where: str) -> Examples[Example]:  # fmt: skip
        chars = assets.chars if run.model.char_embed else None
        items = encode(sentences, assets.vocab, assets.tagset, run.task.lowercase, where=where,
                       chars=chars)  # fmt: skip
        return Examples(items, lengths=[len(item[0]) for item in items])

    def collate(self, examples: list[Example]) -> TagBatch:
        tokens, lengths = pad([item[0] for item in examples], PAD_ID)
        tags, _ = pad([item[1] for item in examples], 0)
        chars = None
        if examples and len(examples[0]) == 3:
            spelt = [item[2] for item in examples if len(item) == 3]
            width = max((len(w) for words_ in spelt for w in words_), default=1) or 1
            chars = torch.zeros(*tokens.shape, width, dtype=torch.int64)  # (B, T, W)
            for row, words_ in enumerate(spelt):
                for t, ids in enumerate(words_):
                    chars[row, t, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        scored = tags != UNSCORED  # (B, T)
        if bool(scored.all()):
            return TagBatch(tokens, tags, lengths, chars=chars)
        return TagBatch(tokens, tags.masked_fill(~scored, 0), lengths, scored, chars)

    def metrics(self, prepared: Prepared[TaggingRun, TagAssets, Parts | Copies], model: Tagger,
                batches: Iterable[TagBatch]) -> dict[str, float]:  # fmt: skip
        tagset = prepared.assets.tagset
        predicted, gold = _answers(model, batches, tagset)
        return scores(predicted, gold, tagset.scheme)[0]

    def evaluate(self, loaded: Loaded[TaggingRun, TagAssets, Tagger], split: str,
                 data: str | None) -> Evaluation:  # fmt: skip
        """Span P/R/F1 (overall; per type in ``details``), token accuracy, the share of
        sentences tagged exactly and the loss per token on a split of the run's data, or
        on the CoNLL file ``data``; for selective copying, the same on the copied tokens
        (the markers), beside chance."""
        task, where = loaded.run.task, data or split
        details: dict[str, object] = {}
        if task.copying:
            if data is not None:
                raise DataError("a selective-copying run evaluates on its generated splits "
                                "(use --split)")  # fmt: skip
            examples: Examples[Example] = Examples(list(copying_split(task, split)))
            details = {"length": task.length, "tokens": task.tokens, "symbols": task.symbols,
                       "seed": task.data_seed + SPLITS.index(split)}  # fmt: skip
        else:
            sentences = _read(data, task) if data is not None else read_parts(task)[split]
            if not sentences:
                raise DataError(f"the {where} part has no sentences")
            examples = self._examples(loaded.run, loaded.assets, sentences, where)
        size = loaded.run.trainer.batch_size
        total, count = self.loss(loaded.model, examples, size)
        tagset = loaded.assets.tagset
        predicted, gold = _answers(loaded.model, self.batches(examples, size), tagset)
        metrics, per_type = scores(predicted, gold, tagset.scheme)
        metrics["loss"] = total / count
        if task.copying:
            metrics["chance"] = selective_copying_chance(task.symbols)
        return Evaluation(where, metrics, {**per_type, **details})

    def tag(self, loaded: Loaded[TaggingRun, TagAssets, Tagger],
            sentences: Sequence[Sequence[str]]) -> list[list[str]]:  # fmt: skip
        """The predicted tags of each sentence (a list of words), in order."""
        vocab, lowercase = loaded.assets.vocab, loaded.run.task.lowercase
        items: list[Example] = [
            (vocab.encode(words(s, lowercase)), [0] * len(s)) for s in sentences
        ]
        if loaded.run.model.char_embed:
            items = [(*item, spellings(s, loaded.assets.chars))
                     for item, s in zip(items, sentences, strict=True)]  # fmt: skip
        examples = Examples(items)  # no lengths: kept in order
        batches = self.batches(examples, loaded.run.trainer.batch_size)
        return _answers(loaded.model, batches, loaded.assets.tagset)[0]

    def predict(self, loaded: Loaded[TaggingRun, TagAssets, Tagger],
                options: PredictOptions) -> list[Prediction]:  # fmt: skip
        """A tag per word of each sentence (words split at whitespace), and its entities."""
        lines = options.lines("sentences")
        for i, line in enumerate(lines, start=1):
            if not line.split():
                raise DataError(f"input {i} is empty (expected words)")
        token_lists = [line.split() for line in lines]
        if loaded.run.task.copying:
            return self._predict_copying(loaded, token_lists)
        results = []
        for tokens, tags in zip(token_lists, self.tag(loaded, token_lists), strict=True):
            spans = entities(tokens, tags) if loaded.assets.tagset.scheme is not None else []
            text = " ".join(f"{token}/{tag}" for token, tag in zip(tokens, tags, strict=True))
            if spans:
                text += "\n  " + "; ".join(f"{r['type']}: {r['text']!r}" for r in spans)
            results.append(Prediction(text, {"tokens": tokens, "tags": tags, "spans": spans}))
        return results

    def _predict_copying(self, loaded: Loaded[TaggingRun, TagAssets, Tagger],
                         token_lists: list[list[str]]) -> list[Prediction]:  # fmt: skip
        """The symbols copied at the markers (``?``) of each sequence of symbols."""
        for i, tokens in enumerate(token_lists, start=1):
            if MARKER_NAME not in tokens:
                raise DataError(f"input {i} has no marker {MARKER_NAME!r}: nothing to copy")
        results = []
        for tokens, tags in zip(token_lists, self.tag(loaded, token_lists), strict=True):
            copied = [tag for token, tag in zip(tokens, tags, strict=True) if token == MARKER_NAME]
            results.append(Prediction(" ".join(copied), {"tokens": tokens, "copied": copied}))
        return results

    def report(self, loaded: Loaded[TaggingRun, TagAssets, Tagger], limit: int = 8
               ) -> list[Section]:  # fmt: skip
        """The first test sentences, true and predicted: spans bracketed (``[words]TYPE``),
        or ``word/TAG`` pairs for plain labels; for selective copying, the data tokens and
        what the markers copied."""
        if loaded.run.task.copying:
            return [self._report_copying(loaded, limit)]
        title = "Tagged sentences"
        sentences = read_parts(loaded.run.task)["test"][:limit]
        if not sentences:
            return [Section(title, missing="the test split has no sentences")]
        tokens = [[token for token, _ in sentence] for sentence in sentences]
        scheme = loaded.assets.tagset.scheme
        blocks = [f"true:      {marked(line, [t for _, t in gold], scheme)}\n"
                  f"predicted: {marked(line, guess, scheme)}"
                  for line, gold, guess in zip(tokens, sentences, self.tag(loaded, tokens),
                                               strict=True)]  # fmt: skip
        text = [f"The first {len(blocks)} test sentences; [words]TYPE marks a span."]
        return [Section(title, text=text, blocks=blocks)]

    def _report_copying(self, loaded: Loaded[TaggingRun, TagAssets, Tagger],
                        limit: int) -> Section:  # fmt: skip
        test = copying_split(loaded.run.task, "test")[:limit]
        if not test:
            return Section("Copied tokens", missing="the test split has no sequences")
        batches = [self.collate(list[Example](test))]
        copied, true = _answers(loaded.model, batches, loaded.assets.tagset)
        blocks = [f"data tokens: {' '.join(t)}\ncopied:      {' '.join(c)}"
                  for t, c in zip(true, copied, strict=True)]  # fmt: skip
        text = [f"The first {len(blocks)} test sequences: their data tokens in order, and what "
                "the markers copied."]  # fmt: skip
        return Section("Copied tokens", text=text, blocks=blocks)

    def step_names(self, loaded: Loaded[TaggingRun, TagAssets, Tagger],
                   batch: TagBatch) -> list[str]:  # fmt: skip
        return loaded.assets.vocab.decode(batch.tokens[0, : int(batch.lengths[0])],
                                          strip_special=False)  # fmt: skip


@torch.no_grad()
def _answers(model: Tagger, batches: Iterable[TagBatch],
             tagset: TagSet) -> tuple[list[list[str]], list[list[str]]]:  # fmt: skip
    """The predicted and the true tags of each sentence, batch after batch: at every
    token, or at the scored steps alone where the batch marks them (selective copying's
    markers)."""
    device = next(model.parameters()).device
    predicted: list[list[str]] = []
    gold: list[list[str]] = []
    for batch in batches:
        chars = None if batch.chars is None else batch.chars.to(device)
        guess = model.predict(batch.tokens.to(device), batch.lengths, chars).cpu()  # (B, T)
        tags, rows = batch.tags.cpu(), range(batch.tokens.shape[0])  # (B, T)
        steps = ([torch.arange(int(n)) for n in batch.lengths] if batch.scored is None
                 else [batch.scored[row].cpu().nonzero().squeeze(1) for row in rows])  # fmt: skip
        for row, where in zip(rows, steps, strict=True):
            predicted.append(tagset.names(guess[row, where].tolist()))
            gold.append(tagset.names(tags[row, where].tolist()))
    return predicted, gold


TASK = Tag()
