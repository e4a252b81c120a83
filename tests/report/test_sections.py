"""Sections made from a run folder's files alone: the gradient-norm history."""

from __future__ import annotations

import math
from pathlib import Path

from rnnkit.report.sections import Attempt, Context, attempts, gradient_norms
from rnnkit.training.progress import MetricsCSV, read_metrics


def write_history(folder: Path) -> Path:
    """Three steps taken (the second clipped), one skipped attempt between them."""
    metrics = MetricsCSV(folder / "metrics.csv")
    taken = {"lr": 0.1, "skipped": 0.0, "tokens_per_s": 10.0}
    metrics.write(1, 1, "train", {"loss": 2.0, "grad_norm": 0.5, **taken, "clipped": 0.0}, 0.1)
    metrics.write(2, 1, "train", {"loss": 1.5, "grad_norm": 3.0, **taken, "clipped": 1.0}, 0.2)
    # The trainer logs a skipped attempt under the last step taken, with the bad norm.
    metrics.write(2, 1, "train", {"loss": math.nan, "grad_norm": math.inf, "skipped": 1.0,
                                  "clipped": 0.0}, 0.3)  # fmt: skip
    metrics.write(3, 1, "train", {"loss": 1.2, "grad_norm": 0.8, **taken, "clipped": 0.0}, 0.4)
    metrics.write(3, 1, "val", {"loss": 1.3}, 0.5)
    metrics.close()
    return folder / "metrics.csv"


def test_a_skipped_attempt_stays_apart_from_the_step_it_repeats(tmp_path: Path) -> None:
    found = attempts(read_metrics(write_history(tmp_path)))
    assert found == [
        Attempt(1, 0.5, clipped=False, skipped=False),
        Attempt(2, 3.0, clipped=True, skipped=False),
        Attempt(3, math.inf, clipped=False, skipped=True),
        Attempt(3, 0.8, clipped=False, skipped=False),
    ]


def test_the_history_counts_clipped_and_skipped_steps(tmp_path: Path) -> None:
    write_history(tmp_path)
    section = gradient_norms(Context(tmp_path, "lm", {"trainer": {"clip_norm": 1.0}}))
    assert section.missing is None
    assert section.text[0].startswith("3 steps; 1 clipped (clip norm 1); 1 skipped")
    assert section.text[1] == "Norm: median 0.8, largest 3."
    assert section.images[0].uri.startswith("data:image/png;base64,")
