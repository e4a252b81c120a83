"""Gradient flow through time on the adding problem: the figure and table in docs/.

Untrained cells (H = 32) read a batch of 16 adding-problem sequences of T = 100
steps; a linear head reads the last hidden state and the loss is the MSE against
the target. For each cell, :func:`rnnkit.diagnostics.gradient_flow` measures
‖∂L/∂h_t‖, each step's share of ‖∂L/∂W‖ and ‖∂h_T/∂h_t‖₂, twice: with torch.nn's
default initialisation, and with the usual +1 bias on the LSTM's forget gate and
the GRU's update gate.

    python benchmarks/gradient_flow.py --out docs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.cells import cell_factory
from rnnkit.cells.init import gate_bias_
from rnnkit.data.synthetic import adding_problem
from rnnkit.diagnostics import GradientFlow, gradient_flow, plot_gradient_flow

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, write_block


def flows(steps: int, hidden: int, gate_bias: float | None) -> dict[str, GradientFlow]:
    data = adding_problem(16, steps, seed=0, dtype=torch.float64)
    result = {}
    for name in ("rnn", "lstm", "gru"):
        torch.manual_seed(0)
        cell = cell_factory(name)(2, hidden).double()
        if gate_bias is not None and name != "rnn":
            gate_bias_(cell, gate_bias)
        head = nn.Linear(hidden, 1).double()

        def loss(outputs: Tensor, head: nn.Module = head) -> Tensor:
            return (head(outputs[:, -1]).squeeze(1) - data.targets).square().mean()

        result[name] = gradient_flow(cell, data.inputs, loss)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder (docs)")
    parser.add_argument("--steps", type=int, default=100, help="T (100)")
    args = parser.parse_args(argv)
    rows = [
        "| initialisation | cell | ‖∂L/∂h_0‖ / ‖∂L/∂h_T‖ | ‖∂h_T/∂h_0‖₂ "
        "| share of ‖∂L/∂W‖ from the first 10 steps |",
        "|---|---|---:|---:|---:|",
    ]
    for label, bias, image in (
        ("torch.nn default", None, "gradient-flow-default.png"),
        ("+1 forget/update gate bias", 1.0, "gradient-flow.png"),
    ):
        measured = flows(args.steps, 32, bias)
        plot_gradient_flow(
            measured,
            args.out / image,
            title=f"adding problem, T = {args.steps}, untrained, {label}",
        )
        for name, flow in measured.items():
            assert flow.jacobian_norms is not None
            rows.append(
                f"| {label} | {name} | {flow.decay():.1e} | {float(flow.jacobian_norms[0]):.1e} "
                f"| {float(flow.share('weight_hh')[:10].sum()):.1e} |"
            )
    table = "\n".join([command_line("gradient_flow.py", argv), "", *rows])
    write_block(args.out / "gradient-flow.md", "gradflow", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
