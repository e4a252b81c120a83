"""Damaged and random file contents for the readers, and the check that only DataError escapes."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import strategies as st

from rnnkit.data.errors import DataError

T = TypeVar("T")

# Characters that mean something to one format or another, so insertions hit the
# parsers' branches rather than only the text inside a field.
_STRUCTURE = "\t,:;\n\r\"'#?@-_. {}[]0123456789eE+BIOESx\\\x00\u00a0\u2028"


@st.composite
def damaged(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` after one to three random edits: cut, delete, insert, replace, drop a line."""
    data = valid
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["cut", "delete", "insert", "bytes", "drop", "repeat"]))
        if edit == "cut":
            data = data[:at]
        elif edit == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 8)) :]
        elif edit == "insert":
            text = draw(st.text(alphabet=_STRUCTURE, min_size=1, max_size=6))
            data = data[:at] + text.encode() + data[at:]
        elif edit == "bytes":
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
        else:
            lines = data.split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines[k : k + 1] = [] if edit == "drop" else [lines[k], lines[k]]
            data = b"\n".join(lines)
    return data


def contents(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, random text, text of structural characters, or ``valid`` damaged."""
    return st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.text(alphabet=_STRUCTURE, max_size=200).map(str.encode),
        damaged(valid),
    )


def read_or_data_error(reader: Callable[[Path], T], content: bytes, name: str) -> T | None:
    """``reader`` on a file ``name`` holding ``content``: its result, or None after a DataError.

    Any other exception propagates and fails the test. A fresh folder per example
    keeps hypothesis away from function-scoped fixtures.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        try:
            return reader(path)
        except DataError as error:
            message = str(error)
            assert message.startswith(f"{path}:"), "the message names the file"
            assert len(message.splitlines()) == 1, "the message is one line"
            return None
