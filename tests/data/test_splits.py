"""Seeded splits: one algorithm for the bundled datasets and the user's files."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.errors import DataError
from rnnkit.data.splits import check_parts, split_indices


def test_split_indices_is_the_same_on_every_machine() -> None:
    # Golden values: random.Random's sequence is promised across Python versions, and
    # the bundled datasets' published splits depend on it (tests/data/test_registry.py).
    assert split_indices(10, (0.6, 0.2, 0.2), seed=0) == ([0, 2, 4, 5, 7, 9], [1, 3], [6, 8])
    assert split_indices(7, (0.5, 0.5), seed=1) == ([1, 2, 4, 6], [0, 3, 5])


def test_split_indices_refuses_fractions_that_do_not_add_up() -> None:
    with pytest.raises(ValueError, match=r"fractions: expected them to add up to 1, got 0.9"):
        split_indices(10, (0.5, 0.4), seed=0)
    with pytest.raises(ValueError, match=r"fractions: expected non-negative numbers"):
        split_indices(10, (1.5, -0.5), seed=0)
    with pytest.raises(ValueError, match=r"fractions: expected at least one"):
        split_indices(10, (), seed=0)
    with pytest.raises(ValueError, match=r"n: expected an int ≥ 0"):
        split_indices(-1, (1.0,), seed=0)


@given(
    st.integers(0, 300),
    st.lists(st.integers(0, 10), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
    st.integers(0, 2**63 - 1),
)
def test_split_indices_properties(n: int, weights: list[int], seed: int) -> None:
    fractions = tuple(w / sum(weights) for w in weights)
    parts = split_indices(n, fractions, seed)
    assert len(parts) == len(fractions)
    assert sorted(i for part in parts for i in part) == list(range(n))
    # Every part but the first has floor(n · fraction); the first takes the rest.
    assert [len(part) for part in parts[1:]] == [math.floor(n * f) for f in fractions[1:]]
    for part in parts:
        assert part == sorted(part)
    assert split_indices(n, fractions, seed) == parts


def test_check_parts_names_the_empty_part() -> None:
    check_parts({"train": [1], "valid": [2], "test": []}, "rows", ("train", "valid"))
    with pytest.raises(DataError, match=r"^data: the test part has no rows$"):
        check_parts({"train": [1], "valid": [2], "test": []}, "rows")
