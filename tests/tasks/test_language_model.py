"""The language-model task as a library: prepare, fit with TBPTT, evaluate a file, predict."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rnnkit.bptt.truncated import TBPTTConfig
from rnnkit.data.corpus import WARM_UP, detokenize, never_targets, tokenizer
from rnnkit.data.errors import DataError
from rnnkit.tasks import language_model as lm
from rnnkit.tasks.language_model import TASK
from rnnkit.tasks.options import GenerateOptions, PredictOptions
from rnnkit.tasks.task import run_kind
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig
from tests.models.fixtures import lines


def small_run(*paths: Path, **trainer: object) -> lm.LanguageModelRun:
    run = lm.LanguageModelRun()
    return replace(
        run,
        task=replace(run.task, data=tuple(map(str, paths)), steps=10),
        model=replace(run.model, embed=8, hidden=16, layers=1),
        trainer=replace(run.trainer, batch_size=2, progress="off", **trainer),  # type: ignore[arg-type]
    )


def generate(run_dir: Path, options: GenerateOptions) -> list[str]:
    return ["".join(pieces) for pieces in TASK.stream(TASK.load(run_dir), options)]


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
    prepared = TASK.prepare(small_run(*files))
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
        TASK.prepare(replace(run, trainer=replace(run.trainer, batch_size=8)))
    # The streams are every row of a step: 2 per micro-batch × 4 micro-batches.
    with pytest.raises(DataError, match=r"valid part has .* too few for 8 streams"):
        TASK.prepare(replace(run, trainer=replace(run.trainer, accumulate=4)))


def test_tbptt_trains_through_the_task_and_evaluates_a_file(song: Path, tmp_path: Path) -> None:
    run = small_run(song, max_steps=6)
    run = replace(run, trainer=replace(run.trainer, tbptt=TBPTTConfig(5, 10)))
    result = TASK.train(run, tmp_path / "run")
    assert result.steps == 6 and run_kind(tmp_path / "run") == "lm"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last").step == 6

    evaluation = TASK.evaluate(TASK.load(tmp_path / "run"), "test", str(song))
    metrics = evaluation.metrics
    assert evaluation.split == str(song)
    characters = len(song.read_text())
    assert metrics["tokens"] == 2 * (characters // 2 - 1)  # 2 streams; each row's last is a target
    assert math.isclose(metrics["perplexity"], math.exp(metrics["loss"]), rel_tol=1e-9)
    assert math.isclose(metrics["bits_per_character"], metrics["loss"] / math.log(2))


def test_predict_gives_the_models_next_token_probabilities(song: Path, tmp_path: Path) -> None:
    TASK.train(small_run(song, max_steps=4), tmp_path / "run")
    loaded = TASK.load(tmp_path / "run")
    [prediction] = TASK.predict(loaded, PredictOptions(inputs=("Full fa",), top=4))
    model, vocab = loaded.model, loaded.assets.vocab
    with torch.no_grad():
        # The prompt is read after a blank line (WARM_UP), as text starts in the corpus.
        logits, _ = model.logits(torch.tensor([vocab.encode(list(WARM_UP + "Full fa"))]))
    probs = torch.softmax(logits[0, -1], dim=-1)
    expected = probs.topk(4)
    assert [p for _, p in prediction.record["next"]] == pytest.approx(
        expected.values.tolist(), abs=1e-6
    )
    assert [t for t, _ in prediction.record["next"]] == vocab.decode(
        expected.indices.tolist(), strip_special=False
    )


def test_generate_is_seeded_and_beam_search_finds_likelier_text(song: Path, tmp_path: Path) -> None:
    TASK.train(small_run(song, max_steps=2), tmp_path / "run")
    options = GenerateOptions(start="Full", length=20, seed=5, num_samples=2)
    first = generate(tmp_path / "run", options)
    assert first == generate(tmp_path / "run", options)
    assert len(first) == 2 and all(s.startswith("Full") for s in first)
    # Untrained, yet no special token is sampled: one character per generated token.
    assert all(len(s) == len("Full") + 20 and "<" not in s for s in first)
    assert first != generate(tmp_path / "run", replace(options, seed=6))
    with pytest.raises(DataError, match=r"^beam search gives one text"):
        generate(tmp_path / "run", replace(options, beam=3))
    # Beam search gives one text, at least as likely as the greedy one (top-k 1).
    loaded = TASK.load(tmp_path / "run")
    model, vocab = loaded.model, loaded.assets.vocab
    scores = []
    for changes in ({"top_k": 1}, {"beam": 6}):
        [text] = generate(tmp_path / "run", replace(options, num_samples=1, **changes))
        assert "<unk>" not in text  # one character per token below
        assert text.startswith("Full")
        ids = torch.tensor([vocab.encode(list(text))])
        with torch.no_grad():
            logits, _ = model.logits(ids[:, :-1])
        log_probs = torch.log_softmax(logits, dim=-1).gather(2, ids[:, 1:, None])
        scores.append(float(log_probs[0, 3:].sum()))  # the 20 generated tokens
    assert scores[1] >= scores[0] - 1e-9


def test_the_default_trainer_steps_over_32_streams_in_order() -> None:
    trainer = lm.LanguageModelRun().trainer
    assert isinstance(trainer, TrainerConfig)
    assert trainer.batch_size == 32 and trainer.accumulate == 1 and not trainer.shuffle


def test_word_level_keeps_pretokenised_words_and_counts_line_ends() -> None:
    # PTB is already tokenised: "<unk>" and "'s" are words; each line end is <eos>.
    tokens = tokenizer("word").tokenize(" the <unk> 's N \n of it \n")
    assert tokens == ["the", "<unk>", "'s", "N", "\n", "of", "it", "\n"]
    assert detokenize(tokens, "word") == "the <unk> 's N\nof it\n"
    assert detokenize(list("ab c"), "char") == "ab c"


def test_examples_are_rows_chunk_major_and_the_rows_do_not_depend_on_the_split(
    song: Path,
) -> None:
    run = small_run(song)
    prepared = TASK.prepare(replace(run, trainer=replace(run.trainer, batch_size=16)))
    whole = TASK.examples(prepared, "train")
    ids = prepared.data.splits["train"]
    width = len(ids) // 16  # each row is contiguous: row r reads ids[r·W : (r + 1)·W]
    assert whole.continuous and whole.lengths is None
    for index in (0, 5, 16 + 3, len(whole) - 1):
        chunk, row = divmod(index, 16)  # example chunk·R + row
        inputs, targets = whole.items[index]
        start = row * width + chunk * 10
        assert inputs.tolist() == ids[start : start + len(inputs)]
        assert targets.tolist() == ids[start + 1 : start + 1 + len(inputs)]
    # 4 streams per micro-batch × 4 micro-batches: the same 16 rows.
    split = replace(prepared.run, trainer=replace(prepared.run.trainer, batch_size=4, accumulate=4))
    items = TASK.examples(replace(prepared, run=split), "train").items
    assert all(torch.equal(a[0], b[0]) for a, b in zip(items, whole.items, strict=True))
    batch = TASK.collate(list(whole.items[16:32]))  # one step: chunk 1 of every row
    assert batch.inputs.shape == (16, 10) and batch.lengths is None and batch.num_steps == 10


def teacher_forced(loaded: lm.Trained, text: str) -> torch.Tensor:
    """The model's log-probabilities of each token of ``text`` (row i: of ``text[i]``)
    given the warm-up and the text before it, read as one sequence by the sequence
    runner, not the stepper: ``(len(text), V)``, banned tokens excluded as generation
    excludes them."""
    vocab = loaded.assets.vocab
    ids = torch.tensor([vocab.encode(list(WARM_UP + text))])
    with torch.no_grad():
        logits, _ = loaded.model.logits(ids)  # (1, P, V)
    banned = torch.tensor(never_targets(vocab, "char", cut=False))
    logits = logits[0, len(WARM_UP) - 1 :].index_fill(1, banned, float("-inf"))
    return torch.log_softmax(logits, dim=-1)[:-1]  # the step after the last is not drawn


def test_generation_is_the_teacher_forced_models_argmax_and_draws(
    song: Path, tmp_path: Path
) -> None:
    run = small_run(song, max_steps=60)
    TASK.train(replace(run, trainer=replace(run.trainer, optimizer=OptimizerConfig(lr=0.02))),
               tmp_path / "run")  # fmt: skip
    loaded = TASK.load(tmp_path / "run")
    start, n = "Full", 40
    # Greedy: each generated token is the argmax after the text before it.
    [greedy] = generate(tmp_path / "run", GenerateOptions(start=start, length=n, top_k=1))
    log_probs = teacher_forced(loaded, greedy)  # (len(greedy), V)
    generated = loaded.assets.vocab.encode(list(greedy[len(start) :]))
    assert log_probs[len(start) :].argmax(-1).tolist() == generated
    # Sampling at temperature 0.8 with top-k 5: the same seeded generator draws the
    # same tokens from the teacher-forced distributions.
    options = GenerateOptions(start=start, length=n, temperature=0.8, top_k=5, seed=11)
    [sampled] = generate(tmp_path / "run", options)
    assert sampled == generate(tmp_path / "run", options)[0]  # one seed, one text
    log_probs = teacher_forced(loaded, sampled)[len(start) :]  # (n, V)
    generator = torch.Generator().manual_seed(11)
    drawn = []
    for row in log_probs / 0.8:
        kept = row.masked_fill(row < row.topk(5).values[-1], float("-inf"))
        drawn.append(int(torch.multinomial(torch.softmax(kept, -1)[None], 1, generator=generator)))
    assert drawn == loaded.assets.vocab.encode(list(sampled[len(start) :]))


def test_the_report_shows_bits_per_character_and_samples(song: Path, tmp_path: Path) -> None:
    TASK.train(small_run(song, max_steps=2), tmp_path / "run")
    loaded = TASK.load(tmp_path / "run")
    figure, samples = TASK.report(loaded)
    valid = TASK.evaluate(loaded, "valid", None).metrics
    assert figure.title == "Bits per character"
    assert f"{valid['bits_per_character']:.4f} bits per character" in figure.text[0]
    [table] = figure.tables
    assert [row[0] for row in table.rows] == ["valid", "test"]
    assert table.rows[0][1] == f"{valid['bits_per_character']:.4f}"
    assert samples.title == "Generated samples" and len(samples.blocks) == 3
    options = GenerateOptions(length=300, temperature=0.8, num_samples=3, seed=1)
    assert samples.blocks == generate(tmp_path / "run", options)
    # The probes' batch, and its first row's characters for the heatmap's time axis.
    batch = TASK.sample_batch(loaded, "valid")
    names = TASK.step_names(loaded, batch)
    assert names == loaded.assets.vocab.decode(batch.inputs[0].tolist(), strip_special=False)
    assert len(names) == batch.num_steps
