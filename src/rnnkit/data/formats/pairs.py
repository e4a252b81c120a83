"""Sequence-to-sequence data: one ``source TAB target`` pair per line.

Blank lines are skipped, and with ``comment`` set so are lines that start with
it. Surrounding whitespace is removed from both sides and neither may be empty.
Splitting into characters or words is the vocabulary's job; :func:`split_units`
is the one rule both sides of the model share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import (
    OnLong,
    check_limit_arguments,
    kept_length,
    read_utf8,
    split_lines,
)

Level = Literal["char", "word"]


def read_pairs(
    path: Path | str,
    *,
    comment: str | None = None,
    max_length: int | None = None,
    on_long: OnLong = "error",
) -> list[tuple[str, str]]:
    """``(source, target)`` pairs in file order.

    Args:
        comment: a prefix of lines to skip, e.g. ``"#"``; None skips none.
        max_length: the most characters a source or a target may have; a longer
            one is an error or, with ``on_long='truncate'``, cut.
    """
    check_limit_arguments(max_length, on_long)
    text = read_utf8(path, expected="source TAB target lines")
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip() or (comment and line.startswith(comment)):
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"line has {len(fields)} tab-separated fields (expected 2: source TAB target)",
                path=path,
                line=number,
            )
        source, target = fields[0].strip(), fields[1].strip()
        for side, value in (("source", source), ("target", target)):
            if not value:
                raise DataError(
                    f"empty {side} (expected source TAB target)", path=path, line=number
                )
        keep_source = kept_length(
            len(source), max_length, on_long, what="source", path=path, line=number
        )
        keep_target = kept_length(
            len(target), max_length, on_long, what="target", path=path, line=number
        )
        pairs.append((source[:keep_source], target[:keep_target]))
    if not pairs:
        raise DataError("no pairs (expected source TAB target lines)", path=path)
    return pairs


def split_units(text: str, level: Level) -> list[str]:
    """``text`` as characters (``"char"``, spaces included) or words (``"word"``,
    split at runs of whitespace)."""
    if level == "char":
        return list(text)
    if level == "word":
        return text.split()
    raise ValueError(f"level: expected 'char' or 'word', got {level!r}")
