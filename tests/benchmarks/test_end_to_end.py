"""benchmarks/end_to_end.py: its estimator, its batch order and the section it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnkit.training.order import EpochOrder
from rnnkit.training.trainer import TrainerConfig
from tests.benchmarks.test_scripts import load


def test_a_step_hit_by_a_burst_in_one_run_drops_out_of_the_figure() -> None:
    script = load("end_to_end")
    runs = [[1.0, 2.0, 3.0], [1.0, 9.0, 3.0], [1.0, 2.0, 3.0]]
    assert script.per_step(runs) == pytest.approx(2.0)


def test_the_plain_loop_takes_the_batches_in_the_trainers_order() -> None:
    script = load("end_to_end")
    items = [f"batch {i}" for i in range(11)]
    config = TrainerConfig(batch_size=1, seed=5, shuffle=True)
    expected = [items[s.indices[0]] for s in EpochOrder(11, 1, seed=5, shuffle=True).batches(0)]
    assert script.ordered(items, config) == expected
    assert expected != items and sorted(expected) == sorted(items)  # shuffled, each once


def test_writing_one_case_keeps_the_other_cases_rows(tmp_path: Path) -> None:
    script, common = load("end_to_end"), load("common")
    doc = tmp_path / "B.md"
    doc.write_text("intro\n")
    first = {
        "lm": ("| lm | x | 1 |", "- lm: `a`"),
        "seq2seq": ("| seq2seq | y | 2 |", "- seq2seq: `b`"),
    }
    common.write_block(doc, "end_to_end", script.table(first))
    assert script.kept_rows(doc) == first
    again = {**script.kept_rows(doc), "lm": ("| lm | x | 3 |", "- lm: `c`")}
    common.write_block(doc, "end_to_end", script.table(again))
    text = doc.read_text()
    assert text.startswith("intro") and "| lm | x | 3 |" in text and "| lm | x | 1 |" not in text
    assert "| seq2seq | y | 2 |" in text and "- seq2seq: `b`" in text
    assert text.index("| lm |") < text.index("| seq2seq |")  # cases in a fixed order
