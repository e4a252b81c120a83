"""``rnnkit train tag`` → ``evaluate`` → ``predict`` → ``--resume`` through ``main(argv)``
on real WNUT-16 sentences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.tasks import tagging
from rnnkit.tasks.tagging import TASK
from rnnkit.training.checkpoint import load_checkpoint
from tests.models.fixtures import FIXTURES

SAMPLE = FIXTURES / "tagger_wnut16_sample.txt"  # read as it is: --comment skips its header


def train(data: Path, out: Path, *extra: str) -> int:
    return main([
        "train", "tag", "--no-report", "--data", str(data), "--comment", "# ", "--out", str(out),
        "--batch-size", "2", "--embed", "8", "--hidden", "12", "--progress", "off",
        "--lr", "0.01", *extra,
    ])  # fmt: skip


def test_train_evaluate_predict_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train(SAMPLE, out, "--max-steps", "4", "--crf", "--min-freq", "1") == 0
    printed = capsys.readouterr().out
    assert "crf = true" in printed and "min_freq = 1" in printed
    assert "# train: 10 sentences" in printed and "tags: 8 (BIO)" in printed
    assert "trained 4 steps (max_steps)" in printed
    artifacts = load_checkpoint(out / "checkpoints" / "last").artifacts
    assert {"vocab.json", "tagset.json"} <= set(artifacts)

    assert main(["evaluate", str(out), "--split", "train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "tag" and report["split"] == "train"
    metrics = report["metrics"]
    train_part = tagging.read_parts(TASK.load(out).run.task)["train"]
    assert len(train_part) == 10  # the training part's tokens, all counted:
    assert metrics["tokens"] == sum(map(len, train_part))
    p, r = metrics["span_precision"], metrics["span_recall"]
    assert metrics["span_f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    per_type = report["details"]["per_type"]
    assert sum(row["support"] for row in per_type.values()) == metrics["spans"]
    assert set(next(iter(per_type.values()))) == {"precision", "recall", "f1", "support"}
    assert main(["evaluate", str(out)]) == 0  # the table
    assert "span_f1" in capsys.readouterr().out

    sentence = "Empire State Building = ESB . Pretty bad storm here last evening ."
    assert main(["predict", str(out), sentence, "--json"]) == 0
    first = capsys.readouterr().out
    record = json.loads(first)
    assert record["tokens"] == sentence.split() and len(record["tags"]) == 13
    assert all(set(span) == {"type", "start", "end", "text"} for span in record["spans"])
    assert main(["predict", str(out), sentence, "--json"]) == 0
    assert capsys.readouterr().out == first  # deterministic
    words = tmp_path / "sentences.txt"
    words.write_text("hello world\n\nNew York\n")
    assert main(["predict", str(out), "--file", str(words)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert len(lines) == 2 and lines[0].startswith("hello/")

    assert train(SAMPLE, out, "--max-steps", "7", "--crf", "--min-freq", "1", "--resume") == 0
    assert "trained 7 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "last").step == 7


def test_bad_input_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_text("New\tB-loc\nYork\tI-loc\nis\tO\tX\n")
    assert train(bad, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.conll:3" in err
    broken_bio = tmp_path / "bio.conll"
    broken_bio.write_text("New\tO\nYork\tI-loc\n")
    assert train(broken_bio, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bio.conll:2" in err and "I-loc" in err
    with pytest.raises(SystemExit) as exit_:
        train(SAMPLE, tmp_path / "run", "--min-freq", "0")
    assert exit_.value.code == 2
    assert "--min-freq" in capsys.readouterr().err


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
def test_accumulate_trains_what_the_whole_batch_trains(tmp_path: Path, crf: bool) -> None:
    from tests.cli.accumulation import assert_accumulation_is_exact, assert_minimal_cells_train

    # SGD: the weights move by lr·gradient, so they compare the gradients themselves (they
    # agree to float32 rounding: the weights to 3e-8, one ulp). Adam divides by √v + 1e-8,
    # which turns the rounding of a gradient entry near 1e-8 (weight_hh has a few at the
    # start) into a few 1e-6 of a weight: a property of Adam, not of the batching.
    command = ["train", "tag", "--data", str(SAMPLE), "--comment", "# ", "--embed", "8",
               "--hidden", "12", "--min-freq", "1", "--dropout", "0", "--optimizer", "sgd",
               "--lr", "0.1", "--max-steps", "3", "--backend", "fused", "--seed", "3",
               *(["--crf"] if crf else [])]  # fmt: skip
    assert_accumulation_is_exact(tmp_path, command, batch_size=2, accumulate=4)
    assert_minimal_cells_train(tmp_path, command, batch_size=2, accumulate=4)


def copying(out: Path, *extra: str) -> list[str]:
    """A tiny selective-copying run: 3 data tokens of 4 symbols among noise in 12 steps."""
    return ["train", "tag", "--dataset", "selective-copying", "--length", "12", "--tokens", "3",
            "--symbols", "4", "--train-size", "1024", "--valid-size", "128", "--test-size", "256",
            "--cell", "gru", "--embed", "16", "--hidden", "32", "--dropout", "0", "--lr", "0.01",
            "--batch-size", "32", "--progress", "off", "--no-report", "--out", str(out), *extra]  # fmt: skip


def test_selective_copying_learns_far_above_chance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "copy"
    assert main(copying(out, "--max-steps", "150")) == 0
    printed = capsys.readouterr().out
    assert "# train: 1,024 sequences of 15 steps (seed 0)" in printed
    assert "(chance 25.0%)" in printed and "bidirectional = false" in printed
    assert "trained 150 steps (max_steps)" in printed

    assert main(["evaluate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    metrics = report["metrics"]
    assert report["split"] == "test" and report["details"]["seed"] == 2
    assert metrics["tokens"] == 3 * 256 and metrics["sequences"] == 256  # the markers alone
    assert metrics["chance"] == 0.25
    assert metrics["accuracy"] > 0.9  # chance is 0.25
    assert metrics["exact"] > 0.75  # chance is 4^-3 ≈ 0.016
    assert metrics["exact"] <= metrics["accuracy"]

    # The markers of a typed sequence copy its data tokens; the other steps say nothing.
    assert main(["predict", str(out), ". 3 . . 1 . . 4 . . . . ? ? ?", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["copied"] == ["3", "1", "4"]
    assert main(["predict", str(out), ". 3 1"]) == 2
    assert "has no marker '?'" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--data", str(SAMPLE)]) == 2
    assert "evaluates on its generated splits" in capsys.readouterr().err

    # The report shows each test sequence's data tokens beside what its markers copied.
    (section,) = TASK.report(TASK.load(out), limit=3)
    test = tagging.copying_split(TASK.load(out).run.task, "test")[:3]
    assert section.title == "Copied tokens" and len(section.blocks) == 3
    for block, (_, tags) in zip(section.blocks, test, strict=True):
        true = " ".join(str(t + 1) for t in tags[12:])  # tag id s − 1 names symbol s
        assert block.startswith(f"data tokens: {true}\ncopied:      ")
        assert len(block.split("\n")[1].split()) == 1 + 3  # "copied:" and three symbols


def test_selective_copying_refuses_a_crf_and_bad_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(copying(tmp_path / "run", "--crf", "--dry-run")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.crf: selective copying scores the markers" in err
    assert main(copying(tmp_path / "run", "--length", "2", "--dry-run")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "task.length: expected at least tokens (3) steps" in err
    assert main(copying(tmp_path / "run", "--symbols", "1", "--dry-run")) == 2
    assert "symbols: expected an int ≥ 2, got 1" in capsys.readouterr().err


def test_accumulate_is_exact_for_selective_copying(tmp_path: Path) -> None:
    from tests.cli.accumulation import assert_accumulation_is_exact

    command = ["train", "tag", "--dataset", "selective-copying", "--length", "10", "--tokens", "2",
               "--symbols", "3", "--train-size", "48", "--valid-size", "8", "--test-size", "8",
               "--cell", "gru", "--embed", "6", "--hidden", "8", "--dropout", "0",
               "--optimizer", "sgd", "--lr", "0.5", "--max-steps", "3", "--backend", "fused",
               "--seed", "2"]  # fmt: skip
    assert_accumulation_is_exact(tmp_path, command)


def test_a_character_aware_tagger_trains_evaluates_predicts_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    flags = ("--char-embed", "6", "--char-hidden", "5", "--crf")
    assert train(SAMPLE, out, "--max-steps", "3", *flags) == 0
    printed = capsys.readouterr().out
    assert "char_embed = 6" in printed and "each word read by a BiLSTM of 5 units" in printed
    assert "chars.json" in load_checkpoint(out / "checkpoints" / "last").artifacts
    assert main(["evaluate", str(out), "--split", "valid", "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["metrics"]["accuracy"] <= 1.0
    # A word no training sentence has still reaches the model, by its characters.
    assert main(["predict", str(out), "Zyxwvut Empire", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tags"]) == 2
    assert train(SAMPLE, out, "--max-steps", "5", *flags, "--resume") == 0
    assert load_checkpoint(out / "checkpoints" / "last").step == 5
