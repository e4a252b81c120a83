"""``rnnkit train forecast`` → ``evaluate`` → ``predict`` → ``--resume`` on AirPassengers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.training.checkpoint import load_checkpoint
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
