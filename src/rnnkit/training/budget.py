"""What a run will need, checked before anything is allocated: the device and the memory.

:func:`check_run` is called with a task's resolved ``Run`` (``rnnkit train``, also
under ``--dry-run``) before the model exists. It resolves ``trainer.device`` (a
device torch cannot use is a one-line :class:`BudgetError`), then estimates the
bytes of training from the configuration alone:

* parameters, counted exactly by building the model on torch's ``meta`` device
  (shapes without storage: nothing is allocated, whatever the sizes);
* their gradients (as many again) and the optimizer's state (Adam and AdamW two
  tensors per parameter, SGD with momentum, RMSprop and Adagrad one or two);
* the copy of weights and optimizer state the trainer keeps to undo a step that
  made a weight non-finite (:class:`~rnnkit.training.undo.Undo`);
* activations kept for the backward pass: per example and step, every recurrent
  layer keeps about ``k·D·H`` values (``k`` = 8 for LSTM, 6 for GRU, 2 for the
  plain RNN: gates, states, nonlinearities) and every linear layer its outputs,
  times ``batch_size`` and the run's sequence length where the configuration
  names one (``max_length``, ``steps``, ``window``, ``length``; else 1).

It is a rough estimate, meant to catch the hopeless (``hidden = 10^9`` needs
exabytes), not to predict a near-miss: a run is refused only when the estimate is
larger than the memory available on its device (:func:`available_memory`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class BudgetError(ValueError):
    """A run that cannot start here: a device torch cannot use, or too little memory."""


# Values each recurrent layer keeps per example, step and unit for the backward pass.
# The minimal cells keep their projections P (G·H) and outputs (H): rnnkit.bptt.scan.
_KEPT = {"lstm": 8, "gru": 6, "rnn": 2, "rnn_relu": 2, "mingru": 3, "mingru_log": 3,
         "minlstm": 4, "minlstm_log": 4}  # fmt: skip
# Tensors of optimizer state per parameter.
_OPTIMIZER_STATE = {"adam": 2, "adamw": 2, "adagrad": 1}
# Fields of a task configuration that give the steps of a training sequence.
_LENGTH_FIELDS = ("max_length", "steps", "window", "length")


def resolve_device(name: str) -> torch.device:
    """The device ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) means on this
    machine, or a one-line :class:`BudgetError` when torch cannot use it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = re.fullmatch(r"cpu|mps|cuda(?::(\d+))?", name)
    if match is None:
        raise BudgetError(f"device: expected auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise BudgetError("device: mps was asked for, but this torch or machine has no MPS")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BudgetError(f"device: {name} was asked for, but torch sees no CUDA device")
        count = torch.cuda.device_count()
        if match.group(1) is not None and int(match.group(1)) >= count:
            raise BudgetError(
                f"device: {name} was asked for, but torch sees {count} CUDA device(s) "
                f"(cuda:0 … cuda:{count - 1})"
            )
    return torch.device(name)


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes ``device`` can still give: free CUDA memory, else the machine's
    ``MemAvailable`` (/proc/meminfo); 2^63 − 1 where neither is known, so that nothing
    is refused on a guess."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 2**63 - 1


@dataclass(frozen=True)
class Estimate:
    """Bytes a training run needs, by kind."""

    parameters: int
    gradients: int
    optimizer: int
    undo: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.undo + self.activations


def estimate(run: Any) -> Estimate:
    """The memory of training ``run`` (a task's ``Run``), from its configuration only."""
    from rnnkit.models import build_model
    from rnnkit.recurrent import Recurrent

    with torch.device("meta"):  # shapes only: nothing is allocated
        model = build_model(run.model)
    trainer = run.trainer
    params = [p for p in model.parameters() if p.requires_grad]
    weights = sum(p.numel() * p.element_size() for p in params)
    optimizer = trainer.optimizer
    states = _OPTIMIZER_STATE.get(optimizer.name, 0)
    if optimizer.name in ("sgd", "rmsprop") and optimizer.momentum > 0:
        states += 1
    if optimizer.name == "rmsprop":
        states += 1  # the running square average
    per_step = 0
    for module in model.modules():
        if isinstance(module, Recurrent):
            kept = _KEPT.get(module.cell_name or "lstm", 8)
            per_step += kept * module.num_layers * module.num_directions * module.hidden_size
        elif isinstance(module, nn.Linear):
            per_step += module.out_features
    length = next(
        (
            value
            for name in _LENGTH_FIELDS
            if isinstance(value := getattr(run.task, name, None), int) and value > 0
        ),
        1,
    )
    activations = 4 * 2 * trainer.batch_size * length * per_step  # float32, value + gradient
    return Estimate(weights, weights, states * weights, (1 + states) * weights, activations)


def check_run(run: Any) -> Estimate:
    """Refuse, in one line naming the fields, a run whose device torch cannot use or
    whose estimated memory (:func:`estimate`) exceeds what its device has free."""
    device = resolve_device(run.trainer.device)
    need = estimate(run)
    have = available_memory(device)
    if need.total > have:
        model = run.model
        sizes = ", ".join(
            f"model.{name} = {getattr(model, name)}"
            for name in ("hidden", "embed", "layers", "vocab_size")
            if isinstance(getattr(model, name, None), int)
        )
        raise BudgetError(
            f"{sizes}, trainer.batch_size = {run.trainer.batch_size}: training needs "
            f"~{human_bytes(need.total)} ({human_bytes(need.parameters)} of weights, as "
            f"much again of gradients, {human_bytes(need.optimizer)} of optimizer state, "
            f"{human_bytes(need.undo)} to undo a step, {human_bytes(need.activations)} of "
            f"activations), {human_bytes(have)} is "
            f"available on {device}"
        )
    return need


def human_bytes(count: float) -> str:
    """``1.5 GB``-style sizes (powers of 1000, as people read disk and memory sizes)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(count) < 1000:
            return f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} EB"
