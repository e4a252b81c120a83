"""Every kind of bad data file reaches the user as one line naming the file, exit status 2.

The readers' own tests (tests/data/formats) cover each error in depth; these check
that each one travels through ``rnnkit train TASK --data FILE`` (``--dry-run``: the
data is read and checked, nothing is trained) to stderr as one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli.main import main


def text(content: str | bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)

    return write


def npz(**arrays: object) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]

    return write


CASES = [
    ("lm", "latin1.txt", text(b"caf\xe9\n"), "latin1.txt:1: not UTF-8: byte 0xe9"),
    ("lm", "empty.txt", text(""), "empty.txt: empty file"),
    ("lm", "folder", lambda p: p.mkdir(), "folder: folder has no *.txt files"),
    ("lm", "nowhere.txt", lambda p: None, "nowhere.txt: no such file"),
    ("classify", "nolabel.csv", text('text,label\n"good film",pos\n"bad",\n'),
     "nolabel.csv:3: empty label in 'label'"),
    ("classify", "nocol.csv", text("text,sentiment\nfine,pos\n"),
     "nocol.csv:1: no column 'label' in the header"),
    ("classify", "broken.jsonl", text('{"text": "a", "label": "x"}\n{"text": "b", "label"\n'),
     "broken.jsonl:2: invalid JSON"),
    ("tag", "bio.conll", text("John\tB-PER\nran\tO\n\nto\tO\nParis\tI-LOC\n"),
     "bio.conll:5: tag 'I-LOC' after 'O'"),
    ("tag", "ragged.conll", text("John\tB-PER\tX\nran\n"), "ragged.conll:2: line has 1 columns"),
    ("seq2seq", "three.tsv", text("abc\tA B C\nde\tD E\tF\n"),
     "three.tsv:2: line has 3 tab-separated fields"),
    ("forecast", "text.csv", text("month,passengers\n1949-01,112\n1949-02,abc\n1949-03,132\n"),
     "text.csv:3: 'abc' in column 'passengers' is not a number"),
    ("forecast", "gap.csv", text("month,passengers\n1949-01,112\n1949-02,\n1949-03,132\n"),
     "gap.csv:3: missing value '' in column 'passengers'"),
    ("seqclass", "label.ts",
     text("@problemName x\n@timeStamps false\n@classLabel true a b\n@data\n1,2,3:c\n"),
     "label.ts:5: class label 'c' is not declared"),
    ("seqclass", "arrays.npz", npz(sequences=np.zeros((3, 4, 2))), "arrays.npz: no array 'x'"),
    ("music", "roll.txt", text("60 64\nnot a roll\n"), "roll.txt:2: 'not' is not a MIDI pitch"),
    ("caption", "vectors.npz", npz(features=np.zeros((3, 2))), "vectors.npz: no array 'texts'"),
]  # fmt: skip


@pytest.mark.parametrize(("task", "name", "make", "message"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])  # fmt: skip
def test_a_bad_file_is_one_line_naming_it_with_status_2(
    task: str,
    name: str,
    make: Callable[[Path], None],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    make(tmp_path / name)
    assert main(["train", task, "--data", name, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"rnnkit train: error: {captured.err.split(': error: ', 1)[1]}"
    assert captured.err.count("\n") == 1, captured.err
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_a_folder_that_is_not_a_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["evaluate"], ["predict"], ["generate"]):
        assert main([*command, str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "config.toml missing" in err
    (tmp_path / "config.toml").write_text('kind = "lm"\n[task]\nlevel = "syllable"\n')
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "task.level: expected one of 'char', 'word'" in err
    (tmp_path / "config.toml").write_text('kind = "lm"\n')
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no checkpoint yet" in capsys.readouterr().err


def test_an_empty_input_to_predict_is_refused_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(tmp_path), "fine", "  "]) == 2
    assert capsys.readouterr().err == (
        "rnnkit predict: error: INPUT 2 is empty (expected a text, a sentence or a source)\n"
    )
