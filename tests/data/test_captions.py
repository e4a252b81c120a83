"""Caption data: conditions (labels or standardised vectors), their file, and texts as ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnnkit.data.captions import Conditions, Part, encode_text
from rnnkit.data.errors import DataError
from rnnkit.data.vocab import BOS_ID, EOS_ID, UNK_ID, Vocabulary


def test_labels_are_sorted_ids_and_round_trip_through_their_file() -> None:
    conditions = Conditions.fit("label", [], ["rotten", "fresh", "rotten"])
    assert conditions.labels == ("fresh", "rotten")
    assert conditions.encode(["rotten", "fresh"]).tolist() == [1, 0]
    assert conditions.parse("fresh") == "fresh"
    with pytest.raises(
        DataError, match=r"unknown label 'happy' \(known labels: 'fresh', 'rotten'\)"
    ):
        conditions.parse("happy")
    assert Conditions.from_json(conditions.to_json(), path="ckpt") == conditions
    assert (
        conditions.describe(torch.tensor([1, 1, 0]))
        == "a label, one of fresh (1), rotten (2) in train"
    )
    with pytest.raises(DataError, match="never seen in training"):
        conditions.check([], ["fresh", "happy"], "valid.csv")


def test_vectors_are_standardised_with_the_training_statistics() -> None:
    train = [[1.0, 10.0], [3.0, 10.0]]  # the second feature is constant: divided by 1
    conditions = Conditions.fit("vector", ["a", "b"], train)
    encoded = conditions.encode(train)  # (N, D) float32
    assert encoded.dtype == torch.float32 and encoded.tolist() == [[-1.0, 0.0], [1.0, 0.0]]
    assert conditions.parse("2, 11") == [2.0, 11.0]
    assert conditions.encode([conditions.parse("2,11")]).tolist() == [[0.0, 1.0]]
    for text, message in [("1", "expected 2 comma-separated finite numbers .* got 1"),
                          ("1,inf", "finite numbers"),
                          ("a,b", "expected 2 comma-separated numbers")]:  # fmt: skip
        with pytest.raises(DataError, match=message):
            conditions.parse(text)
    again = Conditions.from_json(conditions.to_json(), path="ckpt")
    assert again.features == ("a", "b")
    assert torch.equal(again.encode(train), encoded)
    assert conditions.describe(encoded) == "a vector of 2 features (standardised on train)"
    assert conditions.wanted() == "2 comma-separated numbers"
    with pytest.raises(DataError, match=r"3 features per row \(expected 2"):
        conditions.check(["a", "b", "c"], [[1.0, 2.0, 3.0]], "test.csv")


def test_a_damaged_conditions_file_is_one_line_naming_the_checkpoint() -> None:
    for data in (b"{", b'{"kind": "vector", "features": ["a"]}', b"[]"):
        with pytest.raises(DataError, match=r"conditions\.json: damaged") as caught:
            Conditions.from_json(
                data, path=Path("run") / "checkpoints" / "best" / "conditions.json"
            )
        assert str(caught.value).startswith("run/checkpoints/best/conditions.json:")
        assert "\n" not in str(caught.value)


def test_texts_are_bos_tokens_eos_and_a_cut_text_has_no_eos() -> None:
    vocab = Vocabulary.build([["decent", "but", "dull", "."]], min_freq=1)
    ids = encode_text("Decent but DULL.", vocab, "word", 100)
    assert (
        ids[0] == BOS_ID
        and ids[-1] == EOS_ID
        and vocab.decode(ids) == ["decent", "but", "dull", "."]
    )
    cut = encode_text("Decent but DULL.", vocab, "word", 2)
    assert vocab.decode(cut) == ["decent", "but"] and cut[-1] != EOS_ID
    assert encode_text("odd", vocab, "word", 10) == [BOS_ID, UNK_ID, EOS_ID]
    assert len(encode_text("ab", Vocabulary.build([["a"]], min_freq=1), "char", 10)) == 4


def test_a_part_gives_one_example_per_text_with_its_length() -> None:
    vocab = Vocabulary.build([["a", "b"]], min_freq=1)
    conditions = Conditions.fit("label", [], ["x", "y"])
    part = Part.encode([("a b", "y"), ("a", "x")], vocab, conditions, "word", 100)
    assert part.condition.tolist() == [1, 0]
    examples = part.examples()
    assert examples.lengths == [4, 3]
    (c0, ids0), (c1, ids1) = examples.items
    assert int(c0) == 1 and ids0 == part.ids[0] and int(c1) == 0 and ids1 == part.ids[1]
