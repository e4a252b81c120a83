"""A series made ready for a direct multi-horizon forecaster: transformed, split in time,
scaled with training statistics and cut into windows relative to their last input.

:func:`series_windows` is the forecasting task's data path: ``log`` (a multiplicative
trend and season become additive), then :func:`~rnnkit.data.batching.forecasting_windows`
(test is the last ``horizon`` steps, valid the ``valid`` before them, the
:class:`~rnnkit.data.batching.Scaler` fitted on train alone), then, unless
``absolute``, every window shifted so its last input is 0, inputs and targets alike:
the model forecasts the change from the last value it saw, which lets it follow a
trend beyond the training range. :class:`Transform` is what a trained run keeps to
map forecasts back to the original units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.data.batching import Scaler, forecasting_windows
from rnnkit.data.errors import DataError
from rnnkit.data.formats.series import Column
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
