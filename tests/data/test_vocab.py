"""Vocabularies and tokenisers: fixed special ids, deterministic builds, exact JSON round trips."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import sys
from collections import Counter
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.errors import DataError
from rnnkit.data.vocab import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    BPETokenizer,
    CharTokenizer,
    Vocabulary,
    WordTokenizer,
)

tokens_st = st.text(min_size=1, max_size=6)
token_lists_st = st.lists(st.lists(tokens_st, max_size=12), max_size=8)


def test_special_tokens_hold_ids_zero_to_three() -> None:
    vocab = Vocabulary(["cat"])
    assert vocab.tokens == ("<pad>", "<unk>", "<bos>", "<eos>", "cat")
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert vocab.encode(list(SPECIAL_TOKENS)) == [0, 1, 2, 3]
    assert len(Vocabulary()) == 4


def test_build_orders_by_count_then_by_string() -> None:
    texts = [["b", "a", "c", "a"], ["c", "d", "a", "b"], ["e"]]
    # Counts: a 3, b 2, c 2, d 1, e 1: ties b/c and d/e go alphabetically.
    vocab = Vocabulary.build(texts)
    assert vocab.tokens[4:] == ("a", "b", "c", "d", "e")
    assert vocab.encode(["a", "b", "c", "d", "e"]) == [4, 5, 6, 7, 8]


def test_build_min_freq_and_max_size_counting_the_special_tokens() -> None:
    texts = [["x"] * 5 + ["y"] * 3 + ["z"] * 3 + ["w"]]
    assert Vocabulary.build(texts, min_freq=3).tokens[4:] == ("x", "y", "z")
    assert Vocabulary.build(texts, max_size=6).tokens[4:] == ("x", "y")
    assert len(Vocabulary.build(texts, max_size=4)) == 4
    with pytest.raises(ValueError, match=r"max_size: expected None or an int ≥ 4"):
        Vocabulary.build(texts, max_size=3)
    with pytest.raises(ValueError, match=r"min_freq: expected an int ≥ 1, got 0"):
        Vocabulary.build(texts, min_freq=0)


def test_special_tokens_in_the_text_keep_their_ids_and_are_not_counted() -> None:
    # PTB writes <unk> into its text; it must stay id 1, not become an ordinary token.
    vocab = Vocabulary.build([["<unk>", "<unk>", "the", "<eos>"]])
    assert vocab.tokens[4:] == ("the",)
    assert vocab.encode(["<unk>", "the", "<eos>"]) == [1, 4, 3]


def test_build_refuses_tokens_that_are_not_strings() -> None:
    with pytest.raises(DataError, match=r"token list 1: expected string tokens, got 3"):
        Vocabulary.build([["a"], ["b", 3]])  # type: ignore[list-item]


def test_constructor_refuses_special_tokens_repeats_and_empty_tokens() -> None:
    with pytest.raises(DataError, match=r"vocabulary token 1: '<eos>' is a special token"):
        Vocabulary(["a", "<eos>"])
    with pytest.raises(DataError, match=r"vocabulary token 2: 'a' is a repeat"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(DataError, match=r"vocabulary token 0: expected a non-empty string"):
        Vocabulary([""])
    with pytest.raises(DataError, match=r"not valid Unicode"):
        Vocabulary(["\ud800"])


def test_encode_maps_unknown_tokens_to_unk_and_decode_strips_special_tokens() -> None:
    vocab = Vocabulary(["the", "cat"])
    assert vocab.encode(["the", "dog", "cat"]) == [4, 1, 5]
    ids = [BOS_ID, 4, UNK_ID, 5, EOS_ID, PAD_ID, PAD_ID]
    assert vocab.decode(ids) == ["the", "<unk>", "cat"]
    assert vocab.decode(ids, strip_special=False) == [
        "<bos>",
        "the",
        "<unk>",
        "cat",
        "<eos>",
        "<pad>",
        "<pad>",
    ]
    assert vocab.decode(torch.tensor(ids)) == ["the", "<unk>", "cat"]


def test_decode_refuses_ids_outside_the_vocabulary() -> None:
    vocab = Vocabulary(["a"])
    with pytest.raises(DataError, match=r"id 1: expected an int in \[0, 5\) .*got 5"):
        vocab.decode([4, 5])
    with pytest.raises(DataError, match=r"id 0: .*got -1"):
        vocab.decode([-1])


def test_equality_and_hash_follow_the_tokens_in_order() -> None:
    assert Vocabulary(["a", "b"]) == Vocabulary(["a", "b"])
    assert hash(Vocabulary(["a", "b"])) == hash(Vocabulary(["a", "b"]))
    assert Vocabulary(["a", "b"]) != Vocabulary(["b", "a"])
    assert Vocabulary(["a"]) != ("<pad>", "<unk>", "<bos>", "<eos>", "a")
    assert "a" in Vocabulary(["a"]) and "b" not in Vocabulary(["a"])


def test_json_round_trip_is_exact_through_utf8_bytes() -> None:
    vocab = Vocabulary(["naïve", "日本", '"quoted"', "line\nbreak", "ends\\"])
    text = vocab.to_json()
    data = text.encode("utf-8")
    again = Vocabulary.from_json(data)
    assert again == vocab and again.tokens == vocab.tokens
    assert again.to_json() == text
    assert json.loads(text)["tokens"][:4] == list(SPECIAL_TOKENS)


@given(token_lists_st, st.integers(1, 3), st.none() | st.integers(4, 12))
def test_build_properties(
    token_lists: list[list[str]], min_freq: int, max_size: int | None
) -> None:
    vocab = Vocabulary.build(token_lists, min_freq=min_freq, max_size=max_size)
    counts = Counter(t for tokens in token_lists for t in tokens if t not in SPECIAL_TOKENS)
    ordinary = vocab.tokens[4:]
    assert vocab.tokens[:4] == SPECIAL_TOKENS
    assert max_size is None or len(vocab) <= max_size
    assert all(counts[t] >= min_freq for t in ordinary)
    keys = [(-counts[t], t) for t in ordinary]
    assert keys == sorted(keys)
    eligible = sum(1 for c in counts.values() if c >= min_freq)
    assert len(ordinary) == (eligible if max_size is None else min(eligible, max_size - 4))
    # The same texts in another order give the same ids.
    assert Vocabulary.build(token_lists[::-1], min_freq=min_freq, max_size=max_size) == vocab
    # Every kept token survives encode → decode; every other one becomes <unk>.
    for tokens in token_lists:
        ids = vocab.encode(tokens)
        assert len(ids) == len(tokens)
        decoded = vocab.decode(ids, strip_special=False)
        assert decoded == [t if t in vocab else "<unk>" for t in tokens]
    assert Vocabulary.from_json(vocab.to_json()) == vocab


def _broken_documents() -> list[Any]:
    good = {"format": "rnnkit-vocabulary", "version": 1, "tokens": [*SPECIAL_TOKENS, "a"]}
    return [
        [],
        "vocabulary",
        {**good, "format": "other"},
        {**good, "version": 2},
        {**good, "tokens": "abc"},
        {**good, "tokens": ["<unk>", "<pad>", "<bos>", "<eos>"]},
        {**good, "tokens": [*SPECIAL_TOKENS, "a", "a"]},
        {**good, "tokens": [*SPECIAL_TOKENS, 7]},
        {**good, "tokens": [*SPECIAL_TOKENS, None]},
        {**good, "tokens": [*SPECIAL_TOKENS, ""]},
    ]


@pytest.mark.parametrize("document", _broken_documents())
def test_from_json_refuses_documents_that_are_not_vocabularies(document: Any) -> None:
    with pytest.raises(DataError) as caught:
        Vocabulary.from_json(json.dumps(document), path="runs/x/vocab.json")
    assert str(caught.value).startswith("runs/x/vocab.json:")


def test_from_json_names_the_line_of_a_syntax_error() -> None:
    with pytest.raises(DataError, match=r"^v\.json:3: not a vocabulary JSON file"):
        Vocabulary.from_json('{\n"format":\n  oops}', path="v.json")


@given(st.text(max_size=60) | st.binary(max_size=60))
def test_from_json_raises_only_data_error_on_random_input(text: str | bytes) -> None:
    with contextlib.suppress(DataError):
        Vocabulary.from_json(text)


@given(st.data())
def test_from_json_raises_only_data_error_on_damaged_files(data: st.DataObject) -> None:
    original = Vocabulary(["alpha", "beta", "γ"]).to_json().encode("utf-8")
    position = data.draw(st.integers(0, len(original) - 1))
    action = data.draw(st.sampled_from(["cut", "flip", "insert"]))
    byte = data.draw(st.integers(0, 255))
    if action == "cut":
        damaged = original[:position]
    elif action == "flip":
        damaged = original[:position] + bytes([byte]) + original[position + 1 :]
    else:
        damaged = original[:position] + bytes([byte]) + original[position:]
    try:
        vocab = Vocabulary.from_json(damaged)
    except DataError:
        return
    assert vocab.tokens[:4] == SPECIAL_TOKENS  # what still parses is a valid vocabulary


def test_deeply_nested_json_is_a_data_error() -> None:
    with pytest.raises(DataError, match="not a vocabulary JSON file"):
        Vocabulary.from_json("[" * 100_000 + "]" * 100_000)


# ---- tokenisers ----


@given(st.text(max_size=40))
def test_char_tokenizer_round_trips_exactly(text: str) -> None:
    tokenizer = CharTokenizer()
    tokens = tokenizer.tokenize(text)
    assert len(tokens) == len(text) and all(len(t) == 1 for t in tokens)
    assert tokenizer.detokenize(tokens) == text


def test_word_tokenizer_splits_words_and_punctuation() -> None:
    tokenizer = WordTokenizer()
    assert tokenizer.tokenize("Hello, world! It's 3pm.") == [
        "Hello",
        ",",
        "world",
        "!",
        "It",
        "'",
        "s",
        "3pm",
        ".",
    ]
    assert tokenizer.detokenize(["Hi", ",", "you"]) == "Hi , you"
    assert WordTokenizer(lowercase=True).tokenize("The CAT") == ["the", "cat"]
    assert WordTokenizer(pattern=r"\S+").tokenize(" a-b  c. ") == ["a-b", "c."]
    # A pattern that can match nothing yields no empty tokens.
    assert WordTokenizer(pattern=r"[a-z]*").tokenize("ab 1 c") == ["ab", "c"]


def test_word_tokenizer_refuses_a_broken_pattern() -> None:
    with pytest.raises(DataError, match=r"pattern: '\(a' is not a valid regular expression"):
        WordTokenizer(pattern="(a")


@given(st.text(max_size=40), st.booleans())
def test_word_tokenizer_properties(text: str, lowercase: bool) -> None:
    tokenizer = WordTokenizer(lowercase=lowercase)
    tokens = tokenizer.tokenize(text)
    assert all(t and not any(c.isspace() for c in t) for t in tokens)
    # Whitespace is lost, everything else kept: joining is stable under re-tokenising.
    assert tokenizer.tokenize(tokenizer.detokenize(tokens)) == tokens
    source = text.lower() if lowercase else text
    assert "".join(tokens) == "".join(c for c in source if not c.isspace())


# ---- byte-pair encoding (optional extra) ----


def test_bpe_without_the_tokenizers_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes the import fail
    with pytest.raises(DataError, match=r"pip install 'rnnkit\[bpe\]'"):
        BPETokenizer.train(["some text"], vocab_size=300)
    with pytest.raises(DataError, match=r"pip install 'rnnkit\[bpe\]'"):
        BPETokenizer.from_json("{}")


def test_bpe_refuses_a_vocabulary_smaller_than_its_alphabet() -> None:
    with pytest.raises(ValueError, match=r"vocab_size: expected an int ≥ 260, got 100"):
        BPETokenizer.train(["text"], vocab_size=100)


_CORPUS = [
    "the cat sat on the mat. the cat ate the rat.",
    "a hat, a mat and a cat: the end <eos>",
    "naïve café — 日本語 text too",
] * 3


needs_tokenizers = pytest.mark.skipif(
    importlib.util.find_spec("tokenizers") is None,
    reason="the optional 'tokenizers' package is not installed (pip install 'rnnkit[bpe]')",
)


@functools.cache
def _trained() -> BPETokenizer:
    return BPETokenizer.train(_CORPUS, vocab_size=300)


@needs_tokenizers
def test_bpe_trains_locally_and_merges_frequent_words() -> None:
    bpe = _trained()
    assert 260 < bpe.vocab_size <= 300
    assert bpe.tokenize("the cat") == ["the", "Ġcat"]
    assert bpe.tokenize("<eos>") == ["<eos>"]  # special tokens stay whole
    assert bpe.detokenize(bpe.tokenize("the cat sat")) == "the cat sat"


@needs_tokenizers
def test_bpe_json_round_trip_and_damaged_json() -> None:
    bpe = _trained()
    again = BPETokenizer.from_json(bpe.to_json().encode("utf-8"))
    assert again.to_json() == bpe.to_json()
    sample = "the rat sat on a hat, naïvely"
    assert again.tokenize(sample) == bpe.tokenize(sample)
    with pytest.raises(DataError, match=r"^bpe\.json: not a BPE tokenizer JSON file"):
        BPETokenizer.from_json('{"model": 3}', path="bpe.json")
    with pytest.raises(DataError, match="not a BPE tokenizer JSON file"):
        BPETokenizer.from_json(b"\xff\xfe")


@needs_tokenizers
@given(st.text(max_size=30))
def test_bpe_round_trips_any_text(text: str) -> None:
    bpe = _trained()
    tokens = bpe.tokenize(text)
    assert bpe.detokenize(tokens) == text
    assert "<unk>" not in tokens  # byte-level: nothing is out of vocabulary
