"""The forecasting task on AirPassengers: windows, transform, backtest numbers, predict."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rnnkit.data.errors import DataError
from rnnkit.data.windows import ForecastTask
from rnnkit.metrics import mape
from rnnkit.models.classifier import ClassifierConfig
from rnnkit.tasks.forecasting import TASK, ForecastRun
from rnnkit.tasks.options import PredictOptions
from rnnkit.tasks.task import Evaluation
from rnnkit.training.trainer import TrainerConfig
from tests.models.fixtures import FIXTURES, air_passengers

AIR = FIXTURES / "models_airpassengers.csv"


def small_run(**task: object) -> ForecastRun:
    return ForecastRun(
        task=replace(ForecastTask(data=(str(AIR),)), **task),  # type: ignore[arg-type]
        model=ClassifierConfig(input_size=1, hidden=8, head="regression"),
        trainer=TrainerConfig(epochs=1, max_steps=4, batch_size=16, progress="off"),
    )


def evaluate(run: Path, split: str = "test", data: str | None = None) -> Evaluation:
    return TASK.evaluate(TASK.load(run), split, data)


def test_prepare_cuts_train_valid_and_test_in_time() -> None:
    prepared = TASK.prepare(small_run(window=24, horizon=12, valid=12))
    run, data = prepared.run, prepared.data
    assert run.task.season == 12  # monthly
    assert run.model.outputs == 12 and run.model.head == "regression"
    assert run.model.loss == "mse"  # resolved: the regression head's own
    # 144 months: test the last 12, valid the 12 before; windows need 24 + 12 steps.
    assert len(data["train"]) == 120 - 36 + 1
    assert len(data["valid"]) == 1 and len(data["test"]) == 1
    inputs, targets = data["valid"][0]
    assert inputs.shape == (24, 1) and targets.shape == (12,)
    assert inputs[-1, 0] == 0  # relative to the last input
    batch = TASK.collate(list(TASK.examples(prepared, "train").items[:3]))
    assert batch.inputs.shape == (3, 24, 1) and batch.targets.shape == (3, 12)
    assert batch.lengths.tolist() == [24, 24, 24]
    # Undo the shift and the scaler: the valid targets are months 121-132 in passengers.
    transform = prepared.assets
    last_scaled = transform.forward(air_passengers()[119:120].double())[0, 0]
    back = transform.inverse(targets.double() + last_scaled)
    torch.testing.assert_close(back, air_passengers()[120:132].double(), rtol=1e-5, atol=1e-3)


def test_validation_defaults_to_the_horizon() -> None:
    run = TASK.prepare(small_run(window=12, horizon=6)).run
    assert run.task.valid == 6
    assert TASK.prepare(small_run(valid=0)).data["valid"] == []
    with pytest.raises(ValueError, match="valid: expected 0 or at least the horizon"):
        ForecastTask(horizon=12, valid=3)


def test_no_validation_part_trains_on_everything_before_the_test(tmp_path: Path) -> None:
    TASK.train(small_run(valid=0), tmp_path / "run")
    loaded = TASK.load(tmp_path / "run")
    assert loaded.run.task.valid == 0
    assert TASK.evaluate(loaded, "train", None).details["backtest"]["origin"] == "1958-12"
    with pytest.raises(DataError, match="held out no validation steps"):
        TASK.evaluate(loaded, "valid", None)


def test_scaler_sees_the_training_part_only() -> None:
    transform = TASK.prepare(small_run(transform="none", valid=12, horizon=12)).assets
    state = transform.scaler.state_dict()
    train = air_passengers()[:120].double()
    assert state["mean"][0] == pytest.approx(float(train.mean()))
    assert state["std"][0] == pytest.approx(float(train.std(correction=0)))


def test_absolute_windows_keep_the_level() -> None:
    data = TASK.prepare(small_run(absolute=True)).data
    assert data["train"][0][0][-1, 0] != 0


def test_transform_round_trip() -> None:
    transform = TASK.prepare(small_run()).assets
    x = air_passengers().double()
    torch.testing.assert_close(transform.inverse(transform.forward(x)[:, 0]), x)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("forecast") / "run"
    TASK.train(small_run(), out)
    return out


def test_backtest_numbers_and_baselines(trained: Path) -> None:
    result = evaluate(trained)
    assert result.split == "test"
    backtest = result.details["backtest"]
    actual = [float(v) for v in air_passengers()[-12:]]
    assert backtest["actual"] == actual
    assert backtest["times"][0] == "1960-01" and backtest["origin"] == "1959-12"
    assert result.metrics["mape"] == pytest.approx(mape(backtest["forecast"], actual))
    # By hand: seasonal naive repeats 1959; naive repeats December 1959 (405).
    y1959 = [float(v) for v in air_passengers()[-24:-12]]
    seasonal = sum(abs(f - a) / a for f, a in zip(y1959, actual, strict=True)) / 12 * 100
    naive = sum(abs(405 - a) / a for a in actual) / 12 * 100
    table = result.details["metrics"]
    assert table["seasonal_naive"]["mape"] == pytest.approx(seasonal)
    assert table["naive"]["mape"] == pytest.approx(naive)
    assert result.metrics["seasonal_naive_mape"] == pytest.approx(seasonal)
    assert set(table) == {"model", "naive", "seasonal_naive"}
    assert set(table["model"]) == {"mae", "rmse", "smape", "mape", "mase"}
    # MASE: MAE over the in-sample MAE of the seasonal naive forecast on the history.
    history = air_passengers()[:-12]
    scale = float((history[12:] - history[:-12]).abs().mean())
    seasonal_mae = sum(abs(f - a) for f, a in zip(y1959, actual, strict=True)) / 12
    assert table["seasonal_naive"]["mase"] == pytest.approx(seasonal_mae / scale)


def test_report_draws_the_backtest_beside_the_baselines(trained: Path) -> None:
    (section,) = TASK.report(TASK.load(trained))
    assert section.title == "Forecast" and section.text[0].startswith("A backtest from 1959-12")
    assert section.images[0].uri.startswith("data:image/png;base64,")
    (table,) = section.tables
    assert table.headers == ["forecast", "mae", "mape", "mase", "rmse", "smape"]
    assert [row[0] for row in table.rows] == ["model", "naive", "seasonal_naive"]
    by_hand = sum(
        abs(f - a) / a
        for f, a in zip(
            air_passengers()[-24:-12].tolist(), air_passengers()[-12:].tolist(), strict=True
        )
    )
    assert table.rows[2][2] == f"{float(by_hand) / 12 * 100:.4f}"  # seasonal naive MAPE


def test_valid_and_train_splits_move_the_origin(trained: Path) -> None:
    assert evaluate(trained, "valid").details["backtest"]["origin"] == "1958-12"
    assert evaluate(trained, "train").details["backtest"]["origin"] == "1957-12"


def test_predict_continues_the_series(trained: Path, tmp_path: Path) -> None:
    loaded = TASK.load(trained)
    (first,) = TASK.predict(loaded, PredictOptions())
    assert first.record["times"] == [f"1961-{m:02d}" for m in range(1, 13)]
    assert len(first.record["forecast"]) == 12
    assert all(v > 0 for v in first.record["forecast"])  # log transform: positive
    # A file: the series without 1960 forecasts 1960, as the test backtest did.
    short = tmp_path / "short.csv"
    short.write_text("\n".join(AIR.read_text().splitlines()[:-12]) + "\n")
    (second,) = TASK.predict(loaded, PredictOptions(file=str(short)))
    assert second.record["times"][0] == "1960-01"
    backtest = evaluate(trained).details["backtest"]
    assert second.record["forecast"] == pytest.approx(backtest["forecast"])
    with pytest.raises(DataError, match=r"^a forecast run takes no inputs"):
        TASK.predict(loaded, PredictOptions(inputs=("1",)))
    # The file's last horizon steps, backtested: 1959, from the series up to 1958.
    assert evaluate(trained, data=str(short)).details["backtest"]["origin"] == "1958-12"


def test_a_season_the_backtests_cannot_use_is_refused_before_training(tmp_path: Path) -> None:
    # 144 months, horizon 12, valid 12: the training split's backtest sees 108 steps.
    with pytest.raises(ValueError, match="season") as caught:
        TASK.prepare(small_run(window=24, season=10**9))
    assert str(caught.value) == (
        "season: 1000000000 is too long for this series (expected at most 107: the backtests "
        "need more than a season of history, and the training split's has 108 steps; lower "
        "--season)"
    )
    with pytest.raises(ValueError, match="season: 108 is too long"):
        TASK.prepare(small_run(window=24, season=108))
    # The longest season accepted trains and backtests every split.
    out = tmp_path / "run"
    TASK.fit(TASK.prepare(small_run(window=24, season=107)), out)
    for split in ("train", "valid", "test"):
        result = evaluate(out, split)
        assert result.details["backtest"]["season"] == 107
        assert result.metrics["mase"] > 0


def test_date_format_is_a_strptime_format() -> None:
    assert ForecastTask(date_format="%d/%m/%Y").date_format == "%d/%m/%Y"
    with pytest.raises(ValueError, match="date_format: expected a strptime format"):
        ForecastTask(date_format="DD/MM/YYYY")


def test_an_irregular_series_is_said_once_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.data.formats.test_series import sp500_like

    path = sp500_like(tmp_path / "sp500.csv")
    prepared = TASK.prepare(small_run(data=(str(path),), window=20, horizon=5))
    assert capsys.readouterr().err == (
        f"{path}: dates are irregular (trading days?): rows are taken as ordered steps\n"
    )
    assert prepared.run.task.season == 5
    assert prepared.summary[0] == (
        "series: Adj Close, 200 daily steps, 1/4/1999 … 10/18/1999 (season 5)"
    )
    regular = TASK.prepare(small_run())
    assert capsys.readouterr().err == "" and regular.run.task.season == 12


def test_bad_data_is_one_line(tmp_path: Path) -> None:
    zero = tmp_path / "zero.csv"
    zero.write_text("month,y\n" + "".join(f"19{50 + i // 12}-{i % 12 + 1:02d},{i}\n"
                                          for i in range(96)))  # fmt: skip
    with pytest.raises(DataError, match=r"not positive.*--transform none"):
        TASK.prepare(small_run(data=(str(zero),)))
    TASK.prepare(small_run(data=(str(zero),), transform="none"))
    two = tmp_path / "two.csv"
    two.write_text("month,a,b\n1950-01,1,2\n1950-02,3,4\n")
    with pytest.raises(DataError, match="--column"):
        TASK.prepare(small_run(data=(str(two),)))
    with pytest.raises(DataError, match="too few"):
        TASK.prepare(small_run(window=120))
    with pytest.raises(ValueError, match="window"):
        ForecastTask(window=0)
