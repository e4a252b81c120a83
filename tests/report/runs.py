"""Tiny trained runs of each task (seconds each), made through ``rnnkit train``."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

from rnnkit.cli.main import main
from rnnkit.data.formats.midi import read_roll_text, roll_text, write_midi
from tests.models.fixtures import FIXTURES, lines, reviews


def _train(*argv: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(["train", *argv, "--progress", "off", "--no-report"])
    assert status == 0, f"rnnkit train {' '.join(argv)} exited with {status}"


def classify(folder: Path) -> Path:
    sample = str(FIXTURES / "models_rotten_tomatoes_sample.tsv")
    out = folder / "classify"
    _train("classify", "--data", sample, sample, sample, "--comment", "#", "--out", str(out),
           "--batch-size", "4", "--embed", "8", "--hidden", "12", "--min-freq", "1",
           "--lr", "0.02", "--max-steps", "12", "--grad-clip", "0.3")  # fmt: skip
    return out


def lm(folder: Path) -> Path:
    text = folder / "song.txt"
    text.write_text("\n".join(lines("models_tempest_song.txt") * 12) + "\n")
    out = folder / "lm"
    _train("lm", "--data", str(text), "--out", str(out), "--batch-size", "2", "--steps", "12",
           "--embed", "8", "--hidden", "24", "--lr", "0.01", "--max-steps", "12")  # fmt: skip
    return out


def tag(folder: Path) -> Path:
    out = folder / "tag"
    _train("tag", "--data", str(FIXTURES / "tagger_wnut16_sample.txt"), "--comment", "# ",
           "--split-seed", "1",
           "--out", str(out), "--batch-size", "2", "--embed", "8", "--hidden", "12",
           "--lr", "0.01", "--max-steps", "6", "--min-freq", "1")  # fmt: skip
    return out


def forecast(folder: Path) -> Path:
    out = folder / "forecast"
    _train("forecast", "--data", str(FIXTURES / "models_airpassengers.csv"), "--out", str(out),
           "--window", "24", "--horizon", "12", "--transform", "log", "--hidden", "8",
           "--batch-size", "16", "--max-steps", "6")  # fmt: skip
    return out


def seq2seq(folder: Path) -> Path:
    rows = [line.replace(" ", "\t", 1) for line in lines("seq2seq_cmudict_sample.dict")]
    data = folder / "g2p.tsv"
    data.write_text("\n".join(rows) + "\n")
    out = folder / "seq2seq"
    _train("seq2seq", "--data", str(data), "--out", str(out), "--batch-size", "4",
           "--embed", "8", "--hidden", "16", "--lr", "0.01", "--attention", "general",
           "--max-steps", "6", "--max-output", "12")  # fmt: skip
    return out


def music(folder: Path) -> Path:
    frames = read_roll_text(FIXTURES / "models_bwv66_6_roll.txt")
    parts = [folder / "train.txt", folder / "valid.mid", folder / "test.txt"]
    parts[0].write_text(roll_text(frames[:96]))
    write_midi(frames[96:120], parts[1])
    parts[2].write_text(roll_text(frames[120:]))
    out = folder / "music"
    _train("music", "--data", *map(str, parts), "--out", str(out), "--embed", "8",
           "--hidden", "16", "--batch-size", "1", "--lr", "0.01", "--max-steps", "4",
           "--low", "40", "--high", "80")  # fmt: skip
    return out


def seqclass(folder: Path) -> Path:
    sample = str(FIXTURES / "seqclass_japanese_vowels_sample.ts")
    out = folder / "seqclass"
    _train("seqclass", "--data", sample, sample, sample, "--out", str(out), "--batch-size", "8",
           "--hidden", "16", "--lr", "0.02", "--max-steps", "10", "--bidirectional")  # fmt: skip
    return out


def caption(folder: Path) -> Path:
    data = folder / "reviews.csv"
    quoted = ['"' + text.replace('"', '""') + '"' for _, text in reviews()]
    rows = "".join(f"{t},{label}\n" for t, (label, _) in zip(quoted, reviews(), strict=True))
    data.write_text("text,label\n" + rows)
    out = folder / "caption"
    _train("caption", "--data", str(data), "--out", str(out), "--batch-size", "4",
           "--embed", "8", "--hidden", "16", "--condition-embed", "4", "--min-freq", "1",
           "--lr", "0.01", "--max-steps", "4")  # fmt: skip
    return out


RUNS: dict[str, Callable[[Path], Path]] = {
    "classify": classify,
    "lm": lm,
    "tag": tag,
    "forecast": forecast,
    "seq2seq": seq2seq,
    "music": music,
    "seqclass": seqclass,
    "caption": caption,
}
