"""The GRU cell (Cho et al. 2014), in torch.nn's variant."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell
from rnnkit.projection import linear
from rnnkit.state import HiddenState


class GRUCell(RecurrentCell[HiddenState]):
    r"""GRU cell, one time step, gate order r, z, n as in torch.nn.

    Equations::

        r_t = σ(U_r·x_t + b_ir + W_r·h_{t−1} + b_hr)             reset gate
        z_t = σ(U_z·x_t + b_iz + W_z·h_{t−1} + b_hz)             update gate
        n_t = tanh(U_n·x_t + b_in + r_t ⊙ (W_n·h_{t−1} + b_hn))  candidate
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

    The output of the step is h_t; a model's output map ŷ_t = g(V·h_t + c) is a
    separate ``Linear`` (V = its weight, c = its bias).

    Where this differs from Cho et al. on purpose: the paper resets *before* the
    matrix multiply, n_t = tanh(U_n·x_t + W_n·(r_t ⊙ h_{t−1}) + b_n). torch.nn (and
    cuDNN) reset *after* it, so W·h_{t−1} for all three gates is one matrix multiply
    and b_hn stays inside the reset. This cell follows torch.nn, so its weights and
    numbers match ``torch.nn.GRU`` exactly.

    Parameters (identical to ``torch.nn.GRUCell``):
        weight_ih: U = [U_r; U_z; U_n], ``(3H, I)``.
        weight_hh: W = [W_r; W_z; W_n], ``(3H, H)``.
        bias_ih: [b_ir; b_iz; b_in], ``(3H,)``.
        bias_hh: [b_hr; b_hz; b_hn], ``(3H,)``.

    Shapes:
        x_t ``(B, I)``, state ``HiddenState(h=(B, H))`` → output h_t ``(B, H)``, ``HiddenState(h_t)``.
    """

    num_gates: ClassVar[int] = 3
    state_type = HiddenState

    def forward(self, x_t: Tensor, state: HiddenState) -> tuple[Tensor, HiddenState]:
        self.check_step(x_t, state)
        x_r, x_z, x_n = linear(x_t, self.weight_ih, self.bias_ih).chunk(3, dim=1)  # (B, H) each
        h_r, h_z, h_n = linear(state.h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)  # (B, H)
        z = torch.sigmoid(x_z + h_z)  # (B, H)
        n = torch.tanh(x_n + r * h_n)  # (B, H)
        h = (1 - z) * n + z * state.h  # (B, H)
        return h, HiddenState(h)
