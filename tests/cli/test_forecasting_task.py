"""``rnnkit train forecast`` → ``evaluate`` → ``predict`` → ``--resume``: AirPassengers, and
files as users bring them (trading days, month- or day-first dates, two date columns)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.training.checkpoint import load_checkpoint
from tests.data.formats.test_series import sp500_like
from tests.models.fixtures import FIXTURES, air_passengers

AIR = FIXTURES / "models_airpassengers.csv"


def train(data: Path, out: Path, *extra: str) -> int:
    return main([
        "train", "forecast", "--no-report", "--data", str(data), "--out", str(out), "--window", "24",
        "--horizon", "12", "--transform", "log", "--hidden", "8", "--batch-size", "16",
        "--progress", "off", *extra,
    ])  # fmt: skip


def test_train_evaluate_predict_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train(AIR, out, "--max-steps", "6", "--loss", "huber") == 0
    printed = capsys.readouterr().out
    assert "trained 6 steps (max_steps)" in printed
    assert "season = 12" in printed and "outputs = 12" in printed and 'loss = "huber"' in printed
    assert "scaler.json" in load_checkpoint(out / "checkpoints" / "last").artifacts

    assert main(["evaluate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "forecast" and report["split"] == "test"
    table = report["details"]["metrics"]
    assert set(table) == {"model", "naive", "seasonal_naive"}
    assert report["metrics"]["mape"] == table["model"]["mape"]
    # Seasonal naive for 1960 repeats 1959: MAPE 9.988 %, by hand from the data.
    actual, last_year = air_passengers()[-12:], air_passengers()[-24:-12]
    by_hand = float(((last_year - actual).abs() / actual).mean() * 100)
    assert table["seasonal_naive"]["mape"] == pytest.approx(by_hand)
    assert by_hand == pytest.approx(9.988, abs=1e-3)

    assert main(["evaluate", str(out)]) == 0
    table_text = capsys.readouterr().out
    assert "seasonal_naive" in table_text and "mase" in table_text

    assert main(["predict", str(out), "--json"]) == 0
    first = capsys.readouterr().out
    record = json.loads(first)
    assert record["times"] == [f"1961-{m:02d}" for m in range(1, 13)]
    assert len(record["forecast"]) == 12
    assert main(["predict", str(out), "--json"]) == 0
    assert capsys.readouterr().out == first  # the same run forecasts the same

    short = tmp_path / "to1959.csv"
    short.write_text("\n".join(AIR.read_text().splitlines()[:-12]) + "\n")
    assert main(["predict", str(out), "--file", str(short)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1].startswith("1960-01 ")

    assert train(AIR, out, "--max-steps", "10", "--loss", "huber", "--resume") == 0
    assert "trained 10 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "last").step == 10


def test_bad_input_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("month,passengers\n1949-01,112\n1949-02,lots\n")
    assert train(bad, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.csv:3:" in err and "'lots'" in err

    assert train(AIR, tmp_path / "run", "--window", "130") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too few" in err

    with pytest.raises(SystemExit) as stop:
        train(AIR, tmp_path / "run", "--transform", "sqrt")
    assert stop.value.code == 2
    assert "--transform" in capsys.readouterr().err


def test_the_sp500_file_as_users_bring_it_trains_evaluates_and_predicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `Date,Adj Close`, 1/4/1999-style dates, trading days only: the `arch` file's form.
    data = sp500_like(tmp_path / "sp500.csv")
    rows = [line.split(",") for line in data.read_text().splitlines()[1:]]
    closes = [float(value) for _, value in rows]
    out = tmp_path / "run"
    notice = f"{data}: dates are irregular (trading days?): rows are taken as ordered steps\n"
    assert train(data, out, "--column", "Adj Close", "--window", "20", "--horizon", "5",
                 "--max-steps", "6") == 0  # fmt: skip
    captured = capsys.readouterr()
    assert captured.err == notice
    assert "trained 6 steps" in captured.out and "season = 5" in captured.out
    assert 'date_format = "' not in captured.out  # detected, not pinned in the config

    assert main(["evaluate", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == notice
    report = json.loads(captured.out)
    backtest = report["details"]["backtest"]
    assert backtest["times"] == [time for time, _ in rows[-5:]] and backtest["season"] == 5
    assert backtest["actual"] == closes[-5:] and backtest["origin"] == rows[-6][0]
    # Seasonal naive with season 5 repeats the week before: its MAPE by hand.
    by_hand = sum(abs(w - a) / a for w, a in zip(closes[-10:-5], closes[-5:], strict=True)) * 20
    assert report["details"]["metrics"]["seasonal_naive"]["mape"] == pytest.approx(by_hand)
    assert 0 < report["metrics"]["mape"] < 50

    assert main(["predict", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    # Trading days: the next dates are not known, so the steps are numbered instead.
    assert record["column"] == "Adj Close" and record["times"] == [None] * 5
    assert len(record["forecast"]) == 5 and all(v > 0 for v in record["forecast"])
    short = tmp_path / "to-the-origin.csv"
    short.write_text("\n".join(data.read_text().splitlines()[:-5]) + "\n")
    assert main(["predict", str(out), "--file", str(short)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == f"# Adj Close: 5 steps after {rows[-6][0]}"
    assert [line.split()[0] for line in text[1:]] == ["+1", "+2", "+3", "+4", "+5"]
    # From the same history, predict forecasts what the test backtest forecast.
    predicted = [float(line.split()[1]) for line in text[1:]]
    assert predicted == pytest.approx(backtest["forecast"], rel=1e-5)


def settlements(path: Path) -> Path:
    """Two date columns; the trade dates are day first and fit month first too."""
    lines = ["Settle,Trade,Adj Close"]
    for i in range(72):
        year, month = 1995 + i // 12, i % 12 + 1
        lines.append(f"{year}-{month:02d}-28,1/{month}/{year},{100 + i + 5 * (i % 12 == 6)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_time_column_and_date_format_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = settlements(tmp_path / "settle.csv"), tmp_path / "run"
    flags = ("--window", "12", "--horizon", "6", "--max-steps", "2", "--column", "Adj Close")
    assert train(data, out, *flags) == 2
    assert capsys.readouterr().err == (
        f"rnnkit train: error: {data}:2: 2 columns hold dates ('Settle', 'Trade'; expected "
        "one, or pass time_column=)\n"
    )
    assert train(data, out, *flags, "--time-column", "Trade") == 2
    assert capsys.readouterr().err == (
        f"rnnkit train: error: {data}:2: the dates in column 'Trade' fit both MM/DD/YYYY and "
        "DD/MM/YYYY (such as '1/2/1995' on line 3; choose one with --date-format or "
        "date_format=: '%m/%d/%Y' or '%d/%m/%Y')\n"
    )
    assert train(data, out, *flags, "--time-column", "trade") == 2
    assert capsys.readouterr().err == (
        f"rnnkit train: error: {data}:1: no column 'trade' in the header (columns found: "
        "'Settle', 'Trade', 'Adj Close')\n"
    )
    assert not out.exists()
    assert train(data, out, *flags, "--time-column", "Trade", "--date-format", "%d/%m/%Y") == 0
    printed = capsys.readouterr()
    assert printed.err == ""  # the first of every month: regular
    assert "72 monthly steps, 1/1/1995 … 1/12/2000 (season 12)" in printed.out
    assert 'date_format = "%d/%m/%Y"' in printed.out and 'time_column = "Trade"' in printed.out
    assert main(["predict", str(out), "--json"]) == 0
    times = json.loads(capsys.readouterr().out)["times"]
    assert times == ["1/1/2001", "1/2/2001", "1/3/2001", "1/4/2001", "1/5/2001", "1/6/2001"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ("--season", "1000000000"),
            "season: 1000000000 is too long for this series (expected "
            "at most 107: the backtests need more than a season of history, and the training "
            "split's has 108 steps; lower --season)",
        ),
        (("--season", "108"), "season: 108 is too long"),
        (
            ("--date-format", "DD/MM/YYYY"),
            "date_format: expected a strptime format such as '%d/%m/%Y', got 'DD/MM/YYYY'",
        ),
        (("--date-format", "%d/%m/%Y"), f"{AIR}:3: no column holds dates"),
    ],
)
def test_values_the_task_cannot_use_are_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "run"
    assert train(AIR, out, *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (out / "checkpoints").exists()


def test_accumulate_trains_what_the_whole_batch_trains(tmp_path: Path) -> None:
    from tests.cli.accumulation import assert_accumulation_is_exact, assert_minimal_cells_train

    command = ["train", "forecast", "--data", str(AIR), "--window", "24", "--horizon", "12",
               "--hidden", "8", "--lr", "0.01", "--max-steps", "3", "--backend", "fused",
               "--seed", "3"]  # fmt: skip
    assert_accumulation_is_exact(tmp_path, command)
    assert_minimal_cells_train(tmp_path, command)
