"""One decoding module serves the language model, the conditioned generator and the
encoder–decoder: each trained on real data, then decoded greedily, by beam and by sampling."""

from __future__ import annotations

import torch

from rnnkit.decoding import beam_search, greedy, sample
from rnnkit.models.generator import ConditionedBatch, ConditionedGenerator, GeneratorConfig
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig
from rnnkit.models.seq2seq import PairBatch, Seq2Seq, Seq2SeqConfig
from tests.models.fixtures import lines, overfit, reviews
from tests.models.test_generator import word_batch
from tests.models.test_language_model import song_batch

EOS = 2


def check_all_decoders(model, start, state, expected, lengths, eos: int) -> None:  # type: ignore[no-untyped-def]
    steps = int(lengths.max())
    g = greedy(model, start, state, max_length=steps, eos_id=eos)
    b = beam_search(model, start, state, max_length=steps, beam_size=3, eos_id=eos)
    s1 = sample(model, start, state, max_length=steps, eos_id=eos, temperature=0.7,
                top_k=5, generator=torch.Generator().manual_seed(3))  # fmt: skip
    s2 = sample(model, start, state, max_length=steps, eos_id=eos, temperature=0.7,
                top_k=5, generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert torch.equal(s1.tokens, s2.tokens)  # a seed gives the same samples
    for row, n in enumerate(lengths.tolist()):
        assert torch.equal(g.tokens[row, :n], expected[row, :n])  # overfit: greedy recites
        assert torch.equal(b.best.tokens[row, :n], expected[row, :n])  # and so does the beam
        assert int(g.lengths[row]) == n


def test_language_model_decodes_its_song() -> None:
    ids, batch = song_batch()
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(len(ids), embed=24, hidden=64, layers=1))
    assert overfit(model, batch, 300, lr=0.02) < 0.05
    start, state = model.prime(batch.inputs[:, :1])
    check_all_decoders(model, start, state, batch.targets, batch.lengths, ids["<eos>"])


def test_generator_decodes_reviews_from_their_vectors() -> None:
    texts = [text for _, text in reviews()][:6]
    vocab, tokens, lengths = word_batch(texts)
    features = torch.randn(6, 12, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = ConditionedGenerator(
        GeneratorConfig(len(vocab) + 3, condition_size=12, embed=16, hidden=48)
    )
    assert overfit(model, ConditionedBatch(features, tokens, lengths), 250) < 0.02
    start, state = model.start(features)
    check_all_decoders(model, start, state, tokens[:, 1:], lengths - 1, EOS)


def test_seq2seq_decodes_pronunciations() -> None:
    entries = [line.split() for line in lines("seq2seq_cmudict_sample.dict")][:10]
    letters = sorted({c for word, *_ in entries for c in word})
    phones = sorted({p for _, *ps in entries for p in ps})
    src_ids = {c: i + 3 for i, c in enumerate(letters)}
    tgt_ids = {p: i + 3 for i, p in enumerate(phones)}
    source_lengths = torch.tensor([len(w) for w, *_ in entries])
    target_lengths = torch.tensor([len(ps) + 2 for _, *ps in entries])
    source = torch.zeros(10, int(source_lengths.max()), dtype=torch.long)
    target = torch.zeros(10, int(target_lengths.max()), dtype=torch.long)
    for row, (word, *ps) in enumerate(entries):
        source[row, : len(word)] = torch.tensor([src_ids[c] for c in word])
        target[row, : len(ps) + 2] = torch.tensor([1, *(tgt_ids[p] for p in ps), EOS])
    torch.manual_seed(0)
    config = Seq2SeqConfig(len(letters) + 3, len(phones) + 3, embed=16, hidden=48,
                           bidirectional_encoder=True)  # fmt: skip
    model = Seq2Seq(config)
    assert (
        overfit(model, PairBatch(source, source_lengths, target, target_lengths), 300, 0.01) < 0.05
    )
    start, state = model.start(source, source_lengths)
    check_all_decoders(model, start, state, target[:, 1:], target_lengths - 1, EOS)
