"""Texts with a condition each: a feature vector (``.npz``, CSV/TSV) or a label.

The caption task's files (:mod:`rnnkit.tasks.captioning`), read into plain values:

* ``.npz`` (``numpy.savez``) with two arrays: ``features``, ``(N, D)`` numbers,
  and ``texts``, ``(N,)`` strings (``np.array(texts, dtype=str)``; object arrays
  are refused, since reading them would mean unpickling), row i of ``features``
  belonging to ``texts[i]``;
* ``.csv``/``.tsv``/``.tab`` with a header: a text column plus numeric feature
  columns (by default every other column), parsed as
  :mod:`~rnnkit.data.formats.table` parses its tables;
* labelled texts, for label conditions: the CSV/TSV/JSONL files of
  :func:`~rnnkit.data.formats.table.read_labelled_texts`.

Every vector is finite and every text non-empty (after removing surrounding
whitespace); anything else is a :class:`~rnnkit.data.errors.DataError` naming the
file and the array, or the line and the column.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import check_unique_columns, read_utf8
from rnnkit.data.formats.table import _csv_records, _tsv_records, read_labelled_texts
from rnnkit.data.formats.ts import read_npz_arrays

FEATURE_SUFFIXES = (".npz", ".csv", ".tsv", ".tab")
NPZ_LAYOUT = "features (N, D) numbers and texts (N,) strings (np.array(texts, dtype=str))"

Vectors = list[tuple[str, list[float]]]  # (text, feature vector) in file order
Condition = str | list[float]  # a label, or a feature vector


def condition_kind(condition: Literal["auto", "label", "vector"],
                   paths: Sequence[str]) -> Literal["label", "vector"]:  # fmt: skip
    """``label`` or ``vector`` as asked, or for ``auto``: vectors for ``.npz`` files
    (they hold nothing else), labels otherwise (a CSV of feature columns must ask)."""
    if condition != "auto":
        return condition
    if paths and all(Path(p).suffix.lower() == ".npz" for p in paths):
        return "vector"
    return "label"


def read_feature_texts(
    path: Path | str, *, text_column: str = "text", feature_columns: Sequence[str] = ()
) -> tuple[list[str], Vectors]:
    """Texts with a feature vector each: ``(feature names, [(text, vector), ...])``.

    Args:
        path: an ``.npz`` file with ``features`` ``(N, D)`` numbers and ``texts``
            ``(N,)`` strings (its feature names are ``f0``, ``f1``, …), or a
            ``.csv``/``.tsv``/``.tab`` file with a header, a text column and
            numeric feature columns.
        text_column: the text column (CSV/TSV).
        feature_columns: the feature columns (CSV/TSV), in this order; empty: all
            but the text, in the header's order.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in (".csv", ".tsv", ".tab"):
        return _read_table(path, suffix, text_column, feature_columns)
    raise DataError(f"cannot tell the format from the extension {suffix!r} (expected .npz "
                    "with features and texts, or .csv/.tsv with a text column and numeric "
                    "feature columns)", path=path)  # fmt: skip


def read_conditioned_texts(
    path: Path | str,
    kind: Literal["label", "vector"],
    *,
    text_column: str = "text",
    label_column: str = "label",
    feature_columns: Sequence[str] = (),
) -> tuple[list[str], list[tuple[str, Condition]]]:
    """``(feature names, [(text, condition), ...])``: labels (no feature names) or vectors."""
    if kind == "label":
        rows = read_labelled_texts(path, text_column=text_column, label_column=label_column)
        return [], [(text, label) for text, label in rows]
    if Path(path).suffix.lower() not in FEATURE_SUFFIXES:
        raise DataError("vector conditions: expected an .npz file (features and texts) or a "
                        ".csv/.tsv file of a text column and feature columns", path=path)  # fmt: skip
    names, vectors = read_feature_texts(path, text_column=text_column,
                                        feature_columns=feature_columns)  # fmt: skip
    return names, [(text, vector) for text, vector in vectors]


def _read_npz(path: Path | str) -> tuple[list[str], Vectors]:
    arrays = read_npz_arrays(path, ("features", "texts"), NPZ_LAYOUT)
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


def _read_table(
    path: Path | str, suffix: str, text_column: str, feature_columns: Sequence[str]
) -> tuple[list[str], Vectors]:
    content = read_utf8(path, expected=f"a table with a {text_column!r} column and feature columns")
    records: Iterator[tuple[int, list[str]]] = (
        _csv_records(content, path, None) if suffix == ".csv" else _tsv_records(content, None)
    )
    header: list[str] = []
    at: list[int] = []
    rows: Vectors = []
    for line, fields in records:
        if not header:
            header = [name.strip() for name in fields]
            at = _layout(header, text_column, feature_columns, path, line)
            continue
        if len(fields) != len(header):
            raise DataError(f"row has {len(fields)} fields (expected {len(header)} like the "
                            "header)", path=path, line=line)  # fmt: skip
        text = fields[at[0]].strip()
        if not text:
            raise DataError(f"empty text in {text_column!r} (expected some text)",
                            path=path, line=line)  # fmt: skip
        rows.append((text, [_number(fields[j], header[j], path, line) for j in at[1:]]))
    if not rows:
        raise DataError(f"no rows (expected rows of {text_column!r} and feature columns)",
                        path=path)  # fmt: skip
    return [header[j] for j in at[1:]], rows


def _layout(
    header: list[str], text_column: str, feature_columns: Sequence[str], path: Path | str, line: int
) -> list[int]:
    """Column positions: the text first, then the features."""
    found = ", ".join(repr(name) for name in header)
    check_unique_columns(header, path, line)
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
