"""Caption data as tensors: what conditions a text (a label or a feature vector), and
each split's conditions and texts as ids ``<bos> … <eos>``.

:class:`Conditions` is what a caption run keeps about its conditions (saved as
``conditions.json``): the labels in id order, or the feature names and the training
part's standardisation. It encodes the conditions the files hold
(:mod:`rnnkit.data.formats.features`) and parses the ones a user types
(``--condition``). A :class:`Part` is one split, encoded: one example per text.
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

from rnnkit.data.batching import Scaler
from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import check_labels_seen, one_line
from rnnkit.data.formats.features import Condition
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
