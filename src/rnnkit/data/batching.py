"""Batches: length buckets, padding, language-model streams, forecasting windows.

Everything random here draws from a ``torch.Generator`` seeded by the caller, so a
seed gives the same batches on every machine. Seeded splits of examples are
:func:`rnnkit.data.splits.split_indices` (re-exported here for the tasks).

Forecasting data goes through :func:`forecasting_windows`, which splits the series
in time order *before* fitting the :class:`Scaler` on the training part alone:
statistics of the validation or test values never reach the training data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.errors import DataError
from rnnkit.data.splits import split_indices as split_indices  # the tasks split files with it
from rnnkit.training.sampler import bucket


def _check_count(value: object, name: str, least: int) -> int:
    """``value`` if it is an int ≥ ``least``; a ValueError naming the argument otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name}: expected an int ≥ {least}, got {value!r}")
    return value


def _check_lengths(lengths: Sequence[int]) -> None:
    for i, length in enumerate(lengths):
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise DataError(f"lengths[{i}]: expected an int ≥ 0, got {length!r}")


def bucket_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    bucket_size_multiplier: int = 50,
) -> list[list[int]]:
    """Batches of example indices in which lengths are alike, so little is padding.

    The indices are shuffled (when ``shuffle``), cut into chunks of
    ``batch_size · bucket_size_multiplier``, each chunk is sorted by length,
    longest first, and cut into batches; then the order of the batches is
    shuffled. Sorting only within a chunk keeps some randomness in which examples
    meet; a larger multiplier pads less and shuffles less.

    Args:
        lengths: the length of each example.
        batch_size: examples per batch; only the last batch may hold fewer.
        seed: seeds both shuffles (the same seed, the same batches).
        shuffle: ``False`` keeps the examples' order into chunks and the batches'
            order, for evaluation.
        bucket_size_multiplier: batches per sorted chunk.

    Returns:
        The batches; every index in ``range(len(lengths))`` appears exactly once,
        and within a batch the indices are in decreasing length (what
        ``pack_padded_sequence`` wants).
    """
    _check_count(batch_size, "batch_size", 1)
    _check_count(bucket_size_multiplier, "bucket_size_multiplier", 1)
    _check_lengths(lengths)
    # The Trainer's own bucketing: one algorithm for training and for this helper.
    return bucket(lengths, batch_size, seed=seed, shuffle=shuffle,
                  multiplier=bucket_size_multiplier)  # fmt: skip


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of a padded batch's positions that are padding, over all ``batches``.

    Each batch is padded to its longest example, so it holds
    ``len(batch) · max length`` positions; 0.0 when there are no positions at all.
    """
    total = 0
    real = 0
    for batch in batches:
        batch_lengths = [lengths[i] for i in batch]
        if batch_lengths:
            total += len(batch_lengths) * max(batch_lengths)
            real += sum(batch_lengths)
    return 0.0 if total == 0 else (total - real) / total


def pad(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Stack id sequences of different lengths into one batch.

    The rows are filled into one NumPy array and handed to torch without a copy: a
    row at a time into a torch tensor costs a dispatch per row (about 200 µs for 32
    texts, against 20 µs this way; it runs once per batch in every task's collate).

    Returns:
        ``(ids, lengths)``: ``ids`` is ``(B, T)`` int64 with ``T`` the longest
        length and ``pad_id`` after each sequence's end; ``lengths`` is ``(B,)``
        int64.
    """
    sizes = [len(seq) for seq in sequences]
    longest = max(sizes, default=0)
    ids = np.full((len(sizes), longest), pad_id, dtype=np.int64)  # (B, T)
    for row, (seq, size) in enumerate(zip(sequences, sizes, strict=True)):
        if size:
            ids[row, :size] = seq
    return torch.from_numpy(ids), torch.tensor(sizes, dtype=torch.int64)


def stream_batches(
    ids: Sequence[int] | Tensor, batch_size: int, steps: int
) -> list[tuple[Tensor, Tensor]]:
    """Cut one long token stream into stateful chunks for truncated BPTT.

    As in the classic word-language-model example, the stream is cut into
    ``batch_size`` contiguous rows of equal length ``L`` (the tail that does not
    fit is dropped), so row ``b`` reads tokens ``[b·L, (b+1)·L)``. Chunk ``k``
    holds positions ``[k·steps, (k+1)·steps)`` of every row as inputs and the
    same positions plus one as targets; the last chunk may be shorter. Row ``b``
    of chunk ``k+1`` continues exactly where row ``b`` of chunk ``k`` stopped, so
    the model carries its state (detached) from one chunk to the next.

    Returns:
        ``[(inputs, targets), …]``, each ``(B, T)`` int64 with ``T ≤ steps``.
    """
    _check_count(batch_size, "batch_size", 1)
    _check_count(steps, "steps", 1)
    stream = torch.as_tensor(ids, dtype=torch.int64)
    if stream.dim() != 1:
        raise DataError(f"token stream: expected one dimension, got shape {tuple(stream.shape)}")
    row_length = stream.numel() // batch_size
    if row_length < 2:
        raise DataError(
            f"token stream: {stream.numel()} tokens make rows of {row_length} for batch_size "
            f"{batch_size} (expected at least {2 * batch_size} tokens: an input and its target)"
        )
    rows = stream[: batch_size * row_length].view(batch_size, row_length)  # (B, L)
    chunks: list[tuple[Tensor, Tensor]] = []
    # The last position of a row only ever serves as a target.
    for start in range(0, row_length - 1, steps):
        end = min(start + steps, row_length - 1)
        inputs = rows[:, start:end].contiguous()  # (B, T)
        targets = rows[:, start + 1 : end + 1].contiguous()  # (B, T)
        chunks.append((inputs, targets))
    return chunks


class Windows(NamedTuple):
    """Forecasting examples: each window's history and the values that follow it."""

    inputs: Tensor  # (W, input_steps, C)
    targets: Tensor  # (W, horizon, C)


def _check_series(series: Tensor, name: str = "series") -> None:
    if not isinstance(series, Tensor) or series.dim() != 2:
        shape = tuple(series.shape) if isinstance(series, Tensor) else type(series).__name__
        raise DataError(f"{name}: expected a tensor of shape (N, C), got {shape}")
    if not series.is_floating_point():
        raise DataError(f"{name}: expected floating-point values, got {series.dtype}")


def sliding_windows(series: Tensor, *, input_steps: int, horizon: int, stride: int = 1) -> Windows:
    """Every window of ``input_steps`` values followed by ``horizon`` values.

    Window ``w`` starts at ``w · stride``: its inputs are
    ``series[w·stride : w·stride + input_steps]`` and its targets the next
    ``horizon`` steps. There are ``(N − input_steps − horizon) // stride + 1``
    windows; a series shorter than ``input_steps + horizon`` raises DataError.

    Args:
        series: ``(N, C)``, time first.

    Returns:
        ``Windows(inputs (W, input_steps, C), targets (W, horizon, C))``, copies
        (writing to them leaves ``series`` alone).
    """
    _check_count(input_steps, "input_steps", 1)
    _check_count(horizon, "horizon", 1)
    _check_count(stride, "stride", 1)
    _check_series(series)
    span = input_steps + horizon
    if series.shape[0] < span:
        raise DataError(
            f"series: {series.shape[0]} steps are too few for one window "
            f"(expected at least input_steps + horizon = {span})"
        )
    windows = series.unfold(0, span, stride).transpose(1, 2)  # (W, span, C)
    inputs = windows[:, :input_steps].contiguous()  # (W, input_steps, C)
    targets = windows[:, input_steps:].contiguous()  # (W, horizon, C)
    return Windows(inputs, targets)


class Scaler:
    """Standardises each channel: ``(x − mean) / std``, with statistics from one fit.

    Fit it on the training part only (:func:`forecasting_windows` does), then
    apply the same statistics to every part and undo them on predictions. The
    statistics are float64 and the arithmetic runs in float64, so a transform
    followed by its inverse returns the input to within the input dtype's
    rounding. A constant channel (std 0) is divided by 1: it becomes zeros
    rather than NaN.
    """

    def __init__(self) -> None:
        self._mean: Tensor | None = None  # (C,) float64
        self._std: Tensor | None = None  # (C,) float64

    def fit(self, train_part: Tensor) -> Scaler:
        """Learn each channel's mean and (population) standard deviation; returns ``self``."""
        _check_series(train_part, "train_part")
        if train_part.shape[0] < 1:
            raise DataError("train_part: expected at least one step to fit the scaler on")
        values = train_part.to(torch.float64)
        if not torch.isfinite(values).all():
            step = int(torch.nonzero(~torch.isfinite(values))[0, 0])
            raise DataError(f"train_part: step {step} holds a value that is not finite")
        mean = values.mean(dim=0)  # (C,)
        std = values.std(dim=0, correction=0)  # (C,)
        self._mean = mean
        self._std = torch.where(std > 0, std, torch.ones_like(std))
        return self

    def _fitted(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self._mean is None or self._std is None:
            raise RuntimeError("Scaler: fit it (or load_state_dict) before transforming")
        if x.dim() < 1 or x.shape[-1] != self._mean.shape[0]:
            raise DataError(
                f"scaler: expected {self._mean.shape[0]} channels in the last dimension, "
                f"got shape {tuple(x.shape)}"
            )
        return self._mean, self._std

    def transform(self, x: Tensor) -> Tensor:
        """``(x − mean) / std`` per channel (the last dimension); same dtype as ``x``."""
        mean, std = self._fitted(x)
        return ((x.to(torch.float64) - mean) / std).to(x.dtype)

    def inverse_transform(self, x: Tensor) -> Tensor:
        """``x · std + mean`` per channel: back to the data's units (for predictions)."""
        mean, std = self._fitted(x)
        return (x.to(torch.float64) * std + mean).to(x.dtype)

    def state_dict(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` as plain floats (JSON-ready, exact)."""
        mean, std = self._mean, self._std
        if mean is None or std is None:
            raise RuntimeError("Scaler: nothing to save before fit")
        return {"mean": [float(v) for v in mean.tolist()], "std": [float(v) for v in std.tolist()]}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        """Restore what :meth:`state_dict` gave; a damaged state raises DataError."""
        if not isinstance(state, dict) or set(state) != {"mean", "std"}:
            raise DataError('scaler state: expected exactly the keys "mean" and "std"')
        columns: dict[str, list[float]] = {}
        for key in ("mean", "std"):
            values = state[key]
            if not isinstance(values, list) or not values:
                raise DataError(f"scaler state {key!r}: expected a non-empty list of numbers")
            for i, v in enumerate(values):
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise DataError(
                        f"scaler state {key!r}[{i}]: expected a finite number, got {v!r}"
                    )
            columns[key] = [float(v) for v in values]
        if len(columns["mean"]) != len(columns["std"]):
            raise DataError(
                f"scaler state: {len(columns['mean'])} means but {len(columns['std'])} stds "
                "(expected one of each per channel)"
            )
        if any(v <= 0 for v in columns["std"]):
            raise DataError("scaler state 'std': expected every value > 0")
        self._mean = torch.tensor(columns["mean"], dtype=torch.float64)
        self._std = torch.tensor(columns["std"], dtype=torch.float64)


def _check_fraction(value: object, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value < 1
    ):
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    val = _check_fraction(val_fraction, "val_fraction")
    test = _check_fraction(test_fraction, "test_fraction")
    if val + test >= 1:
        raise ValueError(
            f"val_fraction + test_fraction: expected < 1 (training needs data), got {val + test}"
        )
    n_val, n_test = round(n * val), round(n * test)
    return n - n_val - n_test, n_val, n_test


def split_series(
    series: Tensor, *, val_fraction: float, test_fraction: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Cut a series in time order: the first part trains, then validation, then test.

    The validation and test parts have ``round(N · fraction)`` steps each; the
    training part the rest. The parts are views of ``series``.

    Returns:
        ``(train (N_train, C), val (N_val, C), test (N_test, C))``.
    """
    _check_series(series)
    n_train, n_val, _ = _split_sizes(series.shape[0], val_fraction, test_fraction)
    train = series[:n_train]
    val = series[n_train : n_train + n_val]
    test = series[n_train + n_val :]
    return train, val, test


def forecasting_windows(
    series: Tensor,
    input_steps: int,
    horizon: int,
    val_fraction: float,
    test_fraction: float,
    *,
    stride: int = 1,
) -> tuple[Windows, Windows, Windows, Scaler]:
    """Split a series in time, scale it with training statistics, and cut windows.

    The :class:`Scaler` is fitted on the training part alone, so neither the
    scaler nor any training window depends on a single validation or test value.
    A validation window's inputs may reach back up to ``input_steps`` steps into
    the training part (and a test window's into the validation part): that is
    history a forecaster at that moment would have. Its targets always lie
    wholly inside its own part; no window sees a target from a later part.

    Args:
        series: ``(N, C)``, time first, finite values.
        input_steps, horizon, stride: as for :func:`sliding_windows`.
        val_fraction, test_fraction: as for :func:`split_series`; a part of
            zero steps gives zero windows.

    Returns:
        ``(train, val, test, scaler)``: three :class:`Windows` of scaled values,
        and the scaler to undo the scaling on predictions.
    """
    _check_count(input_steps, "input_steps", 1)
    _check_count(horizon, "horizon", 1)
    _check_series(series)
    if not torch.isfinite(series).all():
        step = int(torch.nonzero(~torch.isfinite(series))[0, 0])
        raise DataError(f"series: step {step} holds a value that is not finite")
    n_train, n_val, n_test = _split_sizes(series.shape[0], val_fraction, test_fraction)
    if n_train < input_steps + horizon:
        raise DataError(
            f"series: the training part has {n_train} steps "
            f"(expected at least input_steps + horizon = {input_steps + horizon})"
        )
    train_part = series[:n_train]
    scaler = Scaler().fit(train_part)
    scaled = scaler.transform(series)  # (N, C)

    def part(start: int, size: int, name: str) -> Windows:
        if size == 0:
            channels = series.shape[1]
            return Windows(
                scaled.new_empty((0, input_steps, channels)),
                scaled.new_empty((0, horizon, channels)),
            )
        if size < horizon:
            raise DataError(
                f"series: the {name} part has {size} steps (expected 0 or at least horizon = {horizon})"
            )
        # History from the part before; the windows' targets start at `start` or later.
        segment = scaled[start - input_steps : start + size]
        return sliding_windows(segment, input_steps=input_steps, horizon=horizon, stride=stride)

    train = sliding_windows(
        scaled[:n_train], input_steps=input_steps, horizon=horizon, stride=stride
    )
    val = part(n_train, n_val, "validation")
    test = part(n_train + n_val, n_test, "test")
    return train, val, test, scaler
