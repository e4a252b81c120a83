"""The forecasting task on AirPassengers: windows, transform, backtest numbers, predict."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rnnkit.data.errors import DataError
from rnnkit.metrics import mape
from rnnkit.models.classifier import ClassifierConfig
from rnnkit.tasks import forecasting
from rnnkit.tasks.forecasting import ForecastRun, ForecastTask, SeriesData
from rnnkit.tasks.task import PredictOptions
from rnnkit.training.trainer import TrainerConfig
from tests.models.fixtures import FIXTURES, air_passengers

AIR = FIXTURES / "models_airpassengers.csv"


def small_run(**task: object) -> ForecastRun:
    return ForecastRun(
        task=replace(ForecastTask(data=(str(AIR),)), **task),  # type: ignore[arg-type]
        model=ClassifierConfig(input_size=1, hidden=8, head="regression"),
        trainer=TrainerConfig(epochs=1, max_steps=4, batch_size=16, progress="off"),
    )


def test_prepare_cuts_train_valid_and_test_in_time() -> None:
    prepared = forecasting.prepare(small_run(window=24, horizon=12, valid=12))
    run, data = prepared.run, prepared.data
    assert run.task.season == 12  # monthly
    assert run.model.outputs == 12 and run.model.head == "regression"
    # 144 months: test the last 12, valid the 12 before; windows need 24 + 12 steps.
    assert len(data["train"]) == 120 - 36 + 1
    assert len(data["valid"]) == 1
    inputs, targets = data["valid"][0]
    assert inputs.shape == (24, 1) and targets.shape == (12,)
    assert inputs[-1, 0] == 0  # relative to the last input
    # Undo the shift and the scaler: the valid targets are months 121-132 in passengers.
    transform = data["transform"]
    last_scaled = transform.forward(air_passengers()[119:120].double())[0, 0]
    back = transform.inverse(targets.double() + last_scaled)
    torch.testing.assert_close(back, air_passengers()[120:132].double(), rtol=1e-5, atol=1e-3)


def test_validation_defaults_to_the_horizon() -> None:
    run = forecasting.prepare(small_run(window=12, horizon=6)).run
    assert run.task.valid == 6
    assert forecasting.prepare(small_run(valid=0)).data["valid"] == []
    with pytest.raises(ValueError, match="valid: expected 0 or at least the horizon"):
        ForecastTask(horizon=12, valid=3)


def test_scaler_sees_the_training_part_only() -> None:
    data = forecasting.prepare(small_run(transform="none", valid=12, horizon=12)).data
    state = data["transform"].scaler.state_dict()
    train = air_passengers()[:120].double()
    assert state["mean"][0] == pytest.approx(float(train.mean()))
    assert state["std"][0] == pytest.approx(float(train.std(correction=0)))


def test_absolute_windows_keep_the_level() -> None:
    data = forecasting.prepare(small_run(absolute=True)).data
    assert data["train"][0][0][-1, 0] != 0


def test_transform_round_trip() -> None:
    data = forecasting.prepare(small_run()).data
    x = air_passengers().double()
    torch.testing.assert_close(data["transform"].inverse(data["transform"].forward(x)[:, 0]), x)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("forecast") / "run"
    forecasting.train(small_run(), out)
    return out


def test_backtest_numbers_and_baselines(trained: Path) -> None:
    result = forecasting.evaluate(trained)
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


def test_valid_and_train_splits_move_the_origin(trained: Path) -> None:
    assert forecasting.evaluate(trained, split="valid").details["backtest"]["origin"] == "1958-12"
    assert forecasting.evaluate(trained, split="train").details["backtest"]["origin"] == "1957-12"


def test_predict_continues_the_series(trained: Path, tmp_path: Path) -> None:
    (first,) = forecasting.predict(trained, PredictOptions())
    assert first.record["times"] == [f"1961-{m:02d}" for m in range(1, 13)]
    assert len(first.record["forecast"]) == 12
    assert all(v > 0 for v in first.record["forecast"])  # log transform: positive
    # A file: the series without 1960 forecasts 1960, as the test backtest did.
    short = tmp_path / "short.csv"
    short.write_text("\n".join(AIR.read_text().splitlines()[:-12]) + "\n")
    (second,) = forecasting.predict(trained, PredictOptions(file=str(short)))
    assert second.record["times"][0] == "1960-01"
    backtest = forecasting.evaluate(trained).details["backtest"]
    assert second.record["forecast"] == pytest.approx(backtest["forecast"])
    with pytest.raises(DataError, match="no inputs"):
        forecasting.predict(trained, PredictOptions(inputs=("1",)))


def test_next_times() -> None:
    assert forecasting.next_times(["1960-11", "1960-12"], "monthly", 2) == ["1961-01", "1961-02"]
    assert forecasting.next_times(["2001-01-31"], "monthly", 2) == ["2001-02-28", "2001-03-31"]
    assert forecasting.next_times(["2000-06-05T23:30"], "half-hourly", 1) == ["2000-06-06T00:00"]
    assert forecasting.next_times(["2001-02-28"], "monthly", 1) == ["2001-03-31"]
    quarters = forecasting.next_times(["1999-10"], "quarterly", 2)
    assert quarters == ["2000-01", "2000-04"]
    # Trading days: the gaps differ, so the next labels are not known.
    assert forecasting.next_times(["2017-11-09", "2017-11-10", "2017-11-13"], "daily", 1) == [None]


def test_next_times_in_the_series_date_format() -> None:
    assert forecasting.next_times(["1/30/1999"], "daily", 2, "%m/%d/%Y") == [
        "1/31/1999",
        "2/1/1999",
    ]
    assert forecasting.next_times(["01/30/1999"], "daily", 1, "%m/%d/%Y") == ["01/31/1999"]
    assert forecasting.next_times(["30.1.1999"], "monthly", 1, "%d.%m.%Y") == ["28.2.1999"]
    assert forecasting.next_times(["Jan 1999"], "monthly", 2) == ["Feb 1999", "Mar 1999"]
    assert forecasting.next_times(["tuesday"], "daily", 1) == [None]


def test_default_season() -> None:
    def series(times: list[str], frequency: str) -> SeriesData:
        return SeriesData("x", [1.0] * len(times), times, frequency)

    assert forecasting.season_of(series(["2017-11-10", "2017-11-13"], "daily")) == 5
    assert forecasting.season_of(series(["2017-11-11", "2017-11-12"], "daily")) == 7
    assert forecasting.season_of(series(["2000-06-05T00:00"], "half-hourly")) == 48
    # Trading days in any date format: a week of 5 steps.
    trading = ["1/13/1999", "1/14/1999", "1/15/1999", "1/19/1999"]
    assert forecasting.season_of(series(trading, "daily")) == 5
    given = SeriesData("x", [1.0] * 2, ["1/4/1999", "1/5/1999"], "daily", "%m/%d/%Y")
    assert forecasting.season_of(given) == 5
    assert forecasting.season_of(series(["1/4/1999", "1/9/1999"], "irregular")) == 1


def test_a_season_the_backtests_cannot_use_is_refused_before_training(tmp_path: Path) -> None:
    # 144 months, horizon 12, valid 12: the training split's backtest sees 108 steps.
    with pytest.raises(ValueError, match="season") as caught:
        forecasting.prepare(small_run(window=24, season=10**9))
    assert str(caught.value) == (
        "season: 1000000000 is too long for this series (expected at most 107: the backtests "
        "need more than a season of history, and the training split's has 108 steps; lower "
        "--season)"
    )
    with pytest.raises(ValueError, match="season: 108 is too long"):
        forecasting.prepare(small_run(window=24, season=108))
    # The longest season accepted trains and backtests every split.
    out = tmp_path / "run"
    forecasting.fit(forecasting.prepare(small_run(window=24, season=107)), out)
    for split in ("train", "valid", "test"):
        result = forecasting.evaluate(out, split=split)
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
    prepared = forecasting.prepare(small_run(data=(str(path),), window=20, horizon=5))
    assert capsys.readouterr().err == (
        f"{path}: dates are irregular (trading days?): rows are taken as ordered steps\n"
    )
    assert prepared.run.task.season == 5
    assert prepared.summary[0] == (
        "series: Adj Close, 200 daily steps, 1/4/1999 … 10/18/1999 (season 5)"
    )
    regular = forecasting.prepare(small_run())
    assert capsys.readouterr().err == "" and regular.run.task.season == 12


def test_bad_data_is_one_line(tmp_path: Path) -> None:
    zero = tmp_path / "zero.csv"
    zero.write_text("month,y\n" + "".join(f"19{50 + i // 12}-{i % 12 + 1:02d},{i}\n"
                                          for i in range(96)))  # fmt: skip
    with pytest.raises(DataError, match=r"not positive.*--transform none"):
        forecasting.prepare(small_run(data=(str(zero),)))
    forecasting.prepare(small_run(data=(str(zero),), transform="none"))
    two = tmp_path / "two.csv"
    two.write_text("month,a,b\n1950-01,1,2\n1950-02,3,4\n")
    with pytest.raises(DataError, match="--column"):
        forecasting.prepare(small_run(data=(str(two),)))
    with pytest.raises(DataError, match="too few"):
        forecasting.prepare(small_run(window=120))
    with pytest.raises(ValueError, match="window"):
        ForecastTask(window=0)
