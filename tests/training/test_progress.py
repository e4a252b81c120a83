"""Progress: a bar on a terminal, plain lines elsewhere, metrics.csv always and resumable."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rnnkit.training.progress import MetricsCSV, Progress, read_metrics


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal_shows_step_loss_and_rate(tmp_path: Path) -> None:
    screen = Terminal()
    progress = Progress(tmp_path, stream=screen)
    assert progress.mode == "bar"
    progress.start_epoch(1, total=3)
    for step in (1, 2, 3):
        progress.step(step, 1, {"loss": 1.0 / step, "tokens_per_s": 1234.0, "lr": 1e-3})
    progress.record(3, 1, "val", {"loss": 0.5})
    progress.close()
    text = screen.getvalue()
    assert "epoch 1" in text and "3/3" in text and "loss=0.3333" in text
    assert "epoch 1 step 3 val: loss 0.5000" in text


def test_plain_lines_elsewhere_and_nothing_off_the_main_process(tmp_path: Path) -> None:
    log = io.StringIO()
    progress = Progress(tmp_path, stream=log)
    assert progress.mode == "lines"
    progress.start_epoch(1, total=2)
    progress.step(1, 1, {"loss": 2.0})
    progress.record(1, 1, "val", {"loss": 1.5, "accuracy": 0.25})
    progress.close()
    assert log.getvalue() == "epoch 1 step 1 val: loss 1.5000 accuracy 0.2500\n"
    quiet = io.StringIO()
    other = Progress(tmp_path / "other", stream=quiet, enabled=False)
    other.record(1, 1, "val", {"loss": 1.0})
    assert quiet.getvalue() == "" and not (tmp_path / "other").exists()


def test_metrics_csv_drops_rows_past_the_resumed_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    metrics = MetricsCSV(path)
    for step in range(1, 6):
        metrics.write(step, 1, "train", {"loss": float(step)}, 0.0)
    metrics.close()
    metrics = MetricsCSV(path, resume_step=3)
    metrics.write(4, 1, "train", {"loss": 40.0}, 0.0)
    metrics.close()
    rows = read_metrics(path)
    assert [(r["step"], r["value"]) for r in rows] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_a_foreign_metrics_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not an rnnkit metrics file"):
        MetricsCSV(path, resume_step=1)


def test_lines_without_a_terminal_report_progress_periodically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnkit.training import progress as module

    log = io.StringIO()
    progress = Progress(tmp_path, stream=log)
    assert progress.mode == "lines"
    clock = iter([0.0, 11.0, 20.0])  # one reading per step
    monkeypatch.setattr(Progress, "seconds", property(lambda self: next(clock)))
    monkeypatch.setattr(module, "LINE_SECONDS", 20.0)
    progress.start_epoch(2, total=4, done=1)
    for step in (2, 3, 4):  # 0 s: too early; 11 s: the first line; 20 s: 20 s to the next
        progress.step(step, 2, {"loss": 2.0 / step})
    progress.close()
    assert log.getvalue().splitlines() == ["epoch 2 step 3 (3/4): loss 0.6667 [11 s]"]
