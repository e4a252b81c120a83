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
``--file``), with the time labels continued from the series' frequency. The
checkpoint's artifact ``scaler.json`` holds the scaler and the transform.
"""

from __future__ import annotations

import calendar
import json
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import Scaler, forecasting_windows
from rnnkit.data.errors import DataError
from rnnkit.data.formats.series import check_date_format, date_format_of, read_series
from rnnkit.metrics import forecast_report
from rnnkit.models import build_model
from rnnkit.models.classifier import ClassifierConfig, SequenceBatch, SequenceClassifier
from rnnkit.tasks.task import (
    Evaluation,
    Prediction,
    PredictOptions,
    Prepared,
    artifact,
    artifact_file,
    load_into,
    load_weights,
    read_config,
)
from rnnkit.training.trainer import OptimizerConfig, Trainer, TrainerConfig, TrainResult

SCALER_ARTIFACT = "scaler.json"

# A season for each frequency of rnnkit.data.formats.series.FREQUENCIES: the period of
# the seasonal-naive baseline and of MASE's scale. Trading days (daily with weekends
# missing) get 5 instead of 7, see season_of.
SEASONS = {
    "secondly": 60,
    "minutely": 60,
    "quarter-hourly": 96,
    "half-hourly": 48,
    "hourly": 24,
    "daily": 7,
    "weekly": 52,
    "monthly": 12,
    "quarterly": 4,
    "yearly": 1,
}
_MONTHS = {"monthly": 1, "quarterly": 3, "yearly": 12}
_SECONDS = {"secondly": 1, "minutely": 60, "quarter-hourly": 900, "half-hourly": 1800,
            "hourly": 3600, "daily": 86400, "weekly": 604800}  # fmt: skip


@dataclass(frozen=True)
class ForecastTask:
    """What to read, how to transform it and how to cut it.

    Attributes:
        dataset: a bundled series (airpassengers, sunspots, wineind, taylor, msft),
            used when ``data`` is not given.
        data: the user's time-series CSV (one path; see ``read_series``).
        column: the column to forecast; None: the dataset's target, or the CSV's only
            value column.
        time_column: the CSV's time column; None finds it by name (date, time, ds, …)
            or as the one column of dates.
        date_format: the CSV's dates as a strptime format (``%d/%m/%Y``); None detects
            it, deciding month-first or day-first dates by the whole column.
        window: past values the model reads (the input window).
        horizon: future values it forecasts at once; also the size of the test part.
        valid: steps before the test part held out for validation (model selection:
            the best validation loss is kept); None: ``horizon`` steps; 0: none, train on
            everything before the test part.
        season: the seasonal period (seasonal naive, MASE); None: from the frequency
            (monthly 12, quarterly 4, daily 7 or 5 for trading days, half-hourly 48, …).
        transform: ``log`` models log values (needs positive values), ``none`` the raw ones.
        absolute: windows in the scaled units as they are; by default each window is
            shifted so its last input is 0 (the model forecasts the change).
    """

    dataset: str = "airpassengers"
    data: tuple[str, ...] = ()
    column: str | None = None
    time_column: str | None = None
    date_format: str | None = None
    window: int = 36
    horizon: int = 12
    valid: int | None = None
    season: int | None = None
    transform: Literal["none", "log"] = "log"
    absolute: bool = False

    def __post_init__(self) -> None:
        check_positive_ints(self, "window", "horizon", "season")
        valid = self.valid
        if valid is not None and (isinstance(valid, bool) or not isinstance(valid, int)
                                  or valid < 0):  # fmt: skip
            raise ValueError(f"valid: expected an int ≥ 0, got {valid!r}")
        if valid is not None and 0 < valid < self.horizon:
            raise ValueError(f"valid: expected 0 or at least the horizon ({self.horizon}): the "
                             f"validation backtest forecasts its last horizon steps, got "
                             f"{self.valid}")  # fmt: skip
        if len(self.data) > 1:
            raise ValueError(f"data: expected one CSV file, got {len(self.data)} paths")
        check_date_format(self.date_format)


def _trainer() -> TrainerConfig:
    # A few hundred windows: many small epochs; the best validation loss is kept.
    return TrainerConfig(epochs=300, batch_size=16, clip_norm=1.0,
                         optimizer=OptimizerConfig(lr=3e-3))  # fmt: skip


def _model() -> ClassifierConfig:
    return ClassifierConfig(input_size=1, hidden=32, head="regression", outputs=12)


@dataclass(frozen=True)
class ForecastRun:
    """The resolved configuration of a forecasting run (``config.toml``).

    ``model.outputs`` (the horizon), ``model.input_size`` and ``task.season`` are
    filled in by :func:`prepare`.
    """

    kind: Literal["forecast"] = "forecast"
    task: ForecastTask = field(default_factory=ForecastTask)
    model: ClassifierConfig = field(default_factory=_model)
    trainer: TrainerConfig = field(default_factory=_trainer)


Run = ForecastRun


@dataclass(frozen=True)
class SeriesData:
    """One column of a series, in the original units, with its times.

    ``date_format`` is the times' strptime format (None: detect it from ``times``).
    """

    name: str
    values: list[float]
    times: list[str]
    frequency: str
    date_format: str | None = None


@dataclass(frozen=True)
class Transform:
    """The data-dependent part of a run: the transform and the scaler fitted on train."""

    kind: str
    scaler: Scaler

    def forward(self, values: Tensor) -> Tensor:
        """``(N,)`` values in the original units → ``(N, 1)`` scaled model units."""
        return self.scaler.transform(_apply(values, self.kind)[:, None])

    def inverse(self, scaled: Tensor) -> Tensor:
        """Model units, any shape → original units."""
        back = self.scaler.inverse_transform(scaled[..., None])[..., 0]
        return back.exp() if self.kind == "log" else back

    def to_json(self) -> bytes:
        return json.dumps({"transform": self.kind, "scaler": self.scaler.state_dict()}).encode()

    @staticmethod
    def from_json(data: bytes, *, path: str) -> Transform:
        try:
            record = json.loads(data)
            scaler = Scaler()
            scaler.load_state_dict(record["scaler"])
            kind = record["transform"]
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{SCALER_ARTIFACT}: damaged ({error})", path=path) from None
        return Transform(kind, scaler)


def _apply(values: Tensor, kind: str) -> Tensor:
    if kind == "log":
        return values.log()
    return values


# --------------------------------------------------------------------------- data


def read_column(task: ForecastTask) -> SeriesData:
    """The task's series: one column of the bundled dataset or of the user's CSV."""
    if task.data:
        path = task.data[0]
        chosen = None if task.column is None else (task.column,)
        series = read_series(path, time_column=task.time_column, value_columns=chosen,
                             comment="#", date_format=task.date_format)  # fmt: skip
        if len(series.columns) > 1:
            raise DataError(
                f"{len(series.columns)} value columns ({', '.join(series.columns)}); "
                "choose the one to forecast with --column",
                path=path,
            )
        if series.irregular is not None:
            # A notice, not an error: the model sees ordered steps either way, but the
            # seasons and the time labels of a forecast are then only approximate.
            print(f"{path}: dates are irregular ({series.irregular}): rows are taken as "
                  "ordered steps", file=sys.stderr)  # fmt: skip
        name, values = next(iter(series.columns.items()))
        return SeriesData(name, values, series.times, series.frequency, series.date_format)
    from rnnkit.data.forms import Series
    from rnnkit.data.registry import fetch

    dataset = fetch(task.dataset)
    if not isinstance(dataset, Series):
        raise DataError(
            f"dataset: {task.dataset!r} is not a time series (it is a {type(dataset).__name__})"
        )
    name = task.column or dataset.target
    if name not in dataset.values:
        raise DataError(
            f"column: {task.dataset} has no column {name!r} "
            f"(expected one of {', '.join(dataset.values)})"
        )
    return SeriesData(name, dataset.values[name], dataset.times, dataset.frequency)


def season_of(series: SeriesData) -> int:
    """The default season of a series' frequency; 5 for daily data without weekends."""
    if series.frequency == "daily":
        moments = _moments(series.times, series.date_format)
        if moments is not None and all(m.weekday() < 5 for m in moments):
            return 5
    return SEASONS.get(series.frequency, 1)


def _check_values(series: SeriesData, task: ForecastTask, where: str | None = None) -> None:
    if task.transform == "log":
        bad = next((i for i, v in enumerate(series.values) if v <= 0), None)
        if bad is not None:
            raise DataError(
                f"column {series.name!r}: value {series.values[bad]:g} at {series.times[bad]} "
                "is not positive (the log transform needs values > 0; use --transform none)",
                path=where,
            )


def held_out(task: ForecastTask) -> int:
    """The validation steps: ``valid``, or ``horizon`` when it is None."""
    return task.horizon if task.valid is None else task.valid


def windows_of(series: SeriesData, task: ForecastTask) -> tuple[dict[str, list[Any]], Transform]:
    """Training and validation examples ``(inputs (window, 1), targets (horizon,))``."""
    _check_values(series, task)
    values = torch.tensor(series.values, dtype=torch.float64)
    n = values.numel()
    transformed = _apply(values, task.transform)[:, None]  # (N, 1)
    needed = task.window + task.horizon + held_out(task) + task.horizon  # one training window
    if n < needed:
        raise DataError(
            f"{series.name}: {n} steps are too few for window {task.window}, horizon "
            f"{task.horizon} and {held_out(task)} validation steps (expected at least "
            f"{needed}: one training window plus the held-out steps; lower --window, "
            "--horizon or --valid)"
        )
    try:
        train, val, _, scaler = forecasting_windows(
            transformed, task.window, task.horizon, held_out(task) / n, task.horizon / n
        )
    except (DataError, ValueError) as error:
        raise DataError(
            f"{series.name}: {n} steps are too few for window {task.window}, horizon "
            f"{task.horizon} and {held_out(task)} validation steps ({error})"
        ) from None
    parts = {}
    for name, part in (("train", train), ("valid", val)):
        inputs, targets = part.inputs.float(), part.targets[..., 0].float()  # (W, w, 1), (W, h)
        if not task.absolute:
            last = inputs[:, -1:, 0]  # (W, 1)
            inputs, targets = inputs - last[:, :, None], targets - last
        parts[name] = list(zip(inputs, targets, strict=True))
    return parts, Transform(task.transform, scaler)


def _check_season(task: ForecastTask, n: int) -> None:
    """Refuse a season the backtests cannot use, before training rather than after.

    The seasonal naive baseline and MASE's scale need more than one season of
    history before each backtest; the earliest is the training split's, which sees
    the training steps less one horizon.
    """
    assert task.season is not None
    history = n - held_out(task) - 2 * task.horizon
    if task.season >= history:
        raise ValueError(
            f"season: {task.season} is too long for this series (expected at most "
            f"{history - 1}: the backtests need more than a season of history, and the "
            f"training split's has {history} steps; lower --season)"
        )


def collate(items: list[tuple[Tensor, Tensor]]) -> SequenceBatch:
    inputs = torch.stack([x for x, _ in items])  # (B, w, 1)
    targets = torch.stack([y for _, y in items])  # (B, h)
    lengths = torch.full((inputs.shape[0],), inputs.shape[1], dtype=torch.long)
    return SequenceBatch(inputs, lengths, targets)


def prepare(run: ForecastRun) -> Prepared[ForecastRun]:
    """Read the series, fit the scaler on its training part, fill in the horizon."""
    series = read_column(run.task)
    task = replace(run.task, valid=held_out(run.task), season=run.task.season or season_of(series))
    parts, transform = windows_of(series, task)
    _check_season(task, len(series.values))
    model = replace(run.model, input_size=1, vocab_size=None, head="regression",
                    outputs=task.horizon)  # fmt: skip
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
    return Prepared(run, summary, {**parts, "transform": transform})


def fit(prepared: Prepared[ForecastRun], out: Path | str, *, resume: bool = False) -> TrainResult:
    """Train (or resume) the prepared run into the folder ``out``."""
    run, data = prepared.run, prepared.data
    torch.manual_seed(run.trainer.seed)
    model = build_model(run.model)
    trainer = Trainer(
        model,
        run.trainer,
        data["train"],
        collate,
        val=data["valid"] or None,
        run_dir=out,
        resume=resume,
        artifacts={SCALER_ARTIFACT: data["transform"].to_json()},
        config_to_save=run,
    )
    return trainer.fit()


def train(run: ForecastRun, out: Path | str, *, resume: bool = False) -> TrainResult:
    """Prepare and train (or resume) a run into the folder ``out``."""
    return fit(prepare(run), out, resume=resume)


def load_run(run_dir: Path | str) -> tuple[SequenceClassifier, Transform, ForecastRun]:
    """The trained model (best checkpoint, else last), its transform and configuration."""
    run = read_config(run_dir, ForecastRun)
    checkpoint = load_weights(run_dir)
    transform = Transform.from_json(artifact(checkpoint, SCALER_ARTIFACT, run_dir),
                                    path=artifact_file(checkpoint, SCALER_ARTIFACT))  # fmt: skip
    model = build_model(run.model)
    load_into(model, checkpoint)
    model.eval()
    assert isinstance(model, SequenceClassifier)
    return model, transform, run


# --------------------------------------------------------------------------- answers


@torch.no_grad()
def forecast(
    model: SequenceClassifier, transform: Transform, task: ForecastTask, history: list[float]
) -> list[float]:
    """The next ``horizon`` values after ``history`` (original units)."""
    if len(history) < task.window:
        raise DataError(
            f"{len(history)} values are too few to forecast from "
            f"(expected at least the window, {task.window})"
        )
    if task.transform == "log" and min(history[-task.window :]) <= 0:
        raise DataError("the log transform needs values > 0 in the last window")
    recent = torch.tensor(history[-task.window :], dtype=torch.float64)
    inputs = transform.forward(recent)  # (w, 1)
    last = inputs[-1, 0] if not task.absolute else torch.zeros((), dtype=inputs.dtype)
    scaled = model.predict((inputs - last)[None].float(), torch.tensor([task.window]))[0]
    return [float(v) for v in transform.inverse(scaled.double() + last)]


def backtest(
    model: SequenceClassifier,
    transform: Transform,
    task: ForecastTask,
    series: SeriesData,
    end: int,
    label: str,
) -> Evaluation:
    """Forecast ``series[end − horizon : end]`` from everything before it, with baselines."""
    start = end - task.horizon
    history, actual = series.values[:start], series.values[start:end]
    predicted = forecast(model, transform, task, history)
    season = task.season or season_of(series)
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


def evaluate(run_dir: Path | str, *, split: str = "test", data: str | None = None) -> Evaluation:
    """A one-origin backtest: the split's last ``horizon`` steps forecast from all before.

    ``test`` is the series' last ``horizon`` steps, ``valid`` the last of the
    validation part, ``train`` the last of the training part (in-sample); with
    ``data``, the last ``horizon`` steps of that CSV (the run's column).
    """
    model, transform, run = load_run(run_dir)
    task = run.task
    if data is not None:
        series = read_column(replace(task, data=(data,)))
        _check_values(series, task, data)
        end, split = len(series.values), data
    else:
        series = read_column(task)
        n = len(series.values)
        ends = {"test": n, "valid": n - task.horizon, "train": n - task.horizon - held_out(task)}
        if split == "valid" and held_out(task) == 0:
            raise DataError("split valid: the run held out no validation steps (valid = 0)")
        end = ends[split]
    if end - task.horizon < max(task.window, (task.season or 1) + 1):
        raise DataError(f"{series.name}: {end} steps are too few to backtest "
                        f"(window {task.window}, horizon {task.horizon})", path=data)  # fmt: skip
    return backtest(model, transform, task, series, end, split)


def next_times(
    times: list[str], frequency: str, count: int, date_format: str | None = None
) -> list[str | None]:
    """The ``count`` time labels after ``times``, in their format; None where unknown
    (an irregular series such as trading days, or a format not recognised)."""
    known = date_format or date_format_of(times[-50:])
    moments = None if known is None else _moments(times[-50:], known)
    if known is None or moments is None:
        return [None] * count
    last = moments[-1]
    # 1/4/1999 is written without leading zeros; %-m and %-d (glibc, BSD) write it so.
    # Where they are not supported, the labels keep the zeros.
    unpadded = known.replace("%m", "%-m").replace("%d", "%-d")
    pairs = list(zip(moments, times[-50:], strict=True))
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
    seconds = _SECONDS.get(frequency)
    gaps = {(b - a).total_seconds() for a, b in pairwise(moments)}
    if seconds is None or gaps - {float(seconds)}:
        return [None] * count
    return [(last + timedelta(seconds=seconds * k)).strftime(known) for k in range(1, count + 1)]


def _moments(times: list[str], date_format: str | None) -> list[datetime] | None:
    """``times`` read in ``date_format`` (None: the one format they are in), or None."""
    pattern = date_format or date_format_of(times)
    if pattern is None:
        return None
    try:
        return [datetime.strptime(time, pattern) for time in times]
    except ValueError:
        return None


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month_end = moment.day == calendar.monthrange(moment.year, moment.month)[1]
    days = calendar.monthrange(year, month + 1)[1]
    day = days if month_end else min(moment.day, days)  # month ends stay month ends
    return moment.replace(year=year, month=month + 1, day=day)


def predict(run_dir: Path | str, options: PredictOptions) -> list[Prediction]:
    """The next ``horizon`` values past the end of the run's series, or of ``--file``."""
    model, transform, run = load_run(run_dir)
    if options.inputs:
        raise DataError("predict: a forecast run takes no inputs; give no input to forecast "
                        "past the run's series, or --file SERIES.csv")  # fmt: skip
    task = run.task
    if options.file is not None:
        series = read_column(replace(task, data=(options.file,)))
        _check_values(series, task, options.file)
    else:
        series = read_column(task)
    predicted = forecast(model, transform, task, series.values)
    times = next_times(series.times, series.frequency, task.horizon, series.date_format)
    shown = [t if t is not None else f"+{k}" for k, t in enumerate(times, start=1)]
    lines = [f"{t}  {v:.6g}" for t, v in zip(shown, predicted, strict=True)]
    header = f"# {series.name}: {task.horizon} steps after {series.times[-1]}"
    record = {"column": series.name, "times": times, "forecast": predicted}
    return [Prediction("\n".join([header, *lines]), record)]
