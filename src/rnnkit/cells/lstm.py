"""The LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import RecurrentCell
from rnnkit.state import LSTMState


class LSTMCell(RecurrentCell[LSTMState]):
    r"""LSTM cell, one time step, gate order i, f, g, o as in torch.nn.

    Equations (σ = logistic sigmoid, ⊙ = elementwise product)::

        i_t = σ(U_i·x_t + W_i·h_{t−1} + b_i)        input gate
        f_t = σ(U_f·x_t + W_f·h_{t−1} + b_f)        forget gate
        g_t = tanh(U_g·x_t + W_g·h_{t−1} + b_g)     candidate cell
        o_t = σ(U_o·x_t + W_o·h_{t−1} + b_o)        output gate
        c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)

    The output of the step is h_t; a model's output map ŷ_t = g(V·h_t + c) is a
    separate ``Linear`` (V = its weight, c = its bias).

    U stacks U_i, U_f, U_g, U_o row-wise, and likewise W and b: one matrix multiply
    per source yields all four pre-activations, which are then split by name.

    Parameters (identical to ``torch.nn.LSTMCell``):
        weight_ih: U = [U_i; U_f; U_g; U_o], ``(4H, I)``.
        weight_hh: W = [W_i; W_f; W_g; W_o], ``(4H, H)``.
        bias_ih, bias_hh: ``(4H,)`` each; b = bias_ih + bias_hh.

    Shapes:
        x_t ``(B, I)``, state ``LSTMState(h=(B, H), c=(B, H))`` → output h_t ``(B, H)``,
        ``LSTMState(h_t, c_t)``.
    """

    num_gates: ClassVar[int] = 4
    state_type = LSTMState

    def forward(self, x_t: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        self.check_step(x_t, state)
        gates = F.linear(x_t, self.weight_ih, self.bias_ih) + F.linear(  # (B, 4H)
            state.h, self.weight_hh, self.bias_hh
        )
        i, f, g, o = gates.chunk(4, dim=1)  # (B, H) each
        c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
        h = torch.sigmoid(o) * torch.tanh(c)  # (B, H)
        return h, LSTMState(h, c)
