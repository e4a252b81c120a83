"""Forecasting data: a CSV with one time column and one or more numeric value columns.

The first row (after comment lines) is the header. The time column is found
when exactly one column holds dates in a format below (judged on the first row),
and the value columns are then all the others; otherwise name them with
``time_column`` and ``value_columns``. Times must increase and keep the first
row's format:

====================  ======================
``YYYY-MM-DD``        ``1949-01-31``
``YYYY-MM``           ``1949-01``
``YYYY-MM-DD HH:MM``  ``2014-01-01 00:30`` (a ``T`` may replace the space)
``… HH:MM:SS``        ``2014-01-01 00:30:15``
``MM/DD/YYYY``        ``01/31/1949``
====================  ======================

The frequency is inferred from the median gap between consecutive times (so a
few gaps, such as weekends in daily prices, do not matter) and must be one of
:data:`FREQUENCIES`; anything else is irregular, an error unless ``frequency``
is given. A missing value (an empty cell, ``NA``, ``N/A``, ``NaN``, ``null``,
``None`` or ``?``) is an error unless ``fill`` says how to fill it. With
``comment`` set, lines that start with it are skipped; the default is none.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from math import isfinite
from pathlib import Path
from typing import Literal

from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import (
    check_unique_columns,
    comment_hint,
    one_line,
    read_utf8,
    split_lines,
)

Fill = Literal["forward", "interpolate"]

#: Frequency names, from the shortest gap to the longest.
FREQUENCIES = (
    "secondly",
    "minutely",
    "quarter-hourly",
    "half-hourly",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "yearly",
)
_EXACT_SECONDS = {
    1.0: "secondly",
    60.0: "minutely",
    900.0: "quarter-hourly",
    1800.0: "half-hourly",
    3600.0: "hourly",
    86400.0: "daily",
    604800.0: "weekly",
}
# Calendar frequencies: their gaps vary with month and leap-year lengths, in days.
_DAY_RANGES = (("monthly", 28.0, 31.0), ("quarterly", 89.0, 92.0), ("yearly", 365.0, 366.0))

# (shape, strptime format, what a user reads in a message)
_DATE_FORMATS = (
    (re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), "%Y-%m-%d", "YYYY-MM-DD"),
    (re.compile(r"[0-9]{4}-[0-9]{2}"), "%Y-%m", "YYYY-MM"),
    (
        re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}"),
        "%Y-%m-%d %H:%M",
        "YYYY-MM-DD HH:MM",
    ),
    (
        re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}"),
        "%Y-%m-%dT%H:%M",
        "YYYY-MM-DDTHH:MM",
    ),
    (
        re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"),
        "%Y-%m-%d %H:%M:%S",
        "YYYY-MM-DD HH:MM:SS",
    ),
    (
        re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"),
        "%Y-%m-%dT%H:%M:%S",
        "YYYY-MM-DDTHH:MM:SS",
    ),
    (re.compile(r"[0-9]{2}/[0-9]{2}/[0-9]{4}"), "%m/%d/%Y", "MM/DD/YYYY"),
)
_KNOWN_FORMATS = ", ".join(name for _, _, name in _DATE_FORMATS)
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


@dataclass(frozen=True)
class TimeSeries:
    """One regularly sampled series with one or more channels.

    Attributes:
        times: the time column's cells as written in the file, one per row.
        columns: each value column's name and its values, as long as ``times``.
        frequency: one of :data:`FREQUENCIES`, inferred or given.
    """

    times: list[str]
    columns: dict[str, list[float]]
    frequency: str


def read_series(
    path: Path | str,
    *,
    time_column: str | None = None,
    value_columns: Sequence[str] | None = None,
    frequency: str | None = None,
    fill: Fill | None = None,
    comment: str | None = None,
    delimiter: str = ",",
) -> TimeSeries:
    """The series in a CSV file (see the module docstring for the rules).

    Args:
        time_column: the header name of the times; None finds the one date column.
        value_columns: the columns to read, in this order; None takes all others.
        frequency: one of :data:`FREQUENCIES`; None infers it from the times.
        fill: ``"forward"`` repeats the last value before a gap, ``"interpolate"``
            draws a straight line between the values either side (by row, which is
            by time for a regular series); None makes a missing value an error.
        comment: a prefix of lines to skip, e.g. ``"#"``; None skips none.
        delimiter: the field separator.
    """
    if frequency is not None and frequency not in FREQUENCIES:
        raise ValueError(f"frequency: expected one of {', '.join(FREQUENCIES)}, got {frequency!r}")
    if fill not in (None, "forward", "interpolate"):
        raise ValueError(f"fill: expected 'forward', 'interpolate' or None, got {fill!r}")
    text = read_utf8(path, expected="a CSV header, then one row per time")
    header_line, header, rows = _rows(text, path, comment, delimiter)
    time_at = _time_column(header, header_line, rows, time_column, path)
    value_at = _value_columns(header, header_line, time_at, value_columns, path)
    auto = value_columns is None
    times, moments = _times(rows, time_at, header[time_at], path)
    values: dict[str, list[float | None]] = {}
    for at in value_at:
        values[header[at]] = [
            _number(fields[at], header[at], line, path, auto, fill) for line, fields in rows
        ]
    lines = [line for line, _ in rows]
    columns = {name: _filled(column, name, lines, fill, path) for name, column in values.items()}
    if frequency is None:
        frequency = _infer_frequency(moments, lines, path)
    return TimeSeries(times=times, columns=columns, frequency=frequency)


def _rows(
    text: str, path: Path | str, comment: str | None, delimiter: str
) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    header_line = 0
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip() or (comment and line.startswith(comment)):
            continue
        try:
            fields = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as error:
            raise DataError(
                f"malformed CSV: {one_line(error)} (expected {delimiter!r}-separated fields)",
                path=path,
                line=number,
            ) from None
        if not header:
            header_line, header = number, [name.strip() for name in fields]
            if "" in header:
                raise DataError(
                    f"column {header.index('') + 1} of the header has no name "
                    "(expected a name for every column)",
                    path=path,
                    line=number,
                )
            check_unique_columns(header, path, number)
            continue
        if len(fields) != len(header):
            raise DataError(
                f"row has {len(fields)} fields (expected {len(header)} like the header "
                f"on line {header_line}{comment_hint(header[0], header_line)})",
                path=path,
                line=number,
            )
        rows.append((number, fields))
    if not header:
        raise DataError("no header (expected a CSV header, then one row per time)", path=path)
    if not rows:
        raise DataError("a header but no rows (expected one row per time)", path=path)
    return header_line, header, rows


def _date_format(cell: str) -> tuple[str, str] | None:
    """``(strptime format, readable name)`` of the first format ``cell`` is in, or None."""
    for shape, pattern, name in _DATE_FORMATS:
        if shape.fullmatch(cell):
            try:
                datetime.strptime(cell, pattern)
            except ValueError:
                return None
            return pattern, name
    return None


def _time_column(
    header: list[str],
    header_line: int,
    rows: list[tuple[int, list[str]]],
    time_column: str | None,
    path: Path | str,
) -> int:
    found = ", ".join(repr(name) for name in header)
    if time_column is not None:
        if time_column not in header:
            raise DataError(
                f"no column {time_column!r} in the header (columns found: {found})",
                path=path,
                line=header_line,
            )
        return header.index(time_column)
    first_line, first = rows[0]
    dated = [at for at, cell in enumerate(first) if _date_format(cell.strip()) is not None]
    if len(dated) == 1:
        return dated[0]
    if not dated:
        raise DataError(
            f"no column holds dates (columns found: {found}; expected one column in "
            f"{_KNOWN_FORMATS}, or pass time_column=)",
            path=path,
            line=first_line,
        )
    names = ", ".join(repr(header[at]) for at in dated)
    raise DataError(
        f"{len(dated)} columns hold dates ({names}; expected one, or pass time_column=)",
        path=path,
        line=first_line,
    )


def _value_columns(
    header: list[str],
    header_line: int,
    time_at: int,
    value_columns: Sequence[str] | None,
    path: Path | str,
) -> list[int]:
    found = ", ".join(repr(name) for name in header)
    if value_columns is None:
        chosen = [at for at in range(len(header)) if at != time_at]
        if not chosen:
            raise DataError(
                f"no value columns (columns found: {found}; expected a time column and "
                "at least one value column)",
                path=path,
                line=header_line,
            )
        return chosen
    if isinstance(value_columns, str) or not value_columns:
        raise ValueError(
            f"value_columns: expected a non-empty sequence of names, got {value_columns!r}"
        )
    if len(set(value_columns)) != len(value_columns):
        raise ValueError(f"value_columns: expected unique names, got {list(value_columns)!r}")
    for name in value_columns:
        if name not in header:
            raise DataError(
                f"no column {name!r} in the header (columns found: {found})",
                path=path,
                line=header_line,
            )
        if header.index(name) == time_at:
            raise ValueError(f"value_columns: {name!r} is the time column")
    return [header.index(name) for name in value_columns]


def _times(
    rows: list[tuple[int, list[str]]], time_at: int, name: str, path: Path | str
) -> tuple[list[str], list[datetime]]:
    times = [fields[time_at].strip() for _, fields in rows]
    first_line = rows[0][0]
    known = _date_format(times[0])
    if known is None:
        raise DataError(
            f"time {times[0]!r} in column {name!r} is not a date "
            f"(expected one of {_KNOWN_FORMATS})",
            path=path,
            line=first_line,
        )
    pattern, readable = known
    moments: list[datetime] = []
    for (line, _), cell in zip(rows, times, strict=True):
        this = _date_format(cell)
        if this is None or this[0] != pattern:
            raise DataError(
                f"time {cell!r} is not in the first row's format "
                f"(expected {readable}, as on line {first_line})",
                path=path,
                line=line,
            )
        moment = datetime.strptime(cell, pattern)
        if moments and moment <= moments[-1]:
            raise DataError(
                f"time {cell!r} does not come after {times[len(moments) - 1]!r} "
                "(expected increasing times, each once)",
                path=path,
                line=line,
            )
        moments.append(moment)
    return times, moments


def _number(
    cell: str, column: str, line: int, path: Path | str, auto: bool, fill: Fill | None
) -> float | None:
    """The cell's value, or None where it is missing (allowed only with ``fill``)."""
    stripped = cell.strip()
    if stripped.lower() in _MISSING:
        if fill is None:
            raise DataError(
                f"missing value {stripped!r} in column {column!r} (expected a number; "
                "pass fill='forward' or fill='interpolate' to fill gaps)",
                path=path,
                line=line,
            )
        return None
    try:
        value = float(stripped)
    except ValueError:
        hint = "; pass value_columns= to choose the numeric columns" if auto else ""
        raise DataError(
            f"{stripped!r} in column {column!r} is not a number (expected a number{hint})",
            path=path,
            line=line,
        ) from None
    if not isfinite(value):
        raise DataError(
            f"{stripped!r} in column {column!r} is not a finite number (expected a number)",
            path=path,
            line=line,
        )
    return value


def _filled(
    column: list[float | None], name: str, lines: list[int], fill: Fill | None, path: Path | str
) -> list[float]:
    known = [at for at, value in enumerate(column) if value is not None]
    if len(known) == len(column):
        return [value for value in column if value is not None]
    if not known:
        raise DataError(
            f"every value in column {name!r} is missing (expected some numbers)", path=path
        )
    out = list(column)
    if known[0] > 0:
        raise DataError(
            f"missing value in column {name!r} before its first number "
            f"(expected a number: fill='{fill}' needs an earlier value)",
            path=path,
            line=lines[0],
        )
    for left, right in pairwise(known):
        start, end = out[left], out[right]
        assert start is not None and end is not None
        for at in range(left + 1, right):
            share = (at - left) / (right - left)
            out[at] = start if fill == "forward" else start + share * (end - start)
    if known[-1] < len(column) - 1:
        if fill == "interpolate":
            raise DataError(
                f"missing value in column {name!r} after its last number "
                "(expected a number: fill='interpolate' needs a later value)",
                path=path,
                line=lines[known[-1] + 1],
            )
        out[known[-1] + 1 :] = [out[known[-1]]] * (len(column) - known[-1] - 1)
    return [value for value in out if value is not None]


def _infer_frequency(moments: list[datetime], lines: list[int], path: Path | str) -> str:
    if len(moments) < 2:
        raise DataError(
            "one row cannot show a frequency (expected two or more rows, or pass frequency=)",
            path=path,
            line=lines[0],
        )
    gaps = [(b - a).total_seconds() for a, b in pairwise(moments)]
    median = statistics.median(gaps)
    if median in _EXACT_SECONDS:
        return _EXACT_SECONDS[median]
    days = median / 86400.0
    for name, low, high in _DAY_RANGES:
        if low <= days <= high:
            return name
    raise DataError(
        f"irregular times: the median gap is {_duration(median)} (expected the gap of one of "
        f"{', '.join(FREQUENCIES)}, or pass frequency=)",
        path=path,
    )


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    return f"{seconds:g} seconds"
