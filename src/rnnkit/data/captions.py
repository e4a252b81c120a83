"""Caption data as tensors: what conditions a text (a label or a feature vector), and
each split's conditions and texts as ids ``<bos> … <eos>``.

:class:`Conditions` is what a caption run keeps about its conditions (saved as
``conditions.json``): the labels in id order, or the feature names and the training
part's standardisation. It encodes the conditions the files hold
(:mod:`rnnkit.data.formats.features`) and parses the ones a user types
(``--condition``). A :class:`Part` is one split, encoded: one example per text.
:func:`read_data` reads what a :class:`CaptionTask` names (a bundled dataset, or
the user's files split 80/10/10) and encodes every split with the vocabulary and
the conditions fitted on the training part.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import Scaler
from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import check_labels_seen, one_line
from rnnkit.data.formats.features import Condition, condition_kind, read_conditioned_texts
from rnnkit.data.forms import LabelledTexts
from rnnkit.data.registry import fetch_splits
from rnnkit.data.splits import SPLITS, check_data_paths, check_parts, split_files
from rnnkit.data.vocab import BOS_ID, EOS_ID, CharTokenizer, Vocabulary, WordTokenizer
from rnnkit.training.sampler import Examples

CONDITIONS_FILE = "conditions.json"

Kind = Literal["label", "vector"]
Example = tuple[Tensor, list[int]]  # a condition (a label id () or a vector (D,)), its text's ids


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

    def encode(self, raws: Sequence[Condition]) -> Tensor:
        """Label ids ``(N,)`` or standardised vectors ``(N, D)`` float32."""
        if self.kind == "label":
            index = {label: i for i, label in enumerate(self.labels)}
            return torch.tensor([index[str(raw)] for raw in raws], dtype=torch.long)
        assert self.scaler is not None
        values = torch.tensor([list(raw) for raw in raws], dtype=torch.float64)
        return self.scaler.transform(values.reshape(len(raws), len(self.features))).float()

    def parse(self, text: str) -> Condition:
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

    @staticmethod
    def fit(kind: Kind, features: Sequence[str], train: Sequence[Condition]) -> Conditions:
        """From the training part's conditions: its labels, sorted, or its feature names
        and the standardisation of its vectors."""
        if kind == "label":
            return Conditions("label", labels=tuple(sorted({str(c) for c in train})))
        values = torch.tensor([list(c) for c in train], dtype=torch.float64)  # (N, D)
        return Conditions("vector", features=tuple(features), scaler=Scaler().fit(values))

    def check(self, features: Sequence[str], conditions: Sequence[Condition],
              where: Path | str) -> None:  # fmt: skip
        """Another part's conditions (``where``: its file, or its name) are ones the run
        knows: labels of the training part, or vectors of the run's ``features`` size."""
        if self.kind == "label":
            check_labels_seen(self.labels, [str(c) for c in conditions], where)
        elif len(features) != len(self.features):
            raise DataError(f"{len(features)} features per row (expected {len(self.features)}, "
                            "the run's feature size)", path=where)  # fmt: skip

    def describe(self, train: Tensor) -> str:
        """What a condition is, with how many texts of each label the training part's
        encoded conditions ``train`` hold."""
        if self.kind == "vector":
            return f"a vector of {len(self.features)} features (standardised on train)"
        counts = torch.bincount(train, minlength=len(self.labels)).tolist()
        shown = ", ".join(f"{label} ({n:,})" for label, n in zip(self.labels, counts, strict=True))
        return f"a label, one of {shown} in train"

    def wanted(self) -> str:
        """What ``--condition`` takes, for a message that asks for one."""
        if self.kind == "label":
            return "a label: " + ", ".join(repr(label) for label in self.labels)
        return f"{len(self.features)} comma-separated numbers"

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
    def from_json(cls, data: bytes, *, path: Path | str) -> Conditions:
        """The conditions back from :meth:`to_json` (``path``: the file, for errors)."""
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
            raise DataError(f"damaged ({one_line(error)})", path=path) from None


def tokenizer(level: str) -> CharTokenizer | WordTokenizer:
    """``char`` tokens, or lowercased ``word`` tokens."""
    return CharTokenizer() if level == "char" else WordTokenizer(lowercase=True)


def encode_text(text: str, vocab: Vocabulary, level: str, max_length: int) -> list[int]:
    """``<bos>``, the text's first ``max_length`` tokens, then ``<eos>`` unless it was cut
    (a model must not learn to end where a text was only cut)."""
    tokens = tokenizer(level).tokenize(text)
    end = [EOS_ID] if len(tokens) <= max_length else []
    return [BOS_ID, *vocab.encode(tokens[:max_length]), *end]


@dataclass(frozen=True)
class Part:
    """One split: a condition per text ``(N,)`` ids or ``(N, D)`` vectors, and the
    texts' ids ``<bos> … <eos>`` (no ``<eos>`` after a cut)."""

    condition: Tensor
    ids: list[list[int]]

    @staticmethod
    def encode(rows: Sequence[tuple[str, Condition]], vocab: Vocabulary, conditions: Conditions,
               level: str, max_length: int) -> Part:  # fmt: skip
        """``(text, condition)`` rows as a split: :meth:`Conditions.encode` and
        :func:`encode_text`."""
        return Part(conditions.encode([c for _, c in rows]),
                    [encode_text(text, vocab, level, max_length) for text, _ in rows])  # fmt: skip

    def examples(self) -> Examples[Example]:
        """One example per text, with its length (for bucketing)."""
        items = list(zip(self.condition, self.ids, strict=True))
        return Examples(items, lengths=[len(ids) for ids in self.ids])


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CaptionTask:
    """What to read and how to tokenise it.

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
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_positive_ints(self, "max_length", "min_freq", "max_vocab")
        if self.max_vocab is not None and self.max_vocab < 5:
            raise ValueError(f"max_vocab: expected an int ≥ 5 (4 special tokens), got "
                             f"{self.max_vocab!r}")  # fmt: skip
        check_data_paths(self.data)


Rows = list[tuple[str, Condition]]  # (text, label or vector) as read


@dataclass(frozen=True)
class CaptionAssets:
    """What a trained caption run keeps: its vocabulary and its conditions."""

    vocab: Vocabulary
    conditions: Conditions


@dataclass(frozen=True)
class CaptionData:
    """The task's data as ids, with the vocabulary and the conditions that made them."""

    assets: CaptionAssets
    splits: dict[str, Part]


def read_file(path: str, kind: Kind, task: CaptionTask) -> tuple[list[str], Rows]:
    """``(feature names, [(text, condition), ...])`` of one of the user's files."""
    return read_conditioned_texts(path, kind, text_column=task.text_column,
                                  label_column=task.label_column,
                                  feature_columns=task.feature_columns)  # fmt: skip


def read_parts(task: CaptionTask) -> tuple[Kind, list[str], dict[str, Rows]]:
    """The condition kind, the feature names (vectors) and ``(text, condition)`` per split."""
    kind = condition_kind(task.condition, task.data)
    if task.data:
        names: list[list[str]] = []  # each file's feature names

        def read(path: str) -> Rows:
            found, rows = read_file(path, kind, task)
            if names and len(found) != len(names[0]):
                raise DataError(f"{len(found)} features per row (expected {len(names[0])} like "
                                f"{task.data[0]})", path=path)  # fmt: skip
            names.append(found)
            return rows

        parts = split_files(task.data, read, seed=task.split_seed, least=10, what="texts")
        return kind, names[0], parts
    if kind == "vector":
        raise DataError("condition: vector conditions need --data (an .npz file of features and "
                        "texts, or a CSV of a text column and feature columns)")  # fmt: skip
    return kind, [], fetch_splits(task.dataset, LabelledTexts, "a labelled-text dataset (try "
                                  "rotten-tomatoes or tweets-sentiment)")  # fmt: skip


def read_data(task: CaptionTask) -> CaptionData:
    """Read, split and encode; vocabulary, labels and feature scaling from the training part."""
    kind, names, parts = read_parts(task)
    check_parts(parts, "texts")
    split = tokenizer(task.level)
    train_tokens = [split.tokenize(text) for text, _ in parts["train"]]
    vocab = Vocabulary.build(train_tokens, min_freq=task.min_freq, max_size=task.max_vocab)
    conditions = Conditions.fit(kind, names, [c for _, c in parts["train"]])
    for i, name in enumerate(SPLITS[1:], start=1):
        where = task.data[i] if len(task.data) == 3 else f"the {name} part"
        conditions.check(names, [c for _, c in parts[name]], where)
    splits = {name: Part.encode(rows, vocab, conditions, task.level, task.max_length)
              for name, rows in parts.items()}  # fmt: skip
    return CaptionData(CaptionAssets(vocab, conditions), splits)
