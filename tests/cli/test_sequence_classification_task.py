"""``rnnkit train seqclass`` → ``evaluate`` → ``predict`` → ``--resume`` through ``main(argv)``
on real Japanese-vowels frames, and the adding problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.data.formats.ts import read_ts
from rnnkit.training.checkpoint import load_checkpoint
from tests.models.fixtures import FIXTURES

SAMPLE = str(FIXTURES / "seqclass_japanese_vowels_sample.ts")


def train(out: Path, *extra: str, data: tuple[str, ...] = (SAMPLE, SAMPLE, SAMPLE)) -> int:
    return main([
        "train", "seqclass", "--no-report", "--data", *data, "--out", str(out), "--batch-size", "8",
        "--hidden", "16", "--lr", "0.02", "--progress", "off", "--patience", "50", *extra,
    ])  # fmt: skip


def test_train_evaluate_predict_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train(out, "--max-steps", "30", "--bidirectional", "--pooling", "mean") == 0
    printed = capsys.readouterr().out
    assert "trained 30 steps (max_steps)" in printed
    assert "# 12 channels, standardised with training statistics" in printed
    checkpoint = load_checkpoint(out / "checkpoints" / "last")
    assert checkpoint.step == 30
    scaler = json.loads(checkpoint.artifacts["scaler.json"])
    assert len(scaler["mean"]) == len(scaler["std"]) == 12
    labels = json.loads(checkpoint.artifacts["labels.json"])
    assert labels["labels"] == ["1", "2", "3"] and labels["majority"] in labels["labels"]
    assert "batch_size = 8" in (out / "config.toml").read_text()  # the real batch size

    assert main(["evaluate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "seqclass" and report["split"] == "test"
    matrix = report["details"]["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == 24 == report["metrics"]["examples"]
    right = sum(matrix[i][i] for i in range(3))
    assert report["metrics"]["accuracy"] == pytest.approx(right / 24)
    assert report["metrics"]["accuracy"] == 1.0  # the 24 sequences, learnt
    assert report["metrics"]["macro_f1"] == 1.0

    rows = read_ts(SAMPLE)
    assert main(["predict", str(out), "--file", SAMPLE, "--json", "--top", "2"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in records] == [label for _, label in rows]
    assert records[0]["input"] == f"{SAMPLE}#1" and len(records[0]["probabilities"]) == 2

    # Resume to 45 steps: continues from step 30.
    args = ("--bidirectional", "--pooling", "mean", "--resume")
    assert train(out, "--max-steps", "45", *args) == 0
    assert "trained 45 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "last").step == 45


def test_adding_problem_reports_mse_beside_the_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "adding"
    args = ["train", "seqclass", "--no-report", "--dataset", "adding", "--length", "10", "--train-size", "64",
            "--valid-size", "32", "--test-size", "48", "--hidden", "8", "--cell", "gru",
            "--max-steps", "6", "--batch-size", "16", "--progress", "off", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert 'head = "regression"' in printed and "trained 6 steps" in printed
    assert main(["evaluate", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["examples"] == 48
    assert 0.05 < metrics["baseline_mse"] < 0.4  # 1/6 in expectation
    assert metrics["mse_over_baseline"] == pytest.approx(metrics["mse"] / metrics["baseline_mse"])
    # A sequence typed as JSON: 10 steps of (value, marker); the answer is a number.
    steps = [[0.5, 1.0 if t in (2, 7) else 0.0] for t in range(10)]
    assert main(["predict", str(out), json.dumps(steps), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert isinstance(record["prediction"], float)


def test_bad_input_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.ts"
    bad.write_text("@problemName x\n@classLabel true a b\n@data\n1,2,3:4,5:a\n")
    assert train(tmp_path / "run", data=(str(bad), str(bad), str(bad))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.ts:4:" in err and "channel 2 has 2 values" in err

    assert train(tmp_path / "run", data=(str(tmp_path / "missing.npz"),)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.npz" in err

    assert train(tmp_path / "run", "--valid-fraction", "0.7") == 2
    assert "valid_fraction" in capsys.readouterr().err

    assert main(["train", "seqclass", "--dataset", "wnut16", "--dry-run",
                 "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "not a labelled-sequence dataset" in capsys.readouterr().err


def test_accumulate_trains_what_the_whole_batch_trains(tmp_path: Path) -> None:
    from tests.cli.accumulation import assert_accumulation_is_exact, assert_minimal_cells_train

    # SGD: Adam's first step, lr·g/(|g| + ε), turns the float32 rounding of an element
    # whose gradient is about ε into a step 1e-4 apart (measured with these flags, while
    # SGD agrees to 2e-8): the gradients are equal, the optimizer magnifies their noise.
    command = ["train", "seqclass", "--data", SAMPLE, SAMPLE, SAMPLE, "--hidden", "12",
               "--bidirectional", "--pooling", "mean", "--optimizer", "sgd", "--lr", "0.5",
               "--max-steps", "3", "--backend", "fused", "--seed", "3"]  # fmt: skip
    assert_accumulation_is_exact(tmp_path, command)
    assert_minimal_cells_train(tmp_path, command)


def test_accumulate_is_exact_for_the_adding_problem(tmp_path: Path) -> None:
    from tests.cli.accumulation import assert_accumulation_is_exact

    command = ["train", "seqclass", "--dataset", "adding", "--length", "9", "--train-size", "40",
               "--valid-size", "8", "--test-size", "8", "--hidden", "8", "--cell", "gru",
               "--lr", "0.02", "--max-steps", "3", "--backend", "unrolled", "--seed", "1"]  # fmt: skip
    assert_accumulation_is_exact(tmp_path, command)
