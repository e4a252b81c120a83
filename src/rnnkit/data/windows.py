"""A series made ready for a direct multi-horizon forecaster: transformed, split in time,
scaled with training statistics and cut into windows relative to their last input.

:func:`series_windows` is the forecasting task's data path: ``log`` (a multiplicative
trend and season become additive), then :func:`~rnnkit.data.batching.forecasting_windows`
(test is the last ``horizon`` steps, valid the ``valid`` before them, the
:class:`~rnnkit.data.batching.Scaler` fitted on train alone), then, unless
``absolute``, every window shifted so its last input is 0, inputs and targets alike:
the model forecasts the change from the last value it saw, which lets it follow a
trend beyond the training range. :class:`Transform` is what a trained run keeps to
map forecasts back to the original units. :class:`ForecastTask` names the series
and how to cut it; :func:`read_column` reads it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import Scaler, forecasting_windows
from rnnkit.data.errors import DataError
from rnnkit.data.formats.series import Column, check_date_format
from rnnkit.data.formats.series import read_column as series_column
from rnnkit.data.forms import Series
from rnnkit.data.registry import fetch_as
from rnnkit.data.splits import SPLITS

Example = tuple[Tensor, Tensor]  # a window's inputs (window, 1), its targets (horizon,)
Windows = dict[str, list[Example]]  # the series' windows by split


@dataclass(frozen=True)
class Transform:
    """What a trained run keeps: the transform and the scaler fitted on train."""

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
    def from_json(data: bytes, *, path: Path) -> Transform:
        try:
            record = json.loads(data)
            scaler = Scaler()
            scaler.load_state_dict(record["scaler"])
            kind = record["transform"]
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"damaged ({error})", path=path) from None
        return Transform(kind, scaler)


def _apply(values: Tensor, kind: str) -> Tensor:
    return values.log() if kind == "log" else values


def check_transform(series: Column, kind: str, where: str | None) -> Column:
    """``series``, refused in one line if ``kind`` is ``log`` and a value is not positive."""
    bad = next((i for i, v in enumerate(series.values) if v <= 0), None)
    if kind == "log" and bad is not None:
        raise DataError(f"column {series.name!r}: value {series.values[bad]:g} at "
                        f"{series.times[bad]} is not positive (the log transform needs values > "
                        "0; use --transform none)", path=where)  # fmt: skip
    return series


def series_windows(series: Column, window: int, horizon: int, valid: int, kind: str, *,
                   absolute: bool = False) -> tuple[Transform, Windows]:  # fmt: skip
    """The transform fitted on the training part, and the windows ``(inputs (window, 1),
    targets (horizon,))`` of each part: test the last ``horizon`` steps, valid the
    ``valid`` steps before them, train the rest."""
    values = torch.tensor(series.values, dtype=torch.float64)
    n = values.numel()
    transformed = _apply(values, kind)[:, None]  # (N, 1)
    needed = window + horizon + valid + horizon  # one training window and the held-out steps
    too_few = (f"{series.name}: {n} steps are too few for window {window}, horizon "
               f"{horizon} and {valid} validation steps")  # fmt: skip
    if n < needed:
        raise DataError(f"{too_few} (expected at least {needed}: one training window plus the "
                        "held-out steps; lower --window, --horizon or --valid)")  # fmt: skip
    try:
        *parts, scaler = forecasting_windows(transformed, window, horizon, valid / n, horizon / n)
    except (DataError, ValueError) as error:
        raise DataError(f"{too_few} ({error})") from None
    windows = {}
    for name, part in zip(SPLITS, parts, strict=True):
        inputs, targets = part.inputs.float(), part.targets[..., 0].float()  # (W, w, 1), (W, h)
        if not absolute:
            last = inputs[:, -1:, 0]  # (W, 1)
            inputs, targets = inputs - last[:, :, None], targets - last
        windows[name] = list(zip(inputs, targets, strict=True))
    return Transform(kind, scaler), windows


# --------------------------------------------------------------------------- reading


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


def read_column(task: ForecastTask, file: str | None = None) -> Column:
    """The task's series (one column of the bundled dataset or of the user's CSV), or
    the same column of the CSV ``file``; its values checked for the transform."""
    if file is not None or task.data:
        path = file or task.data[0]
        series = series_column(path, task.column, time_column=task.time_column, comment="#",
                               date_format=task.date_format)  # fmt: skip
        if series.irregular is not None:
            # A notice, not an error: the model sees ordered steps either way, but the
            # seasons and the time labels of a forecast are then only approximate.
            print(f"{path}: dates are irregular ({series.irregular}): rows are taken as "
                  "ordered steps", file=sys.stderr)  # fmt: skip
        return check_transform(series, task.transform, path)
    dataset = fetch_as(task.dataset, Series, "a time series")
    name = task.column or dataset.target
    if name not in dataset.values:
        raise DataError(f"column: {task.dataset} has no column {name!r} (expected one of "
                        f"{', '.join(dataset.values)})")  # fmt: skip
    column = Column(name, dataset.values[name], dataset.times, dataset.frequency)
    return check_transform(column, task.transform, None)


def held_out(task: ForecastTask) -> int:
    """The validation steps: ``valid``, or ``horizon`` when it is None."""
    return task.horizon if task.valid is None else task.valid


def check_season(task: ForecastTask, n: int) -> None:
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
