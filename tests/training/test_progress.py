"""Progress: a bar on a terminal, plain lines elsewhere, metrics.csv always and resumable."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rnnkit.training.progress import (
    MIN_BAR,
    Bar,
    MetricsCSV,
    Progress,
    bar_line,
    read_metrics,
    write_above,
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal_shows_step_loss_and_rate(tmp_path: Path) -> None:
    screen = Terminal()
    progress = Progress(tmp_path, stream=screen, columns=120)
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


# What the Trainer shows: long numbers, so that a cut would show.
VALUES = {"loss": 1.23456789, "grad_norm": 0.5312345, "lr": 3e-4, "clipped": 0.0,
          "skipped": 0.0, "tokens_per_s": 123456.7}  # fmt: skip
WHOLE = {"loss": "loss=1.2346", "grad_norm": "grad_norm=0.5312", "lr": "lr=0.0003",
         "clipped": "clipped=0", "skipped": "skipped=0", "tokens_per_s": "tokens_per_s=123,457"}  # fmt: skip


def fields_shown(line: str) -> set[str]:
    """The training values on a bar line, each checked to be there whole or not at all."""
    shown = set()
    for name, whole in WHOLE.items():
        if f"{name}=" in line:
            assert whole in line.split(), f"{name} cut in {line!r}"
            shown.add(name)
    return shown


@pytest.mark.parametrize("width", [30, 40, 60, 80, 100, 120, 200])
def test_the_bar_fits_the_width_and_cuts_no_number(width: int) -> None:
    line = bar_line(width, "epoch 2", 450, 1000, 83.0, 5.4, VALUES)
    assert len(line) <= width - 1  # the last column would wrap the line
    assert "450/1,000" in line.split()  # the count always, whole
    fields_shown(line)
    if "[" in line:
        assert "[1:23<1:41]" in line.split()  # 550 steps left at 5.4 steps/s
    if width >= 60:  # a useful line at 60 columns: the bar, the count, the ETA and the loss
        assert line.startswith("epoch 2  45% |")
        assert "[1:23<1:41]" in line and WHOLE["loss"] in line
        inner = line.split("|")[1]
        assert len(inner) >= MIN_BAR and inner.strip().startswith("█")


def test_narrower_bars_drop_fields_least_useful_first() -> None:
    # Each width shows all a narrower one shows; loss is the first value kept, the
    # counters clipped/skipped the last.
    appeared: list[str] = []  # the values in the order wider lines add them
    before: set[str] = set()
    for width in range(20, 220):
        shown = fields_shown(bar_line(width, "epoch 1", 5, 80, 2.0, 2.5, VALUES))
        assert before <= shown
        appeared += sorted(shown - before)
        before = shown
    assert appeared[:4] == ["loss", "tokens_per_s", "lr", "grad_norm"]
    assert set(appeared) == set(WHOLE)
    at_80 = bar_line(80, "epoch 1", 5, 80, 2.0, 2.5, VALUES)
    assert fields_shown(at_80) == {"loss", "tokens_per_s"}


def test_tiny_widths_keep_the_count_whole() -> None:
    assert bar_line(10, "epoch 1", 12345, 67890, 1.0, 1.0, VALUES) == "12,345/67,890"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_is_over_the_total_given(tmp_path: Path) -> None:
    # A 300-step run in an epoch of 1,423 chunks: the Trainer passes 300, and the bar
    # ends full at 300/300 with the ETA of the 200 steps left after 100 at 1 s each.
    clock, screen = Clock(), Terminal()
    bar = Bar(screen, "epoch 1", 300, columns=80, clock=clock)
    for _ in range(100):
        clock.now += 1.0
        bar.update({"loss": 2.0})
    assert "100/300 [1:40<3:20]" in bar.text()
    for _ in range(200):
        clock.now += 1.0
        bar.update({"loss": 1.0})
    bar.close()
    last = screen.getvalue().split("\r")[-1]
    assert last.split()[:2] == ["epoch", "1"] and "100%" in last and "300/300" in last
    assert "[5:00<0:00]" in last and "1,423" not in screen.getvalue()


def test_a_resumed_epoch_times_only_its_own_steps() -> None:
    # 100 of 300 done before the resume: 50 steps at 2 s each, 150 left at 0.5 step/s.
    clock = Clock()
    bar = Bar(Terminal(), "epoch 3", 300, done=100, columns=100, clock=clock)
    assert "100/300" in bar.text() and "[0:00<?]" in bar.text()
    for _ in range(50):
        clock.now += 2.0
        bar.update({"loss": 1.0})
    assert "150/300 [1:40<5:00]" in bar.text() and "2 s/step" in bar.text()
    bar.close()


@pytest.mark.parametrize("columns", [60, 80])
def test_a_trainers_bar_at_60_and_80_columns(tmp_path: Path, columns: int) -> None:
    screen = Terminal()
    progress = Progress(tmp_path, stream=screen, columns=columns)
    progress.start_epoch(1, total=7)
    for step in range(1, 8):
        progress.step(step, 1, VALUES)
        if step == 4:
            progress.line("epoch 1 step 4 val: loss 0.9000")
    progress.close()
    frames = [frame.rstrip(" ") for part in screen.getvalue().split("\n") for frame in
              part.split("\r") if frame.strip()]  # fmt: skip
    assert "epoch 1 step 4 val: loss 0.9000" in frames
    bars = [frame for frame in frames if frame.startswith("epoch 1 ") and "/7" in frame]
    assert "7/7" in bars[-1].split() and WHOLE["loss"] in bars[-1]
    for frame in bars:
        assert len(frame) <= columns - 1
        fields_shown(frame)


def test_a_stream_without_the_block_characters_gets_hashes() -> None:
    screen = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    bar = Bar(screen, "epoch 1", 4, done=2, columns=80)
    line = bar.text()
    bar.close()
    inner = line.split("|")[1]  # half full: half the cells are hashes
    assert len(inner) >= MIN_BAR and inner == "#" * (len(inner) // 2) + " " * (len(inner) // 2)


def test_other_messages_go_above_the_bar() -> None:
    # The library's log lines (the backend chosen) while a bar is drawn: a line of
    # their own above it, and the bar drawn again below; elsewhere a plain line.
    screen, other = Terminal(), Terminal()
    bar = Bar(screen, "epoch 1", 4, columns=60)
    write_above("rnnkit: backend fused for lstm", screen)
    write_above("a line elsewhere", other)
    bar.close()
    lines = [part.split("\r")[-1].rstrip() for part in screen.getvalue().split("\n")]
    assert lines[0] == "rnnkit: backend fused for lstm"
    assert lines[1].startswith("epoch 1   0% |") and lines[2] == ""
    assert other.getvalue() == "a line elsewhere\n"
    write_above("after the bar", screen)
    assert screen.getvalue().endswith("\nafter the bar\n") and bar not in Bar.active
