"""Tagged sentences from CoNLL and CoNLL-U files, and the BIO/BIOES tag schemes.

* CoNLL: one token per line in columns split at tabs (when the line has one) or
  at spaces; a blank line (spaces and tabs only) ends a sentence and
  ``-DOCSTART-`` lines are skipped. Every token line has the same number of
  columns. By default the token is the first column and the tag the last.
* CoNLL-U: ten tab-separated columns; ``#`` lines are comments; multi-word token
  ranges (``1-2``) and empty nodes (``1.1``) are skipped, since their words are
  also given one by one. By default the token is FORM and the tag UPOS.

Columns are Python indices: 0 is the first, -1 the last (CoNLL-U's FORM is 1,
UPOS 3, XPOS 4). With ``comment`` set, CoNLL lines that start with it are skipped;
tokens can start with ``#`` (hashtags), so prefer a prefix no token line has,
such as ``"# "`` in a tab-separated file.

Tag schemes: BIO tags are ``O``, ``B-TYPE`` (an entity begins) and ``I-TYPE``
(it goes on; it must follow ``B-TYPE`` or ``I-TYPE``). BIOES adds ``E-TYPE``
(the last token of a longer entity) and ``S-TYPE`` (a one-token entity), so ``B``
and ``I`` must be followed by ``I`` or ``E`` of the same type. Tag sets in neither
scheme (part-of-speech tags, say) are plain labels and are not checked.

One tag that looks like a scheme's (``B-``, ``I-``, ``E-`` or ``S-`` at its start)
puts the whole file in that scheme, so a malformed tag (``B-`` with no type, ``PER``
without its prefix) is an error at its line; it never turns the checks off.
conlleval and seqeval's default mode would read ``B-`` as an entity of an empty
type and score it silently; seqeval's strict mode refuses it, as we do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import (
    OnLong,
    check_limit_arguments,
    comment_hint,
    kept_length,
    read_utf8,
    split_lines,
)

Scheme = Literal["BIO", "BIOES"]
ConllFormat = Literal["conll", "conllu"]

_TAG = re.compile(r"([BIES])-(.+)", re.DOTALL)
_SCHEME_LIKE = re.compile(r"([BIES])-", re.DOTALL)  # well-formed or not: it is meant as a tag
_WORD_ID = re.compile(r"[0-9]+")
_SKIPPED_ID = re.compile(r"[0-9]+-[0-9]+|[0-9]+\.[0-9]+")
_CONLLU_COLUMNS = 10

# A sentence as read, with the file line of each token (for messages).
_Numbered = tuple[list[tuple[str, str]], list[int]]


def read_tagged(
    path: Path | str,
    *,
    token_column: int | None = None,
    tag_column: int | None = None,
    format: ConllFormat | None = None,
    scheme: Scheme | Literal["detect"] | None = "detect",
    comment: str | None = None,
    max_length: int | None = None,
    on_long: OnLong = "error",
) -> list[list[tuple[str, str]]]:
    """Sentences as lists of ``(token, tag)``.

    Args:
        path: the file; ``.conllu`` means CoNLL-U, any other extension CoNLL.
        token_column, tag_column: column indices (see the module docstring).
        format: overrides the format the extension implies.
        scheme: ``"detect"`` checks the tags against the scheme
            :func:`detect_scheme` finds; ``"BIO"``/``"BIOES"`` insist on that
            scheme; None checks nothing. A broken tag is a DataError at its line.
        comment: a prefix of CoNLL lines to skip; None skips none.
        max_length: the most tokens a sentence may have; a longer one is an error
            or, with ``on_long='truncate'``, cut (in BIOES, an entity cut open is
            closed, so the result stays valid).
    """
    check_limit_arguments(max_length, on_long)
    if scheme not in ("detect", "BIO", "BIOES", None):
        raise ValueError(f"scheme: expected 'detect', 'BIO', 'BIOES' or None, got {scheme!r}")
    kind = _format_of(path, format)
    text = read_utf8(path, expected="token lines with a blank line between sentences")
    lines = split_lines(text)
    if kind == "conllu":
        numbered = _read_conllu(lines, path, _default(token_column, 1), _default(tag_column, 3))
    else:
        numbered = _read_conll(
            lines, path, _default(token_column, 0), _default(tag_column, -1), comment
        )
    if not numbered:
        raise DataError(
            "no sentences (expected token lines, with a blank line between sentences)", path=path
        )
    sentences = [tokens for tokens, _ in numbered]
    chosen = detect_scheme(sentences) if scheme == "detect" else scheme
    if chosen is not None:
        for tokens, numbers in numbered:
            found = _violation([tag for _, tag in tokens], chosen)
            if found is not None:
                message = found[1]
                if scheme == "detect" and _split(tokens[found[0]][1]) is None:
                    message = message[:-1] + _why_scheme(numbered, chosen)
                raise DataError(message, path=path, line=numbers[found[0]])
    kept: list[list[tuple[str, str]]] = []
    for tokens, numbers in numbered:
        keep = kept_length(
            len(tokens), max_length, on_long, what="sentence", path=path, line=numbers[0]
        )
        sentence = tokens[:keep]
        if keep < len(tokens) and chosen == "BIOES":
            sentence[-1] = (sentence[-1][0], _closed(sentence[-1][1]))
        kept.append(sentence)
    return kept


def _default(column: int | None, default: int) -> int:
    if column is None:
        return default
    if isinstance(column, bool) or not isinstance(column, int):
        raise ValueError(f"column: expected an int index or None, got {column!r}")
    return column


def _format_of(path: Path | str, format: ConllFormat | None) -> ConllFormat:
    if format is None:
        return "conllu" if Path(path).suffix.lower() == ".conllu" else "conll"
    if format not in ("conll", "conllu"):
        raise ValueError(f"format: expected 'conll', 'conllu' or None, got {format!r}")
    return format


def _check_column(name: str, index: int, width: int, path: Path | str, line: int) -> None:
    if not -width <= index < width:
        needed = index + 1 if index >= 0 else -index
        raise DataError(
            f"{name}={index} but the line has {width} columns (expected at least {needed})",
            path=path,
            line=line,
        )


def _read_conll(
    lines: list[str], path: Path | str, token_column: int, tag_column: int, comment: str | None
) -> list[_Numbered]:
    sentences: list[_Numbered] = []
    tokens: list[tuple[str, str]] = []
    numbers: list[int] = []
    width, width_line = 0, 0
    for number, line in enumerate(lines, start=1):
        if comment and line.startswith(comment):
            continue
        if line.strip():
            if "\t" in line:
                fields = [field.strip(" ") for field in line.split("\t")]
            else:
                fields = [field for field in line.split(" ") if field]
            if fields[0] != "-DOCSTART-":
                if not width:
                    width, width_line = len(fields), number
                    _check_column("token_column", token_column, width, path, number)
                    _check_column("tag_column", tag_column, width, path, number)
                elif len(fields) != width:
                    raise DataError(
                        f"line has {len(fields)} columns (expected {width} like line {width_line}"
                        f"{comment_hint(lines[width_line - 1], width_line, '# ')})",
                        path=path,
                        line=number,
                    )
                if "" in fields:
                    raise DataError(
                        f"column {fields.index('') + 1} is empty "
                        "(expected a value in every column)",
                        path=path,
                        line=number,
                    )
                tokens.append((fields[token_column], fields[tag_column]))
                numbers.append(number)
                continue
        # A blank or -DOCSTART- line ends the sentence in progress.
        if tokens:
            sentences.append((tokens, numbers))
            tokens, numbers = [], []
    if tokens:
        sentences.append((tokens, numbers))
    return sentences


def _read_conllu(
    lines: list[str], path: Path | str, token_column: int, tag_column: int
) -> list[_Numbered]:
    sentences: list[_Numbered] = []
    tokens: list[tuple[str, str]] = []
    numbers: list[int] = []
    for number, line in enumerate(lines, start=1):
        if line.startswith("#"):
            continue
        if not line.strip():
            if tokens:
                sentences.append((tokens, numbers))
                tokens, numbers = [], []
            continue
        fields = line.split("\t")
        if len(fields) != _CONLLU_COLUMNS:
            raise DataError(
                f"line has {len(fields)} tab-separated columns "
                f"(expected {_CONLLU_COLUMNS} in CoNLL-U)",
                path=path,
                line=number,
            )
        if _SKIPPED_ID.fullmatch(fields[0]):
            continue
        if not _WORD_ID.fullmatch(fields[0]):
            raise DataError(
                f"ID {fields[0]!r} is not a word index "
                "(expected 1, 2, …, a range like 1-2 or an empty node like 1.1)",
                path=path,
                line=number,
            )
        _check_column("token_column", token_column, _CONLLU_COLUMNS, path, number)
        _check_column("tag_column", tag_column, _CONLLU_COLUMNS, path, number)
        token, tag = fields[token_column], fields[tag_column]
        for name, value in (("token", token), ("tag", tag)):
            if not value.strip():
                raise DataError(
                    f"empty {name} column (expected a value, or '_' where it is unknown)",
                    path=path,
                    line=number,
                )
        tokens.append((token, tag))
        numbers.append(number)
    if tokens:
        sentences.append((tokens, numbers))
    return sentences


def _split(tag: str) -> tuple[str, str] | None:
    """``("O", "")``, ``(prefix, type)`` for a prefixed tag, or None for anything else."""
    if tag == "O":
        return "O", ""
    match = _TAG.fullmatch(tag)
    return None if match is None else (match.group(1), match.group(2))


def detect_scheme(sentences: Sequence[Sequence[tuple[str, str]]]) -> Scheme | None:
    """``"BIOES"`` if some tag starts with ``E-`` or ``S-``, ``"BIO"`` if some start
    with ``B-`` or ``I-`` and none with those, otherwise None (plain labels).

    Only the tags' form is looked at, and a malformed tag (``B-``, ``PER``) does not
    change the answer: :func:`validate` then refuses it, with their order.
    """
    prefixes = {
        match.group(1)
        for sentence in sentences
        for _, tag in sentence
        if (match := _SCHEME_LIKE.match(tag)) is not None
    }
    if not prefixes:
        return None
    return "BIOES" if prefixes & {"E", "S"} else "BIO"


def _why_scheme(numbered: list[_Numbered], scheme: Scheme) -> str:
    """The end of a message about a detected scheme: which tag put the file in it."""
    for tokens, numbers in numbered:
        for (_, tag), number in zip(tokens, numbers, strict=True):
            part = _split(tag)
            if part is not None and part[0] != "O" and (scheme == "BIO" or part[0] in "ES"):
                return f"; the file is read as {scheme} because of {tag!r} on line {number})"
    return ")"


def _violation(tags: Sequence[str], scheme: Scheme) -> tuple[int, str] | None:
    """The index of the first tag that breaks ``scheme`` and what is wrong, or None."""
    allowed = {"O", "B", "I"} if scheme == "BIO" else {"O", "B", "I", "E", "S"}
    expected = "O, B-TYPE or I-TYPE" if scheme == "BIO" else "O, B-, I-, E- or S-TYPE"
    open_type: str | None = None  # the entity type a B-/I- tag left open
    for i, tag in enumerate(tags):
        part = _split(tag)
        if part is None or part[0] not in allowed:
            return i, f"tag {tag!r} is not a {scheme} tag (expected {expected})"
        prefix, kind = part
        after = f"after {tags[i - 1]!r}" if i else "at the start of a sentence"
        continues = prefix in ("I", "E")
        if scheme == "BIOES" and open_type is not None and not (continues and kind == open_type):
            return i, (
                f"tag {tag!r} {after} (BIOES: {tags[i - 1]!r} must be followed by "
                f"{'I-' + open_type!r} or {'E-' + open_type!r})"
            )
        if continues and kind != open_type:
            return i, (
                f"tag {tag!r} {after} ({scheme}: {tag!r} must follow "
                f"{'B-' + kind!r} or {'I-' + kind!r})"
            )
        open_type = kind if prefix in ("B", "I") else None
    if scheme == "BIOES" and open_type is not None:
        last = tags[-1]
        return len(tags) - 1, (
            f"sentence ends after {last!r} (BIOES: {last!r} must be followed by "
            f"{'I-' + open_type!r} or {'E-' + open_type!r})"
        )
    return None


def validate(
    sentences: Sequence[Sequence[tuple[str, str]]],
    scheme: Scheme,
    *,
    path: Path | str | None = None,
) -> None:
    """Raise a DataError at the first tag that breaks ``scheme``.

    The message names the sentence and token (1-based), since sentences in memory
    carry no line numbers; :func:`read_tagged` checks files and names the line.
    """
    if scheme not in ("BIO", "BIOES"):
        raise ValueError(f"scheme: expected 'BIO' or 'BIOES', got {scheme!r}")
    for s, sentence in enumerate(sentences, start=1):
        found = _violation([tag for _, tag in sentence], scheme)
        if found is not None:
            raise DataError(f"sentence {s}, token {found[0] + 1}: {found[1]}", path=path)


def _closed(tag: str) -> str:
    """The BIOES tag that ends an entity at this token: B- → S-, I- → E-."""
    if tag.startswith("B-"):
        return "S-" + tag[2:]
    if tag.startswith("I-"):
        return "E-" + tag[2:]
    return tag


def to_bioes(sentences: Sequence[Sequence[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
    """The same sentences with BIO tags rewritten as BIOES (a DataError if not valid BIO).

    B-X stays B-X when I-X follows, else becomes S-X; I-X stays I-X when I-X
    follows, else becomes E-X.
    """
    validate(sentences, "BIO")
    converted: list[list[tuple[str, str]]] = []
    for sentence in sentences:
        tags = [tag for _, tag in sentence]
        out: list[tuple[str, str]] = []
        for i, (token, tag) in enumerate(sentence):
            following = tags[i + 1] if i + 1 < len(tags) else "O"
            goes_on = tag != "O" and following == "I-" + tag[2:]
            out.append((token, tag if goes_on else _closed(tag)))
        converted.append(out)
    return converted


def to_bio(sentences: Sequence[Sequence[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
    """The same sentences with BIOES tags rewritten as BIO: S- → B-, E- → I-.

    A DataError if the tags are not valid BIOES.
    """
    validate(sentences, "BIOES")
    renamed = {"S": "B", "E": "I"}
    return [
        [(token, renamed.get(tag[0], tag[0]) + tag[1:]) for token, tag in sentence]
        for sentence in sentences
    ]
