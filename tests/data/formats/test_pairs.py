"""Sequence-to-sequence ``source TAB target`` pairs and the unit splitter."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given

from rnnkit.data.errors import DataError
from rnnkit.data.formats.pairs import read_pairs, split_units
from tests.data.formats.damage import contents, read_or_data_error


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.tsv"
    path.write_bytes(text.encode("utf-8"))
    return path


def error_of(path: Path, **options: object) -> str:
    with pytest.raises(DataError) as caught:
        read_pairs(path, **options)  # type: ignore[arg-type]
    return str(caught.value)


def test_pairs_in_order_stripped_with_blank_and_comment_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "# en-fr\nhello\tbonjour\r\n\n  good night \t bonne nuit\n")
    assert read_pairs(path, comment="#") == [("hello", "bonjour"), ("good night", "bonne nuit")]


def test_a_grapheme_to_phoneme_pair(tmp_path: Path) -> None:
    path = write(tmp_path, "arjun\tAA1 R JH AH0 N\n")
    [(source, target)] = read_pairs(path)
    assert split_units(source, "char") == ["a", "r", "j", "u", "n"]
    assert split_units(target, "word") == ["AA1", "R", "JH", "AH0", "N"]


def test_split_units() -> None:
    assert split_units("a b", "char") == ["a", " ", "b"]
    assert split_units("  two\twords \n", "word") == ["two", "words"]
    assert split_units("", "word") == []
    with pytest.raises(ValueError, match="level: expected 'char' or 'word', got 'byte'"):
        split_units("x", "byte")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a\tb\nno tab here\n",
            "2: line has 1 tab-separated fields (expected 2: source TAB target)",
        ),
        ("a\tb\tc\n", "1: line has 3 tab-separated fields (expected 2: source TAB target)"),
        ("a\tb\n\n \tb\n", "3: empty source (expected source TAB target)"),
        ("a\t  \n", "1: empty target (expected source TAB target)"),
    ],
)
def test_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}:{message}"


def test_no_pairs_and_max_length(tmp_path: Path) -> None:
    empty = write(tmp_path, "\n# only a comment\n")
    assert error_of(empty, comment="#") == f"{empty}: no pairs (expected source TAB target lines)"
    long = write(tmp_path, "ab\tcd\nabc\tabcdef\n")
    assert error_of(long, max_length=4) == (
        f"{long}:2: target of length 6 is longer than max_length=4 "
        "(expected at most max_length; pass on_long='truncate' to cut it)"
    )
    assert read_pairs(long, max_length=2, on_long="truncate") == [("ab", "cd"), ("ab", "ab")]


@given(contents(b"hello\tbonjour\nthank you\tmerci\n"))
def test_only_data_error_escapes(content: bytes) -> None:
    result = read_or_data_error(read_pairs, content, "input.tsv")
    if result is not None:
        assert isinstance(result, list) and result
        assert all(s and t and "\t" not in s + t for s, t in result)
