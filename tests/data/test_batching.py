"""Batching: buckets, padding, LM streams, forecasting windows without leakage."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.batching import (
    Scaler,
    Windows,
    bucket_batches,
    forecasting_windows,
    pad,
    padding_fraction,
    sliding_windows,
    split_series,
    stream_batches,
)
from rnnkit.data.errors import DataError

# ---- length buckets ----


def test_bucket_batches_without_shuffle_sorts_each_chunk_longest_first() -> None:
    lengths = [5, 1, 4, 2, 3, 6, 0]
    # Chunks of 2·2 = 4 examples: [0, 1, 2, 3] and [4, 5, 6], each sorted by length.
    assert bucket_batches(lengths, 2, seed=0, shuffle=False, bucket_size_multiplier=2) == [
        [0, 2],
        [3, 1],
        [5, 4],
        [6],
    ]


def test_bucket_batches_is_reproducible_from_its_seed() -> None:
    lengths = [(7 * i) % 23 for i in range(200)]
    a = bucket_batches(lengths, 8, seed=5, bucket_size_multiplier=4)
    assert a == bucket_batches(lengths, 8, seed=5, bucket_size_multiplier=4)
    assert a != bucket_batches(lengths, 8, seed=6, bucket_size_multiplier=4)


def test_bucketing_pads_far_less_than_random_batches_on_skewed_lengths() -> None:
    generator = torch.Generator().manual_seed(0)
    # Heavy-tailed lengths, as in real text: most short, a few very long.
    raw = torch.empty(2000, dtype=torch.float64).exponential_(1 / 20, generator=generator)
    lengths = [1 + int(x) for x in raw.tolist()]
    bucketed = bucket_batches(lengths, 32, seed=1)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    random_batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    assert sorted(i for batch in bucketed for i in batch) == list(range(len(lengths)))
    bucketed_fraction = padding_fraction(lengths, bucketed)
    random_fraction = padding_fraction(lengths, random_batches)
    assert random_fraction > 0.6
    assert bucketed_fraction < random_fraction / 5  # about 0.10 against 0.76


def test_padding_fraction_counts_padded_positions() -> None:
    lengths = [1, 2, 3, 4]
    # [0, 3] pads to 4: 8 positions, 5 real. [1, 2] pads to 3: 6 positions, 5 real.
    assert padding_fraction(lengths, [[0, 3], [1, 2]]) == pytest.approx(4 / 14)
    assert padding_fraction(lengths, [[0], [1], [2], [3]]) == 0.0
    assert padding_fraction([0, 0], [[0, 1]]) == 0.0
    assert padding_fraction([], []) == 0.0


def test_bucket_batches_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"batch_size: expected an int ≥ 1, got 0"):
        bucket_batches([1, 2], 0, seed=0)
    with pytest.raises(DataError, match=r"lengths\[1\]: expected an int ≥ 0, got -2"):
        bucket_batches([1, -2], 1, seed=0)


@given(
    st.lists(st.integers(0, 50), max_size=120),
    st.integers(1, 9),
    st.integers(1, 4),
    st.integers(0, 2**31),
    st.booleans(),
)
def test_bucket_batches_properties(
    lengths: list[int], batch_size: int, multiplier: int, seed: int, shuffle: bool
) -> None:
    batches = bucket_batches(
        lengths, batch_size, seed=seed, shuffle=shuffle, bucket_size_multiplier=multiplier
    )
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert len(batches) == math.ceil(len(lengths) / batch_size)
    assert sum(len(b) < batch_size for b in batches) <= 1
    assert all(1 <= len(b) <= batch_size for b in batches)
    for batch in batches:
        in_batch = [lengths[i] for i in batch]
        assert in_batch == sorted(in_batch, reverse=True)
    assert 0.0 <= padding_fraction(lengths, batches) < 1.0


# ---- padding ----


def test_pad_stacks_sequences_with_the_pad_id() -> None:
    ids, lengths = pad([[5, 6, 7], [8], []], pad_id=-1)
    assert ids.dtype == torch.int64 and lengths.dtype == torch.int64
    assert torch.equal(ids, torch.tensor([[5, 6, 7], [8, -1, -1], [-1, -1, -1]]))
    assert torch.equal(lengths, torch.tensor([3, 1, 0]))
    empty, no_lengths = pad([])
    assert empty.shape == (0, 0) and no_lengths.shape == (0,)


@given(st.lists(st.lists(st.integers(1, 10**6), max_size=9), max_size=7), st.integers(-1, 0))
def test_pad_properties(sequences: list[list[int]], pad_id: int) -> None:
    ids, lengths = pad(sequences, pad_id)
    longest = max((len(s) for s in sequences), default=0)
    assert ids.shape == (len(sequences), longest)
    assert lengths.tolist() == [len(s) for s in sequences]
    for row, seq in enumerate(sequences):
        assert ids[row, : len(seq)].tolist() == seq
        assert (ids[row, len(seq) :] == pad_id).all()


# ---- language-model streams ----


def test_stream_batches_cuts_rows_like_the_word_language_model_example() -> None:
    # 26 tokens, 4 rows of 6 (2 dropped): row b is b·6 … b·6+5.
    chunks = stream_batches(list(range(26)), batch_size=4, steps=3)
    assert len(chunks) == 2
    (x0, y0), (x1, y1) = chunks
    assert torch.equal(x0, torch.tensor([[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 20]]))
    assert torch.equal(y0, x0 + 1)
    # The last chunk is shorter: the row's last token is only ever a target.
    assert torch.equal(x1, torch.tensor([[3, 4], [9, 10], [15, 16], [21, 22]]))
    assert torch.equal(y1, x1 + 1)
    assert x0.dtype == torch.int64 and x0.is_contiguous()


def test_stream_batches_refuses_a_stream_too_short_for_its_rows() -> None:
    with pytest.raises(DataError, match=r"token stream: 7 tokens make rows of 1 for batch_size 4"):
        stream_batches(list(range(7)), batch_size=4, steps=5)
    with pytest.raises(DataError, match=r"expected one dimension"):
        stream_batches(torch.zeros(3, 3, dtype=torch.int64), batch_size=1, steps=2)


@given(st.integers(2, 200), st.integers(1, 6), st.integers(1, 12), st.integers(0, 2**31))
def test_stream_batches_rows_continue_from_chunk_to_chunk(
    n: int, batch_size: int, steps: int, seed: int
) -> None:
    if n // batch_size < 2:
        return
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (n,), generator=generator)
    chunks = stream_batches(ids, batch_size, steps)
    row_length = n // batch_size
    rows = ids[: batch_size * row_length].view(batch_size, row_length)
    assert len(chunks) == math.ceil((row_length - 1) / steps)
    for k, (inputs, targets) in enumerate(chunks):
        assert inputs.shape == targets.shape
        assert inputs.shape[0] == batch_size
        assert 1 <= inputs.shape[1] <= steps
        if k < len(chunks) - 1:
            assert inputs.shape[1] == steps  # only the last chunk may be shorter
        assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are inputs shifted by one
    for (_, targets), (next_inputs, _) in itertools.pairwise(chunks):
        # Row b of chunk k+1 starts with the token row b of chunk k predicted last.
        assert torch.equal(next_inputs[:, 0], targets[:, -1])
    assert torch.equal(torch.cat([x for x, _ in chunks], dim=1), rows[:, :-1])
    assert torch.equal(torch.cat([y for _, y in chunks], dim=1), rows[:, 1:])


# ---- forecasting ----


def _series(n: int, channels: int = 2) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64)
    return torch.stack([t * (c + 1) + c for c in range(channels)], dim=1)  # (N, C)


def test_sliding_windows_takes_history_then_horizon() -> None:
    series = _series(8)
    windows = sliding_windows(series, input_steps=3, horizon=2, stride=2)
    assert isinstance(windows, Windows)
    inputs, targets = windows
    # (8 − 3 − 2) // 2 + 1 = 2 windows, starting at steps 0 and 2.
    assert inputs.shape == (2, 3, 2) and targets.shape == (2, 2, 2)
    assert torch.equal(inputs[1], series[2:5]) and torch.equal(targets[1], series[5:7])
    inputs[0, 0, 0] = 99.0
    assert series[0, 0] == 0.0  # copies, not views


def test_sliding_windows_refuses_short_or_misshapen_series() -> None:
    with pytest.raises(
        DataError, match=r"series: 4 steps are too few .*input_steps \+ horizon = 5"
    ):
        sliding_windows(_series(4), input_steps=3, horizon=2)
    with pytest.raises(DataError, match=r"series: expected a tensor of shape \(N, C\), got \(5,\)"):
        sliding_windows(torch.zeros(5), input_steps=1, horizon=1)
    with pytest.raises(DataError, match=r"expected floating-point values"):
        sliding_windows(torch.zeros(5, 1, dtype=torch.int64), input_steps=1, horizon=1)


@given(
    st.integers(1, 40), st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3)
)
def test_sliding_windows_properties(
    n: int, channels: int, input_steps: int, horizon: int, stride: int
) -> None:
    series = torch.randn(n, channels, generator=torch.Generator().manual_seed(n))
    if n < input_steps + horizon:
        with pytest.raises(DataError):
            sliding_windows(series, input_steps=input_steps, horizon=horizon, stride=stride)
        return
    inputs, targets = sliding_windows(
        series, input_steps=input_steps, horizon=horizon, stride=stride
    )
    count = (n - input_steps - horizon) // stride + 1
    assert inputs.shape == (count, input_steps, channels)
    assert targets.shape == (count, horizon, channels)
    for w in range(count):
        start = w * stride
        assert torch.equal(inputs[w], series[start : start + input_steps])
        assert torch.equal(targets[w], series[start + input_steps : start + input_steps + horizon])


def test_scaler_standardises_each_channel_and_inverts() -> None:
    train = torch.tensor([[1.0, 10.0, 5.0], [3.0, 10.0, 5.0], [5.0, 40.0, 5.0]])
    scaler = Scaler().fit(train)
    state = scaler.state_dict()
    assert state["mean"] == [3.0, 20.0, 5.0]
    # Population std; a constant channel is divided by 1, not 0.
    assert state["std"] == pytest.approx([math.sqrt(8 / 3), math.sqrt(200), 1.0])
    scaled = scaler.transform(train)
    assert scaled.dtype == torch.float32
    torch.testing.assert_close(scaled.mean(0), torch.zeros(3))
    torch.testing.assert_close(scaled.std(0, correction=0), torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(scaler.inverse_transform(scaled), train)
    batch = torch.randn(4, 6, 3, dtype=torch.float64)  # windows: channels last
    torch.testing.assert_close(
        scaler.inverse_transform(scaler.transform(batch)), batch, rtol=0, atol=1e-12
    )


def test_scaler_state_is_plain_floats_and_restores_bitwise() -> None:
    scaler = Scaler().fit(torch.randn(50, 4, generator=torch.Generator().manual_seed(3)))
    state = scaler.state_dict()
    assert all(type(v) is float for values in state.values() for v in values)
    restored = Scaler()
    restored.load_state_dict(json.loads(json.dumps(state)))
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(restored.transform(x), scaler.transform(x))
    assert restored.state_dict() == state


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"mean": [0.0]}, "exactly the keys"),
        ({"mean": [0.0], "std": [1.0], "x": []}, "exactly the keys"),
        ({"mean": [], "std": []}, "non-empty list"),
        ({"mean": [0.0], "std": ["1"]}, r"'std'\[0\]: expected a finite number"),
        ({"mean": [float("nan")], "std": [1.0]}, r"'mean'\[0\]: expected a finite number"),
        ({"mean": [0.0, 1.0], "std": [1.0]}, "2 means but 1 stds"),
        ({"mean": [0.0], "std": [0.0]}, r"expected every value > 0"),
    ],
)
def test_scaler_refuses_a_damaged_state(state: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Scaler().load_state_dict(state)  # type: ignore[arg-type]


def test_scaler_refuses_use_before_fit_and_wrong_channels() -> None:
    with pytest.raises(RuntimeError, match="fit it"):
        Scaler().transform(torch.zeros(2, 1))
    scaler = Scaler().fit(torch.randn(5, 2, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(DataError, match=r"expected 2 channels .*got shape \(5, 3\)"):
        scaler.transform(torch.zeros(5, 3))
    with pytest.raises(DataError, match="step 1 holds a value that is not finite"):
        Scaler().fit(torch.tensor([[0.0], [float("inf")]]))


def test_split_series_is_chronological_with_rounded_sizes() -> None:
    series = _series(144)
    train, val, test = split_series(series, val_fraction=0.1, test_fraction=0.15)
    assert (len(train), len(val), len(test)) == (108, 14, 22)
    assert torch.equal(torch.cat([train, val, test]), series)
    with pytest.raises(ValueError, match=r"val_fraction \+ test_fraction: expected < 1"):
        split_series(series, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"test_fraction: expected a number in \[0, 1\)"):
        split_series(series, val_fraction=0.1, test_fraction=-0.1)


def test_forecasting_windows_fit_the_scaler_on_training_data_only() -> None:
    series = torch.randn(100, 3, generator=torch.Generator().manual_seed(0)) * 5 + 2
    train, val, test, scaler = forecasting_windows(series, 6, 2, 0.2, 0.2)
    n_train = 60
    reference = Scaler().fit(series[:n_train])
    assert scaler.state_dict() == reference.state_dict()
    assert torch.equal(
        train.inputs,
        sliding_windows(reference.transform(series[:n_train]), input_steps=6, horizon=2).inputs,
    )
    # Change every validation and test value wildly: nothing about training moves.
    changed = series.clone()
    changed[n_train:] = torch.linspace(1e3, -1e4, 40).unsqueeze(1).expand(40, 3)
    train2, val2, _, scaler2 = forecasting_windows(changed, 6, 2, 0.2, 0.2)
    assert scaler2.state_dict() == scaler.state_dict()
    assert torch.equal(train2.inputs, train.inputs) and torch.equal(train2.targets, train.targets)
    assert not torch.equal(val2.targets, val.targets)
    # Changing only the test values leaves the validation windows alone.
    test_changed = series.clone()
    test_changed[80:] += 100.0
    _, val3, test3, _ = forecasting_windows(test_changed, 6, 2, 0.2, 0.2)
    assert torch.equal(val3.inputs, val.inputs) and torch.equal(val3.targets, val.targets)
    assert not torch.equal(test3.targets, test.targets)


def test_forecasting_validation_windows_borrow_history_but_never_later_targets() -> None:
    series = _series(50, channels=1)  # value = step, so every window names its steps
    train, val, test, scaler = forecasting_windows(series, 4, 3, 0.2, 0.2)
    steps = [
        scaler.inverse_transform(w) for w in (val.inputs, val.targets, test.inputs, test.targets)
    ]
    val_inputs, val_targets, test_inputs, test_targets = (s.round().long() for s in steps)
    # Parts: train 0–29, validation 30–39, test 40–49.
    assert torch.equal(val_inputs[0, :, 0], torch.tensor([26, 27, 28, 29]))  # history from train
    assert int(val_targets.min()) == 30 and int(val_targets.max()) == 39
    assert val_targets.shape == (10 - 3 + 1, 3, 1)
    assert torch.equal(test_inputs[0, :, 0], torch.tensor([36, 37, 38, 39]))
    assert int(test_targets.min()) == 40 and int(test_targets.max()) == 49
    train_targets = scaler.inverse_transform(train.targets).round().long()
    assert int(train_targets.max()) == 29


def test_forecasting_windows_edge_cases() -> None:
    series = _series(40)
    train, val, test, _ = forecasting_windows(series, 5, 2, 0.0, 0.25)
    assert val.inputs.shape == (0, 5, 2) and val.targets.shape == (0, 2, 2)
    assert train.inputs.shape == (30 - 7 + 1, 5, 2) and test.inputs.shape == (10 - 2 + 1, 5, 2)
    with pytest.raises(DataError, match=r"the training part has 8 steps \(expected at least"):
        forecasting_windows(_series(10), 6, 3, 0.1, 0.1)
    with pytest.raises(
        DataError, match=r"the test part has 2 steps \(expected 0 or at least horizon = 3\)"
    ):
        forecasting_windows(_series(20), 3, 3, 0.0, 0.1)
    broken = _series(20)
    broken[17, 1] = float("nan")
    with pytest.raises(DataError, match=r"series: step 17 holds a value that is not finite"):
        forecasting_windows(broken, 3, 1, 0.1, 0.1)


@given(
    st.integers(20, 80),
    st.integers(1, 5),
    st.integers(1, 3),
    st.sampled_from([0.0, 0.1, 0.2]),
    st.sampled_from([0.0, 0.1, 0.2]),
)
def test_forecasting_windows_properties(
    n: int, input_steps: int, horizon: int, val_fraction: float, test_fraction: float
) -> None:
    series = torch.randn(n, 2, generator=torch.Generator().manual_seed(n))
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    n_train = n - n_val - n_test
    if 0 < n_val < horizon or 0 < n_test < horizon:
        with pytest.raises(DataError):
            forecasting_windows(series, input_steps, horizon, val_fraction, test_fraction)
        return
    train, val, test, scaler = forecasting_windows(
        series, input_steps, horizon, val_fraction, test_fraction
    )
    for part, size in ((train, n_train - input_steps), (val, n_val), (test, n_test)):
        count = size - horizon + 1 if size else 0
        assert part.inputs.shape == (count, input_steps, 2)
        assert part.targets.shape == (count, horizon, 2)
    # Every validation target is a validation value: scaled, it is series[n_train:n_train+n_val].
    scaled = scaler.transform(series)
    if n_val:
        assert torch.equal(val.targets[:, 0], scaled[n_train : n_train + n_val - horizon + 1])
        assert torch.equal(val.targets[-1, -1], scaled[n_train + n_val - 1])
