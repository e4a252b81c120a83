"""The Elman RNN cell: the recurrent cell of the seeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell
from rnnkit.projection import linear
from rnnkit.state import HiddenState

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu}


class RNNCell(RecurrentCell[HiddenState]):
    r"""Elman RNN cell, one time step.

    Equations (the seeds' notation, torch.nn's parameter names)::

        h_t = f(U·x_t + W·h_{t−1} + b)        f = tanh or relu
            = f(weight_ih·x_t + bias_ih + weight_hh·h_{t−1} + bias_hh)

    The output of the step is h_t itself; a model's output map ŷ_t = g(V·h_t + c)
    is a separate ``Linear`` (V = its weight, c = its bias).

    Parameters (identical to ``torch.nn.RNNCell``):
        weight_ih: U, ``(H, I)``.
        weight_hh: W, ``(H, H)``.
        bias_ih, bias_hh: ``(H,)`` each; b = bias_ih + bias_hh. ``None`` when ``bias=False``.

    Shapes:
        x_t ``(B, I)``, state ``HiddenState(h=(B, H))`` → output ``(B, H)``, ``HiddenState(h=(B, H))``.

    Args:
        input_size: I.
        hidden_size: H.
        bias: learn b (both halves).
        nonlinearity: ``"tanh"`` (the classic RNN) or ``"relu"`` (IRNN-style).
    """

    num_gates: ClassVar[int] = 1
    state_type = HiddenState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError(
                f"RNNCell: nonlinearity must be one of {sorted(_ACTIVATIONS)}, got {nonlinearity!r}"
            )
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity
        self.f = _ACTIVATIONS[nonlinearity]

    def forward(self, x_t: Tensor, state: HiddenState) -> tuple[Tensor, HiddenState]:
        self.check_step(x_t, state)
        pre = linear(x_t, self.weight_ih, self.bias_ih) + linear(  # U·x_t + W·h_{t−1} + b
            state.h, self.weight_hh, self.bias_hh
        )  # (B, H)
        h = self.f(pre)  # (B, H)
        return h, HiddenState(h)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return (
            text if self.nonlinearity == "tanh" else f"{text}, nonlinearity={self.nonlinearity!r}"
        )
