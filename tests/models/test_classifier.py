"""Many-to-one: pooling, heads, padding invariance, and overfitting real reviews and a real series."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rnnkit import Recurrent
from rnnkit.models.classifier import ClassifierConfig, SequenceBatch, SequenceClassifier
from rnnkit.models.heads import BinaryHead, ClassHead, RegressionHead
from rnnkit.models.pooling import AttentionPooling, LastPooling, MaxPooling, MeanPooling
from tests.models.fixtures import air_passengers, overfit, reviews

POOLINGS = {
    "last": lambda f: LastPooling(),
    "mean": lambda f: MeanPooling(),
    "max": lambda f: MaxPooling(),
    "attention": lambda f: AttentionPooling(f, 8),
}


def tokenize(texts: list[str]) -> tuple[dict[str, int], torch.Tensor, torch.Tensor]:
    words = [text.lower().split() for text in texts]
    vocab = {w: i + 1 for i, w in enumerate(sorted({w for ws in words for w in ws}))}
    lengths = torch.tensor([len(ws) for ws in words])
    ids = torch.zeros(len(words), int(lengths.max()), dtype=torch.long)
    for row, ws in enumerate(words):
        ids[row, : len(ws)] = torch.tensor([vocab[w] for w in ws])
    return vocab, ids, lengths


def classifier(
    vocab: int, pooling: str, head: nn.Module, bidirectional: bool = True
) -> SequenceClassifier:
    torch.manual_seed(0)
    encoder = Recurrent("lstm", 16, 24, bidirectional=bidirectional)
    features = 24 * (2 if bidirectional else 1)
    return SequenceClassifier(
        nn.Embedding(vocab, 16, padding_idx=0), encoder, POOLINGS[pooling](features), head
    )


@pytest.mark.parametrize("pooling", list(POOLINGS))
def test_overfits_real_reviews_binary_and_multiclass(pooling: str) -> None:
    data = reviews()
    vocab, ids, lengths = tokenize([text for _, text in data])
    labels = torch.tensor([1 if label == "fresh" else 0 for label, _ in data])
    binary = classifier(len(vocab) + 1, pooling, BinaryHead(48))
    batch = SequenceBatch(ids, lengths, labels.float())
    assert overfit(binary, batch, 120) < 0.02
    assert torch.equal((binary.predict(ids, lengths) > 0.5).long(), labels)
    multiclass = classifier(len(vocab) + 1, pooling, ClassHead(48, 2))
    assert overfit(multiclass, SequenceBatch(ids, lengths, labels), 120) < 0.02
    assert torch.equal(multiclass.predict(ids, lengths).argmax(-1), labels)


def test_overfits_a_real_series_with_a_multi_step_forecast() -> None:
    # AirPassengers, log-scaled: 12 windows of 24 months, each predicting the next 6.
    series = air_passengers().log()
    series = (series - series.mean()) / series.std()
    starts = range(0, 12 * 9, 9)
    inputs = torch.stack([series[s : s + 24] for s in starts])[:, :, None]  # (12, 24, 1)
    targets = torch.stack([series[s + 24 : s + 30] for s in starts])  # (12, 6)
    lengths = torch.full((12,), 24)
    torch.manual_seed(0)
    model = SequenceClassifier(
        nn.Identity(), Recurrent("gru", 1, 32), LastPooling(), RegressionHead(32, 6)
    )
    assert overfit(model, SequenceBatch(inputs, lengths, targets), 400, lr=0.01) < 1e-3
    huber = SequenceClassifier(
        nn.Identity(), Recurrent("gru", 1, 32), MeanPooling(), RegressionHead(32, 6, "huber")
    )
    # Huber's gradient is linear near zero: more steps than the MSE model's (4e-6 here).
    assert overfit(huber, SequenceBatch(inputs, lengths, targets), 600, lr=0.02) < 1e-3


@pytest.mark.parametrize("pooling", list(POOLINGS))
def test_padding_changes_neither_the_loss_nor_any_gradient(pooling: str) -> None:
    model = classifier(20, pooling, ClassHead(48, 3))
    ids = torch.randint(1, 20, (4, 9))
    lengths = torch.tensor([9, 5, 2, 7])
    targets = torch.tensor([0, 1, 2, 1])
    runs = []
    for fill in (0, 13):
        padded = ids.clone()
        padded[torch.arange(9)[None, :] >= lengths[:, None]] = fill
        model.zero_grad()
        out, state = model(SequenceBatch(padded, lengths, targets))
        assert state is None  # a classifier carries no state
        out.total.backward()
        runs.append([out.total.detach(), *[p.grad.clone() for p in model.parameters()]])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@settings(max_examples=20)
@given(batch=st.integers(1, 5), steps=st.integers(1, 8), data=st.data())
def test_attention_pooling_weights_sum_to_one_and_are_zero_on_padding(
    batch: int, steps: int, data: st.DataObject
) -> None:
    lengths = torch.tensor(
        data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    )
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    pool = AttentionPooling(6, 4)
    outputs = torch.randn(batch, steps, 6)
    weights = pool.weights(outputs, mask)
    torch.testing.assert_close(weights.sum(1), torch.ones(batch))
    assert torch.all(weights[~mask] == 0)
    pooled = pool(outputs, outputs[:, 0], mask)
    expected = torch.einsum("bt,btf->bf", weights, outputs)
    torch.testing.assert_close(pooled, expected)


def test_mean_and_max_pooling_read_only_real_steps() -> None:
    outputs = torch.tensor([[[1.0], [3.0], [100.0]], [[-2.0], [-4.0], [-100.0]]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    assert MeanPooling()(outputs, outputs[:, 0], mask).flatten().tolist() == [2.0, -3.0]
    assert MaxPooling()(outputs, outputs[:, 0], mask).flatten().tolist() == [3.0, -2.0]


def test_last_pooling_is_the_final_state_of_both_directions() -> None:
    model = classifier(10, "last", ClassHead(48, 2))
    ids = torch.randint(1, 10, (3, 6))
    lengths = torch.tensor([6, 2, 4])
    outputs, final, _ = model.encode(ids, lengths)
    for row, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(final[row, :24], outputs[row, n - 1, :24])  # → at its end
        torch.testing.assert_close(final[row, 24:], outputs[row, 0, 24:])  # ← at step 0


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="vocab_size, input_size: expected exactly one"):
        ClassifierConfig()
    with pytest.raises(ValueError, match="dropout"):
        ClassifierConfig(vocab_size=5, dropout=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        ClassHead(4, 1)


def test_build_model_maps_every_configuration_to_its_model() -> None:
    from rnnkit.models import build_model
    from rnnkit.models.generator import ConditionedGenerator, GeneratorConfig
    from rnnkit.models.language_model import LanguageModel, LanguageModelConfig
    from rnnkit.models.music import MusicConfig, PianoRollModel
    from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from rnnkit.models.tagger import Tagger, TaggerConfig

    model = build_model(
        ClassifierConfig(vocab_size=9, pooling="attention", head="binary", bidirectional=True)
    )
    assert isinstance(model, SequenceClassifier) and isinstance(model.pooling, AttentionPooling)
    assert isinstance(model.head, BinaryHead) and model.encoder.bidirectional
    regression = build_model(
        ClassifierConfig(input_size=3, head="regression", outputs=6, loss="huber")
    )
    assert isinstance(regression.head, RegressionHead) and regression.head.kind == "huber"
    assert isinstance(build_model(TaggerConfig(vocab_size=9, num_tags=3)), Tagger)
    assert isinstance(build_model(LanguageModelConfig(9)), LanguageModel)
    assert isinstance(build_model(GeneratorConfig(9, num_labels=2)), ConditionedGenerator)
    assert isinstance(build_model(Seq2SeqConfig(source_vocab=9, target_vocab=9)), Seq2Seq)
    assert isinstance(build_model(MusicConfig()), PianoRollModel)
    with pytest.raises(TypeError, match="no model for a int"):
        build_model(3)
