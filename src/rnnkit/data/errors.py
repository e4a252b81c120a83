"""The one error type for bad data: it names the file, the line and what was expected."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A file, a dataset or a value that is not what rnnkit expects.

    The message is one line: ``FILE:LINE: what is wrong (what was expected)``, with
    the line left out when it does not apply. The CLI prints it and exits with 2.
    """

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        where = "" if path is None else f"{path}:" + ("" if line is None else f"{line}:")
        super().__init__(f"{where} {message}" if where else message)
