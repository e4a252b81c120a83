"""Training-step speed and peak memory of every rnnkit backend against torch.nn.

A training step is forward + backward of a loss over all outputs (float32). For
each configuration and cell, torch.nn and each rnnkit backend run round-robin
(interleaved repeats), so machine noise hits all of them alike; the table reports
min and median milliseconds and the speed ratio against torch.nn's median
(> 1 is faster than torch.nn).

Peak memory (``--memory``): each candidate runs one training step in a fresh
process; the figure is the peak resident set size during that step minus the
resident size just before it (Linux ``/proc/self/status`` VmHWM, reset through
``/proc/self/clear_refs``), so it counts everything the step allocates: saved
activations, gradients, workspace.

    python benchmarks/speed.py                      # print the table
    python benchmarks/speed.py --write BENCHMARKS.md  # also replace the table there
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rnnkit import Recurrent
from rnnkit.bptt import compiled
from rnnkit.timing import time_interleaved, training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, publish, reset_peak, run_isolated, status_kib


@dataclass(frozen=True)
class Problem:
    """One benchmark configuration: batch B, steps T, input size I, hidden size H."""

    label: str
    batch: int
    steps: int
    input_size: int
    hidden_size: int

    def __str__(self) -> str:
        return f"({self.label}) B{self.batch} T{self.steps} I{self.input_size} H{self.hidden_size}"


PROBLEMS = {
    "a": Problem("a", 32, 100, 64, 256),
    "b": Problem("b", 64, 100, 128, 512),
    "c": Problem("c", 16, 1000, 32, 128),
}
TORCH_TYPES: dict[str, Callable[..., nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
BACKENDS = ("auto", "fused", "native", "unrolled")


def build(problem: Problem, cell: str, candidate: str) -> tuple[nn.Module, torch.Tensor]:
    """The module for a candidate (``torch.nn`` or a backend) and the inputs, seeded."""
    torch.manual_seed(0)
    reference = TORCH_TYPES[cell](problem.input_size, problem.hidden_size, batch_first=True)
    inputs = torch.randn(problem.batch, problem.steps, problem.input_size)
    if candidate == "torch.nn":
        return reference, inputs
    return Recurrent.from_torch(reference, backend=candidate), inputs


def measure(
    problem: Problem, cell: str, repeats: int, backends: tuple[str, ...] = BACKENDS
) -> list[tuple[str, float, float, float]]:
    """(candidate, min ms, median ms, speed vs torch.nn) for torch.nn and each backend."""
    candidates: dict[str, Callable[[], object]] = {}
    labels = {}
    for name in ("torch.nn", *backends):
        module, inputs = build(problem, cell, name)
        candidates[name] = training_step(module, inputs)
        labels[name] = label(name, module, inputs)
    timings = time_interleaved(candidates, repeats)
    base = timings["torch.nn"].median
    return [
        (labels[name], t.min * 1e3, t.median * 1e3, base / t.median) for name, t in timings.items()
    ]


def label(name: str, module: nn.Module, inputs: torch.Tensor) -> str:
    """The row's name; for ``auto``, with the backend it chose for these inputs.

    Asking ``resolve_backend`` with the inputs runs the tuner for the call's key now
    (or reads the machine's table), so the timed calls run what a user's would.
    """
    if name != "auto" or not isinstance(module, Recurrent):
        return name
    return f"auto → {module.resolve_backend(inputs=inputs)}"


def measure_inference(
    problem: Problem, cell: str, repeats: int, backends: tuple[str, ...] = BACKENDS[:3]
) -> list[tuple[str, float, float]]:
    """(candidate, median ms, speed vs torch.nn) of a forward pass under ``torch.no_grad``."""
    candidates: dict[str, Callable[[], object]] = {}
    labels = {}
    for name in ("torch.nn", *backends):
        module, inputs = build(problem, cell, name)
        with torch.no_grad():
            labels[name] = label(name, module, inputs)

        def forward(module: nn.Module = module, inputs: torch.Tensor = inputs) -> None:
            with torch.no_grad():
                module(inputs)

        candidates[name] = forward
    timings = time_interleaved(candidates, repeats)
    base = timings["torch.nn"].median
    return [(labels[name], t.median * 1e3, base / t.median) for name, t in timings.items()]


def peak_step_memory(problem_key: str, cell: str, candidate: str, threads: int) -> float:
    """MiB: peak RSS of one training step over the RSS before it (run in this process)."""
    torch.set_num_threads(threads)
    module, inputs = build(PROBLEMS[problem_key], cell, candidate)
    step = training_step(module, inputs)
    compiled.load()  # loading the compiled loops is not part of the step
    label(candidate, module, inputs)  # nor is auto's measuring
    gc.collect()
    reset_peak()
    before = status_kib("VmRSS")
    step()
    return (status_kib("VmHWM") - before) / 1024


def measure_memory(
    problem: Problem, cell: str, threads: int, backends: tuple[str, ...] = BACKENDS
) -> dict[str, float]:
    """Peak step memory (MiB) of every candidate, each in a fresh process."""
    result = {}
    for name in ("torch.nn", *backends):
        call = f"__import__('speed').peak_step_memory({problem.label!r}, {cell!r}, {name!r}, {threads})"
        result[name] = float(run_isolated(call))
    return result


def tuning_state() -> str:
    """How ``auto`` chose in this run: measured, or the static rule."""
    from rnnkit import tuning

    if not tuning.is_enabled():
        return "tuning off, the static rule"
    return "measured at the row's first call, or read from this machine's table"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="a,b,c", help="comma-separated of a, b, c (a,b,c)")
    parser.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cells")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (7)")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"comma-separated rnnkit backends timed against torch.nn ({','.join(BACKENDS)})",
    )
    parser.add_argument("--no-training", action="store_true", help="skip the training-step table")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (2)")
    parser.add_argument("--write", type=Path, help="replace the speed table in this markdown file")
    parser.add_argument(
        "--memory", action="store_true", help="also measure peak step memory (Linux)"
    )
    parser.add_argument(
        "--inference", action="store_true", help="also time forward passes under no_grad"
    )
    args = parser.parse_args(argv)
    backends = tuple(args.backends.split(","))
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"--backends: unknown {unknown}; expected some of {list(BACKENDS)}")
    torch.set_num_threads(args.threads)

    lines = [
        f"Measured on {machine()}; float32, median of {args.repeats} interleaved "
        f"repeats after one warm-up. `auto → X` rows name the backend `auto` measured "
        f"and chose for that row's key on this machine (rnnkit.tuning: {tuning_state()}); "
        f"the fused backend runs {compiled.status()}.",
        "",
        command_line("speed.py", argv),
        "",
        "| config | cell | backend | min ms | median ms | speed vs torch.nn |"
        + (" peak MiB | memory vs torch.nn |" if args.memory else ""),
        "|---|---|---|---:|---:|---:|" + ("---:|---:|" if args.memory else ""),
    ]
    for key in [] if args.no_training else args.configs.split(","):
        problem = PROBLEMS[key]
        for cell in args.cells.split(","):
            measured = tuple(  # auto's rows take the peak of the backend it chose
                dict.fromkeys(
                    [b for b in backends if b != "auto"]
                    + (["fused", "native", "unrolled"] if "auto" in backends else [])
                )
            )
            memory = measure_memory(problem, cell, args.threads, measured) if args.memory else {}
            for name, low, median, ratio in measure(problem, cell, args.repeats, backends):
                row = f"| {problem} | {cell} | {name} | {low:.1f} | {median:.1f} | {ratio:.2f}× |"
                if args.memory:
                    # `auto → X` runs X's code: its peak is X's (measuring auto in
                    # its own process would count the tuner's left-over pools instead).
                    peak = memory[name.split(" → ")[-1]]
                    row += f" {peak:.1f} | {peak / memory['torch.nn']:.2f}× |"
                print(row, flush=True)
                lines.append(row)
    if args.inference:
        lines += [
            "",
            "Inference (forward only, `torch.no_grad()`), median ms:",
            "",
            "| config | cell | backend | median ms | speed vs torch.nn |",
            "|---|---|---|---:|---:|",
        ]
        for key in args.configs.split(","):
            for cell in args.cells.split(","):
                timed = tuple(b for b in backends if b != "unrolled")
                for name, median, ratio in measure_inference(
                    PROBLEMS[key], cell, args.repeats, timed
                ):
                    row = f"| {PROBLEMS[key]} | {cell} | {name} | {median:.1f} | {ratio:.2f}× |"
                    print(row, flush=True)
                    lines.append(row)
    table = "\n".join(lines)
    publish(args.write, "speed", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
