"""Tag sets, tag ids and the entities tags mark (conlleval's reading)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rnnkit.data import tags
from rnnkit.data.errors import DataError
from rnnkit.data.vocab import UNK_ID, Vocabulary
from rnnkit.metrics import span_scores


def test_tag_set_orders_o_first_and_round_trips() -> None:
    sentences = [[("New", "B-loc"), ("York", "I-loc"), ("is", "O")], [("Bob", "B-per")]]
    tagset = tags.TagSet.build(sentences)
    assert tagset == tags.TagSet(("O", "B-loc", "B-per", "I-loc"), "BIO")
    assert tags.TagSet.from_json(tagset.to_json(), path="x") == tagset
    assert tagset.names(tagset.ids(["I-loc", "O"], where="x")) == ["I-loc", "O"]
    plain = tags.TagSet.build([[("the", "DET"), ("dog", "NOUN")]])
    assert plain.scheme is None and tags.TagSet.from_json(plain.to_json(), path="x") == plain


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1]", "expected {'tags'"),
        (b'{"tags": [], "scheme": null}', "non-empty list of tags"),
        (b'{"tags": ["O"], "scheme": "IOB9"}', "unknown scheme 'IOB9'"),
    ],
)
def test_bad_tag_files_are_one_line_naming_the_file(data: bytes, message: str,
                                                     tmp_path: Path) -> None:  # fmt: skip
    with pytest.raises(DataError, match=message) as error:
        tags.TagSet.from_json(data, path=tmp_path / "tags.json")
    assert "tags.json" in str(error.value) and "\n" not in str(error.value)


def test_encode_names_the_sentence_of_an_unknown_tag() -> None:
    vocab = Vocabulary(["york"])
    tagset = tags.TagSet(("O", "B-loc"), "BIO")
    [(ids, tag_ids)] = tags.encode([[("York", "B-loc"), ("x", "O")]], vocab, tagset, True,
                                   where="test")  # fmt: skip
    assert ids == [vocab.encode(["york"])[0], UNK_ID] and tag_ids == [1, 0]
    with pytest.raises(DataError, match=r"^test, sentence 2: tag 'I-loc'"):
        tags.encode([[("a", "O")], [("b", "I-loc")]], vocab, tagset, False, where="test")


def test_entity_spans_follow_conlleval() -> None:
    assert tags.entity_spans(["O", "I-PER", "I-PER", "B-LOC", "I-ORG", "O"]) == [
        ("PER", 1, 2),
        ("LOC", 3, 3),
        ("ORG", 4, 4),
    ]
    assert tags.entity_spans(["S-X", "B-Y", "E-Y", "E-Y"]) == [
        ("X", 0, 0),
        ("Y", 1, 2),
        ("Y", 3, 3),
    ]
    # Tied to the metric: the spans read here are the ones span_scores counts.
    rng = random.Random(0)
    for scheme, names in (("BIO", ["O", "B-A", "I-A", "B-B", "I-B"]),
                          ("BIOES", ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "E-B"])):  # fmt: skip
        for _ in range(200):
            sentence = [rng.choice(names) for _ in range(rng.randint(1, 8))]
            spans = tags.entity_spans(sentence)
            assert len(spans) == span_scores([sentence], [sentence], scheme).micro.support
            for kind, _, _ in spans:
                assert kind in ("A", "B")


def test_entities_and_marked_sentences() -> None:
    tokens = ["John", "Smith", "visited", "Paris"]
    labels = ["B-PER", "I-PER", "O", "B-LOC"]
    assert tags.entities(tokens, labels) == [
        {"type": "PER", "start": 0, "end": 2, "text": "John Smith"},
        {"type": "LOC", "start": 3, "end": 4, "text": "Paris"},
    ]
    assert tags.marked(tokens, labels, "BIO") == "[John Smith]PER visited [Paris]LOC"
    assert tags.marked(["the", "dog"], ["DET", "NOUN"], None) == "the/DET dog/NOUN"
