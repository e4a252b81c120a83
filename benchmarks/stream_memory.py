"""Peak memory of stream training as the stream grows: truncation keeps it flat.

A GRU (I = 32, H = 128, B = 16) with a linear head learns to predict its next input
on a synthetic stream of N steps, for N = 1k, 10k and 100k. Three ways to train:

* ``stream k=50``: :class:`rnnkit.StatefulStream`, consecutive batches of 50
  steps, state carried and detached at each boundary, one optimizer step each;
* ``TBPTT(50, 100)``: batches of 500 steps, each trained with
  :func:`rnnkit.truncated_bptt` (update every 50 steps, backpropagate through 100),
  the state carried across batches by the stream;
* ``full BPTT``: one backward pass through all N steps (1k and 10k only: at 100k
  it needs several GB).

Each run is a fresh process; the figure is its peak resident set size during
training minus the size just before (Linux VmHWM, reset via clear_refs). The data
are generated chunk by chunk, so they are not part of what grows.

    python benchmarks/stream_memory.py --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, publish, reset_peak, run_isolated, status_kib

BATCH, INPUT, HIDDEN, CHUNK = 16, 32, 128, 50


def run(mode: str, steps: int) -> tuple[float, float]:
    """(peak MiB over the start, seconds) for one way of training over ``steps`` steps."""
    import torch
    from torch import nn

    from rnnkit import Recurrent, StatefulStream, TBPTTConfig

    torch.set_num_threads(2)
    torch.manual_seed(0)
    rnn = Recurrent("gru", INPUT, HIDDEN)
    head = nn.Linear(HIDDEN, INPUT)
    params = [*rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01)
    generator = torch.Generator().manual_seed(1)

    def chunk(length: int) -> torch.Tensor:  # (B, length + 1, I): inputs and next-step targets
        return torch.randn(BATCH, length + 1, INPUT, generator=generator)

    def model(inputs: torch.Tensor, state: object = None) -> tuple[torch.Tensor, object]:
        outputs, state = rnn(inputs, state)
        return head(outputs), state

    gc.collect()
    reset_peak()
    # The same counter as the final read: VmRSS and VmHWM are summed from per-CPU
    # counters at different moments and can disagree by a few hundred KiB.
    before = status_kib("VmHWM")
    start = time.perf_counter()
    stream = StatefulStream()
    if mode == "stream":
        for _ in range(steps // CHUNK):
            data = chunk(CHUNK)
            outputs, _ = stream(model, data[:, :-1])
            nn.functional.mse_loss(outputs, data[:, 1:]).backward()
            optimizer.step()
            optimizer.zero_grad()
    elif mode == "tbptt":
        config = TBPTTConfig(50, 100)
        for _ in range(steps // 500):
            data = chunk(500)

            def loss(
                outputs: torch.Tensor, window: object, data: torch.Tensor = data
            ) -> torch.Tensor:
                targets = data[:, 1:][:, window.loss_start : window.stop]  # type: ignore[attr-defined]
                return nn.functional.mse_loss(outputs, targets)

            def update(window: object, value: torch.Tensor) -> None:
                optimizer.step()
                optimizer.zero_grad()

            stream.truncated(model, data[:, :-1], loss, config, update)
    else:
        data = chunk(steps)
        outputs, _ = model(data[:, :-1])
        nn.functional.mse_loss(outputs, data[:, 1:]).backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    return (status_kib("VmHWM") - before) / 1024, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="1000,10000,100000", help="stream lengths")
    parser.add_argument("--write", type=Path, help="replace the table in this markdown file")
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.steps.split(",")]
    rows = []
    for label, mode in (
        ("stream k=50", "stream"),
        ("TBPTT(50, 100)", "tbptt"),
        ("full BPTT", "full"),
    ):
        for steps in lengths:
            if mode == "full" and steps > 10_000:
                rows.append(f"| {label} | {steps:,} | not run (several GB) | |")
                continue
            out = run_isolated(
                f"*__import__('stream_memory').run({mode!r}, {steps}), sep=' '"
            ).split()
            peak, seconds = float(out[-2]), float(out[-1])
            row = f"| {label} | {steps:,} | {peak:.1f} | {seconds:.1f} |"
            print(row, flush=True)
            rows.append(row)
    table = "\n".join(
        [
            f"Measured {datetime.date.today().isoformat()}, GRU I{INPUT} H{HIDDEN} B{BATCH}, "
            "2 threads, one fresh process per row.",
            "",
            command_line("stream_memory.py", argv),
            "",
            "| training | stream steps | peak MiB over the start | seconds |",
            "|---|---:|---:|---:|",
            *rows,
        ]
    )
    publish(args.write, "stream", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
