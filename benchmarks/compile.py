"""Training-step speed of the fused LSTM and GRU, eager against ``torch.compile``.

One training step (forward, mean(h²) over every output, backward; float32) of a
``Recurrent(cell, I, H, backend="fused")`` at B = 32, T = 100, I = 64, H = 256,
run eagerly and as ``torch.compile(module, fullgraph=True)`` (inductor by default).
The fused backend's layers are ``torch.library`` custom ops (``rnnkit.bptt.fused``),
so the compiled graph holds the same hand-derived loops; what compiling can win or
lose is the work around them (transposes, concatenation, the ops' dispatch).

Eager and compiled steps of one cell run round-robin (interleaved repeats after
one warm-up call each, which is where the compiled module compiles; the median is
kept), so machine noise hits both alike. The first-call column is the warm-up's
time: for the compiled module, mostly compiling (the first cell's also pays
inductor's start-up in the process).

    python benchmarks/compile.py                        # print the table
    python benchmarks/compile.py --write BENCHMARKS.md  # also replace the table there
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from rnnkit import Recurrent
from rnnkit.bptt import compiled
from rnnkit.timing import time_interleaved, training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, publish

BATCH, STEPS, INPUTS, HIDDEN = 32, 100, 64, 256
CELLS = ("lstm", "gru")


def build(cell: str) -> tuple[nn.Module, torch.Tensor]:
    """The fused stack of a cell and its inputs ``(B, T, I)``, seeded."""
    torch.manual_seed(0)
    return Recurrent(cell, INPUTS, HIDDEN, backend="fused"), torch.randn(BATCH, STEPS, INPUTS)


def timed_once(step: Callable[[], None]) -> tuple[Callable[[], None], float]:
    """``step`` after its first call, and that call's seconds (the compile, when compiled)."""
    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default=",".join(CELLS), help="cells to time")
    parser.add_argument("--repeats", type=int, default=20, help="interleaved rounds per cell")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--compiler", default="inductor", help="torch.compile's backend (inductor, aot_eager)"
    )
    parser.add_argument("--write", type=Path, help="replace the compile table in this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    compiled.load()  # building the loops is part of neither candidate
    lines = [
        f"Measured on {machine()}; float32, one training step (forward, mean(h²), "
        f'backward) of `Recurrent(cell, {INPUTS}, {HIDDEN}, backend="fused")`, '
        f"B = {BATCH}, T = {STEPS}, eager against `torch.compile(fullgraph=True)` "
        f"({args.compiler}), median of {args.repeats} interleaved repeats after one "
        "warm-up call each (the first-call column; for the compiled module, mostly "
        f"compiling). Loops: {compiled.status()}.",
        "",
        "| cell | mode | median ms | × eager | first call s |",
        "|---|---|---:|---:|---:|",
    ]
    for cell in args.cells.split(","):
        module, inputs = build(cell)
        optimized = torch.compile(module, fullgraph=True, backend=args.compiler)
        eager, eager_first = timed_once(training_step(module, inputs))
        compiled_step, compile_first = timed_once(training_step(optimized, inputs))
        timings = time_interleaved({"eager": eager, "compiled": compiled_step}, args.repeats, 0)
        base = timings["eager"].median
        for mode, first in (("eager", eager_first), ("compiled", compile_first)):
            median = timings[mode].median
            lines.append(
                f"| {cell} | {mode} | {median * 1e3:.1f} | {base / median:.2f}× | {first:.1f} |"
            )
            print(lines[-1], flush=True)
    lines += ["", command_line("compile.py", argv)]
    text = "\n".join(lines)
    print(text)
    publish(args.write, "compile", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
