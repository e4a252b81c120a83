"""``rnnkit train caption`` → ``evaluate`` → ``predict`` → ``generate`` → ``--resume`` through
``main(argv)`` on real reviews (rotten-tomatoes sample) and on an NPZ of feature vectors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.data.splits import split_indices
from rnnkit.training.checkpoint import load_checkpoint
from tests.models.fixtures import reviews


@pytest.fixture
def reviews_file(tmp_path: Path) -> Path:
    # 16 real snippets (8 fresh, 8 rotten), as CSV with quoting, split 80/10/10 by the task.
    path = tmp_path / "reviews.csv"
    quoted = ['"' + text.replace('"', '""') + '"' for _, text in reviews()]
    path.write_text(
        "text,label\n"
        + "".join(f"{t},{label}\n" for t, (label, _) in zip(quoted, reviews(), strict=True))
    )
    return path


# The task's seeded split of the 16 rows: the training rows and their labels.
TRAIN = split_indices(16, (0.8, 0.1, 0.1), 0)[0]
TRAIN_LABELS = [reviews()[i][0] for i in TRAIN]


def train(data: Path, out: Path, *extra: str) -> int:
    return main([
        "train", "caption", "--no-report", "--data", str(data), "--out", str(out), "--batch-size", "4",
        "--embed", "8", "--hidden", "16", "--condition-embed", "4", "--min-freq", "1",
        "--progress", "off", "--lr", "0.01", *extra,
    ])  # fmt: skip


def test_train_evaluate_predict_generate_and_resume(
    reviews_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train(reviews_file, out, "--max-steps", "5", "--condition-input", "no") == 0
    printed = capsys.readouterr().out
    assert "trained 5 steps (max_steps)" in printed
    counts = f"fresh ({TRAIN_LABELS.count('fresh')}), rotten ({TRAIN_LABELS.count('rotten')})"
    assert f"condition: a label, one of {counts} in train" in printed
    assert "batch_size = 4" in (out / "config.toml").read_text()  # the real batch size
    assert "condition_input = false" in (out / "config.toml").read_text()
    last = load_checkpoint(out / "checkpoints" / "last")
    assert last.step == 5 and {"vocab.json", "conditions.json"} <= set(last.artifacts)

    assert main(["evaluate", str(out), "--split", "train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "caption" and report["split"] == "train"
    metrics = report["metrics"]
    assert metrics["texts"] == len(TRAIN)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert 0 <= metrics["label_preference"] <= 1 and metrics["other_label_perplexity"] > 1
    matrix = report["details"]["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == len(TRAIN)
    assert matrix[0][0] + matrix[1][1] == round(len(TRAIN) * metrics["label_preference"])

    assert main(["evaluate", str(out), "--data", str(reviews_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == str(reviews_file) and report["metrics"]["texts"] == 16

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("Decent but dull.\n\nA master class.\n")
    assert main(["predict", str(out), "--file", str(inputs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].endswith("\tDecent but dull.")
    assert main(["predict", str(out), "Decent but dull.", "A master class.", "--json"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["input"] for a in answers] == ["Decent but dull.", "A master class."]
    for answer in answers:
        probabilities = dict(answer["probabilities"])
        assert set(probabilities) == {"fresh", "rotten"}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert answer["label"] == max(probabilities, key=probabilities.__getitem__)

    args = ["generate", str(out), "--condition", "rotten", "--length", "12", "--seed", "3",
            "--num-samples", "2", "--temperature", "0.8", "--top-p", "0.9"]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first  # seeded
    assert first.count("--- sample ") == 2
    assert main(["generate", str(out), "--condition", "fresh", "--beam", "3",
                 "--start", "a", "--length", "6"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("a")

    assert train(reviews_file, out, "--max-steps", "8", "--resume", "--condition-input", "no") == 0
    assert "trained 8 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "last").step == 8


def test_vector_conditions_from_an_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = np.array([text for _, text in reviews()], dtype=str)
    features = np.random.default_rng(0).normal(size=(len(texts), 5))
    path = tmp_path / "features.npz"
    with path.open("wb") as handle:
        np.savez(handle, features=features, texts=texts)
    out = tmp_path / "run"
    assert train(path, out, "--max-steps", "3", "--level", "char", "--max-length", "40") == 0
    assert "condition: a vector of 5 features" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert "vector_preference" in metrics and "other_vector_perplexity" in metrics
    vector = ",".join(str(v) for v in features[0])
    assert main(["generate", str(out), "--condition", vector, "--length", "15"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n")) <= 15
    assert main(["generate", str(out), "--condition", "1,2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected 5 comma-separated finite numbers" in err
    assert main(["predict", str(out), "some text"]) == 2
    assert "no labels to choose among" in capsys.readouterr().err


def test_bad_input_is_one_line_with_status_2(
    reviews_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.npz"
    with bad.open("wb") as handle:
        np.savez(handle, features=np.zeros((3, 2)), captions=np.array(["a", "b", "c"]))
    assert train(bad, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.npz" in err and "no array 'texts'" in err

    table = tmp_path / "features.csv"
    table.write_text("text,x,y\nhello,1,2\nworld,3,oops\n")
    assert train(table, tmp_path / "run", "--condition-kind", "vector") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "features.csv:3: column 'y' holds 'oops'" in err

    out = tmp_path / "run"
    assert train(reviews_file, out, "--max-steps", "1") == 0
    capsys.readouterr()
    assert main(["generate", str(out), "--condition", "happy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "known labels: 'fresh', 'rotten'" in err

    with pytest.raises(SystemExit) as exit_info:
        train(reviews_file, tmp_path / "other", "--condition-state", "maybe")
    assert exit_info.value.code == 2
    assert "--condition-state: expected yes or no, got 'maybe'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train(reviews_file, tmp_path / "other", "--max-length", "0")
    assert exit_info.value.code == 2


def test_accumulate_trains_what_the_whole_batch_trains(reviews_file: Path, tmp_path: Path) -> None:
    from tests.cli.accumulation import assert_accumulation_is_exact, assert_minimal_cells_train

    # Plain SGD: the update is the gradient itself, so what is compared is the batching
    # (measured: 3e-8 apart). Under Adam the same float32 gradients end 4e-7 … 2e-6
    # apart, all of it at the entry whose gradient is near Adam's ε (9e-8 against a
    # median of 8e-4), where g / (√v + ε) magnifies a last-bit difference of the sum.
    command = ["train", "caption", "--data", str(reviews_file), "--embed", "8", "--hidden", "12",
               "--condition-embed", "4", "--min-freq", "1", "--dropout", "0", "--optimizer", "sgd",
               "--lr", "0.5", "--max-steps", "3", "--backend", "fused", "--seed", "3"]  # fmt: skip
    assert_accumulation_is_exact(tmp_path, command, batch_size=2, accumulate=4)
    assert_minimal_cells_train(tmp_path, command, batch_size=2, accumulate=4)
