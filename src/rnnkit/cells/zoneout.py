"""Zoneout (Krueger et al. 2017): each unit keeps its previous value with probability z."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Zoneout(nn.Module):
    r"""A cell whose state units are each, at each step, kept from the step before.

    With s̃_t the inner cell's new state (h̃_t, and c̃_t for an LSTM) and, in training, a
    fresh mask d_t ~ Bernoulli(z) per unit, row and step::

        s_t = d_t ⊙ s_{t−1} + (1 − d_t) ⊙ s̃_t        (training)
        s_t = z · s_{t−1} + (1 − z) · s̃_t             (evaluation: the expectation)

    and the step's output is s_t's h. The gradient through a kept unit flows straight
    to s_{t−1}, which is what zoneout is for: an identity path through time, like the
    LSTM's cell but chosen at random. ``zoneout = 0`` is the inner cell itself.

    It follows the cell protocol (``forward(x_t, state) -> (output, state)``,
    ``initial_state``, ``input_size``, ``hidden_size``) and holds no parameters of its
    own: the inner cell's are its. :class:`~rnnkit.Recurrent` wraps its cells in it for
    the ``"unrolled"`` backend when built with ``zoneout > 0``.

    Args:
        cell: the inner cell.
        zoneout: z in [0, 1).
    """

    def __init__(self, cell: nn.Module, zoneout: float) -> None:
        super().__init__()
        if isinstance(zoneout, bool) or not isinstance(zoneout, int | float):
            raise ValueError(f"zoneout: expected a number in [0, 1), got {zoneout!r}")
        if not 0.0 <= zoneout < 1.0:
            raise ValueError(f"zoneout: expected a number in [0, 1), got {zoneout!r}")
        self.cell = cell
        self.zoneout = float(zoneout)
        self.input_size: int = getattr(cell, "input_size")  # noqa: B009
        self.hidden_size: int = getattr(cell, "hidden_size")  # noqa: B009

    def initial_state(self, batch_size: int, **options: Any) -> Any:
        protocol: Any = self.cell
        return protocol.initial_state(batch_size, **options)

    def forward(self, x_t: Tensor, state: Any) -> tuple[Tensor, Any]:
        _, new = self.cell(x_t, state)
        z = self.zoneout
        if z == 0.0:
            return new.h, new
        if self.training:
            kept = iter([torch.rand_like(field) < z for field in state])  # d_t, per field
            mixed = type(new)(*(torch.where(next(kept), old, fresh)
                                for old, fresh in zip(state, new, strict=True)))  # fmt: skip
        else:
            mixed = type(new)(*(z * old + (1.0 - z) * fresh
                                for old, fresh in zip(state, new, strict=True)))  # fmt: skip
        return mixed.h, mixed


__all__ = ["Zoneout"]
