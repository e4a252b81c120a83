"""CoNLL and CoNLL-U tagged sentences, the BIO/BIOES schemes and their conversions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.data.errors import DataError
from rnnkit.data.formats.conll import (
    detect_scheme,
    read_tagged,
    to_bio,
    to_bioes,
    validate,
)
from tests.data.formats.damage import contents, read_or_data_error

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "tagger_wnut16_sample.txt"

CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O
BRUSSELS NNP B-NP B-LOC
"""

CONLLU = """# sent_id = 1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:conj\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = 2
1\tNew York\tNew York\tPROPN\tNNP\t_\t0\troot\t_\t_
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def error_of(path: Path, **options: object) -> str:
    with pytest.raises(DataError) as caught:
        read_tagged(path, **options)  # type: ignore[arg-type]
    return str(caught.value)


def test_conll2003_takes_the_first_and_last_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "train.txt", CONLL2003)
    assert read_tagged(path) == [
        [("EU", "B-ORG"), ("rejects", "O"), ("German", "B-MISC"), ("call", "O")],
        [("Peter", "B-PER"), ("Blackburn", "I-PER")],
        [("BRUSSELS", "B-LOC")],
    ]


def test_other_columns_give_plain_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "train.txt", CONLL2003)
    pos = read_tagged(path, tag_column=1)
    assert pos[0] == [("EU", "NNP"), ("rejects", "VBZ"), ("German", "JJ"), ("call", "NN")]
    assert detect_scheme(pos) is None
    chunks = read_tagged(path, tag_column=2)
    assert chunks[1] == [("Peter", "B-NP"), ("Blackburn", "I-NP")]
    assert detect_scheme(chunks) == "BIO"


def test_conllu_skips_ranges_empty_nodes_and_comments(tmp_path: Path) -> None:
    path = write(tmp_path, "dev.conllu", CONLLU)
    assert read_tagged(path) == [
        [("Do", "AUX"), ("n't", "PART"), ("go", "VERB"), (".", "PUNCT")],
        [("New York", "PROPN")],
    ]
    xpos = read_tagged(path, token_column=2, tag_column=4)
    assert xpos[0] == [("do", "VBP"), ("not", "RB"), ("go", "VB"), (".", ".")]


def test_real_wnut_fixture_with_tab_only_separators() -> None:
    sentences = read_tagged(FIXTURE, comment="# ")
    assert len(sentences) == 12
    assert sentences[0][:3] == [("@paulwalk", "O"), ("It", "O"), ("'s", "O")]
    assert sentences[0][14:17] == [
        ("Empire", "B-facility"),
        ("State", "I-facility"),
        ("Building", "I-facility"),
    ]
    assert sum(len(s) for s in sentences) == 182
    tags = Counter(tag for sentence in sentences for _, tag in sentence)
    assert tags["O"] == 169 and tags["B-facility"] == 2 and tags["I-other"] == 3
    assert ("#photography", "O") in [pair for s in sentences for pair in s]
    assert detect_scheme(sentences) == "BIO"


def test_a_comment_line_the_reader_was_not_told_about_gets_a_hint() -> None:
    assert error_of(FIXTURE) == (
        f"{FIXTURE}:2: line has 2 columns (expected 23 like line 1; "
        "line 1 starts with '#': pass comment='# ' if it is a comment)"
    )


def test_detect_scheme() -> None:
    assert detect_scheme([[("a", "B-X"), ("b", "I-X")], [("c", "O")]]) == "BIO"
    assert detect_scheme([[("a", "S-X"), ("b", "O")]]) == "BIOES"
    assert detect_scheme([[("a", "NOUN"), ("b", "O")]]) is None
    assert detect_scheme([[("a", "O")]]) is None
    # A malformed tag that is meant as one keeps the scheme, so validation refuses it.
    assert detect_scheme([[("a", "B-")]]) == "BIO"
    assert detect_scheme([[("a", "B-X"), ("b", "PER")]]) == "BIO"
    assert detect_scheme([[("a", "B-X"), ("b", "S-")]]) == "BIOES"


@pytest.mark.parametrize(
    ("tags", "scheme", "line", "message"),
    [
        ("O I-PER", None, 4, "tag 'I-PER' after 'O' (BIO: 'I-PER' must follow 'B-PER' or 'I-PER')"),
        (
            "I-PER",
            None,
            3,
            "tag 'I-PER' at the start of a sentence (BIO: 'I-PER' must follow 'B-PER' or 'I-PER')",
        ),
        (
            "B-LOC I-PER",
            None,
            4,
            "tag 'I-PER' after 'B-LOC' (BIO: 'I-PER' must follow 'B-PER' or 'I-PER')",
        ),
        (
            "B-PER O",
            "BIOES",
            4,
            "tag 'O' after 'B-PER' (BIOES: 'B-PER' must be followed by 'I-PER' or 'E-PER')",
        ),
        (
            "O E-PER",
            None,
            4,
            "tag 'E-PER' after 'O' (BIOES: 'E-PER' must follow 'B-PER' or 'I-PER')",
        ),
        (
            "S-PER B-PER I-PER",
            None,
            5,
            "sentence ends after 'I-PER' (BIOES: 'I-PER' must be followed by 'I-PER' or 'E-PER')",
        ),
        ("B-PER PER", "BIO", 4, "tag 'PER' is not a BIO tag (expected O, B-TYPE or I-TYPE)"),
        ("S-PER", "BIO", 3, "tag 'S-PER' is not a BIO tag (expected O, B-TYPE or I-TYPE)"),
    ],
)
def test_a_broken_scheme_names_the_line_and_the_tag(
    tmp_path: Path, tags: str, scheme: str | None, line: int, message: str
) -> None:
    rows = "".join(f"w{i}\t{tag}\n" for i, tag in enumerate(tags.split()))
    path = write(tmp_path, "t.txt", "ok\tO\n\n" + rows)
    options = {} if scheme is None else {"scheme": scheme}
    assert error_of(path, **options) == f"{path}:{line}: {message}"


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        (
            "a\tB-PER\nb\tI-PER\n\nc\tB-\n",
            4,
            "tag 'B-' is not a BIO tag (expected O, B-TYPE or I-TYPE; "
            "the file is read as BIO because of 'B-PER' on line 1)",
        ),
        (
            "a\tO\nb\tPER\nc\tB-LOC\n",
            2,
            "tag 'PER' is not a BIO tag (expected O, B-TYPE or I-TYPE; "
            "the file is read as BIO because of 'B-LOC' on line 3)",
        ),
        (
            "a\tS-LOC\nb\tB-\nc\tE-LOC\n",
            2,
            "tag 'B-' is not a BIOES tag (expected O, B-, I-, E- or S-TYPE; "
            "the file is read as BIOES because of 'S-LOC' on line 1)",
        ),
        # No well-formed tag to point at: the message says only what is wrong.
        ("a\tO\nb\tI-\n", 2, "tag 'I-' is not a BIO tag (expected O, B-TYPE or I-TYPE)"),
    ],
)
def test_a_malformed_tag_is_an_error_not_a_switch_to_plain_labels(
    tmp_path: Path, rows: str, line: int, message: str
) -> None:
    path = write(tmp_path, "t.txt", rows)
    assert error_of(path) == f"{path}:{line}: {message}"
    assert read_tagged(path, scheme=None)  # asked for plain labels: read as they are


def test_plain_labels_stay_unchecked(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "a\tNOUN\nb\tO\nc\tB\nd\tI\n")
    assert read_tagged(path) == [[("a", "NOUN"), ("b", "O"), ("c", "B"), ("d", "I")]]


_MALFORMED = st.sampled_from(["B-", "I-", "PER", "b-PER", "B_PER", "BPER", "O-PER", "B"])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # one file, rewritten
@given(
    types=st.lists(st.sampled_from(["O", "B-PER", "B-LOC"]), min_size=1, max_size=8),
    at=st.integers(0, 8),
    bad=_MALFORMED,
)
def test_one_malformed_tag_anywhere_names_its_line(
    tmp_path: Path, types: list[str], at: int, bad: str
) -> None:
    # Valid BIO: each B- may be followed by its I-; then one tag is replaced by a bad one.
    tags = [t for kind in types for t in ([kind] if kind == "O" else [kind, "I" + kind[1:]])]
    tags = ["B-ORG", *tags]  # the file is BIO whichever tag is replaced
    at = 1 + at % (len(tags) - 1)
    tags[at] = bad
    path = write(tmp_path, "t.txt", "".join(f"w{i}\t{tag}\n" for i, tag in enumerate(tags)))
    message = error_of(path)
    assert message.startswith(f"{path}:{at + 1}: tag {bad!r} is not a BIO tag")
    assert message.endswith("because of 'B-ORG' on line 1)")


def test_scheme_none_reads_any_tags(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "a\tI-PER\nb\tB-X\n")
    assert read_tagged(path, scheme=None) == [[("a", "I-PER"), ("b", "B-X")]]


def test_validate_in_memory_names_sentence_and_token() -> None:
    validate([[("a", "B-X"), ("b", "I-X")]], "BIO")
    with pytest.raises(DataError) as caught:
        validate([[("a", "O")], [("b", "B-X"), ("c", "I-Y")]], "BIO", path="p.txt")
    assert str(caught.value) == (
        "p.txt: sentence 2, token 2: tag 'I-Y' after 'B-X' (BIO: 'I-Y' must follow 'B-Y' or 'I-Y')"
    )


def test_to_bioes_and_back() -> None:
    bio = [
        [("a", "B-PER"), ("b", "I-PER"), ("c", "I-PER"), ("d", "O"), ("e", "B-LOC")],
        [("f", "B-X"), ("g", "B-X"), ("h", "I-X")],
    ]
    bioes = [
        [("a", "B-PER"), ("b", "I-PER"), ("c", "E-PER"), ("d", "O"), ("e", "S-LOC")],
        [("f", "S-X"), ("g", "B-X"), ("h", "E-X")],
    ]
    assert to_bioes(bio) == bioes
    assert to_bio(bioes) == bio


def test_conversions_refuse_the_other_scheme() -> None:
    with pytest.raises(DataError, match=r"sentence 1, token 1: tag 'S-X' is not a BIO tag"):
        to_bioes([[("a", "S-X")]])
    with pytest.raises(DataError, match=r"sentence 1, token 1: sentence ends after 'B-X'"):
        to_bio([[("a", "B-X")]])


@st.composite
def bio_sentences(draw: st.DrawFn) -> list[list[tuple[str, str]]]:
    """Valid BIO: each entity a B- then I-s of its type, with O between some."""
    sentences = []
    for _ in range(draw(st.integers(1, 4))):
        tags: list[str] = []
        for _ in range(draw(st.integers(1, 6))):
            kind = draw(st.sampled_from(["O", "PER", "LOC", "misc-x"]))
            if kind == "O":
                tags.append("O")
            else:
                tags += [f"B-{kind}"] + [f"I-{kind}"] * draw(st.integers(0, 3))
        sentences.append([(f"w{i}", tag) for i, tag in enumerate(tags)])
    return sentences


@given(bio_sentences())
def test_round_trips(sentences: list[list[tuple[str, str]]]) -> None:
    validate(sentences, "BIO")
    bioes = to_bioes(sentences)
    validate(bioes, "BIOES")
    assert to_bio(bioes) == sentences
    assert to_bioes(to_bio(bioes)) == bioes
    entities = sum(tag.startswith("B-") for s in sentences for _, tag in s)
    assert sum(tag[0] in "BS" for s in bioes for _, tag in s) == entities


def test_max_length_refuses_or_truncates_and_closes_bioes_entities(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "a\tO\n\nb\tB-X\nc\tI-X\nd\tE-X\n")
    assert error_of(path, max_length=2) == (
        f"{path}:3: sentence of length 3 is longer than max_length=2 "
        "(expected at most max_length; pass on_long='truncate' to cut it)"
    )
    cut = read_tagged(path, max_length=2, on_long="truncate")
    assert cut == [[("a", "O")], [("b", "B-X"), ("c", "E-X")]]
    assert read_tagged(path, max_length=1, on_long="truncate")[1] == [("b", "S-X")]


def test_ragged_and_empty_columns(tmp_path: Path) -> None:
    ragged = write(tmp_path, "r.txt", "a NN O\nb NN\n")
    assert error_of(ragged) == f"{ragged}:2: line has 2 columns (expected 3 like line 1)"
    empty = write(tmp_path, "e.txt", "a\tNN\tO\nb\t\tO\n")
    assert error_of(empty) == f"{empty}:2: column 2 is empty (expected a value in every column)"


def test_column_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "\n\na\tO\n")
    assert error_of(path, tag_column=3) == (
        f"{path}:3: tag_column=3 but the line has 2 columns (expected at least 4)"
    )
    assert error_of(path, token_column=-3).startswith(
        f"{path}:3: token_column=-3 but the line has 2 columns (expected at least 3)"
    )


def test_conllu_errors(tmp_path: Path) -> None:
    short = write(tmp_path, "a.conllu", "# c\n1\tword\t_\tNOUN\n")
    assert error_of(short) == (
        f"{short}:2: line has 4 tab-separated columns (expected 10 in CoNLL-U)"
    )
    bad_id = write(tmp_path, "b.conllu", "x\tw\t_\tNOUN\t_\t_\t_\t_\t_\t_\n")
    assert error_of(bad_id) == (
        f"{bad_id}:1: ID 'x' is not a word index "
        "(expected 1, 2, …, a range like 1-2 or an empty node like 1.1)"
    )
    no_tag = write(tmp_path, "c.conllu", "1\tw\t_\t\t_\t_\t_\t_\t_\t_\n")
    assert error_of(no_tag) == (
        f"{no_tag}:1: empty tag column (expected a value, or '_' where it is unknown)"
    )


def test_no_sentences_and_not_utf8(tmp_path: Path) -> None:
    only_docstart = write(tmp_path, "d.txt", "-DOCSTART- O\n\n\t\n")
    assert error_of(only_docstart) == (
        f"{only_docstart}: no sentences (expected token lines, with a blank line between sentences)"
    )
    latin = tmp_path / "l.txt"
    latin.write_bytes(b"a\tO\n\xe9t\xe9\tO\n")
    assert error_of(latin).startswith(f"{latin}:2: not UTF-8: byte 0xe9 at byte offset 4")


VALID = {
    "t.txt": CONLL2003.encode(),
    "t.conllu": CONLLU.encode(),
    "w.txt": b"a\tB-X\nb\tI-X\n\t\nc\tS-Y\n",
}


@pytest.mark.parametrize("name", list(VALID))
@given(data=st.data())
def test_only_data_error_escapes(name: str, data: st.DataObject) -> None:
    content = data.draw(contents(VALID[name]))
    result = read_or_data_error(
        lambda p: (read_tagged(p), read_tagged(p, max_length=3, on_long="truncate")), content, name
    )
    if result is not None:
        whole, cut = result
        assert [[t for t, _ in s[:3]] for s in whole] == [[t for t, _ in s] for s in cut]
        assert all(1 <= len(s) <= 3 for s in cut)
        scheme = detect_scheme(whole)
        if scheme is not None:
            validate(whole, scheme)
            validate(cut, scheme)
