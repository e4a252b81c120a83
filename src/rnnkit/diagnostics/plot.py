"""Pictures of gradient flow through time (PNG, matplotlib's Agg backend).

matplotlib is an optional dependency: ``pip install 'rnnkit[plot]'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rnnkit.diagnostics.gradflow import GradientFlow


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plotting needs matplotlib: pip install 'rnnkit[plot]' (or matplotlib)"
        ) from error
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def _positive(values: Tensor) -> Any:
    """As a NumPy array with exact zeros as NaN (left out of a log-scale line)."""
    return torch.where(values > 0, values, torch.nan).numpy()


def plot_gradient_flow(
    flows: Mapping[str, GradientFlow],
    path: str | Path,
    *,
    parameter: str = "weight_hh",
    title: str | None = None,
) -> Path:
    """Write a PNG comparing the gradient flow of several runs (one line per name).

    Three panels over the step t: ‖∂L/∂h_t‖ (log scale), each step's share of
    Σ_t ‖(∂L/∂W)|_t‖ for ``parameter`` (log scale) and, when computed,
    ‖∂h_{T−1}/∂h_t‖₂ (log scale).

    Returns:
        the path written.
    """
    if not flows:
        raise ValueError("flows: expected at least one GradientFlow to plot")
    plt = _pyplot()
    with_jacobians = all(flow.jacobian_norms is not None for flow in flows.values())
    panels = 3 if with_jacobians else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.6), constrained_layout=True)
    for name, flow in flows.items():
        steps = range(flow.steps)
        axes[0].semilogy(steps, _positive(flow.state_grad_norms), label=name)
        # Step 0's W-term is exactly 0 when h_{−1} = 0: a gap, not a plunge to 1e-300.
        # A minimal cell has no W (weight_hh): its share is U's (weight_ih), said in the title.
        own = parameter if parameter in flow.param_step_norms else "weight_ih"
        axes[1].semilogy(steps, _positive(flow.share(own)), label=name)
        if with_jacobians:
            assert flow.jacobian_norms is not None
            axes[2].semilogy(steps, _positive(flow.jacobian_norms), label=name)
    axes[0].set_title("‖∂L/∂h_t‖")
    owns = all(parameter in flow.param_step_norms for flow in flows.values())
    axes[1].set_title(f"step t's share of ‖∂L/∂{parameter}‖" + ("" if owns else " (or weight_ih)"))
    if with_jacobians:
        axes[2].set_title("‖∂h_T/∂h_t‖₂ (batch mean)")
    for axis in axes:
        axis.set_xlabel("step t")
        axis.grid(True, which="major", alpha=0.3)
    axes[0].legend()
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
