"""The tagging task on real WNUT-16 sentences: data, vocabulary, metrics, predictions."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from rnnkit.data.errors import DataError
from rnnkit.metrics import span_scores
from rnnkit.tasks import tagging
from rnnkit.tasks.task import PredictOptions
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
    prepared = tagging.prepare(run_on(SAMPLE))
    corpus: tagging.Corpus = prepared.data
    assert [len(corpus.sentences[s]) for s in tagging.SPLITS] == [10, 1, 1]
    train_words = [w for s in corpus.sentences["train"] for w, _ in s]
    counts = {w: train_words.count(w) for w in train_words}
    # min_freq 2: the vocabulary is exactly the training words seen twice or more.
    assert set(corpus.vocab.tokens[4:]) == {w for w, n in counts.items() if n >= 2}
    assert prepared.run.model.vocab_size == len(corpus.vocab)
    # The tag set covers every part (O first), and the sample is BIO.
    every_tag = {t for part in corpus.sentences.values() for s in part for _, t in s}
    assert corpus.tagset.tags[0] == "O" and set(corpus.tagset.tags) == every_tag
    assert corpus.tagset.scheme == "BIO"
    assert prepared.run.model.num_tags == len(every_tag)
    assert any("10 sentences" in line for line in prepared.summary)
    # Seeded: the same split again, another seed another split.
    again = tagging.prepare(run_on(SAMPLE)).data
    assert again.sentences == corpus.sentences
    other = tagging.prepare(run_on(SAMPLE, split_seed=5)).data
    assert other.sentences != corpus.sentences


def test_lowercase_and_min_freq_change_the_vocabulary() -> None:
    cased = tagging.prepare(run_on(SAMPLE, min_freq=1)).data.vocab
    lower = tagging.prepare(run_on(SAMPLE, min_freq=1, lowercase=True)).data.vocab
    assert "It" in cased and "It" not in lower and "it" in lower
    assert len(lower) < len(cased)
    encoded = tagging.encode([[("IT", "O"), ("zzz-unseen", "O")]], lower,
                             tagging.prepare(run_on(SAMPLE)).data.tagset, True, where="x")  # fmt: skip
    assert encoded[0][0] == [lower.encode(["it"])[0], 1]  # unknown word -> <unk> (1)


def test_three_files_and_bad_data(tmp_path: Path) -> None:
    sentences = SAMPLE.read_text().split("\n", 1)[1].split("\n\t\n")
    paths = []
    for name, chunk in zip(tagging.SPLITS, (sentences[:8], sentences[8:10], sentences[10:]),
                           strict=True):  # fmt: skip
        paths.append(tmp_path / f"{name}.conll")
        paths[-1].write_text("\n\n".join(chunk) + "\n")
    corpus = tagging.prepare(run_on(*paths, comment=None)).data
    assert [len(corpus.sentences[s]) for s in tagging.SPLITS] == [8, 2, 2]
    with pytest.raises(ValueError, match="expected one file, or three"):
        tagging.TaggingTask(data=("a", "b"))
    broken = tmp_path / "broken.conll"
    broken.write_text("New\tB-loc\nYork\tI-loc\textra\n")
    with pytest.raises(DataError, match=r"broken.conll:2: line has 3 columns"):
        tagging.prepare(run_on(broken, comment=None))
    tags = tagging.TagSet(("O", "B-x"), "BIO")
    with pytest.raises(DataError, match="tag 'I-y' is not one the run knows"):
        tags.ids(["O", "I-y"], where="test")


def test_plain_labels_are_scored_by_accuracy(tmp_path: Path) -> None:
    pos = tmp_path / "pos.conll"
    pos.write_text("".join(f"the\tDET\n{w}\tNOUN\nruns\tVERB\n\n" for w in "abcdefghij"))
    prepared = tagging.prepare(run_on(pos, comment=None))
    assert prepared.data.tagset.scheme is None
    stopping = prepared.run.trainer.early_stopping
    assert stopping is not None and stopping.monitor == "val_accuracy"
    metrics, details = tagging.scores([["DET", "NOUN"]], [["DET", "VERB"]], None)
    assert metrics == {"accuracy": 0.5, "tokens": 2.0} and details == {}


def test_scores_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-PER"], ["B-LOC", "B-LOC"]]
    metrics, details = tagging.scores(predicted, gold, "BIO")
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


def test_entity_spans_follow_conlleval() -> None:
    assert tagging.entity_spans(["O", "I-PER", "I-PER", "B-LOC", "I-ORG", "O"]) == [
        ("PER", 1, 2),
        ("LOC", 3, 3),
        ("ORG", 4, 4),
    ]
    assert tagging.entity_spans(["S-X", "B-Y", "E-Y", "E-Y"]) == [
        ("X", 0, 0),
        ("Y", 1, 2),
        ("Y", 3, 3),
    ]
    # Tied to the metric: the spans read here are the ones span_scores counts.
    rng = random.Random(0)
    for scheme, tags in (("BIO", ["O", "B-A", "I-A", "B-B", "I-B"]),
                         ("BIOES", ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "E-B"])):  # fmt: skip
        for _ in range(200):
            sentence = [rng.choice(tags) for _ in range(rng.randint(1, 8))]
            spans = tagging.entity_spans(sentence)
            assert len(spans) == span_scores([sentence], [sentence], scheme).micro.support
            for kind, _, _ in spans:
                assert kind in ("A", "B")


def test_train_evaluate_predict(tmp_path: Path) -> None:
    run = replace(run_on(SAMPLE), trainer=TrainerConfig(epochs=1, max_steps=4, batch_size=4,
                                                        progress="off"))  # fmt: skip
    result = tagging.train(run, tmp_path / "run")
    assert result.steps == 3  # 10 sentences in micro-batches of 4: an epoch is 3 steps
    model, vocab, tagset, loaded = tagging.load_run(tmp_path / "run")
    assert loaded.model.vocab_size == len(vocab) and tagset.scheme == "BIO"

    evaluation = tagging.evaluate(tmp_path / "run", split="train")
    sentences = tagging.read_parts(loaded.task)["train"]
    predicted = tagging.tag_sentences(model, [[w for w, _ in s] for s in sentences], vocab,
                                      tagset, loaded.task.lowercase)  # fmt: skip
    expected, _ = tagging.scores(predicted, [[t for _, t in s] for s in sentences], "BIO")
    for name, value in expected.items():
        assert evaluation.metrics[name] == pytest.approx(value)
    assert evaluation.metrics["tokens"] == sum(map(len, sentences))
    assert evaluation.metrics["loss"] > 0
    assert set(evaluation.details["per_type"]) >= {"facility", "person"}

    options = PredictOptions(inputs=("Empire State Building is nice", "hello"))
    first = tagging.predict(tmp_path / "run", options)
    assert [p.record["tokens"] for p in first] == [
        ["Empire", "State", "Building", "is", "nice"],
        ["hello"],
    ]
    for prediction in first:
        record = prediction.record
        assert len(record["tags"]) == len(record["tokens"])
        assert all(tag in tagset.tags for tag in record["tags"])
        spans = tagging.entity_spans(record["tags"])
        assert [(s["type"], s["start"], s["end"] - 1) for s in record["spans"]] == spans
        assert prediction.text.startswith(f"{record['tokens'][0]}/{record['tags'][0]}")
    assert tagging.predict(tmp_path / "run", options) == first  # eval mode: deterministic
    with pytest.raises(DataError, match="give sentences"):
        tagging.predict(tmp_path / "run", PredictOptions())


def test_crf_run_decodes_with_viterbi(tmp_path: Path) -> None:
    run = run_on(SAMPLE)
    run = replace(run, model=replace(run.model, crf=True))
    tagging.train(run, tmp_path / "crf")
    model, *_ = tagging.load_run(tmp_path / "crf")
    assert model.crf is not None
    evaluation = tagging.evaluate(tmp_path / "crf", split="valid")
    assert 0.0 <= evaluation.metrics["accuracy"] <= 1.0
    valid = tagging.read_parts(run.task)["valid"]
    assert evaluation.metrics["tokens"] == sum(map(len, valid))
