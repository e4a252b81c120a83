"""The caption task: labels or vectors → texts; metrics, generation and the generative classifier."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.data.errors import DataError
from rnnkit.data.vocab import BOS_ID, EOS_ID
from rnnkit.models.generator import ConditionedBatch, ConditionedGenerator
from rnnkit.tasks import captioning
from rnnkit.tasks.captioning import CaptionRun, CaptionTask
from rnnkit.tasks.task import GenerateOptions, PredictOptions
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig
from tests.models.fixtures import reviews

FRESH = "A three-hour cinema master class."
ROTTEN = "Decent but dull."


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in rows))
    return path


def tiny_run(data: tuple[str, ...], **task: object) -> CaptionRun:
    run = CaptionRun(task=CaptionTask(data=data, min_freq=1, **task))  # type: ignore[arg-type]
    model = replace(run.model, embed=16, hidden=32, condition_embed=8, dropout=0.0)
    trainer = TrainerConfig(epochs=1, batch_size=1, progress="off", clip_norm=5.0,
                            optimizer=OptimizerConfig(lr=0.02))  # fmt: skip
    return replace(run, model=model, trainer=trainer)


def overfit_run(tmp_path: Path, rows: list[tuple[str, str]], copies: int = 20) -> Path:
    """Train a tiny model on ``rows`` (repeated) until it knows them; its run folder."""
    paths = [write_tsv(tmp_path / f"{name}.tsv", rows * copies) for name in ("a", "b", "c")]
    run = tiny_run(tuple(map(str, paths)), batch_size=8)
    run = replace(run, trainer=replace(run.trainer, epochs=12))
    out = tmp_path / "run"
    captioning.train(run, out)
    return out


def test_prepare_reads_splits_labels_and_a_train_only_vocabulary(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", reviews())  # (label, text) columns
    prepared = captioning.prepare(tiny_run((str(path),)))
    data = prepared.data
    assert {name: len(part.ids) for name, part in data.splits.items()} == {
        "train": 13, "valid": 2, "test": 1}  # fmt: skip
    assert data.conditions.labels == ("fresh", "rotten")
    assert prepared.run.model.num_labels == 2 and prepared.run.model.condition_size is None
    assert prepared.run.model.vocab_size == len(data.vocab)
    assert (prepared.run.model.bos_id, prepared.run.model.eos_id) == (BOS_ID, EOS_ID)
    # The vocabulary holds training words only (lowercased).
    train_words = {w for ids in data.splits["train"].ids for w in data.vocab.decode(ids)}
    assert set(data.vocab.tokens[4:]) == train_words
    assert all(token == token.lower() for token in data.vocab.tokens[4:])
    # <bos> words <eos>; a text cut at max_length gets no <eos>.
    task = prepared.run.task
    ids = captioning.encode_text(ROTTEN, data.vocab, task)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == 6  # decent but dull .
    cut = captioning.encode_text(ROTTEN, data.vocab, replace(task, max_length=2))
    assert len(cut) == 3 and cut[-1] != EOS_ID
    assert data.vocab.decode(cut) == [w if w in data.vocab else "<unk>" for w in ("decent", "but")]


def test_char_level_tokens(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", reviews())
    data = captioning.prepare(tiny_run((str(path),), level="char")).data
    ids = captioning.encode_text("Ab", data.vocab, replace(CaptionTask(), level="char"))
    assert len(ids) == 4 and data.vocab.decode(ids)[0] in ("A", "<unk>")


def test_text_nll_sums_to_the_teacher_forced_loss(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", reviews())
    prepared = captioning.prepare(tiny_run((str(path),)))
    torch.manual_seed(0)
    model = ConditionedGenerator(prepared.run.model).eval()
    batch = captioning.batches(prepared.data.splits["train"], 16, seed=0, shuffle=False)[0]
    with torch.no_grad():
        forward = model(batch)
    per_text = captioning.text_nll(model, batch)
    assert per_text.shape == (13,)
    assert float(per_text.sum()) == pytest.approx(float(forward.total), rel=1e-5)
    # Row by row, through the forward pass alone.
    for row in range(3):
        rows = slice(row, row + 1)
        length = int(batch.lengths[row])
        one = ConditionedBatch(
            batch.condition[rows], batch.tokens[rows, :length], batch.lengths[rows]
        )
        with torch.no_grad():
            assert float(model(one).total) == pytest.approx(float(per_text[row]), rel=1e-5)


def test_evaluate_numbers_match_a_hand_computation(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", reviews())
    run = tiny_run((str(path),))
    run = replace(run, trainer=replace(run.trainer, max_steps=3, epochs=3))
    captioning.train(run, tmp_path / "run")
    result = captioning.evaluate(tmp_path / "run", split="train")
    loaded = captioning.load_run(tmp_path / "run")
    part = captioning.read_data(loaded.run.task).splits["train"]
    # By hand: each text alone through model(batch), under each label.
    own_total, tokens, preferred = 0.0, 0, 0
    other_total = 0.0
    for label, ids in zip(part.condition.tolist(), part.ids, strict=True):
        nll = []
        for k in (0, 1):
            batch = ConditionedBatch(
                torch.tensor([k]), torch.tensor([ids]), torch.tensor([len(ids)])
            )
            with torch.no_grad():
                nll.append(float(loaded.model(batch).total))
        own_total += nll[label]
        other_total += nll[1 - label]
        tokens += len(ids) - 1
        preferred += nll[label] < nll[1 - label]
    metrics = result.metrics
    assert metrics["tokens"] == tokens and metrics["texts"] == 13
    assert metrics["loss"] == pytest.approx(own_total / tokens, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(own_total / tokens), rel=1e-5)
    assert metrics["other_label_perplexity"] == pytest.approx(
        math.exp(other_total / tokens), rel=1e-5
    )
    assert metrics["label_preference"] == pytest.approx(preferred / 13)
    matrix = result.details["confusion_matrix"]
    assert matrix["labels"] == ["fresh", "rotten"]
    assert sum(map(sum, matrix["matrix"])) == 13
    assert matrix["matrix"][0][0] + matrix["matrix"][1][1] == preferred
    assert result.details["chance_preference"] == 0.5


def test_after_overfitting_each_label_generates_its_own_text(tmp_path: Path) -> None:
    out = overfit_run(tmp_path, [("fresh", FRESH), ("rotten", ROTTEN)])
    expected = {"fresh": "a three - hour cinema master class .", "rotten": "decent but dull ."}
    for label, text in expected.items():
        greedy = GenerateOptions(condition=label, length=20, top_k=1, num_samples=2, seed=5)
        assert captioning.generate(out, greedy) == [text, text]
        assert captioning.generate(out, GenerateOptions(condition=label, length=20, beam=3)) == [
            text
        ]
    # A prompt is teacher-forced, then continued.
    prompted = GenerateOptions(condition="rotten", start="Decent", length=10, top_k=1)
    assert captioning.generate(out, prompted) == ["Decent but dull ."]

    result = captioning.evaluate(out)
    assert result.metrics["label_preference"] == 1.0
    assert result.metrics["perplexity"] < 1.2
    assert result.metrics["other_label_perplexity"] > 2 * result.metrics["perplexity"]
    assert result.details["confusion_matrix"]["matrix"] == [[20, 0], [0, 20]]

    answers = captioning.predict(out, PredictOptions(inputs=(ROTTEN, FRESH), top=2))
    assert [a.record["label"] for a in answers] == ["rotten", "fresh"]
    for answer in answers:
        probabilities = [p for _, p in answer.record["probabilities"]]
        assert probabilities[0] > 0.99 and sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        nll = answer.record["nll_per_token"]
        # p(y | x) = softmax(−NLL(x | y)): the ratio of probabilities is exp(NLL gap).
        tokens = 4 + 1 if answer.record["input"] == ROTTEN else 8 + 1
        gap = (nll["fresh"] - nll["rotten"]) * tokens
        p = dict(answer.record["probabilities"])
        # Compared as probabilities: the record rounds them to 6 decimals, an absolute
        # 5e-7 that in log space grows without bound as p shrinks (p = 6e-6: 0.05).
        assert p["fresh"] == pytest.approx(1 / (1 + math.exp(gap)), abs=2e-6)


def test_generate_and_predict_refuse_bad_conditions(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", reviews())
    run = tiny_run((str(path),))
    captioning.train(replace(run, trainer=replace(run.trainer, max_steps=1)), tmp_path / "run")
    with pytest.raises(
        DataError, match=r"unknown label 'happy' \(known labels: 'fresh', 'rotten'\)"
    ):
        captioning.generate(tmp_path / "run", GenerateOptions(condition="happy"))
    with pytest.raises(DataError, match=r"--condition is required.*'fresh', 'rotten'"):
        captioning.generate(tmp_path / "run", GenerateOptions())
    with pytest.raises(DataError, match="beam search gives one best text"):
        captioning.generate(
            tmp_path / "run", GenerateOptions(condition="fresh", beam=2, num_samples=2)
        )
    with pytest.raises(DataError, match="give texts"):
        captioning.predict(tmp_path / "run", PredictOptions())
    seeded = GenerateOptions(condition="fresh", length=8, num_samples=3, seed=1, temperature=0.9)
    samples = captioning.generate(tmp_path / "run", seeded)
    assert len(samples) == 3 and samples == captioning.generate(tmp_path / "run", seeded)


# --------------------------------------------------------------------------- vectors


def write_npz(path: Path, features: np.ndarray, texts: np.ndarray) -> Path:
    with path.open("wb") as handle:
        np.savez(handle, features=features, texts=texts)
    return path


def test_vector_conditions_from_npz(tmp_path: Path) -> None:
    texts = ["a red square", "two blue circles", "a small green dog"]
    features = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 5.0], [0.0, 0.0, 9.0]])
    path = write_npz(tmp_path / "scenes.npz", np.repeat(features, 10, axis=0),
                     np.repeat(np.array(texts, dtype=str), 10))  # fmt: skip
    run = tiny_run((str(path),) * 3, batch_size=6)
    prepared = captioning.prepare(run)
    assert prepared.run.model.condition_size == 3 and prepared.run.model.num_labels is None
    condition = prepared.data.splits["train"].condition  # standardised on train
    assert condition.mean(dim=0).abs().max() < 1e-6
    assert condition.std(dim=0, correction=0).sub(1).abs().max() < 1e-5
    captioning.train(replace(run, trainer=replace(run.trainer, epochs=25)), tmp_path / "run")
    for vector, text in zip(features, texts, strict=True):
        shown = ",".join(str(v) for v in vector)
        options = GenerateOptions(condition=shown, length=10, top_k=1)
        assert captioning.generate(tmp_path / "run", options) == [text]
    result = captioning.evaluate(tmp_path / "run")
    assert result.metrics["vector_preference"] == 1.0
    assert result.metrics["other_vector_perplexity"] > 2 * result.metrics["perplexity"]
    with pytest.raises(DataError, match=r"expected 3 comma-separated finite numbers.*got 2"):
        captioning.generate(tmp_path / "run", GenerateOptions(condition="1,2"))
    with pytest.raises(DataError, match="expected 3 comma-separated numbers"):
        captioning.generate(tmp_path / "run", GenerateOptions(condition="fresh"))
    with pytest.raises(DataError, match="vector-conditioned run has no labels"):
        captioning.predict(tmp_path / "run", PredictOptions(inputs=("a red square",)))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"features": np.zeros((2, 3))}, r"no array 'texts' \(arrays found: 'features'"),
        ({"features": np.zeros(2), "texts": np.array(["a", "b"])},
         r"features is float64 of shape \(2,\)"),
        ({"features": np.zeros((2, 3)), "texts": np.array(["a"])},
         r"texts is <U1 of shape \(1,\) \(expected 2 strings"),
        ({"features": np.zeros((2, 3)), "texts": np.array(["a", None], dtype=object)},
         "array 'texts' cannot be read"),
        ({"features": np.array([[0.0], [np.nan]]), "texts": np.array(["a", "b"])},
         r"features\[1, 0\] is nan"),
        ({"features": np.zeros((2, 1)), "texts": np.array(["a", " "])}, r"texts\[1\] is empty"),
    ],
)  # fmt: skip
def test_npz_errors_name_the_file_and_the_array(
    tmp_path: Path, arrays: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.npz"
    with path.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=message) as caught:
        captioning.read_feature_texts(path)
    assert str(caught.value).startswith(f"{path}:") and "\n" not in str(caught.value)


def test_feature_csv(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('text,x,y,z\n"a cat, asleep",1,2.5,-3\nthe dog,0,0,1e3\n')
    names, rows = captioning.read_feature_texts(path)
    assert names == ["x", "y", "z"]
    assert rows == [("a cat, asleep", [1.0, 2.5, -3.0]), ("the dog", [0.0, 0.0, 1000.0])]
    names, rows = captioning.read_feature_texts(path, feature_columns=("z", "x"))
    assert names == ["z", "x"] and rows[1][1] == [1000.0, 0.0]
    path.write_text("text,x\nthe dog,big\n")
    with pytest.raises(
        DataError, match=r"f.csv:2: column 'x' holds 'big' \(expected a finite number"
    ):
        captioning.read_feature_texts(path)
    with pytest.raises(
        DataError, match=r"no column 'caption' in the header \(columns found: 'text', 'x'"
    ):
        captioning.read_feature_texts(path, text_column="caption")
    with pytest.raises(DataError, match="cannot tell the format"):
        captioning.read_feature_texts(tmp_path / "f.json")


def test_bad_task_settings() -> None:
    with pytest.raises(ValueError, match="data: expected one file"):
        CaptionTask(data=("a", "b"))
    with pytest.raises(ValueError, match="max_length"):
        CaptionTask(max_length=0)
    with pytest.raises(DataError, match="vector conditions need --data"):
        captioning.prepare(CaptionRun(task=CaptionTask(condition="vector")))
