"""The standard forms a dataset takes in rnnkit, and their JSON encoding.

Every bundled dataset (``rnnkit.data.registry``) and every parser of the user's
files produces one of six forms, chosen by what a model consumes, not by where the
data came from:

=====================  =============================================================
form                   one example
=====================  =============================================================
``TextCorpus``         a split is one string (language modelling, generation)
``LabelledTexts``      ``(text, label)`` (text classification)
``TaggedSentences``    a sentence as ``[(token, tag), ...]`` (tagging, NER)
``Pairs``              ``(source, target)`` strings (sequence to sequence)
``Series``             one time index shared by named float columns (forecasting)
``LabelledSequences``  ``(steps × channels floats, label)`` (sequence classification)
=====================  =============================================================

Splits are named ``train``, ``valid`` and ``test`` where they exist. The forms are
plain lists, dicts and strings rather than tensors: vocabularies and batching come
later and depend on the task. ``to_json``/``from_json`` store them in the dataset
cache; JSON, never pickle, so a cache file can be read without trusting it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from rnnkit.data.errors import DataError

FORMAT_VERSION = 1
"""Bumped whenever the JSON layout changes, so stale cache files are rebuilt."""


@dataclass(frozen=True)
class TextCorpus:
    """Running text for language models: ``splits[name]`` is one string.

    Lines end with ``"\\n"``; nothing else about the text is normalised.
    """

    splits: dict[str, str]


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with one class label each: ``splits[name]`` is a list of ``(text, label)``."""

    splits: dict[str, list[tuple[str, str]]]


@dataclass(frozen=True)
class TaggedSentences:
    """Tokenised sentences with one tag per token: ``splits[name][i]`` is ``[(token, tag), ...]``."""

    splits: dict[str, list[list[tuple[str, str]]]]


@dataclass(frozen=True)
class Pairs:
    """Source and target strings for sequence to sequence: ``(source, target)``.

    A source may appear more than once, with different targets (e.g. the
    alternative pronunciations of one word).
    """

    splits: dict[str, list[tuple[str, str]]]


@dataclass(frozen=True)
class Series:
    """A time series: named float columns over one shared time index.

    Attributes:
        values: column name → values, every column as long as ``times``; a
            univariate series has one column.
        times: ISO 8601 stamps (``"1949-01"``, ``"1986-03-13"``,
            ``"2000-06-05T00:30"``), one per step, in order.
        frequency: ``"monthly"``, ``"daily"`` (trading days: ``times`` has the
            gaps) or ``"half-hourly"``.
        target: the column a forecaster predicts.

    There are no splits: a forecasting task cuts its own backtest windows.
    """

    values: dict[str, list[float]]
    times: list[str]
    frequency: str
    target: str


@dataclass(frozen=True)
class LabelledSequences:
    """Multivariate sequences with one label each: ``(steps, label)``.

    ``steps[t][c]`` is channel ``c`` at step ``t``; sequences may differ in length
    but not in their number of channels.
    """

    splits: dict[str, list[tuple[list[list[float]], str]]]


@dataclass(frozen=True)
class PianoRolls:
    """Polyphonic pieces on a fixed time grid: ``splits[name][i][t]`` lists the MIDI
    pitches sounding in frame ``t`` of piece ``i`` (an empty list is silence).

    ``low``/``high`` bound the pitches (inclusive); ``frames_per_quarter`` is the grid.
    """

    splits: dict[str, list[list[list[int]]]]
    low: int
    high: int
    frames_per_quarter: int


Dataset = (
    TextCorpus | LabelledTexts | TaggedSentences | Pairs | Series | LabelledSequences | PianoRolls
)
"""Any of the standard forms."""


def to_json(dataset: Dataset) -> dict[str, Any]:
    """The dataset as JSON-ready values: ``{"form": <class name>, ...fields}``."""
    if isinstance(dataset, Series):
        return {
            "form": "Series",
            "values": dataset.values,
            "times": dataset.times,
            "frequency": dataset.frequency,
            "target": dataset.target,
        }
    if isinstance(dataset, PianoRolls):
        return {
            "form": "PianoRolls",
            "splits": dataset.splits,
            "low": dataset.low,
            "high": dataset.high,
            "frames_per_quarter": dataset.frames_per_quarter,
        }
    # Every other form is a dict of splits; tuples become JSON lists.
    return {"form": type(dataset).__name__, "splits": dataset.splits}


def from_json(data: object, *, path: str | None = None) -> Dataset:
    """The dataset that ``to_json`` encoded, checked field by field.

    Raises:
        DataError: when ``data`` is not such an encoding; ``path`` names its file.
    """
    where = _Where(path)
    record = where.mapping(data, "the document")
    form = record.get("form")
    if form == "Series":
        values = {
            where.string(name, "a column name"): where.floats(column, f"column {name!r}")
            for name, column in where.mapping(record.get("values"), "values").items()
        }
        times = [
            where.string(time, "a time stamp") for time in where.items(record.get("times"), "times")
        ]
        if not values or any(len(column) != len(times) for column in values.values()):
            raise DataError(
                f"values: expected one or more columns of {len(times)} values", path=path
            )
        target = where.string(record.get("target"), "target")
        if target not in values:
            raise DataError(
                f"target: expected one of the columns {sorted(values)}, got {target!r}", path=path
            )
        return Series(values, times, where.string(record.get("frequency"), "frequency"), target)
    raw = where.mapping(record.get("splits"), "splits")
    if form == "TextCorpus":
        return TextCorpus({name: where.string(text, name) for name, text in raw.items()})
    if form in ("LabelledTexts", "Pairs"):
        splits = {
            name: [where.pair(item, name) for item in where.items(items, name)]
            for name, items in raw.items()
        }
        return LabelledTexts(splits) if form == "LabelledTexts" else Pairs(splits)
    if form == "TaggedSentences":
        return TaggedSentences(
            {
                name: [
                    [where.pair(token, name) for token in where.items(sentence, name)]
                    for sentence in where.items(items, name)
                ]
                for name, items in raw.items()
            }
        )
    if form == "LabelledSequences":
        return LabelledSequences(
            {
                name: [where.sequence(item, name) for item in where.items(items, name)]
                for name, items in raw.items()
            }
        )
    if form == "PianoRolls":
        low, high, grid = (record.get(key) for key in ("low", "high", "frames_per_quarter"))
        if not (type(low) is int and type(high) is int and type(grid) is int):
            raise DataError("low, high, frames_per_quarter: expected integers", path=path)
        pieces = {}
        for name, items in raw.items():
            pieces[name] = [
                [_pitches(frame, low, high, where) for frame in where.items(piece, name)]
                for piece in where.items(items, name)
            ]
        return PianoRolls(pieces, low, high, grid)
    raise DataError(f"form: expected one of the standard forms, got {form!r}", path=path)


def _pitches(frame: object, low: int, high: int, where: _Where) -> list[int]:
    if not isinstance(frame, list) or not all(type(p) is int and low <= p <= high for p in frame):
        raise where.fail(f"a frame of MIDI pitches in {low}..{high}", frame)
    return frame


def _finite(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool) that is a finite float."""
    if type(value) is float:
        return math.isfinite(value)
    # An int too large for a float overflows instead of becoming infinite.
    return type(value) is int and abs(value) <= sys.float_info.max


class _Where:
    """Type checks that raise DataError naming the file and the field."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def fail(self, what: str, value: object) -> DataError:
        return DataError(
            f"{what}: expected a valid value, got {type(value).__name__}", path=self.path
        )

    def mapping(self, value: object, what: str) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise self.fail(what, value)
        return value

    def items(self, value: object, what: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(what, value)
        return value

    def string(self, value: object, what: str) -> str:
        if not isinstance(value, str):
            raise self.fail(what, value)
        return value

    def pair(self, value: object, what: str) -> tuple[str, str]:
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(part, str) for part in value)
        ):
            raise self.fail(f"{what}: a pair of strings", value)
        return (value[0], value[1])

    def floats(self, value: object, what: str) -> list[float]:
        items = self.items(value, what)
        # bool is an int subclass, and JSON's NaN/Infinity extensions are not data.
        if not all(_finite(item) for item in items):
            raise self.fail(f"{what}: finite numbers", value)
        return [float(item) for item in items]

    def sequence(self, value: object, what: str) -> tuple[list[list[float]], str]:
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
            raise self.fail(f"{what}: a [steps, label] pair", value)
        steps = [self.floats(step, what) for step in self.items(value[0], what)]
        return (steps, value[1])
