"""The language-model task as a library: prepare, fit with TBPTT, evaluate a file, predict."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rnnkit.bptt.truncated import TBPTTConfig
from rnnkit.data.errors import DataError
from rnnkit.tasks import language_model as lm
from rnnkit.tasks.task import GenerateOptions, PredictOptions, run_kind
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.trainer import TrainerConfig
from tests.models.fixtures import lines


def small_run(*paths: Path, **trainer: object) -> lm.LanguageModelRun:
    run = lm.LanguageModelRun()
    return replace(
        run,
        task=replace(run.task, data=tuple(map(str, paths)), batch_size=2, steps=10),
        model=replace(run.model, embed=8, hidden=16, layers=1),
        trainer=replace(run.trainer, progress="off", **trainer),  # type: ignore[arg-type]
    )


@pytest.fixture
def song(tmp_path: Path) -> Path:
    path = tmp_path / "song.txt"
    path.write_text("\n".join(lines("models_tempest_song.txt") * 12) + "\n")
    return path


def test_three_files_are_train_valid_test_and_the_vocabulary_sees_train_only(
    tmp_path: Path,
) -> None:
    files = []
    for name, text in [("train", "abcabcabc" * 10), ("valid", "abcz" * 8), ("test", "cab" * 9)]:
        files.append(tmp_path / f"{name}.txt")
        files[-1].write_text(text)
    prepared = lm.prepare(small_run(*files))
    corpus = prepared.data
    assert [len(corpus.splits[s]) for s in ("train", "valid", "test")] == [90, 32, 27]
    assert set(corpus.vocab.tokens[4:]) == {"a", "b", "c"}  # "z" of valid is <unk>
    assert prepared.run.model.vocab_size == 7
    assert corpus.splits["valid"].count(corpus.vocab.encode(["<unk>"])[0]) == 8


def test_too_little_text_for_the_streams_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("abc\n" * 30)
    run = small_run(path)
    with pytest.raises(DataError, match=r"valid part has .* too few for 8 streams"):
        lm.prepare(replace(run, task=replace(run.task, batch_size=8)))


def test_tbptt_trains_through_the_task_and_evaluates_a_file(song: Path, tmp_path: Path) -> None:
    run = small_run(song, max_steps=6)
    run = replace(run, trainer=replace(run.trainer, tbptt=TBPTTConfig(5, 10)))
    result = lm.train(run, tmp_path / "run")
    assert result.steps == 6 and run_kind(tmp_path / "run") == "lm"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last").step == 6

    evaluation = lm.evaluate(tmp_path / "run", data=str(song))
    metrics = evaluation.metrics
    assert evaluation.split == str(song)
    characters = len(song.read_text())
    assert metrics["tokens"] == 2 * (characters // 2 - 1)  # 2 streams; each row's last is a target
    assert math.isclose(metrics["perplexity"], math.exp(metrics["loss"]), rel_tol=1e-9)
    assert math.isclose(metrics["bits_per_character"], metrics["loss"] / math.log(2))


def test_predict_gives_the_models_next_token_probabilities(song: Path, tmp_path: Path) -> None:
    lm.train(small_run(song, max_steps=4), tmp_path / "run")
    [prediction] = lm.predict(tmp_path / "run", PredictOptions(inputs=("Full fa",), top=4))
    model, vocab, _ = lm.load_run(tmp_path / "run")
    with torch.no_grad():
        # The prompt is read after a blank line (lm.WARM_UP), as text starts in the corpus.
        logits, _ = model.logits(torch.tensor([vocab.encode(list(lm.WARM_UP + "Full fa"))]))
    probs = torch.softmax(logits[0, -1], dim=-1)
    expected = probs.topk(4)
    assert [p for _, p in prediction.record["next"]] == pytest.approx(
        expected.values.tolist(), abs=1e-6
    )
    assert [t for t, _ in prediction.record["next"]] == vocab.decode(
        expected.indices.tolist(), strip_special=False
    )


def test_generate_is_seeded_and_beam_search_finds_likelier_text(song: Path, tmp_path: Path) -> None:
    lm.train(small_run(song, max_steps=2), tmp_path / "run")
    options = GenerateOptions(start="Full", length=20, seed=5, num_samples=2)
    first = lm.generate(tmp_path / "run", options)
    assert first == lm.generate(tmp_path / "run", options)
    assert len(first) == 2 and all(s.startswith("Full") for s in first)
    # Untrained, yet no special token is sampled: one character per generated token.
    assert all(len(s) == len("Full") + 20 and "<" not in s for s in first)
    assert first != lm.generate(tmp_path / "run", replace(options, seed=6))
    with pytest.raises(DataError, match="beam search gives one text"):
        lm.generate(tmp_path / "run", replace(options, beam=3))
    # Beam search gives one text, at least as likely as the greedy one (top-k 1).
    model, vocab, _ = lm.load_run(tmp_path / "run")
    scores = []
    for changes in ({"top_k": 1}, {"beam": 6}):
        [text] = lm.generate(tmp_path / "run", replace(options, num_samples=1, **changes))
        assert "<unk>" not in text  # one character per token below
        assert text.startswith("Full")
        ids = torch.tensor([vocab.encode(list(text))])
        with torch.no_grad():
            logits, _ = model.logits(ids[:, :-1])
        log_probs = torch.log_softmax(logits, dim=-1).gather(2, ids[:, 1:, None])
        scores.append(float(log_probs[0, 3:].sum()))  # the 20 generated tokens
    assert scores[1] >= scores[0] - 1e-9


def test_the_default_trainer_carries_state_in_order() -> None:
    trainer = lm.LanguageModelRun().trainer
    assert isinstance(trainer, TrainerConfig)
    assert trainer.carry_state and not trainer.shuffle and trainer.batch_size == 1


def test_word_level_keeps_pretokenised_words_and_counts_line_ends() -> None:
    # PTB is already tokenised: "<unk>" and "'s" are words; each line end is <eos>.
    tokens = lm.tokenizer("word").tokenize(" the <unk> 's N \n of it \n")
    assert tokens == ["the", "<unk>", "'s", "N", "\n", "of", "it", "\n"]
    assert lm.detokenize(tokens, "word") == "the <unk> 's N\nof it\n"
    assert lm.detokenize(list("ab c"), "char") == "ab c"
