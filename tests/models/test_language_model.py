"""The language model: overfits real text, ties weights, padding-invariant, decodes step by step."""

from __future__ import annotations

import pytest
import torch

from rnnkit.bptt.truncated import TBPTTConfig, truncated_bptt
from rnnkit.models.language_model import (
    LanguageModel,
    LanguageModelConfig,
    SequenceLM,
    StreamLM,
    TextBatch,
)
from tests.models.fixtures import char_ids, lines, overfit


def song_batch() -> tuple[dict[str, int], TextBatch]:
    song = lines("models_tempest_song.txt")  # Ariel's song, 8 lines
    ids = char_ids(song)
    # Each line starts from its first character (the lines' first letters differ, so
    # every target is determined by what precedes it and the loss can reach 0).
    lengths = torch.tensor([len(line) for line in song])
    inputs = torch.zeros(len(song), int(lengths.max()), dtype=torch.long)
    targets = torch.zeros_like(inputs)
    for row, line in enumerate(song):
        seq = [*(ids[c] for c in line), ids["<eos>"]]
        inputs[row, : len(seq) - 1] = torch.tensor(seq[:-1])
        targets[row, : len(seq) - 1] = torch.tensor(seq[1:])
    return ids, TextBatch(inputs, targets, lengths)


def greedy(model: LanguageModel, start: torch.Tensor, steps: int) -> torch.Tensor:
    state = model.rnn.initial_state(start.shape[0])
    tokens, out = start, []
    for _ in range(steps):
        logits, state = model.decode_step(tokens, state)
        tokens = logits.argmax(-1)
        out.append(tokens)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_overfits_a_real_song_and_greedy_decoding_recites_it(tie: bool) -> None:
    ids, batch = song_batch()
    torch.manual_seed(0)
    model = LanguageModel(
        LanguageModelConfig(len(ids), embed=24, hidden=64, layers=1, tie_weights=tie)
    )
    if tie:
        assert model.out.weight is model.embedding.weight
    assert overfit(model, batch, 300, lr=0.02) < 0.05
    # Each line's first character is the prompt; the rest must come back exactly.
    model.eval()
    with torch.no_grad():
        generated = greedy(model, batch.inputs[:, 0], int(batch.lengths.max()))
    for row, n in enumerate(batch.lengths.tolist()):
        assert torch.equal(generated[row, :n], batch.targets[row, :n])  # the line, then EOS


def test_padding_changes_neither_the_loss_nor_any_gradient() -> None:
    ids, batch = song_batch()
    torch.manual_seed(1)
    model = LanguageModel(LanguageModelConfig(len(ids), embed=8, hidden=12, layers=2, cell="gru"))
    runs = []
    mask = batch.mask
    for fill in (0, 5):
        inputs, targets = batch.inputs.clone(), batch.targets.clone()
        inputs[~mask], targets[~mask] = fill, fill
        model.zero_grad()
        out = model(TextBatch(inputs, targets, batch.lengths))
        out.total.backward()
        runs.append([out.total.detach(), *[p.grad.clone() for p in model.parameters()]])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_stream_and_sequence_views_give_the_same_loss_and_gradients() -> None:
    ids, batch = song_batch()
    full = TextBatch(batch.inputs[:, :20], batch.targets[:, :20], torch.full((8,), 20))
    torch.manual_seed(2)
    model = LanguageModel(LanguageModelConfig(len(ids), embed=8, hidden=12, layers=1)).double()
    stream = StreamLM(model)
    out, state = stream(full, None)
    out.total.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    sequence = SequenceLM(model)
    result = truncated_bptt(
        sequence, full.inputs, lambda o, w: sequence.window_loss(o, full, w).total, TBPTTConfig(20)
    )
    assert abs(sum(result.losses) - float(out.total.detach())) < 1e-9
    for a, p in zip(expected, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, a, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.state.h, state.h.detach())


def test_prime_reads_the_prompt_and_reorder_state_selects_rows() -> None:
    torch.manual_seed(3)
    model = LanguageModel(LanguageModelConfig(10, embed=4, hidden=6, layers=2))
    prompt = torch.randint(1, 10, (3, 5))
    last, state = model.prime(prompt)
    assert torch.equal(last, prompt[:, -1])
    _, expected = model.logits(prompt[:, :-1])
    torch.testing.assert_close(state.h, expected.h)
    picked = model.reorder_state(state, torch.tensor([2, 2, 0]))
    torch.testing.assert_close(picked.c[:, 0], state.c[:, 2])
    with pytest.raises(ValueError, match="prompt: expected"):
        model.prime(torch.zeros(3, 0, dtype=torch.long))


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        LanguageModelConfig(0)
    with pytest.raises(ValueError, match="dropout"):
        LanguageModelConfig(5, dropout=-0.1)


def test_trains_on_a_stream_through_the_trainer_with_tbptt() -> None:
    # The song as one long stream cut into 4 parallel streams of consecutive chunks,
    # the state carried between chunks and TBPTT(4, 8) inside each.
    from rnnkit.training.trainer import OptimizerConfig, Trainer, TrainerConfig

    ids, _ = song_batch()
    text = torch.tensor([ids[c] for c in " ".join(lines("models_tempest_song.txt"))])
    streams = text[: (len(text) - 1) // 4 * 4 + 1]
    width = (len(streams) - 1) // 4
    rows = torch.stack([streams[i * width : (i + 1) * width + 1] for i in range(4)])  # (4, W+1)
    chunks = [
        TextBatch(rows[:, s : s + 16], rows[:, s + 1 : s + 17], torch.full((4,), 16))
        for s in range(0, width - 16 + 1, 16)
    ]
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(len(ids), embed=16, hidden=48, layers=1))
    config = TrainerConfig(
        epochs=30, batch_size=1, shuffle=False, carry_state=True, tbptt=TBPTTConfig(4, 8),
        progress="off", device="cpu", optimizer=OptimizerConfig("adam", lr=0.02),
    )  # fmt: skip
    trainer = Trainer(SequenceLM(lm), config, chunks, lambda items: items[0], val=chunks)
    before = trainer.evaluate()["val_loss"]
    trainer.fit()
    assert trainer.evaluate()["val_loss"] < before / 3
