"""The text-classification task on real rotten-tomatoes snippets: data, metrics, predictions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rnnkit.data.errors import DataError
from rnnkit.data.labels import Labels
from rnnkit.data.splits import split_indices
from rnnkit.data.vocab import PAD_ID, UNK_ID
from rnnkit.metrics import classification_report
from rnnkit.tasks import classification as cls
from rnnkit.tasks.options import PredictOptions
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig
from tests.models.fixtures import FIXTURES, reviews

SAMPLE = FIXTURES / "models_rotten_tomatoes_sample.tsv"


def run_on(*paths: Path | str, **task: object) -> cls.ClassificationRun:
    base = cls.ClassificationRun()
    return replace(
        base,
        task=replace(base.task, data=tuple(str(p) for p in paths), comment="#", **task),
        model=replace(base.model, embed=8, hidden=12),
    )


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in rows))
    return path


def test_label_order_is_numeric_for_integer_labels() -> None:
    assert Labels.of(["10", "9", "2", "10"]).names == ("2", "9", "10")
    assert Labels.of(["rotten", "fresh"]).names == ("fresh", "rotten")


def test_one_file_is_split_80_10_10_and_the_vocabulary_sees_train_only() -> None:
    prepared = cls.TASK.prepare(run_on(SAMPLE))
    vocab = prepared.assets.vocab
    sizes = {name: len(rows) for name, rows in prepared.data.items()}
    expected = split_indices(16, (0.8, 0.1, 0.1), 0)
    assert sizes == dict(zip(("train", "valid", "test"), map(len, expected), strict=True))
    assert sum(sizes.values()) == 16 and sizes["train"] >= 12
    assert prepared.assets.labels.names == ("fresh", "rotten")
    assert prepared.run.model.num_classes == 2
    assert prepared.run.model.vocab_size == len(vocab)
    assert prepared.run.model.loss == "cross_entropy"  # config.toml names the loss used
    # min_freq 2 on 13 snippets: "a" and "." recur, a word seen once does not.
    train = [text for text, _ in cls.read_parts(run_on(SAMPLE).task)["train"]]
    words = [w for t in train for w in cls.tokenize(t, prepared.run.task)]
    assert all(words.count(w) >= 2 for w in vocab.tokens[4:])
    assert "." in vocab and "a" in vocab
    # Each text's ids decode to its lowercased words (rare ones as <unk>).
    examples = cls.TASK.examples(prepared, "train")
    ids = [x for x, _ in examples.items]
    assert examples.lengths == [len(x) for x in ids] and min(len(x) for x in ids) >= 1
    assert any(UNK_ID in x for x in ids)
    assert any("summary" in line for line in prepared.summary) is False
    assert prepared.summary[-1] == "labels: fresh, rotten"


def test_three_files_and_max_length_and_vocabulary_limits(tmp_path: Path) -> None:
    rows = [(label, text) for label, text in reviews()]
    train = write_tsv(tmp_path / "train.tsv", rows)
    part = write_tsv(tmp_path / "part.tsv", rows[:4])
    run = run_on(train, part, part, min_freq=1, max_vocab=10, max_length=3)
    prepared = cls.TASK.prepare(run)
    assert len(prepared.assets.vocab) == 10
    train = cls.TASK.examples(prepared, "train")
    assert max(train.lengths or []) == 3
    assert [len(rows) for rows in prepared.data.values()] == [16, 4, 4]


def test_collate_pads_and_a_binary_head_gets_float_targets() -> None:
    batch = cls.TASK.collate([([5] * 3, 0), ([5], 1), ([5] * 4, 0)])
    assert batch.inputs.shape == (3, 4) and batch.lengths.tolist() == [3, 1, 4]
    for row, length in zip(batch.inputs, batch.lengths, strict=True):
        assert (row[length:] == PAD_ID).all() and (row[:length] == 5).all()
    assert batch.targets.dtype == torch.int64
    assert cls.TASK.collate([([5], 1.0), ([5], 0.0)]).targets.dtype == torch.float32


def test_scores_by_hand() -> None:
    # gold 0 0 1 1 2, predicted 0 1 1 1 0: 3/5 right.
    # F1: class 0: 2·1/(2+1+1) = 0.5; class 1: 2·2/(3+2) = 0.8; class 2: 0.
    got, details = classification_report([0, 1, 1, 1, 0], [0, 0, 1, 1, 2], ["a", "b", "c"], "a")
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert got["majority_accuracy"] == pytest.approx(0.4)
    assert details["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_a_trained_run_evaluates_and_predicts(tmp_path: Path) -> None:
    rows = reviews()
    train = write_tsv(tmp_path / "train.tsv", rows)
    run = run_on(train, train, train, embed_dropout=0.0, pool_dropout=0.0, word_dropout=0.0,
                 min_freq=1)  # fmt: skip
    trainer = TrainerConfig(epochs=12, batch_size=4, progress="off",
                            optimizer=OptimizerConfig(lr=0.02))  # fmt: skip
    run = replace(run, trainer=trainer)
    cls.TASK.train(run, tmp_path / "run")
    loaded = cls.TASK.load(tmp_path / "run")
    result = cls.TASK.evaluate(loaded, "test", None)
    assert result.metrics["examples"] == 16
    assert result.metrics["accuracy"] == 1.0  # 16 training snippets memorised
    assert result.metrics["macro_f1"] == 1.0
    assert result.metrics["majority_accuracy"] == 0.5
    assert result.details["confusion_matrix"] == {"labels": ["fresh", "rotten"],
                                                  "matrix": [[8, 0], [0, 8]]}  # fmt: skip
    texts = [text for _, text in rows[:4]]
    answers = cls.TASK.predict(loaded, PredictOptions(inputs=tuple(texts), top=2))
    assert [a.record["label"] for a in answers] == [label for label, _ in rows[:4]]
    for answer in answers:
        probs = answer.record["probabilities"]
        assert next(iter(probs)) == answer.record["label"]
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    # --file: one text per line, blank lines skipped.
    file = tmp_path / "texts.txt"
    file.write_text("\n".join(texts) + "\n\n")
    again = cls.TASK.predict(loaded, PredictOptions(file=str(file), top=1))
    assert [a.record["label"] for a in again] == [a.record["label"] for a in answers]
    assert all(len(a.record["probabilities"]) == 1 for a in again)


def test_binary_head_gives_two_probabilities(tmp_path: Path) -> None:
    run = run_on(SAMPLE)
    run = replace(run, model=replace(run.model, head="binary"),
                  trainer=TrainerConfig(max_steps=2, batch_size=4, progress="off"))  # fmt: skip
    cls.TASK.train(run, tmp_path / "run")
    loaded = cls.TASK.load(tmp_path / "run")
    assert loaded.run.model.loss == "log_loss"
    (answer,) = cls.TASK.predict(loaded, PredictOptions(inputs=("a fine film",)))
    assert sorted(answer.record["probabilities"]) == ["fresh", "rotten"]
    assert sum(answer.record["probabilities"].values()) == pytest.approx(1.0)


def test_bad_data_is_named(tmp_path: Path) -> None:
    rows = reviews()
    train = write_tsv(tmp_path / "train.tsv", [r for r in rows if r[0] == "fresh"])
    with pytest.raises(DataError, match="one label"):
        cls.TASK.prepare(run_on(train, train, train))
    train = write_tsv(tmp_path / "train2.tsv", rows)
    odd = write_tsv(tmp_path / "odd.tsv", [("meh", "so-so")])
    with pytest.raises(DataError, match="the test part has label\\(s\\) 'meh'"):
        cls.TASK.prepare(run_on(train, train, odd))
    run = run_on(SAMPLE)
    regression = replace(run, model=replace(run.model, head="regression"))
    with pytest.raises(DataError, match="regression"):
        cls.TASK.prepare(regression)
    with pytest.raises(DataError, match="too few to split"):
        cls.TASK.prepare(run_on(write_tsv(tmp_path / "tiny.tsv", rows[:5])))
    with pytest.raises(DataError, match="not a labelled-text dataset"):
        cls.TASK.prepare(
            replace(cls.ClassificationRun(), task=cls.ClassificationTask(dataset="adding"))
        )
    with pytest.raises(ValueError, match="max_vocab"):
        cls.ClassificationTask(max_vocab=4)
    with pytest.raises(ValueError, match="data: expected one file"):
        cls.ClassificationTask(data=("a", "b"))
