"""Stamps that tell whether a weight may have changed since a copy of it was made.

A copy kept for speed (a weight's transpose for the input gradient, the generation
path's packed weights) is valid only while its weight is unchanged. A tensor's version
counter moves with every in-place op autograd sees and ``data_ptr()`` with a new
storage (``.to()``, ``.data =``), but torch's *fused* optimizers (``fused=True``: SGD,
Adam, AdamW, Adagrad, which the Trainer picks on the CPU) write the new weights
without moving the counter. So a stamp also carries the number of optimizer steps
this process has taken, counted by a hook every ``torch.optim.Optimizer`` runs after
its ``step``: any step, of any optimizer, makes every kept copy stale.

A write through ``.data`` or from outside torch.optim (a hand-written update under
``no_grad`` moves the counter; ``p.data.add_`` does not) is seen only when it moves
the counter or the storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook

Stamp = tuple[int, int, int]  # optimizer steps taken, version counter, storage address

_steps = 0  # optimizer steps taken in this process, by any optimizer


def _stepped(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    global _steps
    _steps += 1


register_optimizer_step_post_hook(_stepped)


def optimizer_steps() -> int:
    """Optimizer steps this process has taken since rnnkit was imported."""
    return _steps


def stamp(tensor: Tensor) -> Stamp:
    """What must be unchanged for a copy of ``tensor`` made now to still be valid."""
    return _steps, tensor._version, tensor.data_ptr()


def stamps(tensors: Sequence[Tensor]) -> tuple[Stamp, ...]:
    """:func:`stamp` of each of ``tensors``, in order."""
    return tuple(map(stamp, tensors))
