"""Forecasting data: a CSV with one time column and one or more numeric value columns.

The first row (after comment lines) is the header. The time column is the one
named ``date``, ``time``, ``timestamp``, ``datetime`` or ``ds`` (any case), else
the one column whose first row holds a date; the value columns are then all the
others. ``time_column`` and ``value_columns`` name them instead.

Dates are read in any format of :data:`DATE_FORMATS` (strptime formats), or in
the one ``date_format`` gives. Every row of the column keeps one format:

=========================  ====================================================
ISO 8601                   ``1999-01-04``, ``1999-01``, ``1999/01/04``, with a
                           time ``1999-01-04 13:45[:00[.5]]`` (or ``T``), and a
                           zone ``Z`` or ``+01:00``
month first, day first     ``1/4/1999``, ``04/01/1999``, ``4.1.1999``, ``4-1-1999``
month names                ``4 Jan 1999``, ``Jan 4, 1999``, ``January 4 1999``,
                           ``1999-Jan-04``, ``04-Jan-1999``, ``Jan 1999``
=========================  ====================================================

and the non-ISO ones with a time ``13:45[:00]`` or ``1:45[:00] PM``. A column whose
dates fit both month first and day first (``4/1/1999``) is decided by the whole
column: a first field above 12 means day first, a second above 12 month first,
and otherwise the one reading in which the dates increase; if both still fit, it
is an error that asks for ``date_format``. A ``.`` means day first. Dates must
increase strictly.

The frequency is inferred from the median gap between consecutive times and is
one of :data:`FREQUENCIES`, or ``"irregular"`` when the median gap is none of
theirs. A series whose gaps are not all that frequency's (trading days: weekends
and holidays missing) is still read, as ordered steps; ``TimeSeries.irregular``
says so. A missing value (an empty cell, ``NA``, ``N/A``, ``NaN``, ``null``,
``None`` or ``?``) is an error unless ``fill`` says how to fill it. With
``comment`` set, lines that start with it are skipped; the default is none.

The calendar of a series read: :func:`next_times` continues its time labels past
its end (a forecast's), :func:`default_season` gives its seasonal period.
"""

from __future__ import annotations

import calendar
import csv
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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

IRREGULAR = "irregular"
_EXACT_NAMES = {name: seconds for seconds, name in _EXACT_SECONDS.items()}

_ISO_CLOCKS = tuple(
    separator + clock + zone
    for separator in (" ", "T")
    for clock in ("%H:%M", "%H:%M:%S", "%H:%M:%S.%f")
    for zone in ("", "%z")  # %z reads Z, +01:00 and +0100
)
_CLOCKS = (" %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p")
# Month first comes before day first only so that messages list it first; an
# ambiguous column is decided by all its rows, never by this order.
_DAY_DATES = ("%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%m-%d-%Y", "%d-%m-%Y",
              "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%b %d %Y", "%B %d %Y",
              "%Y-%b-%d", "%d-%b-%Y")  # fmt: skip

#: The date formats recognised (strptime formats), tried in this order.
DATE_FORMATS: tuple[str, ...] = (
    *(date + clock for date in ("%Y-%m-%d", "%Y/%m/%d") for clock in ("", *_ISO_CLOCKS)),
    "%Y-%m",
    *(date + clock for date in _DAY_DATES for clock in ("", *_CLOCKS)),
    "%b %Y",
    "%B %Y",
)
TIME_COLUMN_NAMES = frozenset({"date", "time", "timestamp", "datetime", "ds"})
_YEAR = re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])")  # every format has a 4-digit year
_READABLE = {"%Y": "YYYY", "%m": "MM", "%d": "DD", "%H": "HH", "%M": "MM", "%S": "SS",
             "%f": "ffffff", "%z": "±HH:MM", "%b": "Mon", "%B": "Month", "%I": "hh",
             "%p": "AM/PM"}  # fmt: skip
_EXAMPLES = "1999-01-04, 1999-01-04 13:45, 1/4/1999, 4.1.1999, 4 Jan 1999 or Jan 4, 1999"
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


@dataclass(frozen=True)
class TimeSeries:
    """One regularly sampled series with one or more channels.

    Attributes:
        times: the time column's cells as written in the file, one per row.
        columns: each value column's name and its values, as long as ``times``.
        frequency: one of :data:`FREQUENCIES`, inferred or given, or ``"irregular"``.
        date_format: the strptime format the times are in.
        irregular: None when every gap is one step of ``frequency``; otherwise why
            not (``"trading days?"``, ``"gaps from 1 days to 9 days"``): the rows are
            then ordered steps, not evenly spaced ones.
    """

    times: list[str]
    columns: dict[str, list[float]]
    frequency: str
    date_format: str | None = None
    irregular: str | None = None


def read_series(
    path: Path | str,
    *,
    time_column: str | None = None,
    value_columns: Sequence[str] | None = None,
    frequency: str | None = None,
    fill: Fill | None = None,
    comment: str | None = None,
    delimiter: str = ",",
    date_format: str | None = None,
) -> TimeSeries:
    """The series in a CSV file (see the module docstring for the rules).

    Args:
        time_column: the header name of the times; None finds it by name or content.
        value_columns: the columns to read, in this order; None takes all others.
        frequency: one of :data:`FREQUENCIES`; None infers it from the times.
        fill: ``"forward"`` repeats the last value before a gap, ``"interpolate"``
            draws a straight line between the values either side (by row, which is
            by time for a regular series); None makes a missing value an error.
        comment: a prefix of lines to skip, e.g. ``"#"``; None skips none.
        delimiter: the field separator.
        date_format: the times' strptime format (``"%d/%m/%Y"``); None detects it.
    """
    if frequency is not None and frequency not in FREQUENCIES:
        raise ValueError(f"frequency: expected one of {', '.join(FREQUENCIES)}, got {frequency!r}")
    if fill not in (None, "forward", "interpolate"):
        raise ValueError(f"fill: expected 'forward', 'interpolate' or None, got {fill!r}")
    check_date_format(date_format)
    text = read_utf8(path, expected="a CSV header, then one row per time")
    header_line, header, rows = _rows(text, path, comment, delimiter)
    time_at = _time_column(header, header_line, rows, time_column, date_format, path)
    value_at = _value_columns(header, header_line, time_at, value_columns, path)
    auto = value_columns is None
    times = [fields[time_at].strip() for _, fields in rows]
    lines = [line for line, _ in rows]
    pattern, moments = _times(times, lines, header[time_at], date_format, path)
    values: dict[str, list[float | None]] = {}
    for at in value_at:
        values[header[at]] = [
            _number(fields[at], header[at], line, path, auto, fill) for line, fields in rows
        ]
    columns = {name: _filled(column, name, lines, fill, path) for name, column in values.items()}
    if frequency is None:
        frequency = _infer_frequency(moments, lines, path)
    return TimeSeries(times=times, columns=columns, frequency=frequency, date_format=pattern,
                      irregular=_irregularity(moments, frequency))  # fmt: skip


@dataclass(frozen=True)
class Column:
    """One value column of a series, with its times: what a forecaster reads.

    Attributes:
        name: the column's header name.
        values: its values, one per time.
        times, frequency, date_format, irregular: as for :class:`TimeSeries`
            (``date_format`` None: detect it from ``times``).
    """

    name: str
    values: list[float]
    times: list[str]
    frequency: str
    date_format: str | None = None
    irregular: str | None = None


def read_column(path: Path | str, column: str | None = None, *, time_column: str | None = None,
                date_format: str | None = None, comment: str | None = None) -> Column:  # fmt: skip
    """The value column ``column`` of a series CSV (:func:`read_series`), or its only one;
    a file of several value columns needs ``column``."""
    series = read_series(path, time_column=time_column, comment=comment, date_format=date_format,
                         value_columns=None if column is None else (column,))  # fmt: skip
    if len(series.columns) > 1:
        raise DataError(f"{len(series.columns)} value columns ({', '.join(series.columns)}); "
                        "choose the one to forecast with --column or column=", path=path)  # fmt: skip
    ((name, values),) = series.columns.items()
    return Column(name, values, series.times, series.frequency, series.date_format,
                  series.irregular)  # fmt: skip


def check_date_format(date_format: str | None) -> None:
    """Refuse a ``date_format`` that is not a strptime format (a string with a ``%``)."""
    if date_format is not None and (not isinstance(date_format, str) or "%" not in date_format):
        raise ValueError(
            f"date_format: expected a strptime format such as '%d/%m/%Y', got {date_format!r}"
        )


def date_format_of(times: Sequence[str]) -> str | None:
    """The one format of :data:`DATE_FORMATS` in which ``times`` are increasing dates,
    or None (not dates, several formats, or not increasing)."""
    if not times:
        return None
    try:
        pattern, _ = _times(list(times), list(range(1, len(times) + 1)), "times", None, "times")
    except DataError:
        return None
    return pattern


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


def _parsed(cell: str, pattern: str) -> datetime | None:
    try:
        return datetime.strptime(cell, pattern)
    except ValueError:
        return None


def _formats_of(cell: str) -> list[str]:
    """The formats of :data:`DATE_FORMATS` that read ``cell`` as a date."""
    if not _YEAR.search(cell):  # cheap: most cells that are not dates stop here
        return []
    return [pattern for pattern in DATE_FORMATS if _parsed(cell, pattern) is not None]


def _is_date(cell: str, date_format: str | None) -> bool:
    if date_format is not None:
        return _parsed(cell.strip(), date_format) is not None
    return bool(_formats_of(cell.strip()))


def _readable(pattern: str) -> str:
    """``'%m/%d/%Y'`` → ``'MM/DD/YYYY'``, as a user reads it."""
    return re.sub("%[a-zA-Z]", lambda m: _READABLE.get(m.group(), m.group()), pattern)


def _time_column(
    header: list[str],
    header_line: int,
    rows: list[tuple[int, list[str]]],
    time_column: str | None,
    date_format: str | None,
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
    named = [at for at, name in enumerate(header) if name.lower() in TIME_COLUMN_NAMES]
    if len(named) == 1:
        return named[0]
    first_line, first = rows[0]
    dated = [at for at in named or range(len(header)) if _is_date(first[at], date_format)]
    if len(dated) == 1:
        return dated[0]
    if not dated:
        expected = (
            f"dates in date_format {date_format!r}" if date_format else f"dates such as {_EXAMPLES}"
        )
        raise DataError(
            f"no column holds dates (columns found: {found}; expected one column of "
            f"{expected}, or pass time_column= and date_format=)",
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
    times: list[str], lines: list[int], name: str, date_format: str | None, path: Path | str
) -> tuple[str, list[datetime]]:
    """The column's format and its moments: the one format in which every time reads
    and, among readings that differ (month or day first), the one that increases."""
    candidates = [date_format] if date_format is not None else _formats_of(times[0])
    if not candidates:
        raise DataError(
            f"time {times[0]!r} in column {name!r} is not a date (expected a date such as "
            f"{_EXAMPLES}, or pass date_format=)",
            path=path,
            line=lines[0],
        )
    read: list[tuple[str, list[datetime]]] = []
    stopped: dict[str, int] = {}  # a format that failed → the row it failed at
    for pattern in candidates:
        moments: list[datetime] = []
        for cell in times:
            moment = _parsed(cell, pattern)
            if moment is None:
                stopped[pattern] = len(moments)
                break
            moments.append(moment)
        else:
            if not any(moments == other for _, other in read):  # %b and %B read "May" alike
                read.append((pattern, moments))
    if not read:
        at = max(stopped.values())
        if date_format is not None:
            wrong = f"is not in date_format {date_format!r} (expected {_readable(date_format)})"
        else:
            expected = " or ".join(_readable(p) for p in candidates if stopped[p] == at)
            wrong = f"is not in the first row's format (expected {expected}, as on line {lines[0]})"
        raise DataError(f"time {times[at]!r} {wrong}", path=path, line=lines[at])
    increasing = [(p, m) for p, m in read if all(a < b for a, b in pairwise(m))]
    if len(increasing) == 1:
        return increasing[0]
    if len(increasing) > 1:
        (first, a), (second, b) = increasing[:2]
        at = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        raise DataError(
            f"the dates in column {name!r} fit both {_readable(first)} and {_readable(second)} "
            f"(such as {times[at]!r} on line {lines[at]}; choose one with --date-format or "
            f"date_format=: {first!r} or {second!r})",
            path=path,
            line=lines[0],
        )
    pattern, moments = read[0]
    at = next(i for i in range(1, len(moments)) if moments[i] <= moments[i - 1])
    raise DataError(
        f"time {times[at]!r} does not come after {times[at - 1]!r} "
        "(expected increasing times, each once)",
        path=path,
        line=lines[at],
    )


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
    return IRREGULAR


def _irregularity(moments: list[datetime], frequency: str) -> str | None:
    """None when every gap is one step of ``frequency``, otherwise a short why-not."""
    gaps = [(b - a).total_seconds() for a, b in pairwise(moments)]
    if not gaps:
        return None
    if frequency in _EXACT_NAMES and all(gap == _EXACT_NAMES[frequency] for gap in gaps):
        return None
    ranges = {name: (low, high) for name, low, high in _DAY_RANGES}
    if frequency in ranges:
        low, high = ranges[frequency]
        if all(low <= gap / 86400.0 <= high for gap in gaps):
            return None
    # Weekdays only, a day apart but for weekends and holidays: a market's calendar.
    if frequency == "daily" and all(m.weekday() < 5 for m in moments):
        return "trading days?"
    return f"gaps from {_duration(min(gaps))} to {_duration(max(gaps))}"


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        days = seconds / 86400
        return f"{days:g} day{'' if days == 1 else 's'}"
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    return f"{seconds:g} seconds"


# --------------------------------------------------------------------------- the calendar

#: The usual seasonal period of each frequency (a day of hours, a year of months, …),
#: for a seasonal-naive forecast; trading days get 5, see :func:`default_season`.
SEASONS = {"secondly": 60, "minutely": 60, "quarter-hourly": 96, "half-hourly": 48,
           "hourly": 24, "daily": 7, "weekly": 52, "monthly": 12, "quarterly": 4,
           "yearly": 1}  # fmt: skip
_MONTHS = {"monthly": 1, "quarterly": 3, "yearly": 12}


def default_season(times: Sequence[str], frequency: str, date_format: str | None = None) -> int:
    """The seasonal period of a series (:data:`SEASONS`): 5 for daily data on weekdays
    only (trading days: a week of 5 steps); 1 (none) for an irregular series."""
    if frequency == "daily":
        moments = _moments(times, date_format)
        if moments is not None and all(m.weekday() < 5 for m in moments):
            return 5
    return SEASONS.get(frequency, 1)


def next_times(times: Sequence[str], frequency: str, count: int,
               date_format: str | None = None) -> list[str | None]:  # fmt: skip
    """The ``count`` time labels after ``times``, written as ``times`` are; None where
    they are unknown (an irregular series such as trading days, or no known format).

    Calendar steps keep month ends (2001-01-31 → 02-28 → 03-31); a format written
    without leading zeros (``1/4/1999``) is continued without them.
    """
    recent = list(times[-50:])
    known = date_format or date_format_of(recent)
    moments = None if known is None else _moments(recent, known)
    if known is None or moments is None:
        return [None] * count
    last = moments[-1]
    # %-m and %-d (glibc, BSD) write 1/4/1999 unpadded; where they are not supported,
    # the labels keep the zeros.
    unpadded = known.replace("%m", "%-m").replace("%d", "%-d")
    pairs = list(zip(moments, recent, strict=True))
    try:
        if any(m.strftime(known) != t for m, t in pairs) and all(
            m.strftime(unpadded) == t for m, t in pairs
        ):
            known = unpadded
    except ValueError:
        pass
    if frequency in _MONTHS:
        step = _MONTHS[frequency]
        return [_add_months(last, step * k).strftime(known) for k in range(1, count + 1)]
    seconds = _EXACT_NAMES.get(frequency)
    gaps = {(b - a).total_seconds() for a, b in pairwise(moments)}
    if seconds is None or gaps - {seconds}:
        return [None] * count
    return [(last + timedelta(seconds=seconds * k)).strftime(known) for k in range(1, count + 1)]


def _moments(times: Sequence[str], date_format: str | None) -> list[datetime] | None:
    """``times`` read in ``date_format`` (None: the one format they are in), or None."""
    pattern = date_format or date_format_of(times)
    if pattern is None:
        return None
    parsed = [_parsed(time, pattern) for time in times]
    moments = [moment for moment in parsed if moment is not None]
    return moments if len(moments) == len(parsed) else None


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month_end = moment.day == calendar.monthrange(moment.year, moment.month)[1]
    days = calendar.monthrange(year, month + 1)[1]
    day = days if month_end else min(moment.day, days)  # month ends stay month ends
    return moment.replace(year=year, month=month + 1, day=day)
