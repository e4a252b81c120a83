"""The caption task: labels or vectors → texts; metrics, generation and the generative classifier."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.data.captions import CaptionTask, encode_text, read_data
from rnnkit.data.errors import DataError
from rnnkit.data.splits import SPLITS, split_indices
from rnnkit.data.vocab import BOS_ID, EOS_ID
from rnnkit.models.generator import ConditionedBatch
from rnnkit.tasks.captioning import TASK, CaptionRun
from rnnkit.tasks.options import GenerateOptions, PredictOptions
from rnnkit.tasks.task import Evaluation
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig
from tests.models.fixtures import reviews

FRESH = "A three-hour cinema master class."
ROTTEN = "Decent but dull."


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in rows))
    return path


def tiny_run(data: tuple[str, ...], batch_size: int = 32, **task: object) -> CaptionRun:
    run = CaptionRun(task=CaptionTask(data=data, min_freq=1, **task))  # type: ignore[arg-type]
    model = replace(run.model, embed=16, hidden=32, condition_embed=8, dropout=0.0)
    trainer = TrainerConfig(epochs=1, batch_size=batch_size, progress="off", clip_norm=5.0,
                            optimizer=OptimizerConfig(lr=0.02))  # fmt: skip
    return replace(run, model=model, trainer=trainer)


def generate(out: Path, options: GenerateOptions) -> list[str]:
    """The run's samples as whole texts (each streamed piece by piece)."""
    return ["".join(pieces) for pieces in TASK.stream(TASK.load(out), options)]


def evaluate(out: Path, split: str = "test") -> Evaluation:
    return TASK.evaluate(TASK.load(out), split, None)


def overfit_run(tmp_path: Path, rows: list[tuple[str, str]], copies: int = 20) -> Path:
    """Train a tiny model on ``rows`` (repeated) until it knows them; its run folder."""
    paths = [write_tsv(tmp_path / f"{name}.tsv", rows * copies) for name in ("a", "b", "c")]
    run = tiny_run(tuple(map(str, paths)), batch_size=8)
    run = replace(run, trainer=replace(run.trainer, epochs=12))
    out = tmp_path / "run"
    result = TASK.train(run, out)
    # The training-time extra: the valid texts' own labels score best once learnt.
    assert result.last_metrics["val_label_preference"] == 1.0
    return out


def test_prepare_reads_splits_labels_and_a_train_only_vocabulary(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", reviews())  # (label, text) columns
    prepared = TASK.prepare(tiny_run((str(path),)))
    data = prepared.data
    # One file: the shared seeded 80/10/10 split of its 16 rows.
    expected = dict(zip(SPLITS, map(len, split_indices(16, (0.8, 0.1, 0.1), 0)), strict=True))
    assert {name: len(part.ids) for name, part in data.splits.items()} == expected
    vocab = data.assets.vocab
    assert data.assets.conditions.labels == ("fresh", "rotten")
    assert prepared.run.model.num_labels == 2 and prepared.run.model.condition_size is None
    assert prepared.run.model.vocab_size == len(vocab)
    assert CaptionRun().trainer.batch_size == 32  # the real batch size, shown in config.toml
    assert (prepared.run.model.bos_id, prepared.run.model.eos_id) == (BOS_ID, EOS_ID)
    # The vocabulary holds training words only (lowercased).
    train_words = {w for ids in data.splits["train"].ids for w in vocab.decode(ids)}
    assert set(vocab.tokens[4:]) == train_words
    assert all(token == token.lower() for token in vocab.tokens[4:])
    # <bos> words <eos>; a text cut at max_length gets no <eos>.
    task = prepared.run.task
    ids = encode_text(ROTTEN, vocab, task.level, task.max_length)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == 6  # decent but dull .
    cut = encode_text(ROTTEN, vocab, task.level, 2)
    assert len(cut) == 3 and cut[-1] != EOS_ID
    assert vocab.decode(cut) == [w if w in vocab else "<unk>" for w in ("decent", "but")]
    # One example per text, with its length for bucketing.
    examples = TASK.examples(prepared, "train")
    assert len(examples) == expected["train"] and examples.lengths == [
        len(x) for x in data.splits["train"].ids
    ]


def test_char_level_tokens(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", reviews())
    vocab = TASK.prepare(tiny_run((str(path),), level="char")).data.assets.vocab
    ids = encode_text("Ab", vocab, "char", 100)
    assert len(ids) == 4 and vocab.decode(ids)[0] in ("A", "<unk>")


def test_collate_pads_a_batch_and_step_names_are_the_first_rows_inputs(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", reviews())
    prepared = TASK.prepare(tiny_run((str(path),)))
    examples = TASK.examples(prepared, "train")
    batch = TASK.collate([examples.items[i] for i in (0, 1, 2)])
    lengths = [len(examples.items[i][1]) for i in (0, 1, 2)]
    assert batch.lengths.tolist() == lengths and batch.tokens.shape == (3, max(lengths))
    assert batch.condition.tolist() == prepared.data.splits["train"].condition[:3].tolist()
    for row, n in enumerate(lengths):
        assert batch.tokens[row, :n].tolist() == examples.items[row][1]
        assert not batch.tokens[row, n:].any()  # padding
    run = tmp_path / "run"
    TASK.train(replace(prepared.run, trainer=replace(prepared.run.trainer, max_steps=1)), run)
    loaded = TASK.load(run)
    names = TASK.step_names(loaded, batch)
    # The decoder reads <bos> and the text, not the final <eos>: one name per step.
    assert names[0] == "<bos>" and len(names) == lengths[0] - 1
    assert names[1:] == loaded.assets.vocab.decode(examples.items[0][1][1:-1], strip_special=False)


def test_evaluate_numbers_match_a_hand_computation(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", reviews())
    run = tiny_run((str(path),))
    run = replace(run, trainer=replace(run.trainer, max_steps=3, epochs=3))
    TASK.train(run, tmp_path / "run")
    result = evaluate(tmp_path / "run", split="train")
    loaded = TASK.load(tmp_path / "run")
    part = read_data(loaded.run.task).splits["train"]
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
                nll.append(float(loaded.model(batch)[0].total))
        own_total += nll[label]
        other_total += nll[1 - label]
        tokens += len(ids) - 1
        preferred += nll[label] < nll[1 - label]
    metrics = result.metrics
    n = len(part.ids)
    assert metrics["tokens"] == tokens and metrics["texts"] == n
    assert metrics["loss"] == pytest.approx(own_total / tokens, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(own_total / tokens), rel=1e-5)
    assert metrics["other_label_perplexity"] == pytest.approx(
        math.exp(other_total / tokens), rel=1e-5
    )
    assert metrics["label_preference"] == pytest.approx(preferred / n)
    matrix = result.details["confusion_matrix"]
    assert matrix["labels"] == ["fresh", "rotten"]
    assert sum(map(sum, matrix["matrix"])) == n
    assert matrix["matrix"][0][0] + matrix["matrix"][1][1] == preferred
    assert result.details["chance_preference"] == 0.5


def test_after_overfitting_each_label_generates_its_own_text(tmp_path: Path) -> None:
    out = overfit_run(tmp_path, [("fresh", FRESH), ("rotten", ROTTEN)])
    expected = {"fresh": "a three - hour cinema master class .", "rotten": "decent but dull ."}
    for label, text in expected.items():
        greedy = GenerateOptions(condition=label, length=20, top_k=1, num_samples=2, seed=5)
        assert generate(out, greedy) == [text, text]
        assert generate(out, GenerateOptions(condition=label, length=20, beam=3)) == [text]
    # A prompt is teacher-forced, then continued.
    prompted = GenerateOptions(condition="rotten", start="Decent", length=10, top_k=1)
    assert generate(out, prompted) == ["Decent but dull ."]

    result = evaluate(out)
    assert result.metrics["label_preference"] == 1.0
    assert result.metrics["perplexity"] < 1.2
    assert result.metrics["other_label_perplexity"] > 2 * result.metrics["perplexity"]
    assert result.details["confusion_matrix"]["matrix"] == [[20, 0], [0, 20]]

    (section,) = TASK.report(TASK.load(out))
    assert section.title == "Generated captions" and section.missing is None
    assert [block.split("\n")[0] for block in section.blocks] == ["fresh:", "rotten:"]
    assert all(block.count("\n  ") == 2 for block in section.blocks)  # two samples each

    answers = TASK.predict(TASK.load(out), PredictOptions(inputs=(ROTTEN, FRESH), top=2))
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
    TASK.train(replace(run, trainer=replace(run.trainer, max_steps=1)), tmp_path / "run")
    with pytest.raises(
        DataError, match=r"unknown label 'happy' \(known labels: 'fresh', 'rotten'\)"
    ):
        generate(tmp_path / "run", GenerateOptions(condition="happy"))
    with pytest.raises(DataError, match=r"--condition is required.*'fresh', 'rotten'"):
        generate(tmp_path / "run", GenerateOptions())
    with pytest.raises(DataError, match="beam search gives one best text"):
        generate(tmp_path / "run", GenerateOptions(condition="fresh", beam=2, num_samples=2))
    with pytest.raises(DataError, match="give texts"):
        TASK.predict(TASK.load(tmp_path / "run"), PredictOptions())
    seeded = GenerateOptions(condition="fresh", length=8, num_samples=3, seed=1, temperature=0.9)
    samples = generate(tmp_path / "run", seeded)
    assert len(samples) == 3 and samples == generate(tmp_path / "run", seeded)


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
    prepared = TASK.prepare(run)
    assert prepared.run.model.condition_size == 3 and prepared.run.model.num_labels is None
    condition = prepared.data.splits["train"].condition  # standardised on train
    assert condition.mean(dim=0).abs().max() < 1e-6
    assert condition.std(dim=0, correction=0).sub(1).abs().max() < 1e-5
    TASK.train(replace(run, trainer=replace(run.trainer, epochs=25)), tmp_path / "run")
    for vector, text in zip(features, texts, strict=True):
        shown = ",".join(str(v) for v in vector)
        options = GenerateOptions(condition=shown, length=10, top_k=1)
        assert generate(tmp_path / "run", options) == [text]
    result = evaluate(tmp_path / "run")
    assert result.metrics["vector_preference"] == 1.0
    assert result.metrics["other_vector_perplexity"] > 2 * result.metrics["perplexity"]
    with pytest.raises(DataError, match=r"expected 3 comma-separated finite numbers.*got 2"):
        generate(tmp_path / "run", GenerateOptions(condition="1,2"))
    with pytest.raises(DataError, match="expected 3 comma-separated numbers"):
        generate(tmp_path / "run", GenerateOptions(condition="fresh"))
    with pytest.raises(DataError, match="vector-conditioned run has no labels"):
        TASK.predict(TASK.load(tmp_path / "run"), PredictOptions(inputs=("a red square",)))
    (section,) = TASK.report(TASK.load(tmp_path / "run"))
    assert section.missing is not None and "--condition" in section.missing


def test_bad_task_settings() -> None:
    with pytest.raises(ValueError, match="data: expected one file"):
        CaptionTask(data=("a", "b"))
    with pytest.raises(ValueError, match="max_length"):
        CaptionTask(max_length=0)
    with pytest.raises(DataError, match="vector conditions need --data"):
        TASK.prepare(CaptionRun(task=CaptionTask(condition="vector")))
    with pytest.raises(ValueError, match="max_vocab: expected an int ≥ 5"):
        CaptionTask(max_vocab=4)
