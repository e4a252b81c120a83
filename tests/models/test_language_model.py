"""The language model: overfits real text, ties weights, padding-invariant, cut in time
like TBPTT's oracle, decodes step by step."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit.bptt.truncated import TBPTTConfig, Window, truncated_bptt, windows
from rnnkit.losses import masked_cross_entropy
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig, TextBatch
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
        out, _ = model(TextBatch(inputs, targets, batch.lengths))
        out.total.backward()
        runs.append([out.total.detach(), *[p.grad.clone() for p in model.parameters()]])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def chunk() -> tuple[LanguageModel, TextBatch]:
    """Eight rows of 20 full steps (no padding, as a stream's chunk), a float64 model."""
    ids, batch = song_batch()
    torch.manual_seed(2)
    model = LanguageModel(LanguageModelConfig(len(ids), embed=8, hidden=12, layers=1)).double()
    return model, TextBatch(batch.inputs[:, :20], batch.targets[:, :20])


def test_a_chunk_is_one_window_of_tbptt_with_the_state_carried_in_and_out() -> None:
    model, full = chunk()
    start = model.rnn.initial_state(8, dtype=torch.float64)
    start = type(start)(*(torch.randn_like(f) for f in start))  # a carried state
    out, state = model(full, start)
    out.total.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    # The oracle: truncated_bptt over the model's logits, one window of 20 steps.
    def loss(logits: torch.Tensor, w: Window) -> torch.Tensor:
        targets = full.targets[:, w.loss_start : w.stop]
        return masked_cross_entropy(
            logits, targets, torch.ones_like(targets, dtype=torch.bool)
        ).total

    result = truncated_bptt(model.logits, full.inputs, loss, TBPTTConfig(20), start)
    assert abs(sum(result.losses) - float(out.total.detach())) < 1e-9
    assert int(out.n_targets) == 8 * 20
    for a, p in zip(expected, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, a, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.state.h, state.h.detach())


def test_steps_cut_a_chunk_as_tbptt_windows_do() -> None:
    # TBPTT(5, 8) by the batch's own cuts (what the Trainer runs) against the oracle.
    model, full = chunk()
    config = TBPTTConfig(5, 8)
    assert full.num_steps == 20
    state, losses, counts = None, [], []
    for w in windows(full.num_steps, config):
        # Split where the next window starts (as the Trainer does): one graph.
        cuts = [w.start, w.carry, w.stop] if w.start < w.carry < w.stop else [w.start, w.stop]
        running, following, total, count = state, state, 0.0, 0
        for a, b in itertools.pairwise(cuts):
            out, running = model(full.steps(a, b, w.loss_start), running)
            total, count = total + out.total, count + int(out.n_targets)
            if b == w.carry:
                following = type(running)(*(f.detach() for f in running))
        total.backward()
        losses.append(float(total.detach()))
        counts.append(count)
        state = following
    by_steps = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    def loss(logits: torch.Tensor, w: Window) -> torch.Tensor:
        targets = full.targets[:, w.loss_start : w.stop]
        return masked_cross_entropy(
            logits, targets, torch.ones_like(targets, dtype=torch.bool)
        ).total

    result = truncated_bptt(model.logits, full.inputs, loss, config)
    assert counts == [8 * (w.stop - w.loss_start) for w in result.windows]  # each target once
    assert losses == pytest.approx(list(result.losses), rel=1e-12)
    for a, p in zip(by_steps, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, a, rtol=0, atol=1e-12)
    # A window's history steps carry the state only: their targets do not count.
    window = full.steps(3, 9, 6)
    assert window.loss_from == 3 and window.mask.sum() == 8 * 3
    with pytest.raises(ValueError, match="padded rows cannot be cut in time"):
        song_batch()[1].steps(0, 4, 0)


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
    # The song as one long stream cut into 4 rows of consecutive chunks, the state
    # carried between chunks and TBPTT(4, 8) inside each: continuous examples, one
    # row's chunk each, chunk-major.
    from rnnkit.data.corpus import collate_chunks, stream_examples
    from rnnkit.training.trainer import OptimizerConfig, Trainer, TrainerConfig

    ids, _ = song_batch()
    text = [ids[c] for c in " ".join(lines("models_tempest_song.txt"))]
    examples = stream_examples(text, rows=4, steps=16)
    assert examples.continuous and examples.items[1][0][0] == text[len(text) // 4]
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(len(ids), embed=16, hidden=48, layers=1))
    config = TrainerConfig(
        epochs=30, batch_size=4, tbptt=TBPTTConfig(4, 8), progress="off", device="cpu",
        optimizer=OptimizerConfig("adam", lr=0.02),
    )  # fmt: skip
    trainer = Trainer(lm, config, examples, collate_chunks, val=examples)
    before = trainer.evaluate()["val_loss"]
    trainer.fit()
    assert trainer.evaluate()["val_loss"] < before / 3


def test_ar_and_tar_add_their_penalties_in_training_only() -> None:
    _, batch = song_batch()
    plain = LanguageModel(LanguageModelConfig(40, embed=8, hidden=12, layers=1))
    config = LanguageModelConfig(40, embed=8, hidden=12, layers=1, ar=2.0, tar=1.0)
    model = LanguageModel(config)
    model.load_state_dict(plain.state_dict())
    model.eval()
    plain.eval()
    loss, _ = model(batch)
    expected, _ = plain(batch)
    torch.testing.assert_close(loss.total, expected.total)  # evaluation: cross-entropy only
    model.train()
    plain.train()
    loss, _ = model(batch)
    raw, _ = plain.rnn(plain.embedding(batch.inputs), None, batch.lengths)  # (B, T, H)
    mask = batch.mask[:, :, None].float()
    ar = (raw.square() * mask).sum() / (mask.sum() * 12)
    both = mask[:, 1:] * mask[:, :-1]
    tar = ((raw[:, 1:] - raw[:, :-1]).square() * both).sum() / (both.sum() * 12)
    ce, _ = plain(batch)
    per_target = (loss.total - ce.total) / loss.n_targets
    torch.testing.assert_close(per_target, 2.0 * ar + 1.0 * tar)


def test_a_fully_regularised_model_still_overfits_the_song() -> None:
    ids, batch = song_batch()
    torch.manual_seed(0)
    config = LanguageModelConfig(len(ids), embed=32, hidden=96, layers=2, embed_dropout=0.05,
                                 input_dropout=0.05, output_dropout=0.05, ar=0.1, tar=0.1)  # fmt: skip
    model = LanguageModel(config)
    final = overfit(model, batch, steps=300, lr=0.02)
    assert final < 0.5, final  # nats per character, from ~3.7 at the start


def test_the_adaptive_softmax_loss_is_the_exact_nll_of_its_full_distribution() -> None:
    ids, batch = song_batch()
    torch.manual_seed(3)
    config = LanguageModelConfig(len(ids), embed=16, hidden=32, layers=1, adaptive_cutoffs=(8, 20))
    model = LanguageModel(config).eval()
    loss, _ = model(batch)
    logits = model.logits(batch.inputs, None, batch.lengths)[0]  # (B, T, V): log-probabilities
    torch.testing.assert_close(torch.logsumexp(logits, -1), torch.zeros(logits.shape[:-1]),
                               atol=1e-5, rtol=0)  # fmt: skip
    full = masked_cross_entropy(logits, batch.targets, batch.mask)
    torch.testing.assert_close(loss.total, full.total, rtol=1e-5, atol=1e-4)
    assert int(loss.n_targets) == int(full.n_targets)
    model.train()
    assert overfit(model, batch, 300, lr=0.02) < 0.5  # from ~3.6 nats (the tails are low-rank)


def test_adaptive_cutoffs_are_checked() -> None:
    with pytest.raises(ValueError, match=r"adaptive_cutoffs: expected increasing ids ≥ 1"):
        LanguageModelConfig(40, adaptive_cutoffs=(20, 10))
    with pytest.raises(ValueError, match=r"below the vocabulary's 40 tokens, got \(10, 40\)"):
        LanguageModel(LanguageModelConfig(40, adaptive_cutoffs=(10, 40)))
    with pytest.raises(ValueError, match="cannot tie its weights"):
        LanguageModelConfig(40, adaptive_cutoffs=(10,), tie_weights=True)
