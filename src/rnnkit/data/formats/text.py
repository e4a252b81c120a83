"""Language-model text: one UTF-8 file, or every ``*.txt`` file in a folder."""

from __future__ import annotations

from pathlib import Path

from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import read_utf8


def read_text(path: Path | str) -> str:
    """The text of a file, or of a folder's ``*.txt`` files joined with a newline.

    A folder's files are taken in sorted name order, so the corpus is the same on
    every machine; sub-folders are not searched. ``\\r\\n`` line endings become
    ``\\n``, so a character model does not learn a symbol that only marks the
    platform. Each file must be non-empty UTF-8.
    """
    folder = Path(path)
    if not folder.is_dir():
        return _normalised(read_utf8(path, expected="UTF-8 text"))
    try:
        files = sorted(
            (entry for entry in folder.glob("*.txt") if entry.is_file()),
            key=lambda entry: entry.name,
        )
    except OSError as error:
        raise DataError(
            f"cannot list the folder: {error.strerror or type(error).__name__}", path=path
        ) from None
    if not files:
        raise DataError("folder has no *.txt files (expected UTF-8 text files)", path=path)
    return "\n".join(_normalised(read_utf8(file, expected="UTF-8 text")) for file in files)


def _normalised(text: str) -> str:
    return text.replace("\r\n", "\n")


def read_lines(path: Path | str) -> list[str]:
    """The non-blank lines of a UTF-8 file, stripped: one input per line (``--file``)."""
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]
