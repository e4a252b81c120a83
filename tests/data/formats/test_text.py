"""Language-model text from a file or a folder of ``*.txt`` files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given

from rnnkit.data.errors import DataError
from rnnkit.data.formats.text import read_text
from tests.data.formats.damage import contents, read_or_data_error


def test_a_file_as_written_with_crlf_and_bom_normalised(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"\xef\xbb\xbfFirst line\r\nZweite \xc3\x9feile\n\nthird\r")
    assert read_text(path) == "First line\nZweite ßeile\n\nthird\r"


def test_any_extension_is_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "song.abc"
    path.write_text("X:1\nK:G\n", encoding="utf-8")
    assert read_text(path) == "X:1\nK:G\n"


def test_a_folder_joins_its_txt_files_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("bee", encoding="utf-8")
    (tmp_path / "a.txt").write_text("ay\n", encoding="utf-8")
    (tmp_path / "C.txt").write_text("sea", encoding="utf-8")
    (tmp_path / "notes.md").write_text("skipped", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "0.txt").write_text("skipped too", encoding="utf-8")
    (tmp_path / "dir.txt").mkdir()
    assert read_text(tmp_path) == "sea\nay\n\nbee"


def test_a_folder_without_txt_files(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_text(tmp_path)
    assert str(caught.value) == f"{tmp_path}: folder has no *.txt files (expected UTF-8 text files)"


def test_a_bad_file_in_a_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"one\ntwo \x80\n")
    with pytest.raises(DataError) as caught:
        read_text(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'b.txt'}:2: not UTF-8: byte 0x80 at byte offset 8 "
        "(expected UTF-8 text; re-save the file as UTF-8)"
    )
    (tmp_path / "b.txt").write_bytes(b"")
    with pytest.raises(DataError) as caught:
        read_text(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'b.txt'}: empty file (expected UTF-8 text)"


def test_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        read_text(tmp_path / "nope.txt")
    assert str(caught.value) == f"{tmp_path / 'nope.txt'}: no such file (expected a readable file)"


@given(contents(b"To be, or not to be:\nthat is the question.\n"))
def test_only_data_error_escapes(content: bytes) -> None:
    result = read_or_data_error(read_text, content, "input.txt")
    if result is not None:
        assert result == content.decode("utf-8").removeprefix("\ufeff").replace("\r\n", "\n")
