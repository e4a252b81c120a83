"""The minimal LSTM (Feng et al. 2024, "Were RNNs All We Needed?")."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.minimal import MinimalCell


class MinLSTMCell(MinimalCell):
    r"""minLSTM cell, one time step: an LSTM whose gates read x_t alone, normalised.

    Equations (σ = logistic sigmoid, ⊙ = elementwise product)::

        i_t = σ(U_i·x_t + b_i)                      input gate
        f_t = σ(U_f·x_t + b_f)                      forget gate
        h̃_t = U_h·x_t + b_h                         candidate ("plain" form)
            = g(U_h·x_t + b_h)                       ("log" form, g > 0: see rnnkit.cells.minimal)
        f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)
        h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ h̃_t

    so h_t = a_t ⊙ h_{t−1} + b_t with a_t = f'_t and b_t = i'_t ⊙ h̃_t. The gates
    are normalised to add up to 1, so h stays on the candidates' scale whatever
    the length; there is no memory cell c, no output gate and no W.

    Computed as f'_t = σ(d_t), i'_t = σ(−d_t) with d_t = log σ(U_f·x_t + b_f) −
    log σ(U_i·x_t + b_i): the same ratio, without the 0/0 of f_t + i_t when both
    gates underflow.

    The output of the step is h_t; a model's output map ŷ_t = g(V·h_t + c) is a
    separate ``Linear`` (V = its weight, c = its bias).

    Parameters (the gate order i, f, h̃ follows torch.nn's LSTM order i, f, g, o):
        weight_ih: U = [U_i; U_f; U_h], ``(3H, I)``.
        bias_ih: b = [b_i; b_f; b_h], ``(3H,)``.

    Shapes:
        x_t ``(B, I)``, state ``HiddenState(h=(B, H))`` → output h_t ``(B, H)``, ``HiddenState(h_t)``.

    Args:
        input_size: I.
        hidden_size: H.
        bias: learn b.
        form: ``"plain"`` or ``"log"`` (the candidate through g).
    """

    num_gates: ClassVar[int] = 3

    def gates(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        k_i, k_f, k_h = pre.chunk(3, dim=-1)  # (..., H) each
        d = F.logsigmoid(k_f) - F.logsigmoid(k_i)  # log(f_t / i_t)
        return torch.sigmoid(d), torch.sigmoid(-d) * self.candidate(k_h)  # a_t = f'_t, b_t
