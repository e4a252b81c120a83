"""``rnnkit train classify`` → ``evaluate`` → ``predict`` → ``--resume`` through ``main(argv)``
on real rotten-tomatoes snippets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.training.checkpoint import load_checkpoint
from tests.models.fixtures import FIXTURES, reviews

SAMPLE = str(FIXTURES / "models_rotten_tomatoes_sample.tsv")


def train(out: Path, *extra: str, data: tuple[str, ...] = (SAMPLE, SAMPLE, SAMPLE)) -> int:
    # The sample has a '#' provenance header: --comment skips it.
    return main([
        "train", "classify", "--no-report", "--data", *data, "--comment", "#", "--out", str(out),
        "--batch-size", "4", "--embed", "8", "--hidden", "12", "--min-freq", "1",
        "--embed-dropout", "0", "--pool-dropout", "0", "--lr", "0.02", "--progress", "off",
        "--patience", "50",
        *extra,
    ])  # fmt: skip


def test_train_evaluate_predict_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train(out, "--max-steps", "40", "--pooling", "mean") == 0
    printed = capsys.readouterr().out
    assert "trained 40 steps (max_steps)" in printed
    assert 'pooling = "mean"' in printed and "# labels: fresh, rotten" in printed
    checkpoint = load_checkpoint(out / "checkpoints" / "last")
    assert checkpoint.step == 40
    assert {"vocab.json", "labels.json"} <= set(checkpoint.artifacts)
    metrics_csv = (out / "metrics.csv").read_text()
    assert "accuracy" in metrics_csv and "macro_f1" in metrics_csv

    assert main(["evaluate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "classify" and report["split"] == "test"
    matrix = report["details"]["confusion_matrix"]
    assert matrix["labels"] == ["fresh", "rotten"]
    (tp, fn), (fp, tn) = matrix["matrix"]
    assert tp + fn + fp + tn == 16 == report["metrics"]["examples"]
    assert report["metrics"]["accuracy"] == pytest.approx((tp + tn) / 16)
    f1_fresh = 2 * tp / (2 * tp + fp + fn)
    f1_rotten = 2 * tn / (2 * tn + fp + fn)
    assert report["metrics"]["macro_f1"] == pytest.approx((f1_fresh + f1_rotten) / 2)
    assert report["metrics"]["accuracy"] == 1.0  # 16 snippets, 40 steps: learnt
    assert report["metrics"]["majority_accuracy"] == 0.5

    # The table form prints the matrix as a grid.
    assert main(["evaluate", str(out), "--split", "valid"]) == 0
    assert "confusion_matrix (rows: true, columns: predicted)" in capsys.readouterr().out

    rows = reviews()
    texts = [text for _, text in rows[:3]]
    assert main(["predict", str(out), *texts, "--json", "--top", "2"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in records] == texts
    assert [r["label"] for r in records] == [label for label, _ in rows[:3]]
    assert all(sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5) for r in records)
    assert main(["predict", str(out), texts[0]]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{rows[0][0]} ") and line.rstrip().endswith(texts[0])

    # Resume to 60 steps: continues from step 40.
    assert train(out, "--max-steps", "60", "--pooling", "mean", "--resume") == 0
    assert "trained 60 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "last").step == 60


def test_bad_input_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\ttext\nfresh\tgood\trotten\n")
    assert train(tmp_path / "run", data=(str(bad),)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.tsv:2:" in err and "3 fields" in err

    assert train(tmp_path / "run", "--text-column", "review") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no column 'review'" in err

    assert train(tmp_path / "run", "--max-vocab", "3") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-vocab" in err

    assert train(tmp_path / "run", data=(SAMPLE, SAMPLE)) == 2
    assert "three (train, valid, test)" in capsys.readouterr().err

    assert main(["predict", str(tmp_path / "nowhere"), "text"]) == 2
    assert "config.toml missing" in capsys.readouterr().err


def test_accumulate_trains_what_the_whole_batch_trains(tmp_path: Path) -> None:
    from tests.cli.accumulation import assert_accumulation_is_exact, assert_minimal_cells_train

    command = ["train", "classify", "--data", SAMPLE, SAMPLE, SAMPLE, "--comment", "#",
               "--embed", "8", "--hidden", "12", "--min-freq", "1", "--word-dropout", "0",
               "--embed-dropout", "0", "--pool-dropout", "0", "--lr", "0.02", "--max-steps", "3",
               "--backend", "fused", "--seed", "3"]  # fmt: skip
    assert_accumulation_is_exact(tmp_path, command)
    assert_minimal_cells_train(tmp_path, command)
