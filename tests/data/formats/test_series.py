"""Forecasting series from CSV: columns, formats, frequencies, filling, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given

from rnnkit.data.errors import DataError
from rnnkit.data.formats.series import FREQUENCIES, TimeSeries, read_series
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


def test_irregular_times_need_a_given_frequency(tmp_path: Path) -> None:
    path = write(tmp_path, "t,v\n2024-01-01,1\n2024-01-04,2\n2024-01-07,3\n")
    assert error_of(path) == (
        f"{path}: irregular times: the median gap is 3 days (expected the gap of one of "
        f"{', '.join(FREQUENCIES)}, or pass frequency=)"
    )
    assert read_series(path, frequency="daily").frequency == "daily"


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
    path = write(tmp_path, "t,v\n2024/01/01,1\n")
    assert error_of(path) == (
        f"{path}:2: no column holds dates (columns found: 't', 'v'; expected one column in "
        "YYYY-MM-DD, YYYY-MM, YYYY-MM-DD HH:MM, YYYY-MM-DDTHH:MM, YYYY-MM-DD HH:MM:SS, "
        "YYYY-MM-DDTHH:MM:SS, MM/DD/YYYY, or pass time_column=)"
    )


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
        ["2024-01-01"], {"v": [1.5]}, "daily"
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
            assert result.frequency in FREQUENCIES
            assert all(len(v) == len(result.times) for v in result.columns.values())
