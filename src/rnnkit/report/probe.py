"""A look inside a trained run: its recurrent stack on a sample batch of its own data.

Every task reads its data and runs its model in its own way, so the probe does not
rebuild any of that. It calls the task's public ``evaluate`` on a split of the run's
data with a global forward hook installed, keeps the first call of a
:class:`~rnnkit.Recurrent` (the encoder, or the language model's stack) with its
inputs and outputs, and stops the evaluation right there. What it keeps is exactly
what the trained model saw: embedded tokens, scaled features, encoded frames.

:func:`run_gradient_flow` then measures the gradient flow through time of the
stack's first cell (layer 1, left to right) on those inputs with
:func:`rnnkit.diagnostics.gradient_flow`, under a probe loss on the last step,
L = ½·mean_b ‖h_{T−1}‖²: how much of a gradient arriving at the last step reaches
each earlier step through this trained cell.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit import stepping
from rnnkit.data.errors import DataError
from rnnkit.diagnostics import GradientFlow, gradient_flow
from rnnkit.recurrent import Recurrent
from rnnkit.tasks import task_module
from rnnkit.tasks.task import run_kind

# Splits tried in order: the validation part first (what training watched).
SPLITS = ("valid", "test", "train")

# At most this many rows and steps go into the gradient-flow measurement.
MAX_ROWS = 16
MAX_STEPS = 200
# ‖∂h_T/∂h_t‖₂ costs H vector-Jacobian products per step: measured up to this H only
# (H = 384 would take most of a minute on a CPU; the other two measures take a second).
JACOBIAN_MAX_HIDDEN = 64


@dataclass(frozen=True)
class Captured:
    """The first call of a run's recurrent stack during evaluation.

    Attributes:
        module: the trained :class:`~rnnkit.Recurrent` (eval mode).
        inputs: ``(B, T, I)`` what the stack read.
        lengths: ``(B,)`` valid steps per row, or ``None`` when all are T.
        outputs: ``(B, T, D·H)`` its hidden states (the last layer's).
        split: the split of the run's data the batch came from.
    """

    module: Recurrent
    inputs: Tensor
    lengths: Tensor | None
    outputs: Tensor
    split: str

    def length(self, row: int) -> int:
        steps = int(self.inputs.shape[1])
        return steps if self.lengths is None else int(self.lengths[row])


class _Stop(Exception):  # noqa: N818 - a signal that ends the evaluation, not an error
    """Raised by the hook to end the evaluation once the batch is captured."""

    def __init__(self, captured: tuple[Recurrent, Tensor, Tensor | None, Tensor]) -> None:
        super().__init__("captured")
        self.captured = captured


def capture(run_dir: Path | str) -> Captured:
    """The run's recurrent stack on its first evaluation batch (see the module docstring).

    Raises:
        DataError: no split of the run's data could be evaluated, or the model has no
            :class:`~rnnkit.Recurrent`.
    """
    module = task_module(run_kind(run_dir))

    def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if not isinstance(mod, Recurrent):
            return
        inputs = args[0] if args else kwargs["inputs"]
        lengths = kwargs.get("lengths", args[2] if len(args) > 2 else None)
        outputs = output[0]
        raise _Stop(
            (
                mod,
                inputs.detach(),
                None if lengths is None else lengths.detach().cpu(),
                outputs.detach(),
            )
        )

    problems = []
    for split in SPLITS:
        handle = torch.nn.modules.module.register_module_forward_hook(hook, with_kwargs=True)
        try:
            # Generators score by stepping: through Recurrent here, so the hook sees it.
            with torch.no_grad(), stepping.bypassed():
                module.evaluate(run_dir, split=split)
        except _Stop as stop:
            mod, inputs, lengths, outputs = stop.captured
            return Captured(mod, inputs.cpu(), lengths, outputs.cpu(), split)
        except (DataError, KeyError, ValueError) as error:
            problems.append(f"{split}: {error}")
        else:
            problems.append(f"{split}: the model ran no recurrent stack")
        finally:
            handle.remove()
    raise DataError("could not run the model on its data: " + "; ".join(problems))


def sample_inputs(captured: Captured) -> Tensor:
    """Up to :data:`MAX_ROWS` of the longest rows, cut to the shortest of them (no padding)."""
    rows = list(range(int(captured.inputs.shape[0])))
    rows.sort(key=captured.length, reverse=True)
    rows = rows[:MAX_ROWS]
    steps = min(MAX_STEPS, min(captured.length(row) for row in rows))
    return captured.inputs[rows, :steps]


def probe_loss(outputs: Tensor) -> Tensor:
    """L = ½·mean_b ‖h_{T−1}‖²: a loss on the last step only."""
    return 0.5 * outputs[:, -1].square().sum(-1).mean()


def run_gradient_flow(captured: Captured) -> GradientFlow:
    """The gradient flow of the stack's first cell on the captured inputs (float64);
    with ‖∂h_T/∂h_t‖₂ when H ≤ :data:`JACOBIAN_MAX_HIDDEN`."""
    cell = copy.deepcopy(captured.module.cells[0]).cpu().double()
    inputs = sample_inputs(captured).double()
    jacobians = captured.module.hidden_size <= JACOBIAN_MAX_HIDDEN
    return gradient_flow(cell, inputs, probe_loss, jacobians=jacobians)


def cell_name(captured: Captured) -> str:
    return captured.module.cell_name or type(captured.module.cells[0]).__name__
