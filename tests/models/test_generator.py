"""One-to-many: a sequence generated from one vector or label, overfitting real reviews."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models.generator import ConditionedBatch, ConditionedGenerator, GeneratorConfig
from tests.models.fixtures import overfit, reviews

PAD, BOS, EOS = 0, 1, 2


def word_batch(texts: list[str]) -> tuple[dict[str, int], torch.Tensor, torch.Tensor]:
    words = [text.lower().split() for text in texts]
    vocab = {w: i + 3 for i, w in enumerate(sorted({w for ws in words for w in ws}))}
    lengths = torch.tensor([len(ws) + 2 for ws in words])  # BOS … EOS
    tokens = torch.zeros(len(words), int(lengths.max()), dtype=torch.long)
    for row, ws in enumerate(words):
        tokens[row, : len(ws) + 2] = torch.tensor([BOS, *(vocab[w] for w in ws), EOS])
    return vocab, tokens, lengths


def greedy(model: ConditionedGenerator, condition: torch.Tensor, steps: int) -> torch.Tensor:
    tokens, state = model.start(condition)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits, state = model.decode_step(tokens, state)
            tokens = logits.argmax(-1)
            out.append(tokens)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize(
    ("state", "inputs"),
    [(True, True), (True, False), (False, True)],
    ids=["both", "state", "input"],
)
def test_overfits_real_reviews_from_feature_vectors(state: bool, inputs: bool) -> None:
    # Captioning on real text: each review gets a fixed feature vector (the stand-in
    # for an image's features); the model must write that review from it.
    texts = [text for _, text in reviews()][:8]
    vocab, tokens, lengths = word_batch(texts)
    features = torch.randn(8, 12, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    config = GeneratorConfig(len(vocab) + 3, condition_size=12, condition_state=state,
                             condition_input=inputs, embed=16, hidden=48)  # fmt: skip
    model = ConditionedGenerator(config)
    assert overfit(model, ConditionedBatch(features, tokens, lengths), 250, lr=0.02) < 0.02
    model.eval()
    generated = greedy(model, features, int(lengths.max()) - 1)
    for row, n in enumerate(lengths.tolist()):
        assert torch.equal(generated[row, : n - 1], tokens[row, 1:n])  # words, then EOS


def test_overfits_one_review_per_sentiment_label() -> None:
    data = reviews()[:2]  # one fresh, one rotten
    vocab, tokens, lengths = word_batch([text for _, text in data])
    labels = torch.tensor([1 if label == "fresh" else 0 for label, _ in data])
    torch.manual_seed(0)
    model = ConditionedGenerator(GeneratorConfig(len(vocab) + 3, num_labels=2, embed=16, hidden=32))
    assert overfit(model, ConditionedBatch(labels, tokens, lengths), 150) < 0.02
    model.eval()
    generated = greedy(model, labels, int(lengths.max()) - 1)
    for row, n in enumerate(lengths.tolist()):
        assert torch.equal(generated[row, : n - 1], tokens[row, 1:n])


def test_padding_changes_neither_the_loss_nor_any_gradient() -> None:
    vocab, tokens, lengths = word_batch([text for _, text in reviews()][:4])
    torch.manual_seed(1)
    model = ConditionedGenerator(GeneratorConfig(len(vocab) + 3, condition_size=5, cell="gru"))
    condition = torch.randn(4, 5)
    runs = []
    for fill in (PAD, 7):
        padded = tokens.clone()
        padded[torch.arange(tokens.shape[1])[None, :] >= lengths[:, None]] = fill
        model.zero_grad()
        out, state = model(ConditionedBatch(condition, padded, lengths))
        assert state is None  # the generator carries no state between batches
        out.total.backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None for g in grads)  # every weight takes part
        runs.append([out.total.detach(), *[g.clone() for g in grads if g is not None]])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_text_nll_sums_to_the_teacher_forced_loss_under_each_label() -> None:
    # Scored by stepping the decoder (the path generation takes), row by row.
    data = reviews()[:6]
    vocab, tokens, lengths = word_batch([text for _, text in data])
    labels = torch.tensor([1 if label == "fresh" else 0 for label, _ in data])
    torch.manual_seed(3)
    model = ConditionedGenerator(GeneratorConfig(len(vocab) + 3, num_labels=2, embed=8, hidden=16))
    model.eval()
    batch = ConditionedBatch(labels, tokens, lengths)
    per_text = model.text_nll(batch)
    assert per_text.shape == (6,) and per_text.dtype == torch.float64
    with torch.no_grad():
        total = float(model(batch)[0].total)
        rows = [float(model(ConditionedBatch(labels[i : i + 1], tokens[i : i + 1, : int(n)],
                                             lengths[i : i + 1]))[0].total)
                for i, n in enumerate(lengths.tolist())]  # fmt: skip
    assert float(per_text.sum()) == pytest.approx(total, rel=1e-5)
    assert per_text.tolist() == pytest.approx(rows, rel=1e-5)
    by_label = model.label_nll(batch)  # (B, K): column k is every text under label k
    assert by_label.shape == (6, 2)
    for k in (0, 1):
        expected = model.text_nll(ConditionedBatch(torch.full_like(labels, k), tokens, lengths))
        torch.testing.assert_close(by_label[:, k], expected, rtol=0, atol=0)
    assert by_label.gather(1, labels[:, None]).squeeze(1).tolist() == pytest.approx(
        per_text.tolist(), rel=1e-12
    )
    with pytest.raises(ValueError, match="no labels"):
        ConditionedGenerator(GeneratorConfig(9, condition_size=3)).label_nll(batch)


def test_tokens_prime_the_prompt_then_greedy_sampling_and_beam_recite() -> None:
    data = reviews()[:2]
    vocab, tokens, lengths = word_batch([text for _, text in data])
    labels = torch.tensor([0, 1])
    torch.manual_seed(0)
    model = ConditionedGenerator(GeneratorConfig(len(vocab) + 3, num_labels=2, embed=16, hidden=32))
    assert overfit(model, ConditionedBatch(labels, tokens, lengths), 150) < 0.02
    model.eval()
    for row, n in enumerate(lengths.tolist()):
        words = tokens[row, 1 : n - 1].tolist()  # the text without BOS and EOS
        condition = labels[row : row + 1]
        greedy_tokens = list(model.tokens(condition, [], length=30, top_k=1))
        assert greedy_tokens == [*words, EOS]  # EOS ends the text
        assert list(model.tokens(condition, [], length=30, beam=3)) == [*words, EOS]
        assert list(model.tokens(condition, [], length=3, top_k=1)) == words[:3]
        # A prompt is teacher-forced: what follows it is the rest of the text.
        assert list(model.tokens(condition, words[:2], length=30, top_k=1)) == [*words[2:], EOS]
        last, _ = model.prime(condition, words[:2])
        assert last.tolist() == [words[1]]
        banned = list(model.tokens(condition, [], length=5, top_k=1, banned=[words[0]]))
        assert words[0] not in banned[:1]


def test_reorder_state_selects_rows_of_the_state_and_the_condition() -> None:
    torch.manual_seed(2)
    model = ConditionedGenerator(GeneratorConfig(9, condition_size=3, layers=2))
    _, state = model.start(torch.randn(3, 3))
    picked = model.reorder_state(state, torch.tensor([1, 1, 0]))
    torch.testing.assert_close(picked.rnn.h[:, 0], state.rnn.h[:, 1])
    torch.testing.assert_close(picked.rnn.c[:, 2], state.rnn.c[:, 0])
    torch.testing.assert_close(picked.condition[1], state.condition[1])


def test_config_errors_name_the_fields() -> None:
    with pytest.raises(ValueError, match="condition_size, num_labels"):
        GeneratorConfig(5)
    with pytest.raises(ValueError, match="condition_state, condition_input"):
        GeneratorConfig(5, num_labels=2, condition_state=False, condition_input=False)
