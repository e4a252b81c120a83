"""What a training run shows and records: a progress bar or plain lines, metrics.csv.

* On a terminal: a bar per epoch (steps taken of the steps this run takes in the
  epoch, ETA, loss, tokens/s, learning rate), fitted to the terminal's width by
  :func:`bar_line`, and one line per evaluation above it.
* Elsewhere (a log file, CI): no bar, one plain line per epoch and per evaluation,
  so logs stay readable.
* Always: ``metrics.csv`` in the run folder, one row per value in long form
  (``step,epoch,split,metric,value,seconds``; epochs count from 1 as on screen),
  appended as training goes. A
  resumed run first drops the rows past the step it resumes from, so the file
  reads as if the run had never stopped.
* Optionally TensorBoard (``pip install 'rnnkit[tensorboard]'``).

Only rank 0 of a distributed run creates any of this.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TextIO

ProgressMode = Literal["auto", "bar", "lines", "off"]

LINE_SECONDS = 20.0  # how often "lines" mode reports training progress

COLUMNS = ("step", "epoch", "split", "metric", "value", "seconds")


class MetricsCSV:
    """``metrics.csv``: appended row by row, flushed at once (a killed run keeps it)."""

    def __init__(
        self, path: Path, *, resume_step: int | None = None, resume_rows: int | None = None
    ) -> None:
        self.path = path
        #: Data rows in the file (the header not counted); a checkpoint records it.
        self.rows = 0
        if resume_step is not None and path.exists():
            self.rows = self._truncate(resume_step, resume_rows)
        new = not path.exists() or path.stat().st_size == 0
        self._file = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(COLUMNS)
            self._file.flush()

    def _truncate(self, step: int, rows: int | None) -> int:
        """Cut the file back to what it held when the checkpoint was saved: its first
        ``rows`` rows (recorded in the checkpoint), else the rows up to ``step``. The rows
        logged at ``step`` after the save (an evaluation) come again on resume."""
        with self.path.open(newline="", encoding="utf-8") as handle:
            try:
                table = list(csv.reader(handle))
            except (csv.Error, UnicodeDecodeError) as error:
                raise ValueError(f"{self.path}: not an rnnkit metrics file ({error})") from None
        if not table or tuple(table[0]) != COLUMNS:
            raise ValueError(f"{self.path}: not an rnnkit metrics file (header {table[:1]})")
        try:
            body = [row for row in table[1:] if row and int(row[0]) <= step]
        except ValueError:
            raise ValueError(
                f"{self.path}: not an rnnkit metrics file (a step is not an int)"
            ) from None
        kept = [table[0]] + (table[1 : rows + 1] if rows is not None else body)
        with self.path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(kept)
        return len(kept) - 1

    def write(
        self, step: int, epoch: int, split: str, values: Mapping[str, float], seconds: float
    ) -> None:
        for name, value in values.items():
            self._writer.writerow([step, epoch, split, name, f"{value:.8g}", f"{seconds:.3f}"])
        self.rows += len(values)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.csv`` with step/epoch as int and value/seconds as float."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            {
                "step": int(row["step"]),
                "epoch": int(row["epoch"]),
                "split": row["split"],
                "metric": row["metric"],
                "value": float(row["value"]),
                "seconds": float(row["seconds"]),
            }
            for row in csv.DictReader(handle)
        ]


class Progress:
    """The bar or the lines, metrics.csv and TensorBoard of one process."""

    def __init__(
        self,
        run_dir: Path | None,
        *,
        mode: ProgressMode = "auto",
        enabled: bool = True,
        tensorboard: bool = False,
        resume_step: int | None = None,
        resume_rows: int | None = None,
        stream: TextIO | None = None,
        columns: int | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.columns = columns  # the bar's width; None: the terminal's, read at each redraw
        self.enabled = enabled
        if mode == "auto":
            mode = "bar" if _is_terminal(self.stream) else "lines"
        self.mode: ProgressMode = mode if enabled else "off"
        self.start = time.perf_counter()
        self.board: Any = None
        if enabled and tensorboard and run_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ValueError(
                    "tensorboard: TensorBoard logging needs the tensorboard package "
                    "(pip install 'rnnkit[tensorboard]')"
                ) from error
            self.board = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        # Opened last: nothing above may fail and leave the file open.
        self.metrics = (
            MetricsCSV(run_dir / "metrics.csv", resume_step=resume_step, resume_rows=resume_rows)
            if enabled and run_dir is not None
            else None
        )
        self._bar: Bar | None = None
        self._epoch_steps = (0, 0)  # steps of the epoch taken, steps this run takes in it
        self._next_line = LINE_SECONDS / 2  # the first line comes early

    @property
    def rows(self) -> int | None:
        """The rows metrics.csv holds now (None when this process keeps none)."""
        return None if self.metrics is None else self.metrics.rows

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def start_epoch(self, epoch: int, total: int, done: int = 0) -> None:
        """A new epoch whose bar ends at step ``total`` of the epoch, ``done`` already taken.

        ``total`` counts the optimizer steps this run will take in the epoch, not the
        epoch's own length: ``min(steps_per_epoch, done + steps left before max_steps)``,
        so that the bar ends full and its ETA is that of the steps that will run.
        """
        self._epoch_steps = (done, total)
        if self.mode != "bar":
            return
        self.close_bar()
        self._bar = Bar(self.stream, f"epoch {epoch}", total, done, columns=self.columns)

    def step(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        """One optimizer step's training values (loss, tokens/s, lr, …)."""
        if not self.enabled:
            return
        now = self.seconds
        if self.metrics is not None:
            self.metrics.write(step, epoch, "train", values, now)
        if self.board is not None:
            for name, value in values.items():
                self.board.add_scalar(f"train/{name}", value, step)
        if self._bar is not None:
            self._bar.update(values)
        elif self.mode == "lines":
            # Without a terminal (a log file, CI), a line every LINE_SECONDS instead of
            # a bar, as Keras' verbose=2 and Lightning's log lines do.
            done, total = self._epoch_steps
            self._epoch_steps = (done + 1, total)
            if now >= self._next_line:
                self._next_line = now + LINE_SECONDS
                shown = " ".join(f"{name} {value}" for name, value in _short(values).items())
                self.line(f"epoch {epoch} step {step} ({done + 1}/{total}): {shown} "
                          f"[{now:.0f} s]")  # fmt: skip

    def record(self, step: int, epoch: int, split: str, values: Mapping[str, float]) -> None:
        """Values of an evaluation or an epoch summary: recorded and shown as a line."""
        if not self.enabled:
            return
        if self.metrics is not None:
            self.metrics.write(step, epoch, split, values, self.seconds)
        if self.board is not None:
            for name, value in values.items():
                self.board.add_scalar(f"{split}/{name}", value, step)
        text = f"epoch {epoch} step {step} {split}: " + " ".join(
            f"{name} {_format(value)}" for name, value in values.items()
        )
        self.line(text)

    def line(self, text: str) -> None:
        """A message: above the bar on a terminal, a plain line otherwise."""
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, file=self.stream, flush=True)

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self.close_bar()
        if self.metrics is not None:
            self.metrics.close()
        if self.board is not None:
            self.board.close()


# ----------------------------------------------------------------------------- the bar

MIN_BAR, MAX_BAR = 10, 40  # the bar's inner width: narrower says nothing, wider says no more
REDRAW_SECONDS = 0.1  # at most ten redraws a second, as tqdm's mininterval
# The training values in the order they give way when the line is too narrow (those
# not named here come last, in their own order).
VALUE_PRIORITY = ("loss", "tokens_per_s", "lr", "grad_norm")


def bar_line(
    width: int,
    label: str,
    n: int,
    total: int,
    elapsed: float,
    rate: float | None,
    values: Mapping[str, float],
    *,
    fill: str = "█",
) -> str:
    """One line of the bar, at most ``width − 1`` columns (the last column would wrap).

    Shown in this order: ``epoch 3  45% |████▌     | 450/1000 [1:23<1:40]
    loss=1.2346 tokens_per_s=5,678 lr=0.0010 grad_norm=0.5312 … 5.4 step/s``.
    Where that does not fit, whole fields give way, least useful first: the other
    values, the rate, ``grad_norm``, ``lr``, ``tokens_per_s``, the percentage, the
    bar, ``loss``, the time, the label; the count ``n/total`` always stays. A field
    is shown whole or not at all, so no number is ever cut. The bar takes the room
    left, between MIN_BAR and MAX_BAR characters.

    Args:
        width: the terminal's columns.
        label: ``epoch 3``.
        n: steps taken of ``total`` (past ``total`` the bar stays full).
        elapsed: seconds since the bar started.
        rate: steps per second over the steps this bar has seen (None before the first).
        values: the latest training values.
        fill: the bar's full-cell character (``#`` where the stream cannot encode █).
    """
    frac = min(max(n / total, 0.0), 1.0) if total > 0 else 1.0
    eta = "?" if rate is None or rate <= 0 else _clock(max(total - n, 0) / rate)
    shown = _short(values)
    first = [name for name in VALUE_PRIORITY if name in shown]
    rest = [name for name in shown if name not in first]
    fields = {
        "count": f"{n:,}/{total:,}",
        "label": label,
        "time": f"[{_clock(elapsed)}<{eta}]",
        "bar": "|" + " " * MIN_BAR + "|",  # its least width; drawn once the room is known
        "percent": f"{frac:4.0%}",
        **{f"value:{name}": f"{name}={text}" for name, text in shown.items()},
    }
    if rate is not None:
        fields["rate"] = f"{rate:.3g} step/s" if rate >= 1 else f"{1 / rate:.3g} s/step"
    head = ["value:loss"] if "loss" in shown else []
    priority = ["count", "label", "time", *head, "bar", "percent"]
    priority += [f"value:{name}" for name in first if name != "loss"]
    priority += ["rate"] if rate is not None else []
    priority += [f"value:{name}" for name in rest]
    room = width - 1
    kept: set[str] = set()
    used = -1  # the first field has no space before it
    for key in priority:
        cost = len(fields[key]) + 1
        if key != "count" and used + cost > room:
            break  # strictly by priority: nothing after a field that did not fit
        kept.add(key)
        used += cost
    if "bar" in kept:
        inner = min(MAX_BAR, MIN_BAR + room - used)
        cells = frac * inner
        full = int(cells)
        part = " ▏▎▍▌▋▊▉"[int((cells - full) * 8)] if fill == "█" and full < inner else ""
        fields["bar"] = "|" + (fill * full + part).ljust(inner) + "|"
    display = ["label", "percent", "bar", "count", "time"]
    display += [f"value:{name}" for name in (*first, *rest)] + ["rate"]
    return " ".join(fields[key] for key in display if key in kept)


class Bar:
    """A bar redrawn in place (``\\r``) on a terminal, with messages printed above it.

    The count and ETA are over the ``total`` steps the bar was given; the rate is
    measured over the steps this bar has seen (a resumed epoch's ``done`` steps are
    not timed). The width is the terminal's, read at each redraw, unless ``columns``
    is given.
    """

    # The bars on screen now, so that others' messages (the library's log lines) go
    # above them rather than into them: see :func:`write_above`.
    active: ClassVar[list[Bar]] = []

    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: int,
        done: int = 0,
        *,
        columns: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.stream, self.label, self.total = stream, label, total
        self.n = self._initial = done
        self.columns = columns
        self.values: Mapping[str, float] = {}
        self._clock = clock
        self._started = clock()
        self._drawn_at = -math.inf
        self._shown = 0  # the length of the line on screen, to blank a longer one
        self._fill = "█" if _can_encode(stream, "█▏▎▍▌▋▊▉") else "#"
        self.draw()
        Bar.active.append(self)

    def text(self) -> str:
        """The line as it would be drawn now."""
        elapsed = self._clock() - self._started
        timed = self.n - self._initial
        rate = timed / elapsed if timed > 0 and elapsed > 0 else None
        width = self.columns if self.columns is not None else _terminal_columns(self.stream)
        return bar_line(width, self.label, self.n, self.total, elapsed, rate, self.values,
                        fill=self._fill)  # fmt: skip

    def update(self, values: Mapping[str, float]) -> None:
        """One step taken; redrawn at most every REDRAW_SECONDS, and at the last step."""
        self.n += 1
        self.values = values
        if self.n >= self.total or self._clock() - self._drawn_at >= REDRAW_SECONDS:
            self.draw()

    def draw(self) -> None:
        line = self.text()
        self.stream.write("\r" + line + " " * max(self._shown - len(line), 0))
        self.stream.flush()
        self._shown = len(line)
        self._drawn_at = self._clock()

    def write(self, text: str) -> None:
        """A message on its own line above the bar."""
        self.stream.write("\r" + " " * self._shown + "\r" + text + "\n")
        self._shown = 0
        self.draw()

    def close(self) -> None:
        """The bar's last state stays on screen, and the cursor moves below it."""
        if self in Bar.active:
            Bar.active.remove(self)
        self.draw()
        self.stream.write("\n")
        self.stream.flush()


def write_above(text: str, stream: TextIO) -> None:
    """``text`` as a line of its own on ``stream``: above the bar drawn there, if any."""
    bar = next((bar for bar in Bar.active if bar.stream is stream), None)
    if bar is not None:
        bar.write(text)
    else:
        print(text, file=stream, flush=True)


def _clock(seconds: float) -> str:
    """``1:05`` or ``2:03:04``, as tqdm writes times."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _terminal_columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return shutil.get_terminal_size().columns  # $COLUMNS, else 80


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _format(value: float) -> str:
    if value != value or abs(value) >= 1e7 or (0 < abs(value) < 1e-3):
        return f"{value:.3g}"
    if abs(value) >= 1000:  # a rate (tokens/s) or a count: whole numbers read best
        return f"{value:,.0f}"
    if float(value).is_integer():  # counters: clipped 0, skipped 1
        return f"{value:.0f}"
    return f"{value:.4f}"


def _short(values: Mapping[str, float]) -> dict[str, str]:
    # A rate reads best whole (675 tokens/s, not 675.0331).
    return {name: f"{value:,.0f}" if name.endswith("_per_s") and math.isfinite(value)
            else _format(value) for name, value in values.items()}  # fmt: skip
