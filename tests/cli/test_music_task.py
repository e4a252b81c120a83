"""``rnnkit train music`` → ``evaluate`` → ``generate`` / ``predict`` → ``--resume`` on BWV 66.6."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.data.formats.midi import read_midi, read_roll_text, roll_text, write_midi
from rnnkit.training.checkpoint import load_checkpoint
from tests.models.fixtures import FIXTURES

CHORALE = FIXTURES / "models_bwv66_6_roll.txt"


@pytest.fixture
def parts(tmp_path: Path) -> list[str]:
    """The chorale in three: a text file to train on, MIDI to validate, text to test."""
    frames = read_roll_text(CHORALE)
    train, valid, test = tmp_path / "train.txt", tmp_path / "valid.mid", tmp_path / "test.txt"
    train.write_text(roll_text(frames[:96]))
    write_midi(frames[96:120], valid)
    test.write_text(roll_text(frames[120:]))
    return [str(train), str(valid), str(test)]


def train(data: list[str], out: Path, *extra: str) -> int:
    return main(["train", "music", "--no-report", "--data", *data, "--out", str(out), "--embed", "8",
                 "--hidden", "16", "--batch-size", "1", "--progress", "off",
                 "--lr", "0.01", *extra])  # fmt: skip


def test_train_evaluate_generate_predict_and_resume(
    parts: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train(parts, out, "--max-steps", "2", "--low", "40", "--high", "80") == 0
    printed = capsys.readouterr().out
    assert "trained 2 steps (max_steps)" in printed
    assert "pitches = 41" in printed and "pitches: MIDI 40..80 (41)" in printed
    assert "baseline.json" in load_checkpoint(out / "checkpoints" / "last").artifacts

    assert main(["evaluate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "music" and report["split"] == "test"
    metrics = report["metrics"]
    assert metrics["frames"] == 24 and metrics["pieces"] == 1
    assert metrics["nll_per_frame"] > 0 and metrics["baseline_nll_per_frame"] > 0
    gap = metrics["baseline_nll_per_frame"] - metrics["nll_per_frame"]
    assert report["details"]["nats_per_frame_below_baseline"] == pytest.approx(gap)

    assert main(["evaluate", str(out), "--split", "valid", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["frames"] == 24  # the MIDI part

    midi = tmp_path / "new.mid"
    args = ["generate", str(out), "--length", "32", "--seed", "7", "--temperature", "0.8"]
    assert main([*args, "--out", str(midi)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {midi} (32 frames")
    first = midi.read_bytes()
    assert main([*args, "--out", str(midi)]) == 0
    capsys.readouterr()
    assert midi.read_bytes() == first  # seeded
    assert all(40 <= p <= 80 for frame in read_midi(midi) for p in frame)

    assert main(["predict", str(out), parts[2], str(midi), "--json"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["input"] for a in answers] == [parts[2], str(midi)]
    assert answers[0]["nll_per_frame"] == pytest.approx(metrics["nll_per_frame"])

    assert train(parts, out, "--max-steps", "4", "--low", "40", "--high", "80", "--resume") == 0
    assert "trained 4 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "last").step == 4


def test_bad_input_is_one_line_with_status_2(
    parts: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("60 64\n60 sixty-four\n")
    assert train([str(bad), *parts[1:]], tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.txt:2:" in err and "'sixty-four'" in err

    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd\x00\x00")
    assert train([parts[0], str(broken), parts[2]], tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.mid" in err

    assert train(parts, tmp_path / "run", "--low", "90", "--high", "80") == 2
    assert "low ≤ high" in capsys.readouterr().err

    with pytest.raises(SystemExit) as stop:
        train(parts, tmp_path / "run", "--threshold", "1.5")
    assert stop.value.code == 2
    assert "--threshold" in capsys.readouterr().err


def test_accumulate_trains_what_the_whole_batch_trains(tmp_path: Path) -> None:
    from tests.cli.accumulation import assert_accumulation_is_exact, assert_minimal_cells_train

    # 32 training pieces of 6 to 37 frames: bucketed by length, padded per micro-batch.
    frames = read_roll_text(CHORALE)
    folder = tmp_path / "pieces"
    folder.mkdir()
    for i in range(32):
        start = (7 * i) % 100
        (folder / f"{i:02d}.txt").write_text(roll_text(frames[start : start + 6 + i]))
    valid, test = tmp_path / "valid.txt", tmp_path / "test.txt"
    valid.write_text(roll_text(frames[96:120]))
    test.write_text(roll_text(frames[120:]))
    command = ["train", "music", "--data", str(folder), str(valid), str(test), "--embed", "8",
               "--hidden", "16", "--lr", "0.01", "--max-steps", "3", "--backend", "fused",
               "--seed", "3"]  # fmt: skip
    assert_accumulation_is_exact(tmp_path / "runs", command)
    assert_minimal_cells_train(tmp_path / "runs", command)
