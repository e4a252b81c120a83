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
    from tests.cli.accumulation import assert_accumulation_is_exact

    # SGD: the weights move by lr·gradient, so they compare the gradients themselves (they
    # agree to float32 rounding: the weights to 3e-8, one ulp). Adam divides by √v + 1e-8,
    # which turns the rounding of a gradient entry near 1e-8 (weight_hh has a few at the
    # start) into a few 1e-6 of a weight: a property of Adam, not of the batching.
    command = ["train", "tag", "--data", str(SAMPLE), "--comment", "# ", "--embed", "8",
               "--hidden", "12", "--min-freq", "1", "--dropout", "0", "--optimizer", "sgd",
               "--lr", "0.1", "--max-steps", "3", "--backend", "fused", "--seed", "3",
               *(["--crf"] if crf else [])]  # fmt: skip
    assert_accumulation_is_exact(tmp_path, command, batch_size=2, accumulate=4)
