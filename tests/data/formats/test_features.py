"""Texts with a condition each: feature vectors from ``.npz`` and CSV/TSV, labels from tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnnkit.data.errors import DataError
from rnnkit.data.formats.features import (
    condition_kind,
    read_conditioned_texts,
    read_feature_texts,
)


def write_npz(path: Path, **arrays: object) -> Path:
    with path.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    return path


def test_npz_rows_pair_each_text_with_its_row_of_features(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "f.npz", features=np.array([[1, 2], [3, 4]], dtype=np.int32),
                     texts=np.array([" a red square ", "two circles"]))  # fmt: skip
    names, rows = read_feature_texts(path)
    assert names == ["f0", "f1"]
    assert rows == [("a red square", [1.0, 2.0]), ("two circles", [3.0, 4.0])]
    # Byte strings are texts too (numpy's S dtype).
    path = write_npz(
        tmp_path / "b.npz", features=np.zeros((1, 1)), texts=np.array([b"caf\xc3\xa9"])
    )
    assert read_feature_texts(path)[1] == [("café", [0.0])]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"features": np.zeros((2, 3))}, r"no array 'texts' \(arrays found: 'features'"),
        ({"features": np.zeros(2), "texts": np.array(["a", "b"])},
         r"features is float64 of shape \(2,\)"),
        ({"features": np.zeros((0, 3)), "texts": np.array([], dtype=str)},
         r"features is float64 of shape \(0, 3\) \(expected numbers of shape \(N, D\), N ≥ 1"),
        ({"features": np.array([["x"]]), "texts": np.array(["a"])}, "features is <U1"),
        ({"features": np.zeros((2, 3)), "texts": np.array(["a"])},
         r"texts is <U1 of shape \(1,\) \(expected 2 strings"),
        ({"features": np.zeros((2, 3)), "texts": np.array(["a", None], dtype=object)},
         r"array 'texts' cannot be read \(ValueError: .*np.array\(texts, dtype=str\)"),
        ({"features": np.array([[0.0], [np.nan]]), "texts": np.array(["a", "b"])},
         r"features\[1, 0\] is nan"),
        ({"features": np.array([[np.inf]]), "texts": np.array(["a"])}, r"features\[0, 0\] is inf"),
        ({"features": np.zeros((2, 1)), "texts": np.array(["a", " "])}, r"texts\[1\] is empty"),
    ],
)  # fmt: skip
def test_npz_errors_name_the_file_and_the_array(
    tmp_path: Path, arrays: dict[str, object], message: str
) -> None:
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as caught:
        read_feature_texts(path)
    assert str(caught.value).startswith(f"{path}:") and "\n" not in str(caught.value)


def test_damaged_empty_and_single_array_files_are_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not really a zip archive")
    single = tmp_path / "single.npz"
    with single.open("wb") as handle:
        np.save(handle, np.zeros(3))
    for path, message in [(empty, "empty file"), (damaged, "not a readable .npz file"),
                          (single, "a single .npy array"),
                          (tmp_path / "missing.npz", "no such file")]:  # fmt: skip
        with pytest.raises(DataError, match=message) as caught:
            read_feature_texts(path)
        assert str(caught.value).startswith(f"{path}:") and "\n" not in str(caught.value)


def test_feature_csv(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('text,x,y,z\n"a cat, asleep",1,2.5,-3\n\nthe dog,0,0,1e3\n')
    names, rows = read_feature_texts(path)
    assert names == ["x", "y", "z"]
    assert rows == [("a cat, asleep", [1.0, 2.5, -3.0]), ("the dog", [0.0, 0.0, 1000.0])]
    names, rows = read_feature_texts(path, feature_columns=("z", "x"))
    assert names == ["z", "x"] and rows[1][1] == [1000.0, 0.0]
    path.write_text("text,x\nthe dog,big\n")
    with pytest.raises(
        DataError, match=r"f.csv:2: column 'x' holds 'big' \(expected a finite number"
    ):
        read_feature_texts(path)
    with pytest.raises(
        DataError, match=r"no column 'caption' in the header \(columns found: 'text', 'x'"
    ):
        read_feature_texts(path, text_column="caption")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_feature_texts(tmp_path / "f.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,x,x\na,1,2\n", r":1: column 'x' appears twice in the header"),
        ("text\na\n", r":1: no feature columns besides 'text'"),
        ("text,x\na,1,2\n", r":2: row has 3 fields \(expected 2"),
        ("text,x\n ,1\n", r":2: empty text in 'text'"),
        ("text,x\na,nan\n", r":2: column 'x' holds 'nan'"),
        ("text,x\n", r"no rows"),
        ('text,x\n"a,1\n', r"malformed CSV"),
    ],
)
def test_feature_table_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        read_feature_texts(path)
    assert "\n" not in str(caught.value)


def test_feature_tsv_splits_at_tabs_and_keeps_quotes(tmp_path: Path) -> None:
    path = tmp_path / "f.tsv"
    path.write_text('x\ttext\n0.5\tsaid "hi", twice\n\n-1\tbye\n')
    names, rows = read_feature_texts(path)
    assert names == ["x"]
    assert rows == [('said "hi", twice', [0.5]), ("bye", [-1.0])]


def test_conditioned_texts_are_labels_or_vectors(tmp_path: Path) -> None:
    labelled = tmp_path / "l.tsv"
    labelled.write_text("label\ttext\nfresh\tgood\nrotten\tbad\n")
    assert read_conditioned_texts(labelled, "label") == (
        [], [("good", "fresh"), ("bad", "rotten")])  # fmt: skip
    table = tmp_path / "v.csv"
    table.write_text("caption,a,b\nhello,1,2\n")
    assert read_conditioned_texts(table, "vector", text_column="caption") == (
        ["a", "b"], [("hello", [1.0, 2.0])])  # fmt: skip
    with pytest.raises(DataError, match=r"vector conditions: expected an \.npz file"):
        read_conditioned_texts(tmp_path / "v.jsonl", "vector")


def test_auto_conditions_are_vectors_for_npz_files_only() -> None:
    assert condition_kind("auto", ["a.npz", "b.NPZ"]) == "vector"
    assert condition_kind("auto", ["a.npz", "b.csv"]) == "label"
    assert condition_kind("auto", []) == "label"
    assert condition_kind("vector", ["a.csv"]) == "vector"
    assert condition_kind("label", ["a.npz"]) == "label"
