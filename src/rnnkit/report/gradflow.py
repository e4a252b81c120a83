"""Gradient flow through time, measured and written down: what ``rnnkit gradflow`` does.

Two sources of flows, both measured by :func:`rnnkit.diagnostics.gradient_flow`:

* :func:`adding_flows`: fresh (untrained) cells on a batch of the adding problem,
  a linear head on the last step and the MSE against the target, per cell and
  sequence length T (as ``benchmarks/gradient_flow.py`` does);
* :func:`run_flow`: a trained run's first recurrent cell on a batch of its own data
  (:mod:`rnnkit.report.probe`).

:func:`write_flows` writes the PNG plots and the summary: per cell and T,
‖∂L/∂h_0‖, ‖∂L/∂h_{T−1}‖ and their ratio, the part of the last step's gradient
that reaches the first step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.cells import GATED_CELL_NAMES, cell_factory
from rnnkit.cells.init import gate_bias_
from rnnkit.data.synthetic import adding_problem
from rnnkit.diagnostics import GradientFlow, gradient_flow, plot_gradient_flow
from rnnkit.report.probe import capture, cell_name, run_gradient_flow


@dataclass(frozen=True)
class FlowKey:
    """Which flow: a cell (by name or description) at a sequence length T."""

    cell: str
    steps: int


def adding_flows(
    cells: Sequence[str],
    lengths: Sequence[int],
    *,
    hidden: int = 64,
    batch: int = 16,
    seed: int = 0,
    gate_bias: float | None = None,
) -> dict[FlowKey, GradientFlow]:
    """Fresh cells (seeded) on the adding problem: one flow per cell and length T.

    Args:
        cells: built-in cell names (``rnn``, ``rnn_relu``, ``lstm``, ``gru``, ``mingru``,
            ``minlstm``, ...).
        lengths: sequence lengths T ≥ 2.
        hidden: H.
        batch: sequences per batch.
        seed: seeds the weights (``torch.manual_seed``) and the data.
        gate_bias: shifts the gate that keeps h_{t−1} (:func:`~rnnkit.cells.init.gate_bias_`:
            the LSTM's and minLSTM's forget gate, the GRU's and minGRU's update gate;
            ``None``: the default initialisation); the tanh RNN is left alone.
    """
    flows = {}
    for steps in lengths:
        data = adding_problem(batch, steps, seed=seed, dtype=torch.float64)
        for name in cells:
            torch.manual_seed(seed)
            cell = cell_factory(name)(2, hidden).double()
            if gate_bias is not None and name in GATED_CELL_NAMES:
                gate_bias_(cell, gate_bias)
            head = nn.Linear(hidden, 1).double()

            def loss(
                outputs: Tensor, head: nn.Module = head, targets: Tensor = data.targets
            ) -> Tensor:
                error: Tensor = head(outputs[:, -1]).squeeze(1) - targets
                return error.square().mean()

            flows[FlowKey(name, steps)] = gradient_flow(cell, data.inputs, loss)
    return flows


def run_flow(run_dir: Path | str) -> dict[FlowKey, GradientFlow]:
    """The trained run's first recurrent cell on a batch of its data (one flow)."""
    from rnnkit import tasks
    from rnnkit.tasks.task import run_kind

    task = tasks.get(run_kind(run_dir))
    captured = capture(task, task.load(run_dir))
    flow = run_gradient_flow(captured)
    return {FlowKey(f"{cell_name(captured)} ({captured.split} batch)", flow.steps): flow}


def summary_rows(flows: Mapping[FlowKey, GradientFlow]) -> list[dict[str, float | int | str]]:
    """Per flow: the cell, T, ‖∂L/∂h_0‖, ‖∂L/∂h_{T−1}‖ and first / last (``decay()``)."""
    return [
        {
            "cell": key.cell,
            "T": key.steps,
            "first": float(flow.state_grad_norms[0]),
            "last": float(flow.state_grad_norms[-1]),
            "first_over_last": flow.decay(),
        }
        for key, flow in flows.items()
    ]


def summary_text(rows: Sequence[Mapping[str, float | int | str]], title: str) -> str:
    """A short table: how much of the gradient at the last step reaches the first."""
    width = max([4, *(len(str(row["cell"])) for row in rows)])
    lines = [
        f"# {title}",
        "# ‖∂L/∂h_t‖ at the first step (t = 0) and the last (t = T−1); first / last is the "
        "part of the last step's gradient that reaches the first.",
        f"{'cell':<{width}}  {'T':>5}  {'‖∂L/∂h_0‖':>11}  {'‖∂L/∂h_T−1‖':>11}  {'first/last':>11}",
    ]
    for row in rows:
        lines.append(
            f"{row['cell']!s:<{width}}  {row['T']:>5}  {row['first']:>11.4e}  "
            f"{row['last']:>11.4e}  {row['first_over_last']:>11.4e}"
        )
    return "\n".join(lines) + "\n"


def write_flows(
    flows: Mapping[FlowKey, GradientFlow], out: Path | str, title: str
) -> tuple[list[Path], str]:
    """Write one PNG per length T (a line per cell), ``summary.txt`` and ``summary.json``.

    Returns:
        the PNG paths and the summary text.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for steps in sorted({key.steps for key in flows}):
        group = {key.cell: flow for key, flow in flows.items() if key.steps == steps}
        path = out / f"gradflow-T{steps}.png"
        images.append(plot_gradient_flow(group, path, title=f"{title}, T = {steps}"))
    rows = summary_rows(flows)
    text = summary_text(rows, title)
    (out / "summary.txt").write_text(text, encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return images, text
