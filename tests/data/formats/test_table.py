"""Labelled texts from CSV, TSV and JSONL: exact values, each error, damaged input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.errors import DataError
from rnnkit.data.formats.table import read_labelled_texts
from tests.data.formats.damage import contents, read_or_data_error

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "models_rotten_tomatoes_sample.tsv"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def error_of(path: Path, **options: object) -> str:
    with pytest.raises(DataError) as caught:
        read_labelled_texts(path, **options)  # type: ignore[arg-type]
    return str(caught.value)


def test_csv_with_quotes_commas_newlines_and_crlf(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "reviews.csv",
        'id,text,label\r\n1,"Good, really good",pos\r\n\r\n'
        '2,"She said ""no""\r\nand left", neg \r\n3,  plain  ,pos\r\n',
    )
    assert read_labelled_texts(path) == [
        ("Good, really good", "pos"),
        ('She said "no"\r\nand left', "neg"),
        ("plain", "pos"),
    ]


def test_columns_named_by_arguments(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "sentiment,review\n1,fine film\n0,dull\n")
    pairs = read_labelled_texts(path, text_column="review", label_column="sentiment")
    assert pairs == [("fine film", "1"), ("dull", "0")]


def test_csv_comments_only_where_a_row_starts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.csv",
        '# provenance\ntext,label\n"first line\n# not a comment",a\n# a comment\nlast,b\n',
    )
    assert read_labelled_texts(path, comment="#") == [
        ("first line\n# not a comment", "a"),
        ("last", "b"),
    ]


def test_tsv_keeps_quotes_as_characters(tmp_path: Path) -> None:
    path = write(tmp_path, "r.tsv", 'label\ttext\npos\t"Great" film\nneg\tit\'s "meh\n')
    assert read_labelled_texts(path) == [('"Great" film', "pos"), ("it's \"meh", "neg")]


def test_jsonl_with_integer_labels_and_unicode(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.jsonl",
        '{"text": "très bien", "label": 1, "extra": null}\n\n{"label": "0", "text": "nul"}\n',
    )
    assert read_labelled_texts(path) == [("très bien", "1"), ("nul", "0")]


def test_format_argument_overrides_the_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", "text\tlabel\nhello\tx\n")
    assert read_labelled_texts(path, format="tsv") == [("hello", "x")]


def test_real_fixture_with_its_comment_line() -> None:
    pairs = read_labelled_texts(FIXTURE, comment="# ")
    assert len(pairs) == 16
    assert pairs[0] == ("A three-hour cinema master class.", "fresh")
    assert pairs[1] == ("These are textbook lives of quiet desperation.", "rotten")
    assert Counter(label for _, label in pairs) == {"fresh": 8, "rotten": 8}


def test_max_length_refuses_or_truncates(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "text,label\nshort,a\nmuch longer,b\n")
    assert error_of(path, max_length=6) == (
        f"{path}:3: text of length 11 is longer than max_length=6 "
        "(expected at most max_length; pass on_long='truncate' to cut it)"
    )
    truncated = read_labelled_texts(path, max_length=6, on_long="truncate")
    assert truncated == [("short", "a"), ("much l", "b")]


def test_missing_column_lists_the_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "review,sentiment\nok,1\n")
    assert error_of(path) == (
        f"{path}:1: no column 'text' in the header (columns found: 'review', 'sentiment'; "
        "pass text_column= and label_column= to name others)"
    )


def test_a_comment_header_gets_a_hint() -> None:
    message = error_of(FIXTURE)
    assert message.startswith(f"{FIXTURE}:1: no column 'text' in the header")
    assert message.endswith("; line 1 starts with '#': pass comment='#' if it is a comment)")


def test_ragged_row_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.tsv", "text\tlabel\na\tb\nc\td\textra\n")
    assert error_of(path) == f"{path}:3: row has 3 fields (expected 2 like the header on line 1)"


def test_malformed_csv_quote_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", 'text,label\nfine,a\n"bad"quote,b\n')
    message = error_of(path)
    assert message.startswith(f"{path}:3: malformed CSV: ")
    assert message.endswith(
        '(expected comma-separated fields, quoted as "…" where they '
        "hold a comma, a quote or a newline)"
    )


def test_unterminated_quote_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", 'text,label\n"never closed,a\nmore,b\n')
    assert error_of(path).startswith(f"{path}:3: malformed CSV: unexpected end of data")


def test_duplicate_header(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "text,label,text\na,b,c\n")
    assert error_of(path) == (
        f"{path}:1: column 'text' appears twice in the header (expected unique column names)"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "a", "label": "b"', "invalid JSON: "),
        ('["a", "b"]', "a JSON list (expected one JSON object per line)"),
        ('{"txt": "a", "label": "b"}', "no key 'text' (keys found: 'txt', 'label'; "),
        ('{"text": 3, "label": "b"}', "'text' is a JSON number (expected a string)"),
        ('{"text": "a", "label": true}', "'label' is a JSON boolean (expected a string or"),
        ('{"text": "a", "label": [1]}', "'label' is a JSON array (expected a string or"),
        ("[" * 5000, "invalid JSON: "),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, "r.jsonl", '{"text": "fine", "label": "x"}\n' + line + "\n")
    assert error_of(path).startswith(f"{path}:2: {message}")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (" ,pos", "empty text in 'text' (expected some text)"),
        ("words,  ", "empty label in 'label' (expected a class name)"),
    ],
)
def test_empty_text_or_label(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path, "r.csv", f"text,label\n{row}\n")
    assert error_of(path) == f"{path}:2: {message}"


def test_header_only_unknown_extension_and_encoding(tmp_path: Path) -> None:
    header_only = write(tmp_path, "r.csv", "text,label\n\n")
    assert error_of(header_only) == (
        f"{header_only}: no rows (expected rows of 'text' and 'label')"
    )
    unknown = write(tmp_path, "r.xlsx", "text,label\n")
    assert error_of(unknown) == (
        f"{unknown}: cannot tell the format from the extension '.xlsx' "
        "(expected .csv, .tsv, .tab, .jsonl or .ndjson, or pass format=)"
    )
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(b"text\tlabel\nna\xefve\tx\n")
    assert error_of(latin) == (
        f"{latin}:2: not UTF-8: byte 0xef at byte offset 13 "
        "(expected UTF-8 text; re-save the file as UTF-8)"
    )


VALID = {
    "csv": b'text,label\n"a, b",x\nplain,y\n',
    "tsv": b"label\ttext\nx\tsome words\ny\tmore\n",
    "jsonl": b'{"text": "a", "label": 1}\n{"text": "b", "label": "y"}\n',
}


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl"])
@given(data=st.data())
def test_only_data_error_escapes(kind: str, data: st.DataObject) -> None:
    content = data.draw(contents(VALID[kind]))
    result = read_or_data_error(
        lambda p: read_labelled_texts(p, comment="#"), content, f"input.{kind}"
    )
    if result is not None:
        assert isinstance(result, list) and result
        assert all(text.strip() and label.strip() for text, label in result)
