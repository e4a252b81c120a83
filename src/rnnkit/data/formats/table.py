"""Text classification data: one text and one label per row of a CSV, TSV or JSONL file.

* CSV: a header row, then rows; fields may be quoted (``"a, b"``) and a quoted
  field may span lines. Parsed strictly, so a stray quote is an error, not a
  silently merged row.
* TSV: a header row, then one row per line, fields split at tabs; quotes are
  ordinary characters (a TSV field cannot hold a tab or a newline).
* JSONL: one JSON object per line; the label may be a string or an integer.

Blank lines are skipped. With ``comment`` set, lines that start with it are
skipped too (in CSV only where a row starts, never inside a quoted field); the
default is no comments, since a text may well start with ``#``. Surrounding
whitespace is removed from texts and labels, and neither may be empty.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import (
    OnLong,
    check_limit_arguments,
    check_unique_columns,
    comment_hint,
    kept_length,
    one_line,
    read_utf8,
    split_lines,
)

TableFormat = Literal["csv", "tsv", "jsonl"]

_BY_EXTENSION: dict[str, TableFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def read_labelled_texts(
    path: Path | str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    format: TableFormat | None = None,
    comment: str | None = None,
    max_length: int | None = None,
    on_long: OnLong = "error",
) -> list[tuple[str, str]]:
    """``(text, label)`` pairs in file order.

    Args:
        path: a ``.csv``, ``.tsv``/``.tab`` or ``.jsonl``/``.ndjson`` file.
        text_column, label_column: header names (CSV, TSV) or keys (JSONL).
        format: overrides the format the extension implies.
        comment: a prefix that marks lines to skip, e.g. ``"#"``; None skips none.
        max_length: the most characters a text may have; a longer one is an error
            or, with ``on_long='truncate'``, cut to its first ``max_length``.
    """
    check_limit_arguments(max_length, on_long)
    kind = _format_of(path, format)
    text = read_utf8(
        path, expected=f"a {kind.upper()} file with {text_column!r} and {label_column!r}"
    )
    if kind == "jsonl":
        rows = _jsonl_rows(text, path, text_column, label_column, comment)
    else:
        records = (
            _csv_records(text, path, comment) if kind == "csv" else _tsv_records(text, comment)
        )
        rows = _table_rows(records, path, text_column, label_column)
    pairs: list[tuple[str, str]] = []
    for line, raw_text, raw_label in rows:
        value, label = raw_text.strip(), raw_label.strip()
        if not value:
            raise DataError(
                f"empty text in {text_column!r} (expected some text)", path=path, line=line
            )
        if not label:
            raise DataError(
                f"empty label in {label_column!r} (expected a class name)", path=path, line=line
            )
        keep = kept_length(len(value), max_length, on_long, what="text", path=path, line=line)
        pairs.append((value[:keep], label))
    if not pairs:
        raise DataError(
            f"no rows (expected rows of {text_column!r} and {label_column!r})", path=path
        )
    return pairs


def _format_of(path: Path | str, format: TableFormat | None) -> TableFormat:
    if format is not None:
        if format not in ("csv", "tsv", "jsonl"):
            raise ValueError(f"format: expected 'csv', 'tsv', 'jsonl' or None, got {format!r}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in _BY_EXTENSION:
        raise DataError(
            f"cannot tell the format from the extension {suffix!r} "
            "(expected .csv, .tsv, .tab, .jsonl or .ndjson, or pass format=)",
            path=path,
        )
    return _BY_EXTENSION[suffix]


class _RecordLines:
    """Feeds lines to ``csv.reader`` and remembers where each record starts.

    The reader pulls lines one by one, so a comment is only skipped where a record
    starts (``at_record_start``), never inside a quoted field that spans lines.
    """

    def __init__(self, text: str, comment: str | None):
        # newline="" keeps "\r\n" inside quoted fields for the csv module to handle.
        self._lines = io.StringIO(text, newline="")
        self._comment = comment
        self.number = 0  # the last line handed out
        self.first = 0  # the line the current record started on
        self.at_record_start = True

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            line = next(self._lines)
            self.number += 1
            if self.at_record_start:
                if self._comment and line.startswith(self._comment):
                    continue
                self.first = self.number
                self.at_record_start = False
            return line


def _csv_records(
    text: str, path: Path | str, comment: str | None
) -> Iterator[tuple[int, list[str]]]:
    lines = _RecordLines(text, comment)
    reader = csv.reader(lines, strict=True)
    while True:
        lines.at_record_start = True
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DataError(
                f"malformed CSV: {one_line(error)} (expected comma-separated fields, "
                'quoted as "…" where they hold a comma, a quote or a newline)',
                path=path,
                line=lines.number,
            ) from None
        if row and any(field.strip() for field in row):
            yield lines.first, row


def _tsv_records(text: str, comment: str | None) -> Iterator[tuple[int, list[str]]]:
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip() or (comment and line.startswith(comment)):
            continue
        yield number, line.split("\t")


def _table_rows(
    records: Iterator[tuple[int, list[str]]],
    path: Path | str,
    text_column: str,
    label_column: str,
) -> Iterator[tuple[int, str, str]]:
    header_line, text_at, label_at = 0, 0, 0
    columns: list[str] = []
    for line, fields in records:
        if not columns:
            header_line, columns = line, [name.strip() for name in fields]
            found = ", ".join(repr(name) for name in columns)
            for name in (text_column, label_column):
                if name not in columns:
                    raise DataError(
                        f"no column {name!r} in the header (columns found: {found}; "
                        "pass text_column= and label_column= to name others"
                        f"{comment_hint(columns[0], line)})",
                        path=path,
                        line=line,
                    )
            check_unique_columns(columns, path, line)
            text_at, label_at = columns.index(text_column), columns.index(label_column)
            continue
        if len(fields) != len(columns):
            raise DataError(
                f"row has {len(fields)} fields (expected {len(columns)} like the header "
                f"on line {header_line}{comment_hint(columns[0], header_line)})",
                path=path,
                line=line,
            )
        yield line, fields[text_at], fields[label_at]


def _jsonl_rows(
    text: str,
    path: Path | str,
    text_column: str,
    label_column: str,
    comment: str | None,
) -> Iterator[tuple[int, str, str]]:
    for line, content in enumerate(split_lines(text), start=1):
        if not content.strip() or (comment and content.startswith(comment)):
            continue
        try:
            row = json.loads(content)
        except (ValueError, RecursionError) as error:
            # RecursionError: deeply nested brackets exhaust the decoder's stack.
            raise DataError(
                f"invalid JSON: {one_line(error)} (expected one JSON object per line)",
                path=path,
                line=line,
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"a JSON {type(row).__name__} (expected one JSON object per line)",
                path=path,
                line=line,
            )
        for key in (text_column, label_column):
            if key not in row:
                found = ", ".join(repr(name) for name in row) or "none"
                raise DataError(
                    f"no key {key!r} (keys found: {found}; pass text_column= and "
                    "label_column= to name others)",
                    path=path,
                    line=line,
                )
        value, label = row[text_column], row[label_column]
        if not isinstance(value, str):
            raise DataError(
                f"{text_column!r} is a JSON {_json_type(value)} (expected a string)",
                path=path,
                line=line,
            )
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise DataError(
                f"{label_column!r} is a JSON {_json_type(label)} (expected a string or an integer)",
                path=path,
                line=line,
            )
        yield line, value, str(label)


def _json_type(value: object) -> str:
    names = {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
