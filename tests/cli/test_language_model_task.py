"""``rnnkit train lm`` → ``evaluate`` → ``generate`` → ``--resume`` through ``main(argv)`` on real text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.training.checkpoint import load_checkpoint
from tests.models.fixtures import lines


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    # Ariel's song (shakespeare package), repeated so the 5 % valid/test parts hold streams.
    path = tmp_path / "song.txt"
    path.write_text("\n".join(lines("models_tempest_song.txt") * 12) + "\n")
    return path


def train(text: Path, out: Path, *extra: str) -> int:
    return main([
        "train", "lm", "--data", str(text), "--out", str(out), "--batch-size", "2",
        "--steps", "12", "--embed", "8", "--hidden", "24", "--layers", "1",
        "--progress", "off", "--lr", "0.01", *extra,
    ])  # fmt: skip


def test_train_evaluate_generate_and_resume(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train(text_file, out, "--max-steps", "20") == 0
    printed = capsys.readouterr().out
    assert "trained 20 steps (max_steps)" in printed
    # The run's page is written at the end of training (the report extra is in dev).
    assert f"wrote {out / 'report.html'}" in printed and (out / "report.html").stat().st_size
    assert load_checkpoint(out / "checkpoints" / "last").step == 20
    assert "vocab.json" in load_checkpoint(out / "checkpoints" / "last").artifacts
    assert (out / "config.toml").read_text().count("[task]") == 1

    assert main(["evaluate", str(out), "--split", "valid", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "lm" and report["split"] == "valid"
    metrics = report["metrics"]
    assert metrics["bits_per_character"] > 0
    assert abs(metrics["perplexity"] - 2 ** metrics["bits_per_character"]) < 1e-6

    args = ["generate", str(out), "--start", "Full", "--length", "30", "--seed", "3",
            "--num-samples", "2", "--temperature", "0.8", "--top-k", "5"]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first  # seeded
    samples = first.split("--- sample ")[1:]
    assert len(samples) == 2 and all("Full" in s for s in samples)

    # Resume to 40 steps: continues from step 20.
    assert train(text_file, out, "--max-steps", "40", "--resume") == 0
    assert "trained 40 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "last").step == 40


def test_bad_input_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    assert train(bad, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "latin1.txt" in err
    assert main(["generate", str(tmp_path / "nowhere")]) == 2
    assert "config.toml missing" in capsys.readouterr().err


def test_resume_keeps_the_saved_configuration(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train(text_file, out, "--max-steps", "4", "--no-report") == 0
    # Only the limits typed: the saved hidden size, data and optimizer stand.
    resume = ["train", "lm", "--out", str(out), "--resume", "--no-report", "--progress", "off"]
    assert main([*resume, "--max-steps", "6"]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "last").step == 6
    # What the run learns from cannot change under it.
    assert main([*resume, "--max-steps", "8", "--hidden", "32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume: model.hidden is 24" in err
    assert main([*resume, "--max-steps", "8", "--lr", "0.5"]) == 2
    assert "trainer.optimizer.lr" in capsys.readouterr().err
    # Relative data paths are saved absolute: evaluation works from anywhere.
    assert str(text_file.resolve()) in (out / "config.toml").read_text()


def test_accumulate_trains_what_the_whole_batch_trains(text_file: Path, tmp_path: Path) -> None:
    # 16 streams either way: slot j of --batch-size 4 --accumulate 4 carries rows
    # 4j … 4j + 3 of the 16 (its own state from step to step).
    from tests.cli.accumulation import assert_accumulation_is_exact, assert_minimal_cells_train

    command = ["train", "lm", "--data", str(text_file), "--steps", "12", "--embed", "8",
               "--hidden", "24", "--layers", "1", "--dropout", "0", "--lr", "0.01",
               "--max-steps", "4", "--backend", "fused", "--seed", "3"]  # fmt: skip
    assert_accumulation_is_exact(tmp_path, command)
    assert_minimal_cells_train(tmp_path, command)
