"""The encoder–decoder: masking through the model, teacher forcing, the StepDecoder protocol,
and overfitting a few real CMUdict pronunciations."""

from __future__ import annotations

import functools
import itertools
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from rnnkit.decoding import beam_search, greedy
from rnnkit.losses import LossSum
from rnnkit.models.seq2seq import (
    PairBatch,
    Seq2Seq,
    Seq2SeqConfig,
    inverse_sigmoid_decay,
)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "seq2seq_cmudict_sample.dict"
PAD, BOS, EOS = 0, 1, 2
SOURCE_VOCAB, TARGET_VOCAB = 11, 13


def model(seed: int = 0, **overrides: Any) -> Seq2Seq:
    options: dict[str, Any] = {"embed": 6, "hidden": 8, "cell": "lstm", "attention": "bahdanau"}
    options.update(overrides)
    torch.manual_seed(seed)
    return Seq2Seq(Seq2SeqConfig(SOURCE_VOCAB, TARGET_VOCAB, **options))


def random_batch(source_lengths: list[int], target_lengths: list[int], seed: int = 0) -> PairBatch:
    """Real ids (≥ 3) inside each row, BOS/EOS around the target, PAD after both."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(source_lengths)
    steps_s, steps_t = max(source_lengths), max(target_lengths)
    source = torch.randint(3, SOURCE_VOCAB, (batch, steps_s), generator=generator)
    target = torch.randint(3, TARGET_VOCAB, (batch, steps_t), generator=generator)
    for b, (s, t) in enumerate(zip(source_lengths, target_lengths, strict=True)):
        source[b, s:] = PAD
        target[b, 0], target[b, t - 1], target[b, t:] = BOS, EOS, PAD
    return PairBatch(source, torch.tensor(source_lengths), target, torch.tensor(target_lengths))


def loss(net: Seq2Seq, batch: PairBatch) -> LossSum:
    """The model's summed loss; an encoder–decoder carries no state between batches."""
    result: tuple[LossSum, None] = net(batch, None)
    assert result[1] is None
    return result[0]


def gradients(net: Seq2Seq, batch: PairBatch) -> tuple[Tensor, list[Tensor]]:
    net.zero_grad()
    total, _ = loss(net, batch)
    total.backward()
    return total.detach(), [
        torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in net.parameters()
    ]


# ----------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"source_vocab": 0}, "source_vocab"),
        ({"target_vocab": True}, "target_vocab"),
        ({"hidden": -1}, "hidden"),
        ({"layers": 0}, "layers"),
        ({"cell": "lstmm"}, "cell"),
        ({"bidirectional_encoder": 1}, "bidirectional_encoder"),
        ({"attention": "luong"}, "attention"),
        ({"attention": "dot", "bidirectional_encoder": True}, "attention"),
        ({"dropout": 1.0}, "dropout"),
        ({"teacher_forcing": 1.5}, "teacher_forcing"),
        ({"teacher_forcing": float("nan")}, "teacher_forcing"),
        ({"bos_id": TARGET_VOCAB}, "bos_id"),
        ({"pad_id": SOURCE_VOCAB}, "pad_id"),
        ({"eos_id": PAD}, "pad_id, bos_id, eos_id"),
        ({"backend": "gpu"}, "backend"),
    ],
)
def test_config_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    options: dict[str, Any] = {"source_vocab": SOURCE_VOCAB, "target_vocab": TARGET_VOCAB}
    options.update(overrides)
    with pytest.raises(ValueError, match=f"^{re.escape(field)}:"):
        Seq2SeqConfig(**options)


def test_batch_errors_name_the_field() -> None:
    good = random_batch([2, 3], [3, 4])
    with pytest.raises(ValueError, match=r"^source:"):
        PairBatch(good.source.float(), good.source_lengths, good.target, good.target_lengths)
    with pytest.raises(ValueError, match=r"^target:"):
        PairBatch(good.source, good.source_lengths, good.target[:1], good.target_lengths)
    with pytest.raises(ValueError, match=r"^target_lengths:"):
        PairBatch(good.source, good.source_lengths, good.target, good.target_lengths[:1])
    too_short = PairBatch(good.source, good.source_lengths, good.target, torch.tensor([1, 4]))
    with pytest.raises(ValueError, match=r"^target_lengths:"):
        loss(model(), too_short)
    with pytest.raises(ValueError, match=r"^teacher_forcing:"):
        model().set_teacher_forcing(-0.1)


# ----------------------------------------------------------------- masking through the model


@pytest.mark.parametrize(
    ("attention", "cell", "bidirectional", "layers"),
    [
        ("bahdanau", "lstm", True, 2),
        ("dot", "gru", False, 1),
        ("general", "rnn", True, 1),
        ("general", "lstm", False, 2),
    ],
)
def test_decoder_attention_is_a_distribution_over_real_source_positions(
    attention: str, cell: str, bidirectional: bool, layers: int
) -> None:
    net = model(attention=attention, cell=cell, bidirectional_encoder=bidirectional, layers=layers)
    source_lengths, target_lengths = [5, 2, 3], [4, 6, 2]
    batch = random_batch(source_lengths, target_lengths)
    weights = net.attention_weights(batch)  # (B, T−1, S)
    assert weights.shape == (3, 5, 5)
    for b, (s, t) in enumerate(zip(source_lengths, target_lengths, strict=True)):
        real = weights[b, : t - 1]  # the steps that predict a real target token
        torch.testing.assert_close(real.sum(dim=1), torch.ones(t - 1))
        assert torch.all(real[:, :s] > 0.0)
        assert torch.all(real[:, s:] == 0.0)
        assert torch.all(weights[b, t - 1 :] == 0.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"attention": "bahdanau", "cell": "lstm", "bidirectional_encoder": True, "layers": 2},
        {"attention": "general", "cell": "gru", "bidirectional_encoder": False},
        {"attention": "none", "cell": "rnn", "bidirectional_encoder": True},
    ],
)
def test_padding_changes_neither_the_loss_nor_any_gradient(overrides: dict[str, Any]) -> None:
    net = model(**overrides)
    batch = random_batch([4, 1, 3], [5, 3, 2])
    generator = torch.Generator().manual_seed(7)
    source, target = batch.source.clone(), batch.target.clone()
    source_pad = ~batch.source_mask
    target_pad = torch.arange(target.shape[1])[None, :] >= batch.target_lengths[:, None]
    source[source_pad] = torch.randint(
        1, SOURCE_VOCAB, (int(source_pad.sum()),), generator=generator
    )
    target[target_pad] = torch.randint(
        1, TARGET_VOCAB, (int(target_pad.sum()),), generator=generator
    )
    noisy = PairBatch(source, batch.source_lengths, target, batch.target_lengths)
    assert not torch.equal(noisy.source, batch.source)
    assert not torch.equal(noisy.target, batch.target)

    clean_loss, clean_grads = gradients(net, batch)
    noisy_loss, noisy_grads = gradients(net, noisy)
    assert torch.equal(clean_loss, noisy_loss)
    for clean, noisy_grad in zip(clean_grads, noisy_grads, strict=True):
        assert torch.equal(clean, noisy_grad)


# ----------------------------------------------------------------- teacher forcing


def manual_loss(net: Seq2Seq, batch: PairBatch, gold: bool) -> Tensor:
    """The loss written with the StepDecoder protocol: feed gold tokens or the arg max."""
    tokens, state = net.start(batch.source, batch.source_lengths)
    total = torch.zeros(())
    for t in range(1, batch.target.shape[1]):
        logits, state = net.decode_step(tokens, state)
        real = batch.target_lengths > t  # rows whose token t is a real target
        losses = F.cross_entropy(logits, batch.target[:, t], reduction="none")
        total = total + losses[real].sum()
        tokens = batch.target[:, t] if gold else logits.argmax(dim=1)
    return total


def test_forward_equals_the_decode_step_loop_for_ratios_one_and_zero() -> None:
    net = model(bidirectional_encoder=True, layers=2)
    batch = random_batch([3, 5, 1], [4, 2, 6])
    total, count = loss(net, batch)
    assert count == 3 + 1 + 5
    torch.testing.assert_close(total, manual_loss(net, batch, gold=True))
    net.set_teacher_forcing(0.0)
    torch.testing.assert_close(loss(net, batch).total, manual_loss(net, batch, gold=False))


def test_teacher_forcing_ratios() -> None:
    net = model(attention="general", cell="gru")
    batch = random_batch([3, 5, 4, 2], [6, 6, 5, 6], seed=3)

    before = torch.get_rng_state()
    gold = loss(net, batch).total
    assert torch.equal(gold, loss(net, batch).total)  # ratio 1 is deterministic...
    assert torch.equal(before, torch.get_rng_state())  # ...and draws nothing

    net.set_teacher_forcing(0.0)
    free = loss(net, batch).total
    assert not torch.allclose(gold, free)  # an untrained model's guesses are not the gold tokens

    net.set_teacher_forcing(0.5)
    torch.manual_seed(123)
    mixed = loss(net, batch).total
    torch.manual_seed(123)
    assert torch.equal(
        mixed, loss(net, batch).total
    )  # the draws come from torch's seeded generator
    assert not torch.allclose(mixed, gold) and not torch.allclose(mixed, free)

    net.eval()  # validation always feeds the gold tokens
    assert torch.equal(loss(net, batch).total, gold)


def test_inverse_sigmoid_decay() -> None:
    k = 10.0
    assert inverse_sigmoid_decay(0, k) == pytest.approx(k / (k + 1))
    assert inverse_sigmoid_decay(round(k * math.log(k)), k) == pytest.approx(0.5, abs=0.02)
    values = [inverse_sigmoid_decay(step, k) for step in range(0, 200, 5)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert inverse_sigmoid_decay(10**9, k) == 0.0
    with pytest.raises(ValueError, match=r"^k:"):
        inverse_sigmoid_decay(1, 0.5)
    with pytest.raises(ValueError, match=r"^step:"):
        inverse_sigmoid_decay(-1, k)


# ----------------------------------------------------------------- shapes and the protocol


@pytest.mark.parametrize(("source_steps", "target_steps"), [(2, 9), (9, 3)])
def test_unequal_source_and_target_lengths(source_steps: int, target_steps: int) -> None:
    net = model(bidirectional_encoder=True, layers=2, dropout=0.1)
    batch = random_batch([source_steps, 1], [target_steps, 2])
    total, count = loss(net, batch)
    assert count == target_steps - 1 + 1
    total.backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert net.attention_weights(batch).shape == (2, target_steps - 1, source_steps)


def test_reorder_state_selects_rows_of_every_tensor() -> None:
    # float64: a batch of 3 and its reordered batch of 4 run matrix products of
    # different shapes, which float32 does not round alike (1.5e-8 apart).
    net = model(bidirectional_encoder=True, layers=2).double().eval()
    batch = random_batch([3, 5, 1], [4, 2, 6])
    index = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        tokens, state = net.start(batch.source, batch.source_lengths)
        logits, state = net.decode_step(tokens, state)
        step = logits.argmax(dim=1)
        expected, _ = net.decode_step(step, state)
        reordered, _ = net.decode_step(step[index], net.reorder_state(state, index))
    torch.testing.assert_close(reordered, expected[index], rtol=0, atol=1e-12)


def test_translate_is_greedy_or_beam_search_over_the_start_state() -> None:
    net = model(bidirectional_encoder=True, layers=2)  # in training mode
    batch = random_batch([3, 5, 1], [4, 2, 6])
    with torch.no_grad():
        net.eval()
        bos, state = net.start(batch.source, batch.source_lengths)
        expected = greedy(net, bos, state, max_length=7, eos_id=EOS, pad_id=PAD)
        beamed = beam_search(net, bos, state, max_length=7, beam_size=3, length_penalty=0.5,
                             eos_id=EOS, pad_id=PAD).best  # fmt: skip
    net.train()
    found = net.translate(batch.source, batch.source_lengths, max_length=7)
    assert net.training  # translated in eval mode, and its mode given back
    assert torch.equal(found.tokens, expected.tokens)
    assert torch.equal(found.lengths, expected.lengths)
    torch.testing.assert_close(found.scores, expected.scores, rtol=0, atol=0)
    best = net.translate(batch.source, batch.source_lengths, max_length=7, beam=3,
                         length_penalty=0.5)  # fmt: skip
    assert torch.equal(best.tokens, beamed.tokens) and torch.equal(best.lengths, beamed.lengths)
    torch.testing.assert_close(best.scores, beamed.scores, rtol=0, atol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_bridge_initialises_each_decoder_layer(bidirectional: bool) -> None:
    net = model(bidirectional_encoder=bidirectional, layers=2).eval()
    batch = random_batch([3, 5, 1], [4, 2, 6])
    with torch.no_grad():
        _, state = net.start(batch.source, batch.source_lengths)
        embedded = net.source_embedding(batch.source)
        memory, final = net.encoder(embedded, lengths=batch.source_lengths)
    torch.testing.assert_close(state.memory, memory, rtol=0, atol=0)
    assert torch.equal(state.mask, batch.source_mask)
    assert torch.all(state.feed == 0.0)
    for layer, layer_state in enumerate(state.layers):
        for name, field, encoder_field in zip(
            ("h", "c"), layer_state, final, strict=True
        ):  # LSTMState(h, c)
            if not bidirectional:  # layer l of the encoder, as it is
                torch.testing.assert_close(field, encoder_field[layer], rtol=0, atol=0)
                continue
            # s_0^l.f = tanh(W_f [→f^l ; ←f^l] + b_f), torch.nn's index l·2 + direction
            bridge = net.bridge[0 if name == "h" else 1]
            joined = torch.cat([encoder_field[2 * layer], encoder_field[2 * layer + 1]], dim=1)
            torch.testing.assert_close(field, torch.tanh(bridge(joined)))


def test_attention_weights_need_attention() -> None:
    with pytest.raises(ValueError, match="attention 'none'"):
        model(attention="none").attention_weights(random_batch([2], [3]))


@functools.cache
def shared_model() -> Seq2Seq:
    return model(attention="bahdanau", cell="gru", bidirectional_encoder=True)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    batch = draw(st.integers(1, 4))
    source = draw(st.lists(st.integers(1, 6), min_size=batch, max_size=batch))
    target = draw(st.lists(st.integers(2, 6), min_size=batch, max_size=batch))
    return source, target, draw(st.integers(0, 2**16))


@given(pairs())
def test_property_ragged_pairs(case: tuple[list[int], list[int], int]) -> None:
    source_lengths, target_lengths, seed = case
    batch = random_batch(source_lengths, target_lengths, seed)
    net = shared_model()
    total, count = loss(net, batch)
    assert count == sum(t - 1 for t in target_lengths)
    assert torch.isfinite(total)
    weights = net.attention_weights(batch)  # (B, T−1, S)
    assert weights.shape == (len(source_lengths), max(target_lengths) - 1, max(source_lengths))
    real = batch.target_mask  # (B, T−1)
    torch.testing.assert_close(weights.sum(dim=2), real.float())
    assert torch.all(weights.masked_select(~batch.source_mask[:, None, :]) == 0.0)


# ----------------------------------------------------------------- real data


def load_cmudict_sample() -> tuple[list[str], list[list[str]]]:
    words, pronunciations = [], []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        word, *phonemes = line.split()
        words.append(word)
        pronunciations.append(phonemes)
    return words, pronunciations


def pad_rows(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    width = max(map(len, rows))
    padded = torch.tensor([row + [PAD] * (width - len(row)) for row in rows])
    return padded, torch.tensor([len(row) for row in rows])


def test_overfits_real_pronunciations_and_greedy_decoding_reproduces_them() -> None:
    words, pronunciations = load_cmudict_sample()
    assert len(words) == 24
    letters = sorted({c for word in words for c in word})
    phonemes = sorted({p for pron in pronunciations for p in pron})
    source_ids = {c: i + 1 for i, c in enumerate(letters)}  # 0 is padding
    target_ids = {p: i + 3 for i, p in enumerate(phonemes)}  # 0, 1, 2: pad, BOS, EOS
    source, source_lengths = pad_rows([[source_ids[c] for c in word] for word in words])
    target, target_lengths = pad_rows(
        [[BOS, *(target_ids[p] for p in pron), EOS] for pron in pronunciations]
    )
    batch = PairBatch(source, source_lengths, target, target_lengths)

    torch.manual_seed(0)
    config = Seq2SeqConfig(
        len(letters) + 1,
        len(phonemes) + 3,
        embed=32,
        hidden=64,
        cell="lstm",
        bidirectional_encoder=True,
        attention="bahdanau",
    )
    net = Seq2Seq(config)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(300):
        optimizer.zero_grad()
        total, count = loss(net, batch)
        mean = total / count
        mean.backward()
        optimizer.step()
        if mean.item() < 0.02:
            break
    assert mean.item() < 0.05

    net.eval()
    with torch.no_grad():
        tokens, state = net.start(source, source_lengths)
        decoded = []
        for _ in range(target.shape[1] + 2):  # room to overrun, so an early stop is caught
            logits, state = net.decode_step(tokens, state)
            tokens = logits.argmax(dim=1)
            decoded.append(tokens)
    output = torch.stack(decoded, dim=1).tolist()  # (B, T + 2)
    names = {i: p for p, i in target_ids.items()}
    for b, pron in enumerate(pronunciations):
        assert EOS in output[b], words[b]
        predicted = [names.get(i, "?") for i in output[b][: output[b].index(EOS)]]
        assert predicted == pron, words[b]
