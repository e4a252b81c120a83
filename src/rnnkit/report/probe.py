"""A look inside a trained run: its recurrent stack on a sample batch of its own data.

The task gives a batch of its own data (:meth:`rnnkit.tasks.task.Task.sample_batch`:
the longest examples of a split, as training batches them) and the model runs its
one protocol on it, ``model(batch, None)``, with a forward hook on the model's
first :class:`~rnnkit.Recurrent`. What the hook keeps is exactly what the trained
stack sees: embedded tokens, scaled features, encoded frames.

:func:`run_gradient_flow` then measures the gradient flow through time of the
stack's first cell (layer 1, left to right) on those inputs with
:func:`rnnkit.diagnostics.gradient_flow`, under a probe loss on the last step,
L = ½·mean_b ‖h_{T−1}‖²: how much of a gradient arriving at the last step reaches
each earlier step through this trained cell.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.data.errors import DataError
from rnnkit.data.splits import SPLITS
from rnnkit.diagnostics import GradientFlow, gradient_flow
from rnnkit.recurrent import Recurrent
from rnnkit.tasks.task import Loaded, Task
from rnnkit.training.trainer import move

# At most this many rows and steps go into the gradient-flow measurement.
MAX_ROWS = 16
MAX_STEPS = 200
# ‖∂h_T/∂h_t‖₂ costs H vector-Jacobian products per step: measured up to this H only
# (H = 384 would take most of a minute on a CPU; the other two measures take a second).
JACOBIAN_MAX_HIDDEN = 64


@dataclass(frozen=True)
class Captured:
    """The first call of a run's recurrent stack on a sample batch.

    Attributes:
        module: the trained :class:`~rnnkit.Recurrent` (eval mode).
        inputs: ``(B, T, I)`` what the stack read.
        lengths: ``(B,)`` valid steps per row, or ``None`` when all are T.
        outputs: ``(B, T, D·H)`` its hidden states (the last layer's).
        split: the split of the run's data the batch came from.
        step_names: the first row's tokens, one per step (None: not tokens).
    """

    module: Recurrent
    inputs: Tensor
    lengths: Tensor | None
    outputs: Tensor
    split: str
    step_names: list[str] | None = None

    def length(self, row: int) -> int:
        steps = int(self.inputs.shape[1])
        return steps if self.lengths is None else int(self.lengths[row])


def capture(task: Task[Any, Any, Any, Any, Any, Any], loaded: Loaded[Any, Any, Any]) -> Captured:
    """The run's recurrent stack on a sample batch of its data (the module docstring):
    the validation split first, what training watched, then test and train.

    Raises:
        DataError: no split of the run's data gave a batch, or the model has no
            :class:`~rnnkit.Recurrent`.
    """
    model: nn.Module = loaded.model
    stack = next((m for m in model.modules() if isinstance(m, Recurrent)), None)
    if stack is None:
        raise DataError("the model has no recurrent stack to look into")
    problems = []
    for split in ("valid", *(s for s in SPLITS if s != "valid")):
        try:
            batch = task.sample_batch(loaded, split)
        except (DataError, KeyError, ValueError) as error:
            problems.append(f"{split}: {error}")
            continue
        call = first_call(stack, model, batch)
        if call is None:
            problems.append(f"{split}: the model ran no recurrent stack")
            continue
        inputs, lengths, outputs = call
        return Captured(stack, inputs.cpu(), None if lengths is None else lengths.detach().cpu(),
                        outputs.cpu(), split, task.step_names(loaded, batch))  # fmt: skip
    raise DataError("could not run the model on its data: " + "; ".join(problems))


def first_call(
    stack: Recurrent, model: nn.Module, batch: Any
) -> tuple[Tensor, Tensor | None, Tensor] | None:
    """``stack``'s inputs, lengths and outputs at its first call in ``model(batch, None)``."""
    calls: list[tuple[Tensor, Tensor | None, Tensor]] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if not calls:
            inputs = args[0] if args else kwargs["inputs"]
            lengths = kwargs.get("lengths", args[2] if len(args) > 2 else None)
            calls.append((inputs.detach(), lengths, output[0].detach()))

    handle = stack.register_forward_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(move(batch, next(model.parameters()).device), None)
    finally:
        handle.remove()
    return calls[0] if calls else None


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
