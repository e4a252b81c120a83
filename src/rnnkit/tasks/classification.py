"""The text-classification task: texts → word ids → recurrent encoder → pooling → class.

The many-to-one recipe for sentiment, topic or spam, end to end:

1. read ``(text, label)`` pairs: a bundled dataset (``rotten-tomatoes``,
   ``tweets-sentiment``) or the user's CSV/TSV/JSONL files
   (:func:`rnnkit.data.formats.table.read_labelled_texts`): one file split 80/10/10
   by a seeded permutation, or three files for train, valid and test;
2. tokenise into (lowercased) words and build the vocabulary and the label list on
   the training part only; rare words become ``<unk>``;
3. hand the Trainer one example per text, with its length: it batches texts of
   similar length (:mod:`rnnkit.training.sampler`), so little of a batch is padding;
4. train a :class:`~rnnkit.models.classifier.SequenceClassifier` built by
   :func:`rnnkit.models.build_model` (embedding → recurrent encoder → pooling →
   softmax or σ head), with dropout on the words, the embeddings and the pooled vector;
5. report accuracy, macro-F1 and the confusion matrix, beside the accuracy of
   always answering the training part's commonest label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from rnnkit.configuration import check_dropout, check_positive_ints
from rnnkit.data.batching import pad
from rnnkit.data.errors import DataError
from rnnkit.data.formats.table import read_labelled_texts
from rnnkit.data.forms import LabelledTexts
from rnnkit.data.labels import Labels
from rnnkit.data.registry import fetch_splits
from rnnkit.data.splits import check_data_paths, check_parts, split_files
from rnnkit.data.vocab import PAD_ID, UNK_ID, Vocabulary, WordTokenizer
from rnnkit.metrics import classification_report
from rnnkit.models.classifier import ClassifierConfig, SequenceBatch, SequenceClassifier
from rnnkit.models.dropout import regularised
from rnnkit.report.page import Section, confusion_section, wrong_section
from rnnkit.tasks.options import PredictOptions
from rnnkit.tasks.task import Evaluation, Loaded, Prediction, Prepared, Task
from rnnkit.training.sampler import Examples
from rnnkit.training.trainer import EarlyStoppingConfig, OptimizerConfig, TrainerConfig


@dataclass(frozen=True)
class ClassificationTask:
    """What to read, how to tokenise it and how to regularise the words.

    Attributes:
        dataset: a bundled labelled-text dataset (``rnnkit datasets list``), used
            when ``data`` is not given.
        data: the user's CSV/TSV/JSONL files: one, split 80/10/10 by a permutation
            seeded with ``split_seed``, or three for train, valid and test.
        text_column, label_column: the header names (CSV, TSV) or keys (JSONL).
        comment: lines of the user's files starting with this are skipped (e.g.
            ``"#"``); none by default, since a text may start with ``#``.
        lowercase: fold case before tokenising, so "Good" and "good" share an id.
        min_freq: training words seen fewer times become ``<unk>``.
        max_vocab: the most ids in the vocabulary (special tokens included).
        max_length: tokens kept per text; the rest of a longer text is cut off.
        split_seed: seeds the 80/10/10 split of a single file.
        word_dropout: in training, each word becomes ``<unk>`` with this probability
            (Iyyer et al. 2015), so no single word can carry a text's label.
        embed_dropout: dropout on the word embeddings' units (inverted dropout).
        pool_dropout: dropout on the pooled vector, before the output layer.
    """

    dataset: str = "rotten-tomatoes"
    data: tuple[str, ...] = ()
    text_column: str = "text"
    label_column: str = "label"
    comment: str | None = None
    lowercase: bool = True
    min_freq: int = 2
    max_vocab: int | None = 30_000
    max_length: int | None = 400
    split_seed: int = 0
    word_dropout: float = 0.2
    embed_dropout: float = 0.5
    pool_dropout: float = 0.3

    def __post_init__(self) -> None:
        check_positive_ints(self, "min_freq", "max_length")
        if self.max_vocab is not None and (
            isinstance(self.max_vocab, bool)
            or not isinstance(self.max_vocab, int)
            or self.max_vocab < 5
        ):
            raise ValueError(
                f"max_vocab: expected an int ≥ 5 (4 special tokens), got {self.max_vocab!r}"
            )
        check_data_paths(self.data)
        for name in ("word_dropout", "embed_dropout", "pool_dropout"):
            try:
                check_dropout(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        if self.comment == "":
            raise ValueError("comment: expected a prefix such as '#', or none")


@dataclass(frozen=True)
class ClassificationRun:
    """The resolved configuration of a text-classification run (``config.toml``)."""

    kind: Literal["classify"] = "classify"
    task: ClassificationTask = field(default_factory=ClassificationTask)
    # A small bidirectional LSTM with max pooling: on rotten-tomatoes, 64 units did
    # better than 128 (79 % test against 77 %): the data, not the capacity, limits it.
    # vocab_size, num_classes and loss are filled in from the data by Classify.prepare.
    model: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(
        vocab_size=1, embed=64, hidden=64, bidirectional=True, pooling="max",
        head="multiclass"))  # fmt: skip
    # From scratch on ~10k short texts the model overfits within a few epochs: strong
    # decoupled weight decay (AdamW), early stopping on validation accuracy with the
    # best epoch's weights restored, and clipping at 5 for the odd large gradient.
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=15, batch_size=32, clip_norm=5.0,
        optimizer=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=0.1),
        early_stopping=EarlyStoppingConfig(monitor="val_accuracy", mode="max", patience=3)))  # fmt: skip


Example = tuple[list[int], float | int]  # token ids, class id (a 0/1 float for a σ head)


@dataclass(frozen=True)
class TextAssets:
    """What a trained classifier keeps: its vocabulary and its labels."""

    vocab: Vocabulary
    labels: Labels


Parts = dict[str, list[tuple[str, str]]]  # the task's (text, label) pairs by split


def read_parts(task: ClassificationTask) -> Parts:
    """The task's ``(text, label)`` pairs as ``train``, ``valid`` and ``test``; none empty."""
    if task.data:

        def read(path: str) -> list[tuple[str, str]]:
            return read_labelled_texts(path, text_column=task.text_column,
                                       label_column=task.label_column, comment=task.comment)  # fmt: skip

        parts = split_files(task.data, read, seed=task.split_seed, least=10, what="rows")
    else:
        parts = fetch_splits(task.dataset, LabelledTexts, "a labelled-text dataset")
    check_parts(parts, "labelled texts")
    return parts


def tokenize(text: str, task: ClassificationTask) -> list[str]:
    return WordTokenizer(lowercase=task.lowercase).tokenize(text)[: task.max_length]


def encode(text: str, vocab: Vocabulary, task: ClassificationTask) -> list[int]:
    """A text's ids; a text with no tokens becomes one ``<unk>`` (a length of at least 1)."""
    return vocab.encode(tokenize(text, task)) or [UNK_ID]


def text_assets(task: ClassificationTask, parts: Parts) -> TextAssets:
    """The vocabulary and the labels, from the training part only."""
    train = parts["train"]
    vocab = Vocabulary.build([tokenize(text, task) for text, _ in train],
                             min_freq=task.min_freq, max_size=task.max_vocab)  # fmt: skip
    commonest = Counter(label for _, label in train).most_common(1)[0][0]
    labels = replace(Labels.of(label for _, label in train), majority=commonest)
    if len(labels) < 2:
        raise DataError(f"data: the training part has one label ({labels.names[0]!r}); a "
                        "classifier needs at least two")  # fmt: skip
    labels.check({name: [y for _, y in rows] for name, rows in parts.items()}, "data")
    return TextAssets(vocab, labels)


# --------------------------------------------------------------------------- the task


class Classify(Task[ClassificationRun, Parts, TextAssets, Example, SequenceBatch,
                    SequenceClassifier]):  # fmt: skip
    """``rnnkit train classify``: labelled texts → a many-to-one classifier."""

    name = "classify"

    def prepare(self, run: ClassificationRun) -> Prepared[ClassificationRun, TextAssets, Parts]:
        """Read the texts; fill in the vocabulary size, the classes and the loss."""
        if run.model.head == "regression":
            raise DataError("model.head: classify needs 'multiclass' or 'binary', got 'regression'")
        parts = read_parts(run.task)
        assets = text_assets(run.task, parts)
        vocab, labels = assets.vocab, assets.labels
        if run.model.head == "binary" and len(labels) != 2:
            raise DataError(f"model.head: 'binary' needs two labels, the data has {len(labels)} "
                            f"({', '.join(labels.names[:5])})")  # fmt: skip
        model = replace(run.model, vocab_size=len(vocab), input_size=None,
                        num_classes=len(labels), pad_id=PAD_ID).resolved()  # fmt: skip
        run = replace(run, model=model)
        summary = []
        for name, rows in parts.items():
            counts = Counter(label for _, label in rows)
            shares = ", ".join(f"{y} {counts[y] / len(rows):.0%}" for y in labels.names)
            tokens = sum(len(tokenize(text, run.task)) for text, _ in rows)
            summary.append(f"{name}: {len(rows):,} texts, {tokens / len(rows):.1f} tokens each "
                           f"on average ({shares})")  # fmt: skip
        train = [encode(text, vocab, run.task) for text, _ in parts["train"]]
        unknown = sum(ids.count(UNK_ID) for ids in train) / sum(map(len, train))
        summary.append(f"vocabulary: {len(vocab):,} tokens (4 special), built on train; "
                       f"{unknown:.1%} of training tokens are <unk>")  # fmt: skip
        summary.append(f"labels: {', '.join(labels.names)}")
        return Prepared(run, summary, assets, parts)

    def examples(self, prepared: Prepared[ClassificationRun, TextAssets, Parts],
                 split: str) -> Examples[Example]:  # fmt: skip
        return self._examples(prepared.run, prepared.assets, prepared.data[split])

    def _examples(self, run: ClassificationRun, assets: TextAssets,
                  rows: list[tuple[str, str]]) -> Examples[Example]:  # fmt: skip
        ids = [encode(text, assets.vocab, run.task) for text, _ in rows]
        targets = assets.labels.ids([label for _, label in rows])
        binary = run.model.head == "binary"
        items = [(x, float(y) if binary else y) for x, y in zip(ids, targets, strict=True)]
        return Examples(items, lengths=[len(x) for x in ids])

    def collate(self, examples: list[Example]) -> SequenceBatch:
        inputs, lengths = pad([ids for ids, _ in examples], PAD_ID)
        return SequenceBatch(inputs, lengths, torch.tensor([y for _, y in examples]))

    def build_model(self, run: ClassificationRun) -> SequenceClassifier:
        """The configured classifier with the task's dropouts around its parts
        (:func:`rnnkit.models.dropout.regularised`)."""
        task = run.task
        return regularised(super().build_model(run), word=task.word_dropout,
                           embed=task.embed_dropout, pooled=task.pool_dropout, pad_id=PAD_ID,
                           unk_id=UNK_ID)  # fmt: skip

    def metrics(self, prepared: Prepared[ClassificationRun, TextAssets, Parts],
                model: SequenceClassifier, batches: Iterable[SequenceBatch]) -> dict[str, float]:  # fmt: skip
        predicted, gold = _answers(model, batches)
        report, _ = classification_report(predicted, gold, prepared.assets.labels.names)
        return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}

    def _rows(self, loaded: Loaded[ClassificationRun, TextAssets, SequenceClassifier],
              split: str, data: str | None) -> tuple[str, list[tuple[str, str]]]:  # fmt: skip
        """The labelled texts of a split of the run's data, or of the user's file."""
        task = loaded.run.task
        if data is not None:
            rows = read_labelled_texts(data, text_column=task.text_column,
                                       label_column=task.label_column, comment=task.comment)  # fmt: skip
            loaded.assets.labels.check({"file's": [y for _, y in rows]}, str(data))
            return data, rows
        parts = read_parts(task)
        if text_assets(task, parts) != loaded.assets:
            raise DataError("the data's vocabulary or labels differ from the run's (was the "
                            "data changed?)")  # fmt: skip
        return split, parts[split]

    def evaluate(self, loaded: Loaded[ClassificationRun, TextAssets, SequenceClassifier],
                 split: str, data: str | None) -> Evaluation:  # fmt: skip
        """Accuracy, macro-F1, mean loss and the confusion matrix, beside the accuracy of
        always answering the training part's commonest label."""
        where, rows = self._rows(loaded, split, data)
        if not rows:
            raise DataError(f"{where}: no examples to evaluate")
        examples = self._examples(loaded.run, loaded.assets, rows)
        size = loaded.run.trainer.batch_size
        total, count = self.loss(loaded.model, examples, size)
        predicted, gold = _answers(loaded.model, self.batches(examples, size))
        labels = loaded.assets.labels
        metrics, details = classification_report(predicted, gold, labels.names, labels.majority)
        return Evaluation(where, {**metrics, "loss": total / count}, details)

    @torch.no_grad()
    def predict(self, loaded: Loaded[ClassificationRun, TextAssets, SequenceClassifier],
                options: PredictOptions) -> list[Prediction]:  # fmt: skip
        """The likeliest label of each text, with the ``top`` classes' probabilities."""
        texts = options.lines("texts")
        results = []
        size = loaded.run.trainer.batch_size
        for start in range(0, len(texts), size):
            chunk = texts[start : start + size]
            ids, lengths = pad([encode(t, loaded.assets.vocab, loaded.run.task) for t in chunk],
                               PAD_ID)  # fmt: skip
            probs = loaded.model.probabilities(ids, lengths)
            for text, row in zip(chunk, probs, strict=True):
                results.append(Prediction.of_classes(text, {"input": text}, row,
                                                      loaded.assets.labels.names, options.top))  # fmt: skip
        return results

    def report(self, loaded: Loaded[ClassificationRun, TextAssets, SequenceClassifier]
               ) -> list[Section]:  # fmt: skip
        """The test split's confusion matrix and its most confidently wrong texts."""
        evaluation = self.evaluate(loaded, "test", None)
        rows = read_parts(loaded.run.task)["test"][:2000]
        options = PredictOptions(inputs=tuple(text for text, _ in rows), top=1)
        wrong = []
        for (text, gold), answer in zip(rows, self.predict(loaded, options), strict=True):
            label = answer.record["label"]
            if label != gold:
                wrong.append((float(answer.record["probabilities"][label]), text, gold, label))
        matrix = evaluation.details["confusion_matrix"]
        return [confusion_section(evaluation.metrics, matrix, "test"), wrong_section(wrong)]

    def step_names(self, loaded: Loaded[ClassificationRun, TextAssets, SequenceClassifier],
                   batch: SequenceBatch) -> list[str]:  # fmt: skip
        return loaded.assets.vocab.decode(batch.inputs[0, : int(batch.lengths[0])],
                                          strip_special=False)  # fmt: skip


@torch.no_grad()
def _answers(model: SequenceClassifier, batches: Iterable[SequenceBatch]) -> tuple[list[int],
                                                                                   list[int]]:  # fmt: skip
    """The predicted and the true class ids over the batches."""
    device = next(model.parameters()).device
    predicted: list[int] = []
    gold: list[int] = []
    for batch in batches:
        probs = model.probabilities(batch.inputs.to(device), batch.lengths)
        predicted += probs.argmax(-1).tolist()
        gold += batch.targets.long().tolist()
    return predicted, gold


TASK = Classify()
