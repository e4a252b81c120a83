"""Piano-roll files: the text format, Standard MIDI Files written and parsed back, folders
of pieces, and generated pieces written whole (MIDI or PNG)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.errors import DataError
from rnnkit.data.formats.midi import (
    check_pitches,
    midi_bytes,
    read_midi,
    read_pieces,
    read_roll,
    read_roll_text,
    roll_files,
    roll_text,
    write_midi,
    write_piece,
)
from tests.data.formats.damage import contents, read_or_data_error
from tests.models.fixtures import FIXTURES, lines

CHORALE = FIXTURES / "models_bwv66_6_roll.txt"


def test_text_format_reads_the_fixture() -> None:
    frames = read_roll_text(CHORALE)
    assert len(frames) == len(lines("models_bwv66_6_roll.txt")) == 144
    assert frames[0] == [57, 64, 73] and frames[2] == [56, 59, 64, 71]


def test_text_format_silence_comments_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "piece.txt"
    path.write_text("# a header\n60 64\n-\n\n67 60 60\n")
    assert read_roll_text(path) == [[60, 64], [], [60, 67]]  # a blank line is not a frame
    path.write_text(roll_text([[60, 64], [], [67]], header="made here"))
    assert path.read_text() == "# made here\n60 64\n-\n67\n"
    assert read_roll_text(path) == [[60, 64], [], [67]]


@pytest.mark.parametrize(
    ("text", "message"),
    [("60 x\n", ":1: 'x' is not a MIDI pitch"), ("60\n128\n", ":2: pitch 128 is outside"),
     ("# only a comment\n", "no frames")],
)  # fmt: skip
def test_text_format_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_roll_text(path)


def test_midi_bytes_by_hand() -> None:
    # One C held for two frames, then silence: note on, note off 240 ticks later.
    data = midi_bytes([[60], [60], []], frames_per_quarter=4, bpm=120)
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
    assert data[:14] == header
    track = data[22:]
    assert data[14:18] == b"MTrk" and struct.unpack(">I", data[18:22])[0] == len(track)
    tempo = b"\x00\xff\x51\x03" + (500_000).to_bytes(3, "big")  # 120 bpm: 0.5 s a quarter
    on = b"\x00\x90\x3c\x50"
    off = b"\x81\x70\x80\x3c\x00"  # delta 240 as a variable-length number: 0x81 0x70
    assert track == tempo + on + off + b"\x00\xff\x2f\x00"


def test_midi_round_trip_of_the_chorale(tmp_path: Path) -> None:
    frames = read_roll_text(CHORALE)
    path = tmp_path / "chorale.mid"
    write_midi(frames, path, frames_per_quarter=4)
    assert read_midi(path, frames_per_quarter=4) == frames
    assert read_roll(path) == frames  # by suffix
    # On a grid twice as coarse, every other frame survives.
    assert read_midi(path, frames_per_quarter=2) == frames[::2]


def _track(events: bytes) -> bytes:
    return b"MTrk" + struct.pack(">I", len(events)) + events


def test_read_midi_format_1_running_status_and_percussion(tmp_path: Path) -> None:
    header = b"MThd" + struct.pack(">IHHH", 6, 1, 2, 96)  # 96 ticks a quarter
    tempo = _track(b"\x00\xff\x51\x03\x07\xa1\x20\x00\xff\x2f\x00")
    # Running status (a second note-on without its status byte), note-on with velocity
    # 0 as note-off, a program change, and a drum on channel 10 that is skipped.
    notes = _track(
        b"\x00\xc0\x05"  # program change: one data byte
        b"\x00\x90\x3c\x40" b"\x00\x40\x40"  # C4 and E4 on (running status)
        b"\x00\x99\x24\x40"  # a kick drum on channel 10
        b"\x30\x80\x3c\x00"  # 48 ticks later C4 off
        b"\x30\x90\x40\x00"  # 48 more, E4 off (velocity 0)
        b"\x00\xff\x2f\x00"
    )  # fmt: skip
    path = tmp_path / "two.mid"
    path.write_bytes(header + tempo + notes)
    assert read_midi(path, frames_per_quarter=4) == [[60, 64], [60, 64], [64], [64]]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"RIFF0000", "expected the MThd header"),
     (b"MThd" + struct.pack(">IHHH", 6, 2, 1, 96), "MIDI format 2"),
     (b"MThd" + struct.pack(">IHHH", 6, 0, 1, 0xE728), "SMPTE"),
     (b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + _track(b"\x00\x90"), "truncated"),
     (b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + _track(b"\x00\xff\x2f\x00"), "no notes")],
)  # fmt: skip
def test_read_midi_errors(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.mid"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_midi(path)


def test_write_midi_checks_its_input() -> None:
    with pytest.raises(ValueError, match="frames_per_quarter"):
        midi_bytes([[60]], frames_per_quarter=0)
    with pytest.raises(ValueError, match=r"frames\[1\]"):
        midi_bytes([[60], [200]])


VALID_MIDI = midi_bytes([[60, 64], [60], [], [67]])


@given(contents(VALID_MIDI))
def test_damaged_midi_is_a_data_error_or_a_roll(content: bytes) -> None:
    frames = read_or_data_error(read_midi, content, "x.mid")
    assert frames is None or all(0 <= p <= 127 for frame in frames for p in frame)


@given(contents(b"# c\n60 64\n-\n67\n"))
def test_damaged_text_is_a_data_error_or_a_roll(content: bytes) -> None:
    frames = read_or_data_error(read_roll_text, content, "x.txt")
    assert frames is None or all(0 <= p <= 127 for frame in frames for p in frame)


@given(st.lists(st.lists(st.integers(0, 127), max_size=4), min_size=1, max_size=12))
def test_write_then_read_is_the_roll(frames: list[list[int]]) -> None:
    rolls = [sorted(set(frame)) for frame in frames]
    if not any(rolls):
        return  # a silent roll has no notes to read back
    last = max(t for t, frame in enumerate(rolls) if frame)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.mid"
        write_midi(rolls, path)
        assert read_midi(path) == rolls[: last + 1]


def test_a_folder_of_pieces_and_the_pitch_range(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("60 64\n-\n")
    write_midi([[62]], tmp_path / "a.mid")
    (tmp_path / "notes.md").write_text("not a piece")
    assert roll_files(tmp_path) == [tmp_path / "a.mid", tmp_path / "b.txt"]
    assert read_pieces([tmp_path]) == [(tmp_path / "a.mid", [[62]]), (tmp_path / "b.txt",
                                                                      [[60, 64], []])]  # fmt: skip
    check_pitches([[60, 64], []], 60, 64)
    with pytest.raises(DataError, match=r"^x.txt: frame 2: pitch 65 is outside the range 60\.\.64"):
        check_pitches([[60], [65]], 60, 64, "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no piano-roll files"):
        roll_files(tmp_path / "empty")


def test_write_piece_writes_midi_or_a_png_whole(tmp_path: Path) -> None:
    frames = [[60, 64], [60, 64], [], [62]]
    write_piece(frames, tmp_path / "new" / "piece.mid", low=60, high=64)
    assert read_midi(tmp_path / "new" / "piece.mid") == frames
    write_piece(frames, tmp_path / "piece.png", low=60, high=64)
    assert (tmp_path / "piece.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "piece.png"]  # no partials
