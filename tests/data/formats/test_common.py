"""What the readers share: UTF-8 decoding, line splitting, length limits, unseen labels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rnnkit.data import formats
from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import (
    check_labels_seen,
    check_limit_arguments,
    kept_length,
    read_utf8,
    split_lines,
)


def test_read_utf8_drops_the_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9\n")
    assert read_utf8(path, expected="text") == "café\n"


def test_read_utf8_names_the_line_and_offset_of_a_latin1_byte(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"ok\nfine\ncaf\xe9\n")  # Latin-1 é on line 3, byte offset 11
    with pytest.raises(DataError) as caught:
        read_utf8(path, expected="text")
    assert str(caught.value) == (
        f"{path}:3: not UTF-8: byte 0xe9 at byte offset 11 "
        "(expected UTF-8 text; re-save the file as UTF-8)"
    )
    assert caught.value.path == path and caught.value.line == 3


def test_read_utf8_recognises_utf16(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("text".encode("utf-16"))
    with pytest.raises(DataError, match="it starts with a UTF-16 byte-order mark"):
        read_utf8(path, expected="text")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "empty file (expected some rows)"),
        (lambda p: p.mkdir(), "is a folder (expected a file)"),
        (lambda p: None, "no such file (expected a readable file)"),
    ],
)
def test_read_utf8_refuses_empty_folders_and_missing_files(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "a.csv"
    make(path)
    with pytest.raises(DataError) as caught:
        read_utf8(path, expected="some rows")
    assert str(caught.value) == f"{path}: {message}"


def test_split_lines_counts_newlines_and_drops_carriage_returns() -> None:
    assert split_lines("a\r\nb\n\nc\rd") == ["a", "b", "", "c\rd"]
    assert split_lines("a\n") == ["a", ""]


def test_kept_length_keeps_cuts_or_refuses() -> None:
    assert kept_length(5, None, "error", what="text", path="f", line=1) == 5
    assert kept_length(5, 5, "error", what="text", path="f", line=1) == 5
    assert kept_length(9, 5, "truncate", what="text", path="f", line=1) == 5
    with pytest.raises(DataError) as caught:
        kept_length(9, 5, "error", what="sentence", path="f.txt", line=7)
    assert str(caught.value) == (
        "f.txt:7: sentence of length 9 is longer than max_length=5 "
        "(expected at most max_length; pass on_long='truncate' to cut it)"
    )


@pytest.mark.parametrize(
    ("max_length", "on_long", "message"),
    [
        (0, "error", "max_length: expected an int ≥ 1 or None, got 0"),
        (True, "error", "max_length: expected an int ≥ 1 or None, got True"),
        (3, "cut", "on_long: expected 'error' or 'truncate', got 'cut'"),
    ],
)
def test_limit_arguments_are_checked(max_length: int, on_long: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_limit_arguments(max_length, on_long)


def test_check_labels_seen_passes_known_labels() -> None:
    check_labels_seen(["pos", "neg", "pos"], ["neg", "pos"], "test.csv")
    check_labels_seen(["pos"], [], "test.csv")


def test_check_labels_seen_names_the_unseen_labels_and_the_first_example() -> None:
    with pytest.raises(DataError) as caught:
        check_labels_seen(["pos", "neg"], ["pos", "neutral", "neg", "mixed"], "test.csv")
    assert str(caught.value) == (
        "test.csv: labels 'mixed', 'neutral' never seen in training (first at example 2; "
        "expected one of the training labels: 'neg', 'pos')"
    )
    assert caught.value.path == Path("test.csv")


def test_check_labels_seen_shortens_long_lists() -> None:
    with pytest.raises(DataError) as caught:
        check_labels_seen([f"c{i:02d}" for i in range(12)], ["new"], "dev.tsv")
    assert str(caught.value) == (
        "dev.tsv: label 'new' never seen in training (first at example 1; expected one of the "
        "training labels: 'c00', 'c01', 'c02', 'c03', 'c04', 'c05', 'c06', 'c07', … (4 more))"
    )


READERS: list[tuple[Callable[[Path], object], str]] = [
    (formats.read_labelled_texts, "t.csv"),
    (formats.read_labelled_texts, "t.jsonl"),
    (formats.read_tagged, "t.conll"),
    (formats.read_tagged, "t.conllu"),
    (formats.read_text, "t.txt"),
    (formats.read_series, "t.csv"),
    (formats.read_pairs, "t.tsv"),
    (formats.read_ts, "t.ts"),
    (formats.read_npz_sequences, "t.npz"),
]


@pytest.mark.parametrize(("reader", "name"), READERS)
def test_every_reader_refuses_an_empty_file(
    tmp_path: Path, reader: Callable[[Path], object], name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(DataError) as caught:
        reader(path)
    assert str(caught.value).startswith(f"{path}: empty file (expected ")
    assert caught.value.line is None


@pytest.mark.parametrize(("reader", "name"), READERS[:-1])
def test_every_text_reader_names_the_line_of_a_non_utf8_byte(
    tmp_path: Path, reader: Callable[[Path], object], name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"fine\n\x93quoted\x94\n")  # Windows-1252 curly quotes
    with pytest.raises(DataError) as caught:
        reader(path)
    assert str(caught.value) == (
        f"{path}:2: not UTF-8: byte 0x93 at byte offset 5 "
        "(expected UTF-8 text; re-save the file as UTF-8)"
    )


def test_the_package_exports_every_reader() -> None:
    assert all(callable(getattr(formats, name)) for name in formats.__all__)
    assert formats.read_tagged.__module__ == "rnnkit.data.formats.conll"
