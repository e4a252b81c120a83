"""The tagging task on real WNUT-16 sentences: data, vocabulary, metrics, predictions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rnnkit.data import tags
from rnnkit.data.errors import DataError
from rnnkit.data.splits import SPLITS
from rnnkit.tasks import tagging
from rnnkit.tasks.options import PredictOptions
from rnnkit.tasks.tagging import TASK
from rnnkit.training.trainer import TrainerConfig
from tests.models.fixtures import FIXTURES

SAMPLE = FIXTURES / "tagger_wnut16_sample.txt"  # 12 sentences, a "# source" header


def task(*data: Path | str, **changes: object) -> tagging.TaggingTask:
    return replace(tagging.TaggingTask(data=tuple(map(str, data)), comment="# "), **changes)


def run_on(*data: Path | str, **changes: object) -> tagging.TaggingRun:
    trainer = replace(tagging.TaggingRun().trainer, epochs=1, max_steps=3, batch_size=4,
                      progress="off")  # fmt: skip
    model = replace(tagging.TaggingRun().model, embed=8, hidden=12)
    return tagging.TaggingRun(task=task(*data, **changes), model=model, trainer=trainer)


def test_one_file_is_split_by_sentence_and_the_vocabulary_sees_train_only() -> None:
    prepared = TASK.prepare(run_on(SAMPLE))
    sentences, assets = prepared.data, prepared.assets
    assert [len(sentences[s]) for s in SPLITS] == [10, 1, 1]
    train_words = [w for s in sentences["train"] for w, _ in s]
    counts = {w: train_words.count(w) for w in train_words}
    # min_freq 2: the vocabulary is exactly the training words seen twice or more.
    assert set(assets.vocab.tokens[4:]) == {w for w, n in counts.items() if n >= 2}
    assert prepared.run.model.vocab_size == len(assets.vocab)
    # The tag set covers every part (O first), and the sample is BIO.
    every_tag = {t for part in sentences.values() for s in part for _, t in s}
    assert assets.tagset.tags[0] == "O" and set(assets.tagset.tags) == every_tag
    assert assets.tagset.scheme == "BIO"
    assert prepared.run.model.num_tags == len(every_tag)
    assert any("10 sentences" in line for line in prepared.summary)
    # Seeded: the same split again, another seed another split.
    again = TASK.prepare(run_on(SAMPLE)).data
    assert again == sentences
    other = TASK.prepare(run_on(SAMPLE, split_seed=5)).data
    assert other != sentences


def test_lowercase_and_min_freq_change_the_vocabulary() -> None:
    cased = TASK.prepare(run_on(SAMPLE, min_freq=1)).assets.vocab
    lower = TASK.prepare(run_on(SAMPLE, min_freq=1, lowercase=True)).assets.vocab
    assert "It" in cased and "It" not in lower and "it" in lower
    assert len(lower) < len(cased)
    encoded = tags.encode([[("IT", "O"), ("zzz-unseen", "O")]], lower,
                             TASK.prepare(run_on(SAMPLE)).assets.tagset, True, where="x")  # fmt: skip
    assert encoded[0][0] == [lower.encode(["it"])[0], 1]  # unknown word -> <unk> (1)


def test_three_files_and_bad_data(tmp_path: Path) -> None:
    sentences = SAMPLE.read_text().split("\n", 1)[1].split("\n\t\n")
    paths = []
    for name, chunk in zip(SPLITS, (sentences[:8], sentences[8:10], sentences[10:]),
                           strict=True):  # fmt: skip
        paths.append(tmp_path / f"{name}.conll")
        paths[-1].write_text("\n\n".join(chunk) + "\n")
    sentences = TASK.prepare(run_on(*paths, comment=None)).data
    assert [len(sentences[s]) for s in SPLITS] == [8, 2, 2]
    with pytest.raises(ValueError, match=r"expected one file \(split by the task\) or three"):
        tagging.TaggingTask(data=("a", "b"))
    broken = tmp_path / "broken.conll"
    broken.write_text("New\tB-loc\nYork\tI-loc\textra\n")
    with pytest.raises(DataError, match=r"broken.conll:2: line has 3 columns"):
        TASK.prepare(run_on(broken, comment=None))
    tagset = tags.TagSet(("O", "B-x"), "BIO")
    with pytest.raises(DataError, match="tag 'I-y' is not one the run knows"):
        tagset.ids(["O", "I-y"], where="test")


def test_plain_labels_are_scored_by_accuracy(tmp_path: Path) -> None:
    pos = tmp_path / "pos.conll"
    pos.write_text("".join(f"the\tDET\n{w}\tNOUN\nruns\tVERB\n\n" for w in "abcdefghij"))
    prepared = TASK.prepare(run_on(pos, comment=None))
    assert prepared.assets.tagset.scheme is None
    stopping = prepared.run.trainer.early_stopping
    assert stopping is not None and stopping.monitor == "val_accuracy"
    metrics, details = tags.scores([["DET", "NOUN"], ["X"]], [["DET", "VERB"], ["X"]], None)
    # Tokens: 2 of 3 right; sentences: the second alone is tagged exactly.
    assert metrics == {"accuracy": 2 / 3, "exact": 0.5, "tokens": 3.0, "sequences": 2.0}
    assert details == {}


def test_scores_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-PER"], ["B-LOC", "B-LOC"]]
    metrics, details = tags.scores(predicted, gold, "BIO")
    # Gold spans: PER(0-1), LOC(3), LOC(0) = 3. Found: PER(0-1), PER(3), LOC(0), LOC(1) = 4.
    # Correct: PER(0-1), LOC(0) = 2. P = 2/4, R = 2/3, F1 = 2·(1/2)(2/3)/(1/2 + 2/3) = 4/7.
    assert metrics["span_precision"] == pytest.approx(0.5)
    assert metrics["span_recall"] == pytest.approx(2 / 3)
    assert metrics["span_f1"] == pytest.approx(4 / 7)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["spans"] == 3 and metrics["tokens"] == 6
    assert details["per_type"]["PER"] == {"precision": 0.5, "recall": 1.0,
                                          "f1": pytest.approx(2 / 3), "support": 1}  # fmt: skip
    assert details["per_type"]["LOC"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                          "support": 2}  # fmt: skip


def test_train_evaluate_predict(tmp_path: Path) -> None:
    run = replace(run_on(SAMPLE), trainer=TrainerConfig(epochs=1, max_steps=4, batch_size=4,
                                                        progress="off"))  # fmt: skip
    result = TASK.train(run, tmp_path / "run")
    assert result.steps == 3  # 10 sentences in batches of 4: an epoch is 3 steps
    loaded = TASK.load(tmp_path / "run")
    vocab, tagset = loaded.assets.vocab, loaded.assets.tagset
    assert loaded.run.model.vocab_size == len(vocab) and tagset.scheme == "BIO"
    assert loaded.run.trainer.batch_size == 4  # config.toml holds the real batch size

    evaluation = TASK.evaluate(loaded, "train", None)
    sentences = tagging.read_parts(loaded.run.task)["train"]
    predicted = TASK.tag(loaded, [[w for w, _ in s] for s in sentences])
    expected, _ = tags.scores(predicted, [[t for _, t in s] for s in sentences], "BIO")
    for name, value in expected.items():
        assert evaluation.metrics[name] == pytest.approx(value)
    assert evaluation.metrics["tokens"] == sum(map(len, sentences))
    assert evaluation.metrics["loss"] > 0
    assert set(evaluation.details["per_type"]) >= {"facility", "person"}
    # The loss per token is the summed loss of every sentence, whatever the batching.
    examples = TASK.examples(TASK.prepare(loaded.run), "train")
    with torch.no_grad():
        total = sum(float(loaded.model(TASK.collate([e]))[0].total) for e in examples.items)
    assert evaluation.metrics["loss"] == pytest.approx(total / evaluation.metrics["tokens"],
                                                       rel=1e-5)  # fmt: skip
    # The user's own CoNLL file: the same sentences give the same scores.
    own = tmp_path / "own.conll"
    own.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n")
    assert TASK.evaluate(loaded, "test", str(own)).metrics == evaluation.metrics

    options = PredictOptions(inputs=("Empire State Building is nice", "hello"))
    first = TASK.predict(loaded, options)
    assert [p.record["tokens"] for p in first] == [
        ["Empire", "State", "Building", "is", "nice"],
        ["hello"],
    ]
    for prediction in first:
        record = prediction.record
        assert len(record["tags"]) == len(record["tokens"])
        assert all(tag in tagset.tags for tag in record["tags"])
        spans = tags.entity_spans(record["tags"])
        assert [(s["type"], s["start"], s["end"] - 1) for s in record["spans"]] == spans
        assert prediction.text.startswith(f"{record['tokens'][0]}/{record['tags'][0]}")
    assert TASK.predict(loaded, options) == first  # eval mode: deterministic
    # Tagged one at a time or together (in batches of 4), each sentence gets the same tags.
    many = tuple(" ".join(w for w, _ in s) for s in sentences)
    together = TASK.predict(loaded, PredictOptions(inputs=many))
    alone = [TASK.predict(loaded, PredictOptions(inputs=(one,)))[0] for one in many]
    assert together == alone
    with pytest.raises(DataError, match=r"^give sentences"):
        TASK.predict(loaded, PredictOptions())
    with pytest.raises(DataError, match=r"^input 2 is empty"):
        TASK.predict(loaded, PredictOptions(inputs=("a b", " ")))

    # The report's section: the test sentences, true and predicted, spans bracketed.
    [section] = TASK.report(loaded)
    test = tagging.read_parts(loaded.run.task)["test"]
    assert section.title == "Tagged sentences" and section.missing is None
    assert len(section.blocks) == len(test) == 1
    true_line = section.blocks[0].splitlines()[0]
    assert true_line == "true:      " + tags.marked([w for w, _ in test[0]],
                                                    [t for _, t in test[0]], "BIO")  # fmt: skip
    batch = TASK.sample_batch(loaded, "valid")
    assert TASK.step_names(loaded, batch) == vocab.decode(
        batch.tokens[0, : int(batch.lengths[0])], strip_special=False
    )


def test_crf_run_decodes_with_viterbi(tmp_path: Path) -> None:
    run = run_on(SAMPLE)
    run = replace(run, model=replace(run.model, crf=True))
    TASK.train(run, tmp_path / "crf")
    loaded = TASK.load(tmp_path / "crf")
    assert loaded.model.crf is not None
    evaluation = TASK.evaluate(loaded, "valid", None)
    assert 0.0 <= evaluation.metrics["accuracy"] <= 1.0
    valid = tagging.read_parts(run.task)["valid"]
    assert evaluation.metrics["tokens"] == sum(map(len, valid))


def test_plain_label_report_shows_word_tag_pairs(tmp_path: Path) -> None:
    pos = tmp_path / "pos.conll"
    pos.write_text("".join(f"the\tDET\n{w}\tNOUN\nruns\tVERB\n\n" for w in "abcdefghij"))
    TASK.train(run_on(pos, comment=None), tmp_path / "pos")
    loaded = TASK.load(tmp_path / "pos")
    assert loaded.assets.tagset.scheme is None
    [section] = TASK.report(loaded)
    true_line, predicted_line = section.blocks[0].splitlines()
    test = tagging.read_parts(loaded.run.task)["test"][0]
    assert true_line == "true:      " + " ".join(f"{w}/{t}" for w, t in test)
    assert predicted_line.startswith("predicted: the/")
    assert TASK.predict(loaded, PredictOptions(inputs=("the a runs",)))[0].record["spans"] == []
