"""Training-step speed and peak memory of the minimal cells (the scan backend) at long T.

One training step (forward, mean(h²) over every output, backward; float32) at
B = 16, I = 32, H = 128 and T = 1,024, 4,096 and 16,384, for:

* ``torch.nn GRU``, ``torch.nn LSTM``: what a user would otherwise train;
* ``fused GRU``: rnnkit's hand-derived sequential BPTT for the GRU (``backend="fused"``);
* ``mingru``, ``minlstm``: the minimal cells, ``auto`` → ``scan``.

All candidates of one T run round-robin (interleaved repeats, the median kept), so
machine noise hits all of them alike; the ratios are against torch.nn's GRU and the
fused GRU of the same run. Peak memory is measured as ``speed.py`` does: one step in
a fresh process, peak resident set during the step minus the resident set before.

    python benchmarks/scan.py                        # print the table
    python benchmarks/scan.py --write BENCHMARKS.md  # also replace the table there
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from rnnkit import Recurrent, allocator
from rnnkit.bptt import compiled
from rnnkit.timing import time_interleaved, training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, publish, reset_peak, run_isolated, status_kib

BATCH, INPUTS, HIDDEN = 16, 32, 128
STEPS = (1024, 4096, 16384)
CANDIDATES = ("torch.nn GRU", "torch.nn LSTM", "fused GRU", "mingru", "minlstm")


def build(candidate: str, steps: int) -> tuple[nn.Module, torch.Tensor]:
    """The module of a candidate and its inputs ``(B, T, I)``, seeded."""
    torch.manual_seed(0)
    inputs = torch.randn(BATCH, steps, INPUTS)
    module: nn.Module
    if candidate == "torch.nn GRU":
        module = nn.GRU(INPUTS, HIDDEN, batch_first=True)
    elif candidate == "torch.nn LSTM":
        module = nn.LSTM(INPUTS, HIDDEN, batch_first=True)
    elif candidate == "fused GRU":
        module = Recurrent("gru", INPUTS, HIDDEN, backend="fused")
    else:
        module = Recurrent(candidate, INPUTS, HIDDEN)
        assert module.resolve_backend() == "scan"
    return module, inputs


def peak_step_memory(candidate: str, steps: int, threads: int) -> float:
    """MiB: peak RSS of one training step over the RSS before it (run in this process)."""
    torch.set_num_threads(threads)
    allocator.keep_freed_memory()  # as the parent process: RNNKIT_MALLOC is inherited
    module, inputs = build(candidate, steps)
    step = training_step(module, inputs)
    compiled.load()  # loading the compiled library is not part of the step
    gc.collect()
    reset_peak()
    before = status_kib("VmRSS")
    step()
    return (status_kib("VmHWM") - before) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="T values")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per T")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", action="store_true", help="skip the memory column")
    parser.add_argument("--allocator", choices=("keep", "system"), default="keep",
                        help="keep freed memory in the process, as the rnnkit commands do "
                        "(keep), or the C library's defaults (system)")  # fmt: skip
    parser.add_argument("--write", type=Path, help="replace the scan table in this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ[allocator.ENV] = args.allocator  # this process and the memory probes'
    allocator.keep_freed_memory()
    steps = [int(value) for value in args.steps.split(",")]
    lines = [
        f"Measured on {machine()}; float32, one training step (forward, mean(h²), "
        f"backward), B = {BATCH}, I = {INPUTS}, H = {HIDDEN}, median of {args.repeats} "
        "interleaved repeats after one warm-up. The fused GRU runs compiled loops; the "
        f"minimal cells run the scan backend (compiled). Allocator: {allocator.status()} "
        "(`rnnkit.allocator`).",
        "",
        "| T | candidate | median ms | × torch.nn GRU | × fused GRU | peak MiB |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for T in steps:
        candidates: dict[str, Callable[[], object]] = {}
        for name in CANDIDATES:
            module, inputs = build(name, T)
            candidates[name] = training_step(module, inputs)
        # torch.nn's GRU at T = 16k takes seconds a step: fewer rounds there.
        repeats = args.repeats if T <= 4096 else max(1, args.repeats // 2)
        timings = time_interleaved(candidates, repeats)
        del candidates
        gc.collect()
        gru, fused = timings["torch.nn GRU"].median, timings["fused GRU"].median
        for name in CANDIDATES:
            median = timings[name].median
            memory = "—"
            if not args.no_memory:
                call = f"__import__('scan').peak_step_memory({name!r}, {T}, {args.threads})"
                memory = f"{float(run_isolated(call)):.0f}"
            lines.append(
                f"| {T:,} | {name} | {median * 1e3:.1f} | {gru / median:.2f}× | "
                f"{fused / median:.2f}× | {memory} |"
            )
            print(lines[-1], flush=True)
    lines += ["", command_line("scan.py", argv)]
    text = "\n".join(lines)
    print(text)
    publish(args.write, "scan", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
