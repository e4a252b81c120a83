"""The text-classification task: texts → word ids → recurrent encoder → pooling → class.

The many-to-one recipe for sentiment, topic or spam, end to end:

1. read ``(text, label)`` pairs: a bundled dataset (``rotten-tomatoes``,
   ``tweets-sentiment``) or the user's CSV/TSV/JSONL files
   (:func:`rnnkit.data.formats.table.read_labelled_texts`): one file split 80/10/10
   by a seeded permutation, or three files for train, valid and test;
2. tokenise into (lowercased) words and build the vocabulary and the label list on
   the training part only; rare words become ``<unk>``;
3. cut each part into length-bucketed, padded batches
   (:func:`rnnkit.data.batching.bucket_batches`), so little of a batch is padding;
4. train a :class:`~rnnkit.models.classifier.SequenceClassifier` built by
   :func:`rnnkit.models.build_model` (embedding → recurrent encoder → pooling →
   softmax or σ head), with dropout on the words, the embeddings and the pooled vector;
5. report accuracy, macro-F1 and the confusion matrix, beside the accuracy of
   always answering the training part's commonest label.

The checkpoint's artifacts hold the vocabulary and the labels, so :func:`load_run`
rebuilds everything :func:`evaluate` and :func:`predict` need. The helpers for
labels, metrics and probabilities are shared with the sequence-classification task.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit.configuration import check_dropout, check_positive_ints
from rnnkit.data.batching import bucket_batches, pad, split_indices
from rnnkit.data.errors import DataError
from rnnkit.data.formats.table import read_labelled_texts
from rnnkit.data.formats.text import read_text
from rnnkit.data.vocab import PAD_ID, UNK_ID, Vocabulary, WordTokenizer
from rnnkit.metrics import accuracy, confusion_matrix, macro_f1
from rnnkit.models import build_model
from rnnkit.models.classifier import ClassifierConfig, SequenceBatch, SequenceClassifier
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
LABELS_ARTIFACT = "labels.json"
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class ClassificationTask:
    """What to read, how to tokenise it and how to batch it.

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
        batch_size: texts per batch; batches hold texts of similar length.
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
    batch_size: int = 32
    split_seed: int = 0
    word_dropout: float = 0.2
    embed_dropout: float = 0.5
    pool_dropout: float = 0.3

    def __post_init__(self) -> None:
        check_positive_ints(self, "min_freq", "max_length", "batch_size")
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


def check_data_paths(data: tuple[str, ...]) -> None:
    if len(data) not in (0, 1, 3):
        raise ValueError(
            f"data: expected one file (split 80/10/10) or three (train, valid, test), "
            f"got {len(data)}"
        )


def _trainer() -> TrainerConfig:
    # Batches are pre-bucketed by the task: each training item is one whole batch.
    # From scratch on ~10k short texts the model overfits within a few epochs: strong
    # decoupled weight decay (AdamW), early stopping on validation accuracy with the
    # best epoch's weights restored, and clipping at 5 for the odd large gradient.
    return TrainerConfig(
        epochs=15,
        batch_size=1,
        clip_norm=5.0,
        optimizer=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=0.1),
        early_stopping=EarlyStoppingConfig(monitor="val_accuracy", mode="max", patience=3),
    )


def _model() -> ClassifierConfig:
    # A small bidirectional LSTM with max pooling: on rotten-tomatoes, 64 units did
    # better than 128 (79 % test against 77 %): the data, not the capacity, limits it.
    return ClassifierConfig(
        vocab_size=1, embed=64, hidden=64, bidirectional=True, pooling="max", head="multiclass"
    )


@dataclass(frozen=True)
class ClassificationRun:
    """The resolved configuration of a text-classification run (``config.toml``).

    ``model.vocab_size`` and ``model.num_classes`` are filled in by :func:`prepare`.
    """

    kind: Literal["classify"] = "classify"
    task: ClassificationTask = field(default_factory=ClassificationTask)
    model: ClassifierConfig = field(default_factory=_model)
    trainer: TrainerConfig = field(default_factory=_trainer)


Run = ClassificationRun


# --------------------------------------------------------------------------- labels and metrics
# Shared with rnnkit.tasks.sequence_classification.


def label_order(labels: Iterable[str]) -> list[str]:
    """The distinct labels, sorted: numerically when every label is an integer."""
    distinct = set(labels)
    if all(_is_int(label) for label in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def check_labels(parts: dict[str, list[str]], labels: Sequence[str], where: str) -> None:
    """Every label of every part is among ``labels`` (those of the training part)."""
    known = set(labels)
    for name, part in parts.items():
        unknown = sorted(set(part) - known)
        if unknown:
            shown = ", ".join(repr(label) for label in unknown[:5])
            raise DataError(
                f"{where}: the {name} part has label(s) {shown} that the training part "
                f"lacks (expected only {', '.join(repr(x) for x in labels[:10])})"
            )


def labels_json(labels: Sequence[str]) -> bytes:
    return json.dumps({"labels": list(labels)}, ensure_ascii=False).encode()


def labels_from_json(data: bytes, run_dir: Path | str) -> list[str]:
    try:
        labels = json.loads(data.decode("utf-8"))["labels"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise DataError('labels.json: expected {"labels": [...]}', path=run_dir) from None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError("labels.json: expected a list of label strings", path=run_dir)
    return labels


def class_probabilities(model: SequenceClassifier, inputs: Tensor, lengths: Tensor) -> Tensor:
    """P(class) ``(B, C)`` from a binary (σ) or multiclass (softmax) head."""
    probs = model.predict(inputs, lengths).float()
    if probs.dim() == 1:  # binary head: P(y = 1)
        probs = torch.stack([1.0 - probs, probs], dim=-1)
    return probs


def scores(predicted: Sequence[int], gold: Sequence[int], num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (over every class of the run) of class ids."""
    classes = list(range(num_classes))
    return {
        "accuracy": accuracy(predicted, gold),
        "macro_f1": macro_f1(predicted, gold, labels=classes),
    }


def evaluate_batches(model: nn.Module, batches: Iterator[SequenceBatch]) -> dict[str, float]:
    """The Trainer's ``evaluate``: accuracy and macro-F1 on the validation batches."""
    assert isinstance(model, SequenceClassifier)
    predicted: list[int] = []
    gold: list[int] = []
    for batch in batches:
        probs = class_probabilities(model, batch.inputs, batch.lengths)
        predicted += probs.argmax(-1).tolist()
        gold += batch.targets.long().tolist()
    return scores(predicted, gold, _num_classes(model))


def _num_classes(model: SequenceClassifier) -> int:
    out: nn.Linear = model.head.out
    return max(2, out.out_features)


def class_evaluation(
    model: SequenceClassifier,
    batches: Iterable[SequenceBatch],
    labels: Sequence[str],
    train_labels: Sequence[str],
    split: str,
) -> Evaluation:
    """Accuracy, macro-F1, mean loss and the confusion matrix of a split, beside the
    accuracy of always answering the training part's commonest label."""
    predicted: list[int] = []
    gold: list[int] = []
    total = 0.0
    model.eval()
    with torch.no_grad():
        for batch in batches:
            total += float(model(batch).total)
            probs = class_probabilities(model, batch.inputs, batch.lengths)
            predicted += probs.argmax(-1).tolist()
            gold += batch.targets.long().tolist()
    if not gold:
        raise DataError(f"{split}: no examples to evaluate")
    commonest = Counter(train_labels).most_common(1)[0][0]
    majority = labels.index(commonest)
    metrics = {
        **scores(predicted, gold, len(labels)),
        "loss": total / len(gold),
        "majority_accuracy": accuracy([majority] * len(gold), gold),
        "examples": float(len(gold)),
    }
    matrix = confusion_matrix(predicted, gold, labels=list(range(len(labels))))
    details = {
        "confusion_matrix": {"labels": list(labels), "matrix": matrix},
        "majority_label": commonest,
    }
    return Evaluation(split, metrics, details)


def top_classes(probs: Tensor, labels: Sequence[str], top: int) -> list[tuple[str, float]]:
    """The ``top`` likeliest labels of one row of probabilities, with their probabilities."""
    values, ids = probs.topk(min(top, probs.numel()))
    return [(labels[i], round(float(p), 6)) for i, p in zip(ids.tolist(), values, strict=True)]


def label_prediction(
    shown: str, record: dict[str, Any], pairs: list[tuple[str, float]]
) -> Prediction:
    """``label 0.912 (other 0.088)  INPUT``, and its JSON record."""
    best, p = pairs[0]
    rest = ", ".join(f"{label} {q:.3f}" for label, q in pairs[1:])
    line = f"{best} {p:.3f}" + (f" ({rest})" if rest else "") + f"\t{shown}"
    return Prediction(line, {**record, "label": best, "probabilities": dict(pairs)})


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Texts:
    """The task's data: token ids and label ids per split, with what made them."""

    vocab: Vocabulary
    labels: list[str]
    train_labels: list[str]  # the training part's label names (for the majority baseline)
    splits: dict[str, tuple[list[list[int]], list[int]]]


def read_parts(task: ClassificationTask) -> dict[str, list[tuple[str, str]]]:
    """The task's ``(text, label)`` pairs as ``train``, ``valid`` and ``test``."""
    if task.data:

        def read(path: str) -> list[tuple[str, str]]:
            return read_labelled_texts(
                path,
                text_column=task.text_column,
                label_column=task.label_column,
                comment=task.comment,
            )

        if len(task.data) == 3:
            return dict(zip(SPLITS, map(read, task.data), strict=True))
        rows = read(task.data[0])
        if len(rows) < 10:
            raise DataError(
                f"{len(rows)} rows are too few to split 80/10/10 (expected at least "
                "10, or give three files: train, valid, test)",
                path=task.data[0],
            )
        parts = split_indices(len(rows), (0.8, 0.1, 0.1), seed=task.split_seed)
        return {name: [rows[i] for i in part] for name, part in zip(SPLITS, parts, strict=True)}
    from rnnkit.data.forms import LabelledTexts
    from rnnkit.data.registry import fetch, info

    form = info(task.dataset).form
    if form != "LabelledTexts":
        raise DataError(
            f"dataset: {task.dataset!r} is not a labelled-text dataset (it is "
            f"{form}); try rotten-tomatoes or tweets-sentiment"
        )
    dataset = fetch(task.dataset)
    assert isinstance(dataset, LabelledTexts)
    missing = [name for name in SPLITS if name not in dataset.splits]
    if missing:
        raise DataError(f"dataset: {task.dataset!r} has no {missing[0]} split")
    return {name: list(dataset.splits[name]) for name in SPLITS}


def tokenize(text: str, task: ClassificationTask) -> list[str]:
    return WordTokenizer(lowercase=task.lowercase).tokenize(text)[: task.max_length]


def encode(text: str, vocab: Vocabulary, task: ClassificationTask) -> list[int]:
    """A text's ids; a text with no tokens becomes one ``<unk>`` (a length of at least 1)."""
    return vocab.encode(tokenize(text, task)) or [UNK_ID]


def read_texts(task: ClassificationTask) -> Texts:
    """Read, split and encode; vocabulary and labels come from the training part only."""
    parts = read_parts(task)
    for name, rows in parts.items():
        if not rows:
            raise DataError(f"data: the {name} part is empty (expected some labelled texts)")
    train_tokens = [tokenize(text, task) for text, _ in parts["train"]]
    vocab = Vocabulary.build(train_tokens, min_freq=task.min_freq, max_size=task.max_vocab)
    train_labels = [label for _, label in parts["train"]]
    labels = label_order(train_labels)
    if len(labels) < 2:
        raise DataError(
            f"data: the training part has one label ({labels[0]!r}); a classifier "
            "needs at least two"
        )
    check_labels({name: [y for _, y in rows] for name, rows in parts.items()}, labels, "data")
    index = {label: i for i, label in enumerate(labels)}
    splits = {
        name: ([encode(text, vocab, task) for text, _ in rows], [index[y] for _, y in rows])
        for name, rows in parts.items()
    }
    return Texts(vocab, labels, train_labels, splits)


def text_batches(
    ids: list[list[int]],
    targets: list[int],
    batch_size: int,
    *,
    seed: int,
    shuffle: bool,
    binary: bool = False,
) -> list[SequenceBatch]:
    """Padded batches of texts of similar length (longest first within a batch)."""
    groups = bucket_batches([len(x) for x in ids], batch_size, seed=seed, shuffle=shuffle)
    batches = []
    for group in groups:
        inputs, lengths = pad([ids[i] for i in group], PAD_ID)
        target = torch.tensor([targets[i] for i in group])
        batches.append(SequenceBatch(inputs, lengths, target.float() if binary else target))
    return batches


def _first(items: list[SequenceBatch]) -> SequenceBatch:
    return items[0]  # each item is already a whole batch


# --------------------------------------------------------------------------- the model


class WordDropout(nn.Module):
    """In training, replace each real token id by ``<unk>`` with probability ``p``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, ids: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return ids
        drop = (torch.rand(ids.shape, device=ids.device) < self.p) & (ids != PAD_ID)
        return ids.masked_fill(drop, UNK_ID)


class Regularised(nn.Module):
    """Dropout after a pooling: on the pooled vector, before the output layer."""

    def __init__(self, inner: nn.Module, p: float) -> None:
        super().__init__()
        self.inner = inner
        self.dropout = nn.Dropout(p)

    def forward(self, outputs: Tensor, final: Tensor, mask: Tensor) -> Tensor:
        pooled: Tensor = self.dropout(self.inner(outputs, final, mask))
        return pooled


def build_classifier(config: ClassifierConfig, task: ClassificationTask) -> SequenceClassifier:
    """The configured classifier (:func:`rnnkit.models.build_model`) with the task's
    dropouts around its parts: words → embedding → units, and the pooled vector.

    Only the input layer and the pooling are wrapped, so the weights keep their names
    under ``inputs.1`` (the embedding) and ``pooling.inner``.
    """
    model = build_model(config)
    assert isinstance(model, SequenceClassifier)
    model.inputs = nn.Sequential(
        WordDropout(task.word_dropout), model.inputs, nn.Dropout(task.embed_dropout)
    )
    model.pooling = Regularised(model.pooling, task.pool_dropout)
    return model


# --------------------------------------------------------------------------- the contract


def prepare(run: ClassificationRun) -> Prepared[ClassificationRun]:
    """Read and encode the texts; fill in the vocabulary size and the classes."""
    if run.model.head == "regression":
        raise DataError("model.head: classify needs 'multiclass' or 'binary', got 'regression'")
    texts = read_texts(run.task)
    if run.model.head == "binary" and len(texts.labels) != 2:
        raise DataError(
            f"model.head: 'binary' needs two labels, the data has "
            f"{len(texts.labels)} ({', '.join(texts.labels[:5])})"
        )
    model = replace(
        run.model,
        vocab_size=len(texts.vocab),
        input_size=None,
        num_classes=len(texts.labels),
        pad_id=PAD_ID,
    )
    run = replace(run, model=model, trainer=replace(run.trainer, batch_size=1))
    summary = []
    for name, (ids, targets) in texts.splits.items():
        counts = Counter(targets)
        shares = ", ".join(
            f"{texts.labels[k]} {counts[k] / len(targets):.0%}" for k in range(len(texts.labels))
        )
        tokens = sum(len(x) for x in ids)
        summary.append(
            f"{name}: {len(ids):,} texts, {tokens / len(ids):.1f} tokens each on average ({shares})"
        )
    unknown = sum(x.count(UNK_ID) for x in texts.splits["train"][0])
    total = sum(len(x) for x in texts.splits["train"][0])
    summary.append(
        f"vocabulary: {len(texts.vocab):,} tokens (4 special), built on train; "
        f"{unknown / total:.1%} of training tokens are <unk>"
    )
    summary.append(f"labels: {', '.join(texts.labels)}")
    return Prepared(run, summary, texts)


def fit(
    prepared: Prepared[ClassificationRun], out: Path | str, *, resume: bool = False
) -> TrainResult:
    """Train (or resume) the prepared run into the folder ``out``."""
    run, texts = prepared.run, prepared.data
    torch.manual_seed(run.trainer.seed)
    model = build_classifier(run.model, run.task)
    binary = run.model.head == "binary"
    size = run.task.batch_size
    train_ids, train_targets = texts.splits["train"]
    valid_ids, valid_targets = texts.splits["valid"]
    trainer = Trainer(
        model,
        run.trainer,
        text_batches(
            train_ids, train_targets, size, seed=run.trainer.seed, shuffle=True, binary=binary
        ),
        _first,
        val=text_batches(valid_ids, valid_targets, size, seed=0, shuffle=False, binary=binary),
        evaluate=evaluate_batches,
        run_dir=out,
        resume=resume,
        artifacts={
            VOCAB_ARTIFACT: texts.vocab.to_json().encode(),
            LABELS_ARTIFACT: labels_json(texts.labels),
        },
        config_to_save=run,
    )
    return trainer.fit()


def train(run: ClassificationRun, out: Path | str, *, resume: bool = False) -> TrainResult:
    """Prepare and train (or resume) a run into the folder ``out``."""
    return fit(prepare(run), out, resume=resume)


@dataclass(frozen=True)
class Loaded:
    """A trained run read back: the model in eval mode and what it needs."""

    model: SequenceClassifier
    vocab: Vocabulary
    labels: list[str]
    run: ClassificationRun


def load_run(run_dir: Path | str) -> Loaded:
    """The trained model (best checkpoint, else last), its vocabulary, labels and configuration."""
    run = read_config(run_dir, ClassificationRun)
    checkpoint = load_weights(run_dir)
    vocab = Vocabulary.from_json(
        artifact(checkpoint, VOCAB_ARTIFACT, run_dir),
        path=artifact_file(checkpoint, VOCAB_ARTIFACT),
    )
    labels = labels_from_json(artifact(checkpoint, LABELS_ARTIFACT, run_dir), run_dir)
    model = build_classifier(run.model, run.task)
    load_into(model, checkpoint)
    model.eval()
    return Loaded(model, vocab, labels, run)


def evaluate(run_dir: Path | str, *, split: str = "test", data: str | None = None) -> Evaluation:
    """Accuracy, macro-F1, loss and the confusion matrix on a split of the run's data, or on
    the labelled file ``data`` (read with the run's column names)."""
    loaded = load_run(run_dir)
    run = loaded.run
    task = run.task
    if data is not None:
        rows = read_labelled_texts(
            data, text_column=task.text_column, label_column=task.label_column, comment=task.comment
        )
        check_labels({"file's": [y for _, y in rows]}, loaded.labels, str(data))
        index = {label: i for i, label in enumerate(loaded.labels)}
        ids = [encode(text, loaded.vocab, task) for text, _ in rows]
        targets = [index[y] for _, y in rows]
        train_labels = read_parts_labels(task, fallback=loaded.labels)
        split = data
    else:
        texts = read_texts(task)
        if texts.vocab != loaded.vocab or texts.labels != loaded.labels:
            raise DataError(
                "the data's vocabulary or labels differ from the run's (was the data changed?)"
            )
        ids, targets = texts.splits[split]
        train_labels = texts.train_labels
    batches = text_batches(
        ids, targets, task.batch_size, seed=0, shuffle=False, binary=run.model.head == "binary"
    )
    return class_evaluation(loaded.model, batches, loaded.labels, train_labels, split)


def read_parts_labels(task: ClassificationTask, fallback: list[str]) -> list[str]:
    """The training part's labels (for the majority baseline); ``fallback`` when the
    run's data can no longer be read."""
    try:
        return [label for _, label in read_parts(task)["train"]]
    except (DataError, OSError):
        return fallback


def read_inputs(options: PredictOptions) -> list[str]:
    texts = list(options.inputs)
    if options.file is not None:
        texts += [line for line in read_text(options.file).splitlines() if line.strip()]
    if not texts:
        raise DataError("predict: give texts as arguments or --file (one text per line)")
    return texts


@torch.no_grad()
def predict(run_dir: Path | str, options: PredictOptions) -> list[Prediction]:
    """The likeliest label of each text, with the ``top`` classes' probabilities."""
    loaded = load_run(run_dir)
    texts = read_inputs(options)
    results = []
    size = loaded.run.task.batch_size
    for start in range(0, len(texts), size):
        chunk = texts[start : start + size]
        inputs, lengths = pad([encode(t, loaded.vocab, loaded.run.task) for t in chunk], PAD_ID)
        probs = class_probabilities(loaded.model, inputs, lengths)
        for text, row in zip(chunk, probs, strict=True):
            pairs = top_classes(row, loaded.labels, options.top)
            results.append(label_prediction(text, {"input": text}, pairs))
    return results
