"""The forecasting task: a series → windows → LSTM → the next ``horizon`` values at once.

Many-to-one with a vector output (the "direct" multi-horizon strategy): the model
reads ``window`` past values and its regression head gives all ``horizon`` future
values in one shot. The recipe:

1. read the series (a bundled dataset, or the user's CSV via
   :func:`rnnkit.data.formats.series.read_series`, dates in any common format) and
   pick one column; an irregular one (trading days) is read as ordered steps, with a
   one-line notice on stderr, and its forecasts are numbered ``+1``, ``+2``, …;
2. transform it (``log``: a multiplicative trend and season become additive);
3. cut it in time: **test** is the last ``horizon`` steps, **valid** the ``valid``
   steps before them, **train** the rest; the :class:`~rnnkit.data.batching.Scaler`
   is fitted on the training part only (:func:`~rnnkit.data.batching.forecasting_windows`);
4. unless ``absolute`` is set, every window is shifted so its last input is 0,
   inputs and targets alike: the model forecasts the change from the last value it
   saw, which lets it follow a trend beyond the training range;
5. evaluate as a **backtest with one origin**: forecast a part's last ``horizon``
   steps from everything before them and compare in the original units: MAE, RMSE,
   sMAPE, MAPE and MASE, always beside the naive and seasonal-naive forecasts of the
   same steps (:func:`rnnkit.metrics.forecast_report`).

``predict`` forecasts past the end of the run's series (or of a CSV given with
``--file``), with the time labels continued from the series' frequency
(:func:`rnnkit.data.formats.series.next_times`). The checkpoint's file
``scaler.json`` holds the scaler and the transform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from rnnkit.data.errors import DataError
from rnnkit.data.formats.series import Column, default_season, next_times
from rnnkit.data.windows import (
    Example,
    ForecastTask,
    Transform,
    Windows,
    check_season,
    held_out,
    read_column,
    series_windows,
)
from rnnkit.metrics import forecast_report, naive_forecast, seasonal_naive_forecast
from rnnkit.models.classifier import ClassifierConfig, SequenceBatch, SequenceClassifier
from rnnkit.report import figures
from rnnkit.report.page import Section, Table, fmt, image
from rnnkit.tasks.options import PredictOptions
from rnnkit.tasks.task import Evaluation, Loaded, Prediction, Prepared, Task
from rnnkit.training.runs import asset_bytes
from rnnkit.training.sampler import Examples
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig

SCALER_FILE = "scaler.json"


@dataclass(frozen=True)
class ForecastRun:
    """The resolved configuration of a forecasting run (``config.toml``)."""

    kind: Literal["forecast"] = "forecast"
    # season, and the model's outputs (the horizon), input_size and loss: filled in by
    # Forecast.prepare
    task: ForecastTask = field(default_factory=ForecastTask)
    model: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(
        input_size=1, hidden=32, head="regression", outputs=12))  # fmt: skip
    # A few hundred windows: many small epochs; the best validation loss is kept.
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=300, batch_size=16, clip_norm=1.0, optimizer=OptimizerConfig(lr=3e-3)))  # fmt: skip


# --------------------------------------------------------------------------- answers


@torch.no_grad()
def forecast(model: SequenceClassifier, transform: Transform, task: ForecastTask,
             history: list[float]) -> list[float]:  # fmt: skip
    """The next ``horizon`` values after ``history`` (original units)."""
    if len(history) < task.window:
        raise DataError(f"{len(history)} values are too few to forecast from (expected at "
                        f"least the window, {task.window})")  # fmt: skip
    recent = torch.tensor(history[-task.window :], dtype=torch.float64)
    inputs = transform.forward(recent)  # (w, 1)
    last = inputs[-1, 0] if not task.absolute else torch.zeros((), dtype=inputs.dtype)
    scaled = model.predict((inputs - last)[None].float(), torch.tensor([task.window]))[0]
    return [float(v) for v in transform.inverse(scaled.double() + last)]


def backtest(model: SequenceClassifier, transform: Transform, task: ForecastTask,
             series: Column, end: int, label: str) -> Evaluation:  # fmt: skip
    """Forecast ``series[end − horizon : end]`` from everything before it, with baselines."""
    start = end - task.horizon
    history, actual = series.values[:start], series.values[start:end]
    predicted = forecast(model, transform, task, history)
    season = task.season or default_season(series.times, series.frequency, series.date_format)
    try:
        report = forecast_report(predicted, actual, history, season)
    except ValueError as error:
        raise DataError(f"{series.name}: {error}") from None
    metrics = {name: value for name, value in report["model"].items() if value is not None}
    for baseline in ("naive", "seasonal_naive"):
        for name in ("mape", "mase"):
            value = report[baseline][name]
            if value is not None:
                metrics[f"{baseline}_{name}"] = value
    metrics["horizon"] = float(task.horizon)
    details = {
        "metrics": report,
        "backtest": {"times": series.times[start:end], "actual": actual, "forecast": predicted,
                     "origin": series.times[start - 1], "season": season},
    }  # fmt: skip
    return Evaluation(label, metrics, details)


# --------------------------------------------------------------------------- the task

Trained = Loaded[ForecastRun, Transform, SequenceClassifier]


class Forecast(Task[ForecastRun, Windows, Transform, Example, SequenceBatch,
                    SequenceClassifier]):  # fmt: skip
    """``rnnkit train forecast``: a series → a many-to-one model of its next values."""

    name = "forecast"

    def prepare(self, run: ForecastRun) -> Prepared[ForecastRun, Transform, Windows]:
        """Read the series, fit the scaler on its training part, fill in the horizon,
        the season and the loss."""
        series = read_column(run.task)
        season = run.task.season or default_season(series.times, series.frequency,
                                                   series.date_format)  # fmt: skip
        task = replace(run.task, valid=held_out(run.task), season=season)
        transform, parts = series_windows(series, task.window, task.horizon, held_out(task),
                                          task.transform, absolute=task.absolute)  # fmt: skip
        check_season(task, len(series.values))
        model = replace(run.model, input_size=1, vocab_size=None, head="regression",
                        outputs=task.horizon).resolved()  # fmt: skip
        run = replace(run, task=task, model=model)
        n = len(series.values)
        summary = [
            f"series: {series.name}, {n:,} {series.frequency} steps, {series.times[0]} … "
            f"{series.times[-1]} (season {task.season})",
            f"parts: train {n - held_out(task) - task.horizon:,} steps, valid {held_out(task)}, "
            f"test {task.horizon} (the backtest: {series.times[n - task.horizon]} onwards)",
            f"windows: {len(parts['train']):,} train, {len(parts['valid'])} valid "
            f"({task.window} steps in, {task.horizon} out; transform {task.transform}, "
            f"{'relative to the last input' if not task.absolute else 'absolute'})",
        ]
        return Prepared(run, summary, transform, parts)

    def examples(self, prepared: Prepared[ForecastRun, Transform, Windows],
                 split: str) -> Examples[Example]:  # fmt: skip
        return Examples(prepared.data[split])  # every window has the same length

    def collate(self, examples: list[Example]) -> SequenceBatch:
        inputs = torch.stack([x for x, _ in examples])  # (B, w, 1)
        lengths = torch.full((inputs.shape[0],), inputs.shape[1], dtype=torch.long)
        return SequenceBatch(inputs, lengths, torch.stack([y for _, y in examples]))  # (B, h)

    def save_assets(self, assets: Transform) -> dict[str, bytes]:
        return {SCALER_FILE: assets.to_json()}

    def load_assets(self, run: ForecastRun, files: Mapping[str, bytes], where: Path) -> Transform:
        return Transform.from_json(asset_bytes(files, SCALER_FILE, where), path=where / SCALER_FILE)

    def evaluate(self, loaded: Trained, split: str, data: str | None) -> Evaluation:
        """A one-origin backtest: the split's last ``horizon`` steps forecast from all before.

        ``test`` is the series' last ``horizon`` steps, ``valid`` the last of the
        validation part, ``train`` the last of the training part (in-sample); with
        ``data``, the last ``horizon`` steps of that CSV (the run's column).
        """
        task = loaded.run.task
        series = read_column(task, data)
        n = len(series.values)
        ends = {"test": n, "valid": n - task.horizon, "train": n - task.horizon - held_out(task)}
        if data is None and split == "valid" and held_out(task) == 0:
            raise DataError("split valid: the run held out no validation steps (valid = 0)")
        end = n if data is not None else ends[split]
        if end - task.horizon < max(task.window, (task.season or 1) + 1):
            raise DataError(f"{series.name}: {end} steps are too few to backtest (window "
                            f"{task.window}, horizon {task.horizon})", path=data)  # fmt: skip
        return backtest(loaded.model, loaded.assets, task, series, end, data or split)

    def predict(self, loaded: Trained, options: PredictOptions) -> list[Prediction]:
        """The next ``horizon`` values past the end of the run's series, or of ``--file``."""
        if options.inputs:
            raise DataError("a forecast run takes no inputs; give no input to forecast past "
                            "the run's series, or --file SERIES.csv")  # fmt: skip
        task = loaded.run.task
        series = read_column(task, options.file)
        predicted = forecast(loaded.model, loaded.assets, task, series.values)
        times = next_times(series.times, series.frequency, task.horizon, series.date_format)
        shown = [t if t is not None else f"+{k}" for k, t in enumerate(times, start=1)]
        lines = [f"{t}  {v:.6g}" for t, v in zip(shown, predicted, strict=True)]
        header = f"# {series.name}: {task.horizon} steps after {series.times[-1]}"
        record = {"column": series.name, "times": times, "forecast": predicted}
        return [Prediction("\n".join([header, *lines]), record)]

    def report(self, loaded: Trained) -> list[Section]:
        """The test backtest drawn after the series' tail, beside the baselines' forecasts,
        and its metrics table."""
        task = loaded.run.task
        series = read_column(task)
        n, horizon = len(series.values), task.horizon
        evaluation = backtest(loaded.model, loaded.assets, task, series, n, "test")
        back, start = evaluation.details["backtest"], n - horizon
        season, whole = int(back["season"]), series.values[:start]
        lines = {"actual": back["actual"], "model": back["forecast"],
                 "naive": naive_forecast(whole, horizon)}  # fmt: skip
        if season > 1 and len(whole) >= season:
            lines["seasonal naive"] = seasonal_naive_forecast(whole, horizon, season)
        shown = max(0, start - 4 * horizon)
        png = figures.forecast(series.times[shown:], series.values[shown:start], lines)
        report = evaluation.details["metrics"]
        names = sorted({name for values in report.values() for name in values})
        rows = [[who, *(fmt(values[k]) if values.get(k) is not None else "–" for k in names)]
                for who, values in report.items()]  # fmt: skip
        return [Section(
            "Forecast",
            text=[f"A backtest from {back['origin']}: the last {horizon} steps forecast from "
                  f"everything before, beside the naive (last value) and seasonal-naive "
                  f"(season {season}) baselines."],
            images=[image(png, "forecast against actual")],
            tables=[Table(["forecast", *names], rows)],
        )]  # fmt: skip


TASK = Forecast()
