"""What a training run shows and records: a progress bar or plain lines, metrics.csv.

* On a terminal: a tqdm bar per epoch (step, loss, tokens/s, learning rate, ETA),
  and one line per evaluation above it.
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
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TextIO

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
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
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
        self._bar: Any = None
        self._epoch_steps = (0, 0)  # steps of the epoch taken, steps in it
        self._next_line = LINE_SECONDS / 2  # the first line comes early

    @property
    def rows(self) -> int | None:
        """The rows metrics.csv holds now (None when this process keeps none)."""
        return None if self.metrics is None else self.metrics.rows

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def start_epoch(self, epoch: int, total: int, done: int = 0) -> None:
        """A new epoch of ``total`` optimizer steps, ``done`` of them already taken."""
        self._epoch_steps = (done, total)
        if self.mode != "bar":
            return
        from tqdm import tqdm  # type: ignore[import-untyped]

        self.close_bar()
        self._bar = tqdm(
            total=total,
            initial=done,
            desc=f"epoch {epoch}",
            unit="step",
            file=self.stream,
            dynamic_ncols=True,
            leave=True,
        )

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
            self._bar.set_postfix(_short(values), refresh=False)
            self._bar.update(1)
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
            self._bar.write(text, file=self.stream)
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
