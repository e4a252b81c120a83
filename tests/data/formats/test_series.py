"""Forecasting series from CSV: columns, formats, frequencies, filling, errors; the
calendar (continued time labels, default seasons)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.data.errors import DataError
from rnnkit.data.formats.series import (
    DATE_FORMATS,
    FREQUENCIES,
    IRREGULAR,
    Column,
    TimeSeries,
    date_format_of,
    default_season,
    next_times,
    read_column,
    read_series,
)
from tests.data.formats.damage import contents, read_or_data_error

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "models_airpassengers.csv"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "series.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def error_of(path: Path, **options: object) -> str:
    with pytest.raises(DataError) as caught:
        read_series(path, **options)  # type: ignore[arg-type]
    return str(caught.value)


def test_air_passengers_fixture() -> None:
    series = read_series(FIXTURE, comment="#")
    assert series.frequency == "monthly"
    assert len(series.times) == 144
    assert series.times[:2] == ["1949-01", "1949-02"] and series.times[-1] == "1960-12"
    passengers = series.columns["passengers"]
    assert list(series.columns) == ["passengers"]
    assert passengers[:3] == [112.0, 118.0, 132.0] and passengers[-3:] == [461.0, 390.0, 432.0]
    assert sum(passengers) == 40363.0


def test_several_value_columns_in_file_order_and_frozen(tmp_path: Path) -> None:
    path = write(tmp_path, "open, date ,close\n1.5,2024-01-02,2\n-3e2, 2024-01-03 ,4.25\n")
    series = read_series(path)
    assert series == TimeSeries(
        times=["2024-01-02", "2024-01-03"],
        columns={"open": [1.5, -300.0], "close": [2.0, 4.25]},
        frequency="daily",
        date_format="%Y-%m-%d",
        irregular=None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        series.frequency = "weekly"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("times", "frequency"),
    [
        (["2024-01-01 00:00", "2024-01-01 00:30", "2024-01-01 01:00"], "half-hourly"),
        (["2024-01-01T05:00", "2024-01-01T06:00", "2024-01-01T07:00"], "hourly"),
        (["2024-01-01 00:00:00", "2024-01-01 00:01:00", "2024-01-01 00:02:00"], "minutely"),
        (["01/31/2023", "02/01/2023", "02/02/2023"], "daily"),
        (["2024-01-01", "2024-01-08", "2024-01-15"], "weekly"),
        (["2023-01-31", "2023-02-28", "2023-03-31"], "monthly"),
        (["2023-01", "2023-04", "2023-07", "2023-10"], "quarterly"),
        (["2019-06", "2020-06", "2021-06"], "yearly"),
        # Weekends missing from daily prices: the median gap is still one day.
        (["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10"], "daily"),
    ],
)
def test_frequency_from_the_median_gap(tmp_path: Path, times: list[str], frequency: str) -> None:
    path = write(tmp_path, "t,v\n" + "".join(f"{t},{i}\n" for i, t in enumerate(times)))
    series = read_series(path)
    assert series.frequency == frequency and series.times == times
    assert series.columns == {"v": [float(i) for i in range(len(times))]}


def test_irregular_times_are_ordered_steps(tmp_path: Path) -> None:
    # A median gap of 3 days is no frequency: the rows are read as ordered steps.
    path = write(tmp_path, "t,v\n2024-01-01,1\n2024-01-04,2\n2024-01-07,3\n2024-01-17,4\n")
    series = read_series(path)
    assert (series.frequency, series.irregular) == (IRREGULAR, "gaps from 3 days to 10 days")
    assert series.columns == {"v": [1.0, 2.0, 3.0, 4.0]}
    given = read_series(path, frequency="daily")
    assert (given.frequency, given.irregular) == ("daily", "gaps from 3 days to 10 days")
    # Daily with weekends missing: a daily series, flagged as trading days.
    days = ["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"]
    trading = read_series(write(tmp_path, "t,v\n" + "".join(f"{d},1\n" for d in days)))
    assert (trading.frequency, trading.irregular) == ("daily", "trading days?")
    # A weekend day among them: not a market's calendar.
    days = ["2024-01-05", "2024-01-06", "2024-01-08", "2024-01-09"]
    weekend = read_series(write(tmp_path, "t,v\n" + "".join(f"{d},1\n" for d in days)))
    assert (weekend.frequency, weekend.irregular) == ("daily", "gaps from 1 day to 2 days")
    # Months are regular whatever their lengths; a missing month is not.
    months = read_series(write(tmp_path, "t,v\n2023-01-31,1\n2023-02-28,2\n2023-03-31,3\n"))
    assert (months.frequency, months.irregular) == ("monthly", None)
    gap = read_series(write(tmp_path, "t,v\n2023-01,1\n2023-02,2\n2023-03,3\n2023-05,4\n"))
    assert (gap.frequency, gap.irregular) == ("monthly", "gaps from 28 days to 61 days")


def test_columns_named_by_arguments_when_detection_is_ambiguous(tmp_path: Path) -> None:
    path = write(
        tmp_path, "start,end,load,site\n2024-01-01,2024-01-02,5,A\n2024-01-02,2024-01-03,6,A\n"
    )
    assert error_of(path) == (
        f"{path}:2: 2 columns hold dates ('start', 'end'; expected one, or pass time_column=)"
    )
    assert error_of(path, time_column="start") == (
        f"{path}:2: '2024-01-02' in column 'end' is not a number (expected a number; pass "
        "value_columns= to choose the numeric columns)"
    )
    series = read_series(path, time_column="start", value_columns=["load"])
    assert series.times == ["2024-01-01", "2024-01-02"] and series.columns == {"load": [5.0, 6.0]}


def test_named_columns_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "when,v\n2024-01-01,1\n2024-01-02,2\n")
    assert error_of(path, time_column="time") == (
        f"{path}:1: no column 'time' in the header (columns found: 'when', 'v')"
    )
    assert error_of(path, value_columns=["value"]) == (
        f"{path}:1: no column 'value' in the header (columns found: 'when', 'v')"
    )


def test_no_date_column(tmp_path: Path) -> None:
    path = write(tmp_path, "t,v\n19990104,1\n")
    assert error_of(path) == (
        f"{path}:2: no column holds dates (columns found: 't', 'v'; expected one column of "
        "dates such as 1999-01-04, 1999-01-04 13:45, 1/4/1999, 4.1.1999, 4 Jan 1999 or "
        "Jan 4, 1999, or pass time_column= and date_format=)"
    )
    assert error_of(path, date_format="%d%m%Y") == (
        f"{path}:2: no column holds dates (columns found: 't', 'v'; expected one column of "
        "dates in date_format '%d%m%Y', or pass time_column= and date_format=)"
    )
    assert read_series(path, date_format="%Y%m%d", frequency="daily").times == ["19990104"]


def test_missing_values_are_errors_unless_filled(tmp_path: Path) -> None:
    path = write(tmp_path, "t,a,b\n2024-01,1,10\n2024-02,,NA\n2024-03,NaN,16\n2024-04,7,?\n")
    assert error_of(path) == (
        f"{path}:3: missing value '' in column 'a' (expected a number; "
        "pass fill='forward' or fill='interpolate' to fill gaps)"
    )
    forward = read_series(path, fill="forward")
    assert forward.columns == {"a": [1.0, 1.0, 1.0, 7.0], "b": [10.0, 10.0, 16.0, 16.0]}
    middle = write(tmp_path, "t,a\n2024-01,1\n2024-02,?\n2024-03,null\n2024-04,7\n")
    assert read_series(middle, fill="interpolate").columns == {"a": [1.0, 3.0, 5.0, 7.0]}


def test_fills_that_have_nothing_to_fill_from(tmp_path: Path) -> None:
    leading = write(tmp_path, "t,a\n2024-01,\n2024-02,2\n")
    assert error_of(leading, fill="forward") == (
        f"{leading}:2: missing value in column 'a' before its first number "
        "(expected a number: fill='forward' needs an earlier value)"
    )
    trailing = write(tmp_path, "t,a\n2024-01,1\n2024-02,2\n2024-03,\n")
    assert error_of(trailing, fill="interpolate") == (
        f"{trailing}:4: missing value in column 'a' after its last number "
        "(expected a number: fill='interpolate' needs a later value)"
    )
    empty = write(tmp_path, "t,a\n2024-01,\n2024-02,\n")
    assert error_of(empty, fill="forward") == (
        f"{empty}: every value in column 'a' is missing (expected some numbers)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "t,v\n2024-01-01,1\n2024-01-02,inf\n",
            "3: 'inf' in column 'v' is not a finite number (expected a number)",
        ),
        (
            "t,v\n2024-01-02,1\n2024-01-01,2\n",
            "3: time '2024-01-01' does not come after "
            "'2024-01-02' (expected increasing times, each once)",
        ),
        (
            "t,v\n2024-01-02,1\n2024-01-02,2\n",
            "3: time '2024-01-02' does not come after "
            "'2024-01-02' (expected increasing times, each once)",
        ),
        (
            "t,v\n2024-01-01,1\n01/02/2024,2\n",
            "3: time '01/02/2024' is not in the first row's "
            "format (expected YYYY-MM-DD, as on line 2)",
        ),
        (
            "t,v\n2024-01-01,1\n2024-02-30,2\n",
            "3: time '2024-02-30' is not in the first row's "
            "format (expected YYYY-MM-DD, as on line 2)",
        ),
        (
            "t,v\n2024-01-01,1\n2024-01-02,2,3\n",
            "3: row has 3 fields (expected 2 like the header on line 1)",
        ),
        (
            't,v\n2024-01-01,"1\n',
            "2: malformed CSV: unexpected end of data (expected ','-separated fields)",
        ),
        (
            "t,v,t\n2024-01-01,1,2\n",
            "1: column 't' appears twice in the header (expected unique column names)",
        ),
        ("t,,v\n", "1: column 2 of the header has no name (expected a name for every column)"),
        (
            "t,v\n2024-01-01,1\n",
            "2: one row cannot show a frequency (expected two or more rows, or pass frequency=)",
        ),
        (
            "t\n2024-01-01\n",
            "1: no value columns (columns found: 't'; expected a time column "
            "and at least one value column)",
        ),
    ],
)
def test_errors_name_file_line_and_what(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}:{message}"


def test_header_only_comments_only_and_the_comment_hint(tmp_path: Path) -> None:
    header_only = write(tmp_path, "t,v\n\n")
    assert (
        error_of(header_only) == f"{header_only}: a header but no rows (expected one row per time)"
    )
    comments = write(tmp_path, "# nothing\n")
    assert error_of(comments, comment="#") == (
        f"{comments}: no header (expected a CSV header, then one row per time)"
    )
    assert error_of(FIXTURE) == (
        f"{FIXTURE}:2: row has 2 fields (expected 4 like the header on line 1; "
        "line 1 starts with '#': pass comment='#' if it is a comment)"
    )


def test_one_row_is_fine_with_a_given_frequency(tmp_path: Path) -> None:
    path = write(tmp_path, "t;v\n2024-01-01;1,5\n")
    with pytest.raises(DataError, match="is not a number"):
        read_series(path, delimiter=";")
    path.write_text("t;v\n2024-01-01;1.5\n", encoding="utf-8")
    assert read_series(path, delimiter=";", frequency="daily") == TimeSeries(
        ["2024-01-01"], {"v": [1.5]}, "daily", "%Y-%m-%d"
    )


def test_bad_arguments_are_value_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "t,v\n2024-01-01,1\n")
    with pytest.raises(ValueError, match="frequency: expected one of secondly, minutely"):
        read_series(path, frequency="fortnightly")
    with pytest.raises(ValueError, match="fill: expected 'forward', 'interpolate' or None"):
        read_series(path, fill="mean")  # type: ignore[arg-type]


@given(contents(b"# c\nmonth,a,b\n2024-01,1,2\n2024-02,,3\n2024-03,4.5,NA\n2024-04,5,6\n"))
def test_only_data_error_escapes(content: bytes) -> None:
    for fill in (None, "forward", "interpolate"):
        result = read_or_data_error(
            lambda p, f=fill: read_series(p, comment="#", fill=f),  # type: ignore[misc]
            content,
            "input.csv",
        )
        if isinstance(result, TimeSeries):
            assert result.frequency in (*FREQUENCIES, IRREGULAR)
            assert all(len(v) == len(result.times) for v in result.columns.values())


# The S&P 500 closes as the `arch` package ships them: `Date,Adj Close`, month-first
# dates without leading zeros, trading days only. Synthetic prices, real calendar.
_HOLIDAYS_1999 = {date(1999, 1, 18), date(1999, 2, 15), date(1999, 4, 2), date(1999, 5, 31),
                  date(1999, 7, 5), date(1999, 9, 6), date(1999, 11, 25), date(1999, 12, 24)}  # fmt: skip


def sp500_like(path: Path, rows: int = 200) -> Path:
    """Write ``rows`` trading days from 1999-01-04 in the `arch` S&P 500 file's format."""
    generator, price, day = random.Random(1999), 1228.10, date(1999, 1, 4)
    lines = ["Date,Adj Close"]
    while len(lines) <= rows:
        if day.weekday() < 5 and day not in _HOLIDAYS_1999:
            lines.append(f"{day.month}/{day.day}/{day.year},{price:.2f}")
            price *= 1 + generator.gauss(0.0004, 0.012)
        day += timedelta(days=1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_sp500_file_as_users_bring_it(tmp_path: Path) -> None:
    path = sp500_like(tmp_path / "sp500.csv")
    series = read_series(path)
    assert series.times[:3] == ["1/4/1999", "1/5/1999", "1/6/1999"] and len(series.times) == 200
    # 1/4 … 1/12 fit day first too; 1/13/1999 on line 8 decides month first.
    assert series.date_format == "%m/%d/%Y"
    assert (series.frequency, series.irregular) == ("daily", "trading days?")
    assert list(series.columns) == ["Adj Close"] and series.columns["Adj Close"][0] == 1228.10
    assert read_series(path, value_columns=["Adj Close"]).columns == series.columns


@pytest.mark.parametrize(
    ("cells", "pattern", "first", "frequency"),
    [
        (["1999-01-04", "1999-01-05"], "%Y-%m-%d", datetime(1999, 1, 4), "daily"),
        (["1999-1-4", "1999-1-5"], "%Y-%m-%d", datetime(1999, 1, 4), "daily"),
        (["1999/01/04", "1999/01/05"], "%Y/%m/%d", datetime(1999, 1, 4), "daily"),
        (["1999-01", "1999-02"], "%Y-%m", datetime(1999, 1, 1), "monthly"),
        (
            ["1999-01-04 13:45", "1999-01-04 14:45"],
            "%Y-%m-%d %H:%M",
            datetime(1999, 1, 4, 13, 45),
            "hourly",
        ),
        (
            ["1999-01-04 13:45:00", "1999-01-04 13:45:01"],
            "%Y-%m-%d %H:%M:%S",
            datetime(1999, 1, 4, 13, 45),
            "secondly",
        ),
        (
            ["1999-01-04T13:45:00.5", "1999-01-04T13:45:01.5"],
            "%Y-%m-%dT%H:%M:%S.%f",
            datetime(1999, 1, 4, 13, 45, 0, 500000),
            "secondly",
        ),
        (
            ["1999-01-04T13:45Z", "1999-01-04T14:00Z"],
            "%Y-%m-%dT%H:%M%z",
            datetime(1999, 1, 4, 13, 45, tzinfo=UTC),
            "quarter-hourly",
        ),
        # One zone per row: a clock change keeps the gaps right.
        (
            ["1999-03-28T01:30+01:00", "1999-03-28T03:00+02:00"],
            "%Y-%m-%dT%H:%M%z",
            datetime(1999, 3, 28, 0, 30, tzinfo=UTC),
            "half-hourly",
        ),
        (["1/13/1999", "1/14/1999"], "%m/%d/%Y", datetime(1999, 1, 13), "daily"),
        (["13/1/1999", "14/1/1999"], "%d/%m/%Y", datetime(1999, 1, 13), "daily"),
        (["4.1.1999", "5.1.1999"], "%d.%m.%Y", datetime(1999, 1, 4), "daily"),
        (["13-01-1999", "14-01-1999"], "%d-%m-%Y", datetime(1999, 1, 13), "daily"),
        (
            ["1/13/1999 1:45 PM", "1/13/1999 2:45 PM"],
            "%m/%d/%Y %I:%M %p",
            datetime(1999, 1, 13, 13, 45),
            "hourly",
        ),
        (
            ["13/01/1999 13:45", "13/01/1999 14:45"],
            "%d/%m/%Y %H:%M",
            datetime(1999, 1, 13, 13, 45),
            "hourly",
        ),
        (["4 Jan 1999", "5 Jan 1999"], "%d %b %Y", datetime(1999, 1, 4), "daily"),
        (["Jan 4, 1999", "Jan 5, 1999"], "%b %d, %Y", datetime(1999, 1, 4), "daily"),
        (["January 4 1999", "January 5 1999"], "%B %d %Y", datetime(1999, 1, 4), "daily"),
        (["1999-Jan-04", "1999-Jan-05"], "%Y-%b-%d", datetime(1999, 1, 4), "daily"),
        (["04-JAN-1999", "05-JAN-1999"], "%d-%b-%Y", datetime(1999, 1, 4), "daily"),
        (["Jan 1999", "Feb 1999"], "%b %Y", datetime(1999, 1, 1), "monthly"),
        # "May" is a full name and an abbreviation: both read alike, the first is kept.
        (["May 4 1999", "May 5 1999"], "%b %d %Y", datetime(1999, 5, 4), "daily"),
    ],
)
def test_date_formats(
    tmp_path: Path, cells: list[str], pattern: str, first: datetime, frequency: str
) -> None:
    quoted = "".join(f'"{c}",{i}\n' for i, c in enumerate(cells))  # "Jan 4, 1999" has a comma
    series = read_series(write(tmp_path, "when,value\n" + quoted))
    assert (series.date_format, series.frequency, series.times) == (pattern, frequency, cells)
    assert datetime.strptime(series.times[0], pattern) == first
    assert pattern in DATE_FORMATS and date_format_of(cells) == pattern


@pytest.mark.parametrize(
    ("cells", "pattern"),
    [
        # A first field above 12 on a later row decides day first …
        (["4/1/1999", "5/1/1999", "13/1/1999"], "%d/%m/%Y"),
        # … a second field above 12, month first.
        (["1/4/1999", "1/12/1999", "1/13/1999"], "%m/%d/%Y"),
        # Both fit every row: only day first increases (Jan 2, Feb 1, Mar 1) …
        (["2/1/1999", "1/2/1999", "1/3/1999"], "%d/%m/%Y"),
        # … only month first increases (Jan 3, Feb 1, Mar 2).
        (["1/3/1999", "2/1/1999", "3/2/1999"], "%m/%d/%Y"),
        # The same day and month in every row: both read alike, no question to ask.
        (["1/1/1999", "2/2/1999", "3/3/1999"], "%m/%d/%Y"),
    ],
)
def test_month_or_day_first_is_decided_by_the_whole_column(
    tmp_path: Path, cells: list[str], pattern: str
) -> None:
    path = write(tmp_path, "Date,v\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells)))
    assert read_series(path).date_format == pattern


def test_an_undecidable_column_asks_for_date_format(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,v\n1/4/1999,1\n1/5/1999,2\n2/5/1999,3\n")
    assert error_of(path) == (
        f"{path}:2: the dates in column 'Date' fit both MM/DD/YYYY and DD/MM/YYYY (such as "
        "'1/4/1999' on line 2; choose one with --date-format or date_format=: '%m/%d/%Y' or "
        "'%d/%m/%Y')"
    )
    # Apr 1, May 1, May 2 or Jan 4, Jan 5, Feb 5: the same cells, another series.
    day_first = read_series(path, date_format="%d/%m/%Y")
    assert (day_first.date_format, day_first.irregular) == (
        "%d/%m/%Y",
        "gaps from 1 day to 30 days",
    )
    month_first = read_series(path, date_format="%m/%d/%Y")
    assert month_first.irregular == "gaps from 1 day to 31 days"
    # A dotted date is day first by convention: never a question.
    dotted = write(tmp_path, "Date,v\n1.4.1999,1\n1.5.1999,2\n")
    assert read_series(dotted).date_format == "%d.%m.%Y"


def test_a_given_date_format(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,v\n04/01/1999,1\n05/01/1999,2\n05/13/1999,3\n")
    assert error_of(path, date_format="%d/%m/%Y") == (
        f"{path}:4: time '05/13/1999' is not in date_format '%d/%m/%Y' (expected DD/MM/YYYY)"
    )
    odd = write(tmp_path, "stamp,v\n1999|004,1\n1999|005,2\n")
    series = read_series(odd, date_format="%Y|%j")  # year and day of the year
    assert (series.frequency, series.date_format) == ("daily", "%Y|%j")
    for bad in ("dd/mm/yyyy", "", 5):
        with pytest.raises(ValueError, match="date_format: expected a strptime format"):
            read_series(path, date_format=bad)  # type: ignore[arg-type]


def test_the_time_column_by_name_or_content(tmp_path: Path) -> None:
    # By name, in any case, even beside another column of dates.
    path = write(tmp_path, "Expiry,DS,price\n2030-01-01,1999-01-04,1\n2030-01-01,1999-01-05,2\n")
    with pytest.raises(DataError, match="'2030-01-01' in column 'Expiry' is not a number"):
        read_series(path)
    assert read_series(path, value_columns=["price"]).times == ["1999-01-04", "1999-01-05"]
    for name in ("date", "Time", "TIMESTAMP", "datetime", "ds"):
        named = write(tmp_path, f"v,{name}\n1,1999-01-04\n2,1999-01-05\n")
        assert read_series(named).columns == {"v": [1.0, 2.0]}
    # Two such names: the one that holds dates.
    both = write(tmp_path, "date,time,v\n4 Jan 1999,13:45,1\n5 Jan 1999,13:45,2\n")
    with pytest.raises(DataError, match="'13:45' in column 'time' is not a number"):
        read_series(both)
    # A column named as dates that holds none: said at its line.
    wrong = write(tmp_path, "Date,v\nMonday,1\n")
    assert error_of(wrong) == (
        f"{wrong}:2: time 'Monday' in column 'Date' is not a date (expected a date such as "
        "1999-01-04, 1999-01-04 13:45, 1/4/1999, 4.1.1999, 4 Jan 1999 or Jan 4, 1999, or pass "
        "date_format=)"
    )
    # By content, and explicitly.
    content = write(tmp_path, "when,v\n1999-01-04,1\n1999-01-05,2\n")
    assert read_series(content).times == ["1999-01-04", "1999-01-05"]
    assert error_of(content, time_column="Date") == (
        f"{content}:1: no column 'Date' in the header (columns found: 'when', 'v')"
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "1/13/1999,1\n1/14/1999,2\n1/14/1999,3\n",
            "4: time '1/14/1999' does not come after '1/14/1999' "
            "(expected increasing times, each once)",
        ),
        (
            "1/13/1999,1\n1/15/1999,2\n1/14/1999,3\n",
            "4: time '1/14/1999' does not come after '1/15/1999' "
            "(expected increasing times, each once)",
        ),
        (
            "1/13/1999,1\n1/14/1999,2\n1999-01-15,3\n",
            "4: time '1999-01-15' is not in the first row's format "
            "(expected MM/DD/YYYY, as on line 2)",
        ),
        (
            "1/13/1999,1\n2/30/1999,2\n",
            "3: time '2/30/1999' is not in the first row's format "
            "(expected MM/DD/YYYY, as on line 2)",
        ),
        # Both readings stop at the same row: the message names both.
        (
            "1/4/1999,1\n13/13/1999,2\n",
            "3: time '13/13/1999' is not in the first row's format "
            "(expected MM/DD/YYYY or DD/MM/YYYY, as on line 2)",
        ),
        # Neither reading increases: the first one's first step back is named.
        (
            "1/2/1999,1\n2/1/1999,2\n2/1/1999,3\n",
            "4: time '2/1/1999' does not come after '2/1/1999' "
            "(expected increasing times, each once)",
        ),
    ],
)
def test_bad_dates_name_their_line(tmp_path: Path, rows: str, message: str) -> None:
    path = write(tmp_path, "Date,v\n" + rows)
    assert error_of(path) == f"{path}:{message}"


_RENDERED = ["%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%m/%d/%Y", "%d/%m/%Y",
             "%d.%m.%Y", "%d %b %Y", "%b %d, %Y", "%B %d %Y", "%Y-%b-%d", "%m/%d/%Y %I:%M %p"]  # fmt: skip


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # one file, rewritten
@given(
    start=st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1)),
    steps=st.lists(st.integers(1, 90 * 24 * 60), min_size=1, max_size=30),
    pattern=st.sampled_from(_RENDERED),
)
def test_dates_written_in_a_format_read_back(
    tmp_path: Path, start: datetime, steps: list[int], pattern: str
) -> None:
    # Minutes apart, rounded to what the format shows, kept only where they still differ.
    moments = [start + timedelta(minutes=sum(steps[:k])) for k in range(len(steps) + 1)]
    cells = list(dict.fromkeys(m.strftime(pattern) for m in moments))
    expected = [datetime.strptime(c, pattern) for c in cells]
    path = write(tmp_path, "Date,v\n" + "".join(f'"{c}",{i}\n' for i, c in enumerate(cells)))
    given_format = read_series(path, date_format=pattern, frequency="daily")
    assert [datetime.strptime(c, pattern) for c in given_format.times] == expected
    try:
        series = read_series(path, frequency="daily")
    except DataError as error:
        message = str(error)
    else:
        assert [datetime.strptime(c, series.date_format or "") for c in series.times] == expected
        return
    # Only a column that reads as increasing dates both ways may be a question.
    assert "fit both" in message and pattern in message and "/" in pattern


# ---- one column, and the calendar ----


def test_read_column_takes_the_one_value_column_or_the_one_named(tmp_path: Path) -> None:
    one = read_column(FIXTURE, comment="#")
    assert isinstance(one, Column) and one.frequency == "monthly" and one.irregular is None
    assert len(one.values) == len(one.times) == 144 and one.times[0] == "1949-01"
    two = write(tmp_path, "month,a,b\n1950-01,1,2\n1950-02,3,4\n")
    with pytest.raises(DataError, match=r"2 value columns \(a, b\); choose .* --column"):
        read_column(two)
    assert read_column(two, "b").values == [2.0, 4.0]


def test_next_times() -> None:
    assert next_times(["1960-11", "1960-12"], "monthly", 2) == ["1961-01", "1961-02"]
    assert next_times(["2001-01-31"], "monthly", 2) == ["2001-02-28", "2001-03-31"]
    assert next_times(["2000-06-05T23:30"], "half-hourly", 1) == ["2000-06-06T00:00"]
    assert next_times(["2001-02-28"], "monthly", 1) == ["2001-03-31"]
    assert next_times(["1999-10"], "quarterly", 2) == ["2000-01", "2000-04"]
    assert next_times(["1998-03"], "yearly", 1) == ["1999-03"]
    # Trading days: the gaps differ, so the next labels are not known.
    assert next_times(["2017-11-09", "2017-11-10", "2017-11-13"], "daily", 1) == [None]


def test_next_times_in_the_series_date_format() -> None:
    assert next_times(["1/30/1999"], "daily", 2, "%m/%d/%Y") == ["1/31/1999", "2/1/1999"]
    assert next_times(["01/30/1999"], "daily", 1, "%m/%d/%Y") == ["01/31/1999"]
    assert next_times(["30.1.1999"], "monthly", 1, "%d.%m.%Y") == ["28.2.1999"]
    assert next_times(["Jan 1999"], "monthly", 2) == ["Feb 1999", "Mar 1999"]
    assert next_times(["tuesday"], "daily", 1) == [None]


def test_default_season() -> None:
    assert default_season(["2017-11-10", "2017-11-13"], "daily") == 5
    assert default_season(["2017-11-11", "2017-11-12"], "daily") == 7
    assert default_season(["2000-06-05T00:00"], "half-hourly") == 48
    # Trading days in any date format: a week of 5 steps.
    assert default_season(["1/13/1999", "1/14/1999", "1/15/1999", "1/19/1999"], "daily") == 5
    assert default_season(["1/4/1999", "1/5/1999"], "daily", "%m/%d/%Y") == 5
    assert default_season(["1/4/1999", "1/9/1999"], "irregular") == 1
