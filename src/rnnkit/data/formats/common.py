"""What every reader shares: UTF-8 text with line numbers, length limits and label checks.

Line numbers are 1-based and count ``\\n`` characters, as editors do; a ``\\r``
before the ``\\n`` belongs to the line ending. A UTF-8 byte-order mark at the start
is dropped. Every problem is a :class:`~rnnkit.data.errors.DataError` whose one-line
message names the file, the line and what was expected.
"""

from __future__ import annotations

import codecs
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from rnnkit.data.errors import DataError

#: What a reader does with a sequence longer than ``max_length``.
OnLong = Literal["error", "truncate"]


def read_bytes(path: Path | str) -> bytes:
    """The file's bytes; a missing file, a folder, a FIFO or device (which could block
    for ever), a link loop or an unreadable file is a DataError."""
    try:
        mode = Path(path).stat().st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError
        if not stat.S_ISREG(mode):
            raise DataError("not a regular file (expected a file, not a pipe or a device)",
                            path=path)  # fmt: skip
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError("no such file (expected a readable file)", path=path) from None
    except IsADirectoryError:
        raise DataError("is a folder (expected a file)", path=path) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise DataError(f"cannot read the file: {reason}", path=path) from None


def read_utf8(path: Path | str, *, expected: str) -> str:
    """The file decoded as UTF-8, without a byte-order mark.

    ``expected`` says what the file should hold, for the message about an empty file.
    A byte that is not UTF-8 is reported with its line and byte offset, because
    the usual cause (a Latin-1 or Windows-1252 export) is fixed by re-saving.
    """
    data = read_bytes(path)
    if not data:
        raise DataError(f"empty file (expected {expected})", path=path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        hint = ""
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            hint = "; it starts with a UTF-16 byte-order mark"
        raise DataError(
            f"not UTF-8: byte 0x{data[error.start]:02x} at byte offset {error.start} "
            f"(expected UTF-8 text; re-save the file as UTF-8{hint})",
            path=path,
            line=line,
        ) from None
    if "\0" in text:
        # A NUL is never text: a binary file, or a UTF-16 export without its mark.
        raise DataError("a NUL byte (expected text; is this a binary or UTF-16 file?)",
                        path=path, line=text.count("\n", 0, text.index("\0")) + 1)  # fmt: skip
    return text.removeprefix("\ufeff")


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` split at ``\\n`` (line ``i + 1`` is item ``i``), without ``\\r``."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def one_line(text: object) -> str:
    """``str(text)`` on one line, so a message quoting a library's error stays one line."""
    return " ".join(str(text).split())


def check_unique_columns(header: list[str], path: Path | str, line: int) -> None:
    """A header names each column once."""
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DataError(
            f"column {duplicates[0]!r} appears twice in the header (expected unique column names)",
            path=path,
            line=line,
        )


def comment_hint(first: str, line: int, prefix: str = "#") -> str:
    """A hint to add when the line other lines are judged by starts with ``#``.

    The usual cause of "expected 23 columns like line 1" is a comment line the
    reader was not told about; ``prefix`` is the ``comment`` value to suggest.
    """
    if first.lstrip().startswith("#"):
        return f"; line {line} starts with '#': pass comment={prefix!r} if it is a comment"
    return ""


def check_limit_arguments(max_length: int | None, on_long: str) -> None:
    """Refuse a ``max_length`` below 1 or an ``on_long`` other than 'error' or 'truncate'."""
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise ValueError(f"max_length: expected an int ≥ 1 or None, got {max_length!r}")
    if on_long not in ("error", "truncate"):
        raise ValueError(f"on_long: expected 'error' or 'truncate', got {on_long!r}")


def kept_length(
    length: int,
    max_length: int | None,
    on_long: OnLong,
    *,
    what: str,
    path: Path | str,
    line: int | None,
) -> int:
    """How many items of a ``length``-long ``what`` to keep under ``max_length``.

    Returns ``length`` when it fits and ``max_length`` when ``on_long='truncate'``;
    with ``on_long='error'`` a longer one is a DataError at ``line``.
    """
    if max_length is None or length <= max_length:
        return length
    if on_long == "truncate":
        return max_length
    raise DataError(
        f"{what} of length {length} is longer than max_length={max_length} "
        "(expected at most max_length; pass on_long='truncate' to cut it)",
        path=path,
        line=line,
    )


def _listing(labels: Iterable[str], limit: int = 8) -> str:
    shown = sorted(labels)
    more = f", … ({len(shown) - limit} more)" if len(shown) > limit else ""
    return ", ".join(repr(label) for label in shown[:limit]) + more


def check_labels_seen(
    train_labels: Iterable[str], other_labels: Iterable[str], path: Path | str
) -> None:
    """Refuse labels in ``path`` (a dev or test file) that the training data never had.

    ``other_labels`` are the labels of that file's examples in file order; the
    message names the unseen labels, the first example (1-based) that has one, and
    the training labels, because a model can never predict a class it never saw.
    """
    seen = set(train_labels)
    unseen: set[str] = set()
    first = 0
    for index, label in enumerate(other_labels, start=1):
        if label not in seen:
            first = first or index
            unseen.add(label)
    if unseen:
        noun = "label" if len(unseen) == 1 else "labels"
        raise DataError(
            f"{noun} {_listing(unseen)} never seen in training (first at example {first}; "
            f"expected one of the training labels: {_listing(seen) or 'none'})",
            path=path,
        )
