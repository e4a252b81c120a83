"""Labelled multichannel sequences from UCR/UEA ``.ts`` files and ``.npz`` arrays."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.errors import DataError
from rnnkit.data.formats.ts import (
    parse_json_sequence,
    parse_ts,
    read_npz_sequences,
    read_sequences,
    read_ts,
)
from tests.data.formats.damage import contents, damaged, read_or_data_error

HEADER = """# Two channels, variable lengths
@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
"""


def write(tmp_path: Path, text: str, name: str = "toy.ts") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def error_of(path: Path, **options: object) -> str:
    with pytest.raises(DataError) as caught:
        read_ts(path, **options)  # type: ignore[arg-type]
    return str(caught.value)


def test_multivariate_series_become_steps_by_channels(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "1,2,3:-4.5,5e-1,6:a\n\n7, 8 :9,10: b\n")
    assert read_ts(path) == [
        ([[1.0, -4.5], [2.0, 0.5], [3.0, 6.0]], "a"),
        ([[7.0, 9.0], [8.0, 10.0]], "b"),
    ]


def test_univariate_with_equal_lengths(tmp_path: Path) -> None:
    text = (
        "@problemName Uni\n@timestamps false\n@univariate true\n@equalLength true\n"
        "@seriesLength 3\n@classLabel true 0 1\n@data\n0.5,1,1.5:1\n2,2,2:0\n"
    )
    assert read_ts(write(tmp_path, text)) == [([[0.5], [1.0], [1.5]], "1"), ([[2.0]] * 3, "0")]
    short = write(tmp_path, text + "1,2:0\n", "short.ts")
    assert error_of(short) == f"{short}:10: series has 2 steps (expected @seriesLength 3)"


def test_percent_comments_as_in_some_uea_files(tmp_path: Path) -> None:
    text = "%# cut-down ChinaTown\n%\n@univariate true\n@classLabel true 1 2\n@data\n5,6:2\n"
    assert read_ts(write(tmp_path, text)) == [([[5.0], [6.0]], "2")]


def test_missing_values_are_errors_unless_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "1,?,3:4,5,6:a\n")
    assert error_of(path) == (
        f"{path}:10: missing value '?' at channel 1, value 2 (expected a number; "
        "pass allow_missing=True to read it as NaN)"
    )
    [(steps, label)] = read_ts(path, allow_missing=True)
    assert label == "a" and steps[0] == [1.0, 4.0] and steps[2] == [3.0, 6.0]
    assert math.isnan(steps[1][0]) and steps[1][1] == 5.0


def test_max_length_refuses_or_truncates(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "1,2:3,4:a\n1,2,3:4,5,6:b\n")
    assert error_of(path, max_length=2) == (
        f"{path}:11: series of length 3 is longer than max_length=2 "
        "(expected at most max_length; pass on_long='truncate' to cut it)"
    )
    cut = read_ts(path, max_length=2, on_long="truncate")
    assert cut == [([[1.0, 3.0], [2.0, 4.0]], "a"), ([[1.0, 4.0], [2.0, 5.0]], "b")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("1,2:3,x:a\n", "10: 'x' at channel 2, value 2 is not a number (expected a number or '?')"),
        (
            "1,2:3,nan:a\n",
            "10: 'nan' at channel 2, value 2 is not a finite number (expected a "
            "number, or '?' where missing)",
        ),
        (
            "1,2:3,4:c\n",
            "10: class label 'c' is not declared (expected one of @classLabel's: 'a', 'b')",
        ),
        (
            "1,2:3:a\n",
            "10: channel 2 has 1 values (expected 2 like channel 1: the channels of a "
            "series have one length)",
        ),
        ("1,2:a\n", "10: series has 1 channels (expected 2, as set on line 6)"),
        ("1,2::a\n", "10: channel 2 is empty (expected comma-separated values)"),
        ("1,2,3\n", "10: no ':' (expected channels separated by ':' with the class label last)"),
    ],
)
def test_data_errors_name_the_line(tmp_path: Path, data: str, message: str) -> None:
    path = write(tmp_path, HEADER + data)
    assert error_of(path) == f"{path}:{message}"


def test_channel_count_follows_the_first_series_without_dimensions(tmp_path: Path) -> None:
    path = write(tmp_path, "@classLabel true x\n@data\n1:2:x\n\n1:x\n")
    assert error_of(path) == f"{path}:5: series has 1 channels (expected 2, as set on line 3)"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("@classLabel true a\n", ": no @data line (expected a .ts header ending with @data)"),
        (
            "@classLabel false\n@data\n",
            ":2: no class labels before @data (expected @classLabel true LABEL1 LABEL2 …)",
        ),
        (
            "@classLabel true\n",
            ":1: @classLabel without labels (expected @classLabel true LABEL1 LABEL2 …)",
        ),
        (
            "@timeStamps true\n@classLabel true a\n@data\n",
            ":3: time-stamped .ts data is not supported (expected @timeStamps false)",
        ),
        (
            "@univariate yes\n",
            ":1: @univariate 'yes' (expected @univariate true or @univariate false)",
        ),
        ("@dimensions two\n", ":1: @dimensions 'two' (expected a positive whole number)"),
        ("1,2:a\n", ":1: '1,2:a' before @data (expected header lines starting with @)"),
        (
            "@targetLabel true\n@data\n",
            ":2: regression targets (@targetLabel true) are not supported (expected @classLabel "
            "true LABEL1 LABEL2 …)",
        ),
        ("@classLabel true a\n@data\n", ": no series after @data (expected one series per line)"),
    ],
)
def test_header_errors(tmp_path: Path, header: str, message: str) -> None:
    path = write(tmp_path, header)
    assert error_of(path) == f"{path}{message}"


@given(contents((HEADER + "1,2,3:4,5,6:a\n7,?:8,9:b\n").encode()))
def test_ts_only_data_error_escapes(content: bytes) -> None:
    for allow in (False, True):
        result = read_or_data_error(
            lambda p, a=allow: read_ts(p, allow_missing=a),  # type: ignore[misc]
            content,
            "input.ts",
        )
        if result is not None:
            assert isinstance(result, list) and result
            for steps, label in result:
                assert steps and isinstance(label, str)
                assert len({len(step) for step in steps}) == 1


def npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def npz_error(path: Path, **options: object) -> str:
    with pytest.raises(DataError) as caught:
        read_npz_sequences(path, **options)  # type: ignore[arg-type]
    return str(caught.value)


def test_npz_sequences_are_cut_to_their_lengths(tmp_path: Path) -> None:
    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)  # (N, T, C)
    x[0, 2] = np.nan  # padding past lengths[0] is never read
    path = npz(tmp_path / "data.npz", x=x, lengths=np.array([2, 3]), y=np.array([7, 0]))
    assert read_npz_sequences(path) == [
        ([[0.0, 1.0], [2.0, 3.0]], "7"),
        ([[6.0, 7.0], [8.0, 9.0], [10.0, 11.0]], "0"),
    ]
    labels = npz(tmp_path / "s.npz", x=x[1:], lengths=np.array([1], np.uint8), y=np.array(["up"]))
    assert read_npz_sequences(labels) == [([[6.0, 7.0]], "up")]
    assert read_npz_sequences(path, max_length=1, on_long="truncate") == [
        ([[0.0, 1.0]], "7"),
        ([[6.0, 7.0]], "0"),
    ]
    assert npz_error(path, max_length=1) == (
        f"{path}: sequence 0 of length 2 is longer than max_length=1 "
        "(expected at most max_length; pass on_long='truncate' to cut it)"
    )


def test_npz_missing_array_is_named(tmp_path: Path) -> None:
    path = npz(tmp_path / "data.npz", x=np.zeros((1, 2, 1)), labels=np.array([1]))
    assert npz_error(path) == (
        f"{path}: no array 'lengths' (arrays found: 'x', 'labels'; expected x (N, T, C), "
        "lengths (N,) and y (N,))"
    )


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"x": np.zeros((2, 3)), "lengths": [3, 3], "y": [0, 1]},
            "x is float64 of shape (2, 3) (expected numbers of shape (N, T, C))",
        ),
        (
            {"x": np.zeros((0, 3, 1)), "lengths": np.zeros(0, int), "y": np.zeros(0, int)},
            "x has shape (0, 3, 1) (expected N ≥ 1 sequences, C ≥ 1)",
        ),
        (
            {"x": np.zeros((2, 3, 1)), "lengths": [3.0, 3.0], "y": [0, 1]},
            "lengths is float64 of shape (2,) (expected 2 integers, shape (2,))",
        ),
        (
            {"x": np.zeros((2, 3, 1)), "lengths": [3, 3], "y": [0.5, 1.0]},
            "y is float64 of shape (2,) (expected 2 integer or string labels, shape (2,))",
        ),
        (
            {"x": np.zeros((2, 3, 1)), "lengths": [3, 4], "y": [0, 1]},
            "lengths[1] is 4 (expected 1 … T = 3)",
        ),
        (
            {"x": np.zeros((2, 3, 1)), "lengths": [0, 3], "y": [0, 1]},
            "lengths[0] is 0 (expected 1 … T = 3)",
        ),
        (
            {"x": np.array([[[0.0], [np.inf]]]), "lengths": [2], "y": [0]},
            "x[0, 1, 0] is inf (expected finite numbers within lengths)",
        ),
    ],
)
def test_npz_shape_and_value_errors(
    tmp_path: Path, arrays: dict[str, object], message: str
) -> None:
    path = npz(tmp_path / "data.npz", **{key: np.asarray(value) for key, value in arrays.items()})
    assert npz_error(path) == f"{path}: {message}"


def test_npz_refuses_pickles_single_arrays_and_other_files(tmp_path: Path) -> None:
    objects = npz(
        tmp_path / "data.npz",
        x=np.zeros((1, 1, 1)),
        lengths=np.array([1]),
        y=np.array([{"a": 1}], dtype=object),
    )
    assert npz_error(objects).startswith(f"{objects}: array 'y' cannot be read (ValueError: ")
    single = tmp_path / "x.npy"
    np.save(single, np.zeros(3))
    assert npz_error(single) == (
        f"{single}: a single .npy array (expected an .npz archive from numpy.savez with "
        "x (N, T, C), lengths (N,) and y (N,))"
    )
    text = write(tmp_path, "x,lengths,y\n", "data.csv")
    assert npz_error(text).startswith(f"{text}: not a readable .npz file (")
    empty = write(tmp_path, "", "empty.npz")
    assert npz_error(empty).startswith(f"{empty}: empty file (expected an .npz archive")


def _valid_npz(compressed: bool) -> bytes:
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, x=np.ones((2, 3, 2)), lengths=np.array([3, 1]), y=np.array(["a", "b"]))
    return buffer.getvalue()


@given(st.one_of(st.binary(max_size=300), damaged(_valid_npz(False)), damaged(_valid_npz(True))))
def test_npz_only_data_error_escapes_damaged_bytes(content: bytes) -> None:
    result = read_or_data_error(read_npz_sequences, content, "input.npz")
    if result is not None:
        assert isinstance(result, list) and result


ARRAYS = st.fixed_dictionaries(
    {},
    optional={
        key: st.sampled_from(
            [
                np.zeros((2, 3, 1)),
                np.full((2, 2, 2), np.nan),
                np.zeros((2, 3)),
                np.array([1, 3]),
                np.array([-1, 2]),
                np.array([2**62, 1], dtype=np.uint64),
                np.array(["a", "b"]),
                np.array([b"a", b"b"]),
                np.array([1.5, 2.5]),
                np.array([True, False]),
                np.zeros((0,)),
                np.array(3),
                np.array([1 + 2j, 0j]),
            ]
        )
        for key in ("x", "lengths", "y", "other")
    },
)


@given(ARRAYS)
def test_npz_only_data_error_escapes_any_arrays(arrays: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    result = read_or_data_error(read_npz_sequences, buffer.getvalue(), "input.npz")
    if result is not None:
        for steps, label in result:
            assert steps and all(math.isfinite(v) for step in steps for v in step)
            assert isinstance(label, str)


def test_parse_ts_reads_text_and_names_its_source_in_errors(tmp_path: Path) -> None:
    # The bundled datasets' archive members go through parse_ts: the same reader.
    text = HEADER + "1,2,3:-4.5,5e-1,6:a\n"
    assert parse_ts(text, "x.whl!T.ts") == read_ts(write(tmp_path, text))
    with pytest.raises(DataError, match=r"^x\.whl!T\.ts:10: class label 'c' is not declared"):
        parse_ts(HEADER + "1:2:c\n", "x.whl!T.ts")


def test_read_sequences_goes_by_the_extension_and_cuts_long_ones(tmp_path: Path) -> None:
    ts = write(tmp_path, HEADER + "1,2,3:4,5,6:a\n")
    assert read_sequences(ts, max_length=2) == [([[1.0, 4.0], [2.0, 5.0]], "a")]
    npz = tmp_path / "s.npz"
    np.savez(npz, x=np.ones((1, 3, 2)), lengths=np.array([3]), y=np.array([7]))
    assert read_sequences(npz) == [([[1.0, 1.0]] * 3, "7")]
    with pytest.raises(DataError, match=r"extension '\.csv' \(expected \.ts or \.npz\)"):
        read_sequences(tmp_path / "x.csv")


def test_a_json_sequence_is_steps_by_channels_or_one_channel() -> None:
    assert parse_json_sequence("[[1, 2], [3, 4.5]]", "input 1") == [[1.0, 2.0], [3.0, 4.5]]
    assert parse_json_sequence("[1, 2]", "input 1") == [[1.0], [2.0]]
    for text, message in [("[[1, 2", "not JSON"), ("[]", "non-empty list"),
                          ("[[1, 2], [3]]", "same number of channels"),
                          ('[["a"]]', "numbers in every step"), ("[[true]]", "numbers"),
                          ("[[1e400]]", "finite"), ("[[" + "9" * 400 + "]]", "finite")]:  # fmt: skip
        with pytest.raises(DataError, match=f"^input 2: .*{message}"):
            parse_json_sequence(text, "input 2")
