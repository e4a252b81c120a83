"""The hostile inputs of ``test_hostile_input.py``: files to write, flags to type, run
folders to damage, each with the substring its one-line refusal must hold.

Each maker writes into a folder the test owns (``tmp_path``), so the tables stay plain
data and the test compares that folder before and after the refused command.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Make = Callable[[Path], object]  # what a maker returns is ignored


def text(content: str | bytes) -> Make:
    def write(path: Path) -> None:
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)

    return write


def npz(**arrays: object) -> Make:
    def write(path: Path) -> None:
        with path.open("wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]

    return write


def folder(path: Path) -> None:
    path.mkdir()


def nothing(path: Path) -> None:
    """A path that does not exist."""


def symlink_loop(path: Path) -> None:
    # a → b → a: opening either fails with ELOOP, it never resolves.
    os.symlink(path.with_name(path.name + ".b"), path)
    os.symlink(path, path.with_name(path.name + ".b"))


# --- valid data per task (the flag cases start from these) ------------------------

WORDS = ["good", "bad", "film", "plot", "slow", "fast", "witty", "dull", "long", "short"]


def reviews(rows: int = 24) -> str:
    lines = ["text,label"]
    for i in range(rows):
        label = "pos" if i % 2 else "neg"
        lines.append(f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} {label}ish film,{label}")
    return "\n".join(lines) + "\n"


def months(rows: int = 60) -> str:
    lines = ["month,passengers"]
    for i in range(rows):
        lines.append(f"{1949 + i // 12}-{i % 12 + 1:02d},{100 + i + 10 * (i % 12)}")
    return "\n".join(lines) + "\n"


def conll(sentences: int = 20) -> str:
    blocks = []
    for i in range(sentences):
        blocks.append(f"John\tB-PER\nSmith\tI-PER\nvisited\tO\nParis{i}\tB-LOC\n")
    return "\n".join(blocks)


def pairs(rows: int = 30) -> str:
    return "".join(f"{w}{i % 3}\t{' '.join(w.upper())} {i % 3}\n" for i, w in
                   enumerate(WORDS * 3))  # fmt: skip


TS_HEADER = "@problemName x\n@timeStamps false\n@univariate false\n@classLabel true a b\n@data\n"


def ts(rows: int = 20) -> str:
    lines = [f"{i},{i + 1},{i % 5}:{i * 2 % 3},{i % 4},{i % 7}:{'ab'[i % 2]}" for i in range(rows)]
    return TS_HEADER + "\n".join(lines) + "\n"


def roll(frames: int = 64) -> str:
    chords = ("60 64 67", "62 65 69", "59 62 67", "60 64 67 72")
    return "".join(chords[(i // 4) % 4] + "\n" for i in range(frames))


LM_TEXT = "Full fathom five thy father lies; of his bones are coral made.\n" * 40

#: One valid file per task, and the flags that keep its dry run or its training small.
GOOD: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "classify": ("good.csv", reviews(), ("--min-freq", "1")),
    "seqclass": ("good.ts", ts(), ()),
    "forecast": ("good.csv", months(), ("--window", "12", "--horizon", "6")),
    "tag": ("good.conll", conll(), ()),
    "lm": ("good.txt", LM_TEXT, ("--batch-size", "2", "--steps", "8")),
    "caption": ("good.csv", reviews(), ()),
    "music": ("good.txt", roll(), ("good.txt", "good.txt")),  # one piece: TRAIN VALID TEST
    "seq2seq": ("good.tsv", pairs(), ()),
}


@dataclass(frozen=True)
class DataCase:
    """``rnnkit train TASK --data NAME --dry-run`` on a hostile file."""

    id: str
    task: str
    name: str
    make: Make
    expect: str
    extra: tuple[str, ...] = ()


# Every byte value, the ones UTF-8 never starts with first: not UTF-8 from byte 0 on
# line 1, not a zip, not MIDI.
GARBAGE = (bytes(range(128, 256)) + bytes(range(128))) * 8
NULS = b"\0" * 4096
LONG = "x" * 2_000_000  # one 2 MB line

DATA_CASES = [
    # classify: CSV/TSV/JSONL tables
    DataCase("classify-empty", "classify", "empty.csv", text(""), "empty.csv: empty file"),
    DataCase("classify-header-only", "classify", "header.csv", text("text,label\n"), "header.csv"),
    DataCase("classify-garbage", "classify", "garbage.csv", text(GARBAGE), "garbage.csv:1:"),
    DataCase("classify-latin1", "classify", "latin1.csv", text(b"text,label\ncaf\xe9,pos\n"),
             "latin1.csv:2: not UTF-8"),
    DataCase("classify-utf16", "classify", "utf16.csv",
             text("text,label\nfine,pos\n".encode("utf-16")), "utf16.csv:1: not UTF-8"),
    DataCase("classify-nul-in-row", "classify", "nul.csv", text(reviews().replace("good", "go\0od", 1)),
             "nul.csv:2:"),
    DataCase("classify-nul-file", "classify", "nuls.csv", text(NULS), "nuls.csv"),
    DataCase("classify-missing-column", "classify", "nocol.csv",
             text("text,sentiment\nfine,pos\n"), "nocol.csv:1: no column 'label'"),
    DataCase("classify-duplicate-header", "classify", "dup.csv",
             text("text,label,label\nfine,pos,neg\n"), "dup.csv:1:"),
    DataCase("classify-ragged-row", "classify", "ragged.csv",
             text("text,label\nfine,pos\nbad,neg,extra\n"), "ragged.csv:3:"),
    DataCase("classify-short-row", "classify", "short.csv",
             text("text,label\nfine,pos\nbad\n"), "short.csv:3:"),
    DataCase("classify-empty-label", "classify", "nolabel.csv",
             text('text,label\n"good film",pos\n"bad",\n'), "nolabel.csv:3: empty label"),
    DataCase("classify-one-class", "classify", "oneclass.csv",
             text("text,label\n" + "".join(f"film {i},pos\n" for i in range(30))),
             "one label"),
    DataCase("classify-long-line", "classify", "long.csv", text(f"text,label\n{LONG},pos\n"),
             "long.csv:2:"),
    DataCase("classify-unclosed-quote", "classify", "quote.csv",
             text('text,label\nfine,pos\n"never closed,neg\n'), "quote.csv:3:"),
    DataCase("classify-jsonl-broken", "classify", "broken.jsonl",
             text('{"text": "a", "label": "x"}\n{"text": "b", "label"\n'),
             "broken.jsonl:2: invalid JSON"),
    DataCase("classify-jsonl-not-object", "classify", "array.jsonl",
             text('{"text": "a", "label": "x"}\n[1, 2]\n'), "array.jsonl:2:"),
    DataCase("classify-jsonl-deep", "classify", "deep.jsonl", text("[" * 100_000 + "\n"),
             "deep.jsonl:1:"),
    DataCase("classify-jsonl-number-label", "classify", "numlabel.jsonl",
             text('{"text": "a", "label": {"x": 1}}\n'), "numlabel.jsonl:1:"),
    DataCase("classify-folder", "classify", "adir", folder, "adir"),
    DataCase("classify-missing-path", "classify", "nowhere.csv", nothing, "nowhere.csv: no such"),
    DataCase("classify-symlink-loop", "classify", "loop.csv", symlink_loop, "loop.csv"),
    # tag: CoNLL
    DataCase("tag-empty", "tag", "empty.conll", text(""), "empty.conll: empty file"),
    DataCase("tag-blank-lines-only", "tag", "blank.conll", text("\n\n\t\n\n"), "blank.conll"),
    DataCase("tag-garbage", "tag", "garbage.conll", text(GARBAGE), "garbage.conll:1:"),
    DataCase("tag-nul-file", "tag", "nuls.conll", text(NULS), "nuls.conll"),
    DataCase("tag-wrong-columns", "tag", "ragged.conll", text("John\tB-PER\tX\nran\n"),
             "ragged.conll:2: line has 1 columns"),
    DataCase("tag-bad-bio", "tag", "bio.conll", text("John\tB-PER\nran\tO\n\nto\tO\nParis\tI-LOC\n"),
             "bio.conll:5: tag 'I-LOC' after 'O'"),
    DataCase("tag-malformed-b-tag", "tag", "dangling.conll",
             text("John\tB-\nran\tO\n\nto\tO\nParis\tI-LOC\n"), "dangling.conll:1:"),
    DataCase("tag-tag-column-out-of-range", "tag", "col.conll", text(conll()), "col.conll:1: tag_column=5",
             ("--tag-column", "5")),
    DataCase("tag-missing-path", "tag", "nowhere.conll", nothing, "nowhere.conll: no such"),
    DataCase("tag-folder", "tag", "adir", folder, "adir"),
    DataCase("tag-three-one-missing", "tag", "good.conll", text(conll()), "gone.conll",
             ("good.conll", "gone.conll")),
    # lm: UTF-8 text or a folder of it
    DataCase("lm-empty", "lm", "empty.txt", text(""), "empty.txt: empty file"),
    DataCase("lm-whitespace-only", "lm", "blank.txt", text("  \n\n\t\n"), "too few"),
    DataCase("lm-latin1", "lm", "latin1.txt", text(b"caf\xe9\n"), "latin1.txt:1: not UTF-8"),
    DataCase("lm-garbage", "lm", "garbage.txt", text(GARBAGE), "garbage.txt:1:"),
    DataCase("lm-too-short", "lm", "short.txt", text("ab\n"), "too few for 2 streams",
             ("--batch-size", "2", "--steps", "8")),
    DataCase("lm-folder-without-txt", "lm", "adir", folder, "adir: folder has no *.txt files"),
    DataCase("lm-missing-path", "lm", "nowhere.txt", nothing, "nowhere.txt: no such file"),
    DataCase("lm-symlink-loop", "lm", "loop.txt", symlink_loop, "loop.txt"),
    DataCase("lm-three-one-missing", "lm", "good.txt", text(LM_TEXT), "gone.txt",
             ("good.txt", "gone.txt")),
    # forecast: series CSV
    DataCase("forecast-empty", "forecast", "empty.csv", text(""), "empty.csv: empty file"),
    DataCase("forecast-header-only", "forecast", "header.csv", text("month,passengers\n"),
             "header.csv"),
    DataCase("forecast-garbage", "forecast", "garbage.csv", text(GARBAGE), "garbage.csv:1:"),
    DataCase("forecast-not-a-number", "forecast", "text.csv",
             text("month,passengers\n1949-01,112\n1949-02,abc\n1949-03,132\n"),
             "text.csv:3: 'abc' in column 'passengers' is not a number"),
    DataCase("forecast-gap", "forecast", "gap.csv",
             text("month,passengers\n1949-01,112\n1949-02,\n1949-03,132\n"),
             "gap.csv:3: missing value"),
    DataCase("forecast-nan", "forecast", "nan.csv",
             text(months().replace(",111\n", ",nan\n", 1)), "nan.csv:"),
    DataCase("forecast-inf", "forecast", "inf.csv",
             text(months().replace(",111\n", ",inf\n", 1)), "inf.csv:"),
    DataCase("forecast-huge-value", "forecast", "huge.csv",
             text(months().replace(",111\n", ",1e400\n", 1)), "huge.csv:"),
    DataCase("forecast-ragged-row", "forecast", "ragged.csv",
             text("month,passengers\n1949-01,112\n1949-02,118,5\n1949-03,132\n"), "ragged.csv:3:"),
    DataCase("forecast-duplicate-header", "forecast", "dup.csv",
             text("month,passengers,passengers\n1949-01,1,2\n1949-02,3,4\n"), "dup.csv:1:"),
    DataCase("forecast-missing-column", "forecast", "col.csv", text(months()), "nosuch",
             ("--column", "nosuch")),
    DataCase("forecast-duplicate-date", "forecast", "twice.csv",
             text(months().replace("1949-02,", "1949-01,", 1)), "twice.csv:3:"),
    DataCase("forecast-nul-in-row", "forecast", "nul.csv",
             text("month,passengers\n1949-01,1\0\n1949-02,3\n"), "nul.csv:2:"),
    DataCase("forecast-long-line", "forecast", "long.csv",
             text(f"month,passengers\n1949-01,{LONG}\n"), "long.csv:2:"),
    DataCase("forecast-too-short", "forecast", "short.csv", text(months(8)), "--window",
             ("--window", "12", "--horizon", "6")),
    DataCase("forecast-missing-path", "forecast", "nowhere.csv", nothing, "nowhere.csv: no such"),
    # seq2seq: TSV pairs
    DataCase("seq2seq-empty", "seq2seq", "empty.tsv", text(""), "empty.tsv: empty file"),
    DataCase("seq2seq-missing-tab", "seq2seq", "notab.tsv", text("abc\tA B C\nde D E\n"),
             "notab.tsv:2:"),
    DataCase("seq2seq-three-fields", "seq2seq", "three.tsv", text("abc\tA B C\nde\tD E\tF\n"),
             "three.tsv:2: line has 3 tab-separated fields"),
    DataCase("seq2seq-empty-source", "seq2seq", "nosource.tsv", text("abc\tA B C\n\tD E\n"),
             "nosource.tsv:2:"),
    DataCase("seq2seq-empty-target", "seq2seq", "notarget.tsv", text("abc\tA B C\nde\t\n"),
             "notarget.tsv:2:"),
    DataCase("seq2seq-garbage", "seq2seq", "garbage.tsv", text(GARBAGE), "garbage.tsv:1:"),
    DataCase("seq2seq-blank-only", "seq2seq", "blank.tsv", text("\n\n\n"), "blank.tsv"),
    DataCase("seq2seq-folder", "seq2seq", "adir", folder, "adir"),
    # seqclass: .ts and NPZ
    DataCase("seqclass-ts-empty", "seqclass", "empty.ts", text(""), "empty.ts: empty file"),
    DataCase("seqclass-ts-malformed-header", "seqclass", "header.ts",
             text("@problemName x\n@timeStamps maybe\n@classLabel true a b\n@data\n1,2:a\n"),
             "header.ts:2:"),
    DataCase("seqclass-ts-no-data-line", "seqclass", "nodata.ts",
             text("@problemName x\n@classLabel true a b\n"), "nodata.ts"),
    DataCase("seqclass-ts-undeclared-label", "seqclass", "label.ts",
             text("@problemName x\n@timeStamps false\n@classLabel true a b\n@data\n1,2,3:c\n"),
             "label.ts:5: class label 'c' is not declared"),
    DataCase("seqclass-ts-mismatched-dimensions", "seqclass", "dims.ts",
             text(TS_HEADER + "1,2:3,4:a\n1,2:3,4:5,6:b\n"), "dims.ts:7:"),
    DataCase("seqclass-ts-declared-dimensions", "seqclass", "declared.ts",
             text("@problemName x\n@dimensions 3\n@classLabel true a b\n@data\n1,2:3,4:a\n"),
             "declared.ts:5:"),
    DataCase("seqclass-ts-not-a-number", "seqclass", "word.ts",
             text(TS_HEADER + "1,x,3:a\n"), "word.ts:6:"),
    DataCase("seqclass-ts-nan", "seqclass", "nan.ts", text(TS_HEADER + "1,nan,3:a\n"),
             "nan.ts:6:"),
    DataCase("seqclass-ts-inf", "seqclass", "inf.ts", text(TS_HEADER + "1,inf,3:a\n1,2,3:b\n"),
             "inf.ts:6:"),
    DataCase("seqclass-ts-one-class", "seqclass", "one.ts",
             text(TS_HEADER + "".join(f"{i},{i + 1},2:a\n" for i in range(20))), "one label"),
    DataCase("seqclass-ts-garbage", "seqclass", "garbage.ts", text(GARBAGE), "garbage.ts:1:"),
    DataCase("seqclass-ts-long-line", "seqclass", "long.ts",
             text(TS_HEADER + ",".join(["1"] * 400_000) + ":a\n"), "long.ts"),
    DataCase("seqclass-npz-not-npz", "seqclass", "text.npz", text("just text\n"),
             "text.npz: not a readable .npz file"),
    DataCase("seqclass-npz-empty", "seqclass", "empty.npz", text(b""), "empty.npz: empty file"),
    DataCase("seqclass-npz-garbage", "seqclass", "garbage.npz", text(b"PK\x03\x04" + GARBAGE),
             "garbage.npz"),
    DataCase("seqclass-npz-wrong-arrays", "seqclass", "arrays.npz",
             npz(sequences=np.zeros((3, 4, 2))), "arrays.npz: no array 'x'"),
    DataCase("seqclass-npz-wrong-ndim", "seqclass", "ndim.npz",
             npz(x=np.zeros((3, 4)), lengths=np.array([4, 4, 4]), y=np.array([0, 1, 0])),
             "ndim.npz: x is"),
    DataCase("seqclass-npz-nan", "seqclass", "nan.npz",
             npz(x=np.full((3, 4, 2), np.nan), lengths=np.array([4, 4, 4]),
                 y=np.array([0, 1, 0])), "nan.npz: x[0, 0, 0]"),
    DataCase("seqclass-npz-bad-lengths", "seqclass", "lengths.npz",
             npz(x=np.zeros((3, 4, 2)), lengths=np.array([4, 9, 4]), y=np.array([0, 1, 0])),
             "lengths.npz: lengths[1]"),
    DataCase("seqclass-npz-object-array", "seqclass", "object.npz",
             npz(x=np.zeros((3, 4, 2)), lengths=np.array([4, 4, 4]),
                 y=np.array([{"a": 1}, None, 2], dtype=object)), "object.npz"),
    # music: piano-roll text and MIDI
    DataCase("music-empty", "music", "empty.txt", text(""), "empty.txt"),
    DataCase("music-not-a-pitch", "music", "roll.txt", text("60 64\nnot a roll\n"),
             "roll.txt:2: 'not' is not a MIDI pitch"),
    DataCase("music-pitch-out-of-range", "music", "high.txt", text("60 64\n60 200\n"),
             "high.txt:2:"),
    DataCase("music-negative-pitch", "music", "low.txt", text("60 64\n-3 60\n"), "low.txt:2:"),
    DataCase("music-garbage-midi", "music", "garbage.mid", text(GARBAGE), "garbage.mid"),
    DataCase("music-truncated-midi", "music", "cut.mid", text(b"MThd\x00\x00\x00\x06\x00"),
             "cut.mid"),
    DataCase("music-nul-file", "music", "nuls.txt", text(NULS), "nuls.txt"),
    DataCase("music-folder-empty", "music", "adir", folder, "adir"),
    # caption: labelled texts or feature vectors
    DataCase("caption-empty", "caption", "empty.csv", text(""), "empty.csv: empty file"),
    DataCase("caption-npz-no-texts", "caption", "vectors.npz", npz(features=np.zeros((3, 2))),
             "vectors.npz: no array 'texts'"),
    DataCase("caption-npz-nan-features", "caption", "nan.npz",
             npz(features=np.full((3, 2), np.nan), texts=np.array(["a b", "c d", "e f"])),
             "nan.npz"),
    DataCase("caption-npz-count-mismatch", "caption", "count.npz",
             npz(features=np.zeros((3, 2)), texts=np.array(["a b", "c d"])), "count.npz"),
    DataCase("caption-npz-not-npz", "caption", "text.npz", text("just text\n"), "text.npz"),
    DataCase("caption-vector-not-a-number", "caption", "vec.csv",
             text("text,f1,f2\nhello there,0.5,x\n"), "vec.csv:2:", ("--condition-kind", "vector")),
    DataCase("caption-missing-column", "caption", "nocol.csv", text("words,label\nhi,pos\n"),
             "nocol.csv:1:"),
]  # fmt: skip


@dataclass(frozen=True)
class FlagCase:
    """``rnnkit train TASK --data GOOD FLAGS`` (with ``--dry-run`` unless ``train``)."""

    id: str
    task: str
    flags: tuple[str, ...]
    expect: str
    train: bool = False  # really start training (into OUT): the check must come before


def _values(task: str, flag: str, values: tuple[str, ...], expect: str = "") -> list[FlagCase]:
    return [FlagCase(f"{task}{flag}={value}", task, (flag, value), expect or flag)
            for value in values]  # fmt: skip


BIG = "1000000000"
HUGE_INT = "99999999999999999999999999"

FLAG_CASES = [
    # sizes: refused by value, and by the memory they would take before any allocation
    *_values("classify", "--hidden", ("0", "-1", "nan", "1.5", "abc", HUGE_INT)),
    *_values("classify", "--embed", ("0", "-3", "x")),
    *_values("classify", "--layers", ("0", "-1", "1000", BIG)),
    *_values("classify", "--batch-size", ("0", "-1", "inf")),
    *_values("lm", "--batch-size", (BIG,)),
    FlagCase("classify--hidden=1e9-train", "classify", ("--hidden", BIG), "hidden", train=True),
    FlagCase("classify--embed=1e9-train", "classify", ("--embed", BIG), "embed", train=True),
    FlagCase("lm--hidden=1e9-train", "lm", ("--hidden", BIG), "hidden", train=True),
    # learning rates, momenta and other reals: finite and in range
    *_values("classify", "--lr", ("0", "-1", "nan", "inf", "1e300", "fast")),
    *_values("classify", "--gate-bias", ("nan", "inf", "-inf", "1e300")),
    *_values("classify", "--weight-decay", ("nan", "inf", "-1")),
    *_values("classify", "--grad-clip", ("0", "nan")),
    *_values("classify", "--dropout", ("1", "-0.1", "nan", "x")),
    *_values("classify", "--word-dropout", ("1.5", "nan")),
    *_values("classify", "--max-minutes", ("0", "-1", "nan")),
    *_values("classify", "--warmup", ("-1", "nan")),
    *_values("classify", "--patience", ("-1",)),
    *_values("classify", "--epochs", ("0", "nan")),
    *_values("classify", "--max-steps", ("0", "-5")),
    *_values("classify", "--eval-every", ("0",)),
    *_values("classify", "--accumulate", ("0", HUGE_INT)),
    *_values("classify", "--seed", ("x", HUGE_INT)),
    *_values("classify", "--max-vocab", ("0", "1")),
    *_values("classify", "--max-length", ("0",)),
    *_values("classify", "--min-freq", ("0",)),
    # choices
    *_values("classify", "--cell", ("transformer", "")),
    *_values("classify", "--optimizer", ("lbfgs",)),
    *_values("classify", "--schedule", ("exp",)),
    *_values("classify", "--precision", ("fp8",)),
    *_values("classify", "--pooling", ("median",)),
    *_values("classify", "--progress", ("loud",)),
    *_values("seq2seq", "--attention", ("luong",)),
    *_values("lm", "--level", ("syllable",)),
    # truncated BPTT: K1 or K1,K2 with K2 ≥ K1
    *_values("lm", "--tbptt", ("0", "3,0", "a,b", "5,3", "1,2,3", "", "-1")),
    *_values("lm", "--steps", ("0",)),
    # devices torch cannot use
    *[FlagCase(f"classify--device={d}", "classify", ("--device", d), "device", train=True)
      for d in ("mps", "cuda:99", "garbage", "cuda:-1", "tpu")],
    # task flags
    *_values("forecast", "--window", ("0", "100000")),
    *_values("forecast", "--horizon", ("0", "100000")),
    *_values("forecast", "--valid", ("-1",)),
    *_values("forecast", "--season", (BIG, "0")),
    *_values("music", "--smoothing", ("inf", "nan", "0")),
    *_values("music", "--threshold", ("1", "nan")),
    *_values("music", "--low", ("200", "-1")),
    *_values("music", "--frames-per-quarter", ("0",)),
    FlagCase("music--low-above-high", "music", ("--low", "80", "--high", "40"),
             "expected low ≤ high"),
    *_values("seq2seq", "--teacher-forcing", ("2", "-1", "nan")),
    *_values("seq2seq", "--length-penalty", ("nan", "inf")),
    *_values("seq2seq", "--beam", ("0",)),
    *_values("seq2seq", "--max-output", ("0",)),
    *_values("seqclass", "--valid-fraction", ("1", "nan")),
    *_values("caption", "--condition-embed", ("0",)),
    *_values("caption", "--condition-state", ("maybe",)),
    # --data and --dataset
    FlagCase("classify--data-two-files", "classify", ("--data", "good.csv", "good.csv"), "--data"),
    FlagCase("classify--data-four-files", "classify", ("--data", *["good.csv"] * 4), "--data"),
    FlagCase("classify--dataset-unknown", "classify", ("--dataset", "nosuch"), "nosuch"),
]  # fmt: skip


@dataclass(frozen=True)
class ConfigCase:
    """``rnnkit train classify --data GOOD --config NAME --dry-run`` on a hostile TOML."""

    id: str
    name: str
    make: Make
    expect: str


CONFIG_CASES = [
    ConfigCase("missing-file", "nowhere.toml", nothing, "--config"),
    ConfigCase("folder", "adir.toml", folder, "--config"),
    ConfigCase("invalid-toml", "bad.toml", text("[model\nhidden = 3\n"), "bad.toml"),
    ConfigCase("not-utf8", "latin1.toml", text(b"# caf\xe9\n"), "latin1.toml"),
    ConfigCase("garbage", "garbage.toml", text(GARBAGE), "garbage.toml"),
    ConfigCase("unknown-key", "unknown.toml", text("[model]\nhidden_size = 3\n"),
               "model.hidden_size"),
    ConfigCase("unknown-table", "table.toml", text("[modle]\nhidden = 3\n"), "modle"),
    ConfigCase("string-for-int", "string.toml", text('[model]\nhidden = "big"\n'), "model.hidden"),
    ConfigCase("float-for-int", "float.toml", text("[model]\nhidden = 1e12\n"), "model.hidden"),
    ConfigCase("huge-int", "huge.toml", text("[model]\nhidden = 1000000000\n"), "model.hidden"),
    ConfigCase("bool-for-int", "bool.toml", text("[model]\nhidden = true\n"), "model.hidden"),
    ConfigCase("table-for-scalar", "nested.toml", text("[model.hidden]\na = 1\n"),
               "model.hidden"),
    ConfigCase("array-for-scalar", "array.toml", text("[model]\nhidden = [1, 2]\n"),
               "model.hidden"),
    ConfigCase("scalar-for-table", "scalar.toml", text("model = 3\n"), "model"),
    ConfigCase("lr-nan", "lrnan.toml", text("[trainer.optimizer]\nlr = nan\n"), "lr"),
    ConfigCase("lr-inf", "lrinf.toml", text("[trainer.optimizer]\nlr = inf\n"), "lr"),
    ConfigCase("momentum-nan", "momentum.toml",
               text('[trainer.optimizer]\nname = "sgd"\nmomentum = nan\n'), "momentum"),
    ConfigCase("gate-bias-nan", "gate.toml", text("[model]\ngate_bias = nan\n"), "gate_bias"),
    ConfigCase("epochs-negative", "epochs.toml", text("[trainer]\nepochs = -1\n"),
               "epochs.toml: trainer.epochs"),
    ConfigCase("other-kind", "kind.toml", text('kind = "lm"\n'), "kind"),
    ConfigCase("deep-array", "deep.toml", text("x = " + "[" * 100_000 + "\n"), "deep.toml"),
    # 60 MB of comment before a wrong value: refused by its size before it is parsed.
    ConfigCase("huge-file", "big.toml",
               text("# " + "x" * 60_000_000 + '\n[model]\nhidden = "x"\n'), "big.toml: over 1 MiB"),
]  # fmt: skip


# --- damaging a run folder as an attacker would: change a file, then re-hash ---------


def checkpoint_folders(run: Path) -> list[Path]:
    return [run / "checkpoints" / name for name in ("best", "last")
            if (run / "checkpoints" / name / "manifest.json").is_file()]  # fmt: skip


def manifest(folder: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((folder / "manifest.json").read_text())
    return loaded


def replace_listed(folder: Path, entry: str, data: bytes) -> None:
    """Overwrite the file ``entry`` ('weights', 'state') lists and re-hash the manifest."""
    record = manifest(folder)
    listed = record[entry]
    assert isinstance(listed, dict)
    (folder / listed["file"]).write_bytes(data)
    listed.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(record))


def replace_artifact(folder: Path, name: str, data: bytes) -> None:
    record = manifest(folder)
    artifacts = record["artifacts"]
    assert isinstance(artifacts, dict)
    listed = artifacts[name]
    (folder / listed["file"]).write_bytes(data)
    listed.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(record))


def edit_weights(folder: Path, change: Callable[[dict[str, object]], None]) -> None:
    import safetensors.torch

    listed = manifest(folder)["weights"]
    assert isinstance(listed, dict)
    weights = safetensors.torch.load((folder / listed["file"]).read_bytes())
    change(weights)  # type: ignore[arg-type]
    replace_listed(folder, "weights", safetensors.torch.save(weights))


def wrong_shape(weights: dict[str, object]) -> None:
    import torch

    name = next(iter(weights))
    weights[name] = torch.zeros(3, 5, 7)


def missing_key(weights: dict[str, object]) -> None:
    del weights[next(iter(weights))]


def extra_key(weights: dict[str, object]) -> None:
    import torch

    weights["intruder.weight"] = torch.zeros(2)


def nan_weights(weights: dict[str, object]) -> None:
    import torch

    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], float("nan"))  # type: ignore[arg-type]


class Payload:
    """What a hostile state file carries: an object whose unpickling runs code."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED",))


def pickled_state() -> bytes:
    return pickle.dumps({"step": 2, "payload": Payload()})


def empty_state() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({}, buffer)
    return buffer.getvalue()


def nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


RunDamage = Callable[[Path], object]


def each_checkpoint(damage: Callable[[Path], object]) -> RunDamage:
    def apply(run: Path) -> None:
        for folder in checkpoint_folders(run):
            damage(folder)

    return apply


def write_manifest(data: bytes) -> RunDamage:
    return each_checkpoint(lambda folder: (folder / "manifest.json").write_bytes(data))


def edit_manifest(change: Callable[[dict[str, object]], None]) -> RunDamage:
    def damage(folder: Path) -> None:
        record = manifest(folder)
        change(record)
        (folder / "manifest.json").write_text(json.dumps(record))

    return each_checkpoint(damage)


def truncate_weights(folder: Path) -> None:
    listed = manifest(folder)["weights"]
    assert isinstance(listed, dict)
    path = folder / listed["file"]
    path.write_bytes(path.read_bytes()[:100])


def truncate_rehashed(folder: Path) -> None:
    listed = manifest(folder)["weights"]
    assert isinstance(listed, dict)
    replace_listed(folder, "weights", (folder / listed["file"]).read_bytes()[:100])


def remove_manifests(run: Path) -> None:
    for folder in checkpoint_folders(run):
        (folder / "manifest.json").unlink()


def write_config(content: str) -> RunDamage:
    return lambda run: (run / "config.toml").write_text(content)


def edit_config(old: str, new: str) -> RunDamage:
    def damage(run: Path) -> None:
        config = (run / "config.toml").read_text()
        assert old in config, old
        (run / "config.toml").write_text(config.replace(old, new, 1))

    return damage


def link_last_elsewhere(run: Path) -> None:
    """checkpoints/last as a link to another run's checkpoint, outside the folder."""
    import shutil

    last = run / "checkpoints" / "last"
    other = run.parent / "other-run" / "checkpoints"
    other.mkdir(parents=True)
    shutil.copytree(last, other / "last")
    shutil.rmtree(last)
    os.symlink(other / "last", last)


def set_step(record: dict[str, object]) -> None:
    record["step"] = -1


def traversal(record: dict[str, object]) -> None:
    weights = record["weights"]
    assert isinstance(weights, dict)
    weights["file"] = "../../config.toml"


DAMAGES: dict[str, tuple[RunDamage, str]] = {
    # name → (damage, what the refusal names)
    "invalid-config": (write_config("kind = [unclosed\n"), "config.toml"),
    "config-unknown-kind": (edit_config('kind = "', 'kind = "zz'), "config.toml"),
    "config-wrong-type": (edit_config("hidden = ", 'hidden = "x" #'), "model.hidden"),
    "manifest-missing": (remove_manifests, "checkpoint"),
    "manifest-not-json": (write_manifest(b"{not json"), "manifest.json"),
    "manifest-not-utf8": (write_manifest(b'{"format": "\xff"}'), "manifest.json"),
    "manifest-deeply-nested": (write_manifest(nested_json(100_000)), "manifest.json"),
    "manifest-huge": (write_manifest(b'{"format": "' + b"x" * 50_000_000 + b'"}'),
                      "manifest.json"),
    "manifest-wrong-schema": (write_manifest(b'{"format": "rnnkit-checkpoint", "version": 1}'),
                              "manifest.json"),
    "manifest-negative-step": (edit_manifest(set_step), "manifest.json"),
    "manifest-path-traversal": (edit_manifest(traversal), "manifest.json"),
    "weights-truncated": (each_checkpoint(truncate_weights), "checkpoints/"),
    "weights-truncated-rehashed": (each_checkpoint(truncate_rehashed), "checkpoints/"),
    "weights-wrong-shape": (each_checkpoint(lambda f: edit_weights(f, wrong_shape)),
                            "checkpoints/"),
    "weights-missing-key": (each_checkpoint(lambda f: edit_weights(f, missing_key)),
                            "checkpoints/"),
    "weights-extra-key": (each_checkpoint(lambda f: edit_weights(f, extra_key)),
                          "checkpoints/"),
    "weights-nan": (each_checkpoint(lambda f: edit_weights(f, nan_weights)), "checkpoints/"),
    "state-pickled-object": (each_checkpoint(lambda f: replace_listed(f, "state",
                                                                      pickled_state())),
                             "state-"),
    "state-empty-dict": (each_checkpoint(lambda f: replace_listed(f, "state", empty_state())),
                         "state-"),
    "vocab-not-json": (each_checkpoint(lambda f: replace_artifact(f, "vocab.json", b"{oops")),
                       "vocab.json"),
    "vocab-deeply-nested": (each_checkpoint(lambda f: replace_artifact(
        f, "vocab.json", nested_json(100_000))), "vocab.json"),
    "last-symlinked-out": (link_last_elsewhere, "checkpoints/last"),
}  # fmt: skip
