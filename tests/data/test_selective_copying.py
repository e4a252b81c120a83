"""The selective-copying generator, its registry entry and its view as tagging examples."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from rnnkit.data.errors import DataError
from rnnkit.data.registry import fetch, info
from rnnkit.data.selective_copying import (
    LENGTH,
    NOISE,
    SYMBOLS,
    TOKENS,
    CopyingExamples,
    selective_copying,
    selective_copying_chance,
    symbol_names,
    tag_names,
    vocabulary,
)
from rnnkit.data.tags import UNSCORED


def test_the_defaults_are_the_papers_setting() -> None:
    # Gu & Dao 2023, E.1: length 4096, 16 tokens to memorise, a vocabulary of 16 with noise.
    assert (LENGTH, TOKENS, SYMBOLS) == (4096, 16, 14)
    assert len(symbol_names(SYMBOLS)) == 16  # noise, 14 data symbols, the marker
    batch = selective_copying(2)
    assert batch.inputs.shape == (2, 4096 + 16) and batch.targets.shape == (2, 16)
    assert int(batch.inputs.max()) == 15  # the marker


def test_exactly_k_data_tokens_in_order_then_k_markers() -> None:
    batch = selective_copying(64, 30, 5, 6, seed=3)
    inputs, targets, positions = batch.inputs, batch.targets, batch.positions
    assert inputs.shape == (64, 35) and inputs.dtype == torch.int64
    assert targets.shape == positions.shape == (64, 5)
    assert torch.equal(inputs[:, 30:], torch.full((64, 5), 7))  # V + 1 = 7 marks each query
    stretch = inputs[:, :30]
    assert torch.equal((stretch != NOISE).sum(1), torch.full((64,), 5))  # exactly k data tokens
    assert ((stretch >= 0) & (stretch <= 6)).all()  # noise or a data symbol: no marker
    assert (positions.diff(dim=1) > 0).all() and int(positions.max()) < 30
    # The targets are the data tokens read left to right, and they sit at `positions`.
    assert torch.equal(stretch.gather(1, positions), targets)
    for row in range(64):
        assert stretch[row][stretch[row] != NOISE].tolist() == targets[row].tolist()
    assert ((targets >= 1) & (targets <= 6)).all()


def test_the_module_docstrings_example() -> None:
    batch = selective_copying(1, 6, 2, 3, seed=202)
    names = symbol_names(3)
    assert names == (".", "1", "2", "3", "?") and tag_names(3) == ("1", "2", "3")
    assert " ".join(names[s] for s in batch.inputs[0].tolist()) == ". 2 . . 3 . ? ?"
    assert batch.targets.tolist() == [[2, 3]] and batch.positions.tolist() == [[1, 4]]


def test_the_same_seed_gives_the_same_batch() -> None:
    a, b = selective_copying(8, 40, 4, 5, seed=7), selective_copying(8, 40, 4, 5, seed=7)
    c = selective_copying(8, 40, 4, 5, seed=8)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.positions, b.positions)
    assert not torch.equal(a.inputs, c.inputs) and not torch.equal(a.positions, c.positions)
    # A byte per step stores the same symbols; past one chunk of rows as well.
    wide = selective_copying(1500, 20, 3, 4, seed=2)
    small = selective_copying(1500, 20, 3, 4, seed=2, dtype=torch.uint8)
    assert small.inputs.dtype == torch.uint8 and torch.equal(small.inputs.long(), wide.inputs)


def test_symbols_and_positions_are_uniform() -> None:
    batch = selective_copying(4000, 10, 2, 4, seed=0)
    counts = torch.bincount(batch.targets.reshape(-1), minlength=5)[1:]
    assert counts.sum() == 8000 and int(counts.min()) > 1850 and int(counts.max()) < 2150
    # Each of the 45 pairs of positions out of 10 is drawn with probability 1/45.
    pairs = torch.bincount(batch.positions[:, 0] * 10 + batch.positions[:, 1], minlength=100)
    drawn = pairs[pairs > 0]
    assert len(drawn) == math.comb(10, 2)
    assert int(drawn.min()) > 4000 / 45 * 0.6 and int(drawn.max()) < 4000 / 45 * 1.4


def test_chance_is_one_over_the_symbols() -> None:
    assert selective_copying_chance(14) == pytest.approx(1 / 14, rel=1e-15)
    assert selective_copying_chance(2) == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": 0}, "batch: expected a positive int, got 0"),
        ({"batch": True}, "batch: expected a positive int, got True"),
        ({"tokens": 0}, "tokens: expected a positive int, got 0"),
        ({"length": 3, "tokens": 4}, r"length: expected an int ≥ tokens \(4\), got 3"),
        ({"length": 8.0}, r"length: expected an int ≥ tokens \(16\), got 8.0"),
        ({"symbols": 1}, "symbols: expected an int ≥ 2, got 1"),
        ({"dtype": torch.float32}, "dtype: expected an integer dtype that holds the marker 15"),
        ({"symbols": 300, "dtype": torch.uint8}, "dtype: .* holds the marker 301, got torch.uint8"),
    ],
)
def test_bad_arguments_are_one_line_value_errors(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"batch": 2, "length": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        selective_copying(**arguments)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="symbols: expected an int ≥ 2, got 0"):
        selective_copying_chance(0)


def test_the_registry_names_the_generator_and_refuses_to_fetch_it() -> None:
    entry = info("selective-copying")
    assert entry.package is None and entry.generator is not None
    assert entry.counts == {"length": 4096, "tokens": 16, "symbols": 14, "vocabulary": 16}
    assert entry.reference is not None and "99.8" in entry.reference
    dotted = entry.generator.split("(", 1)[0]
    module, _, function = dotted.rpartition(".")
    generate = getattr(importlib.import_module(module), function)
    assert generate is selective_copying
    assert generate(3, 9, 2, 5, 0).inputs.shape == (3, 11)
    with pytest.raises(DataError, match=f"generated from a seed, not fetched: call {dotted}"):
        fetch("selective-copying")


def test_as_tagging_examples_the_markers_alone_have_tags() -> None:
    examples = CopyingExamples.generate(5, 12, 3, 4, seed=4)
    batch = selective_copying(5, 12, 3, 4, seed=4)
    assert examples.batch.inputs.dtype == torch.uint8 and len(examples) == 5
    vocab = vocabulary(4)
    for row, (ids, tags) in enumerate(examples):
        assert len(ids) == len(tags) == 15
        assert vocab.decode(ids) == [symbol_names(4)[s] for s in batch.inputs[row].tolist()]
        assert tags[:12] == [UNSCORED] * 12
        assert [tag_names(4)[t] for t in tags[12:]] == [str(s) for s in batch.targets[row].tolist()]
    assert examples[-1] == examples[4] and examples[1:3] == [examples[1], examples[2]]
    with pytest.raises(IndexError):
        examples[5]
