"""A decoder's cell steps with each weight's transpose kept (``projection.transposed``)
against copying it at every backward step, as ``project_back`` did before.

Ten rnnkit ``LSTMCell`` steps at B = 128, I = 320, H = 256 (seq2seq's decoder with
input feeding), forward and backward, with an in-place update of every weight between
rounds (an optimizer step moves their versions, so each round's first use copies
again). Interleaved after three warm-up rounds each; medians of 15.

    python benchmarks/transposes.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from rnnkit import projection
from rnnkit.cells.lstm import LSTMCell

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

B, I, H, T = 128, 320, 256, 10


def copied(weight: Tensor) -> Tensor:
    return weight.detach().t().contiguous()


def main() -> None:
    print(machine())
    torch.manual_seed(0)
    cell = LSTMCell(I, H)
    xs = [torch.randn(B, I) for _ in range(T)]

    def round_() -> None:
        state = cell.initial_state(B)
        outputs = []
        for x in xs:
            y, state = cell(x, state)
            outputs.append(y)
        torch.stack(outputs).pow(2).mean().backward()
        cell.zero_grad(set_to_none=True)
        with torch.no_grad():
            for p in cell.parameters():
                p.add_(0.0)  # an optimizer step: the versions move

    ways: dict[str, Callable[[Tensor], Tensor]] = {"kept": projection.transposed, "copied": copied}
    times: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for _ in range(3):
            for way in ways.values():
                projection.transposed = way
                round_()
        for _ in range(15):
            for name, way in ways.items():
                projection.transposed = way
                started = time.perf_counter()
                round_()
                times[name].append(time.perf_counter() - started)
    finally:
        projection.transposed = ways["kept"]
    for name, values in times.items():
        print(f"{name}: {1000 * statistics.median(values):.2f} ms for {T} steps")
    print(
        f"kept vs copied: {statistics.median(times['copied']) / statistics.median(times['kept']):.2f}×"
    )


if __name__ == "__main__":
    main()
