"""The caption task: one-to-many generation of a text from one condition (a label or a vector).

A :class:`~rnnkit.models.generator.ConditionedGenerator` learns p(text | c), one
token at a time after ``<bos>``, up to ``<eos>``. The condition c is either

* a **label**: a review for a given sentiment. The default data is rotten-tomatoes
  (``fresh``/``rotten``); tweets-sentiment works too, and ``--data`` takes the
  CSV/TSV/JSONL files of :func:`~rnnkit.data.formats.table.read_labelled_texts`
  (a text and a label column); or
* a **feature vector** (the captioning pattern: an image's features → its
  description), from the user's files (:func:`read_feature_texts`):

  - ``.npz`` (``numpy.savez``) with two arrays: ``features``, ``(N, D)`` numbers,
    and ``texts``, ``(N,)`` strings (``np.array(texts, dtype=str)``; object
    arrays are refused, since reading them would mean unpickling), row i of
    ``features`` belonging to ``texts[i]``;
  - ``.csv``/``.tsv`` with a header: the text column plus numeric feature
    columns (``feature_columns``, by default every other column).

  Features are standardised with the training part's mean and standard deviation
  (saved with the run and applied to ``--condition`` vectors too).

One file is split 80/10/10 by a permutation seeded with ``split_seed``; three
files are train, valid and test. Texts become lowercased words or characters;
the vocabulary sees the training part only. A text longer than ``max_length``
tokens is cut, and a cut text gets no ``<eos>`` (the model must not learn to end
where a text was only cut).

Metrics (:func:`evaluate`): the loss per token and the perplexity, with ``<eos>``
counted as a token. For label conditions, whether the condition matters: every
text is scored under each label, and ``label_preference`` is the fraction of texts
whose own label gives the lowest NLL (chance: 1/K); ``other_label_perplexity`` is
the perplexity of the same texts under the other label(s). For vector conditions
the same check pairs each text with another text's vector (a seeded random
pairing): ``vector_preference`` (over the pairs of different texts) and
``other_vector_perplexity``.

:func:`predict` reads the model as a generative classifier: for a text x and each
label y, p(y | x) = p(x | y) / Σ_y' p(x | y'), i.e. a softmax over −NLL(x | y) (a
uniform prior over labels), so its accuracy on a split is ``label_preference``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit import decoding
from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import Scaler, bucket_batches, pad, split_indices
from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import check_labels_seen, one_line, read_bytes, read_utf8
from rnnkit.data.formats.table import read_labelled_texts
from rnnkit.data.formats.text import read_text
from rnnkit.data.vocab import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    CharTokenizer,
    Vocabulary,
    WordTokenizer,
)
from rnnkit.decoding import beam_search
from rnnkit.metrics import confusion_matrix, perplexity
from rnnkit.models import build_model
from rnnkit.models.generator import ConditionedBatch, ConditionedGenerator, GeneratorConfig
from rnnkit.tasks.task import (
    Evaluation,
    GenerateOptions,
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
CONDITIONS_ARTIFACT = "conditions.json"
SPLITS = ("train", "valid", "test")
FEATURE_SUFFIXES = (".npz", ".csv", ".tsv", ".tab")
NPZ_LAYOUT = "features (N, D) numbers and texts (N,) strings"

Kind = Literal["label", "vector"]
Raw = str | list[float]  # a label, or a feature vector as read


@dataclass(frozen=True)
class CaptionTask:
    """What to read, how to tokenise it and how to batch it.

    Attributes:
        dataset: a bundled labelled-text dataset (rotten-tomatoes, tweets-sentiment),
            used when ``data`` is not given.
        data: the user's files: one (split 80/10/10) or three (train, valid, test).
        condition: ``label``, ``vector``, or ``auto``: vectors for ``.npz`` files,
            labels otherwise (a CSV of feature columns needs ``vector``).
        text_column, label_column: header names (CSV, TSV) or keys (JSONL).
        feature_columns: vector CSV/TSV files: the feature columns; empty: every
            column but the text column.
        level: ``word`` (lowercased words and punctuation) or ``char`` tokens.
        max_length: tokens kept per text; a longer text is cut (and gets no EOS).
        min_freq, max_vocab: vocabulary limits (training part only; max_vocab
            counts the 4 special tokens).
        batch_size: texts per batch; batches hold texts of similar length.
        split_seed: seeds the 80/10/10 split of a single file.
    """

    dataset: str = "rotten-tomatoes"
    data: tuple[str, ...] = ()
    condition: Literal["auto", "label", "vector"] = "auto"
    text_column: str = "text"
    label_column: str = "label"
    feature_columns: tuple[str, ...] = ()
    level: Literal["word", "char"] = "word"
    max_length: int = 100
    min_freq: int = 2
    max_vocab: int | None = None
    batch_size: int = 32
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_positive_ints(self, "max_length", "min_freq", "batch_size")
        if self.max_vocab is not None and (
            isinstance(self.max_vocab, bool) or not isinstance(self.max_vocab, int)
            or self.max_vocab < 5
        ):  # fmt: skip
            raise ValueError(
                f"max_vocab: expected an int ≥ 5 (4 special tokens), got {self.max_vocab!r}"
            )
        if len(self.data) not in (0, 1, 3):
            raise ValueError(f"data: expected one file (split 80/10/10) or three (train, valid, "
                             f"test), got {len(self.data)}")  # fmt: skip


def _model() -> GeneratorConfig:
    # vocab_size and the condition (num_labels or condition_size) come from the data.
    return GeneratorConfig(1, num_labels=1, embed=128, hidden=256, dropout=0.3,
                           pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)  # fmt: skip


def _trainer() -> TrainerConfig:
    # Batches are pre-bucketed by the task: each training item is one whole batch.
    return TrainerConfig(epochs=10, batch_size=1, clip_norm=5.0,
                         optimizer=OptimizerConfig(lr=2e-3),
                         early_stopping=EarlyStoppingConfig(patience=3))  # fmt: skip


@dataclass(frozen=True)
class CaptionRun:
    """The resolved configuration of a caption run (``config.toml``).

    ``model.vocab_size`` and ``model.num_labels`` or ``model.condition_size`` are
    filled in from the data by :func:`prepare`.
    """

    kind: Literal["caption"] = "caption"
    task: CaptionTask = field(default_factory=CaptionTask)
    model: GeneratorConfig = field(default_factory=_model)
    trainer: TrainerConfig = field(default_factory=_trainer)


Run = CaptionRun


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Conditions:
    """What a condition is: one of ``labels``, or a vector of ``len(features)`` numbers.

    Attributes:
        kind: ``label`` or ``vector``.
        labels: label names in id order (sorted), label runs.
        features: feature names (NPZ: ``f0``, ``f1``, …), vector runs.
        scaler: the training part's standardisation, vector runs.
    """

    kind: Kind
    labels: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    scaler: Scaler | None = None

    def encode(self, raws: Sequence[Raw]) -> Tensor:
        """Label ids ``(N,)`` or standardised vectors ``(N, D)`` float32."""
        if self.kind == "label":
            index = {label: i for i, label in enumerate(self.labels)}
            return torch.tensor([index[str(raw)] for raw in raws], dtype=torch.long)
        assert self.scaler is not None
        values = torch.tensor([list(raw) for raw in raws], dtype=torch.float64)
        return self.scaler.transform(values.reshape(len(raws), len(self.features))).float()

    def parse(self, text: str) -> Raw:
        """``--condition``: a known label, or D comma-separated numbers."""
        if self.kind == "label":
            if text not in self.labels:
                known = ", ".join(repr(label) for label in self.labels)
                raise DataError(f"--condition: unknown label {text!r} (known labels: {known})")
            return text
        size = len(self.features)
        try:
            values = [float(part) for part in text.split(",")]
        except ValueError:
            raise DataError(f"--condition: expected {size} comma-separated numbers (the run's "
                            f"feature vector), got {text!r}") from None  # fmt: skip
        if len(values) != size or not all(math.isfinite(v) for v in values):
            raise DataError(f"--condition: expected {size} comma-separated finite numbers (the "
                            f"run's feature vector), got {len(values)}: {text!r}")  # fmt: skip
        return values

    def to_json(self) -> bytes:
        document: dict[str, Any] = {"kind": self.kind}
        if self.kind == "label":
            document["labels"] = list(self.labels)
        else:
            assert self.scaler is not None
            document["features"] = list(self.features)
            document["scaler"] = self.scaler.state_dict()
        return json.dumps(document, ensure_ascii=False, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, run_dir: Path | str) -> Conditions:
        where = Path(run_dir) / "checkpoints"
        try:
            document = json.loads(data.decode("utf-8"))
            kind = document["kind"]
            if kind == "label":
                return cls("label", labels=tuple(str(x) for x in document["labels"]))
            scaler = Scaler()
            scaler.load_state_dict(document["scaler"])
            return cls("vector", features=tuple(str(x) for x in document["features"]),
                       scaler=scaler)  # fmt: skip
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{CONDITIONS_ARTIFACT}: damaged ({one_line(error)})",
                            path=where) from None  # fmt: skip


# --------------------------------------------------------------------------- feature files


def read_feature_texts(
    path: Path | str, *, text_column: str = "text", feature_columns: Sequence[str] = ()
) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """Texts with a feature vector each: ``(feature names, [(text, vector), ...])``.

    Args:
        path: an ``.npz`` file with ``features`` ``(N, D)`` numbers and ``texts``
            ``(N,)`` strings, or a ``.csv``/``.tsv``/``.tab`` file with a header,
            a text column and numeric feature columns.
        text_column: the text column (CSV/TSV).
        feature_columns: the feature columns (CSV/TSV); empty: all but the text.

    Every vector is finite and every text non-empty (after removing surrounding
    whitespace); anything else is a :class:`DataError` naming the file and the
    array or the line and column.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in (".csv", ".tsv", ".tab"):
        return _read_feature_table(path, suffix, text_column, feature_columns)
    raise DataError(f"cannot tell the format from the extension {suffix!r} (expected .npz "
                    "with features and texts, or .csv/.tsv with a text column and numeric "
                    "feature columns)", path=path)  # fmt: skip


def _read_npz(path: Path | str) -> tuple[list[str], list[tuple[str, list[float]]]]:
    data = read_bytes(path)
    expected = f"an .npz archive from numpy.savez with {NPZ_LAYOUT}"
    if not data:
        raise DataError(f"empty file (expected {expected})", path=path)
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:
        # Damaged archives fail as any of a dozen types from numpy and zipfile.
        raise DataError(f"not a readable .npz file ({type(error).__name__}: "
                        f"{one_line(error)[:120]}; expected {expected})", path=path) from None  # fmt: skip
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"a single .npy array (expected {expected})", path=path)
    arrays: dict[str, Any] = {}
    with archive:
        for key in ("features", "texts"):
            if key not in archive.files:
                found = ", ".join(repr(name) for name in archive.files) or "none"
                raise DataError(f"no array {key!r} (arrays found: {found}; expected "
                                f"{NPZ_LAYOUT})", path=path)  # fmt: skip
            try:
                arrays[key] = archive[key]
            except Exception as error:
                hint = "; save them as np.array(texts, dtype=str)" if key == "texts" else ""
                raise DataError(f"array {key!r} cannot be read ({one_line(error)[:120]}; expected "
                                f"{NPZ_LAYOUT}{hint})", path=path) from None  # fmt: skip
    features, texts = arrays["features"], arrays["texts"]
    if features.ndim != 2 or features.dtype.kind not in "biuf" or 0 in features.shape:
        raise DataError(f"features is {features.dtype} of shape {features.shape} (expected "
                        "numbers of shape (N, D), N ≥ 1, D ≥ 1)", path=path)  # fmt: skip
    n, size = features.shape
    if texts.shape != (n,) or texts.dtype.kind not in "US":
        raise DataError(f"texts is {texts.dtype} of shape {texts.shape} (expected {n} strings, "
                        f"shape ({n},), one per row of features)", path=path)  # fmt: skip
    values = features.astype(np.float64)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        i, j = (int(k) for k in bad[0])
        raise DataError(f"features[{i}, {j}] is {values[i, j]} (expected finite numbers)",
                        path=path)  # fmt: skip
    rows = []
    for i in range(n):
        item = texts[i].item()
        text = (item.decode("utf-8", "replace") if isinstance(item, bytes) else item).strip()
        if not text:
            raise DataError(f"texts[{i}] is empty (expected some text)", path=path)
        rows.append((text, values[i].tolist()))
    return [f"f{j}" for j in range(size)], rows


def _read_feature_table(
    path: Path | str, suffix: str, text_column: str, feature_columns: Sequence[str]
) -> tuple[list[str], list[tuple[str, list[float]]]]:
    content = read_utf8(path, expected=f"a table with a {text_column!r} column and feature columns")
    if suffix == ".csv":
        reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    else:
        reader = csv.reader(io.StringIO(content, newline=""), delimiter="\t",
                            quoting=csv.QUOTE_NONE)  # fmt: skip
    header: list[str] = []
    at: list[int] = []
    rows: list[tuple[str, list[float]]] = []
    try:
        for fields in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in fields):
                continue
            if not header:
                header = [name.strip() for name in fields]
                at = _feature_layout(header, text_column, feature_columns, path, line)
                continue
            if len(fields) != len(header):
                raise DataError(f"row has {len(fields)} fields (expected {len(header)} like the "
                                "header)", path=path, line=line)  # fmt: skip
            text = fields[at[0]].strip()
            if not text:
                raise DataError(f"empty text in {text_column!r} (expected some text)",
                                path=path, line=line)  # fmt: skip
            rows.append((text, [_number(fields[j], header[j], path, line) for j in at[1:]]))
    except csv.Error as error:
        raise DataError(f"malformed CSV: {one_line(error)} (expected comma-separated fields, "
                        'quoted as "…" where they hold a comma, a quote or a newline)',
                        path=path, line=reader.line_num) from None  # fmt: skip
    if not rows:
        raise DataError(f"no rows (expected rows of {text_column!r} and feature columns)",
                        path=path)  # fmt: skip
    return [header[j] for j in at[1:]], rows


def _feature_layout(
    header: list[str], text_column: str, feature_columns: Sequence[str], path: Path | str, line: int
) -> list[int]:
    """Column positions: the text first, then the features."""
    found = ", ".join(repr(name) for name in header)
    if len(set(header)) != len(header):
        twice = sorted({name for name in header if header.count(name) > 1})[0]
        raise DataError(f"column {twice!r} appears twice in the header (expected unique column "
                        "names)", path=path, line=line)  # fmt: skip
    names = list(feature_columns) or [name for name in header if name != text_column]
    for name in (text_column, *names):
        if name not in header:
            raise DataError(f"no column {name!r} in the header (columns found: {found}; expected "
                            "a text column and numeric feature columns)", path=path, line=line)  # fmt: skip
    if not names:
        raise DataError(f"no feature columns besides {text_column!r} (columns found: {found})",
                        path=path, line=line)  # fmt: skip
    return [header.index(text_column)] + [header.index(name) for name in names]


def _number(cell: str, column: str, path: Path | str, line: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"column {column!r} holds {cell.strip()!r} (expected a finite number; "
                        "for label conditions use condition = 'label')", path=path, line=line)  # fmt: skip
    return value


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Part:
    """One split: a condition per text ``(N,)`` ids or ``(N, D)`` vectors, and the
    texts' ids ``<bos> … <eos>`` (no ``<eos>`` after a cut)."""

    condition: Tensor
    ids: list[list[int]]


@dataclass(frozen=True)
class CaptionData:
    """The task's data as ids, with the vocabulary and the conditions that made them."""

    vocab: Vocabulary
    conditions: Conditions
    splits: dict[str, Part]
    train_counts: tuple[int, ...] = ()  # label runs: training texts per label


def condition_kind(task: CaptionTask) -> Kind:
    """``task.condition``, with ``auto`` resolved: vectors for ``.npz`` files."""
    if task.condition != "auto":
        return task.condition
    if task.data and all(Path(p).suffix.lower() == ".npz" for p in task.data):
        return "vector"
    return "label"


def tokenizer(level: str) -> CharTokenizer | WordTokenizer:
    return CharTokenizer() if level == "char" else WordTokenizer(lowercase=True)


def encode_text(text: str, vocab: Vocabulary, task: CaptionTask) -> list[int]:
    """``<bos>``, the text's first ``max_length`` tokens, then ``<eos>`` unless it was cut."""
    tokens = tokenizer(task.level).tokenize(text)
    end = [EOS_ID] if len(tokens) <= task.max_length else []
    return [BOS_ID, *vocab.encode(tokens[: task.max_length]), *end]


def _read_file(path: str, kind: Kind, task: CaptionTask) -> tuple[list[str], list[tuple[str, Raw]]]:
    """``(feature names, [(text, condition), ...])`` of one of the user's files."""
    if kind == "label":
        rows = read_labelled_texts(
            path, text_column=task.text_column, label_column=task.label_column
        )
        return [], [(text, label) for text, label in rows]
    if Path(path).suffix.lower() not in FEATURE_SUFFIXES:
        raise DataError("vector conditions: expected an .npz file (features and texts) or a "
                        ".csv/.tsv file of a text column and feature columns", path=path)  # fmt: skip
    names, vectors = read_feature_texts(path, text_column=task.text_column,
                                        feature_columns=task.feature_columns)  # fmt: skip
    return names, [(text, vector) for text, vector in vectors]


def read_parts(task: CaptionTask) -> tuple[Kind, list[str], dict[str, list[tuple[str, Raw]]]]:
    """The condition kind, the feature names (vectors) and ``(text, condition)`` per split."""
    kind = condition_kind(task)
    if task.data:
        read = [_read_file(path, kind, task) for path in task.data]
        names = read[0][0]
        for path, (other, _) in zip(task.data[1:], read[1:], strict=True):
            if len(other) != len(names):
                raise DataError(f"{len(other)} features per row (expected {len(names)} like "
                                f"{task.data[0]})", path=path)  # fmt: skip
        if len(task.data) == 3:
            return kind, names, {name: rows for name, (_, rows) in zip(SPLITS, read, strict=True)}
        rows = read[0][1]
        if len(rows) < 10:
            raise DataError(f"{len(rows)} rows are too few to split 80/10/10 (expected at least "
                            "10, or give three files: train, valid, test)", path=task.data[0])  # fmt: skip
        parts = split_indices(len(rows), (0.8, 0.1, 0.1), seed=task.split_seed)
        return (
            kind,
            names,
            {s: [rows[i] for i in part] for s, part in zip(SPLITS, parts, strict=True)},
        )
    if kind == "vector":
        raise DataError("condition: vector conditions need --data (an .npz file of features and "
                        "texts, or a CSV of a text column and feature columns)")  # fmt: skip
    from rnnkit.data.forms import LabelledTexts
    from rnnkit.data.registry import fetch

    dataset = fetch(task.dataset)
    if not isinstance(dataset, LabelledTexts):
        raise DataError(f"dataset: {task.dataset!r} is not a labelled-text dataset (it is a "
                        f"{type(dataset).__name__}); try rotten-tomatoes or tweets-sentiment")  # fmt: skip
    missing = [name for name in SPLITS if name not in dataset.splits]
    if missing:
        raise DataError(f"dataset: {task.dataset!r} has no {missing[0]} split")
    return kind, [], {name: list(dataset.splits[name]) for name in SPLITS}


def read_data(task: CaptionTask) -> CaptionData:
    """Read, split and encode; vocabulary, labels and feature scaling from the training part."""
    kind, names, parts = read_parts(task)
    for name, rows in parts.items():
        if not rows:
            raise DataError(f"data: the {name} part is empty (expected some texts)")
    split = tokenizer(task.level)
    train_tokens = [split.tokenize(text) for text, _ in parts["train"]]
    vocab = Vocabulary.build(train_tokens, min_freq=task.min_freq, max_size=task.max_vocab)
    counts: tuple[int, ...] = ()
    if kind == "label":
        train_labels = [str(c) for _, c in parts["train"]]
        labels = tuple(sorted(set(train_labels)))
        for i, name in enumerate(SPLITS[1:], start=1):
            where = task.data[i] if len(task.data) == 3 else f"the {name} part"
            check_labels_seen(labels, [str(c) for _, c in parts[name]], where)
        conditions = Conditions("label", labels=labels)
        counts = tuple(train_labels.count(label) for label in labels)
    else:
        train = torch.tensor([c for _, c in parts["train"]], dtype=torch.float64)
        conditions = Conditions("vector", features=tuple(names), scaler=Scaler().fit(train))
    splits = {
        name: Part(conditions.encode([c for _, c in rows]),
                   [encode_text(text, vocab, task) for text, _ in rows])
        for name, rows in parts.items()
    }  # fmt: skip
    return CaptionData(vocab, conditions, splits, counts)


def batches(part: Part, batch_size: int, *, seed: int, shuffle: bool) -> list[ConditionedBatch]:
    """Padded batches of texts of similar length (longest first within a batch)."""
    groups = bucket_batches([len(x) for x in part.ids], batch_size, seed=seed, shuffle=shuffle)
    out = []
    for group in groups:
        tokens, lengths = pad([part.ids[i] for i in group], PAD_ID)
        out.append(ConditionedBatch(part.condition[group], tokens, lengths))
    return out


def _first(items: list[ConditionedBatch]) -> ConditionedBatch:
    return items[0]  # each item is already a whole batch


def model_config(run: CaptionRun, data: CaptionData) -> GeneratorConfig:
    """The run's model with the data's vocabulary and condition filled in."""
    c = data.conditions
    return replace(run.model, vocab_size=len(data.vocab),
                   num_labels=len(c.labels) if c.kind == "label" else None,
                   condition_size=len(c.features) if c.kind == "vector" else None,
                   pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)  # fmt: skip


def prepare(run: CaptionRun) -> Prepared[CaptionRun]:
    """Read and encode the data; fill in the vocabulary size and the condition."""
    data = read_data(run.task)
    if data.conditions.kind == "label" and len(data.conditions.labels) < 2:
        raise DataError(f"data: the training part has one label ({data.conditions.labels[0]!r}); "
                        "a label condition needs at least two")  # fmt: skip
    run = replace(run, model=model_config(run, data),
                  trainer=replace(run.trainer, batch_size=1))  # fmt: skip
    unit = "characters" if run.task.level == "char" else "words"
    summary = []
    for name, part in data.splits.items():
        tokens = sum(len(ids) - 1 for ids in part.ids)  # targets: tokens and EOS
        cut = sum(ids[-1] != EOS_ID for ids in part.ids)
        summary.append(f"{name}: {len(part.ids):,} texts, {tokens:,} target tokens "
                       f"({unit} + <eos>), {cut:,} cut at {run.task.max_length}")  # fmt: skip
    summary.append(f"vocabulary: {len(data.vocab):,} tokens (4 special), built on train")
    c = data.conditions
    if c.kind == "label":
        shown = ", ".join(
            f"{label} ({n:,})" for label, n in zip(c.labels, data.train_counts, strict=True)
        )
        summary.append(f"condition: a label, one of {shown} in train")
    else:
        summary.append(f"condition: a vector of {len(c.features)} features (standardised on train)")
    count = len(batches(data.splits["train"], run.task.batch_size, seed=0, shuffle=True))
    summary.append(f"an epoch: {count:,} batches of ≤ {run.task.batch_size} texts")
    return Prepared(run, summary, data)


# --------------------------------------------------------------------------- scoring


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def text_nll(model: ConditionedGenerator, batch: ConditionedBatch) -> Tensor:
    """``(B,)`` −log p(text | condition) of each row, summed over its targets (``<eos>`` too).

    Scored by stepping the decoder (:meth:`ConditionedGenerator.decode_step`), the
    path generation takes; the sum over rows equals the teacher-forced loss of
    ``model(batch)``.
    """
    device = _model_device(model)
    tokens, lengths = batch.tokens.to(device), batch.lengths.to(device)
    _, state = model.start(batch.condition.to(device))
    total = torch.zeros(tokens.shape[0], dtype=torch.float64, device=device)
    for t in range(1, tokens.shape[1]):
        logits, state = model.decode_step(tokens[:, t - 1], state)
        log_probs = torch.log_softmax(logits.double(), dim=-1)  # (B, V)
        picked = log_probs.gather(1, tokens[:, t, None]).squeeze(1)  # (B,)
        total -= torch.where(t < lengths, picked, torch.zeros_like(picked))
    return total.cpu()


def nll_by_label(model: ConditionedGenerator, batch: ConditionedBatch, num_labels: int) -> Tensor:
    """``(B, K)``: each row's text scored under every label."""
    columns = []
    for label in range(num_labels):
        condition = torch.full_like(batch.condition, label)
        columns.append(text_nll(model, replace(batch, condition=condition)))
    return torch.stack(columns, dim=1)


def _label_scores(model: nn.Module, groups: Iterator[ConditionedBatch]) -> dict[str, float]:
    """Training-time extra: the fraction of valid texts whose own label scores best."""
    assert isinstance(model, ConditionedGenerator) and model.config.num_labels is not None
    hits = total = 0
    for batch in groups:
        nll = nll_by_label(model, batch, model.config.num_labels)
        hits += int((nll.argmin(dim=1) == batch.condition.cpu()).sum())
        total += nll.shape[0]
    return {"label_preference": hits / max(total, 1)}


# --------------------------------------------------------------------------- training


def fit(prepared: Prepared[CaptionRun], out: Path | str, *, resume: bool = False) -> TrainResult:
    """Train (or resume) the prepared run into the folder ``out``."""
    run, data = prepared.run, prepared.data
    torch.manual_seed(run.trainer.seed)
    model = build_model(run.model)
    size = run.task.batch_size
    labels = data.conditions.kind == "label"
    trainer = Trainer(
        model,
        run.trainer,
        batches(data.splits["train"], size, seed=run.trainer.seed, shuffle=True),
        _first,
        val=batches(data.splits["valid"], size, seed=0, shuffle=False),
        evaluate=_label_scores if labels else None,
        run_dir=out,
        resume=resume,
        artifacts={
            VOCAB_ARTIFACT: data.vocab.to_json().encode(),
            CONDITIONS_ARTIFACT: data.conditions.to_json(),
        },
        config_to_save=run,
    )
    return trainer.fit()


def train(run: CaptionRun, out: Path | str, *, resume: bool = False) -> TrainResult:
    """Prepare and train (or resume) a run into the folder ``out``."""
    return fit(prepare(run), out, resume=resume)


@dataclass(frozen=True)
class Loaded:
    """A trained caption run, ready to answer."""

    model: ConditionedGenerator
    vocab: Vocabulary
    conditions: Conditions
    run: CaptionRun


def load_run(run_dir: Path | str) -> Loaded:
    """The trained model (best checkpoint, else last), its vocabulary, conditions and config."""
    run = read_config(run_dir, CaptionRun)
    checkpoint = load_weights(run_dir)
    vocab = Vocabulary.from_json(
        artifact(checkpoint, VOCAB_ARTIFACT, run_dir),
        path=artifact_file(checkpoint, VOCAB_ARTIFACT),
    )
    conditions = Conditions.from_json(artifact(checkpoint, CONDITIONS_ARTIFACT, run_dir), run_dir)
    model = build_model(run.model)
    assert isinstance(model, ConditionedGenerator)
    load_into(model, checkpoint)
    model.eval()
    return Loaded(model, vocab, conditions, run)


# --------------------------------------------------------------------------- evaluation


def _read_user_file(path: str, loaded: Loaded) -> Part:
    task, conditions = loaded.run.task, loaded.conditions
    names, rows = _read_file(path, conditions.kind, task)
    if conditions.kind == "label":
        check_labels_seen(conditions.labels, [str(c) for _, c in rows], path)
    elif len(names) != len(conditions.features):
        raise DataError(f"{len(names)} features per row (expected {len(conditions.features)}, "
                        "the run's feature size)", path=path)  # fmt: skip
    return Part(conditions.encode([c for _, c in rows]),
                [encode_text(text, loaded.vocab, task) for text, _ in rows])  # fmt: skip


def scores_in_order(
    part: Part, batch_size: int, score: Callable[[ConditionedBatch], Tensor]
) -> Tensor:
    """``score`` of every text of ``part``, batched by length, in the part's order."""
    groups = bucket_batches([len(x) for x in part.ids], batch_size, seed=0, shuffle=False)
    out: Tensor | None = None
    for group in groups:
        tokens, lengths = pad([part.ids[i] for i in group], PAD_ID)
        values = score(ConditionedBatch(part.condition[group], tokens, lengths))
        if out is None:
            out = values.new_zeros((len(part.ids), *values.shape[1:]))
        out[group] = values
    assert out is not None
    return out


def condition_nll(model: ConditionedGenerator, part: Part, conditions: Conditions,
                  batch_size: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Each text's NLL under the conditions it is compared with, and which texts count.

    Label runs: ``(N, K)``, every label; all texts count. Vector runs: ``(N, 2)``,
    its own vector and the vector of another text (a permutation seeded with 0);
    a text paired with an identical text does not count (the two NLLs are equal
    by construction).
    """
    if conditions.kind == "label":
        K = len(conditions.labels)
        nll = scores_in_order(part, batch_size, lambda b: nll_by_label(model, b, K))
        return nll, torch.ones(len(part.ids), dtype=torch.bool)
    other = torch.randperm(len(part.ids), generator=torch.Generator().manual_seed(0))
    own = scores_in_order(part, batch_size, lambda b: text_nll(model, b))
    paired = Part(part.condition[other], part.ids)
    theirs = scores_in_order(paired, batch_size, lambda b: text_nll(model, b))
    counts = torch.tensor([part.ids[i] != part.ids[j] for i, j in enumerate(other.tolist())])
    return torch.stack([own, theirs], dim=1), counts


def evaluate(run_dir: Path | str, *, split: str = "test", data: str | None = None) -> Evaluation:
    """Loss per token and perplexity on a split (or the user's file ``data``), and how much
    the condition matters (see the module's docstring). Unknown tokens count as ``<unk>``."""
    loaded = load_run(run_dir)
    task, conditions = loaded.run.task, loaded.conditions
    if data is not None:
        part = _read_user_file(data, loaded)
        split = data
    else:
        corpus = read_data(task)
        if corpus.vocab != loaded.vocab or corpus.conditions.labels != conditions.labels:
            raise DataError("the data's vocabulary or labels differ from the run's (was the data "
                            "changed?)")  # fmt: skip
        part = corpus.splits[split]
    nll, counts = condition_nll(loaded.model, part, conditions, task.batch_size)  # (N, K | 2)
    own_index = part.condition[:, None] if conditions.kind == "label" else torch.zeros(
        len(part.ids), 1, dtype=torch.long)  # fmt: skip
    own = nll.gather(1, own_index).squeeze(1)  # (N,)
    others = nll[torch.ones_like(nll, dtype=torch.bool).scatter(1, own_index, False)]
    others = others.view(len(part.ids), -1)  # (N, K − 1)
    tokens = sum(len(ids) - 1 for ids in part.ids)
    name = "label" if conditions.kind == "label" else "vector"
    metrics = {
        "loss": float(own.sum()) / tokens,
        "perplexity": perplexity(float(own.sum()), tokens),
        # Strictly below every other condition's NLL: a tie does not count.
        f"{name}_preference": float((own[:, None] < others).all(dim=1)[counts].double().mean()),
        f"other_{name}_perplexity": perplexity(float(others.mean(dim=1).sum()), tokens),
        "texts": float(len(part.ids)),
        "tokens": float(tokens),
    }
    details: dict[str, Any] = {}
    if conditions.kind == "label":
        labels = list(conditions.labels)
        details["chance_preference"] = 1 / len(labels)
        gold = [labels[i] for i in part.condition.tolist()]
        predicted = [labels[i] for i in nll.argmin(dim=1).tolist()]
        details["confusion_matrix"] = {
            "labels": labels, "matrix": confusion_matrix(predicted, gold, labels)}  # fmt: skip
    return Evaluation(split, metrics, details)


# --------------------------------------------------------------------------- predict, generate


@torch.no_grad()
def predict(run_dir: Path | str, options: PredictOptions) -> list[Prediction]:
    """The likeliest label of each text: a softmax over −NLL(text | label)."""
    loaded = load_run(run_dir)
    conditions = loaded.conditions
    if conditions.kind != "label":
        raise DataError("predict: a vector-conditioned run has no labels to choose among; use "
                        "`rnnkit generate RUN --condition v1,v2,…` or `rnnkit evaluate`")  # fmt: skip
    texts = list(options.inputs)
    if options.file is not None:
        texts += [line for line in read_text(options.file).splitlines() if line.strip()]
    if not texts:
        raise DataError("predict: give texts as arguments or --file (one per line)")
    labels = conditions.labels
    part = Part(torch.zeros(len(texts), dtype=torch.long),
                [encode_text(text, loaded.vocab, loaded.run.task) for text in texts])  # fmt: skip
    scored = condition_nll(loaded.model, part, conditions, loaded.run.task.batch_size)[0]  # (N, K)
    results = []
    for text, ids, nll in zip(texts, part.ids, scored, strict=True):
        probs = torch.softmax(-nll, dim=0)
        order = probs.argsort(descending=True)[: options.top].tolist()
        pairs = [(labels[i], round(float(probs[i]), 6)) for i in order]
        shown = "  ".join(f"{label} {p:.3f}" for label, p in pairs)
        per_token = {
            label: round(float(nll[i]) / (len(ids) - 1), 6) for i, label in enumerate(labels)
        }
        record = {"input": text, "label": pairs[0][0], "probabilities": [list(p) for p in pairs],
                  "nll_per_token": per_token}  # fmt: skip
        results.append(Prediction(f"{shown}\t{text}", record))
    return results


@torch.no_grad()
def generate(run_dir: Path | str, options: GenerateOptions) -> list[str]:
    """``num_samples`` texts for ``--condition``, sampled (seeded) or by beam search,
    each at most ``length`` tokens after the optional prompt ``start``."""
    return ["".join(pieces) for pieces in stream(run_dir, options)]


def stream(run_dir: Path | str, options: GenerateOptions) -> Iterator[Iterator[str]]:
    """The texts of :func:`generate`, each yielded piece by piece as it is generated,
    one after another (one seeded generator for all). The run is loaded and the
    options checked before this returns."""
    loaded = load_run(run_dir)
    model, vocab, conditions = loaded.model, loaded.vocab, loaded.conditions
    if options.condition is None:
        wanted = ("a label: " + ", ".join(repr(label) for label in conditions.labels)
                  if conditions.kind == "label"
                  else f"{len(conditions.features)} comma-separated numbers")  # fmt: skip
        raise DataError(f"generate: --condition is required for a caption run ({wanted})")
    if options.beam > 1 and options.num_samples > 1:
        raise DataError("generate: beam search gives one best text; drop --num-samples or "
                        "sample instead of --beam")  # fmt: skip
    condition = conditions.encode([conditions.parse(options.condition)])  # one row
    char = loaded.run.task.level == "char"
    split = tokenizer(loaded.run.task.level)
    prompt = vocab.encode(split.tokenize(options.start))
    # Never generated: padding and BOS are not text, and a caption that says "<unk>"
    # (a word too rare for the vocabulary) reads as a defect; EOS ends the text.
    banned = (PAD_ID, BOS_ID, UNK_ID)
    generator = torch.Generator().manual_seed(options.seed)

    def tokens() -> Iterator[int]:
        with torch.no_grad():  # the stepper's path (this body runs outside generate's)
            last, state = model.start(condition)  # (1,) BOS
            for token in prompt:  # teacher-force the prompt
                _, state = model.decode_step(last, state)
                last = torch.full_like(last, token)
        if options.beam > 1:
            decoded = beam_search(model, last, state, max_length=options.length,
                                  beam_size=options.beam, eos_id=EOS_ID, pad_id=PAD_ID,
                                  banned=banned).best  # fmt: skip
            yield from decoded.tokens[0, : int(decoded.lengths[0])].tolist()
            return
        for step in decoding.stream(model, last, state, max_length=options.length,
                                    temperature=options.temperature, top_k=options.top_k,
                                    top_p=options.top_p, eos_id=EOS_ID, pad_id=PAD_ID,
                                    generator=generator, banned=banned):  # fmt: skip
            yield int(step.tokens[0])

    def pieces() -> Iterator[str]:
        start = options.start.strip()
        yield start if char or not start else start + " "
        first = True
        for token in tokens():
            for text in vocab.decode([token]):  # nothing for EOS and pad
                yield text if char or first else " " + text
                first = False

    return (pieces() for _ in range(options.num_samples))
