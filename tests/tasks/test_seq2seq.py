"""The seq2seq task on real CMUdict entries: splits by source, closest-reference scoring,
decoding, predictions, the report's sections."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rnnkit.data.errors import DataError
from rnnkit.data.splits import SPLITS
from rnnkit.data.vocab import BOS_ID, EOS_ID, PAD_ID
from rnnkit.metrics import bleu, closest_reference_scores
from rnnkit.tasks import seq2seq
from rnnkit.tasks.options import PredictOptions
from rnnkit.tasks.seq2seq import TASK
from tests.models.fixtures import lines


def cmudict_pairs() -> list[tuple[str, str]]:
    """The 24 CMUdict entries of the fixture as (spelling, phonemes)."""
    return [tuple(line.split(" ", 1)) for line in lines("seq2seq_cmudict_sample.dict")]  # type: ignore[misc]


@pytest.fixture
def g2p_file(tmp_path: Path) -> Path:
    # The sample plus a second pronunciation of one word, as CMUdict lists for some.
    pairs = [*cmudict_pairs(), ("burnt", "B ER1 N D")]
    path = tmp_path / "g2p.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    return path


def run_on(*data: Path, **changes: object) -> seq2seq.Seq2SeqRun:
    run = seq2seq.Seq2SeqRun()
    trainer = replace(run.trainer, epochs=1, max_steps=3, batch_size=4, progress="off")
    task = replace(run.task, data=tuple(map(str, data)), **changes)
    return replace(run, task=task,
                   model=replace(run.model, embed=8, hidden=16), trainer=trainer)  # fmt: skip


def test_defaults_use_the_vocabulary_special_ids() -> None:
    model = seq2seq.Seq2SeqRun().model
    assert (model.pad_id, model.bos_id, model.eos_id) == (PAD_ID, BOS_ID, EOS_ID)
    assert seq2seq.Seq2SeqRun().trainer.batch_size == 128  # the real batch size, in config.toml
    task = seq2seq.Seq2SeqRun().task
    assert (task.dataset, task.source_level, task.target_level) == ("cmudict", "char", "word")
    with pytest.raises(ValueError, match="beam"):
        seq2seq.Seq2SeqTask(beam=0)


def test_one_file_holds_out_sources_not_pairs(g2p_file: Path) -> None:
    prepared = TASK.prepare(run_on(g2p_file))
    parts = prepared.data
    sources = {name: {s for s, _ in pairs} for name, pairs in parts.items()}
    assert not sources["train"] & sources["valid"]
    assert not sources["train"] & sources["test"]
    assert not sources["valid"] & sources["test"]
    assert sum(len(p) for p in parts.values()) == 25  # every pair kept
    assert [len(sources[n]) for n in SPLITS] == [20, 2, 2]  # 24 words: ⌊2.4⌋ valid and test
    # Both pronunciations of "burnt" went to the same part.
    burnt = [name for name, pairs in parts.items() for s, _ in pairs if s == "burnt"]
    assert len(burnt) == 2 and len(set(burnt)) == 1
    # Vocabularies from train only: characters in, phonemes out.
    train = parts["train"]
    vocabs = prepared.assets
    assert set(vocabs.source.tokens[4:]) == {c for s, _ in train for c in s}
    assert set(vocabs.target.tokens[4:]) == {p for _, t in train for p in t.split()}
    assert prepared.run.model.source_vocab == len(vocabs.source)
    assert prepared.run.model.target_vocab == len(vocabs.target)
    assert "test sources also in train: 0" in prepared.summary


def test_one_example_per_pair_wraps_targets_in_bos_and_eos(g2p_file: Path) -> None:
    prepared = TASK.prepare(run_on(g2p_file))
    vocabs, task = prepared.assets, prepared.run.task
    [(source, target)] = seq2seq.encode(task, vocabs, [("hohl", "HH OW1 L")]).items
    assert source == vocabs.source.encode(list("hohl"))
    assert target[0] == BOS_ID and target[-1] == EOS_ID and len(target) == 5
    [(unknown, _)] = seq2seq.encode(task, vocabs, [("é", "X")]).items
    assert unknown == [1]  # <unk>
    examples = TASK.examples(prepared, "train")
    assert len(examples) == len(prepared.data["train"])  # one example per pair
    assert examples.lengths == [len(t) for _, t in examples.items]  # bucketed by target length
    batch = TASK.collate(list(examples.items[:3]))
    assert batch.source.shape[0] == 3 and int(batch.target_lengths.min()) >= 3


def test_closest_reference_scoring_by_hand() -> None:
    refs = [[["R", "EH1", "D"], ["R", "IY1", "D"]], [["K", "AE1", "T"]], [["AH0"]]]
    outputs = [["R", "IY1", "D"], ["K", "AH1", "T", "S"], ["AH0"]]
    metrics = closest_reference_scores(outputs, refs)
    # "read" matches its second reference (0 errors); "cat" has 1 substitution and 1
    # insertion against its 3 phonemes; the third is exact. PER = 2 / (3 + 3 + 1).
    assert metrics["token_error_rate"] == pytest.approx(2 / 7)
    assert metrics["sequence_error_rate"] == pytest.approx(1 / 3)
    chosen = [["R", "IY1", "D"], ["K", "AE1", "T"], ["AH0"]]
    assert metrics["bleu"] == bleu(outputs, chosen)  # BLEU against the closest too
    # A tie (one edit to each) goes to the first reference in the given order: A B (1
    # error in 2 tokens), not C (1 in 1).
    assert closest_reference_scores([["A", "C"]], [[["A", "B"], ["C"]]])["token_error_rate"] == 0.5
    assert closest_reference_scores([["A", "C"]], [[["C"], ["A", "B"]]])["token_error_rate"] == 1.0
    with pytest.raises(ValueError, match=r"references\[0\]"):
        closest_reference_scores([["A"]], [[]])


def test_an_overfit_model_decodes_its_training_words(g2p_file: Path, tmp_path: Path) -> None:
    run = run_on(g2p_file)
    words = "hohl\tHH OW1 L\nburnt\tB ER1 N T\nrenco\tR EH1 N K OW0\n"
    (tmp_path / "many.tsv").write_text(words * 40)  # two epochs of 40 steps
    (tmp_path / "few.tsv").write_text(words * 2)
    data = tuple(str(tmp_path / name) for name in ("many.tsv", "few.tsv", "few.tsv"))
    run = replace(run, task=replace(run.task, data=data),
                  model=replace(run.model, hidden=32),
                  trainer=replace(run.trainer, epochs=2, max_steps=None, batch_size=3,
                                  early_stopping=None,
                                  optimizer=replace(run.trainer.optimizer, lr=0.02)))  # fmt: skip
    TASK.train(run, tmp_path / "run")
    loaded = TASK.load(tmp_path / "run")
    evaluation = TASK.evaluate(loaded, "test", None)
    assert evaluation.metrics["sources"] == 3 and evaluation.metrics["pairs"] == 6
    assert evaluation.metrics["sequence_error_rate"] == 0.0
    assert evaluation.metrics["token_error_rate"] == 0.0
    assert evaluation.metrics["bleu"] == pytest.approx(1.0)
    assert evaluation.metrics["perplexity"] < 1.5
    assert evaluation.details["mistakes"] == []
    assert "PER" in evaluation.details["names"]["token_error_rate"]
    assert "WER" in evaluation.details["names"]["sequence_error_rate"]

    greedy = TASK.predict(loaded, PredictOptions(inputs=("renco", "hohl")))
    assert [p.record["output"] for p in greedy] == ["R EH1 N K OW0", "HH OW1 L"]
    assert greedy[0].record["tokens"] == ["R", "EH1", "N", "K", "OW0"]
    assert greedy[0].record["score"] < 0
    assert greedy[0].text.startswith("renco → R EH1 N K OW0")
    beam = TASK.predict(loaded, PredictOptions(inputs=("renco", "hohl"), beam=3))
    assert [p.record["output"] for p in beam] == ["R EH1 N K OW0", "HH OW1 L"]
    # The beam's best is at least as likely as the greedy path.
    assert all(
        b.record["score"] >= g.record["score"] - 1e-5 for b, g in zip(beam, greedy, strict=True)
    )
    with pytest.raises(DataError, match=r"^give sources"):
        TASK.predict(loaded, PredictOptions())

    attention, decoded = TASK.report(loaded)
    assert attention.title == "Attention" and attention.missing is None
    assert attention.images and "teacher-forced on the first test pair" in attention.text[0]
    assert decoded.title == "Decoded examples" and decoded.missing is None
    assert "sequence_error_rate 0" in decoded.text[0]
    assert sorted(row[0] for row in decoded.tables[0].rows) == ["burnt", "hohl", "renco"]
    # few.tsv lists each word twice: two (equal) references, and the output is each.
    assert all(row[2] == f"{row[1]} | {row[1]}" for row in decoded.tables[0].rows)
    batch = TASK.sample_batch(loaded, "test")
    names = TASK.step_names(loaded, batch)
    assert "".join(names) in {"hohl", "burnt", "renco"}  # the first row's source characters


def test_bad_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("cat\tK AE1 T\ndog\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: line has 1 tab-separated fields"):
        TASK.prepare(run_on(bad))
    two = tmp_path / "two.tsv"
    two.write_text("cat\tK AE1 T\ndog\tD AO1 G\n")
    with pytest.raises(DataError, match="2 distinct sources are too few to split"):
        TASK.prepare(run_on(two))
    with pytest.raises(ValueError, match="expected one file"):
        seq2seq.Seq2SeqTask(data=("a", "b"))
