"""``rnnkit.nn`` against ``torch.nn``: the same modules, one import changed.

For each cell and configuration, ``torch.nn.RNN/LSTM/GRU`` and ``rnnkit.nn``'s class
of the same name (seq-first, the default of both, the same weights; rnnkit's on
``backend="auto"``) run round-robin: a training step (forward, mean(h²) over every
output, backward) and a forward pass under ``torch.no_grad``. The cells
(``RNNCell``, ``LSTMCell``, ``GRUCell``) step 100 times in a Python loop, as a
decoder or a hand-written loop does, with and without autograd, at B = 1 and 32.
Ratios are torch.nn's median over rnnkit.nn's (> 1: rnnkit.nn is faster), from
interleaved repeats of the same run.

    python benchmarks/drop_in.py                        # print the table
    python benchmarks/drop_in.py --write BENCHMARKS.md  # also replace the table there
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import rnnkit.nn
from rnnkit.timing import time_interleaved, training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, publish

# (label, B, T, I, H): the configurations of speed.py.
PROBLEMS = {"a": (32, 100, 64, 256), "b": (64, 100, 128, 512), "c": (16, 1000, 32, 128)}
KINDS = ("RNN", "LSTM", "GRU")
CELL_STEPS = 100


def pair(kind: str, size: tuple[int, int], cell: bool = False) -> tuple[nn.Module, nn.Module]:
    """(torch.nn's module, rnnkit.nn's) of one kind with the same weights."""
    torch.manual_seed(0)
    name = kind + "Cell" if cell else kind
    reference = getattr(nn, name)(*size)
    ours = getattr(rnnkit.nn, name)(*size)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def stack_rows(kind: str, key: str, repeats: int) -> list[str]:
    batch, steps, inputs, hidden = PROBLEMS[key]
    reference, ours = pair(kind, (inputs, hidden))
    x = torch.randn(steps, batch, inputs)  # (T, B, I)

    def forward(module: nn.Module) -> Callable[[], None]:
        def call() -> None:
            with torch.no_grad():
                module(x)

        return call

    train = time_interleaved(
        {"torch.nn": training_step(reference, x), "rnnkit.nn": training_step(ours, x)}, repeats
    )
    infer = time_interleaved({"torch.nn": forward(reference), "rnnkit.nn": forward(ours)}, repeats)
    shape = f"({key}) B{batch} T{steps} I{inputs} H{hidden}"
    return [
        f"| {kind} | {shape} | {mode} | {t['torch.nn'].median * 1e3:.1f} | "
        f"{t['rnnkit.nn'].median * 1e3:.1f} | {t['torch.nn'].median / t['rnnkit.nn'].median:.2f}× |"
        for mode, t in (("training step", train), ("no-grad forward", infer))
    ]


def cell_rows(kind: str, batch: int, repeats: int) -> list[str]:
    reference, ours = pair(kind, (64, 256), cell=True)
    x = torch.randn(batch, 64)

    def loop(module: nn.Module, grad: bool) -> Callable[[], None]:
        def call() -> None:
            with torch.set_grad_enabled(grad):
                state = None
                for _ in range(CELL_STEPS):
                    state = module(x, state)
                if grad:
                    top = state[0] if isinstance(state, tuple) else state
                    assert top is not None
                    top.square().mean().backward()

        return call

    rows = []
    for grad in (True, False):
        t = time_interleaved(
            {"torch.nn": loop(reference, grad), "rnnkit.nn": loop(ours, grad)}, repeats
        )
        mode = "steps + backward" if grad else "no-grad steps"
        per = 1e6 / CELL_STEPS
        rows.append(
            f"| {kind}Cell | B{batch} I64 H256, {CELL_STEPS} steps | {mode} | "
            f"{t['torch.nn'].median * per:.0f} µs/step | {t['rnnkit.nn'].median * per:.0f} µs/step | "
            f"{t['torch.nn'].median / t['rnnkit.nn'].median:.2f}× |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="a,b,c", help="comma-separated: a, b, c")
    parser.add_argument("--kinds", default=",".join(KINDS), help="RNN, LSTM, GRU")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-cells", action="store_true", help="skip the cell rows")
    parser.add_argument("--write", type=Path, help="replace the drop-in table in this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kinds = [k.upper() for k in args.kinds.split(",")]
    lines = [
        f"Measured on {machine()}; float32, {args.threads} threads, median of "
        f"{args.repeats} interleaved repeats after one warm-up; rnnkit.nn on "
        '`backend="auto"`, seq-first inputs (T, B, I).',
        "",
        "| module | shape | what | torch.nn | rnnkit.nn | × torch.nn |",
        "|---|---|---|---:|---:|---:|",
    ]
    for kind in kinds:
        for key in args.configs.split(","):
            for row in stack_rows(kind, key, args.repeats):
                lines.append(row)
                print(row, flush=True)
    if not args.no_cells:
        for kind in kinds:
            for batch in (1, 32):
                for row in cell_rows(kind, batch, args.repeats):
                    lines.append(row)
                    print(row, flush=True)
    lines += ["", command_line("drop_in.py", argv)]
    text = "\n".join(lines)
    print(text)
    publish(args.write, "dropin", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
