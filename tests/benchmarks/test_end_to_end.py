"""benchmarks/end_to_end.py: its estimator, its batch order and the section it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.benchmarks.test_scripts import load


def test_a_step_hit_by_a_burst_in_one_run_drops_out_of_the_figure() -> None:
    script = load("end_to_end")
    runs = [[1.0, 2.0, 3.0], [1.0, 9.0, 3.0], [1.0, 2.0, 3.0]]
    assert script.per_step(runs) == pytest.approx(2.0)


def test_the_plain_loop_takes_the_batches_the_trainer_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnkit.cli.main import main
    from rnnkit.training.trainer import Trainer
    from tests.models.fixtures import FIXTURES

    fed: list[Any] = []
    batch_of = Trainer._batch

    def recording(self: Trainer, shard: Any, examples: Any) -> Any:
        batch = batch_of(self, shard, examples)
        if examples is self.train_data:
            fed.append(batch)
        return batch

    monkeypatch.setattr(Trainer, "_batch", recording)
    sample = str(FIXTURES / "models_rotten_tomatoes_sample.tsv")
    out = tmp_path / "run"
    argv = ["train", "classify", "--data", sample, sample, sample, "--comment", "#",
            "--batch-size", "4", "--hidden", "4", "--embed", "4", "--max-steps", "3",
            "--progress", "off", "--no-report", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    _, batches = load("end_to_end").prepared_run("classify", out)
    assert len(fed) == 3 and len(batches) == 4  # 16 texts in batches of 4
    for ours, theirs in zip(fed, batches, strict=False):
        assert torch.equal(ours.inputs, theirs.inputs) and torch.equal(ours.targets, theirs.targets)


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
