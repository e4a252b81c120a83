"""Where a training step's time goes: matrix multiplies, elementwise work, the rest.

For each cell and configuration, one training step of torch.nn and of the fused
backend runs under ``torch.profiler``; ATen operators' self CPU time is grouped
into matrix multiplies (``mm``, ``addmm``, ``addmm_``, ``bmm``, oneDNN's RNN
kernels count here too since they are matmul-bound), elementwise and other
operators (with the self time of rnnkit's compiled loops, ``rnnkit_loops::*``,
which is their fused elementwise passes and, where they run on MKL's packed GEMM
rather than oneDNN or ATen, their per-step matrix multiplies too: those calls are
not operators the profiler sees), and the remainder of the wall time
(Python, autograd's engine, dispatch between operators). ``fused-py`` is the fused
backend on its Python loops (``rnnkit.bptt.compiled.enabled(False)``). The
profiler adds overhead to every operator call, so absolute times are inflated;
the split is what to read. The calls per step are the number of operator calls
(ATen and ``rnnkit_loops``) divided by T.

    python benchmarks/profile_step.py --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from rnnkit.bptt import compiled
from rnnkit.timing import training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, publish
from speed import PROBLEMS, build

MATMUL = {
    "aten::mm",
    "aten::addmm",
    "aten::addmm_",
    "aten::bmm",
    "aten::mkldnn_rnn_layer",
    "mkldnn::_linear_pointwise",  # the compiled loops' per-step products on oneDNN
}
MATMUL_PREFIXES = ("aten::mkldnn_rnn", "aten::_mkldnn")
STRUCTURAL = {
    "aten::select",
    "aten::slice",
    "aten::unbind",
    "aten::as_strided",
    "aten::view",
    "aten::unsqueeze",
    "aten::transpose",
    "aten::t",
    "aten::expand",
    "aten::resolve_conj",
    "aten::chunk",
    "aten::split",
    "aten::detach",
    "aten::empty",
    "aten::empty_like",
    "aten::reshape",
    "aten::_reshape_alias",
}


def split(problem_key: str, cell: str, candidate: str) -> dict[str, float]:
    backend = "fused" if candidate == "fused-py" else candidate
    module, inputs = build(PROBLEMS[problem_key], cell, backend)
    compiled_step = training_step(module, inputs)

    def step() -> None:
        with compiled.enabled(candidate != "fused-py"):
            compiled_step()

    step()  # warm-up
    plain = []
    for _ in range(3):
        start = time.perf_counter()
        step()
        plain.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]):
        step()  # the profiler's own start-up cost lands here, not in the measured run
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    wall = (time.perf_counter() - start) * 1e3
    matmul = elementwise = 0.0
    calls = 0
    for event in prof.key_averages():
        if (
            not event.key.startswith(("aten::", "rnnkit_loops::", "mkldnn::"))
            or event.key in STRUCTURAL
        ):
            continue
        ms = event.self_cpu_time_total / 1e3
        if event.key in MATMUL or event.key.startswith(MATMUL_PREFIXES):
            matmul += ms
        else:
            elementwise += ms
        calls += event.count
    steps = PROBLEMS[problem_key].steps
    return {
        "plain": sorted(plain)[1] * 1e3,
        "wall": wall,
        "matmul": matmul,
        "elementwise": elementwise,
        "rest": max(wall - matmul - elementwise, 0.0),
        "ops_per_step": calls / steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="a,c", help="comma-separated of a, b, c (a,c)")
    parser.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cells")
    parser.add_argument("--write", type=Path, help="replace the table in this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    rows = [
        "| config | cell | candidate | ms unprofiled | ms profiled | matmul "
        "| elementwise + other ops | Python, autograd, dispatch | operator calls per step |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in args.configs.split(","):
        for cell in args.cells.split(","):
            for candidate in ("torch.nn", "fused", "fused-py"):
                r = split(key, cell, candidate)
                row = (
                    f"| {PROBLEMS[key]} | {cell} | {candidate} | {r['plain']:.1f} | {r['wall']:.1f} "
                    f"| {r['matmul']:.1f} ({r['matmul'] / r['wall']:.0%}) "
                    f"| {r['elementwise']:.1f} ({r['elementwise'] / r['wall']:.0%}) "
                    f"| {r['rest']:.1f} ({r['rest'] / r['wall']:.0%}) | {r['ops_per_step']:.1f} |"
                )
                print(row, flush=True)
                rows.append(row)
    table = "\n".join(
        [
            f"Measured on {machine()}.",
            "",
            command_line("profile_step.py", argv),
            "",
            *rows,
        ]
    )
    publish(args.write, "profile", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
