"""Piano rolls in files: rnnkit's text format, and Standard MIDI Files (read and write).

A piano roll is a list of frames on a fixed time grid, each frame the list of MIDI
pitches (0–127) sounding in it; ``frames_per_quarter`` frames make a quarter note
(4: a 16th-note grid, the grid of the bach-chorales dataset).

**The text format** (``.txt``, any name not ending in ``.mid``/``.midi``): UTF-8, one
line per frame, the frame's pitches as integers separated by spaces; a silent frame
is a line holding only ``-``. Blank lines, and lines starting with ``#`` (comments:
a provenance header, say), are skipped. For example, two frames of a C major chord and
one of silence::

    # my piece, 16th-note grid
    48 64 67 72
    48 64 67 72
    -

**Standard MIDI Files** (``.mid``/``.midi``): :func:`write_midi` writes format 0 (one
track, one channel, a held pitch is one note, so repeated frames of a pitch merge
into a held note); :func:`read_midi` reads formats 0 and 1, every channel but the
percussion channel (10), quantising note starts and ends to the nearest frame of the
grid (a note keeps at least one frame). Tempo changes do not move the grid: it counts
quarter notes, not seconds.

**A generated piece** is written whole or not at all (:func:`write_piece`): as MIDI,
or as a PNG piano-roll image (:func:`write_png`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from rnnkit.data.errors import DataError
from rnnkit.data.formats.common import read_bytes, read_utf8, split_lines

MIDI_SUFFIXES = (".mid", ".midi")
ROLL_SUFFIXES = (".txt", ".roll", *MIDI_SUFFIXES)  # the files of a folder that are read
PIECE_SUFFIXES = (*MIDI_SUFFIXES, ".png")  # what write_piece writes
SILENCE = "-"
MAX_FRAMES = 1_000_000  # a longer roll is a damaged file, not music (~17 h of 16ths)
_TICKS_PER_FRAME = 120  # the written files' division is frames_per_quarter × this
_PERCUSSION = 9  # channel 10, counted from 0


def _check_grid(frames_per_quarter: int) -> None:
    if (
        isinstance(frames_per_quarter, bool)
        or not isinstance(frames_per_quarter, int)
        or not (1 <= frames_per_quarter <= 96)
    ):
        raise ValueError(
            f"frames_per_quarter: expected an int in 1..96, got {frames_per_quarter!r}"
        )


def read_roll_text(path: Path | str) -> list[list[int]]:
    """The frames of a piano-roll text file (see the module docstring)."""
    text = read_utf8(path, expected="one line of MIDI pitches per frame")
    frames: list[list[int]] = []
    for number, line in enumerate(split_lines(text), start=1):
        if line.startswith("#"):
            continue
        fields = line.split()
        if not fields:
            continue  # blank lines carry nothing: silence is written "-"
        if fields == [SILENCE]:
            frames.append([])
            continue
        pitches = set()
        for field in fields:
            try:
                pitch = int(field)
            except ValueError:
                raise DataError(
                    f"{field!r} is not a MIDI pitch (expected integers 0-127 separated by "
                    f"spaces, or {SILENCE!r} for a silent frame)",
                    path=path,
                    line=number,
                ) from None
            if not 0 <= pitch <= 127:
                raise DataError(f"pitch {pitch} is outside 0-127 (expected MIDI pitches)",
                                path=path, line=number)  # fmt: skip
            pitches.add(pitch)
        frames.append(sorted(pitches))
    if not frames:
        raise DataError("no frames (expected one line of MIDI pitches per frame)", path=path)
    return frames


def roll_text(frames: Sequence[Sequence[int]], *, header: str = "") -> str:
    """The text format of ``frames`` (``header`` becomes ``#`` comment lines)."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [" ".join(str(p) for p in sorted(frame)) if frame else SILENCE for frame in frames]
    return "\n".join(lines) + "\n"


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits a byte, most significant first."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(
    frames: Sequence[Sequence[int]],
    *,
    frames_per_quarter: int = 4,
    bpm: float = 100.0,
    velocity: int = 80,
) -> bytes:
    """A format-0 Standard MIDI File of ``frames`` (see :func:`write_midi`)."""
    _check_grid(frames_per_quarter)
    if not 0 < bpm <= 1000:
        raise ValueError(f"bpm: expected a tempo in (0, 1000], got {bpm}")
    if not 1 <= velocity <= 127:
        raise ValueError(f"velocity: expected 1-127, got {velocity}")
    for t, frame in enumerate(frames):
        if any(isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 127 for p in frame):
            raise ValueError(f"frames[{t}]: expected MIDI pitches 0-127, got {list(frame)!r}")
    tempo = round(60_000_000 / bpm)  # microseconds per quarter note
    track = bytearray(b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big"))
    pending = 0  # ticks since the last event
    sounding: set[int] = set()
    for frame in [*frames, []]:  # a final silent frame ends every note
        now = set(frame)
        for pitch in sorted(sounding - now):
            track += _vlq(pending) + bytes([0x80, pitch, 0])
            pending = 0
        for pitch in sorted(now - sounding):
            track += _vlq(pending) + bytes([0x90, pitch, velocity])
            pending = 0
        sounding = now
        pending += _TICKS_PER_FRAME
    track += _vlq(0) + b"\xff\x2f\x00"  # end of track
    division = frames_per_quarter * _TICKS_PER_FRAME
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, division)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def write_midi(
    frames: Sequence[Sequence[int]],
    path: Path | str,
    *,
    frames_per_quarter: int = 4,
    bpm: float = 100.0,
    velocity: int = 80,
) -> None:
    """Write ``frames`` as a format-0 Standard MIDI File.

    Each pitch that sounds in consecutive frames is one note, from its first frame
    to the end of its last; ``bpm`` quarter notes a minute.
    """
    Path(path).write_bytes(midi_bytes(frames, frames_per_quarter=frames_per_quarter, bpm=bpm,
                                      velocity=velocity))  # fmt: skip


class _Reader:
    """Bytes of a MIDI file with bounds checks that name the file and the offset."""

    def __init__(self, data: bytes, path: Path | str) -> None:
        self.data, self.path, self.at = data, path, 0

    def fail(self, what: str) -> DataError:
        return DataError(f"not a valid MIDI file: {what} at byte {self.at}", path=self.path)

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise self.fail(f"truncated (expected {count} more bytes)")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def vlq(self) -> int:
        value = 0
        for _ in range(4):
            b = self.byte()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                return value
        raise self.fail("a variable-length number longer than 4 bytes")


def _track_notes(reader: _Reader, end: int) -> list[tuple[int, int, int]]:
    """``(start tick, end tick, pitch)`` of every note of one track chunk."""
    notes: list[tuple[int, int, int]] = []
    open_notes: dict[tuple[int, int], list[int]] = {}  # (channel, pitch) → start ticks
    tick, status = 0, 0
    while reader.at < end:
        tick += reader.vlq()
        first = reader.byte()
        if first == 0xFF:  # meta event
            kind, length = reader.byte(), reader.vlq()
            reader.take(length)
            if kind == 0x2F:
                break
            continue
        if first in (0xF0, 0xF7):  # system exclusive
            reader.take(reader.vlq())
            continue
        if first & 0x80:
            status, data = first, reader.byte()
        elif status:
            data = first  # running status
        else:
            raise reader.fail("a data byte with no status before it")
        kind, channel = status & 0xF0, status & 0x0F
        second = reader.byte() if kind not in (0xC0, 0xD0) else 0
        if channel == _PERCUSSION or kind not in (0x80, 0x90):
            continue
        key = (channel, data)
        if kind == 0x90 and second > 0:
            open_notes.setdefault(key, []).append(tick)
        elif open_notes.get(key):
            notes.append((open_notes[key].pop(0), tick, data))
    for (_, pitch), starts in open_notes.items():  # never released: end at the last tick
        notes.extend((start, tick, pitch) for start in starts)
    reader.at = end
    return notes


def read_midi(path: Path | str, *, frames_per_quarter: int = 4) -> list[list[int]]:
    """The piano roll of a format-0 or format-1 Standard MIDI File, on the given grid."""
    _check_grid(frames_per_quarter)
    data = read_bytes(path)
    reader = _Reader(data, path)
    if reader.take(4) != b"MThd":
        raise DataError("not a MIDI file (expected the MThd header)", path=path)
    length = struct.unpack(">I", reader.take(4))[0]
    if length < 6:
        raise reader.fail("a header chunk shorter than 6 bytes")
    fmt, tracks, division = struct.unpack(">HHH", reader.take(6))
    reader.take(length - 6)
    if fmt not in (0, 1):
        raise DataError(f"MIDI format {fmt} (expected format 0 or 1)", path=path)
    if division & 0x8000 or division == 0:
        raise DataError("SMPTE time division (expected ticks per quarter note)", path=path)
    notes: list[tuple[int, int, int]] = []
    found = 0
    while reader.at < len(data) and found < tracks:
        kind = reader.take(4)
        size = struct.unpack(">I", reader.take(4))[0]
        end = reader.at + size
        if end > len(data):
            raise reader.fail(f"a chunk of {size} bytes past the end of the file")
        if kind == b"MTrk":
            notes += _track_notes(reader, end)
            found += 1
        reader.at = end
    if found < tracks:
        raise DataError(f"{found} of the {tracks} tracks the header announces", path=path)
    if not notes:
        raise DataError("no notes (expected note-on and note-off events)", path=path)

    def frame_of(tick: int) -> int:
        return int(tick * frames_per_quarter / division + 0.5)

    spans = [(frame_of(s), max(frame_of(s) + 1, frame_of(e)), p) for s, e, p in notes]
    length = max(stop for _, stop, _ in spans)
    if length > MAX_FRAMES:
        raise DataError(f"{length:,} frames on this grid (expected at most {MAX_FRAMES:,})",
                        path=path)  # fmt: skip
    frames: list[set[int]] = [set() for _ in range(length)]
    for start, stop, pitch in spans:
        for t in range(start, stop):
            frames[t].add(pitch)
    return [sorted(frame) for frame in frames]


def read_roll(path: Path | str, *, frames_per_quarter: int = 4) -> list[list[int]]:
    """A piano roll from a MIDI file (by its suffix) or from the text format."""
    if Path(path).suffix.lower() in MIDI_SUFFIXES:
        return read_midi(path, frames_per_quarter=frames_per_quarter)
    return read_roll_text(path)


def roll_files(path: Path | str) -> list[Path]:
    """A piano-roll file, or the piano-roll files of a folder (sorted)."""
    folder = Path(path)
    if not folder.is_dir():
        return [folder]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in ROLL_SUFFIXES)
    if not files:
        raise DataError(f"no piano-roll files (expected {', '.join(ROLL_SUFFIXES)})", path=folder)
    return files


def read_pieces(paths: Sequence[Path | str], *,
                frames_per_quarter: int = 4) -> list[tuple[Path, list[list[int]]]]:  # fmt: skip
    """``(file, piano roll)`` of every piano-roll file of ``paths`` (files or folders)."""
    return [(file, read_roll(file, frames_per_quarter=frames_per_quarter))
            for path in paths for file in roll_files(path)]  # fmt: skip


def check_pitches(frames: Sequence[Sequence[int]], low: int, high: int,
                path: Path | str | None = None) -> None:  # fmt: skip
    """Refuse a pitch outside ``low … high``, naming its frame (and file)."""
    for t, frame in enumerate(frames):
        for pitch in frame:
            if not low <= pitch <= high:
                raise DataError(f"frame {t + 1}: pitch {pitch} is outside the range {low}..{high} "
                                "(--low/--high set the model's pitches)", path=path)  # fmt: skip


# --------------------------------------------------------------------------- writing pieces


def write_piece(frames: Sequence[Sequence[int]], path: Path, *, low: int, high: int,
                frames_per_quarter: int = 4) -> None:  # fmt: skip
    """Write a piece whole, as a Standard MIDI File or (``.png``) a piano-roll image of
    the pitches ``low … high``; see :func:`write_atomically`."""
    if path.suffix.lower() == ".png":
        write_atomically(path, lambda partial: write_png(frames, partial, low, high))
    else:
        write_atomically(path, lambda partial: write_midi(frames, partial,
                                                          frames_per_quarter=frames_per_quarter))  # fmt: skip


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` into a temporary file beside ``path``, then rename it to ``path``; on any
    error or interrupt the temporary file goes and ``path`` is untouched. A missing
    folder is created. Errors name ``--out``, the flag that names such files."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"--out: cannot create the folder {path.parent}: "
                        f"{error.strerror or error}") from None  # fmt: skip
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # the suffix picks the format
    try:
        write(partial)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise DataError(f"--out: cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_png(frames: Sequence[Sequence[int]], path: Path, low: int, high: int) -> None:
    """A piano-roll image of the pitches ``low … high``: time across, pitch up (needs
    matplotlib, the ``plot`` extra)."""
    try:
        import numpy as np
        from matplotlib.figure import Figure
    except ImportError:
        raise DataError("--out: a .png needs matplotlib (pip install 'rnnkit[plot]'), or "
                        "write a .mid") from None  # fmt: skip
    roll = np.zeros((high - low + 1, len(frames)))  # (P, T)
    for t, frame in enumerate(frames):
        roll[[pitch - low for pitch in frame], t] = 1.0
    figure = Figure(figsize=(max(4.0, min(20.0, len(frames) / 16)), 4), dpi=100)
    axes = figure.add_subplot()
    axes.imshow(roll, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                extent=(0, len(frames), low - 0.5, high + 0.5))  # fmt: skip
    axes.set_xlabel("frame")
    axes.set_ylabel("MIDI pitch")
    figure.tight_layout()
    figure.savefig(path)
