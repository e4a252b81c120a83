"""Labelled multichannel sequences: UCR/UEA ``.ts`` files and NumPy ``.npz`` arrays.

Both readers return ``[(steps, label), …]`` where ``steps`` is a list of steps,
each a list of one value per channel (``T × C``), and ``label`` a string; series
may differ in length.

:func:`read_sequences` reads either by its extension, and
:func:`parse_json_sequence` reads one sequence typed as JSON (``rnnkit predict``).

A ``.ts`` file (the format of the UCR/UEA archives and sktime) has header lines,
then ``@data`` and one series per line::

    # comments start with '#' (or '%', in some UEA files)
    @problemName JapaneseVowels
    @timeStamps false
    @univariate false
    @dimensions 2
    @classLabel true 1 2
    @data
    0.1,0.2,0.3:1.0,1.1,1.2:1

Channels are separated by ``:`` and their values by ``,``; the class label comes
last and must be one that ``@classLabel true`` declares. Within a series every
channel has the same length. ``?`` marks a missing value: an error unless
``allow_missing=True``, which reads it as NaN. Time-stamped data
(``@timeStamps true``) is not supported. Unknown header keys are ignored.

An ``.npz`` file (``numpy.savez``) holds ``x`` ``(N, T, C)`` numbers, ``lengths``
``(N,)`` integers in ``1 … T`` (steps past a length are padding and ignored) and
``y`` ``(N,)`` integer or string labels. It is loaded without pickle, so it can
hold no Python objects.
"""

from __future__ import annotations

import io
import json
from math import isfinite, nan
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import (
    OnLong,
    check_limit_arguments,
    kept_length,
    one_line,
    read_bytes,
    read_utf8,
    split_lines,
)

Sequences = list[tuple[list[list[float]], str]]

_BOOLEAN_KEYS = ("@timestamps", "@missing", "@univariate", "@equallength", "@targetlabel")


def read_ts(
    path: Path | str,
    *,
    allow_missing: bool = False,
    max_length: int | None = None,
    on_long: OnLong = "error",
) -> Sequences:
    """The labelled series of a ``.ts`` file, each ``T × C``.

    Args:
        allow_missing: read ``?`` as NaN instead of refusing it.
        max_length: the most steps a series may have; a longer one is an error
            or, with ``on_long='truncate'``, cut to its first ``max_length`` steps.
    """
    check_limit_arguments(max_length, on_long)
    text = read_utf8(path, expected="a .ts header, @data and one series per line")
    return parse_ts(text, path, allow_missing=allow_missing, max_length=max_length,
                    on_long=on_long)  # fmt: skip


def parse_ts(
    text: str,
    path: Path | str,
    *,
    allow_missing: bool = False,
    max_length: int | None = None,
    on_long: OnLong = "error",
) -> Sequences:
    """The labelled series of ``.ts`` text (:func:`read_ts` without the file), each ``T × C``;
    ``path`` names the text in errors (a file, or a bundled archive's member)."""
    check_limit_arguments(max_length, on_long)
    header: dict[str, list[str]] = {}
    labels: list[str] | None = None
    in_data = False
    channels = 0  # channels per series, once known
    channels_line = 0
    series: Sequences = []
    for number, line in enumerate(split_lines(text), start=1):
        content = line.strip()
        if not content or content.startswith(("#", "%")):
            continue
        if not in_data:
            key, *values = content.split()
            key = key.lower()
            if not key.startswith("@"):
                raise DataError(
                    f"{_cut(content)!r} before @data (expected header lines starting with @)",
                    path=path,
                    line=number,
                )
            if key in _BOOLEAN_KEYS and (
                len(values) != 1 or values[0].lower() not in ("true", "false")
            ):
                raise DataError(
                    f"{key} {' '.join(values)!r} (expected {key} true or {key} false)",
                    path=path,
                    line=number,
                )
            header[key] = values
            if key == "@classlabel":
                labels = _declared_labels(values, path, number)
            elif key == "@dimensions":
                channels, channels_line = _positive(key, values, path, number), number
            elif key == "@data":
                _check_header(header, labels, path, number)
                in_data = True
                if _flag(header, "@univariate"):
                    channels, channels_line = 1, number
            continue
        assert labels is not None  # _check_header refused a header without labels
        steps, label = _series(content, labels, allow_missing, path, number)
        if channels and len(steps[0]) != channels:
            raise DataError(
                f"series has {len(steps[0])} channels (expected {channels}, as set on line "
                f"{channels_line})",
                path=path,
                line=number,
            )
        channels, channels_line = len(steps[0]), channels_line or number
        length = header.get("@serieslength")
        if _flag(header, "@equallength") and length and length[0] != str(len(steps)):
            raise DataError(
                f"series has {len(steps)} steps (expected @seriesLength {length[0]})",
                path=path,
                line=number,
            )
        keep = kept_length(len(steps), max_length, on_long, what="series", path=path, line=number)
        series.append((steps[:keep], label))
    if not in_data:
        raise DataError("no @data line (expected a .ts header ending with @data)", path=path)
    if not series:
        raise DataError("no series after @data (expected one series per line)", path=path)
    return series


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _flag(header: dict[str, list[str]], key: str) -> bool:
    return [value.lower() for value in header.get(key, [])] == ["true"]


def _positive(key: str, values: list[str], path: Path | str, line: int) -> int:
    if len(values) == 1 and values[0].isascii() and values[0].isdigit() and int(values[0]) > 0:
        return int(values[0])
    raise DataError(
        f"{key} {' '.join(values)!r} (expected a positive whole number)", path=path, line=line
    )


def _declared_labels(values: list[str], path: Path | str, line: int) -> list[str] | None:
    if values and values[0].lower() == "false":
        return None
    if not values or values[0].lower() != "true" or len(values) < 2:
        raise DataError(
            "@classLabel without labels (expected @classLabel true LABEL1 LABEL2 …)",
            path=path,
            line=line,
        )
    return values[1:]


def _check_header(
    header: dict[str, list[str]], labels: list[str] | None, path: Path | str, line: int
) -> None:
    if _flag(header, "@timestamps"):
        raise DataError(
            "time-stamped .ts data is not supported (expected @timeStamps false)",
            path=path,
            line=line,
        )
    if labels is None and _flag(header, "@targetlabel"):
        raise DataError(
            "regression targets (@targetLabel true) are not supported "
            "(expected @classLabel true LABEL1 LABEL2 …)",
            path=path,
            line=line,
        )
    if labels is None:
        raise DataError(
            "no class labels before @data (expected @classLabel true LABEL1 LABEL2 …)",
            path=path,
            line=line,
        )


def _series(
    content: str, labels: list[str], allow_missing: bool, path: Path | str, line: int
) -> tuple[list[list[float]], str]:
    """One data line as ``(steps, label)`` with steps ``T × C``."""
    *fields, label = content.split(":")
    label = label.strip()
    if not fields:
        raise DataError(
            "no ':' (expected channels separated by ':' with the class label last)",
            path=path,
            line=line,
        )
    if label not in labels:
        declared = ", ".join(repr(name) for name in labels)
        raise DataError(
            f"class label {_cut(label)!r} is not declared (expected one of @classLabel's: "
            f"{declared})",
            path=path,
            line=line,
        )
    channels: list[list[float]] = []
    for c, field in enumerate(fields, start=1):
        if not field.strip():
            raise DataError(
                f"channel {c} is empty (expected comma-separated values)", path=path, line=line
            )
        values: list[float] = []
        for t, cell in enumerate(field.split(","), start=1):
            values.append(_value(cell.strip(), c, t, allow_missing, path, line))
        if channels and len(values) != len(channels[0]):
            raise DataError(
                f"channel {c} has {len(values)} values (expected {len(channels[0])} like "
                "channel 1: the channels of a series have one length)",
                path=path,
                line=line,
            )
        channels.append(values)
    return [list(step) for step in zip(*channels, strict=True)], label


def _value(
    cell: str, channel: int, step: int, allow_missing: bool, path: Path | str, line: int
) -> float:
    where = f"channel {channel}, value {step}"
    if cell == "?":
        if not allow_missing:
            raise DataError(
                f"missing value '?' at {where} (expected a number; pass allow_missing=True "
                "to read it as NaN)",
                path=path,
                line=line,
            )
        return nan
    try:
        value = float(cell)
    except ValueError:
        raise DataError(
            f"{_cut(cell)!r} at {where} is not a number (expected a number or '?')",
            path=path,
            line=line,
        ) from None
    if not isfinite(value):
        raise DataError(
            f"{cell!r} at {where} is not a finite number (expected a number, or '?' where missing)",
            path=path,
            line=line,
        )
    return value


def read_npz_sequences(
    path: Path | str,
    *,
    max_length: int | None = None,
    on_long: OnLong = "error",
) -> Sequences:
    """The labelled sequences of an ``.npz`` file with ``x``, ``lengths`` and ``y``.

    Each sequence is ``x[i, :lengths[i]]`` as ``T × C`` floats; its label is
    ``str(y[i])``. ``max_length`` works as in :func:`read_ts`.
    """
    check_limit_arguments(max_length, on_long)
    data = read_bytes(path)
    expected = "an .npz archive from numpy.savez with x (N, T, C), lengths (N,) and y (N,)"
    if not data:
        raise DataError(f"empty file (expected {expected})", path=path)
    arrays = _load_arrays(data, path, expected)
    x, lengths, y = arrays["x"], arrays["lengths"], arrays["y"]
    if x.ndim != 3 or x.dtype.kind not in "biuf":
        raise DataError(f"x is {_describe(x)} (expected numbers of shape (N, T, C))", path=path)
    n, steps, channels = x.shape
    if n == 0 or channels == 0:
        raise DataError(f"x has shape {x.shape} (expected N ≥ 1 sequences, C ≥ 1)", path=path)
    if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
        raise DataError(
            f"lengths is {_describe(lengths)} (expected {n} integers, shape ({n},))", path=path
        )
    if y.shape != (n,) or y.dtype.kind not in "biuU":
        raise DataError(
            f"y is {_describe(y)} (expected {n} integer or string labels, shape ({n},))",
            path=path,
        )
    sequences: Sequences = []
    for i in range(n):
        length = int(lengths[i])
        if not 1 <= length <= steps:
            raise DataError(f"lengths[{i}] is {length} (expected 1 … T = {steps})", path=path)
        values = np.asarray(x[i, :length], dtype=np.float64)  # (L, C)
        bad = np.argwhere(~np.isfinite(values))
        if bad.size:
            t, c = (int(k) for k in bad[0])
            raise DataError(
                f"x[{i}, {t}, {c}] is {values[t, c]} (expected finite numbers within lengths)",
                path=path,
            )
        keep = kept_length(length, max_length, on_long, what=f"sequence {i}", path=path, line=None)
        sequences.append((values[:keep].tolist(), str(y[i].item())))
    return sequences


def read_sequences(path: Path | str, *, max_length: int | None = None) -> Sequences:
    """The labelled sequences of a ``.ts`` or an ``.npz`` file, told apart by the
    extension; a sequence longer than ``max_length`` is cut to its first steps."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".ts", ".npz"):
        raise DataError(f"cannot tell the format from the extension {suffix!r} (expected .ts "
                        "or .npz)", path=path)  # fmt: skip
    read = read_ts if suffix == ".ts" else read_npz_sequences
    return read(path, max_length=max_length, on_long="truncate")


def parse_json_sequence(text: str, where: str) -> list[list[float]]:
    """One sequence typed as JSON, ``[[c1, c2, …], …]`` (steps × channels) or
    ``[v1, v2, …]`` for one channel, as ``T × C`` finite floats (``where`` names it)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise DataError(f"{where}: not JSON (expected a sequence as [[x, y, …], …], one list "
                        "per step)") from None  # fmt: skip
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        value = [[v] for v in value]
    if not (isinstance(value, list) and value and all(isinstance(s, list) and s for s in value)):
        raise DataError(f"{where}: expected a non-empty list of steps, each a list of numbers")
    if len({len(step) for step in value}) != 1:
        raise DataError(f"{where}: every step needs the same number of channels")
    if not all(_is_number(v) for step in value for v in step):
        raise DataError(f"{where}: expected numbers in every step")
    try:
        steps = [[float(v) for v in step] for step in value]
    except OverflowError:  # an integer beyond float's range
        steps = [[nan]]
    if not all(isfinite(v) for step in steps for v in step):
        raise DataError(f"{where}: expected finite numbers")
    return steps


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _load_arrays(data: bytes, path: Path | str, expected: str) -> dict[str, Any]:
    """``x``, ``lengths`` and ``y`` read from the archive's bytes."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:
        # Damaged archives surface as any of a dozen types (BadZipFile, zlib.error,
        # EOFError, ValueError, OSError, …) from numpy and zipfile; all mean one thing.
        raise DataError(
            f"not a readable .npz file ({type(error).__name__}: {_cut(one_line(error), 120)}; "
            f"expected {expected})",
            path=path,
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"a single .npy array (expected {expected})", path=path)
    with archive:
        missing = [key for key in ("x", "lengths", "y") if key not in archive.files]
        if missing:
            found = ", ".join(repr(name) for name in archive.files) or "none"
            raise DataError(
                f"no array {missing[0]!r} (arrays found: {found}; expected x (N, T, C), "
                "lengths (N,) and y (N,))",
                path=path,
            )
        arrays: dict[str, Any] = {}
        for key in ("x", "lengths", "y"):
            try:
                arrays[key] = archive[key]
            except Exception as error:
                # As above: a damaged member fails in numpy's or zipfile's own way.
                raise DataError(
                    f"array {key!r} cannot be read ({type(error).__name__}: "
                    f"{_cut(one_line(error), 120)}; expected {expected})",
                    path=path,
                ) from None
    return arrays


def _describe(array: Any) -> str:
    return f"{array.dtype} of shape {array.shape}"


def read_npz_arrays(path: Path | str, keys: tuple[str, ...], layout: str) -> dict[str, Any]:
    """The arrays ``keys`` of an ``.npz`` file (``numpy.savez``), loaded without pickle.

    ``layout`` says what the arrays should be (``"x (N, T, C), lengths (N,) and
    y (N,)"``) for the messages: an empty or damaged file, a single ``.npy`` array,
    a missing array or one that cannot be read (an object array, which would need
    unpickling) is a DataError naming the file. The arrays' shapes and types are
    the caller's to check.
    """
    expected = f"an .npz archive from numpy.savez with {layout}"
    data = read_bytes(path)
    if not data:
        raise DataError(f"empty file (expected {expected})", path=path)
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:
        # Damaged archives surface as any of a dozen types from numpy and zipfile.
        reason = f"{type(error).__name__}: {_cut(one_line(error), 120)}"
        raise DataError(f"not a readable .npz file ({reason}; expected {expected})",
                        path=path) from None  # fmt: skip
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"a single .npy array (expected {expected})", path=path)
    arrays: dict[str, Any] = {}
    with archive:
        for key in keys:
            if key not in archive.files:
                found = ", ".join(repr(name) for name in archive.files) or "none"
                raise DataError(f"no array {key!r} (arrays found: {found}; expected {layout})",
                                path=path)  # fmt: skip
            try:
                arrays[key] = archive[key]
            except Exception as error:  # as above: numpy's or zipfile's own way
                reason = f"{type(error).__name__}: {_cut(one_line(error), 120)}"
                raise DataError(f"array {key!r} cannot be read ({reason}; expected {layout})",
                                path=path) from None  # fmt: skip
    return arrays
